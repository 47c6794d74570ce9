//! The front ends: where a protocol's command meets the node.
//!
//! ```text
//!  text.rs     memcached's text protocol (get, set, delete, incr, stats, watch, ...)
//!  meta.rs     the meta commands (mg, ms, md, ma, mn, me)
//!  binary.rs   memcached's binary protocol, SASL included
//!  aspnet.rs   ASP.NET's state server protocol (HTTP/1 requests on its own port)
//!  auth.rs     the credentials that SASL (-S) and text authentication (-Y) check
//!  outcome.rs  how a store's outcome is counted in stats and spelled on each wire
//!  output.rs   the replies a connection has pending, which the front ends append
//!              to and the connection writes with one writev
//!  mod.rs      what they all share (below)
//! ```
//!
//! Each write goes through [`crate::node::Node`], whose receipt the connection
//! holds the reply on, and each outcome is counted and spelled through
//! `outcome.rs`, so a new front end (another protocol) follows the same two steps.
//!
//! What every front end shares: a connection's [`Session`] (the receipts of its
//! writes, which its replies wait on), the worker's [`Dispatch`] view of the server,
//! the storage step every protocol's `set` runs, and the `watch` lines.

pub mod aspnet;
pub mod auth;
pub mod binary;
pub mod meta;
mod outcome;
pub mod output;
pub mod text;

use crate::node::Written;
use crate::protocol::WatchKinds;
use crate::protocol::command::memcached_item_size;
use crate::server::Shared;
use crate::server::operations::stats::Counters;
use crate::server::operations::watch::StoreEvent;
use crate::store::{self, Receipt, StoreOutcome, StoreRequest};

/// What the connection does after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// `quit`: send what is pending, then close.
    Close,
    /// `watch`: once the replies before it are out, the connection only receives
    /// log lines of these kinds.
    Watch(WatchKinds),
}

/// What a connection's commands may change about it.
#[derive(Debug, Default)]
pub struct Session {
    /// SASL (`-S`) or text authentication (`-Y`) succeeded.
    pub authenticated: bool,
    /// A SASL exchange completed on this connection: as with memcached's Cyrus SASL
    /// context, another cannot start on it.
    pub sasl_completed: bool,
    /// The connection's descriptor, which `watch` lines name as `cfd`.
    pub fd: i32,
    /// What replication recorded of the writes run since the connection last
    /// looked: their answers wait for it (an acknowledgement, a claim's verdict).
    pub written: Receipt,
}

impl Session {
    /// Keeps a write's receipt for the connection; returns what the store did.
    #[inline]
    pub fn note<T>(&mut self, written: Written<T>) -> T {
        self.written.merge(written.receipt);
        written.outcome
    }
}

/// A worker's view of the server while it runs commands.
pub struct Dispatch<'a> {
    pub shared: &'a Shared,
    pub counters: &'a Counters,
}

impl Dispatch<'_> {
    /// Counts and runs a storage command, and tells `watch mutations` how it went:
    /// the part of `set` every protocol shares.
    pub(super) fn store(&self, req: &StoreRequest<'_>, session: &mut Session) -> StoreOutcome {
        self.counters.cmd_set.inc();
        let outcome = session.note(self.shared.node.store_item(req));
        self.watch_store(req, &outcome, session.fd);
        self.counters.count_store(req.mode, &outcome);
        outcome
    }

    /// Whether an item under a key of `key_len` bytes, with these flags and this
    /// value length, is within `-I` as memcached counts it (for append and prepend,
    /// whose result the parser cannot size).
    pub(super) fn item_fits(&self, key_len: usize) -> impl Fn(u32, usize) -> bool + use<> {
        let limits = self.shared.limits;
        move |flags, len| memcached_item_size(key_len, flags, len, limits.cas_enabled) <= limits.item_size_max
    }

    /// Tells `watch mutations` how a storage command went. Inlined to a single
    /// relaxed load while nobody watches.
    #[inline]
    pub(super) fn watch_store(&self, req: &StoreRequest<'_>, outcome: &StoreOutcome, cfd: i32) {
        if self.shared.watch.wants(WatchKinds::MUTATIONS) {
            self.log_store(req, outcome, cfd);
        }
    }

    #[inline(never)]
    fn log_store(&self, req: &StoreRequest<'_>, outcome: &StoreOutcome, cfd: i32) {
        let now = self.shared.node.view().clock().now_secs();
        let requested = store::expiry::deadline(req.exptime, now);
        let (status, expires_at, size) = match *outcome {
            StoreOutcome::Stored { expires_at, value_len, .. } => ("stored", expires_at, value_len),
            StoreOutcome::NotStored => ("not_stored", requested, req.data.len()),
            StoreOutcome::Exists => ("exists", requested, req.data.len()),
            StoreOutcome::NotFound => ("not_found", requested, req.data.len()),
            StoreOutcome::NoMemory => ("no_memory", requested, req.data.len()),
            StoreOutcome::NoMajority => ("no_majority", requested, req.data.len()),
        };
        let cmd = req.mode.name();
        let ttl = if expires_at == 0 { 0 } else { expires_at.saturating_sub(now) };
        self.shared.watch.item_store(&StoreEvent { key: req.key, status, cmd, ttl, cfd, size });
    }

    /// Tells `watch fetchers` of a read; `size` is the value's length on a hit.
    #[inline]
    pub(super) fn watch_get(&self, key: &[u8], size: Option<usize>, cfd: i32) {
        if self.shared.watch.wants(WatchKinds::FETCHERS) {
            self.shared.watch.item_get(key, size, cfd);
        }
    }

    /// Tells `watch deletions` of a removed item.
    #[inline]
    pub(super) fn watch_deleted(&self, key: &[u8], cmd: &str, size: usize) {
        if self.shared.watch.wants(WatchKinds::DELETIONS) {
            self.shared.watch.deleted(key, cmd, size);
        }
    }
}
