//! Replication between two peers that both accept writes: the record of recent
//! changes kept for a peer that reconnects ([`backlog`]), the frames the peers
//! exchange ([`wire`]), how they prove they belong together ([`handshake`]), what
//! the heartbeat tells of a peer's health and clock ([`heartbeat`]), one link's
//! conversation without I/O ([`session`]), the replication state a node's threads share
//! ([`replicator`]), the link's decisions without I/O (`links`: which connection
//! to keep, when to dial and to send), and the event loop that moves the bytes, on
//! a thread of its own or hosted by the server's first worker ([`link`]). The store decides
//! which state of a key wins (`store::replica`); this layer decides what to send
//! and when. It knows nothing of the client protocols or the server.

pub mod backlog;
mod claims;
pub mod handshake;
pub mod heartbeat;
pub mod link;
mod links;
pub mod replicator;
pub mod session;
pub mod wire;

pub use link::{LinkRunner, LinkThread};
pub use replicator::{ClaimRule, Replicator, Settings, SyncMode};

#[cfg(test)]
mod simulator;
#[cfg(test)]
mod tests;
