//! Replication between two peers that both accept writes: the record of recent
//! changes kept for a peer that reconnects ([`backlog`]), the frames the peers
//! exchange ([`wire`]), how they prove they belong together ([`handshake`]), and
//! what the heartbeat tells of a peer's health and clock ([`heartbeat`]). The store decides which state of a key wins
//! (`store::replica`); this layer decides what to send and when.

pub mod backlog;
pub mod handshake;
pub mod heartbeat;
pub mod wire;
