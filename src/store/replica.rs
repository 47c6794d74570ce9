//! What replication needs from the store, and nothing of the network: telling an
//! observer which keys changed, reading a key's current state to send, and applying
//! a peer's state only when it is newer (last writer wins on [`version`]s).
//!
//! What travels is the resulting state of a key, never the command, so a peer never
//! re-executes anything and a burst of writes to one key coalesces (repcached queued
//! keys and read the value at send time too). A delete leaves a tombstone with its
//! version until the peer has it, so that an older write arriving late cannot bring
//! the key back (KeyDB's resurrections, replication-lessons goal 7); an expired item
//! leaves one too, so that a longer-lived older state on the peer cannot outlive the
//! newer state that expired ([`tombstone`](super::tombstone)). Evictions are never
//! reported and leave nothing: a small peer must not wipe a big one (finding 8).
//!
//! [`version`]: super::version

use super::counter::{self, Counter, Layer, Ledger, Merged};
use super::item::{BIT_CLIENT_CAS, Item, ItemMeta};
use super::tombstone::Burial;
use super::{Ledgers, Liveness, Shard, Store};
use std::sync::MutexGuard;
use std::sync::atomic::Ordering;

/// A change an observer hears of, after it is visible to readers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change<'a> {
    /// The key's state changed (written, touched or deleted): read it to send it.
    Key(&'a [u8]),
    /// An `add` created the key at `version`: read it to send it, as a claim the
    /// peer refuses when it holds a live item of its own that wins
    /// ([`Store::apply_remote_claim`]).
    Claim { key: &'a [u8], version: u64 },
    /// `flush_all`: every item with a version up to `version` is gone, and with
    /// `at` (Unix seconds, 0 for none) every item last written up to that second.
    Flush { version: u64, at: u32 },
    /// A claim made under `--repl-claims majority` and not applied: readers see
    /// nothing of it until a majority of the nodes has accepted it
    /// (`replication::claims`), and then it is installed ([`Store::install_granted`]).
    Propose(Proposal<'a>),
}

/// What a claim would make of its key, proposed to the other nodes before any
/// reader may see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposal<'a> {
    pub key: &'a [u8],
    /// The claim's version, which is also the CAS its client is told.
    pub version: u64,
    /// What the claim was made on: the version of the key's item, of its expired
    /// item or of its tombstone, 0 for nothing. A node holding a newer state
    /// refuses the claim: its maker had not seen that write.
    pub base: u64,
    /// The claim was made on an absent key (an `add`, or a write that creates
    /// the item it misses): a node where the key is absent too may accept it over
    /// a newer tombstone or expired item, as long as the claim is newer still.
    pub absent: bool,
    pub value: &'a [u8],
    pub flags: u32,
    /// Unix seconds, 0 for never.
    pub expires_at: u32,
}

/// Told of every local change; set once, before traffic. It returns the number it
/// recorded the change under (replication's sequence number), which goes back to
/// the writer in its [`Receipt`].
pub type ChangeObserver = Box<dyn Fn(Change<'_>) -> u64 + Send + Sync>;

/// What the change observer made of one write: the numbers it recorded the write's
/// changes under, 0 for none. The writer learns them from the write's own result,
/// so what it waits for (an acknowledgement, a claim's verdict) never depends on
/// which thread the observer ran on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Receipt {
    /// The last change the write recorded.
    pub recorded: u64,
    /// The claim the write recorded (an `add`, `cas`, `incr`...): its result stands
    /// only once the peer has not refused it.
    pub claim: u64,
}

impl Receipt {
    /// Adds a later write's receipt to this one: the newest numbers win.
    pub fn merge(&mut self, later: Receipt) {
        self.recorded = self.recorded.max(later.recorded);
        self.claim = self.claim.max(later.claim);
    }
}

/// A key's state as it travels between peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState<'a> {
    Value {
        value: &'a [u8],
        flags: u32,
        /// Unix seconds after which the item is gone (absolute, so both nodes agree);
        /// 0 for never.
        expires_at: u32,
        /// The value's counter, once `incr` or `decr` changed it ([`Counter`]).
        counter: Option<Counter<'a>>,
    },
    Deleted,
}

/// One key's state with the version that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyChange<'a> {
    pub key: &'a [u8],
    pub version: u64,
    pub state: KeyState<'a>,
}

impl KeyChange<'_> {
    /// The version of the key's value as linked nodes agreed it, which claims
    /// compare: a counter's agreed version (parts counted apart and touches leave
    /// it), else the state's own.
    pub fn agreed_version(&self) -> u64 {
        match self.state {
            KeyState::Value { counter: Some(counter), .. } => counter.agreed_version,
            _ => self.version,
        }
    }
}

/// What applying a peer's change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The change was newer and is now the key's state.
    Applied,
    /// This node already holds a newer (or the same) state: nothing changed.
    Older,
    /// No memory for the value even after eviction (`-M`, or a value over the limit).
    NoMemory,
    /// A claim lost: this node holds a live item of a newer version, made here by a
    /// write the claimer had not seen.
    Refused,
}

/// Where a full sync stands (see [`Store::sync_slice`]); start from `default()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncCursor {
    shard: usize,
    bucket: usize,
    /// The shard's bucket count when `bucket` was reached: a different count means
    /// the table grew and the shard starts over.
    buckets_seen: usize,
    pub done: bool,
}

impl Store {
    /// Installs the one change observer, which turns on tombstones and version bumps
    /// on touch; false if one is already installed.
    pub fn observe_changes(&self, observer: ChangeObserver, tombstone_secs: u32) -> bool {
        self.tombstone_secs.store(tombstone_secs, Ordering::Relaxed);
        self.change_observer.set(observer).is_ok()
    }

    /// The node is in a mesh: an expired item leaves a tombstone of its version
    /// whichever node made it. A node in a mesh vouches for what it applied of a
    /// third node's run (a full sync's positions) and passes it on, so a state
    /// of that node's that expired here must still beat an older one that a peer
    /// cut off from its maker holds.
    pub fn keep_every_expiry(&self) {
        self.keeps_every_expiry.store(true, Ordering::Relaxed);
    }

    /// Whether an expired item of `version` leaves a tombstone here.
    pub(super) fn keeps_expiry_of(&self, version: u64) -> bool {
        self.replicated()
            && (super::version::node_of(version) == self.node_id() || self.keeps_every_expiry.load(Ordering::Relaxed))
    }

    /// Whether changes are reported (replication is on).
    #[inline]
    pub(super) fn replicated(&self) -> bool {
        self.change_observer.get().is_some()
    }

    /// Notes that `key`'s write at `version` was a claim. Called with the shard's
    /// lock still held, so that the claim is recorded before any other thread can
    /// read it: a link that reads a key to send an older change of it, or as the
    /// winner of a refusal, must never send a claim's state ahead of the claim (the
    /// peer could build on it, as a plain state, before the claim arrives and
    /// loses there: its client would run again, and an increment count twice).
    /// The observer takes only the backlog's lock, never a shard's.
    #[inline]
    pub(super) fn note_claim(&self, key: &[u8], version: u64, receipt: &mut Receipt) {
        self.note(Change::Claim { key, version }, receipt);
    }

    #[inline]
    pub(super) fn note(&self, change: Change<'_>, receipt: &mut Receipt) {
        if let Some(observer) = self.change_observer.get() {
            let number = observer(change);
            receipt.recorded = receipt.recorded.max(number);
            if matches!(change, Change::Claim { .. } | Change::Propose(_)) {
                receipt.claim = number;
            }
        }
    }

    /// Records that `key` was deleted (or expired) at `version` (only while
    /// replicating); its memory counts against the limit.
    pub(super) fn bury(&self, shard: &mut Shard, hash: u64, key: &[u8], version: u64, now: u32, burial: Burial) {
        let until = now.saturating_add(self.tombstone_secs.load(Ordering::Relaxed));
        let added = shard.tombstones.bury(&self.hasher, hash, key, version, until, burial);
        if added != 0 {
            self.tombstone_bytes.fetch_add(added, Ordering::Relaxed);
            self.used.fetch_add(added, Ordering::Relaxed);
        }
    }

    /// Buries `key` for a delete made here, releases the shard, then makes room for
    /// what the tombstone took, as a store makes room for a table that grew: a store
    /// that cannot make room still remembers the delete, and sheds tombstones first
    /// on the next write that needs memory.
    pub(super) fn bury_and_make_room(
        &self,
        mut shard: MutexGuard<'_, Shard>,
        hash: u64,
        key: &[u8],
        version: u64,
        now: u32,
    ) {
        self.bury(&mut shard, hash, key, version, now, Burial::Delete);
        drop(shard);
        self.reserve(self.shard_index(hash), 0);
    }

    /// Forgets `key`'s tombstone if `version` covers it: a state at least as new
    /// replaced it.
    fn unbury(&self, shard: &mut Shard, hash: u64, key: &[u8], version: u64) {
        let freed = shard.tombstones.remove_upto(hash, key, version);
        if freed != 0 {
            self.tombstone_bytes.fetch_sub(freed, Ordering::Relaxed);
            self.used.fetch_sub(freed, Ordering::Relaxed);
        }
    }

    /// Takes `key`'s counter out of the shard's ledgers, if it has one (its memory
    /// is released; [`Store::keep_ledger`] charges it again).
    #[inline]
    pub(super) fn take_ledger(&self, ledgers: &mut Ledgers, key: &[u8]) -> Option<Ledger> {
        if ledgers.is_empty() {
            return None;
        }
        let (key, ledger) = ledgers.remove_entry(key)?;
        self.used.fetch_sub(ledger.charge(key.len()), Ordering::Relaxed);
        Some(ledger)
    }

    /// Before a touch gives `item` a new version without a new value: a number
    /// keeps the write that made it as its base, in a ledger, so that counts made
    /// on it elsewhere still add to it (a plain item's base is its version).
    pub(super) fn keep_base(&self, ledgers: &mut Ledgers, item: &Item) {
        if counter_of(ledgers, item.key()).is_some() {
            return;
        }
        if let Some(value) = crate::number::parse_u64(item.value()) {
            self.keep_ledger(ledgers, item.key(), Ledger::start(value, item.cas()));
        }
    }

    /// Keeps `ledger` as `key`'s counter, charging its memory.
    pub(super) fn keep_ledger(&self, ledgers: &mut Ledgers, key: &[u8], ledger: Ledger) {
        self.used.fetch_add(ledger.charge(key.len()), Ordering::Relaxed);
        if let Some(old) = ledgers.insert(key.into(), ledger) {
            self.used.fetch_sub(old.charge(key.len()), Ordering::Relaxed);
        }
    }

    /// The peer has applied this node's changes up to `seq`: tombstones sent up to
    /// there no longer matter, and go on the next sweep or need for memory.
    pub fn peer_applied(&self, seq: u64) {
        self.peer_applied.fetch_max(seq, Ordering::AcqRel);
    }

    /// The state of `key` to send to a peer, or `None` when there is nothing to
    /// send: the key was evicted or expired here (each node forgets on its own), or
    /// has never existed.
    pub fn key_state<R>(&self, key: &[u8], send: impl FnOnce(KeyChange<'_>) -> R) -> Option<R> {
        self.read_state(key, None, send)
    }

    /// [`Store::key_state`] for change `seq` of this node: a tombstone sent in it is
    /// forgotten once the peer has applied `seq`.
    pub fn key_state_sent<R>(&self, key: &[u8], seq: u64, send: impl FnOnce(KeyChange<'_>) -> R) -> Option<R> {
        self.read_state(key, Some(seq), send)
    }

    /// What a claim made on `key` here now would be made on: the version of its
    /// state (a live item's, an expired item's or a tombstone's; 0 for nothing) and
    /// whether that state is a live item. A node judging a peer's proposal compares
    /// it with the proposal's base.
    pub fn claim_state(&self, key: &[u8]) -> (u64, bool) {
        let hash = self.hash(key);
        let shard = self.lock(self.shard_index(hash));
        let now = self.now();
        let buried = shard.tombstones.version(hash, key).unwrap_or(0);
        if let Some(item) = shard.table.find(hash, |it| it.key() == key) {
            match now.liveness(item) {
                Liveness::Live => return (item.cas(), true),
                Liveness::Expired => return (item.cas().max(buried), false),
                // A flushed item is gone wherever the flush reached.
                Liveness::Flushed => {}
            }
        }
        (buried, false)
    }

    /// Installs a claim a majority of the nodes accepted, as this node's own write
    /// (recorded, so it goes to every peer as a plain state), unless a newer state
    /// replaced the key meanwhile: then the claim was overwritten by a later write,
    /// as on every node.
    pub fn install_granted(&self, proposal: &Proposal<'_>, receipt: &mut Receipt) -> Applied {
        let Proposal { key, version, value, flags, expires_at, .. } = *proposal;
        let state = KeyState::Value { value, flags, expires_at, counter: None };
        let applied = self.apply_remote_as(&KeyChange { key, version, state }, false, false);
        if applied == Applied::Applied {
            self.note(Change::Key(key), receipt);
        }
        applied
    }

    fn read_state<R>(&self, key: &[u8], seq: Option<u64>, send: impl FnOnce(KeyChange<'_>) -> R) -> Option<R> {
        let hash = self.hash(key);
        let mut shard = self.lock(self.shard_index(hash));
        let now = self.now();
        if let Some(item) = shard.table.find(hash, |it| it.key() == key) {
            match now.liveness(item) {
                Liveness::Live => {
                    let (flags, expires_at) = (item.flags(), item.expires_at());
                    let counter = counter_of(&shard.ledgers, key);
                    let state = KeyState::Value { value: item.value(), flags, expires_at, counter };
                    return Some(send(KeyChange { key, version: item.cas(), state }));
                }
                // Expired before it was sent: its version still has to win over an
                // older state the peer may hold.
                Liveness::Expired => {
                    return Some(send(KeyChange { key, version: item.cas(), state: KeyState::Deleted }));
                }
                // A flush travels as its own change.
                Liveness::Flushed => return None,
            }
        }
        let version = shard.tombstones.version_sent(hash, key, seq)?;
        Some(send(KeyChange { key, version, state: KeyState::Deleted }))
    }

    /// Applies a peer's state of one key if it is newer than what this node holds
    /// (its item, its tombstone, and its flush mark). Applied changes are not
    /// reported to the observer: what came from the peer never goes back to it.
    pub fn apply_remote(&self, change: &KeyChange<'_>) -> Applied {
        self.apply_remote_as(change, false, false)
    }

    /// Applies a peer's change as [`Store::apply_remote`] (or, for a `claim`,
    /// [`Store::apply_remote_claim`]) does, and with `pass_on` tells the change
    /// observer of it when it is applied, as of a local one, and leaves a tombstone
    /// for a delete: a node with more than one peer passes on what it learns from
    /// each, so that a link down between two peers delays nothing while both reach
    /// this one, and a state that loses here (an older write arriving after a
    /// delete) cannot win on a node this node reaches. A state that is not newer
    /// here is not applied, and so not passed on: nothing goes round the mesh twice.
    ///
    /// (The choice travels with each call rather than as a flag of the store: a
    /// field more in the store moved its hot fields onto shared cache lines, and a
    /// pair served 10% less; BENCHMARKS.md, "Three or more nodes".)
    pub fn apply_peer_change(&self, change: &KeyChange<'_>, claim: bool, pass_on: bool) -> Applied {
        self.apply_remote_as(change, claim, pass_on)
    }

    /// Applies a peer's `add` ([`Change::Claim`]) as [`Store::apply_remote`] does,
    /// but says [`Applied::Refused`] when a live item here wins over it: then two
    /// clients ran `add` on the key at once, one on each node, and only the newer
    /// version may report success. Both nodes decide alike, so exactly one does.
    pub fn apply_remote_claim(&self, change: &KeyChange<'_>) -> Applied {
        self.apply_remote_as(change, true, false)
    }

    fn apply_remote_as(&self, change: &KeyChange<'_>, claim: bool, forwarding: bool) -> Applied {
        self.versions.observe(change.version);
        let key = change.key;
        let hash = self.hash(key);
        let index = self.shard_index(hash);
        let fresh = match change.state {
            KeyState::Value { value, flags, expires_at, counter } => {
                // A counter may merge into a value of up to 20 digits.
                let len = if counter.is_some() { value.len().max(20) } else { value.len() };
                if !self.reserve(index, Item::charge_for(key.len(), len, flags)) {
                    return Applied::NoMemory;
                }
                let meta = ItemMeta { flags, expires_at, cas: 0, now: self.clock.now_secs() };
                match Item::new(key, &[value], meta) {
                    Some(item) => Some(item),
                    None => return Applied::NoMemory,
                }
            }
            KeyState::Deleted => None,
        };
        let mut guard = self.lock(index);
        let shard = &mut *guard;
        let now = self.now();
        if change.version <= now.flush_cas {
            return Applied::Older;
        }
        let bucket = shard.table.find_bucket_index(hash, |it| it.key() == key);
        let local_item = bucket.and_then(|b| shard.table.get_bucket(b));
        let local = local_item.map_or(0, Item::cas);
        let live = local_item.is_some_and(|item| now.liveness(item) == Liveness::Live);
        let applied = match change.state {
            // A counter on either side: the values merge (see `counter`).
            KeyState::Value { counter, .. }
                if live && (counter.is_some() || counter_of(&shard.ledgers, key).is_some()) =>
            {
                let bucket = bucket.expect("a live item's bucket");
                match self.merge_counted(shard, hash, bucket, change, claim, now.secs) {
                    None => return Applied::NoMemory,
                    Some((true, false)) => return Applied::Refused,
                    Some((false, false)) => return Applied::Older,
                    // The claim lost, yet brought parts counted apart.
                    Some((true, true)) => Applied::Refused,
                    Some((false, true)) => Applied::Applied,
                }
            }
            _ => {
                let buried = shard.tombstones.version(hash, key).unwrap_or(0);
                if change.version <= local.max(buried) {
                    // A claim loses to any newer state, a delete or an expiry too: the
                    // claimer had not seen it, and it wins on every node, so the
                    // claimer's write is gone and its command runs again.
                    return if claim && local.max(buried) > change.version { Applied::Refused } else { Applied::Older };
                }
                // A newer state from the peer replaces any tombstone here: the peer
                // holds it, and a delete applied from the peer leaves none (see
                // `tombstone`).
                self.unbury(shard, hash, key, change.version);
                match (fresh, change.state) {
                    (Some(item), KeyState::Value { counter, .. }) => {
                        self.put(shard, hash, bucket, item, Some(change.version));
                        // The version came from a peer's clock, not a client: flushes
                        // judge the item by it like any other.
                        let bucket = shard.table.find_bucket_index(hash, |it| it.key() == key).expect("just stored");
                        shard.table.get_bucket_mut(bucket).expect("live bucket").clear_bit(BIT_CLIENT_CAS);
                        if let Some(counter) = counter {
                            self.keep_ledger(&mut shard.ledgers, key, Ledger::from_counter(&counter));
                        }
                    }
                    _ => {
                        if let Some(bucket) = bucket {
                            self.remove_bucket(shard, bucket, Liveness::Live);
                        }
                        if forwarding {
                            self.bury(shard, hash, key, change.version, now.secs, Burial::Delete);
                        }
                    }
                }
                Applied::Applied
            }
        };
        drop(guard);
        // A table that grew may have pushed usage over the limit.
        self.reserve(index, 0);
        if forwarding && let Some(observer) = self.change_observer.get() {
            observer(Change::Key(key));
        }
        applied
    }

    /// Merges a peer's state of a key into the live item in `bucket` when either
    /// holds a counter: the value merges as [`counter::merge`] says, and the flags
    /// and expiry are the newer version's. The item takes the newer of the two
    /// versions, so that both nodes end with one state. A `claim` whose agreed
    /// value is older than the local one lost, and brings only its parts counted
    /// apart. `Some((refused, changed))`, or `None` with no memory for the merged
    /// item (the local one stays).
    fn merge_counted(
        &self,
        shard: &mut Shard,
        hash: u64,
        bucket: usize,
        change: &KeyChange<'_>,
        claim: bool,
        now: u32,
    ) -> Option<(bool, bool)> {
        let KeyState::Value { value, flags, expires_at, counter } = change.state else {
            unreachable!("only values merge");
        };
        let local_item = shard.table.get_bucket(bucket).expect("live bucket");
        let local = local_item.cas();
        let ledger = self.take_ledger(&mut shard.ledgers, change.key);
        let local_layer = match &ledger {
            Some(ledger) => Layer::Counted(ledger.view()),
            None => Layer::Plain { version: local },
        };
        let mut incoming = match counter {
            Some(counter) => Layer::Counted(counter),
            None => Layer::Plain { version: change.version },
        };
        let refused = claim && local_layer.outranks(&incoming);
        if refused {
            incoming = incoming.parts_over(&local_layer).unwrap_or(local_layer);
        }
        let merged = counter::merge(local_layer, incoming);
        // A plain value that wins does so whole, with its own flags, expiry and
        // version: its version is its base, which the item must keep to be judged
        // by it again (a counted value's base travels in its ledger).
        let local_plain_wins = merged == Merged::Local && matches!(local_layer, Layer::Plain { .. });
        let incoming_plain_wins = merged == Merged::Incoming && matches!(incoming, Layer::Plain { .. });
        let incoming_newer = change.version > local;
        if merged == Merged::Local && (local_plain_wins || !incoming_newer) {
            if let Some(ledger) = ledger {
                self.keep_ledger(&mut shard.ledgers, change.key, ledger);
            }
            return Some((refused, false));
        }
        // Flags and expiry are the newer version's, or the plain winner's.
        let (flags, expires_at) = if incoming_plain_wins || incoming_newer {
            (flags, expires_at)
        } else {
            (local_item.flags(), local_item.expires_at())
        };
        let mut digits = [0u8; 20];
        let (bytes, kept) = match (merged, incoming) {
            (Merged::Local, _) => (local_item.value(), ledger.clone()),
            (Merged::Incoming, _) if !refused => (value, counter.map(|counter| Ledger::from_counter(&counter))),
            (Merged::Incoming, Layer::Counted(counter)) => {
                (crate::number::format_u64(&mut digits, counter.value()), Some(Ledger::from_counter(&counter)))
            }
            (Merged::Incoming, Layer::Plain { .. }) => unreachable!("a lost claim brings only a counter"),
            (Merged::Joined(joined), _) => {
                (crate::number::format_u64(&mut digits, joined.view().value()), Some(joined))
            }
        };
        let Some(item) = Item::new(change.key, &[bytes], ItemMeta { flags, expires_at, cas: 0, now }) else {
            if let Some(ledger) = ledger {
                self.keep_ledger(&mut shard.ledgers, change.key, ledger);
            }
            return None;
        };
        let version = if incoming_plain_wins { change.version } else { change.version.max(local) };
        self.put(shard, hash, Some(bucket), item, Some(version));
        shard.table.get_bucket_mut(bucket).expect("live bucket").clear_bit(BIT_CLIENT_CAS);
        if let Some(kept) = kept {
            self.keep_ledger(&mut shard.ledgers, change.key, kept);
        }
        Some((refused, true))
    }

    /// Applies a peer's `flush_all`: the version mark hides every state made before
    /// it on either node; a time mark (a delayed flush) is absolute and applies as is.
    pub fn apply_remote_flush(&self, version: u64, at: u32) {
        self.apply_peer_flush(version, at, false);
    }

    /// [`Store::apply_remote_flush`], telling the change observer of a flush that
    /// moved a mark when `pass_on` (see [`Store::apply_peer_change`]).
    pub fn apply_peer_flush(&self, version: u64, at: u32, pass_on: bool) {
        self.versions.observe(version);
        let newer = self.flush_cas.fetch_max(version, Ordering::AcqRel) < version;
        let later = at != 0 && self.flush_at.swap(at, Ordering::AcqRel) != at;
        if (newer || later)
            && pass_on
            && let Some(observer) = self.change_observer.get()
        {
            observer(Change::Flush { version, at });
        }
    }

    /// The node id in every version this store makes.
    pub fn node_id(&self) -> u16 {
        self.versions.node()
    }

    /// The newest version this node has made or observed ([`super::version::VersionClock::newest`]).
    pub fn newest_version(&self) -> u64 {
        self.versions.newest()
    }

    /// Keeps this node's next versions newer than `version` (a warm restart's
    /// saved clock).
    pub fn observe_version(&self, version: u64) {
        self.versions.observe(version);
    }

    /// The flush marks a full sync carries: the version up to which states are
    /// flushed, and a delayed flush's time (Unix seconds, 0 for none).
    pub fn flush_marks(&self) -> (u64, u32) {
        (self.flush_cas.load(Ordering::Acquire), self.flush_at.load(Ordering::Acquire))
    }

    /// Sends one slice of a full sync covering this node's changes up to `seq`: the
    /// items of up to `max_buckets` buckets of one shard, under that shard's lock
    /// only, and the shard's tombstones when its last bucket is done (a tombstone
    /// sent so is forgotten once the peer has applied `seq`). Clients wait for one slice at most, never for the
    /// whole table (repcached walked it in one go: stalls of 2.5–3.3 s, finding 10).
    ///
    /// Writes made while the sync runs reach the peer through the backlog; a shard
    /// whose table grew between two slices is walked again from its start, since
    /// growth moves items between buckets (sending an item twice is harmless).
    pub fn sync_slice(
        &self,
        cursor: SyncCursor,
        seq: u64,
        max_buckets: usize,
        mut send: impl FnMut(KeyChange<'_>),
    ) -> SyncCursor {
        if cursor.done || cursor.shard >= self.shards.len() {
            return SyncCursor { done: true, ..cursor };
        }
        let mut guard = self.lock(cursor.shard);
        let shard = &mut *guard;
        let now = self.now();
        let buckets = shard.table.num_buckets();
        let start = if cursor.buckets_seen == buckets { cursor.bucket } else { 0 };
        let end = (start + max_buckets.max(1)).min(buckets);
        for bucket in start..end {
            let Some(item) = shard.table.get_bucket(bucket) else {
                continue;
            };
            match now.liveness(item) {
                Liveness::Live => {
                    let (flags, expires_at) = (item.flags(), item.expires_at());
                    let counter = counter_of(&shard.ledgers, item.key());
                    let state = KeyState::Value { value: item.value(), flags, expires_at, counter };
                    send(KeyChange { key: item.key(), version: item.cas(), state });
                }
                // Its version must still beat an older state the peer holds, as the
                // tombstone the sweep will leave for it would.
                Liveness::Expired => {
                    send(KeyChange { key: item.key(), version: item.cas(), state: KeyState::Deleted });
                }
                Liveness::Flushed => {}
            }
        }
        if end < buckets {
            return SyncCursor { bucket: end, buckets_seen: buckets, ..cursor };
        }
        shard.tombstones.each(seq, |key, version| send(KeyChange { key, version, state: KeyState::Deleted }));
        let shard_index = cursor.shard + 1;
        SyncCursor { shard: shard_index, bucket: 0, buckets_seen: 0, done: shard_index == self.shards.len() }
    }

    /// Visits the tombstones of shard `shard` (key, version, kept until), under that
    /// shard's lock only; for a warm restart's save.
    pub fn shard_tombstones(&self, shard: usize, visit: impl FnMut(&[u8], u64, u32)) {
        if shard < self.shards.len() {
            self.lock(shard).tombstones.each_kept(visit);
        }
    }

    /// Restores a tombstone a warm restart saved: `key` deleted at `version`,
    /// remembered until `until` (Unix seconds), not yet sent to the peer. A live
    /// item of the key, newer or not, stays: it came from the same save.
    pub fn restore_tombstone(&self, key: &[u8], version: u64, until: u32) {
        self.versions.observe(version);
        let hash = self.hash(key);
        let index = self.shard_index(hash);
        let mut guard = self.lock(index);
        let shard = &mut *guard;
        if shard.table.find(hash, |it| it.key() == key).is_some() {
            return;
        }
        let added = shard.tombstones.bury(&self.hasher, hash, key, version, until, Burial::Delete);
        if added != 0 {
            self.tombstone_bytes.fetch_add(added, Ordering::Relaxed);
            self.used.fetch_add(added, Ordering::Relaxed);
        }
    }

    /// Tombstones held, for stats and tests.
    pub fn tombstones(&self) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).tombstones.len()).sum()
    }

    /// Deletes remembered here that a peer which has applied this node's changes up
    /// to `applied` may still lack (`stats`: a peer's tombstones pending). Walks every
    /// shard's tombstones, one shard lock at a time.
    pub fn tombstones_pending(&self, applied: u64) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).tombstones.pending_for(applied)).sum()
    }

    /// Bytes the tombstones hold (counted in the memory limit).
    pub fn tombstone_bytes(&self) -> usize {
        self.tombstone_bytes.load(Ordering::Relaxed)
    }

    /// Deletes forgotten under memory pressure before the peer had them.
    pub fn tombstones_shed(&self) -> u64 {
        self.tombstones_shed.load(Ordering::Relaxed)
    }
}

/// `key`'s counter, if it has one.
fn counter_of<'a>(ledgers: &'a Ledgers, key: &[u8]) -> Option<Counter<'a>> {
    if ledgers.is_empty() { None } else { ledgers.get(key).map(Ledger::view) }
}
