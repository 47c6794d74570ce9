//! What one replicating node shares between its threads: the store, the backlog
//! the store's observer fills from every worker, and for each peer ([`Peer`]) what
//! this node has applied of its changes, what it has acknowledged of ours (ack mode
//! and claims wait on it), and the figures `stats replication` shows.

use super::backlog::{Backlog, Recorded};
use super::claims::{FIRST_WAIT, OpenClaim, OwnClaims, Standing, Verdict, Vote, Votes, stands_on};
use super::handshake::Identity;
use super::wire::Position;
use crate::store::{Applied, Change, Proposal, Receipt, Store};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// How a client's write is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// At once; the peer applies it moments later.
    Async,
    /// Once every linked peer has applied it; a peer declared down is not waited for.
    Ack,
    /// Once any one linked peer has applied it (or none is linked).
    AckOne,
}

impl SyncMode {
    /// As `--repl-sync` names it.
    pub fn name(self) -> &'static str {
        match self {
            SyncMode::Async => "async",
            SyncMode::Ack => "ack",
            SyncMode::AckOne => "one",
        }
    }
}

/// Who must accept a claim (an `add`, `cas`, `append`... that depends on what its
/// key held) before it is granted (`--repl-claims`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimRule {
    /// Every linked peer; a node with no peer linked grants alone. A pair stays
    /// available for locks through a link cut, and both sides may then grant one.
    Local,
    /// A majority of the configured nodes, this one included: a node that cannot
    /// reach one refuses the claim, so no partition grants a lock on both sides.
    Majority,
}

impl ClaimRule {
    /// As `--repl-claims` names it.
    pub fn name(self) -> &'static str {
        match self {
            ClaimRule::Local => "local",
            ClaimRule::Majority => "majority",
        }
    }

    /// The rule a node with `peers` listed gets unless told: a majority from three
    /// nodes on, where one exists on some side of any cut; local for a pair, which
    /// has none once cut and so keeps granting, as it always has.
    pub fn default_for(peers: usize) -> ClaimRule {
        if peers >= 2 { ClaimRule::Majority } else { ClaimRule::Local }
    }
}

/// Everything replication is configured with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The peers' replication addresses this node dials (it accepts any peer that
    /// proves itself, listed or not).
    pub peers: Vec<String>,
    /// Where this node accepts its peer; none for a node that only dials.
    pub listen: Option<String>,
    pub identity: Identity,
    /// Bytes of recent changes kept for a peer that reconnects.
    pub backlog: usize,
    /// A peer silent this long is declared down.
    pub timeout: Duration,
    pub heartbeat: Duration,
    pub mode: SyncMode,
    /// The claims rule; `None`: [`ClaimRule::default_for`] the peers this node
    /// knows, listed or linked (see [`Replicator::claim_rule`]).
    pub claims: Option<ClaimRule>,
    /// How long a deleted key's tombstone outlives it.
    pub tombstone_secs: u32,
    /// Mutual TLS on the link (`--repl-tls-*`).
    pub tls: Option<Arc<crate::tls::PeerTls>>,
}

/// The link's state, as `stats` names it (`repl_peer_state`).
pub const LINK_DOWN: u8 = 0;
pub const LINK_CONNECTING: u8 = 1;
pub const LINK_HANDSHAKE: u8 = 2;
pub const LINK_SYNCING: u8 = 3;
pub const LINK_UP: u8 = 4;

fn state_name(state: u8) -> &'static str {
    match state {
        LINK_CONNECTING => "connecting",
        LINK_HANDSHAKE => "handshake",
        LINK_SYNCING => "syncing",
        LINK_UP => "up",
        _ => "down",
    }
}

/// What the backlog holds, read at once.
#[derive(Clone, Copy, Debug)]
pub struct BacklogFigures {
    pub last_seq: u64,
    pub first_seq: u64,
    pub bytes: usize,
    pub capacity: usize,
    /// When the oldest change the peer has not acknowledged was recorded (µs).
    pub oldest_unacked_us: Option<u64>,
}

/// Counters of the link, written by the link thread and read by `stats`.
#[derive(Debug, Default)]
pub struct ReplStats {
    pub state: AtomicU8,
    /// The peer's node id once it has proved itself, else `u64::MAX`.
    pub peer_node: AtomicU64,
    pub rtt_ms: AtomicU64,
    pub last_heard_ms: AtomicU64,
    pub skew_ms: AtomicI64,
    /// Our last sequence number sent on the link.
    pub sent_seq: AtomicU64,
    pub sent_bytes: AtomicU64,
    /// Bytes sent on the current link that the peer has not confirmed reading.
    pub lag_bytes: AtomicU64,
    /// The peer's last sequence number we applied.
    pub applied_seq: AtomicU64,
    pub received_bytes: AtomicU64,
    pub changes_applied: AtomicU64,
    /// Incoming states older than what this node held (last writer won here).
    pub conflicts: AtomicU64,
    /// The peer's claims (`add`s) refused here because a live item here won.
    pub claims_refused: AtomicU64,
    /// Our claims the peer refused: their `add`s answered not stored.
    pub claims_lost: AtomicU64,
    /// Incoming values this node had no memory for.
    pub apply_failures: AtomicU64,
    pub partial_syncs: AtomicU64,
    pub full_syncs: AtomicU64,
    /// Items of the full sync being received (or the last one).
    pub sync_items_received: AtomicU64,
    pub sync_items_sent: AtomicU64,
    pub receiving_sync: AtomicBool,
    pub links: AtomicU64,
    pub refused: AtomicU64,
    /// Connections refused because one side spoke TLS and the other did not.
    pub tls_mismatches: AtomicU64,
    /// Claims refused at once because no majority of the nodes was reachable
    /// (`--repl-claims majority`; the node's own figure).
    pub claims_no_majority: AtomicU64,
    /// Ack mode with the peer down: writes are acknowledged without it.
    pub degraded: AtomicBool,
    /// Replication lag of acknowledged changes, in microseconds.
    pub lag: LagHistogram,
}

/// A log-linear histogram (four buckets per power of two) of microseconds, for
/// the lag percentiles; one writer, any readers.
#[derive(Debug)]
pub struct LagHistogram {
    buckets: Box<[AtomicU64]>,
    /// The sum of the samples, for a Prometheus histogram's `_sum`.
    sum_us: AtomicU64,
}

impl Default for LagHistogram {
    fn default() -> Self {
        LagHistogram { buckets: (0..256).map(|_| AtomicU64::new(0)).collect(), sum_us: AtomicU64::new(0) }
    }
}

impl LagHistogram {
    fn index(us: u64) -> usize {
        if us < 4 {
            return us as usize;
        }
        let log = 63 - us.leading_zeros() as usize;
        4 * (log - 1) + ((us >> (log - 2)) & 3) as usize
    }

    fn lower_bound(index: usize) -> u64 {
        if index < 4 {
            return index as u64;
        }
        let log = index / 4 + 1;
        (4 + (index % 4) as u64) << (log - 2)
    }

    pub fn record(&self, us: u64) {
        self.buckets[Self::index(us)].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn reset(&self) {
        for bucket in self.buckets.iter() {
            bucket.store(0, Ordering::Relaxed);
        }
        self.sum_us.store(0, Ordering::Relaxed);
    }

    /// For each of `bounds_us` (ascending), the samples in buckets that end at or
    /// below it; then the count of all samples and their sum.
    pub fn cumulative(&self, bounds_us: &[u64]) -> (Vec<u64>, u64, u64) {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let below = bounds_us
            .iter()
            .map(|&bound| {
                let whole = (0..counts.len()).take_while(|&index| Self::lower_bound(index + 1) <= bound + 1);
                whole.map(|index| counts[index]).sum()
            })
            .collect();
        (below, counts.iter().sum(), self.sum_us.load(Ordering::Relaxed))
    }

    /// The lower bound of the bucket holding the `per_mille`th sample; 0 when empty.
    pub fn percentile(&self, per_mille: u64) -> u64 {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = (total * per_mille).div_ceil(1000).max(1);
        let mut seen = 0;
        for (index, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::lower_bound(index);
            }
        }
        0
    }
}

/// What this node has applied of its peer's changes: the run of the peer's
/// sequence (`history`) and the last number applied, so that a reconnect asks only
/// for the rest. `history` 0: nothing (a full sync is needed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub history: u64,
    pub applied: u64,
}

/// What this node has applied of one peer's changes, as a warm restart saves it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerProgress {
    pub node: u16,
    pub progress: Progress,
}

/// The peers one node links with at most. The mesh is full (every node links
/// with every other), so this is also the largest mesh less one; each slot is a
/// few hundred bytes of counters.
pub const MAX_PEERS: usize = 15;
/// A slot no peer has taken.
const VACANT: u32 = u32::MAX;

/// One peer, in the slot it took when it first proved itself: what this node has
/// applied of its changes, what it has acknowledged of ours, and its link's figures.
#[derive(Debug)]
pub struct Peer {
    /// The peer's node id, or `VACANT`.
    node: AtomicU32,
    progress: Mutex<Progress>,
    /// The highest of our sequence numbers the peer has applied.
    acked: AtomicU64,
    /// A link is up on which the peer acknowledges what it applies.
    acking: AtomicBool,
    /// This run has caught up with the peer once: a full sync from it ended, or a
    /// resume of a run this node already held began. Until it has with every peer,
    /// a node proposes and votes nothing (see [`Replicator::refuses_claims`]).
    caught_up: AtomicBool,
    /// Our changes up to here reached the peer inside a full sync, not one by one:
    /// it never voted on our proposals among them, though it acknowledges them.
    unjudged_upto: AtomicU64,
    /// The peer's run last seen on a link, and how many runs have been seen.
    run: Mutex<(u64, u32)>,
    /// Where its link last came from or went to.
    address: Mutex<Option<std::net::SocketAddr>>,
    pub stats: ReplStats,
}

/// A peer's link state, as `stats` shows it.
fn load_state(peer: &Peer) -> u8 {
    peer.stats.state.load(Ordering::Relaxed)
}

impl Peer {
    fn vacant() -> Peer {
        Peer {
            node: AtomicU32::new(VACANT),
            progress: Mutex::new(Progress::default()),
            acked: AtomicU64::new(0),
            acking: AtomicBool::new(false),
            caught_up: AtomicBool::new(false),
            unjudged_upto: AtomicU64::new(0),
            run: Mutex::new((0, 0)),
            address: Mutex::new(None),
            stats: ReplStats { peer_node: AtomicU64::new(u64::MAX), ..ReplStats::default() },
        }
    }

    pub fn node(&self) -> Option<u16> {
        let node = self.node.load(Ordering::Acquire);
        (node != VACANT).then_some(node as u16)
    }

    /// Where this node stands in the peer's sequence. It is only ever replaced
    /// whole, so a panic cannot leave it half written: a poisoned one is used as is.
    pub fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    /// The tag of the peer's run `history` in slot `slot`, as the changes applied
    /// from it are recorded: the slot and a count of the runs seen in it, so that a
    /// change from a run is not sent back to that run, but is to the next one (a
    /// restart that lost it).
    pub fn run_tag(&self, slot: usize, history: u64) -> u32 {
        let mut run = self.run.lock().unwrap_or_else(PoisonError::into_inner);
        if run.0 != history {
            *run = (history, run.1.wrapping_add(1));
        }
        ((slot as u32 + 1) << 24) | (run.1 & 0x00ff_ffff)
    }

    /// Where the peer's link last came from or went to.
    pub fn address(&self) -> Option<std::net::SocketAddr> {
        *self.address.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_address(&self, addr: std::net::SocketAddr) {
        *self.address.lock().unwrap_or_else(PoisonError::into_inner) = Some(addr);
    }

    pub fn is_acking(&self) -> bool {
        self.acking.load(Ordering::SeqCst)
    }

    /// Bytes sent on the link the peer has not confirmed reading; 0 while it is down.
    pub fn lag_bytes(&self) -> u64 {
        let state = self.stats.state.load(Ordering::Relaxed);
        if state == LINK_UP || state == LINK_SYNCING { self.stats.lag_bytes.load(Ordering::Relaxed) } else { 0 }
    }
}

/// Something that happened to the link with one peer, for `watch replication`.
#[derive(Clone, Copy, Debug)]
pub struct LinkEvent<'a> {
    pub peer: u16,
    /// Where the link came from or went to.
    pub address: Option<std::net::SocketAddr>,
    /// `up`, `down`, `full_sync` (sent to the peer) or `partial_sync`.
    pub event: &'static str,
    /// Why a link went down; where a resync starts.
    pub detail: &'a str,
}

/// Told of each [`LinkEvent`]; set at most once.
pub type LinkObserver = Box<dyn Fn(&LinkEvent<'_>) + Send + Sync>;

thread_local! {
    /// The run tag of the link whose changes this thread is applying, 0 for none:
    /// a change the store reports meanwhile came from that peer's run. Per thread,
    /// so a worker's own write recorded at the same moment is never taken for one.
    static APPLYING_FROM: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs `apply` with the changes it makes recorded as coming from the run tagged
/// `from` (a link's [`Peer::run_tag`]).
pub(super) fn applying_from<R>(from: u32, apply: impl FnOnce() -> R) -> R {
    let before = APPLYING_FROM.replace(from);
    let result = apply();
    APPLYING_FROM.set(before);
    result
}

/// How often a start waiting for its first sync looks again.
const SYNC_POLL: Duration = Duration::from_millis(5);

/// How far behind the newest refusal an uncollected one is dropped: verdicts are
/// collected as soon as acknowledged, so only an `add` whose client left leaves one.
const REFUSED_CLAIMS_KEPT: u64 = 1 << 20;

pub struct Replicator {
    /// Replication's own hold on the store, to apply the peer's changes and send a
    /// full sync; never handed to a front end, which writes through the node.
    pub(super) store: Arc<Store>,
    pub settings: Settings,
    /// This run's name for its change sequence: random, never 0.
    pub history: u64,
    backlog: Mutex<Backlog>,
    /// The peers, each in the slot it took when it first linked; `peers_known` slots
    /// are taken, in order (under `taking_slot`), and never given up.
    peers: Box<[Peer]>,
    peers_known: AtomicUsize,
    taking_slot: Mutex<()>,
    /// What a warm restart resumed after: a peer's acknowledgements start there.
    resumed_seq: AtomicU64,
    /// Wakes the link when changes are recorded on a thread that does not host it,
    /// but only when it sleeps: under load it sends in batches on its own timer and
    /// no write pays for a wake-up (a system call, and a context switch on a shared
    /// core).
    link_waker: OnceLock<Arc<mio::Waker>>,
    link_sleeping: AtomicBool,
    /// A claim was recorded, or one of the peer's refused: a client waits on the
    /// round trip, so the link sends at once rather than on its batch timer.
    urgent: AtomicBool,
    /// Wakes the workers whose clients wait for acknowledgements, each only while
    /// its flag in `awaiting_acks` says it holds replies.
    ack_wakers: OnceLock<Vec<Arc<mio::Waker>>>,
    awaiting_acks: OnceLock<Vec<AtomicBool>>,
    /// Threads other than the workers (an embedding host's, through the C ABI)
    /// blocked in `wait_acknowledged`: acknowledgements notify `ack_signal` only while
    /// there are any, so the workers' path pays one atomic load.
    blocked_on_acks: AtomicUsize,
    ack_signal: (Mutex<()>, Condvar),
    /// This run holds what the peer held when they linked: a full sync from it has
    /// ended (or this node resumed a run it already had).
    synced: AtomicBool,
    /// Our claims refused, each with the slots of the peers that refused it, until
    /// their writers collect the verdict.
    refused_claims: Mutex<std::collections::BTreeMap<u64, u32>>,
    /// This node's vote on each key with a proposal undecided (`claims`).
    votes: Votes,
    /// Our own proposals, until decided, and their verdicts until collected.
    claims: OwnClaims,
    /// Where the senders of the full syncs received stood in their other peers'
    /// runs: this node holds those changes too, and resumes from there when it
    /// links with those peers (one entry per node, the latest).
    offered: Mutex<Vec<Position>>,
    pub stats: ReplStats,
    /// The origin of the backlog's timestamps (microseconds, monotonic).
    epoch: Instant,
    /// The replication listener's bound address.
    pub listen_addr: OnceLock<std::net::SocketAddr>,
    link_observer: OnceLock<LinkObserver>,
}

impl Replicator {
    /// Microseconds since this node started, for lag measurements.
    pub fn micros(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    pub fn new(store: Arc<Store>, settings: Settings, history: u64) -> Replicator {
        let backlog = Mutex::new(Backlog::new(settings.backlog));
        let stats = ReplStats { peer_node: AtomicU64::new(u64::MAX), ..ReplStats::default() };
        if settings.peers.len() > 1 {
            store.keep_every_expiry();
        }
        Replicator {
            store,
            settings,
            history: history.max(1),
            backlog,
            peers: (0..MAX_PEERS).map(|_| Peer::vacant()).collect(),
            peers_known: AtomicUsize::new(0),
            taking_slot: Mutex::new(()),
            resumed_seq: AtomicU64::new(0),
            link_waker: OnceLock::new(),
            link_sleeping: AtomicBool::new(true),
            urgent: AtomicBool::new(false),
            ack_wakers: OnceLock::new(),
            awaiting_acks: OnceLock::new(),
            blocked_on_acks: AtomicUsize::new(0),
            ack_signal: (Mutex::new(()), Condvar::new()),
            refused_claims: Mutex::new(std::collections::BTreeMap::new()),
            votes: Votes::new(),
            claims: OwnClaims::default(),
            offered: Mutex::new(Vec::new()),
            synced: AtomicBool::new(false),
            stats,
            epoch: Instant::now(),
            listen_addr: OnceLock::new(),
            link_observer: OnceLock::new(),
        }
    }

    /// Where this node stood when an earlier run saved it (warm restart): its own
    /// sequence (the `history` it was built with) goes on after `last_seq`, and what
    /// it had applied of the peer's is asked for from there. Call before the link runs.
    pub fn resume(&self, last_seq: u64, progress: &[PeerProgress]) {
        self.backlog().continue_after(last_seq);
        self.resumed_seq.store(last_seq, Ordering::SeqCst);
        self.stats.sent_seq.store(last_seq, Ordering::Relaxed);
        for held in progress {
            if let Some(slot) = self.peer_slot(held.node) {
                let peer = &self.peers[slot];
                peer.stats.applied_seq.store(held.progress.applied, Ordering::Relaxed);
                *peer.progress() = held.progress;
            }
        }
    }

    /// What a warm restart saves: this run's history, the last change recorded,
    /// and what it has applied of each peer's.
    pub fn position(&self) -> (u64, u64, Vec<PeerProgress>) {
        let last_seq = self.backlog().last_seq();
        let progress = self
            .known_peers()
            .iter()
            .filter_map(|peer| Some(PeerProgress { node: peer.node()?, progress: *peer.progress() }))
            .collect();
        (self.history, last_seq, progress)
    }

    /// Installs the one observer of link events; false if one is already installed.
    pub fn observe_links(&self, observer: LinkObserver) -> bool {
        self.link_observer.set(observer).is_ok()
    }

    /// Tells the observer of link events, if any, of one.
    pub(super) fn link_event(&self, event: &LinkEvent<'_>) {
        if let Some(observer) = self.link_observer.get() {
            observer(event);
        }
    }

    /// Whether changes applied from a peer are passed on to the others: with a
    /// second peer listed, or linked unlisted, what comes from one must reach the
    /// other even while their own link is down, and a delete applied keeps its
    /// tombstone ([`crate::store::Store::apply_peer_change`]). A node must pass on
    /// before it has met its other peers: one restarted while a peer is cut off
    /// holds the only tombstone of a delete it applies, once the deleter dies,
    /// against the older value the cut-off peer still holds (simulator seed
    /// 1099511637860).
    pub fn passes_on(&self) -> bool {
        self.settings.peers.len() > 1 || self.peers_known.load(Ordering::Acquire) > 1
    }

    /// The peers that have taken a slot.
    pub fn known_peers(&self) -> &[Peer] {
        &self.peers[..self.peers_known.load(Ordering::Acquire)]
    }

    pub fn peer(&self, slot: usize) -> &Peer {
        &self.peers[slot]
    }

    /// The slot of peer `node`, taken now if it has none; `None` when every slot
    /// is taken.
    pub fn peer_slot(&self, node: u16) -> Option<usize> {
        let find = |known: &[Peer]| known.iter().position(|peer| peer.node() == Some(node));
        if let Some(slot) = find(self.known_peers()) {
            return Some(slot);
        }
        let _taking = self.taking_slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = find(self.known_peers()) {
            return Some(slot);
        }
        let slot = self.peers_known.load(Ordering::Acquire);
        let peer = self.peers.get(slot)?;
        peer.acked.store(self.resumed_seq.load(Ordering::SeqCst), Ordering::SeqCst);
        peer.stats.peer_node.store(u64::from(node), Ordering::Relaxed);
        peer.node.store(u32::from(node), Ordering::Release);
        self.peers_known.store(slot + 1, Ordering::Release);
        if self.passes_on() {
            self.store.keep_every_expiry();
        }
        Some(slot)
    }

    /// Installs this node as the store's change observer. The observer holds the node
    /// weakly: the node holds the store, and an embedded store must be freed when its
    /// host closes it. After the node is gone, changes are no longer recorded.
    pub fn observe(self: &Arc<Self>) -> bool {
        let weak = Arc::downgrade(self);
        let tombstone_secs = self.settings.tombstone_secs;
        let observer = move |change: Change<'_>| weak.upgrade().map_or(0, |replicator| replicator.record(change));
        self.store.observe_changes(Box::new(observer), tombstone_secs)
    }

    /// Records a local change (called by the store, in the writing thread: a claim
    /// before its shard's lock is released, so no link reads it unrecorded; any other
    /// change once it is visible) and returns the change's sequence number, which the
    /// write's receipt carries back to its writer. The writer announces it to the
    /// link ([`Replicator::announce`]) when it chooses: a worker once per turn of its
    /// event loop, a host's thread at once.
    pub fn record(&self, change: Change<'_>) -> u64 {
        let now = self.micros();
        // Allocated before the lock, so writers hold it for a push only.
        let claim = matches!(change, Change::Claim { .. } | Change::Propose(_));
        let change = match (change, APPLYING_FROM.get()) {
            (Change::Key(key), from) if from != 0 => Recorded::Passed { key: key.into(), from },
            (change, _) => Recorded::from(change),
        };
        let proposed = match &change {
            Recorded::Propose(proposed) => Some(proposed.clone()),
            _ => None,
        };
        let seq = self.backlog().push(change, now);
        if let Some(proposed) = proposed {
            // Decided once its writer has cast this node's vote (`propose`).
            self.claims.open().insert(seq, OpenClaim { proposed, voted: false, opened: false });
        }
        if claim {
            self.urgent.store(true, Ordering::Release);
        }
        seq
    }

    /// Tells the link that changes were recorded (a receipt said so): wakes it if it
    /// sleeps, or if a claim waits. While it sends in batches on its own timer, no
    /// write pays for a wake-up (a system call, and a context switch on a shared core).
    pub fn announce(&self) {
        // A claim wakes the link even while it batches: its client waits.
        let asleep = self.link_sleeping.load(Ordering::Acquire) && self.link_sleeping.swap(false, Ordering::AcqRel);
        if (asleep || self.urgent.load(Ordering::Acquire))
            && let Some(waker) = self.link_waker.get()
        {
            let _ = waker.wake();
        }
    }

    /// Marks the link's next turn urgent (a refusal to send: a client waits on it).
    pub fn make_urgent(&self) {
        self.urgent.store(true, Ordering::Release);
    }

    /// Whether a claim or refusal waits to be sent; clears the mark.
    pub fn take_urgent(&self) -> bool {
        self.urgent.load(Ordering::Acquire) && self.urgent.swap(false, Ordering::AcqRel)
    }

    pub fn set_link_waker(&self, waker: Arc<mio::Waker>) {
        let _ = self.link_waker.set(waker);
    }

    /// The link is about to sleep: the next record wakes it.
    pub fn link_sleeps(&self) {
        self.link_sleeping.store(true, Ordering::Release);
    }

    /// The link is sending on its own timer: records need not wake it.
    pub fn link_batches(&self) {
        self.link_sleeping.store(false, Ordering::Release);
    }

    /// Where this node stands in each peer's run but `receiver`'s, for a full
    /// sync to `receiver` that starts now: everything applied up to there is in
    /// the store the sync sends (a link updates its progress after applying).
    pub fn positions_for(&self, receiver: u16) -> Vec<Position> {
        (self.known_peers().iter())
            .filter_map(|peer| {
                let node = peer.node().filter(|&node| node != receiver)?;
                let Progress { history, applied } = *peer.progress();
                (history != 0).then_some(Position { node, history, applied })
            })
            .collect()
    }

    /// A full sync received ended with its sender's `positions`: this node now
    /// holds those peers' changes up to there.
    pub fn offer_positions(&self, positions: impl Iterator<Item = Position>) {
        let own = self.settings.identity.node;
        let mut offered = self.offered.lock().unwrap_or_else(PoisonError::into_inner);
        for position in positions.filter(|position| position.node != own) {
            match offered.iter_mut().find(|held| held.node == position.node) {
                Some(held) if held.history == position.history => held.applied = held.applied.max(position.applied),
                Some(held) => *held = position,
                None => offered.push(position),
            }
        }
    }

    /// What to ask the peer in `slot`, node `node` in its run `history`, to resume
    /// from: what its links applied, or what a full sync from another peer brought,
    /// whichever is further; `history` 0 when this node holds nothing of the run.
    /// Kept as the peer's progress, so a warm restart resumes from it too.
    pub fn resume_point(&self, slot: usize, node: u16, history: u64) -> Progress {
        let mut progress = self.peers[slot].progress();
        let held = if progress.history == history { *progress } else { Progress::default() };
        let offered = self.offered.lock().unwrap_or_else(PoisonError::into_inner);
        let offer = offered.iter().find(|offer| offer.node == node && offer.history == history);
        match offer {
            Some(offer) if offer.applied > held.applied || held.history == 0 => {
                *progress = Progress { history, applied: offer.applied };
                self.peers[slot].stats.applied_seq.store(offer.applied, Ordering::Relaxed);
                *progress
            }
            _ => held,
        }
    }

    /// Whether a full sync this node asked of a peer other than the one in `slot`
    /// is still on its way.
    pub fn syncing_besides(&self, slot: usize) -> bool {
        let peers = self.known_peers().iter().enumerate();
        peers.filter(|&(other, _)| other != slot).any(|(_, peer)| peer.stats.receiving_sync.load(Ordering::Relaxed))
    }

    /// The last sequence number recorded.
    pub fn last_seq(&self) -> u64 {
        self.backlog().last_seq()
    }

    /// The workers' wakers, by worker index.
    pub fn set_ack_wakers(&self, wakers: Vec<Arc<mio::Waker>>) {
        let _ = self.awaiting_acks.set(wakers.iter().map(|_| AtomicBool::new(false)).collect());
        let _ = self.ack_wakers.set(wakers);
    }

    /// Worker `worker` holds replies and is about to sleep: the next acknowledgement
    /// (or the link going down) wakes it. The caller then checks its held replies
    /// once more, since an acknowledgement may have come just before this.
    pub fn await_acks(&self, worker: usize) {
        if let Some(flag) = self.awaiting_acks.get().and_then(|flags| flags.get(worker)) {
            flag.store(true, Ordering::SeqCst);
        }
    }

    /// Worker `worker` is awake: an acknowledgement need not ring its waker (the
    /// worker checks its held replies before it sleeps again).
    pub fn awake(&self, worker: usize) {
        if let Some(flag) = self.awaiting_acks.get().and_then(|flags| flags.get(worker)) {
            flag.store(false, Ordering::SeqCst);
        }
    }

    /// Whether a reply for a write recorded as `seq` may go to its client now.
    pub fn acknowledged(&self, seq: u64) -> bool {
        // SeqCst pairs with `await_acks` and `wake_ack_waiters`: a worker that flags
        // itself and then finds nothing acknowledged is sure to be woken.
        match self.settings.mode {
            SyncMode::Async => true,
            SyncMode::Ack => self.all_acked(seq),
            SyncMode::AckOne => {
                let mut acking = self.known_peers().iter().filter(|peer| peer.acking.load(Ordering::SeqCst)).peekable();
                acking.peek().is_none() || acking.any(|peer| peer.acked.load(Ordering::SeqCst) >= seq)
            }
        }
    }

    /// Whether every peer on an acknowledging link has applied our change `seq`.
    fn all_acked(&self, seq: u64) -> bool {
        self.known_peers()
            .iter()
            .all(|peer| !peer.acking.load(Ordering::SeqCst) || peer.acked.load(Ordering::SeqCst) >= seq)
    }

    /// Blocks the calling thread until the write it recorded as `seq` may be reported
    /// done: at once in async mode or while no acknowledging link is up, else when the
    /// peer has applied it or the link goes down. `limit` bounds the wait should
    /// neither happen; false if it ran out.
    pub fn wait_acknowledged(&self, seq: u64, limit: Duration) -> bool {
        self.wait_until(limit, || self.acknowledged(seq))
    }

    /// Blocks the calling thread (not a worker) until the verdict on its claim `seq`
    /// is in, and says whether the claim won; one that is still unsettled when
    /// `limit` runs out counts as won under `local`, as it does when the link goes
    /// down, and as lost under `majority` (it is not installed).
    pub fn wait_claim_verdict(&self, seq: u64, limit: Duration) -> bool {
        self.wait_until(limit, || self.claim_settled(seq));
        // Under `majority` an undecided claim is not installed: it runs again.
        self.take_claim_verdict(seq).unwrap_or(!self.is_proposal(seq) && seq < FIRST_WAIT)
    }

    /// Waits on `ack_signal` until `done` holds or `limit` runs out; says which.
    fn wait_until(&self, limit: Duration, done: impl Fn() -> bool) -> bool {
        if done() {
            return true;
        }
        // SeqCst pairs with `wake_ack_waiters`: an acknowledgement either sees this
        // count and notifies under the lock, or came before it and `done` below
        // sees it.
        self.blocked_on_acks.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + limit;
        let (lock, signal) = &self.ack_signal;
        let mut guard = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while !done() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            guard = signal.wait_timeout(guard, deadline - now).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
        drop(guard);
        self.blocked_on_acks.fetch_sub(1, Ordering::SeqCst);
        done()
    }

    /// This node holds what its peer held: a sync from it completed.
    pub fn mark_synced(&self) {
        self.synced.store(true, Ordering::Release);
    }

    /// Waits, at start, until the peer's first sync is complete or `limit` runs out;
    /// says which.
    pub fn wait_synced(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        // Start-up only: a short poll costs nothing here.
        while !self.synced.load(Ordering::Acquire) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(SYNC_POLL);
        }
        true
    }

    /// Whether an acknowledging link is up: the peer judges our claims (and, in
    /// ack mode, our writes wait for it).
    pub fn is_acking(&self) -> bool {
        self.known_peers().iter().any(Peer::is_acking)
    }

    /// Whether every peer listed (and every other known) is linked and acknowledging:
    /// then a claim is judged by every node that could make a rival one.
    pub fn linked_with_all(&self) -> bool {
        let known = self.known_peers();
        known.len() >= self.settings.peers.len() && known.iter().all(Peer::is_acking)
    }

    /// How many nodes the mesh has: this one, every peer listed, and any other that
    /// linked unlisted.
    pub fn nodes(&self) -> usize {
        self.settings.peers.len().max(self.known_peers().len()) + 1
    }

    /// The fewest nodes, this one included, that are more than half of the mesh.
    pub fn majority(&self) -> usize {
        self.nodes() / 2 + 1
    }

    /// This node and the peers linked and acknowledging now.
    pub fn nodes_reached(&self) -> usize {
        1 + self.known_peers().iter().filter(|peer| peer.is_acking()).count()
    }

    /// Whether this node and the peers linked and acknowledging now are a majority
    /// of the mesh: two such sets always share a node, which judges both sides'
    /// claims.
    pub fn reaches_majority(&self) -> bool {
        self.nodes_reached() >= self.majority()
    }

    /// Whether a claim made now is refused before it is tried: claims need a
    /// majority (`--repl-claims majority`) and this node cannot reach one.
    pub fn refuses_claims(&self) -> bool {
        self.claim_rule() == ClaimRule::Majority && (!self.reaches_majority() || !self.caught_up_with_all())
    }

    /// The peer in `slot` has sent this run what it holds (see [`Peer`]'s
    /// `caught_up`).
    pub fn caught_up_with(&self, slot: usize) {
        self.peers[slot].caught_up.store(true, Ordering::SeqCst);
    }

    /// Whether this run has caught up with every peer, listed or known. Votes live
    /// in memory only: a node restarted empty has forgotten the claims it voted
    /// for, and may hold none of their states yet. Before it has heard from every
    /// other node, which between them hold every granted claim, it could vote
    /// for a rival of one it voted for before (simulator seed 1099511757840: a
    /// node that crashed after voting came back synced from the one peer that had
    /// not seen the grant, and granted the lock again with it).
    pub fn caught_up_with_all(&self) -> bool {
        let known = self.known_peers();
        known.len() >= self.settings.peers.len() && known.iter().all(|peer| peer.caught_up.load(Ordering::SeqCst))
    }

    /// Whether `incr` and `decr` made now are counted apart rather than judged as
    /// claims: under `local`, short of a peer; an increment still counts, and adds
    /// to what the others count (`store/counter.rs`). Under `majority` they are
    /// claims judged by the peers in reach, and refused without a majority.
    pub fn counts_apart(&self) -> bool {
        self.claim_rule() == ClaimRule::Local && !self.linked_with_all()
    }

    /// Whether the verdict on our claim `seq` is in. Under `local`: every
    /// acknowledging peer applied the claim (or refused it), or no acknowledging
    /// link is up, in which case an `add` is decided here alone (see README,
    /// "Session locks"). Under `majority`: the proposal is decided
    /// ([`Replicator::decide_claims`]). In either sync mode.
    pub fn claim_settled(&self, seq: u64) -> bool {
        if seq >= FIRST_WAIT {
            let key = self.claims.waiting().get(&seq).cloned();
            return key.is_none_or(|key| self.vote_free(&key));
        }
        if self.is_proposal(seq) {
            self.decide_claims();
            return self.claims.decided().get(&seq).is_some_and(|&verdict| self.verdict_answerable(verdict));
        }
        self.all_acked(seq) || self.refuses_claims()
    }

    /// Once settled, whether our claim `seq` won: under `local`, false if a peer
    /// refused it; under `majority`, whether a majority accepted it (it is then
    /// installed). A lost claim's command runs again. Each verdict is collected once.
    pub fn take_claim_verdict(&self, seq: u64) -> Option<bool> {
        if seq >= FIRST_WAIT {
            // A wait for the key's vote: the claim runs again once it is free.
            return self.claim_settled(seq).then(|| {
                self.claims.waiting().remove(&seq);
                false
            });
        }
        if self.is_proposal(seq) {
            self.decide_claims();
            let mut decided = self.claims.decided();
            let verdict = *decided.get(&seq)?;
            if !self.verdict_answerable(verdict) {
                return None;
            }
            decided.remove(&seq);
            return Some(matches!(verdict, Verdict::Granted { .. }));
        }
        if !self.claim_settled(seq) {
            return None;
        }
        let lost = self.refused_claims().remove(&seq).is_some();
        if lost {
            self.stats.claims_lost.fetch_add(1, Ordering::Relaxed);
        }
        Some(!lost)
    }

    /// Whether a decided proposal's writer may be answered: at once if it lost,
    /// and once its installed change may be reported done if it was granted (in
    /// ack mode, when the peers have it: a read on any node then finds it).
    fn verdict_answerable(&self, verdict: Verdict) -> bool {
        match verdict {
            Verdict::Lost => true,
            Verdict::Granted { installed } => self.acknowledged(installed),
        }
    }

    /// Whether our claim `seq` is a proposal (open, or decided and uncollected),
    /// rather than a claim judged by the linked peers: the rule may change while
    /// one waits (a third node links), and each is settled as it was made.
    fn is_proposal(&self, seq: u64) -> bool {
        self.claims.open().contains_key(&seq) || self.claims.decided().contains_key(&seq)
    }

    /// Whether claims are proposed to a majority (`--repl-claims majority`) rather
    /// than applied at once and judged by the linked peers.
    pub fn proposes(&self) -> bool {
        self.claim_rule() == ClaimRule::Majority
    }

    /// The claims rule: `--repl-claims`, or else majority once this node knows two
    /// peers or more, listed or linked. Every node of a mesh then claims alike,
    /// whether it lists its peers or only accepts them (a listen-only node that
    /// claimed alone beside nodes that propose would grant a lock they grant too).
    pub fn claim_rule(&self) -> ClaimRule {
        self.settings.claims.unwrap_or_else(|| ClaimRule::default_for(self.nodes() - 1))
    }

    /// Runs `write`, a claim made as a proposal ([`crate::store::Proposal`]), with
    /// this node's vote on `key`, which it casts for the proposal. While the vote
    /// is taken (by a proposal of ours or a peer's, undecided) nothing is
    /// proposed: `None`, and `receipt.claim` is a wait that ends once the vote is
    /// free, after which the claim runs again (a proposal made meanwhile could not
    /// win without this node, and would only be lost and made again at once).
    pub fn propose<T>(&self, key: &[u8], receipt: &mut Receipt, write: impl FnOnce(&mut Receipt) -> T) -> Option<T> {
        let mut votes = self.votes.stripe(key);
        let now = self.store.clock().now_secs();
        if votes.get(key).is_some_and(|vote| !vote.lapsed(now)) {
            receipt.claim = self.claims.wait_for_vote(key);
            return None;
        }
        let outcome = write(receipt);
        let seq = receipt.claim;
        if seq != 0
            && let Some(claim) = self.claims.open().get_mut(&seq)
        {
            claim.opened = true;
            claim.voted = true;
            let (version, expires_at) = (claim.proposed.version, claim.proposed.expires_at);
            let claimer = self.settings.identity.node;
            votes.insert(key.into(), Vote { claimer, version, expires_at, own: Some(seq) });
        }
        Some(outcome)
    }

    /// Whether this node's vote on `key` is free (no undecided proposal holds it).
    fn vote_free(&self, key: &[u8]) -> bool {
        let now = self.store.clock().now_secs();
        self.votes.stripe(key).get(key).is_none_or(|vote| vote.lapsed(now))
    }

    /// Whether claims wait for a vote to be free: the link's timer wakes them, as
    /// a vote may lapse with no frame arriving.
    pub fn claims_wait_for_votes(&self) -> bool {
        !self.claims.waiting().is_empty()
    }

    /// The votes this node holds for peer `claimer`'s proposals, each key's and
    /// version: a full sync from the peer starts, and once it has ended they are
    /// resolved ([`Replicator::resolved`]): the sync holds every state they led to,
    /// and the resolutions it replaced never come.
    pub fn votes_cast_for(&self, claimer: u16) -> Vec<(Box<[u8]>, u64)> {
        self.votes.cast_for(claimer)
    }

    /// Judges peer `claimer`'s proposal: true when this node votes for it (its
    /// vote on the key is free, or held by an own proposal older than this one and
    /// short of a majority, which then yields; and what this node holds of the key
    /// is not newer than what the proposal was made on); false to refuse it.
    pub fn judge(&self, claimer: u16, proposal: &Proposal<'_>) -> bool {
        if !self.caught_up_with_all() {
            // It may have forgotten a vote (see `caught_up_with_all`).
            return false;
        }
        let key = proposal.key;
        let mut votes = self.votes.stripe(key);
        let now = self.store.clock().now_secs();
        let mut yielding = None;
        if let Some(vote) = votes.get(key).filter(|vote| !vote.lapsed(now)) {
            if vote.claimer == claimer && vote.version == proposal.version {
                // Sent again on a new link: the vote stands.
                return true;
            }
            match vote.own {
                Some(seq) if proposal.version > vote.version && self.standing(seq, true) == Standing::Open => {
                    yielding = Some(seq)
                }
                _ => return false,
            }
        }
        if !stands_on(proposal, self.store.claim_state(key)) {
            return false;
        }
        if let Some(seq) = yielding
            && let Some(own) = self.claims.open().get_mut(&seq)
        {
            own.voted = false;
        }
        let (version, expires_at) = (proposal.version, proposal.expires_at);
        votes.insert(key.into(), Vote { claimer, version, expires_at, own: None });
        true
    }

    /// Peer `claimer` decided its proposal of `version` on `key`: this node's vote
    /// for it is free again.
    pub fn resolved(&self, claimer: u16, key: &[u8], version: u64) {
        let mut votes = self.votes.stripe(key);
        if votes.get(key).is_some_and(|vote| vote.own.is_none() && vote.claimer == claimer && vote.version == version) {
            votes.remove(key);
            drop(votes);
            // A claim of ours may wait for this vote.
            if self.claims_wait_for_votes() {
                self.wake_ack_waiters();
            }
        }
    }

    /// Peer `node` is in a new run (it restarted): the proposals of its old run
    /// will never be resolved, and its votes for them go.
    pub fn forget_votes_of(&self, node: u16) {
        self.votes.forget_claimer(node);
    }

    /// Votes this node holds on keys with an undecided proposal, its own included.
    pub fn votes_held(&self) -> usize {
        self.votes.held()
    }

    /// How our proposal `seq` stands, `voted` saying whether this node's own vote is
    /// for it: granted once the nodes that accepted it, this one included, are a
    /// majority; lost once the nodes that may still accept it cannot make one (a
    /// peer that is not linked cannot, until it is back). A peer's vote counts only
    /// while the link it came on is up: a peer that restarted may have forgotten it.
    fn standing(&self, seq: u64, voted: bool) -> Standing {
        let mut accepted = usize::from(voted);
        let mut undecided = 0;
        for (slot, peer) in self.known_peers().iter().enumerate() {
            // The acknowledgement first: a refusal is recorded before it.
            let acked = peer.acked() >= seq;
            if self.refused_by(seq, slot) {
                continue;
            }
            // A vote counts only from a link up since it was cast.
            if acked && peer.is_acking() && seq > peer.unjudged_upto.load(Ordering::SeqCst) {
                accepted += 1;
            } else if !acked && peer.is_acking() {
                undecided += 1;
            }
        }
        let majority = self.majority();
        if accepted >= majority {
            Standing::Granted
        } else if accepted + undecided < majority || self.refuses_claims() {
            Standing::Lost
        } else {
            Standing::Open
        }
    }

    /// Whether the peer in `slot` refused our claim `seq`.
    fn refused_by(&self, seq: u64, slot: usize) -> bool {
        self.refused_claims().get(&seq).is_some_and(|slots| slots & (1 << slot) != 0)
    }

    /// Decides every proposal of ours whose standing is settled: a granted one is
    /// installed (and goes to the peers as a plain state), a lost one leaves
    /// nothing; either way a `Resolve` frees the voters. Says whether it decided
    /// any (their writers wait on the acknowledgement wakers). Any thread but one
    /// applying a peer's changes (the install is this node's own write).
    pub fn decide_claims(&self) -> bool {
        if self.claims.open().is_empty() {
            return false;
        }
        // Another thread deciding decides these too (and a simulated link run
        // inside an install's record must not decide again).
        let _deciding = match self.claims.deciding.try_lock() {
            Ok(deciding) => deciding,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        let opened: Vec<(u64, Box<[u8]>)> = (self.claims.open().iter())
            .filter(|(_, claim)| claim.opened)
            .map(|(&seq, claim)| (seq, claim.proposed.key.clone()))
            .collect();
        let mut decided_any = false;
        for (seq, key) in opened {
            // Decided under the key's vote, so that no yield to a rival comes between.
            let (proposed, granted) = {
                let _votes = self.votes.stripe(&key);
                let Some(voted) = self.claims.open().get(&seq).map(|claim| claim.voted) else { continue };
                let granted = match self.standing(seq, voted) {
                    Standing::Open => continue,
                    Standing::Granted => true,
                    Standing::Lost => false,
                };
                // It stays open until its verdict is kept: a writer asking meanwhile
                // must not take it for a claim of the older kind (judged, not
                // proposed), whose verdict would read as won.
                let Some(proposed) = self.claims.open().get(&seq).map(|claim| claim.proposed.clone()) else { continue };
                (proposed, granted)
            };
            // Until its own vote goes, this node refuses rivals: its standing is
            // settled, so it does not yield.
            // A granted claim that finds a newer state here (a write it raced, that
            // reached this node first) did not take effect: it is reported lost, and
            // its command runs again on that state, rather than told it holds what
            // another write replaced.
            let mut receipt = Receipt::default();
            let installed =
                granted && self.store.install_granted(&proposed.as_proposal(), &mut receipt) == Applied::Applied;
            {
                let mut votes = self.votes.stripe(&key);
                if votes.get(&key).is_some_and(|vote| vote.own == Some(seq)) {
                    votes.remove(&key);
                }
            }
            let resolve = Recorded::Resolve { key, version: proposed.version };
            self.backlog().push(resolve, self.micros());
            if !installed {
                self.stats.claims_lost.fetch_add(1, Ordering::Relaxed);
            }
            self.refused_claims().remove(&seq);
            let verdict = if installed { Verdict::Granted { installed: receipt.recorded } } else { Verdict::Lost };
            self.claims.decide(seq, verdict);
            self.claims.open().remove(&seq);
            decided_any = true;
        }
        if decided_any {
            self.urgent.store(true, Ordering::Release);
            self.announce();
        }
        decided_any
    }

    /// Whether a claim made now is refused before it is tried
    /// ([`Replicator::refuses_claims`]); one that is, is counted.
    pub fn refuse_claim_now(&self) -> bool {
        let refused = self.refuses_claims();
        if refused {
            self.stats.claims_no_majority.fetch_add(1, Ordering::Relaxed);
        }
        refused
    }

    /// The peer in `slot` refused our claim `seq` (before acknowledging it).
    pub fn claim_refused(&self, seq: u64, slot: usize) {
        let mut refused = self.refused_claims();
        // Verdicts whose writers went away uncollected (the client left) are
        // dropped once far behind, so the map stays small.
        while refused.first_key_value().is_some_and(|(&oldest, _)| oldest + REFUSED_CLAIMS_KEPT < seq) {
            refused.pop_first();
        }
        *refused.entry(seq).or_default() |= 1 << slot;
    }

    /// A link to the peer in `slot` starts sending our changes after `seq`: what it
    /// acknowledges up to there it applied on an earlier link, or holds from a full
    /// sync, and no vote of its on our proposals among them counts any more (it
    /// may have restarted since, and forgotten it).
    pub fn judges_after(&self, slot: usize, seq: u64) {
        self.peers[slot].unjudged_upto.fetch_max(seq, Ordering::SeqCst);
    }

    /// The peer in `slot` has applied our changes up to `applied`.
    pub fn peer_applied(&self, slot: usize, applied: u64) {
        if self.peers[slot].acked.fetch_max(applied, Ordering::SeqCst) < applied {
            // A tombstone matters until every peer has the delete: every peer listed
            // (one not yet linked counts as having nothing) and every other linked.
            if self.known_peers().len() >= self.settings.peers.len() {
                self.store.peer_applied(self.acked());
            }
            self.wake_ack_waiters();
        }
    }

    /// The highest of our sequence numbers every known peer has applied.
    pub fn acked(&self) -> u64 {
        self.known_peers().iter().map(Peer::acked).min().unwrap_or(0)
    }

    /// A link to the peer in `slot` on which it acknowledges came up (true) or went
    /// down (false): ack mode and claims wait for a peer only while one is up.
    pub fn set_acking(&self, slot: usize, up: bool) {
        let peer = &self.peers[slot];
        let was = peer.acking.swap(up, Ordering::SeqCst);
        let node = peer.node().unwrap_or_default();
        if self.settings.mode != SyncMode::Async {
            peer.stats.degraded.store(!up, Ordering::Relaxed);
            let degraded = self.known_peers().iter().any(|peer| !peer.is_acking());
            self.stats.degraded.store(degraded, Ordering::Relaxed);
            if was && !up {
                log::warn!("replication: node {node} down; writes are acknowledged without it until it is back");
            } else if !was && up {
                log::info!("replication: node {node} back; writes wait for it again");
            }
        }
        if was && !up {
            self.wake_ack_waiters();
        }
    }

    /// Wakes whoever waits on acknowledgements: replies held in ack mode, and `add`s
    /// awaiting the verdict on their claims (in either mode).
    pub(super) fn wake_ack_waiters(&self) {
        if self.blocked_on_acks.load(Ordering::SeqCst) > 0 {
            let _guard = self.ack_signal.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            self.ack_signal.1.notify_all();
        }
        if let (Some(wakers), Some(flags)) = (self.ack_wakers.get(), self.awaiting_acks.get()) {
            for (waker, flag) in wakers.iter().zip(flags) {
                if flag.load(Ordering::SeqCst) && flag.swap(false, Ordering::SeqCst) {
                    let _ = waker.wake();
                }
            }
        }
    }

    /// The `stats replication` lines, also part of plain `stats`.
    /// The backlog's figures, read under one lock (for `stats replication` and the
    /// metrics).
    pub fn backlog_figures(&self) -> BacklogFigures {
        let backlog = self.backlog();
        let acked = self.acked();
        let oldest_unacked_us = if acked < backlog.last_seq() { backlog.recorded_at(acked + 1) } else { None };
        BacklogFigures {
            last_seq: backlog.last_seq(),
            first_seq: backlog.first_seq(),
            bytes: backlog.bytes(),
            capacity: backlog.capacity(),
            oldest_unacked_us,
        }
    }

    /// Bytes sent on the link the peer has not confirmed reading; 0 while it is down.
    pub fn lag_bytes(&self) -> u64 {
        self.known_peers().iter().map(Peer::lag_bytes).max().unwrap_or(0)
    }

    /// The backlog. A panic while it was held may have left it half written, so a
    /// poisoned backlog is emptied rather than trusted, as the store empties a
    /// poisoned shard: the sequence goes on, and a peer that needed what it held
    /// gets a full sync. The node keeps serving and replicating either way.
    pub(crate) fn backlog(&self) -> MutexGuard<'_, Backlog> {
        self.backlog.lock().unwrap_or_else(|poisoned| {
            let mut backlog = poisoned.into_inner();
            backlog.forget_all();
            self.backlog.clear_poison();
            log::error!(
                "replication: the backlog was poisoned by a panic and has been emptied; a peer behind it gets a \
                 full sync"
            );
            backlog
        })
    }

    /// Our refused claims; a set that is inserted into and removed from whole, used
    /// as is when poisoned.
    fn refused_claims(&self) -> MutexGuard<'_, std::collections::BTreeMap<u64, u32>> {
        self.refused_claims.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this replication runs over `store`.
    pub fn replicates(&self, store: &Arc<Store>) -> bool {
        Arc::ptr_eq(&self.store, store)
    }

    /// Deleted keys remembered against late writes.
    pub fn tombstones(&self) -> usize {
        self.store.tombstones()
    }

    /// Deletes forgotten for memory before every peer applied them (`repl_tombstones_shed`).
    pub fn tombstones_shed(&self) -> u64 {
        self.store.tombstones_shed()
    }

    /// A counter summed over the node's own figures and every peer's.
    pub fn total(&self, field: fn(&ReplStats) -> &AtomicU64) -> u64 {
        let load = |stats: &ReplStats| field(stats).load(Ordering::Relaxed);
        load(&self.stats) + self.known_peers().iter().map(|peer| load(&peer.stats)).sum::<u64>()
    }

    pub fn stats_lines(&self, mut line: impl FnMut(&str, String)) {
        let peers = self.known_peers();
        let s = &self.stats;
        let now = self.store.clock().now_ms();
        let now_us = self.micros();
        let BacklogFigures { last_seq, first_seq, bytes: backlog_bytes, capacity: backlog_capacity, oldest_unacked_us } =
            self.backlog_figures();
        // A counter is the node's and every peer's; a figure of one link is the
        // worst link's (one peer: that peer's, as a pair has always shown).
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let total = |field| self.total(field);
        let worst = |field: fn(&ReplStats) -> &AtomicU64| peers.iter().map(|peer| load(field(&peer.stats))).max();
        let least = |field: fn(&ReplStats) -> &AtomicU64| peers.iter().map(|peer| load(field(&peer.stats))).min();
        let heard = |stats: &ReplStats| {
            let at = load(&stats.last_heard_ms);
            if at == 0 { -1 } else { now.saturating_sub(at) as i64 }
        };
        let skew = |stats: &ReplStats| stats.skew_ms.load(Ordering::Relaxed);
        line("repl_node_id", self.settings.identity.node.to_string());
        line("repl_listen", self.listen_addr.get().map(ToString::to_string).unwrap_or_default());
        line("repl_peer", self.settings.peers.join(","));
        let nodes: Vec<String> = peers.iter().filter_map(Peer::node).map(|node| node.to_string()).collect();
        line("repl_peer_node_id", nodes.join(","));
        line("repl_peers", peers.len().to_string());
        line("repl_peers_up", peers.iter().filter(|peer| load_state(peer) >= LINK_SYNCING).count().to_string());
        line("repl_peer_state", state_name(s.state.load(Ordering::Relaxed)).to_string());
        // Whether the link runs over TLS: a link comes up only when both sides agree.
        line("repl_link_tls", u8::from(self.settings.tls.is_some()).to_string());
        line("repl_mode", self.settings.mode.name().to_string());
        line("repl_claims", self.claim_rule().name().to_string());
        line("repl_nodes", self.nodes().to_string());
        // Whether this node and the peers it reaches are a majority; under
        // `--repl-claims majority` it grants claims only then.
        line("repl_majority", u8::from(self.reaches_majority()).to_string());
        line("repl_degraded", u8::from(s.degraded.load(Ordering::Relaxed)).to_string());
        line("repl_rtt_ms", worst(|s| &s.rtt_ms).unwrap_or(0).to_string());
        line("repl_last_heartbeat_ms", peers.iter().map(|peer| heard(&peer.stats)).max().unwrap_or(-1).to_string());
        line(
            "repl_clock_skew_ms",
            peers.iter().map(|peer| skew(&peer.stats)).max_by_key(|skew| skew.abs()).unwrap_or(0).to_string(),
        );
        line("repl_last_seq", last_seq.to_string());
        line("repl_sent_seq", least(|s| &s.sent_seq).unwrap_or_else(|| load(&s.sent_seq)).to_string());
        line("repl_acked_seq", self.acked().to_string());
        line("repl_applied_seq", least(|s| &s.applied_seq).unwrap_or(0).to_string());
        line("repl_lag_ops", last_seq.saturating_sub(self.acked()).to_string());
        line("repl_lag_bytes", self.lag_bytes().to_string());
        line("repl_lag_ms", oldest_unacked_us.map_or(0, |at| now_us.saturating_sub(at) / 1000).to_string());
        line("repl_lag_p50_us", s.lag.percentile(500).to_string());
        line("repl_lag_p99_us", s.lag.percentile(990).to_string());
        line("repl_backlog_bytes", backlog_bytes.to_string());
        line("repl_backlog_size", backlog_capacity.to_string());
        line("repl_backlog_first_seq", first_seq.to_string());
        line("repl_sent_bytes", total(|s| &s.sent_bytes).to_string());
        line("repl_received_bytes", total(|s| &s.received_bytes).to_string());
        line("repl_changes_applied", total(|s| &s.changes_applied).to_string());
        line("repl_conflicts", total(|s| &s.conflicts).to_string());
        line("repl_claims_refused", total(|s| &s.claims_refused).to_string());
        line("repl_claims_lost", total(|s| &s.claims_lost).to_string());
        line("repl_claims_no_majority", load(&s.claims_no_majority).to_string());
        // Keys this node has voted on whose claim is not decided yet, its own included.
        line("repl_votes", self.votes_held().to_string());
        line("repl_claims_open", self.claims.open().len().to_string());
        line("repl_apply_failures", total(|s| &s.apply_failures).to_string());
        line("repl_partial_syncs", total(|s| &s.partial_syncs).to_string());
        line("repl_full_syncs", total(|s| &s.full_syncs).to_string());
        let syncing = peers.iter().any(|peer| peer.stats.receiving_sync.load(Ordering::Relaxed));
        line("repl_syncing", u8::from(syncing).to_string());
        line("repl_sync_items_received", total(|s| &s.sync_items_received).to_string());
        line("repl_sync_items_sent", total(|s| &s.sync_items_sent).to_string());
        line("repl_links", total(|s| &s.links).to_string());
        line("repl_refused", load(&s.refused).to_string());
        line("repl_tls_mismatches", load(&s.tls_mismatches).to_string());
        line("repl_tombstones", self.store.tombstones().to_string());
        line("repl_tombstone_bytes", self.store.tombstone_bytes().to_string());
        line("repl_tombstones_shed", self.tombstones_shed().to_string());
        // Then each peer's own, by node id.
        for peer in peers {
            let Some(node) = peer.node() else { continue };
            let p = &peer.stats;
            let mut each = |name: &str, value: String| line(&format!("repl_peer_{node}_{name}"), value);
            each("state", state_name(load_state(peer)).to_string());
            each("address", peer.address().map(|address| address.to_string()).unwrap_or_default());
            each("rtt_ms", load(&p.rtt_ms).to_string());
            each("last_heartbeat_ms", heard(p).to_string());
            each("clock_skew_ms", skew(p).to_string());
            each("sent_seq", load(&p.sent_seq).to_string());
            each("acked_seq", peer.acked().to_string());
            each("applied_seq", load(&p.applied_seq).to_string());
            each("lag_ops", last_seq.saturating_sub(peer.acked()).to_string());
            each("lag_bytes", peer.lag_bytes().to_string());
            each("tombstones_pending", self.store.tombstones_pending(peer.acked()).to_string());
            each("partial_syncs", load(&p.partial_syncs).to_string());
            each("full_syncs", load(&p.full_syncs).to_string());
            each("links", load(&p.links).to_string());
            each("changes_applied", load(&p.changes_applied).to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_percentiles_come_from_log_linear_buckets() {
        let lag = LagHistogram::default();
        assert_eq!(lag.percentile(500), 0);
        for us in 1..=100 {
            lag.record(us);
        }
        lag.record(1_000_000);
        let (p50, p99, max) = (lag.percentile(500), lag.percentile(990), lag.percentile(1000));
        assert!((40..=51).contains(&p50), "{p50}");
        assert!((80..=100).contains(&p99), "{p99}");
        assert!((786_432..=1_000_000).contains(&max), "{max}");
        for us in [0, 3, 4, 7, 8, 1000, u64::MAX] {
            let index = LagHistogram::index(us);
            assert!(LagHistogram::lower_bound(index) <= us, "{us}");
            assert!(us == u64::MAX || LagHistogram::lower_bound(index + 1) > us, "{us}");
        }
    }
}
