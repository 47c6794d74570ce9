//! Tombstones: the versions of deleted keys, kept while replicating so that an older
//! state arriving from the peer cannot bring a key back.
//!
//! A tombstone is kept only as long as it can matter, and its memory counts against
//! `-m` like an item's:
//!
//! - A delete made here (a client's, whether or not this node held the key) is
//!   needed until the peer has applied it. The sender marks a tombstone with the
//!   sequence number that carried it ([`Store::key_state_sent`]); once the peer
//!   acknowledges that number ([`Store::peer_applied`]) the peer holds the delete
//!   or something newer, and every older state it had put on the link was read
//!   before that acknowledgement, so the tombstone is forgotten.
//! - A delete applied from the peer leaves none: the peer holds it, and whatever
//!   the peer sent before it arrived first.
//! - An item of this node's own version that expired leaves one for
//!   `--repl-tombstone` seconds, in case the peer was cut off when it was written
//!   and still holds an older, longer-lived state.
//!
//! Every tombstone is also forgotten after `--repl-tombstone` seconds, and under
//! memory pressure ([`Tombstones::shed`]): expiries first, then deletes the peer has
//! not acknowledged (counted, since a late older write can then win).
//!
//! Each tombstone is an [`Item`] with no flags whose CAS is the delete's version,
//! whose expiry is the time it may be forgotten, and whose 8-byte value is its
//! mark: 14-byte keys cost a 48-byte block and an 8-byte table slot.

use super::item::{Item, ItemMeta};
use hashbrown::HashTable;

/// The mark of a delete not yet sent to the peer.
const UNSENT: u64 = 0;
/// The mark of an expiry's tombstone: never acknowledged, forgotten by time.
const EXPIRY: u64 = u64::MAX;
/// Bytes of a mark.
const MARK_LEN: usize = 8;

/// What a tombstone records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Burial {
    /// A client deleted the key here.
    Delete,
    /// An item of this node's version expired here.
    Expiry,
}

/// One shard's tombstones.
pub struct Tombstones {
    table: HashTable<Item>,
    /// Bytes of tombstone blocks and of the table.
    bytes: usize,
    table_bytes: usize,
    /// The lowest mark of a sent delete here (`u64::MAX` if none): nothing is
    /// acknowledged-forgettable while the peer's applied number is below it.
    lowest_sent: u64,
    /// The earliest `until` here (`u32::MAX` if none).
    earliest_until: u32,
}

/// What pruning or shedding freed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Freed {
    pub bytes: usize,
    /// Deletes forgotten before the peer acknowledged them.
    pub unacknowledged: u64,
}

impl Default for Tombstones {
    fn default() -> Self {
        Tombstones {
            table: HashTable::new(),
            bytes: 0,
            table_bytes: 0,
            lowest_sent: u64::MAX,
            earliest_until: u32::MAX,
        }
    }
}

fn mark_of(tomb: &Item) -> u64 {
    let mut mark = [0u8; MARK_LEN];
    mark.copy_from_slice(tomb.value());
    u64::from_le_bytes(mark)
}

fn set_mark(tomb: &mut Item, mark: u64) {
    tomb.value_mut().copy_from_slice(&mark.to_le_bytes());
}

impl Tombstones {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Bytes held: blocks and table.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The version `key` was deleted at, if it is remembered.
    pub fn version(&self, hash: u64, key: &[u8]) -> Option<u64> {
        self.table.find(hash, |tomb| tomb.key() == key).map(Item::cas)
    }

    /// Remembers that `key` was deleted (or expired) at `version`, until `until`;
    /// a tombstone already newer stays. Returns the bytes this added.
    pub fn bury(
        &mut self,
        hasher: &ahash::RandomState,
        hash: u64,
        key: &[u8],
        version: u64,
        until: u32,
        burial: Burial,
    ) -> usize {
        let mark = if burial == Burial::Expiry { EXPIRY } else { UNSENT };
        if let Some(tomb) = self.table.find_mut(hash, |tomb| tomb.key() == key) {
            if version > tomb.cas() {
                tomb.set_cas(version);
                tomb.set_expires_at(until);
                set_mark(tomb, mark);
                self.earliest_until = self.earliest_until.min(until);
            }
            return 0;
        }
        let meta = ItemMeta { flags: 0, expires_at: until, cas: version, now: 0 };
        let Some(tomb) = Item::new(key, &[&mark.to_le_bytes()], meta) else {
            return 0;
        };
        let charge = tomb.charge();
        self.table.insert_unique(hash, tomb, |tomb| hasher.hash_one(tomb.key()));
        self.earliest_until = self.earliest_until.min(until);
        let table_bytes = self.table.allocation_size();
        let grown = charge + table_bytes.saturating_sub(self.table_bytes);
        self.table_bytes = table_bytes;
        self.bytes += grown;
        grown
    }

    /// Forgets `key`'s tombstone if it is not newer than `version` (a newer state
    /// of the key arrived); returns the bytes freed.
    pub fn remove_upto(&mut self, hash: u64, key: &[u8], version: u64) -> usize {
        match self.table.find_entry(hash, |tomb| tomb.key() == key) {
            Ok(entry) if entry.get().cas() <= version => {
                let charge = entry.get().charge();
                entry.remove();
                self.bytes -= charge;
                charge
            }
            _ => 0,
        }
    }

    /// [`Tombstones::version`], noting that the tombstone goes to the peer as
    /// change `seq` when one is given.
    pub fn version_sent(&mut self, hash: u64, key: &[u8], seq: Option<u64>) -> Option<u64> {
        let tomb = self.table.find_mut(hash, |tomb| tomb.key() == key)?;
        if let Some(seq) = seq {
            Self::sent_in(tomb, seq, &mut self.lowest_sent);
        }
        Some(tomb.cas())
    }

    /// Visits every tombstone's key, version and the time it is kept until, marking
    /// nothing (a warm restart saving them).
    pub fn each_kept(&self, mut visit: impl FnMut(&[u8], u64, u32)) {
        for tomb in self.table.iter() {
            visit(tomb.key(), tomb.cas(), tomb.expires_at());
        }
    }

    /// Deletes a peer that has applied our changes up to `applied` may still lack:
    /// not yet sent, or sent in a later change (expiries, forgotten by time alone,
    /// are not counted).
    pub fn pending_for(&self, applied: u64) -> usize {
        self.table
            .iter()
            .filter(|tomb| mark_of(tomb) != EXPIRY && (mark_of(tomb) == UNSENT || mark_of(tomb) > applied))
            .count()
    }

    /// Visits every tombstone's key and version for a full sync covering up to
    /// `seq`, marking the deletes as sent in it.
    pub fn each(&mut self, seq: u64, mut visit: impl FnMut(&[u8], u64)) {
        for tomb in self.table.iter_mut() {
            visit(tomb.key(), tomb.cas());
            Self::sent_in(tomb, seq, &mut self.lowest_sent);
        }
    }

    /// Marks a delete's tombstone sent in change `seq` (an expiry's stays unmarked).
    fn sent_in(tomb: &mut Item, seq: u64, lowest_sent: &mut u64) {
        let mark = mark_of(tomb);
        if mark != EXPIRY && seq > mark {
            set_mark(tomb, seq);
            *lowest_sent = (*lowest_sent).min(seq);
        }
    }

    /// Whether [`Tombstones::prune`] would free anything.
    pub fn prunable(&self, now: u32, peer_applied: u64) -> bool {
        self.lowest_sent <= peer_applied || self.earliest_until <= now
    }

    /// Forgets the tombstones that no longer matter: past their time, or sent in a
    /// change the peer has applied.
    pub fn prune(&mut self, now: u32, peer_applied: u64) -> Freed {
        if !self.prunable(now, peer_applied) {
            return Freed::default();
        }
        let (mut lowest_sent, mut earliest_until, mut freed) = (u64::MAX, u32::MAX, 0);
        self.table.retain(|tomb| {
            let mark = mark_of(tomb);
            let acknowledged = mark != UNSENT && mark != EXPIRY && mark <= peer_applied;
            if acknowledged || tomb.expires_at() <= now {
                freed += tomb.charge();
                return false;
            }
            if mark != UNSENT && mark != EXPIRY {
                lowest_sent = lowest_sent.min(mark);
            }
            earliest_until = earliest_until.min(tomb.expires_at());
            true
        });
        self.bytes -= freed;
        self.lowest_sent = lowest_sent;
        self.earliest_until = earliest_until;
        Freed { bytes: freed + self.shrink(), unacknowledged: 0 }
    }

    /// Forgets tombstones until at most `keep` bytes (the table's included) remain:
    /// expiries first, then deletes in table order. Memory pressure only.
    pub fn shed(&mut self, keep: usize) -> Freed {
        let mut freed = Freed::default();
        for expiries_only in [true, false] {
            let mut held = self.bytes - freed.bytes;
            if held <= keep {
                break;
            }
            self.table.retain(|tomb| {
                let expiry = mark_of(tomb) == EXPIRY;
                if held <= keep || (expiries_only && !expiry) {
                    return true;
                }
                held -= tomb.charge();
                freed.bytes += tomb.charge();
                if !expiry {
                    freed.unacknowledged += 1;
                }
                false
            });
        }
        self.bytes -= freed.bytes;
        if self.is_empty() {
            self.lowest_sent = u64::MAX;
            self.earliest_until = u32::MAX;
        }
        freed.bytes += self.shrink();
        freed
    }

    /// Gives back the table of a shard whose tombstones are gone, so that a burst of
    /// deletes does not keep its table's memory for good; returns the bytes freed.
    fn shrink(&mut self) -> usize {
        if !self.table.is_empty() || self.table_bytes == 0 {
            return 0;
        }
        self.table = HashTable::new();
        self.bytes -= self.table_bytes;
        std::mem::take(&mut self.table_bytes)
    }

    /// Forgets everything (a poisoned shard); returns the bytes freed.
    pub fn clear(&mut self) -> usize {
        let bytes = self.bytes;
        *self = Tombstones::default();
        bytes
    }
}
