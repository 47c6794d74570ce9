//! stickless: a memcached-compatible session cache.
//!
//! ```text
//!  protocol/  bytes <-> Command; no I/O, no store
//!  store/     striped expiring table, CAS, eviction; no I/O, no protocol
//!  server/    mio event loops, listener, connections; dispatch.rs joins the two above
//!  replication/ what a peer is sent and when: the backlog of changed keys
//! ```
//!
//! Threads of the daemon:
//!
//! ```text
//!   acceptor ──(crossbeam channel + Waker)──► worker 0..t  (one mio Poll each)
//!                                                │  parse ► dispatch ► store
//!   sweeper ── every tick: Store::sweep_step ────┘  (shard locks, never across I/O)
//! ```

pub mod protocol;
pub mod replication;
pub mod server;
pub mod store;
