//! Where a text command meets the node: a parsed [`Command`] runs through the node
//! facade ([`crate::node`]), its receipt is kept in the connection's [`Session`], its
//! outcome is counted and spelled through `outcome.rs`, and its reply is appended to
//! the connection's write buffer. `meta.rs` and `binary.rs` do the same for theirs,
//! with what `frontend/mod.rs` holds for all of them.

use super::outcome::{self, DeleteCounting};
use super::output::Output;
use super::{Dispatch, Flow, Session};
use crate::protocol::command::KEY_MAX_LENGTH;
use crate::protocol::reply::{self, ErrorReply};
use crate::protocol::{Command, Keys, ShutdownMode, StatsGroup, StoreMode};
use crate::server::operations::stats::TextStats;
use crate::store::{DeleteOutcome, DeleteRequest, DeltaOutcome, DeltaRequest, Found, StoreRequest};

fn answer(out: &mut Vec<u8>, noreply: bool, line: &[u8]) {
    if !noreply {
        out.extend_from_slice(line);
    }
}

impl Dispatch<'_> {
    pub fn execute(&self, cmd: Command<'_>, output: &mut Output, session: &mut Session) -> Flow {
        let c = self.counters;
        let node = &*self.shared.node;
        let out = output.bytes();
        match cmd {
            Command::Get { keys, with_cas, touch } => self.get(keys, with_cas, touch, output, session),
            Command::Store { mode, key, flags, exptime, data, cas_unique, noreply } => {
                let fits = self.item_fits(key.len());
                let req = StoreRequest {
                    flags,
                    exptime,
                    cas_unique,
                    fits: Some(&fits),
                    failure_discards_old: mode == StoreMode::Set,
                    ..StoreRequest::new(mode, key, data)
                };
                let outcome = self.store(&req, session);
                answer(out, noreply, outcome::text_store_line(&outcome));
            }
            Command::StoreTooLarge { mode, key, noreply } => {
                c.store_too_large.inc();
                // A set that fails must not leave the old value readable (memcached F6).
                session.note(node.refuse_store(key, mode == StoreMode::Set));
                answer(out, noreply, ErrorReply::TooLarge.line());
            }
            Command::BadDataChunk { noreply } => {
                c.cmd_set.inc();
                answer(out, noreply, ErrorReply::BadDataChunk.line());
            }
            Command::Delete { key, noreply } => answer(out, noreply, self.delete(key, session)),
            Command::Arithmetic { incr, key, delta, noreply } => {
                self.arithmetic(incr, key, delta, noreply, out, session)
            }
            Command::Touch { key, exptime, noreply } => {
                let hit = session.note(node.get(key, Some(exptime), |_| {})) == Found::Hit;
                c.count_read(true, hit);
                answer(out, noreply, if hit { reply::TOUCHED } else { reply::NOT_FOUND });
            }
            Command::FlushAll { delay, noreply } => {
                c.cmd_flush.inc();
                if self.shared.config.disable_flush_all {
                    answer(out, noreply, ErrorReply::FlushAllNotAllowed.line());
                } else {
                    session.note(node.flush_all(delay));
                    answer(out, noreply, reply::OK);
                }
            }
            Command::Version => {
                out.extend_from_slice(b"VERSION ");
                out.extend_from_slice(crate::server::VERSION.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Command::Verbosity { level, noreply } => {
                self.shared.set_verbosity(level);
                answer(out, noreply, reply::OK);
            }
            Command::Quit => return Flow::Close,
            Command::Stats(group) => self.stats(group, out),
            Command::Shutdown(mode) => match (self.shared.config.enable_shutdown, mode) {
                (false, _) => out.extend_from_slice(ErrorReply::ShutdownNotEnabled.line()),
                (true, ShutdownMode::Invalid) => out.extend_from_slice(ErrorReply::InvalidShutdownMode.line()),
                (true, mode) => {
                    self.shared.request_shutdown(mode == ShutdownMode::Graceful);
                    // memcached closes the asking connection without a reply.
                    return Flow::Close;
                }
            },
            Command::RefreshCerts { noreply } => match &self.shared.tls {
                // memcached answers these whatever noreply says.
                None => out.extend_from_slice(b"Error TLS not enabled\r\n"),
                Some(tls) => match tls.reload() {
                    Ok(()) => answer(out, noreply, reply::OK),
                    Err(message) => {
                        log::warn!("refresh_certs: {message}");
                        out.extend_from_slice(message.as_bytes());
                        out.extend_from_slice(b"\r\n");
                    }
                },
            },
            Command::CacheMemlimit { megabytes, noreply } => answer(out, noreply, self.cache_memlimit(megabytes)),
            Command::MetaNoop => out.extend_from_slice(reply::MN),
            Command::MetaGet(req) => self.meta_get(req, output, session),
            Command::MetaSet { req, data } => self.meta_set(req, data, out, session),
            Command::MetaSetTooLarge(req) => self.meta_set_too_large(req, out, session),
            Command::MetaDelete(req) => self.meta_delete(req, out, session),
            Command::Watch(kinds) => return Flow::Watch(kinds),
            Command::MetaArithmetic(req) => self.meta_arithmetic(req, out, session),
            Command::MetaDebug { key, binary } => self.meta_debug(key, binary, out),
            Command::Authenticate { user, password } => self.authenticate(user, password, out, session),
            Command::Error { reply, noreply } => answer(out, noreply, reply.line()),
        }
        Flow::Continue
    }

    /// `delete <key>`: its reply line.
    fn delete(&self, key: &[u8], session: &mut Session) -> &'static [u8] {
        let outcome = session.note(self.shared.node.delete(&DeleteRequest { key, ..Default::default() }));
        self.counters.count_delete(&outcome, DeleteCounting::Text);
        if let DeleteOutcome::Deleted { value_len } = outcome {
            self.watch_deleted(key, "delete", value_len);
        }
        outcome::text_delete_line(&outcome)
    }

    /// `incr` and `decr`, which neither create items nor compare a CAS.
    fn arithmetic(&self, incr: bool, key: &[u8], delta: u64, noreply: bool, out: &mut Vec<u8>, session: &mut Session) {
        let outcome = session.note(self.shared.node.arithmetic(&DeltaRequest::new(key, incr, delta), |_, _, _| {}));
        self.counters.count_delta(incr, &outcome);
        match outcome {
            DeltaOutcome::Value(value) | DeltaOutcome::Created(value) if !noreply => {
                reply::write_number_line(out, value)
            }
            DeltaOutcome::Value(_) | DeltaOutcome::Created(_) => {}
            DeltaOutcome::NotFound => answer(out, noreply, reply::NOT_FOUND),
            DeltaOutcome::NonNumeric => answer(out, noreply, ErrorReply::NonNumeric.line()),
            DeltaOutcome::NoMemory => answer(out, noreply, ErrorReply::OutOfMemory.line()),
            DeltaOutcome::NoMajority => answer(out, noreply, ErrorReply::NoMajority.line()),
            DeltaOutcome::Exists => answer(out, noreply, reply::EXISTS),
        }
    }

    /// `cache_memlimit`, within memcached's bounds (proto_text.c
    /// `process_memlimit_command`).
    fn cache_memlimit(&self, megabytes: u32) -> &'static [u8] {
        if megabytes < 8 {
            ErrorReply::MemlimitTooSmall.line()
        } else if megabytes > 1_000_000_000 {
            ErrorReply::MemlimitInMegabytes.line()
        } else {
            self.shared.node.view().set_memory_limit(megabytes as usize * 1024 * 1024);
            reply::OK
        }
    }

    /// `-Y`'s credentials, sent as the value of a `set`.
    fn authenticate(&self, user: &[u8], password: &[u8], out: &mut Vec<u8>, session: &mut Session) {
        let c = self.counters;
        c.auth_cmds.inc();
        let allowed = self.shared.text_auth.as_ref().is_some_and(|creds| creds.check(user, password));
        if allowed {
            session.authenticated = true;
            out.extend_from_slice(reply::STORED);
        } else {
            c.auth_errors.inc();
            out.extend_from_slice(ErrorReply::AuthFailure.line());
        }
    }

    fn get(&self, keys: Keys<'_>, with_cas: bool, touch: Option<i32>, out: &mut Output, session: &mut Session) {
        let c = self.counters;
        let start = out.mark();
        for key in keys.iter() {
            if key.len() > KEY_MAX_LENGTH {
                // memcached drops the values it had queued for this command.
                out.rewind(start);
                out.bytes().extend_from_slice(ErrorReply::BadCommandLineFormat.line());
                return;
            }
            let mut size = 0;
            let found = session.note(self.shared.node.get(key, touch, |item| {
                size = item.value().len();
                let cas = with_cas.then(|| item.cas());
                match item.share() {
                    // A long value goes to the socket from the item, not through a copy.
                    Some(value) => {
                        reply::write_value_line(out.bytes(), key, item.flags(), value.value().len(), cas);
                        out.push_shared(value);
                        out.bytes().extend_from_slice(b"\r\n");
                    }
                    None => reply::write_value(out.bytes(), key, item.flags(), item.value(), cas),
                }
            }));
            self.watch_get(key, (found == Found::Hit).then_some(size), session.fd);
            c.count_read(touch.is_some(), found == Found::Hit);
        }
        out.bytes().extend_from_slice(reply::END);
    }

    fn stats(&self, group: StatsGroup, out: &mut Vec<u8>) {
        let shared = self.shared;
        match group {
            StatsGroup::General => shared.write_general_stats(&mut TextStats(out)),
            StatsGroup::Settings => shared.write_settings_stats(&mut TextStats(out)),
            StatsGroup::Items => shared.write_items_stats(&mut TextStats(out)),
            StatsGroup::Slabs => shared.write_slabs_stats(&mut TextStats(out)),
            StatsGroup::Sizes => shared.write_sizes_stats(&mut TextStats(out)),
            StatsGroup::Conns => shared.registry.write_stats(out, shared.node.view().clock().now_secs()),
            StatsGroup::Replication => shared.write_replication_stats(&mut TextStats(out)),
            StatsGroup::Reset => {
                shared.reset_stats();
                out.extend_from_slice(reply::RESET);
            }
            StatsGroup::DetailOn | StatsGroup::DetailOff => out.extend_from_slice(reply::OK),
            StatsGroup::DetailDump => out.extend_from_slice(reply::END),
            StatsGroup::DetailUsage => out.extend_from_slice(ErrorReply::DetailUsage.line()),
            StatsGroup::Unknown => out.extend_from_slice(ErrorReply::Error.line()),
        }
    }
}
