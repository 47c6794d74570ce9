//! The backlog: recent local changes numbered by sequence, bounded in bytes, so
//! that a peer that reconnects within it receives only what it missed (a partial
//! resync, like Redis's `repl-backlog-size`) instead of the whole cache (repcached's
//! only resync: 14–17 s for a million keys, replication-lessons finding 10).
//!
//! It records keys, not values: the sender reads each key's current state when it
//! sends (`Store::key_state`), so a burst of writes to one session costs one entry
//! per write here but sends the latest state, and memory stays small. When the
//! backlog overflows, the oldest entries go; a peer that needed them is told to take
//! a full sync, never silently skipped (repcached 2.3.1 dropped the link for good).
//!
//! Its capacity bounds the memory it really takes: half of it is the ring of entries,
//! allocated once to its final size (a deque that doubled as it filled could hold
//! twice its entries' worth), and half the keys' heap blocks, counted as malloc
//! allocates them.

use crate::store::{Change, Proposal};
use std::collections::VecDeque;

/// An entry's heap block beyond its key: none for a flush.
fn heap_bytes(change: &Recorded) -> usize {
    match change {
        Recorded::Key(key) | Recorded::Passed { key, .. } | Recorded::Claim { key, .. } => {
            crate::store::allocated_size(key.len())
        }
        Recorded::Resolve { key, .. } => crate::store::allocated_size(key.len()),
        Recorded::Propose(proposal) => {
            crate::store::allocated_size(std::mem::size_of::<Proposed>())
                + crate::store::allocated_size(proposal.key.len())
                + crate::store::allocated_size(proposal.value.len())
        }
        Recorded::Flush { .. } => 0,
    }
}

/// A proposal as the backlog keeps it: unlike other changes, its state is nowhere
/// in the store until it is granted, so it travels from here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposed {
    pub key: Box<[u8]>,
    pub value: Box<[u8]>,
    pub version: u64,
    pub base: u64,
    pub absent: bool,
    pub flags: u32,
    pub expires_at: u32,
}

impl Proposed {
    pub fn as_proposal(&self) -> Proposal<'_> {
        let Proposed { ref key, ref value, version, base, absent, flags, expires_at } = *self;
        Proposal { key, version, base, absent, value, flags, expires_at }
    }
}

/// A change as the backlog keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    Key(Box<[u8]>),
    /// A key whose state came from a peer's run (`from`: [`super::replicator::Peer::run_tag`])
    /// and is passed on to the others: that run holds it already.
    Passed {
        key: Box<[u8]>,
        from: u32,
    },
    /// A key an `add` created at `version`: sent as a `Claim` while it holds that
    /// version.
    Claim {
        key: Box<[u8]>,
        version: u64,
    },
    Flush {
        version: u64,
        at: u32,
    },
    /// A claim proposed to a majority (`--repl-claims majority`), with its state.
    Propose(Box<Proposed>),
    /// Our proposal of `version` on `key` is decided: the voters may vote again
    /// (a granted one's state went just before, as a plain change).
    Resolve {
        key: Box<[u8]>,
        version: u64,
    },
}

impl From<Change<'_>> for Recorded {
    fn from(change: Change<'_>) -> Recorded {
        match change {
            Change::Key(key) => Recorded::Key(key.into()),
            Change::Claim { key, version } => Recorded::Claim { key: key.into(), version },
            Change::Flush { version, at } => Recorded::Flush { version, at },
            Change::Propose(Proposal { key, version, base, absent, value, flags, expires_at }) => {
                let (key, value) = (key.into(), value.into());
                Recorded::Propose(Box::new(Proposed { key, value, version, base, absent, flags, expires_at }))
            }
        }
    }
}

/// Entries a reader asked for are gone: the peer needs a full sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflowed;

#[derive(Debug)]
struct Entry {
    seq: u64,
    change: Recorded,
    /// When it was recorded (on the recorder's clock), for the replication lag.
    at: u64,
}

#[derive(Debug)]
pub struct Backlog {
    entries: VecDeque<Entry>,
    /// The most entries the ring holds.
    slots: usize,
    /// The sequence number the next change gets; the first is 1.
    next_seq: u64,
    /// Bytes the keys' blocks may take.
    key_capacity: usize,
    key_bytes: usize,
    capacity: usize,
}

impl Backlog {
    pub fn new(capacity: usize) -> Backlog {
        let slots = (capacity / 2 / std::mem::size_of::<Entry>()).max(1);
        // Reserved once: the pages are touched only as the ring fills.
        let entries = VecDeque::with_capacity(slots);
        let ring_bytes = entries.capacity() * std::mem::size_of::<Entry>();
        Backlog {
            entries,
            slots,
            next_seq: 1,
            key_capacity: capacity.saturating_sub(ring_bytes),
            key_bytes: 0,
            capacity,
        }
    }

    /// Continues a sequence saved by an earlier run (warm restart): the next change
    /// is `last_seq + 1`, and a peer that applied up to `last_seq` resumes with
    /// nothing to resend. Only for an empty backlog.
    pub fn continue_after(&mut self, last_seq: u64) {
        debug_assert!(self.entries.is_empty());
        self.next_seq = last_seq + 1;
    }

    /// Drops every change held, keeping the sequence: the next change is numbered
    /// as it would have been, and a peer behind this point gets a full sync.
    pub fn forget_all(&mut self) {
        self.entries.clear();
        self.key_bytes = 0;
    }

    /// Records a change and returns its sequence number, dropping the oldest
    /// entries while over capacity.
    pub fn push(&mut self, change: Recorded, at: u64) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let heap = heap_bytes(&change);
        while !self.entries.is_empty()
            && (self.entries.len() >= self.slots || self.key_bytes + heap > self.key_capacity)
        {
            let oldest = self.entries.pop_front().expect("not empty");
            self.key_bytes -= heap_bytes(&oldest.change);
        }
        self.key_bytes += heap;
        self.entries.push_back(Entry { seq, change, at });
        seq
    }

    /// The sequence number of the last change recorded (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// The oldest sequence number still held (`last_seq + 1` when empty).
    pub fn first_seq(&self) -> u64 {
        self.entries.front().map_or(self.next_seq, |entry| entry.seq)
    }

    /// Bytes in use: the ring's filled slots and the keys' blocks (the ring is
    /// reserved whole, but its pages are touched only as it fills).
    pub fn bytes(&self) -> usize {
        self.entries.len() * std::mem::size_of::<Entry>() + self.key_bytes
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether a peer that has everything up to `applied` can resume from here
    /// (a partial resync); otherwise it needs a full sync. A peer that is ahead of
    /// this backlog remembers another run of this node and needs one too.
    pub fn covers(&self, applied: u64) -> bool {
        applied <= self.last_seq() && applied + 1 >= self.first_seq()
    }

    /// When change `seq` was recorded, while it is held.
    pub fn recorded_at(&self, seq: u64) -> Option<u64> {
        let index = seq.checked_sub(self.first_seq())?;
        self.entries.get(usize::try_from(index).ok()?).map(|entry| entry.at)
    }

    /// Visits up to `max` entries from sequence number `from` on, oldest first, and
    /// returns how many; `Overflowed` if `from` is already gone.
    pub fn visit_from(
        &self,
        from: u64,
        max: usize,
        mut visit: impl FnMut(u64, &Recorded),
    ) -> Result<usize, Overflowed> {
        if from < self.first_seq() {
            return Err(Overflowed);
        }
        let skip = (from - self.first_seq()) as usize;
        let mut visited = 0;
        for entry in self.entries.iter().skip(skip).take(max) {
            visit(entry.seq, &entry.change);
            visited += 1;
        }
        Ok(visited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Recorded {
        Recorded::Key(name.as_bytes().into())
    }

    fn after(backlog: &Backlog, applied: u64) -> Result<Vec<(u64, Recorded)>, Overflowed> {
        let mut seen = Vec::new();
        backlog.visit_from(applied + 1, usize::MAX, |seq, change| seen.push((seq, change.clone())))?;
        Ok(seen)
    }

    #[test]
    fn a_peer_within_the_backlog_gets_only_what_it_missed() {
        let mut backlog = Backlog::new(1 << 20);
        assert!(backlog.covers(0));
        assert_eq!(after(&backlog, 0), Ok(Vec::new()));
        let (a, b, c) = (backlog.push(key("a"), 10), backlog.push(key("b"), 20), backlog.push(key("c"), 30));
        assert_eq!((a, b, c, backlog.last_seq()), (1, 2, 3, 3));
        assert!(backlog.covers(1));
        assert_eq!(after(&backlog, 1), Ok(vec![(2, key("b")), (3, key("c"))]));
        assert_eq!(after(&backlog, 3), Ok(Vec::new()));
        assert_eq!((backlog.recorded_at(2), backlog.recorded_at(4)), (Some(20), None));
        let mut first_two = Vec::new();
        assert_eq!(backlog.visit_from(1, 2, |seq, _| first_two.push(seq)), Ok(2));
        assert_eq!(first_two, [1, 2], "at most `max` entries");
    }

    #[test]
    fn overflow_drops_the_oldest_and_asks_for_a_full_sync() {
        let slot = std::mem::size_of::<Entry>();
        let mut backlog = Backlog::new(slot * 6);
        for at in 0..5 {
            backlog.push(key("k"), at);
        }
        assert_eq!((backlog.first_seq(), backlog.last_seq()), (3, 5), "three slots");
        assert!(backlog.bytes() <= backlog.capacity());
        assert!(!backlog.covers(1), "entry 2 is gone");
        assert_eq!(after(&backlog, 1), Err(Overflowed));
        assert!(backlog.covers(2));
        assert_eq!(after(&backlog, 2).map(|missed| missed.len()), Ok(3));
        assert!(!backlog.covers(9), "a peer ahead of this node's history");
    }

    #[test]
    fn long_keys_are_bounded_by_their_blocks() {
        let mut backlog = Backlog::new(64 * 1024);
        let long = Recorded::Key(vec![b'k'; 250].into());
        for at in 0..1000 {
            backlog.push(long.clone(), at);
            assert!(backlog.bytes() <= backlog.capacity(), "{} bytes", backlog.bytes());
        }
        assert!(backlog.first_seq() > 800, "the oldest went");
    }

    #[test]
    fn flushes_are_recorded_in_order_with_keys() {
        let mut backlog = Backlog::new(1 << 20);
        backlog.push(Recorded::from(Change::Key(b"k")), 0);
        backlog.push(Recorded::from(Change::Flush { version: 7, at: 0 }), 0);
        backlog.push(Recorded::from(Change::Key(b"k")), 0);
        let missed = after(&backlog, 0).unwrap();
        assert_eq!(missed[1], (2, Recorded::Flush { version: 7, at: 0 }), "a flush keeps its place between sets");
    }
}
