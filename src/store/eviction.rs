//! Making room: when a write would take the store over `-m`, tombstones past their
//! share go first, then a CLOCK hand over a shard's buckets evicts an item that has
//! not been read since the hand last passed (protected prefixes and, under `-M`,
//! every live item are spared). What an eviction observer learns is here too.

use super::item::{BIT_FETCHED, BIT_REFERENCED};
use super::{Liveness, Shard, Store, tombstone};
use std::sync::atomic::Ordering;

/// How many buckets the CLOCK hand may look at in one call before giving up the lock.
const CLOCK_MAX_STEPS: usize = 1024;

/// Tombstones may take up to 1/TOMBSTONE_SHARE of `-m`; beyond it they are shed
/// before live items are evicted. Half leaves a node cut off from its peer room
/// for as many deletes as it holds sessions of about its keys' size.
const TOMBSTONE_SHARE: usize = 2;

/// What an observer of evictions learns of an evicted item (memcached's `watch
/// evictions` line carries the same).
#[derive(Debug)]
pub struct Evicted<'a> {
    pub key: &'a [u8],
    pub value_len: usize,
    /// Read at least once since it was stored.
    pub fetched: bool,
    /// Seconds it had left to live; `None` when it never expires.
    pub ttl: Option<u32>,
    /// Seconds since it was last stored or read.
    pub idle: u32,
}

/// Called under the shard lock for each evicted item, so it must be quick.
pub type EvictionObserver = Box<dyn Fn(&Evicted<'_>) + Send + Sync>;

impl Store {
    /// Makes room for `bytes` more, evicting while over the limit (unless `-M`).
    /// Must be called without holding any shard lock.
    pub(super) fn reserve(&self, home_shard: usize, bytes: usize) -> bool {
        let limit = self.memory_limit();
        let mut shard = home_shard;
        let mut barren = 0;
        // Without protected items a hand that frees nothing in one call means the
        // shard holds nothing evictable. With them, an evictable item may lie beyond
        // the buckets one call looks at: the hand goes round every shard twice (its
        // first pass clears the referenced bits) before the store is called full.
        let mut barren_limit = self.shards.len();
        while self.used.load(Ordering::Relaxed) + bytes > limit {
            let freed = self.evict_from(shard, self.evict);
            if freed == 0 {
                if barren == 0 && self.protects_any() {
                    let buckets = self.lock(shard).table.num_buckets();
                    barren_limit = self.shards.len() * (2 * buckets).div_ceil(CLOCK_MAX_STEPS).max(1);
                }
                barren += 1;
                if barren > barren_limit {
                    // Nothing else can go: deletes the peer has not acknowledged are
                    // forgotten before the store refuses a write.
                    return self.shed_every_tombstone(limit.saturating_sub(bytes));
                }
                shard = (shard + 1) & (self.shards.len() - 1);
            }
        }
        true
    }

    /// The most tombstones may hold: what is left after that is the items'.
    pub(super) fn tombstone_budget(&self) -> usize {
        self.memory_limit() / TOMBSTONE_SHARE
    }

    /// Forgets tombstones that no longer matter in one shard; returns the bytes freed.
    pub(super) fn prune_tombstones(&self, shard: &mut Shard, now: u32) -> usize {
        let freed = shard.tombstones.prune(now, self.peer_applied.load(Ordering::Acquire));
        self.release_tombstones(freed)
    }

    /// Forgets tombstones of one shard down to `keep` bytes; returns the bytes freed.
    pub(super) fn shed_tombstones(&self, shard: &mut Shard, keep: usize) -> usize {
        let freed = shard.tombstones.shed(keep);
        self.release_tombstones(freed)
    }

    pub(super) fn release_tombstones(&self, freed: tombstone::Freed) -> usize {
        if freed.bytes != 0 {
            self.tombstone_bytes.fetch_sub(freed.bytes, Ordering::Relaxed);
            self.used.fetch_sub(freed.bytes, Ordering::Relaxed);
        }
        if freed.unacknowledged != 0 && self.tombstones_shed.fetch_add(freed.unacknowledged, Ordering::Relaxed) == 0 {
            log::warn!(
                "memory full: deletes the peer has not acknowledged are being forgotten, so an older write \
                 from it can bring their keys back (raise -m; see stats repl_tombstones_shed)"
            );
        }
        freed.bytes
    }

    /// The last resort of a full store: tombstones go, shard by shard, until usage
    /// is at most `target`. True if it got there.
    pub(super) fn shed_every_tombstone(&self, target: usize) -> bool {
        for index in 0..self.shards.len() {
            if self.used.load(Ordering::Relaxed) <= target {
                return true;
            }
            if self.tombstone_bytes.load(Ordering::Relaxed) == 0 {
                return false;
            }
            let mut shard = self.lock(index);
            self.shed_tombstones(&mut shard, 0);
        }
        self.used.load(Ordering::Relaxed) <= target
    }

    /// Runs the CLOCK hand over one shard: dead items met on the way are reclaimed;
    /// a live item not referenced since the last pass is evicted when `evict_live`.
    /// Returns the bytes freed.
    pub(super) fn evict_from(&self, index: usize, evict_live: bool) -> usize {
        let mut guard = self.lock(index);
        let shard = &mut *guard;
        let now = self.now();
        // Tombstones first: those that no longer matter, then any beyond their share
        // of the limit, so that deletes stay right while live items are evicted.
        let pruned = self.prune_tombstones(shard, now.secs);
        if pruned != 0 {
            return pruned;
        }
        let share = self.tombstone_budget() / self.shards.len();
        if shard.tombstones.bytes() > share {
            return self.shed_tombstones(shard, share / 4 * 3);
        }
        if shard.table.is_empty() {
            return 0;
        }
        let buckets = shard.table.num_buckets();
        let mut freed = 0;
        for _ in 0..CLOCK_MAX_STEPS.min(2 * buckets) {
            let bucket = shard.clock_hand % buckets;
            shard.clock_hand = (bucket + 1) % buckets;
            let Some(item) = shard.table.get_bucket_mut(bucket) else {
                continue;
            };
            match now.liveness(item) {
                Liveness::Live => {
                    if item.has_bit(BIT_REFERENCED) {
                        item.clear_bit(BIT_REFERENCED);
                        continue;
                    }
                    if !evict_live {
                        continue;
                    }
                    if self.protects_any() && self.is_protected(item.key()) {
                        shard.counters.evictions_skipped_protected += 1;
                        continue;
                    }
                    let unfetched = !item.has_bit(BIT_FETCHED);
                    if let Some(observe) = self.eviction_observer.get() {
                        let expires_at = item.expires_at();
                        observe(&Evicted {
                            key: item.key(),
                            value_len: item.value().len(),
                            fetched: !unfetched,
                            ttl: (expires_at != 0).then(|| expires_at.saturating_sub(now.secs)),
                            idle: now.secs.saturating_sub(item.last_access()),
                        });
                    }
                    freed += self.remove_bucket(shard, bucket, Liveness::Live);
                    shard.counters.evictions += 1;
                    if unfetched {
                        shard.counters.evicted_unfetched += 1;
                    }
                    return freed;
                }
                dead => freed += self.remove_bucket(shard, bucket, dead),
            }
        }
        freed
    }
}
