//! Versions: every write gets one from a hybrid logical clock (HLC) and the node's id,
//! so that two nodes that both accept writes agree on which of two states of a key is
//! newer (last writer wins) without agreeing on anything else.
//!
//! A version is one `u64`, and it is also the item's CAS unique, so `gets` returns
//! the same unique on every node holding the same state, and a stale unique fails on
//! all of them (repcached's peers each counted from 1 and reused each other's
//! uniques: replication-lessons finding 6).
//!
//! ```text
//!  63                         23 22          12 11          0
//! +-----------------------------+--------------+-------------+
//! | ms since 2020-01-01 (41 b)  | logical (11) | node id (12)|
//! +-----------------------------+--------------+-------------+
//! ```
//!
//! The physical part follows the wall clock; the logical counter orders writes
//! within one millisecond and, when a node sees a version from its peer's future,
//! keeps its own next writes after it (the HLC receive rule, Kulkarni et al. 2014).
//! More than 2048 writes in one millisecond borrow from the next millisecond, so
//! under such a burst the clock runs briefly ahead of real time and then waits for
//! it. 41 bits of milliseconds last until 2089; the top bit stays clear until 2054,
//! so languages whose integers are signed (PHP, Java) read uniques as positive.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bits of the node id (up to 4096 nodes).
pub const NODE_BITS: u32 = 12;
/// Bits of the logical counter.
pub const LOGICAL_BITS: u32 = 11;
/// The largest node id.
pub const NODE_MAX: u16 = (1 << NODE_BITS) - 1;
/// 2020-01-01T00:00:00Z in Unix milliseconds: the clock's zero.
pub const EPOCH_UNIX_MS: u64 = 1_577_836_800_000;

/// A node's source of versions. Shared by every thread that writes.
#[derive(Debug)]
pub struct VersionClock {
    /// The last HLC value handed out or observed: milliseconds since the epoch,
    /// shifted left by [`LOGICAL_BITS`], plus the logical counter.
    last: AtomicU64,
    node: u16,
}

impl VersionClock {
    pub fn new(node: u16) -> VersionClock {
        assert!(node <= NODE_MAX, "node id {node} is over {NODE_MAX}");
        VersionClock { last: AtomicU64::new(0), node }
    }

    pub fn node(&self) -> u16 {
        self.node
    }

    /// A version newer than every one this node has made or observed, at `now_ms`
    /// (Unix milliseconds).
    #[inline]
    pub fn next(&self, now_ms: u64) -> u64 {
        let wall = now_ms.saturating_sub(EPOCH_UNIX_MS) << LOGICAL_BITS;
        let step = |last: u64| Some(wall.max(last + 1));
        let previous = self.last.fetch_update(Ordering::AcqRel, Ordering::Acquire, step).unwrap_or_else(|v| v);
        let hlc = wall.max(previous + 1);
        (hlc << NODE_BITS) | u64::from(self.node)
    }

    /// The newest version this node has made or observed (with no node id): a
    /// warm restart keeps it, so that writes after the restart stay newer than a
    /// delete applied before it, of which no tombstone may remain.
    pub fn newest(&self) -> u64 {
        self.last.load(Ordering::Acquire) << NODE_BITS
    }

    /// Takes note of a version made elsewhere, so that this node's next versions
    /// are newer than it.
    #[inline]
    pub fn observe(&self, version: u64) {
        self.last.fetch_max(version >> NODE_BITS, Ordering::AcqRel);
    }
}

/// The node that made a version.
pub fn node_of(version: u64) -> u16 {
    (version & u64::from(NODE_MAX)) as u16
}

/// The Unix millisecond a version was made at (its physical part).
pub fn unix_ms_of(version: u64) -> u64 {
    (version >> (NODE_BITS + LOGICAL_BITS)) + EPOCH_UNIX_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_000_000_000;

    #[test]
    fn versions_grow_and_carry_the_node_and_the_time() {
        let clock = VersionClock::new(7);
        let a = clock.next(NOW);
        let b = clock.next(NOW);
        let c = clock.next(NOW + 1);
        assert!(a < b && b < c);
        assert_eq!((node_of(a), unix_ms_of(a)), (7, NOW));
        assert_eq!(unix_ms_of(b), NOW, "a second write in the same millisecond counts logically");
        assert_eq!(unix_ms_of(c), NOW + 1);
        assert!(a < 1 << 63, "uniques read as positive in signed 64-bit integers");
    }

    #[test]
    fn a_clock_that_goes_back_never_repeats_a_version() {
        let clock = VersionClock::new(1);
        let late = clock.next(NOW + 5_000);
        assert!(clock.next(NOW) > late);
    }

    #[test]
    fn observing_a_peer_keeps_local_writes_after_it() {
        let (ahead, behind) = (VersionClock::new(1), VersionClock::new(2));
        let remote = ahead.next(NOW + 30_000);
        behind.observe(remote);
        let local = behind.next(NOW);
        assert!(local > remote, "a write made after seeing a version is newer than it");
        assert_eq!(node_of(local), 2);
    }

    #[test]
    fn the_node_id_breaks_ties() {
        let (low, high) = (VersionClock::new(1), VersionClock::new(2));
        assert!(low.next(NOW) < high.next(NOW));
    }

    #[test]
    fn a_burst_borrows_from_the_next_millisecond() {
        let clock = VersionClock::new(0);
        let versions: Vec<u64> = (0..3000).map(|_| clock.next(NOW)).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(unix_ms_of(versions[2047]), NOW);
        assert_eq!(unix_ms_of(versions[2048]), NOW + 1);
    }
}
