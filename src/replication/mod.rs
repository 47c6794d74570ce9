//! Replication between two peers that both accept writes: the record of recent
//! changes kept for a peer that reconnects ([`backlog`]) and the frames the peers
//! exchange ([`wire`]). The store decides which state of a key wins
//! (`store::replica`); this layer decides what to send and when.

pub mod backlog;
pub mod wire;
