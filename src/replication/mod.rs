//! Replication between two peers that both accept writes: the record of recent
//! changes kept for a peer that reconnects ([`backlog`]), the frames the peers
//! exchange ([`wire`]) and how they prove they belong together ([`handshake`]). The store decides which state of a key wins
//! (`store::replica`); this layer decides what to send and when.

pub mod backlog;
pub mod handshake;
pub mod wire;
