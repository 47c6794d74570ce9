//! The striped, expiring table: no I/O and no protocol.
//!
//! Keys hash once with ahash; the shard comes from the high bits of that hash and the
//! same hash probes the shard's hashbrown table (as dashmap's `determine_shard` and
//! memcached's `item_lock(hv)` do). Each shard is a `Mutex` on its own cache line:
//! critical sections are a table operation and a copy, never I/O, logging or a
//! blocking send, so a plain mutex beats a reader-writer lock (a get also writes the
//! item's access bits).
//!
//! Expired and flushed items are removed lazily when touched, by the CLOCK hand while
//! it looks for room, and by a bounded background sweep ([`Store::sweep_step`]).
//! Memory is bounded by `-m`: every item is charged its real malloc block and every
//! table its real allocation; when a store would go over, a CLOCK sweep over the
//! shard's buckets evicts an item that has not been read since the hand last passed.
//!
//! ```text
//!  mod.rs        the Store: shards, lookups and every verb (get, store, delete,
//!                arithmetic, touch, flush), the sweep and the statistics
//!  request.rs    what front ends ask and what the store answers
//!  eviction.rs   making room under -m: tombstones first, then the CLOCK hand
//!  item.rs       one item in one heap block
//!  expiry.rs     memcached's exptime rules
//!  clock.rs      the coarse clock, and a manual one for tests
//!  sweeper.rs    the background thread that reclaims expired items
//!  version.rs    hybrid logical clock versions (last writer wins)
//!  tombstone.rs  deleted keys' versions, while replicating
//!  counter.rs    counters kept per origin node, while replicating
//!  replica.rs    what replication needs: change observers, receipts, applying a
//!                peer's state
//!  view.rs       the read-only view the node hands to front ends
//! ```

mod clock;
mod counter;
mod eviction;
pub mod expiry;
mod item;
mod replica;
mod request;
pub mod sweeper;
mod tombstone;
pub mod version;
mod view;

pub use replica::{Applied, Change, ChangeObserver, KeyChange, KeyState, Proposal, Receipt, SyncCursor};

pub use clock::{Clock, ManualClock};
use counter::Ledger;
pub use counter::{Counter, Part};
pub use eviction::{Evicted, EvictionObserver};
use item::{BIT_CLIENT_CAS, BIT_FETCHED, BIT_KEY_BINARY, BIT_STALE, BIT_TOKEN_SENT};
pub use item::{Item, ItemMeta, ItemRef, SHARED_VALUE_MIN, allocated_size};
pub use request::{
    DeleteOutcome, DeleteRequest, DeltaOutcome, DeltaRequest, Found, MetaFound, StoreOutcome, StoreRequest, Vivify,
};
pub use view::StoreView;

use crossbeam_utils::CachePadded;
use hashbrown::HashTable;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Settings of a store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// `-m`: bytes the items and tables may use.
    pub memory_limit: usize,
    /// False with `-M`: refuse a store instead of evicting.
    pub evict: bool,
    /// Number of shards; rounded up to a power of two.
    pub shards: usize,
    /// False with `-C`: every item's CAS is 0, and `flush_all` goes by time alone.
    pub cas_enabled: bool,
    /// This node's id, the low bits of every version it makes ([`version`]).
    pub node_id: u16,
    /// `--protect-prefix`: live items whose key begins with one of these are never
    /// evicted; when only they are left, a store answers out of memory instead.
    pub protected_prefixes: Vec<Box<[u8]>>,
    /// The key hash's seed. `None` (the daemon's): random per store, so that
    /// nobody can choose keys that collide. A fixed seed makes the store's order
    /// (shards, eviction, a full sync's) repeat from run to run, as the
    /// simulator's seeds need.
    pub hash_seed: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            memory_limit: DEFAULT_MEMORY_LIMIT,
            evict: true,
            shards: DEFAULT_SHARDS,
            cas_enabled: true,
            node_id: 0,
            protected_prefixes: Vec::new(),
            hash_seed: None,
        }
    }
}

/// 64 shards keep the chance that two of 4 workers want the same lock under 10 %
/// while the per-shard tables stay large enough to amortise their growth.
pub const DEFAULT_SHARDS: usize = 64;

/// memcached's `-m 64` (memcached.c `settings_init`): the daemon's and an embedded
/// store's memory limit unless one is named.
pub const DEFAULT_MEMORY_LIMIT: usize = 64 * 1024 * 1024;

pub use crate::store_mode::StoreMode;

/// Counters kept by the store (the protocol's own counters live in the server).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub curr_items: u64,
    pub total_items: u64,
    /// Bytes of item blocks.
    pub item_bytes: u64,
    /// Bytes of item blocks and hash tables: what `-m` limits.
    pub memory_used: u64,
    pub memory_limit: u64,
    pub table_bytes: u64,
    pub evictions: u64,
    pub reclaimed: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    pub get_expired: u64,
    pub get_flushed: u64,
    /// Live protected items the eviction hand passed over.
    pub evictions_skipped_protected: u64,
}

#[derive(Default)]
struct ShardCounters {
    total_items: u64,
    item_bytes: usize,
    evictions: u64,
    reclaimed: u64,
    expired_unfetched: u64,
    evicted_unfetched: u64,
    get_expired: u64,
    get_flushed: u64,
    evictions_skipped_protected: u64,
}

#[derive(Default)]
struct Shard {
    table: HashTable<Item>,
    table_bytes: usize,
    clock_hand: usize,
    sweep_cursor: usize,
    counters: ShardCounters,
    /// Deleted keys' versions, kept only while replicating ([`tombstone`]).
    tombstones: tombstone::Tombstones,
    /// The counters of keys `incr` or `decr` changed while replicating ([`counter`]).
    ledgers: Ledgers,
}

type Ledgers = hashbrown::HashMap<Box<[u8]>, counter::Ledger, ahash::RandomState>;

/// Why an item is no longer visible.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Liveness {
    Live,
    Expired,
    Flushed,
}

/// A consistent reading of the clock and the flush marks for one operation.
#[derive(Clone, Copy)]
struct Now {
    secs: u32,
    flush_cas: u64,
    flush_at: u32,
}

impl Now {
    fn liveness(&self, item: &Item) -> Liveness {
        if (item.cas() <= self.flush_cas && !item.has_bit(BIT_CLIENT_CAS))
            || (self.flush_at != 0 && self.secs >= self.flush_at && item.last_access() <= self.flush_at)
        {
            Liveness::Flushed
        } else if expiry::is_expired(item.expires_at(), self.secs) {
            Liveness::Expired
        } else {
            Liveness::Live
        }
    }
}

/// The store. Share it between threads by reference or `Arc`.
pub struct Store {
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    shard_shift: u32,
    hasher: ahash::RandomState,
    clock: Clock,
    memory_limit: AtomicUsize,
    evict: bool,
    cas_enabled: bool,
    used: AtomicUsize,
    /// Makes every write's version, which is also its CAS unique.
    versions: version::VersionClock,
    /// Items with a CAS at or below this were flushed by `flush_all`.
    flush_cas: AtomicU64,
    /// A delayed `flush_all`: from this Unix second on, items last stored or read
    /// in it or before it are gone (memcached's `oldest_live`). 0 = none.
    flush_at: AtomicU32,
    sweep_shard: AtomicUsize,
    /// Unix second the store was created (memcached's `process_started`).
    created: u32,
    /// Told of each eviction (the server's `watch evictions`); set at most once.
    eviction_observer: std::sync::OnceLock<EvictionObserver>,
    /// Told of each local change (replication); set at most once.
    change_observer: std::sync::OnceLock<ChangeObserver>,
    /// How long a deleted key's version is kept while replicating.
    tombstone_secs: AtomicU32,
    /// The highest of this node's change numbers the peer has applied: tombstones
    /// sent up to it are forgotten.
    peer_applied: AtomicU64,
    /// Bytes of every shard's tombstones (part of `used`).
    tombstone_bytes: AtomicUsize,
    /// Deletes forgotten under memory pressure before the peer acknowledged them.
    tombstones_shed: AtomicU64,
    /// Key prefixes exempt from eviction ([`StoreConfig::protected_prefixes`]), or
    /// given later, once, by [`Store::protect_prefixes`] (an embedded store served
    /// with `--protect-prefix`).
    protected_prefixes: std::sync::OnceLock<Box<[Box<[u8]>]>>,
    /// In a mesh, an expired item leaves its version behind whichever node made
    /// it ([`Store::keep_every_expiry`]).
    keeps_every_expiry: std::sync::atomic::AtomicBool,
}

impl Store {
    pub fn new(config: StoreConfig, clock: Clock) -> Store {
        let shards = config.shards.max(1).next_power_of_two();
        Store {
            shards: (0..shards).map(|_| CachePadded::new(Mutex::new(Shard::default()))).collect(),
            shard_shift: 64 - shards.trailing_zeros(),
            hasher: match config.hash_seed {
                None => ahash::RandomState::new(),
                // Four words from one, by splitmix64's increment (any fixed spread does).
                Some(seed) => {
                    let word = |i: u64| seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                    ahash::RandomState::with_seeds(word(0), word(1), word(2), word(3))
                }
            },
            memory_limit: AtomicUsize::new(config.memory_limit),
            evict: config.evict,
            cas_enabled: config.cas_enabled,
            used: AtomicUsize::new(0),
            versions: version::VersionClock::new(config.node_id),
            flush_cas: AtomicU64::new(0),
            flush_at: AtomicU32::new(0),
            sweep_shard: AtomicUsize::new(0),
            created: clock.now_secs(),
            clock,
            eviction_observer: std::sync::OnceLock::new(),
            change_observer: std::sync::OnceLock::new(),
            tombstone_secs: AtomicU32::new(0),
            peer_applied: AtomicU64::new(0),
            tombstone_bytes: AtomicUsize::new(0),
            tombstones_shed: AtomicU64::new(0),
            protected_prefixes: if config.protected_prefixes.is_empty() {
                std::sync::OnceLock::new()
            } else {
                std::sync::OnceLock::from(config.protected_prefixes.into_boxed_slice())
            },
            keeps_every_expiry: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether `key` is exempt from eviction.
    pub fn is_protected(&self, key: &[u8]) -> bool {
        self.protected_prefixes.get().is_some_and(|prefixes| prefixes.iter().any(|prefix| key.starts_with(prefix)))
    }

    /// Sets the prefixes exempt from eviction, unless some already are: false then.
    pub fn protect_prefixes(&self, prefixes: Vec<Box<[u8]>>) -> bool {
        prefixes.is_empty() || self.protected_prefixes.set(prefixes.into_boxed_slice()).is_ok()
    }

    fn protects_any(&self) -> bool {
        self.protected_prefixes.get().is_some()
    }

    /// Installs the one eviction observer; false if one is already installed.
    pub fn observe_evictions(&self, observer: EvictionObserver) -> bool {
        self.eviction_observer.set(observer).is_ok()
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn memory_limit(&self) -> usize {
        self.memory_limit.load(Ordering::Relaxed)
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The shard for a hash. hashbrown uses the top 7 bits as its tag, so the shard
    /// index comes from the bits just below them.
    #[inline]
    fn shard_index(&self, hash: u64) -> usize {
        if self.shards.len() == 1 { 0 } else { ((hash << 7) >> self.shard_shift) as usize }
    }

    /// Whether the lock of `key`'s shard is held (by this thread or another):
    /// the simulator runs other threads' turns inside a write only where the
    /// daemon's could, outside every lock.
    #[cfg(test)]
    pub fn key_locked(&self, key: &[u8]) -> bool {
        let index = self.shard_index(self.hash(key));
        matches!(self.shards[index].try_lock(), Err(std::sync::TryLockError::WouldBlock))
    }

    /// Locks a shard. A poisoned shard (a panic while it was held) may be half
    /// updated, so it is emptied rather than trusted.
    fn lock(&self, index: usize) -> MutexGuard<'_, Shard> {
        match self.shards[index].lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                let mut guard = poisoned.into_inner();
                let freed = guard.counters.item_bytes;
                guard.table.clear();
                guard.counters.item_bytes = 0;
                let buried = guard.tombstones.clear();
                self.tombstone_bytes.fetch_sub(buried, Ordering::Relaxed);
                self.used.fetch_sub(freed + buried, Ordering::Relaxed);
                self.shards[index].clear_poison();
                log::error!("store shard {index} was poisoned by a panic and has been emptied");
                guard
            }
        }
    }

    fn now(&self) -> Now {
        Now {
            secs: self.clock.now_secs(),
            flush_cas: self.flush_cas.load(Ordering::Acquire),
            flush_at: self.flush_at.load(Ordering::Acquire),
        }
    }

    fn next_cas(&self) -> u64 {
        self.versions.next(self.clock.now_ms())
    }

    /// Gives a written item its CAS: the client's (meta `E`, marked so that the
    /// flush mark, which compares CAS values, leaves it to the time mark) or the next
    /// from the counter.
    fn stamp_cas(&self, item: &mut Item, explicit: Option<u64>) -> u64 {
        // Without CAS (memcached -C) every unique reads 0 and flushes go by time.
        let explicit = if self.cas_enabled { explicit } else { Some(0) };
        match explicit {
            Some(cas) => {
                item.set_cas(cas);
                item.set_bit(BIT_CLIENT_CAS);
                cas
            }
            None => {
                let cas = self.next_cas();
                item.set_cas(cas);
                item.clear_bit(BIT_CLIENT_CAS);
                cas
            }
        }
    }

    /// Looks up a live item, removing it if it turns out dead. Returns the bucket.
    fn find_live(&self, shard: &mut Shard, hash: u64, key: &[u8], now: &Now) -> Option<usize> {
        let bucket = shard.table.find_bucket_index(hash, |it| it.key() == key)?;
        let item = shard.table.get_bucket(bucket).expect("bucket just found");
        match now.liveness(item) {
            Liveness::Live => Some(bucket),
            dead => {
                if dead == Liveness::Expired {
                    shard.counters.get_expired += 1;
                } else {
                    shard.counters.get_flushed += 1;
                }
                self.remove_bucket(shard, bucket, dead);
                None
            }
        }
    }

    /// Removes the item in `bucket`, counting why.
    fn remove_bucket(&self, shard: &mut Shard, bucket: usize, why: Liveness) -> usize {
        let Ok(entry) = shard.table.get_bucket_entry(bucket) else {
            return 0;
        };
        let (item, _) = entry.remove();
        self.take_ledger(&mut shard.ledgers, item.key());
        if why == Liveness::Expired && self.keeps_expiry_of(item.cas()) {
            // The peer may have been cut off when this node wrote the item and still
            // hold an older, longer-lived state: the expired item's version keeps that
            // from winning when it arrives, and goes to the peer if this expiry is what
            // there is to send. (In a pair, a version the peer made, the peer holds
            // and expires; see `keep_every_expiry` for a mesh.)
            let now = self.clock.now_secs();
            let hash = self.hash(item.key());
            self.bury(shard, hash, item.key(), item.cas(), now, tombstone::Burial::Expiry);
        }
        let charge = item.charge();
        if why != Liveness::Live {
            shard.counters.reclaimed += 1;
            if why == Liveness::Expired && !item.has_bit(BIT_FETCHED) {
                shard.counters.expired_unfetched += 1;
            }
        }
        shard.counters.item_bytes -= charge;
        self.used.fetch_sub(charge, Ordering::Relaxed);
        charge
    }

    /// Reads a live item under the shard lock: marks it fetched, optionally sets a new
    /// exptime (gat), then hands it to `read` (which copies what it needs).
    #[cfg(test)]
    pub fn get(&self, key: &[u8], touch: Option<i32>, read: impl FnOnce(&Item)) -> Found {
        self.get_noted(key, touch, read, &mut Receipt::default())
    }

    /// [`Store::get`], telling `receipt` what a touch recorded.
    pub(crate) fn get_noted(
        &self,
        key: &[u8],
        touch: Option<i32>,
        read: impl FnOnce(&Item),
        receipt: &mut Receipt,
    ) -> Found {
        let hash = self.hash(key);
        let mut shard = self.lock(self.shard_index(hash));
        let now = self.now();
        let Some(bucket) = self.find_live(&mut shard, hash, key, &now) else {
            return Found::Miss;
        };
        let held = &mut *shard;
        let item = held.table.get_bucket_mut(bucket).expect("live bucket");
        item.touch_access(now.secs);
        let replicated = touch.is_some() && self.replicated();
        if let Some(exptime) = touch {
            item.set_expires_at(expiry::deadline(exptime, now.secs));
            if replicated {
                // A new TTL needs a new version to win on the peer (memcached keeps
                // the CAS on touch; a replicated touch cannot).
                self.keep_base(&mut held.ledgers, item);
                self.stamp_cas(item, None);
            }
        }
        read(item);
        drop(shard);
        if replicated {
            self.note(Change::Key(key), receipt);
        }
        Found::Hit
    }

    /// `touch`: a new exptime for a live item.
    #[cfg(test)]
    pub fn touch(&self, key: &[u8], exptime: i32) -> Found {
        self.get(key, Some(exptime), |_| {})
    }

    /// A meta get (`mg`, `me`): `read` sees the item under the shard lock and may
    /// change its TTL and meta bits. Unlike [`Store::get`] the access is recorded
    /// after `read`, so it sees whether the item was fetched before and when it was
    /// last accessed; with `bump` false it is not recorded at all (`mg`'s `u`).
    /// With `vivify`, a miss creates an empty item and `read` sees that.
    #[cfg(test)]
    pub fn get_for_meta(
        &self,
        key: &[u8],
        vivify: Option<Vivify>,
        bump: bool,
        read: impl FnOnce(&mut Item, u32, bool),
    ) -> MetaFound {
        self.get_for_meta_noted(key, vivify, bump, read, &mut Receipt::default())
    }

    /// [`Store::get_for_meta`], telling `receipt` what a new TTL or a created item
    /// recorded.
    pub(crate) fn get_for_meta_noted(
        &self,
        key: &[u8],
        vivify: Option<Vivify>,
        bump: bool,
        read: impl FnOnce(&mut Item, u32, bool),
        receipt: &mut Receipt,
    ) -> MetaFound {
        let hash = self.hash(key);
        let index = self.shard_index(hash);
        if vivify.is_some() && !self.reserve(index, Item::charge_for(key.len(), 0, 0)) {
            // memcached answers a miss when it cannot allocate the placeholder.
            return self.get_for_meta_noted(key, None, bump, read, receipt);
        }
        let mut shard = self.lock(index);
        let now = self.now();
        let (bucket, found) = match self.find_live(&mut shard, hash, key, &now) {
            Some(bucket) => (bucket, MetaFound::Hit),
            None => {
                let Some(vivify) = vivify else {
                    return MetaFound::Miss;
                };
                let expires_at = expiry::deadline(vivify.exptime, now.secs);
                let meta = ItemMeta { flags: 0, expires_at, cas: 0, now: now.secs };
                let Some(mut item) = Item::new(key, &[], meta) else {
                    return MetaFound::Miss;
                };
                if vivify.binary_key {
                    item.set_bit(BIT_KEY_BINARY);
                }
                self.put(&mut shard, hash, None, item, vivify.cas);
                let bucket = shard.table.find_bucket_index(hash, |it| it.key() == key).expect("just inserted");
                (bucket, MetaFound::Created)
            }
        };
        let held = &mut *shard;
        let item = held.table.get_bucket_mut(bucket).expect("live bucket");
        let expires_before = item.expires_at();
        read(item, now.secs, found == MetaFound::Created);
        if bump {
            item.touch_access(now.secs);
        }
        let changed = found == MetaFound::Created || item.expires_at() != expires_before;
        if changed && self.replicated() {
            if found == MetaFound::Hit {
                self.keep_base(&mut held.ledgers, item);
                self.stamp_cas(item, None);
            }
            drop(shard);
            self.note(Change::Key(key), receipt);
        }
        found
    }

    /// A meta delete (`md`), with memcached's `process_mdelete_command` semantics.
    ///
    /// While replicating, a delete of a key this node does not hold is still a
    /// write: it answers not found, as memcached does, but leaves a tombstone that
    /// goes to the peer, so that a key only the peer held (written while the two
    /// were cut off, or before this node restarted) is deleted there too, and its
    /// older state cannot come back here.
    #[cfg(test)]
    pub fn delete_for_meta(&self, req: &DeleteRequest<'_>) -> DeleteOutcome {
        self.delete_for_meta_noted(req, &mut Receipt::default())
    }

    /// [`Store::delete_for_meta`], telling `receipt` what it recorded.
    pub(crate) fn delete_for_meta_noted(&self, req: &DeleteRequest<'_>, receipt: &mut Receipt) -> DeleteOutcome {
        let (outcome, wrote) = self.delete_for_meta_locally(req);
        if wrote {
            self.note(Change::Key(req.key), receipt);
        }
        outcome
    }

    /// The outcome, and whether it changed the key's replicated state.
    fn delete_for_meta_locally(&self, req: &DeleteRequest<'_>) -> (DeleteOutcome, bool) {
        let key = req.key;
        let hash = self.hash(key);
        let index = self.shard_index(hash);
        if req.empty_value.is_some() && !self.reserve(index, Item::charge_for(key.len(), 0, u32::MAX)) {
            return (DeleteOutcome::NoMemory, false);
        }
        let replicated = self.replicated();
        let mut shard = self.lock(index);
        let now = self.now();
        let Some(bucket) = self.find_live(&mut shard, hash, key, &now) else {
            if replicated {
                let version = self.next_cas();
                self.bury_and_make_room(shard, hash, key, version, now.secs);
            }
            return (DeleteOutcome::NotFound, replicated);
        };
        let old = shard.table.get_bucket(bucket).expect("live bucket");
        if req.compare_cas.is_some_and(|cas| cas != old.cas()) {
            return (DeleteOutcome::Exists, false);
        }
        if let Some((flags, exptime)) = req.empty_value {
            let expires_at = expiry::deadline(exptime, now.secs);
            let meta = ItemMeta { flags, expires_at, cas: 0, now: now.secs };
            let Some(mut empty) = Item::new(key, &[], meta) else {
                return (DeleteOutcome::NoMemory, false);
            };
            if old.has_bit(BIT_KEY_BINARY) {
                empty.set_bit(BIT_KEY_BINARY);
            }
            // The emptied item keeps the old CAS unless the client names one (or the
            // change must win on a peer, which needs a new version).
            let (old_cas, old_client_cas) = (old.cas(), old.has_bit(BIT_CLIENT_CAS));
            let keep = if self.replicated() { None } else { Some(old_cas) };
            self.put(&mut shard, hash, Some(bucket), empty, req.new_cas.or(keep));
            if req.new_cas.is_none() && !old_client_cas {
                let item = shard.table.get_bucket_mut(bucket).expect("live bucket");
                item.clear_bit(BIT_CLIENT_CAS);
            }
        } else if !req.invalidate {
            let value_len = old.value().len();
            self.remove_bucket(&mut shard, bucket, Liveness::Live);
            if replicated {
                let version = self.next_cas();
                self.bury(&mut shard, hash, key, version, now.secs, tombstone::Burial::Delete);
            }
            return (DeleteOutcome::Deleted { value_len }, true);
        }
        if req.invalidate {
            let shard = &mut *shard;
            let item = shard.table.get_bucket_mut(bucket).expect("live bucket");
            if replicated {
                self.keep_base(&mut shard.ledgers, item);
            }
            if let Some(ttl) = req.ttl {
                item.set_expires_at(expiry::deadline(ttl, now.secs));
            }
            item.set_bit(BIT_STALE);
            // The next reader may win the recache token again.
            item.clear_bit(BIT_TOKEN_SENT);
            self.stamp_cas(item, req.new_cas);
        }
        (DeleteOutcome::Kept, true)
    }

    /// `delete`; returns the removed value's length. A plain meta delete.
    #[cfg(test)]
    pub fn delete(&self, key: &[u8]) -> Option<usize> {
        match self.delete_for_meta(&DeleteRequest { key, ..Default::default() }) {
            DeleteOutcome::Deleted { value_len } => Some(value_len),
            _ => None,
        }
    }

    /// Inserts or replaces `item` in its bucket (or a new one), keeping the
    /// accounting; returns the new item's CAS.
    fn put(&self, shard: &mut Shard, hash: u64, bucket: Option<usize>, mut item: Item, cas: Option<u64>) -> u64 {
        let cas = self.stamp_cas(&mut item, cas);
        let charge = item.charge();
        shard.counters.total_items += 1;
        shard.counters.item_bytes += charge;
        self.used.fetch_add(charge, Ordering::Relaxed);
        match bucket {
            Some(bucket) => {
                let slot = shard.table.get_bucket_mut(bucket).expect("live bucket");
                let old = std::mem::replace(slot, item);
                // A new value starts a new base: the old one's counter goes with it.
                self.take_ledger(&mut shard.ledgers, old.key());
                shard.counters.item_bytes -= old.charge();
                self.used.fetch_sub(old.charge(), Ordering::Relaxed);
            }
            None => {
                let hasher = &self.hasher;
                shard.table.insert_unique(hash, item, |it| hasher.hash_one(it.key()));
                let table_bytes = shard.table.allocation_size();
                if table_bytes != shard.table_bytes {
                    self.used.fetch_add(table_bytes - shard.table_bytes, Ordering::Relaxed);
                    shard.table_bytes = table_bytes;
                }
            }
        }
        cas
    }

    /// set, add, replace, append, prepend and cas, with memcached's semantics
    /// (memcached.c `do_store_item`), and the meta options of [`StoreRequest`].
    #[cfg(test)]
    pub fn store(&self, req: &StoreRequest<'_>) -> StoreOutcome {
        self.store_noted(req, &mut Receipt::default())
    }

    /// [`Store::store`], telling `receipt` what it recorded.
    pub(crate) fn store_noted(&self, req: &StoreRequest<'_>, receipt: &mut Receipt) -> StoreOutcome {
        let outcome = self.store_locally(req, receipt);
        if outcome == StoreOutcome::NoMemory && req.failure_discards_old {
            self.discard_noted(req.key, receipt);
        }
        if matches!(outcome, StoreOutcome::Stored { .. }) && !req.is_claim() && !req.propose {
            self.note(Change::Key(req.key), receipt);
        }
        outcome
    }

    /// Stores as [`Store::store_noted`] says; a claim ([`StoreRequest::is_claim`]) is noted here,
    /// before the shard's lock goes (see [`Store::note_claim`]).
    fn store_locally(&self, req: &StoreRequest<'_>, receipt: &mut Receipt) -> StoreOutcome {
        let hash = self.hash(req.key);
        let index = self.shard_index(hash);
        let concatenate = matches!(req.mode, StoreMode::Append | StoreMode::Prepend);
        // Room is made before taking the lock, since eviction may lock other shards.
        // Append and prepend grow the item by the new data; the rest replace it.
        if !self.reserve(index, Item::charge_for(req.key.len(), req.data.len(), req.flags)) {
            return StoreOutcome::NoMemory;
        }
        let now_secs = self.clock.now_secs();
        let meta =
            ItemMeta { flags: req.flags, expires_at: expiry::deadline(req.exptime, now_secs), cas: 0, now: now_secs };
        let key_bits = if req.binary_key { BIT_KEY_BINARY } else { 0 };
        // A replacing item is built outside the lock: only concatenation needs the old
        // value (and a vivifying one may not, but is rare enough to build under it).
        let fresh = if concatenate {
            None
        } else {
            match Item::new(req.key, &[req.data], meta) {
                Some(item) => Some(item),
                None => return StoreOutcome::NoMemory,
            }
        };
        let mut shard = self.lock(index);
        let now = self.now();
        let existing = self.find_live(&mut shard, hash, req.key, &now);
        // What a proposal is made on: the live item, or else what the key's
        // tombstone remembers (an expired item just left one).
        // Read only for a proposal: a plain store does not look at the tombstones.
        let base = match existing {
            _ if !req.propose => 0,
            Some(bucket) => shard.table.get_bucket(bucket).map_or(0, Item::cas),
            None => shard.tombstones.version(hash, req.key).unwrap_or(0),
        };
        let item = match (req.mode, existing) {
            (StoreMode::Set, _) => fresh,
            (StoreMode::Add, None) | (StoreMode::Replace, Some(_)) => fresh,
            (StoreMode::Add, Some(bucket)) => {
                // memcached bumps an item that `add` found (do_store_item), without
                // counting it fetched.
                let item = shard.table.get_bucket_mut(bucket).expect("live bucket");
                item.touch_update(now.secs);
                return StoreOutcome::NotStored;
            }
            (StoreMode::Append | StoreMode::Prepend, None) if req.vivify => Item::new(req.key, &[req.data], meta),
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => {
                return StoreOutcome::NotStored;
            }
            (StoreMode::Cas, None) => return StoreOutcome::NotFound,
            (StoreMode::Cas, Some(bucket)) => {
                let old = shard.table.get_bucket(bucket).expect("live bucket");
                let current = old.cas();
                // Without CAS (memcached -C) no compare-and-swap ever matches.
                if self.cas_enabled && current == req.cas_unique {
                    fresh
                } else if req.allow_stale && req.cas_unique < current {
                    // A write based on an older read still lands, but as stale data
                    // under the old TTL, keeping a recache token already handed out.
                    let mut item = fresh.expect("a replacing item was built before locking");
                    item.set_expires_at(old.expires_at());
                    item.set_bit(BIT_STALE);
                    if old.has_bit(BIT_TOKEN_SENT) {
                        item.set_bit(BIT_TOKEN_SENT);
                    }
                    Some(item)
                } else {
                    return StoreOutcome::Exists;
                }
            }
            (StoreMode::Append | StoreMode::Prepend, Some(bucket)) => {
                let old = shard.table.get_bucket(bucket).expect("live bucket");
                // memcached checks a CAS given with append/prepend; 0 means none.
                if req.cas_unique != 0 && req.cas_unique != old.cas() {
                    return StoreOutcome::Exists;
                }
                let (old_value, new) = (old.value(), req.data);
                if req.fits.is_some_and(|fits| !fits(old.flags(), old_value.len() + new.len())) {
                    return StoreOutcome::NotStored;
                }
                let meta = ItemMeta { flags: old.flags(), expires_at: old.expires_at(), cas: 0, now: now.secs };
                let parts: [&[u8]; 2] = if req.mode == StoreMode::Append { [old_value, new] } else { [new, old_value] };
                match Item::new(req.key, &parts, meta) {
                    Some(item) => Some(item),
                    None => return StoreOutcome::NotStored,
                }
            }
        };
        let Some(mut item) = item else {
            return StoreOutcome::NoMemory;
        };
        if key_bits != 0 {
            item.set_bit(key_bits);
        }
        let (expires_at, value_len) = (item.expires_at(), item.value().len());
        if req.propose {
            // Proposed, not stored: readers see it only once it is granted.
            let cas = self.stamp_cas(&mut item, req.new_cas);
            let (value, flags) = (item.value(), item.flags());
            let absent = existing.is_none();
            let proposal = Proposal { key: req.key, version: cas, base, absent, value, flags, expires_at };
            self.note(Change::Propose(proposal), receipt);
            return StoreOutcome::Stored { cas, expires_at, value_len };
        }
        let cas = self.put(&mut shard, hash, existing, item, req.new_cas);
        if req.is_claim() {
            self.note_claim(req.key, cas, receipt);
        }
        drop(shard);
        // A table that just doubled may have pushed usage over the limit.
        self.reserve(index, 0);
        StoreOutcome::Stored { cas, expires_at, value_len }
    }

    /// Removes a key without counting it as a delete: a `set` that failed must not
    /// leave the old value behind (memcached proto_text.c `process_update_command`).
    #[cfg(test)]
    pub fn discard(&self, key: &[u8]) {
        self.discard_noted(key, &mut Receipt::default());
    }

    /// [`Store::discard`], telling `receipt` what it recorded.
    pub(crate) fn discard_noted(&self, key: &[u8], receipt: &mut Receipt) {
        let hash = self.hash(key);
        let index = self.shard_index(hash);
        let mut shard = self.lock(index);
        if let Some(bucket) = shard.table.find_bucket_index(hash, |it| it.key() == key) {
            self.remove_bucket(&mut shard, bucket, Liveness::Live);
        }
        if self.replicated() {
            // The peer must lose the old value too (memcached F6 on both nodes),
            // whether or not this node held it.
            let (version, now) = (self.next_cas(), self.clock.now_secs());
            self.bury_and_make_room(shard, hash, key, version, now);
            self.note(Change::Key(key), receipt);
        }
    }

    /// incr/decr on an unsigned 64-bit decimal value.
    #[cfg(test)]
    pub fn arithmetic(&self, key: &[u8], incr: bool, delta: u64) -> DeltaOutcome {
        self.arithmetic_with(&DeltaRequest::new(key, incr, delta), |_, _, _| {})
    }

    /// incr/decr with meta options; `changed` sees the item under the lock after a
    /// success (for `ma`'s flags), with the current Unix second and whether the item
    /// was just created.
    ///
    /// incr wraps at 2^64, decr stops at 0. As memcached does (`do_add_delta`), a
    /// result no longer than the old value is written in place, padded with spaces;
    /// a longer one makes a new item.
    #[cfg(test)]
    pub fn arithmetic_with(&self, req: &DeltaRequest<'_>, changed: impl FnOnce(&mut Item, u32, bool)) -> DeltaOutcome {
        self.arithmetic_noted(req, changed, &mut Receipt::default())
    }

    /// [`Store::arithmetic_with`], telling `receipt` what it recorded.
    pub(crate) fn arithmetic_noted(
        &self,
        req: &DeltaRequest<'_>,
        changed: impl FnOnce(&mut Item, u32, bool),
        receipt: &mut Receipt,
    ) -> DeltaOutcome {
        if req.propose {
            return self.propose_delta(req, changed, receipt);
        }
        let outcome = self.arithmetic_locally(req, |item, now, created| {
            changed(item, now, created);
            if !req.apart {
                // A read-modify-write: a claim, so two increments made at once on
                // linked nodes both count (the loser's runs again on the winner's
                // value) and answer distinct values. Noted under the shard's lock.
                self.note_claim(req.key, item.cas(), receipt);
            }
        });
        if req.apart && matches!(outcome, DeltaOutcome::Value(_) | DeltaOutcome::Created(_)) {
            // Counted apart: it adds to what the others count (see `counter`).
            self.note(Change::Key(req.key), receipt);
        }
        outcome
    }

    /// incr/decr as a proposal ([`Change::Propose`]): the result is computed on the
    /// item as it stands and proposed, and the item stays as it is until the claim
    /// is granted. The new value is memcached's, padded as `do_add_delta` pads it.
    fn propose_delta(
        &self,
        req: &DeltaRequest<'_>,
        changed: impl FnOnce(&mut Item, u32, bool),
        receipt: &mut Receipt,
    ) -> DeltaOutcome {
        let key = req.key;
        let hash = self.hash(key);
        let mut shard = self.lock(self.shard_index(hash));
        let now = self.now();
        let mut buf = [0u8; 20];
        let (item, base, outcome) = match self.find_live(&mut shard, hash, key, &now) {
            None => {
                let Some(initial) = req.vivify else {
                    return DeltaOutcome::NotFound;
                };
                let digits = crate::number::format_u64(&mut buf, initial);
                let meta = ItemMeta { flags: 0, expires_at: 0, cas: 0, now: now.secs };
                let base = shard.tombstones.version(hash, key).unwrap_or(0);
                (Item::new(key, &[digits], meta), base, DeltaOutcome::Created(initial))
            }
            Some(bucket) => {
                let old = shard.table.get_bucket_mut(bucket).expect("live bucket");
                if old.value().is_empty() {
                    return DeltaOutcome::NonNumeric;
                }
                if req.compare_cas != 0 && req.compare_cas != old.cas() {
                    return DeltaOutcome::Exists;
                }
                let Some(current) = crate::number::parse_u64(old.value()) else {
                    return DeltaOutcome::NonNumeric;
                };
                old.touch_update(now.secs);
                let updated =
                    if req.incr { current.wrapping_add(req.delta) } else { current.saturating_sub(req.delta) };
                let digits = crate::number::format_u64(&mut buf, updated);
                let padding = vec![b' '; old.value().len().saturating_sub(digits.len())];
                let meta = ItemMeta { flags: old.flags(), expires_at: old.expires_at(), cas: 0, now: now.secs };
                (Item::new(key, &[digits, &padding], meta), old.cas(), DeltaOutcome::Value(updated))
            }
        };
        let Some(mut item) = item else {
            return DeltaOutcome::NoMemory;
        };
        let version = self.stamp_cas(&mut item, req.new_cas);
        changed(&mut item, now.secs, matches!(outcome, DeltaOutcome::Created(_)));
        let absent = matches!(outcome, DeltaOutcome::Created(_));
        let (value, flags, expires_at) = (item.value(), item.flags(), item.expires_at());
        self.note(Change::Propose(Proposal { key, version, base, absent, value, flags, expires_at }), receipt);
        outcome
    }

    fn arithmetic_locally(&self, req: &DeltaRequest<'_>, changed: impl FnOnce(&mut Item, u32, bool)) -> DeltaOutcome {
        let key = req.key;
        let hash = self.hash(key);
        let index = self.shard_index(hash);
        // The largest possible growth: a 20-digit number.
        if !self.reserve(index, Item::charge_for(key.len(), 20, u32::MAX)) {
            return DeltaOutcome::NoMemory;
        }
        let mut shard = self.lock(index);
        let now = self.now();
        let Some(bucket) = self.find_live(&mut shard, hash, key, &now) else {
            let Some(initial) = req.vivify else {
                return DeltaOutcome::NotFound;
            };
            let mut buf = [0u8; 20];
            let digits = crate::number::format_u64(&mut buf, initial);
            let meta = ItemMeta { flags: 0, expires_at: 0, cas: 0, now: now.secs };
            let Some(item) = Item::new(key, &[digits], meta) else {
                return DeltaOutcome::NoMemory;
            };
            self.put(&mut shard, hash, None, item, req.new_cas);
            let bucket = shard.table.find_bucket_index(hash, |it| it.key() == key).expect("just inserted");
            changed(shard.table.get_bucket_mut(bucket).expect("live bucket"), now.secs, true);
            return DeltaOutcome::Created(initial);
        };
        let shard = &mut *shard;
        let item = shard.table.get_bucket_mut(bucket).expect("live bucket");
        // memcached's do_add_delta refuses an empty value before it compares the CAS,
        // and a value that is not a number after.
        if item.value().is_empty() {
            return DeltaOutcome::NonNumeric;
        }
        if req.compare_cas != 0 && req.compare_cas != item.cas() {
            return DeltaOutcome::Exists;
        }
        let value = item.value();
        let old_len = value.len();
        let Some(current) = crate::number::parse_u64(value) else {
            return DeltaOutcome::NonNumeric;
        };
        // While replicating, the key's counter records the change (see `counter`),
        // starting from the value as it stands.
        let ledger = match self.replicated() {
            true => {
                Some(self.take_ledger(&mut shard.ledgers, key).unwrap_or_else(|| Ledger::start(current, item.cas())))
            }
            false => None,
        };
        let updated = if req.incr { current.wrapping_add(req.delta) } else { current.saturating_sub(req.delta) };
        let mut buf = [0u8; 20];
        let digits = crate::number::format_u64(&mut buf, updated);
        item.touch_update(now.secs);
        let meta = ItemMeta { flags: item.flags(), expires_at: item.expires_at(), cas: 0, now: now.secs };
        let version = if digits.len() <= old_len && !item.is_shared() {
            let slot = item.value_mut();
            slot[..digits.len()].copy_from_slice(digits);
            slot[digits.len()..].fill(b' ');
            let version = self.stamp_cas(item, req.new_cas);
            changed(item, now.secs, false);
            version
        } else {
            // A longer result needs a new item; so does a shorter one when readers
            // may be sending the old value of a shared item. The padding is
            // memcached's.
            let padding = vec![b' '; old_len.saturating_sub(digits.len())];
            let Some(replacement) = Item::new(key, &[digits, &padding], meta) else {
                if let Some(ledger) = ledger {
                    self.keep_ledger(&mut shard.ledgers, key, ledger);
                }
                return DeltaOutcome::NoMemory;
            };
            let version = self.put(shard, hash, Some(bucket), replacement, req.new_cas);
            changed(shard.table.get_bucket_mut(bucket).expect("live bucket"), now.secs, false);
            version
        };
        if let Some(mut ledger) = ledger {
            if req.apart {
                ledger.count_apart(self.node_id(), updated, version);
            } else {
                ledger.agree(updated, version);
            }
            self.keep_ledger(&mut shard.ledgers, key, ledger);
        }
        DeltaOutcome::Value(updated)
    }

    /// `flush_all [delay]`: every item stored before the flush takes effect becomes
    /// invisible; memory comes back lazily, through the sweep and the CLOCK hand.
    ///
    /// The delay follows memcached's `process_flush_all_command`, quirks included:
    /// the flush covers items last touched up to one second before the deadline, so
    /// `flush_all 1` also hides what is stored in the current second, and an absolute
    /// time before the store started cancels any pending flush and flushes nothing.
    #[cfg(test)]
    pub fn flush_all(&self, delay: i32) {
        self.flush_all_noted(delay, &mut Receipt::default());
    }

    /// [`Store::flush_all`], telling `receipt` what it recorded.
    pub(crate) fn flush_all_noted(&self, delay: i32, receipt: &mut Receipt) {
        let now = self.clock.now_secs();
        if delay <= 0 {
            // A flush now replaces a delayed one, as memcached's single `oldest_live`
            // does. The CAS mark hides everything written so far; the time mark
            // (memcached's `oldest_live = current_time - 1`) also hides items whose
            // CAS a client chose, if they were last written or read before this second.
            // memcached without CAS marks the current second itself as flushed.
            let oldest_live = if self.cas_enabled { now.saturating_sub(1) } else { now };
            self.flush_at.store(if oldest_live <= self.created { 0 } else { oldest_live }, Ordering::Release);
            let mark = self.next_cas();
            self.flush_cas.fetch_max(mark, Ordering::AcqRel);
            self.note(Change::Flush { version: mark, at: 0 }, receipt);
            return;
        }
        let deadline = expiry::deadline(delay, now);
        let oldest_live = if deadline <= self.created { 0 } else { deadline - 1 };
        self.flush_at.store(oldest_live, Ordering::Release);
        self.note(Change::Flush { version: 0, at: oldest_live }, receipt);
    }

    /// Looks at up to `max_buckets` buckets of the next shard and removes the dead
    /// items there. Returns how many were removed. The background sweeper calls this
    /// on a timer; each call holds one shard lock for a bounded time.
    pub fn sweep_step(&self, max_buckets: usize) -> usize {
        let index = self.sweep_shard.fetch_add(1, Ordering::Relaxed) & (self.shards.len() - 1);
        let mut guard = self.lock(index);
        let shard = &mut *guard;
        self.prune_tombstones(shard, self.clock.now_secs());
        let buckets = shard.table.num_buckets();
        if shard.table.is_empty() {
            return 0;
        }
        let now = self.now();
        let mut removed = 0;
        for _ in 0..max_buckets.min(buckets) {
            let bucket = shard.sweep_cursor % buckets;
            shard.sweep_cursor = (bucket + 1) % buckets;
            let Some(item) = shard.table.get_bucket(bucket) else {
                continue;
            };
            let liveness = now.liveness(item);
            if liveness != Liveness::Live {
                self.remove_bucket(shard, bucket, liveness);
                removed += 1;
            }
        }
        removed
    }

    /// Number of shards (a sweep of every shard takes this many `sweep_step`s).
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Changes the memory limit (`cache_memlimit`); eviction catches up on later stores.
    pub fn set_memory_limit(&self, bytes: usize) {
        self.memory_limit.store(bytes, Ordering::Relaxed);
    }

    pub fn stats(&self) -> StoreStats {
        let mut s = StoreStats { memory_limit: self.memory_limit() as u64, ..Default::default() };
        for index in 0..self.shards.len() {
            let shard = self.lock(index);
            let c = &shard.counters;
            s.curr_items += shard.table.len() as u64;
            s.total_items += c.total_items;
            s.item_bytes += c.item_bytes as u64;
            s.table_bytes += shard.table_bytes as u64;
            s.evictions += c.evictions;
            s.reclaimed += c.reclaimed;
            s.expired_unfetched += c.expired_unfetched;
            s.evicted_unfetched += c.evicted_unfetched;
            s.get_expired += c.get_expired;
            s.get_flushed += c.get_flushed;
            s.evictions_skipped_protected += c.evictions_skipped_protected;
        }
        s.memory_used = self.used.load(Ordering::Relaxed) as u64;
        s
    }

    /// Items whose key begins with `prefix`, live or expired but not yet reclaimed
    /// (as `curr_items` counts them). It visits every item, one shard's lock at a
    /// time, so it is for `stats`, not for a request's path.
    pub fn count_prefix(&self, prefix: &[u8]) -> u64 {
        (0..self.shards.len())
            .map(|index| self.lock(index).table.iter().filter(|item| item.key().starts_with(prefix)).count() as u64)
            .sum()
    }

    /// Zeroes the counters that `stats reset` resets.
    pub fn reset_stats(&self) {
        for index in 0..self.shards.len() {
            let mut shard = self.lock(index);
            let c = &mut shard.counters;
            c.total_items = 0;
            c.evictions = 0;
            c.reclaimed = 0;
            c.expired_unfetched = 0;
            c.evicted_unfetched = 0;
            c.get_expired = 0;
            c.get_flushed = 0;
            c.evictions_skipped_protected = 0;
        }
    }
}

#[cfg(test)]
mod replica_tests;
#[cfg(test)]
mod tests;
