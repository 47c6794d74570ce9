//! The event loops and their connections.
//!
//! ```text
//!  listener.rs  listening sockets and the acceptor thread, which hands each new
//!               connection to a worker, round robin
//!  worker.rs    a worker thread: one mio Poll over its connections (and, on worker
//!               0 of a replicating node, the replication link's poll)
//!  conn.rs      one client connection: read, run commands, write the replies
//!  stream.rs    the socket kinds a connection runs over: TCP, unix, TLS
//!  registry.rs  every listener and connection, for `stats conns`
//! ```

pub mod conn;
pub mod listener;
pub mod registry;
pub mod stream;
pub mod worker;
