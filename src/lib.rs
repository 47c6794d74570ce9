//! stickless: a memcached-compatible session cache.
//!
//! ```text
//!  number.rs    memcached's decimal numbers (util.c's acceptance rules), parsed and
//!               formatted; used by the protocols and by the store's incr/decr
//!  store_mode.rs memcached's storage commands (set, add, ... cas): parsed by the
//!               protocols, executed by the store
//!  tls.rs       rustls under the client ports and the replication link
//!  protocol/    bytes <-> Command; no I/O, no store
//!  store/       striped expiring table, CAS, eviction, versions, applying a
//!               peer's states; no I/O, no protocol
//!  replication/ the peer link: backlog, frames, handshake, heartbeat, sessions and
//!               the link's event loop (hosted by the first worker); uses store,
//!               knows nothing of the client protocols
//!  node.rs      the one door every front end writes through: the store and its
//!               replication; a write's result says what it did and what its
//!               answer waits for, and front ends see the store only through its
//!               read-only view
//!  server/      the daemon: frontend/ (text, meta, binary, ASP.NET: commands
//!               run through the node), event_loop/ (acceptor, mio workers,
//!               connections), operations/ (stats, metrics, watch, warm restart),
//!               config/ (flags); starts replication
//!  ffi/         the C ABI (include/stickless.h): the store embedded in a host
//!               process, serving and replicating through server/ on request; the
//!               only extern "C" items
//! ```
//!
//! Each names only what is listed above it (`tests/layout.rs` holds it to that).
//!
//! Threads of the daemon (`main.rs`, with `service.rs` for -d, -P and -u):
//!
//! ```text
//!   acceptor ──(crossbeam channel + Waker)──► worker 0..t  (one mio Poll each)
//!                                              │  parse ► node ► store ► receipt
//!   sweeper ── every tick: sweep_step ─────────┤  (shard locks, never across I/O)
//!                                              │  store observer ► backlog
//!                                              │  receipts ► worker ► link
//!   worker 0 also hosts the replication link: its listener and peer links are one
//!   mio Poll that worker 0 watches, so its own clients' changes go out in the turn
//!   they were made; the other workers wake it once per turn when their receipts
//!   say they recorded changes (and acknowledgements wake the workers).
//!   metrics, watch writer: a thread each, when asked for
//! ```

pub mod ffi;
pub mod node;
pub mod number;
pub mod protocol;
pub mod replication;
pub mod server;
pub mod store;
pub mod store_mode;
pub mod tls;
