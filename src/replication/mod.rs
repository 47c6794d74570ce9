//! Replication between two peers that both accept writes: the record of recent
//! changes kept for a peer that reconnects ([`backlog`]). The store decides which
//! state of a key wins (`store::replica`); this layer decides what to send and when.

pub mod backlog;
