//! The binary protocol against the store, reply for reply as memcached's proto_bin.c
//! writes them: errors always answer (quiet or not) with memcached's text in the
//! body; quiet opcodes suppress successes, and the GET family suppresses misses.

use super::outcome::{self, DeleteCounting};
use super::output::Output;
use super::{Dispatch, Flow, Session};
use crate::protocol::binary::{BinaryCommand, BinaryParsed, Header, StoreOp, status, write_error, write_header};
use crate::server::operations::stats::{BinaryStats, StatSink};
use crate::store::{
    DeleteOutcome, DeleteRequest, DeltaOutcome, DeltaRequest, Found, StoreMode, StoreOutcome, StoreRequest, expiry,
};

/// The one mechanism offered: PLAIN, checked against the `-S` password file.
const SASL_MECHANISMS: &[u8] = b"PLAIN";

/// memcached's "do not create" expiration for INCREMENT and DECREMENT.
const NO_CREATE: u32 = 0xffff_ffff;

impl Dispatch<'_> {
    pub fn execute_binary(&self, req: BinaryParsed<'_>, output: &mut Output, session: &mut Session) -> Flow {
        let h = &req.header;
        let c = self.counters;
        let node = &*self.shared.node;
        let quiet = req.quiet;
        if !self.sasl_admits(&req.cmd, session) {
            write_error(output.bytes(), h, status::AUTH_ERROR);
            return Flow::Close;
        }
        let out = output.bytes();
        match req.cmd {
            BinaryCommand::Get { key, with_key } => {
                self.binary_get(h, key, None, (true, with_key, quiet), output, session)
            }
            BinaryCommand::Touch { key, exptime, with_value, with_key } => {
                self.binary_get(h, key, Some(exptime), (with_value, with_key, quiet), output, session)
            }
            BinaryCommand::Store { mode, key, flags, exptime, data } => {
                let store_mode = match (h.cas, mode) {
                    (0, StoreOp::Set) => StoreMode::Set,
                    (0, StoreOp::Add) => StoreMode::Add,
                    (0, StoreOp::Replace) => StoreMode::Replace,
                    // A CAS turns set, add and replace alike into a compare-and-swap.
                    _ => StoreMode::Cas,
                };
                let req = StoreRequest {
                    flags,
                    exptime,
                    cas_unique: h.cas,
                    failure_discards_old: mode == StoreOp::Set,
                    ..StoreRequest::new(store_mode, key, data)
                };
                answer_store(out, h, quiet, &self.store(&req, session), Some(mode));
            }
            BinaryCommand::Concat { append, key, data } => {
                let fits = self.item_fits(key.len());
                let mode = if append { StoreMode::Append } else { StoreMode::Prepend };
                let req = StoreRequest { cas_unique: h.cas, fits: Some(&fits), ..StoreRequest::new(mode, key, data) };
                answer_store(out, h, quiet, &self.store(&req, session), None);
            }
            BinaryCommand::TooLarge { set, key } => {
                c.store_too_large.inc();
                // A set that fails must not leave the old value readable (memcached F6).
                session.note(node.refuse_store(key, set));
                write_error(out, h, status::E2BIG);
            }
            BinaryCommand::Delete { key } => self.binary_delete(h, quiet, key, out, session),
            BinaryCommand::Arithmetic { incr, key, delta, initial, exptime } => {
                self.binary_arithmetic(h, quiet, (incr, key, delta, initial, exptime), out, session)
            }
            BinaryCommand::Quit => {
                success(out, h, quiet, 0);
                return Flow::Close;
            }
            BinaryCommand::Flush { delay } => {
                c.cmd_flush.inc();
                if self.shared.config.disable_flush_all {
                    // memcached's answer to a refused binary flush.
                    write_error(out, h, status::AUTH_ERROR);
                } else {
                    session.note(node.flush_all(delay));
                    success(out, h, quiet, 0);
                }
            }
            BinaryCommand::Noop => write_header(out, h, status::SUCCESS, 0, 0, 0, 0),
            BinaryCommand::Version => {
                let version = crate::server::VERSION.as_bytes();
                write_header(out, h, status::SUCCESS, 0, 0, version.len() as u32, 0);
                out.extend_from_slice(version);
            }
            BinaryCommand::Stat { group } => self.binary_stats(h, group, out),
            BinaryCommand::SaslListMechs
            | BinaryCommand::SaslAuth { .. }
            | BinaryCommand::SaslStep { .. }
            | BinaryCommand::SaslInvalid
            | BinaryCommand::SaslTooLarge => self.binary_sasl(h, req.cmd, out, session),
            BinaryCommand::Unknown => write_error(out, h, status::UNKNOWN_COMMAND),
            BinaryCommand::Invalid => {
                write_error(out, h, status::EINVAL);
                return Flow::Close;
            }
            BinaryCommand::BadFraming => {
                write_error(out, h, status::UNKNOWN_COMMAND);
                return Flow::Close;
            }
        }
        Flow::Continue
    }

    /// DELETE, compared against the CAS it carries (0: none).
    fn binary_delete(&self, h: &Header, quiet: bool, key: &[u8], out: &mut Vec<u8>, session: &mut Session) {
        let req = DeleteRequest { key, compare_cas: (h.cas != 0).then_some(h.cas), ..Default::default() };
        let outcome = session.note(self.shared.node.delete(&req));
        self.counters.count_delete(&outcome, DeleteCounting::Binary);
        if let DeleteOutcome::Deleted { value_len } = outcome {
            self.watch_deleted(key, "delete", value_len);
        }
        match outcome::binary_delete_status(&outcome) {
            status::SUCCESS => success(out, h, quiet, 0),
            failure => write_error(out, h, failure),
        }
    }

    /// Whether the SASL gate lets `cmd` run on this connection. Under `-S` only the
    /// SASL commands and VERSION run before authentication; every SASL exchange starts
    /// the connection over, unauthenticated, as memcached's (proto_bin.c
    /// `init_sasl_conn`); a refused message never starts one.
    fn sasl_admits(&self, cmd: &BinaryCommand<'_>, session: &mut Session) -> bool {
        if self.shared.sasl.is_none() {
            return true;
        }
        let sasl_exchange = matches!(
            cmd,
            BinaryCommand::SaslListMechs | BinaryCommand::SaslAuth { .. } | BinaryCommand::SaslStep { .. }
        );
        let exempt = sasl_exchange
            || matches!(cmd, BinaryCommand::SaslInvalid | BinaryCommand::SaslTooLarge | BinaryCommand::Version);
        if !session.authenticated && !exempt {
            return false;
        }
        if sasl_exchange {
            session.authenticated = false;
        }
        true
    }

    /// INCREMENT and DECREMENT, which create their item unless the expiration is
    /// memcached's "do not create".
    fn binary_arithmetic(
        &self,
        h: &Header,
        quiet: bool,
        (incr, key, delta, initial, exptime): (bool, &[u8], u64, u64, u32),
        out: &mut Vec<u8>,
        session: &mut Session,
    ) {
        let req = DeltaRequest {
            compare_cas: h.cas,
            vivify: (exptime != NO_CREATE).then_some(initial),
            ..DeltaRequest::new(key, incr, delta)
        };
        let mut cas = 0;
        let written = self.shared.node.arithmetic(&req, |item, now, created| {
            if created {
                let exptime = i32::try_from(exptime).unwrap_or(i32::MAX);
                item.set_expires_at(expiry::deadline(exptime, now));
            }
            cas = item.cas();
        });
        let outcome = session.note(written);
        self.counters.count_delta(incr, &outcome);
        match outcome {
            DeltaOutcome::Value(value) | DeltaOutcome::Created(value) => {
                if !quiet {
                    write_header(out, h, status::SUCCESS, 0, 0, 8, cas);
                    out.extend_from_slice(&value.to_be_bytes());
                }
            }
            DeltaOutcome::NotFound => write_error(out, h, status::KEY_ENOENT),
            DeltaOutcome::NonNumeric => write_error(out, h, status::DELTA_BADVAL),
            DeltaOutcome::Exists => write_error(out, h, status::KEY_EEXISTS),
            DeltaOutcome::NoMemory => write_error(out, h, status::ENOMEM),
            DeltaOutcome::NoMajority => write_error(out, h, status::ETMPFAIL),
        }
    }

    /// The SASL commands under `-S`; without it memcached answers each as unknown.
    fn binary_sasl(&self, h: &Header, cmd: BinaryCommand<'_>, out: &mut Vec<u8>, session: &mut Session) {
        let c = self.counters;
        let Some(credentials) = &self.shared.sasl else {
            return write_error(out, h, status::UNKNOWN_COMMAND);
        };
        match cmd {
            BinaryCommand::SaslListMechs => {
                write_header(out, h, status::SUCCESS, 0, 0, SASL_MECHANISMS.len() as u32, 0);
                out.extend_from_slice(SASL_MECHANISMS);
            }
            BinaryCommand::SaslAuth { mech, data } => {
                c.auth_cmds.inc();
                // A connection authenticates once: memcached's Cyrus context refuses to
                // start a second exchange after one completed, and the connection is
                // left unauthenticated.
                if !session.sasl_completed && mech == SASL_MECHANISMS && credentials.check_plain(data) {
                    session.authenticated = true;
                    session.sasl_completed = true;
                    write_header(out, h, status::SUCCESS, 0, 0, 13, 0);
                    out.extend_from_slice(b"Authenticated");
                } else {
                    c.auth_errors.inc();
                    write_error(out, h, status::AUTH_ERROR);
                }
            }
            BinaryCommand::SaslStep { .. } => {
                // PLAIN completes in its first message, so there is never a step.
                c.auth_cmds.inc();
                c.auth_errors.inc();
                write_error(out, h, status::AUTH_ERROR);
            }
            BinaryCommand::SaslInvalid => write_error(out, h, status::EINVAL),
            _ => write_error(out, h, status::ENOMEM),
        }
    }

    /// GET, GETK, TOUCH, GAT, GATK and their quiet forms.
    #[allow(clippy::too_many_arguments)]
    fn binary_get(
        &self,
        h: &Header,
        key: &[u8],
        touch: Option<i32>,
        (with_value, with_key, quiet): (bool, bool, bool),
        output: &mut Output,
        session: &mut Session,
    ) {
        let mut size = 0;
        let written = self.shared.node.get(key, touch, |item| {
            size = item.value().len();
            let value_len = if with_value { item.value().len() } else { 0 };
            let key_len = if with_key { key.len() } else { 0 };
            let out = output.bytes();
            write_header(out, h, status::SUCCESS, 4, key_len as u16, (4 + key_len + value_len) as u32, item.cas());
            out.extend_from_slice(&item.flags().to_be_bytes());
            if with_key {
                out.extend_from_slice(key);
            }
            if with_value {
                // A long value goes to the socket from the item, as for text `get`.
                match item.share() {
                    Some(value) => output.push_shared(value),
                    None => output.bytes().extend_from_slice(item.value()),
                }
            }
        });
        let found = session.note(written);
        let hit = found == Found::Hit;
        self.counters.count_read(touch.is_some(), hit);
        self.watch_get(key, hit.then_some(size), session.fd);
        if hit {
            return;
        }
        if quiet {
            return;
        }
        let out = output.bytes();
        if with_key {
            // A keyed miss carries the key instead of an error text.
            write_header(out, h, status::KEY_ENOENT, 0, key.len() as u16, key.len() as u32, 0);
            out.extend_from_slice(key);
        } else {
            write_error(out, h, status::KEY_ENOENT);
        }
    }

    /// STAT: one response per statistic (key = name, value = value), then an empty one.
    fn binary_stats(&self, h: &Header, group: &[u8], out: &mut Vec<u8>) {
        let shared = self.shared;
        let mut sink = BinaryStats::new(out, h);
        // memcached matches these groups by prefix (proto_bin.c `process_bin_stat`).
        match group {
            b"" => shared.write_general_stats(&mut sink),
            g if g.starts_with(b"reset") => {
                shared.reset_stats();
                sink.end();
            }
            g if g.starts_with(b"settings") => shared.write_settings_stats(&mut sink),
            g if g.starts_with(b"detail") => match &g[6..] {
                rest if rest.starts_with(b" on") || rest.starts_with(b" off") || rest.starts_with(b" dump") => {
                    sink.end()
                }
                _ => write_error(out, h, status::KEY_ENOENT),
            },
            b"items" => shared.write_items_stats(&mut sink),
            b"slabs" => shared.write_slabs_stats(&mut sink),
            b"sizes" => shared.write_sizes_stats(&mut sink),
            b"replication" => shared.write_replication_stats(&mut sink),
            _ => write_error(out, h, status::KEY_ENOENT),
        }
    }
}

/// The success header, unless the opcode is quiet.
fn success(out: &mut Vec<u8>, h: &Header, quiet: bool, cas: u64) {
    if !quiet {
        write_header(out, h, status::SUCCESS, 0, 0, 0, cas);
    }
}

/// A storage command's answer: `op` names set, add or replace; None is append or
/// prepend.
fn answer_store(out: &mut Vec<u8>, h: &Header, quiet: bool, outcome: &StoreOutcome, op: Option<StoreOp>) {
    match outcome {
        StoreOutcome::Stored { cas, .. } => success(out, h, quiet, *cas),
        _ => write_error(out, h, outcome::binary_store_status(outcome, op)),
    }
}
