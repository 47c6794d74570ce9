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

use crate::store::Change;
use std::collections::VecDeque;

/// Bytes an entry costs beyond its key: the sequence number, the enum and the
/// deque slot, rounded up.
const ENTRY_OVERHEAD: usize = 48;

/// A change as the backlog keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    Key(Box<[u8]>),
    Flush { version: u64, at: u32 },
}

impl Recorded {
    fn bytes(&self) -> usize {
        ENTRY_OVERHEAD
            + match self {
                Recorded::Key(key) => key.len(),
                Recorded::Flush { .. } => 0,
            }
    }
}

impl From<Change<'_>> for Recorded {
    fn from(change: Change<'_>) -> Recorded {
        match change {
            Change::Key(key) => Recorded::Key(key.into()),
            Change::Flush { version, at } => Recorded::Flush { version, at },
        }
    }
}

/// What a peer that has applied up to some sequence number needs next.
#[derive(Debug, PartialEq, Eq)]
pub enum Resume<'a> {
    /// The entries after its sequence number, oldest first.
    Partial(Vec<(u64, &'a Recorded)>),
    /// Some of what it missed is gone from the backlog: it needs the whole cache.
    FullSync,
}

#[derive(Debug)]
pub struct Backlog {
    entries: VecDeque<(u64, Recorded)>,
    /// The sequence number the next change gets; the first is 1.
    next_seq: u64,
    bytes: usize,
    capacity: usize,
}

impl Backlog {
    pub fn new(capacity: usize) -> Backlog {
        Backlog { entries: VecDeque::new(), next_seq: 1, bytes: 0, capacity }
    }

    /// Records a change and returns its sequence number, dropping the oldest
    /// entries while over capacity.
    pub fn push(&mut self, change: Recorded) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += change.bytes();
        self.entries.push_back((seq, change));
        while self.bytes > self.capacity {
            let Some((_, oldest)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= oldest.bytes();
        }
        seq
    }

    /// The sequence number of the last change recorded (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// The oldest sequence number still held (`last_seq + 1` when empty).
    pub fn first_seq(&self) -> u64 {
        self.entries.front().map_or(self.next_seq, |(seq, _)| *seq)
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What a peer that has everything up to `applied` needs next. A peer that is
    /// ahead of this backlog (it remembers sequence numbers from this node's earlier
    /// life) also needs a full sync.
    pub fn resume_after(&self, applied: u64) -> Resume<'_> {
        if applied > self.last_seq() || applied + 1 < self.first_seq() {
            return Resume::FullSync;
        }
        let skip = (applied + 1 - self.first_seq()) as usize;
        Resume::Partial(self.entries.iter().skip(skip).map(|(seq, change)| (*seq, change)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Recorded {
        Recorded::Key(name.as_bytes().into())
    }

    #[test]
    fn a_peer_within_the_backlog_gets_only_what_it_missed() {
        let mut backlog = Backlog::new(1 << 20);
        assert_eq!(backlog.resume_after(0), Resume::Partial(Vec::new()));
        let (a, b, c) = (backlog.push(key("a")), backlog.push(key("b")), backlog.push(key("c")));
        assert_eq!((a, b, c, backlog.last_seq()), (1, 2, 3, 3));
        assert_eq!(backlog.resume_after(1), Resume::Partial(vec![(2, &key("b")), (3, &key("c"))]));
        assert_eq!(backlog.resume_after(3), Resume::Partial(Vec::new()));
    }

    #[test]
    fn overflow_drops_the_oldest_and_asks_for_a_full_sync() {
        let entry = key("k").bytes();
        let mut backlog = Backlog::new(entry * 3);
        for _ in 0..5 {
            backlog.push(key("k"));
        }
        assert_eq!((backlog.first_seq(), backlog.last_seq(), backlog.bytes()), (3, 5, entry * 3));
        assert_eq!(backlog.resume_after(1), Resume::FullSync, "entry 2 is gone");
        assert!(matches!(backlog.resume_after(2), Resume::Partial(ref missed) if missed.len() == 3));
        assert_eq!(backlog.resume_after(9), Resume::FullSync, "a peer ahead of this node's history");
    }

    #[test]
    fn flushes_are_recorded_in_order_with_keys() {
        let mut backlog = Backlog::new(1 << 20);
        backlog.push(Recorded::from(Change::Key(b"k")));
        backlog.push(Recorded::from(Change::Flush { version: 7, at: 0 }));
        backlog.push(Recorded::from(Change::Key(b"k")));
        let Resume::Partial(missed) = backlog.resume_after(0) else { panic!("within") };
        assert_eq!(missed[1], (2, &Recorded::Flush { version: 7, at: 0 }), "a flush keeps its place between sets");
    }
}
