//! What a front end may see of the store: reads of its statistics, clock and
//! settings, never a write. Front ends get it from the node (`Node::view`); every
//! write goes through the node, whose receipt says what replication recorded.

use super::{Clock, Store, StoreStats};

/// A read-only handle on the store.
///
/// Outside this crate a write can only go through the node. The view has none:
///
/// ```compile_fail
/// # use stickless::store::{StoreMode, StoreRequest};
/// fn write_around(node: &stickless::node::Node) {
///     node.view().store(&StoreRequest::new(StoreMode::Set, b"k", b"v"));
/// }
/// ```
///
/// and a store's writes without a receipt exist only in its own tests:
///
/// ```compile_fail
/// # use stickless::store::{Store, StoreMode, StoreRequest};
/// fn write_around(store: &Store) {
///     store.store(&StoreRequest::new(StoreMode::Set, b"k", b"v"));
/// }
/// ```
///
/// while the ones that note a receipt are the node's alone:
///
/// ```compile_fail
/// # use stickless::store::{Receipt, Store, StoreMode, StoreRequest};
/// fn write_around(store: &Store) {
///     store.store_noted(&StoreRequest::new(StoreMode::Set, b"k", b"v"), &mut Receipt::default());
/// }
/// ```
///
/// The node's own write compiles:
///
/// ```
/// # use stickless::store::{StoreMode, StoreRequest};
/// fn write_through(node: &stickless::node::Node) {
///     let _ = node.store_item(&StoreRequest::new(StoreMode::Set, b"k", b"v"));
/// }
/// ```
#[derive(Clone, Copy)]
pub struct StoreView<'a> {
    store: &'a Store,
}

impl<'a> StoreView<'a> {
    pub(crate) fn new(store: &'a Store) -> StoreView<'a> {
        StoreView { store }
    }

    pub fn stats(&self) -> StoreStats {
        self.store.stats()
    }

    /// The store's clock: the time every expiry and version is reckoned in.
    pub fn clock(&self) -> &'a Clock {
        self.store.clock()
    }

    pub fn memory_limit(&self) -> usize {
        self.store.memory_limit()
    }

    /// `cache_memlimit`: a setting, not an item; eviction follows at the next store.
    pub fn set_memory_limit(&self, bytes: usize) {
        self.store.set_memory_limit(bytes);
    }

    /// `--protect-prefix` given after the store opened (an embedded node's `serve`);
    /// false if prefixes were already set.
    pub fn protect_prefixes(&self, prefixes: Vec<Box<[u8]>>) -> bool {
        self.store.protect_prefixes(prefixes)
    }

    pub fn shard_count(&self) -> usize {
        self.store.shard_count()
    }

    /// Live items whose key begins with `prefix` (the ASP.NET sessions).
    pub fn count_prefix(&self, prefix: &[u8]) -> u64 {
        self.store.count_prefix(prefix)
    }

    pub fn tombstone_bytes(&self) -> usize {
        self.store.tombstone_bytes()
    }

    /// `stats reset`: the counters, not the items.
    pub fn reset_stats(&self) {
        self.store.reset_stats();
    }
}
