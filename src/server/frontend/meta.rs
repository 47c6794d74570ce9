//! The meta commands against the store: `mg`, `ms`, `md`, `ma`, `me`.
//!
//! Replies follow memcached's proto_text.c byte for byte: the status code, then the
//! return flags in the order the request named them, then for `mg` the `Z`, `X` and
//! `W` markers of the stale-while-revalidate protocol. `q` hides only the nominal
//! reply (`EN` for `mg`; `HD` for `ms`, `md` and `ma`).

use super::outcome::{self, DeleteCounting};
use super::output::Output;
use super::{Dispatch, Session};
use crate::number::write_u64;
use crate::protocol::command::{KEY_MAX_LENGTH, encode_key, memcached_item_size, memcached_slab_class};
use crate::protocol::command::{MetaFlags, MetaRequest, decode_key};
use crate::protocol::meta;
use crate::protocol::reply::ErrorReply;
use crate::store::{
    DeleteOutcome, DeleteRequest, DeltaOutcome, DeltaRequest, Item, MetaFound, StoreMode, StoreOutcome, StoreRequest,
    Vivify, expiry,
};

/// ` k<key>`, in base64 followed by ` b` when the key is binary (memcached `META_KEY`).
fn write_key_flag(out: &mut Vec<u8>, key: &[u8], binary: bool) {
    out.extend_from_slice(b" k");
    if binary {
        encode_key(key, out);
        out.extend_from_slice(b" b");
    } else {
        out.extend_from_slice(key);
    }
}

/// The return flags every reply carries, hit or miss: `O` and `k`.
fn write_opaque_and_key(out: &mut Vec<u8>, flags: &MetaFlags<'_>, key: &[u8]) {
    for token in flags.tokens() {
        match token[0] {
            b'O' => {
                out.push(b' ');
                out.extend_from_slice(token);
            }
            b'k' => write_key_flag(out, key, flags.binary_key()),
            _ => {}
        }
    }
}

/// ` t<seconds left>`, or ` t-1` for an item that never expires.
fn write_ttl_flag(out: &mut Vec<u8>, item: &Item, now: u32) {
    out.extend_from_slice(b" t");
    match item.expires_at() {
        0 => out.extend_from_slice(b"-1"),
        at => write_u64(out, u64::from(at.saturating_sub(now))),
    }
}

fn write_flag_number(out: &mut Vec<u8>, letter: u8, value: u64) {
    out.push(b' ');
    out.push(letter);
    write_u64(out, value);
}

/// An `mg` hit: its status, return flags and value, with `T` applied and the
/// recache token handed out as the flags ask; returns whether `T` set a new TTL.
fn write_meta_hit(f: &MetaFlags<'_>, item: &mut Item, now: u32, created: bool, output: &mut Output) -> bool {
    let out = output.bytes();
    out.reserve(64);
    let len = item.value().len() as u64;
    if f.has(b'v') {
        out.extend_from_slice(b"VA ");
        write_u64(out, len);
    } else {
        out.extend_from_slice(b"HD");
    }
    let mut won = false;
    for token in f.tokens() {
        match token[0] {
            b'T' => {
                item.set_expires_at(expiry::deadline(f.ttl, now));
            }
            b'N' if created => {
                item.set_expires_at(expiry::deadline(f.vivify_ttl, now));
                won = true;
            }
            b'R' => {
                // Win the recache token when the item runs out before the
                // deadline the client named, unless another client has it.
                let expires_at = item.expires_at();
                if !item.recache_token_taken()
                    && !created
                    && expires_at != 0
                    && expires_at < expiry::deadline(f.recache_ttl, now)
                {
                    won = true;
                }
            }
            b's' => write_flag_number(out, b's', len),
            b't' => write_ttl_flag(out, item, now),
            b'c' => write_flag_number(out, b'c', item.cas()),
            b'f' => write_flag_number(out, b'f', u64::from(item.flags())),
            b'l' => write_flag_number(out, b'l', u64::from(now.saturating_sub(item.last_access()))),
            b'h' => out.extend_from_slice(if item.was_fetched() { b" h1" } else { b" h0" }),
            b'O' => {
                out.push(b' ');
                out.extend_from_slice(token);
            }
            b'k' => write_key_flag(out, item.key(), item.key_is_binary()),
            _ => {}
        }
    }
    // Z before W, so a client never sees both (proto_text.c).
    if item.recache_token_taken() {
        out.extend_from_slice(b" Z");
    }
    if item.is_stale() {
        out.extend_from_slice(b" X");
        if !item.recache_token_taken() {
            won = true;
        }
    }
    if won {
        out.extend_from_slice(b" W");
        item.take_recache_token();
    }
    out.extend_from_slice(b"\r\n");
    if f.has(b'v') {
        // A long value goes to the socket from the item, as for `get`.
        match item.share() {
            Some(value) => output.push_shared(value),
            None => output.bytes().extend_from_slice(item.value()),
        }
        output.bytes().extend_from_slice(b"\r\n");
    }
    f.has(b'T')
}

impl Dispatch<'_> {
    /// `mg <key> <flags>*`
    pub fn meta_get(&self, req: MetaRequest<'_>, output: &mut Output, session: &mut Session) {
        let mut key_buf = [0; KEY_MAX_LENGTH];
        let key = req.key(&mut key_buf);
        let f = &req.flags;
        let vivify =
            f.has(b'N').then(|| Vivify { exptime: f.vivify_ttl, cas: f.explicit_cas(), binary_key: f.binary_key() });
        let mut ttl_set = false;
        let mut size = 0;
        let written = self.shared.node.get_for_meta(key, vivify, !f.has(b'u'), |item, now, created| {
            size = item.value().len();
            ttl_set = write_meta_hit(f, item, now, created, output);
        });
        let found = session.note(written);
        let hit = found != MetaFound::Miss;
        self.watch_get(key, (found == MetaFound::Hit).then_some(size), session.fd);
        self.counters.count_read(ttl_set, hit);
        if !hit && !f.quiet() {
            let out = output.bytes();
            out.extend_from_slice(b"EN");
            write_opaque_and_key(out, f, key);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// `ms <key> <datalen> <flags>*` with its data.
    pub fn meta_set(&self, req: MetaRequest<'_>, data: &[u8], out: &mut Vec<u8>, session: &mut Session) {
        let mut key_buf = [0; KEY_MAX_LENGTH];
        let key = req.key(&mut key_buf);
        let f = &req.flags;
        let mut mode = match f.mode {
            b'E' => StoreMode::Add,
            b'A' => StoreMode::Append,
            b'P' => StoreMode::Prepend,
            b'R' => StoreMode::Replace,
            _ => StoreMode::Set,
        };
        // A CAS turns set and replace into cas; append and prepend check it
        // themselves; add ignores it (proto_text.c `process_mset_command`).
        if f.has(b'C') && matches!(mode, StoreMode::Set | StoreMode::Replace) {
            mode = StoreMode::Cas;
        }
        let fits = self.item_fits(key.len());
        let vivify = f.has(b'N') && matches!(mode, StoreMode::Append | StoreMode::Prepend);
        let store_req = StoreRequest {
            flags: f.client_flags,
            exptime: if vivify { f.vivify_ttl } else { f.ttl },
            cas_unique: if mode == StoreMode::Add { 0 } else { f.compare_cas },
            fits: Some(&fits),
            allow_stale: f.has(b'I') && mode == StoreMode::Cas,
            new_cas: f.explicit_cas(),
            vivify,
            binary_key: f.binary_key(),
            // A failed meta set never leaves the old value behind, whatever the mode.
            failure_discards_old: true,
            ..StoreRequest::new(mode, key, data)
        };
        let outcome = self.store(&store_req, session);
        let cas = match outcome {
            StoreOutcome::Stored { .. } if f.quiet() => return,
            StoreOutcome::Stored { cas, .. } => cas,
            StoreOutcome::NoMemory | StoreOutcome::NoMajority => {
                out.extend_from_slice(outcome::meta_store_status(&outcome));
                return;
            }
            _ => 0,
        };
        let status = outcome::meta_store_status(&outcome);
        out.extend_from_slice(status);
        for token in f.tokens() {
            match token[0] {
                b'O' => {
                    out.push(b' ');
                    out.extend_from_slice(token);
                }
                b'k' => write_key_flag(out, key, f.binary_key()),
                b'c' => write_flag_number(out, b'c', cas),
                _ => {}
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// `ms` whose data exceeds the item size limit.
    pub fn meta_set_too_large(&self, req: MetaRequest<'_>, out: &mut Vec<u8>, session: &mut Session) {
        self.counters.store_too_large.inc();
        let mut key_buf = [0; KEY_MAX_LENGTH];
        session.note(self.shared.node.refuse_store(req.key(&mut key_buf), true));
        out.extend_from_slice(ErrorReply::TooLarge.line());
    }

    /// `md <key> <flags>*`
    pub fn meta_delete(&self, req: MetaRequest<'_>, out: &mut Vec<u8>, session: &mut Session) {
        let mut key_buf = [0; KEY_MAX_LENGTH];
        let key = req.key(&mut key_buf);
        let f = &req.flags;
        let delete = DeleteRequest {
            key,
            compare_cas: f.compare_cas(),
            invalidate: f.has(b'I'),
            ttl: f.has(b'T').then_some(f.ttl),
            new_cas: f.explicit_cas(),
            empty_value: f.has(b'x').then_some((f.client_flags, if f.has(b'T') { f.ttl } else { 0 })),
        };
        let outcome = session.note(self.shared.node.delete(&delete));
        self.counters.count_delete(&outcome, DeleteCounting::Meta { invalidate: delete.invalidate });
        if let DeleteOutcome::Deleted { value_len } = outcome {
            self.watch_deleted(key, "md", value_len);
        }
        let status = outcome::meta_delete_status(&outcome);
        match outcome {
            DeleteOutcome::NoMemory => {
                out.extend_from_slice(status);
                return;
            }
            DeleteOutcome::Deleted { .. } | DeleteOutcome::Kept if f.quiet() => return,
            _ => {}
        }
        out.extend_from_slice(status);
        write_opaque_and_key(out, f, key);
        out.extend_from_slice(b"\r\n");
    }

    /// `ma <key> <flags>*`
    pub fn meta_arithmetic(&self, req: MetaRequest<'_>, out: &mut Vec<u8>, session: &mut Session) {
        let c = self.counters;
        let mut key_buf = [0; KEY_MAX_LENGTH];
        let key = req.key(&mut key_buf);
        let f = &req.flags;
        let incr = !meta::arithmetic_decrements(f.mode);
        let delta = DeltaRequest {
            key,
            incr,
            delta: f.delta,
            compare_cas: f.compare_cas,
            vivify: f.has(b'N').then_some(f.initial),
            new_cas: f.explicit_cas(),
            apart: false,
            propose: false,
        };
        let start = out.len();
        let written = self.shared.node.arithmetic(&delta, |item, now, created| {
            // The value without the padding an in-place decrement leaves.
            let digits = item.value().iter().take_while(|b| b.is_ascii_digit()).count();
            if f.has(b'v') {
                out.extend_from_slice(b"VA ");
                write_u64(out, digits as u64);
            } else {
                out.extend_from_slice(b"HD");
            }
            for token in f.tokens() {
                match token[0] {
                    b'c' => write_flag_number(out, b'c', item.cas()),
                    b't' => write_ttl_flag(out, item, now),
                    b'T' => item.set_expires_at(expiry::deadline(f.ttl, now)),
                    b'N' if created => item.set_expires_at(expiry::deadline(f.vivify_ttl, now)),
                    b'O' => {
                        out.push(b' ');
                        out.extend_from_slice(token);
                    }
                    b'k' => write_key_flag(out, key, f.binary_key()),
                    _ => {}
                }
            }
            out.extend_from_slice(b"\r\n");
            if f.has(b'v') {
                out.extend_from_slice(&item.value()[..digits]);
                out.extend_from_slice(b"\r\n");
            }
        });
        let outcome = session.note(written);
        c.count_delta(incr, &outcome);
        let status: &[u8] = match outcome {
            DeltaOutcome::Value(_) => {
                // memcached hides a quiet success, but not an item it created.
                if f.quiet() {
                    out.truncate(start);
                }
                return;
            }
            DeltaOutcome::Created(_) => return,
            DeltaOutcome::NotFound => b"NF",
            DeltaOutcome::Exists => b"EX",
            DeltaOutcome::NonNumeric => {
                out.extend_from_slice(ErrorReply::NonNumeric.line());
                return;
            }
            DeltaOutcome::NoMemory => {
                out.extend_from_slice(ErrorReply::OutOfMemory.line());
                return;
            }
            DeltaOutcome::NoMajority => {
                out.extend_from_slice(ErrorReply::NoMajority.line());
                return;
            }
        };
        out.extend_from_slice(status);
        write_opaque_and_key(out, f, key);
        out.extend_from_slice(b"\r\n");
    }

    /// `me <key> [b]`: memcached's debug line, with its slab class and item size.
    pub fn meta_debug(&self, key: &[u8], binary: bool, out: &mut Vec<u8>) {
        let mut key_buf = [0; KEY_MAX_LENGTH];
        let key = if binary { decode_key(key, &mut key_buf).expect("checked by the parser") } else { key };
        let cas_enabled = self.shared.limits.cas_enabled;
        // No vivify and no bump: a read, which records nothing.
        let found = self.shared.node.get_for_meta(key, None, false, |item, now, _| {
            out.extend_from_slice(b"ME ");
            if item.key_is_binary() {
                encode_key(item.key(), out);
            } else {
                out.extend_from_slice(item.key());
            }
            // memcached prints `current_time - exptime`: minus the seconds left.
            out.extend_from_slice(b" exp=");
            match item.expires_at() {
                0 => out.extend_from_slice(b"-1"),
                at if at > now => {
                    out.push(b'-');
                    write_u64(out, u64::from(at - now));
                }
                _ => out.push(b'0'),
            }
            out.extend_from_slice(b" la=");
            write_u64(out, u64::from(now.saturating_sub(item.last_access())));
            out.extend_from_slice(b" cas=");
            write_u64(out, item.cas());
            let fetched = item.was_fetched();
            out.extend_from_slice(if fetched { b" fetch=yes" } else { b" fetch=no" });
            let size = memcached_item_size(item.key().len(), item.flags(), item.value().len(), cas_enabled);
            out.extend_from_slice(b" cls=");
            write_u64(out, u64::from(memcached_slab_class(size)));
            out.extend_from_slice(b" size=");
            write_u64(out, size as u64);
            out.extend_from_slice(b"\r\n");
        });
        if found.outcome == MetaFound::Miss {
            out.extend_from_slice(b"EN\r\n");
        }
    }
}
