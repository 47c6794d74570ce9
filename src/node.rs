//! The node: the one door every front end writes through.
//!
//! A front end (the text, meta and binary protocols in `server`, the C ABI in `ffi`,
//! and any protocol added later) turns a request into a store request, hands it to
//! [`Node`], and answers from the [`Written`] it gets back: the store's outcome, and
//! the [`Receipt`] of what replication recorded. The receipt is what the answer may
//! have to wait for: under `--repl-sync ack` the peer's acknowledgement of
//! `receipt.recorded`, and while a peer is linked the verdict on `receipt.claim`
//! (an `add`, `cas` or `incr` the peer may refuse, after which the write runs again).
//! A claim that needs a majority this node cannot reach is refused here, before
//! the store sees it.
//!
//! The pattern, for the next front end:
//!
//! ```text
//!   request ─► store request ─► Node::<write>() ─► Written { outcome, receipt }
//!                                                     │          └─► wait: ack, claim
//!                                                     └─► outcome::<policy> ─► reply
//! ```
//!
//! The store tells replication of every change itself (its change observer), so no
//! front end can write without replicating; going through the node is what tells the
//! front end which change was its own, on whatever thread the write ran. A front end
//! never holds the store: it reads through [`Node::view`], which has no writes, and
//! the store's writes without a receipt exist only in its own tests.

use crate::replication::Replicator;
use crate::store::{
    DeleteOutcome, DeleteRequest, DeltaOutcome, DeltaRequest, Found, Item, MetaFound, Receipt, Store, StoreOutcome,
    StoreRequest, StoreView, Vivify,
};
use std::sync::{Arc, OnceLock};

/// A write's result: what the store did, and what replication recorded of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "the receipt says what the write's answer must wait for"]
pub struct Written<T> {
    pub outcome: T,
    pub receipt: Receipt,
}

/// The store, and once it replicates, its replication.
pub struct Node {
    store: Arc<Store>,
    replicator: OnceLock<Arc<Replicator>>,
}

impl Node {
    pub fn new(store: Arc<Store>) -> Node {
        Node { store, replicator: OnceLock::new() }
    }

    /// What a front end sees of the store: reads, statistics and settings.
    pub fn view(&self) -> StoreView<'_> {
        StoreView::new(&self.store)
    }

    /// The store itself, for the threads that keep it beside the front ends: the
    /// sweeper, replication and warm restart, which the server starts and stops.
    /// A front end reads through [`Node::view`] and writes through the methods
    /// below, whose receipts say what each write must wait for.
    pub(crate) fn store_for_upkeep(&self) -> &Arc<Store> {
        &self.store
    }

    /// The replication, once started.
    pub fn replicator(&self) -> Option<&Arc<Replicator>> {
        self.replicator.get()
    }

    /// Starts replicating through `replicator` (over this node's store); false if
    /// the node already replicates.
    pub fn replicate(&self, replicator: Arc<Replicator>) -> bool {
        debug_assert!(replicator.replicates(&self.store));
        self.replicator.set(replicator).is_ok()
    }

    /// set, add, replace, append, prepend and cas. A claim
    /// ([`StoreRequest::is_claim`]) that needs a majority of the nodes this node
    /// cannot reach is refused untried ([`StoreOutcome::NoMajority`]).
    pub fn store_item(&self, req: &StoreRequest<'_>) -> Written<StoreOutcome> {
        let mut receipt = Receipt::default();
        let replicator = self.replicator.get().filter(|_| req.is_claim());
        if let Some(replicator) = replicator {
            if replicator.refuse_claim_now() {
                return Written { outcome: StoreOutcome::NoMajority, receipt };
            }
            if replicator.proposes() {
                // Proposed, and applied only once a majority accepts it.
                let req = StoreRequest { propose: true, ..*req };
                let outcome =
                    replicator.propose(req.key, &mut receipt, |receipt| self.store.store_noted(&req, receipt));
                // Waiting for this node's vote: the answer is never sent, the
                // command runs again once the vote is free.
                let waiting = StoreOutcome::Stored { cas: 0, expires_at: 0, value_len: 0 };
                return Written { outcome: outcome.unwrap_or(waiting), receipt };
            }
        }
        let outcome = self.store.store_noted(req, &mut receipt);
        Written { outcome, receipt }
    }

    /// Refuses a storage command before it reaches the store (a value over the item
    /// size limit): with `discard_old`, the key's old value goes too, as memcached
    /// removes it on a failed `set` (proto_text.c `process_update_command`).
    pub fn refuse_store(&self, key: &[u8], discard_old: bool) -> Written<()> {
        let mut receipt = Receipt::default();
        if discard_old {
            self.store.discard_noted(key, &mut receipt);
        }
        Written { outcome: (), receipt }
    }

    /// delete and meta delete.
    pub fn delete(&self, req: &DeleteRequest<'_>) -> Written<DeleteOutcome> {
        let mut receipt = Receipt::default();
        let outcome = self.store.delete_for_meta_noted(req, &mut receipt);
        Written { outcome, receipt }
    }

    /// incr, decr and meta arithmetic; `changed` sees the item after a success.
    /// Linked with every peer it is a claim. Short of one, under `--repl-claims
    /// local` it is counted apart, to be added to what the others count
    /// (`store/counter.rs`); under `majority` it stays a claim while a majority is
    /// reachable and is refused when none is (pecl memcache takes its session lock
    /// when an `incr` answers 1: counted apart on both sides of a cut, two
    /// clients would hold it).
    pub fn arithmetic(
        &self,
        req: &DeltaRequest<'_>,
        changed: impl FnOnce(&mut Item, u32, bool),
    ) -> Written<DeltaOutcome> {
        let mut receipt = Receipt::default();
        let replicator = self.replicator.get();
        if replicator.is_some_and(|replicator| replicator.refuse_claim_now()) {
            return Written { outcome: DeltaOutcome::NoMajority, receipt };
        }
        if let Some(replicator) = replicator.filter(|replicator| replicator.proposes()) {
            // Proposed, and applied only once a majority accepts it.
            let req = DeltaRequest { propose: true, ..*req };
            let outcome = replicator
                .propose(req.key, &mut receipt, |receipt| self.store.arithmetic_noted(&req, changed, receipt));
            // Waiting for this node's vote: as for a store.
            return Written { outcome: outcome.unwrap_or(DeltaOutcome::Value(0)), receipt };
        }
        let apart = replicator.is_some_and(|replicator| replicator.counts_apart());
        let req = DeltaRequest { apart, ..*req };
        let outcome = self.store.arithmetic_noted(&req, changed, &mut receipt);
        Written { outcome, receipt }
    }

    /// get, and with `touch` gat and touch (a write: the new TTL replicates).
    pub fn get(&self, key: &[u8], touch: Option<i32>, read: impl FnOnce(&Item)) -> Written<Found> {
        let mut receipt = Receipt::default();
        let outcome = self.store.get_noted(key, touch, read, &mut receipt);
        Written { outcome, receipt }
    }

    /// The meta get (see `Store::get_for_meta_noted`): a write when it creates the item
    /// or gives it a new TTL.
    pub fn get_for_meta(
        &self,
        key: &[u8],
        vivify: Option<Vivify>,
        bump: bool,
        read: impl FnOnce(&mut Item, u32, bool),
    ) -> Written<MetaFound> {
        let mut receipt = Receipt::default();
        let outcome = self.store.get_for_meta_noted(key, vivify, bump, read, &mut receipt);
        Written { outcome, receipt }
    }

    /// flush_all.
    pub fn flush_all(&self, delay: i32) -> Written<()> {
        let mut receipt = Receipt::default();
        self.store.flush_all_noted(delay, &mut receipt);
        Written { outcome: (), receipt }
    }
}
