//! Two nodes linked by their real sessions through in-memory byte pipes, on one
//! manual clock: any interleaving of client writes, partial deliveries, link cuts
//! and restarts ends, once the link is back and quiet, with identical stores.

use super::handshake::Identity;
use super::heartbeat::LinkTime;
use super::replicator::{ClaimRule, Replicator, Settings, SyncMode};
use super::session::LinkSession;
use crate::store::{Clock, ManualClock, Receipt, Store, StoreConfig, StoreMode, StoreOutcome, StoreRequest};
use proptest::prelude::*;
use std::sync::Arc;
use std::time::Duration;

const START_MS: u64 = 1_800_000_000_000;
const KEYS: usize = 6;

fn replicator(id: u16, clock: &ManualClock, history: u64) -> Arc<Replicator> {
    replicator_listening(id, clock, history, "")
}

/// A node whose link (when one is built) listens on `listen`.
pub(super) fn replicator_listening(id: u16, clock: &ManualClock, history: u64, listen: &str) -> Arc<Replicator> {
    replicator_with(id, clock, history, listen, Vec::new(), ClaimRule::Local)
}

/// A node given `peers` to dial and judging claims by `claims`.
fn replicator_with(
    id: u16,
    clock: &ManualClock,
    history: u64,
    listen: &str,
    peers: Vec<String>,
    claims: ClaimRule,
) -> Arc<Replicator> {
    replicator_in_mode(id, clock, history, listen, peers, claims, SyncMode::Async)
}

fn replicator_in_mode(
    id: u16,
    clock: &ManualClock,
    history: u64,
    listen: &str,
    peers: Vec<String>,
    claims: ClaimRule,
    mode: SyncMode,
) -> Arc<Replicator> {
    let config = StoreConfig { node_id: id, ..StoreConfig::default() };
    let store = Arc::new(Store::new(config, Clock::Manual(clock.clone())));
    let settings = Settings {
        peers,
        listen: Some(listen.to_string()),
        identity: Identity::new(id, b"test", b"0123456789abcdef"),
        backlog: 1 << 20,
        timeout: Duration::from_secs(3),
        heartbeat: Duration::from_millis(500),
        mode,
        claims: Some(claims),
        tombstone_secs: 3600,
        tls: None,
    };
    let replicator = Arc::new(Replicator::new(store, settings, history));
    assert!(replicator.observe());
    replicator
}

/// One side of a link: its session and the bytes it has received but not used.
struct End {
    session: LinkSession,
    inbox: Vec<u8>,
}

struct Pair {
    clock: ManualClock,
    a: Arc<Replicator>,
    b: Arc<Replicator>,
    link: Option<(End, End)>,
    histories: u64,
}

impl Pair {
    fn new() -> Pair {
        let clock = ManualClock::new(START_MS);
        let (a, b) = (replicator(1, &clock, 1), replicator(2, &clock, 2));
        Pair { clock, a, b, link: None, histories: 2 }
    }

    fn connect(&mut self) {
        if self.link.is_none() {
            let now = LinkTime::both(self.clock.now_ms());
            let a = LinkSession::start(&self.a, true, now).unwrap();
            let b = LinkSession::start(&self.b, false, now).unwrap();
            self.link = Some((End { session: a, inbox: Vec::new() }, End { session: b, inbox: Vec::new() }));
            // The handshake happens at once, so that its clock samples are exact
            // (both nodes share the clock); the data after it crosses piecemeal.
            while !self.handshake_done() {
                self.deliver(true, usize::MAX);
                self.deliver(false, usize::MAX);
            }
        }
    }

    fn handshake_done(&self) -> bool {
        self.link.as_ref().is_some_and(|(a, b)| a.session.is_ready() && b.session.is_ready())
    }

    /// Moves up to `max` bytes one way (producing them first), and lets the
    /// receiver handle what arrived. False when nothing moved.
    fn deliver(&mut self, to_b: bool, max: usize) -> bool {
        self.deliver_produced(to_b, max, true)
    }

    /// [`Pair::deliver`], or with `produce` false only what the sender has already
    /// put out (acknowledgements, answers to pings), as the link's event loop does when its
    /// batch timer holds the backlog back.
    fn deliver_produced(&mut self, to_b: bool, max: usize, produce: bool) -> bool {
        let now = LinkTime::both(self.clock.now_ms());
        let Some((end_a, end_b)) = self.link.as_mut() else {
            return false;
        };
        let (from_node, to_node, from, to) =
            if to_b { (&self.a, &self.b, end_a, end_b) } else { (&self.b, &self.a, end_b, end_a) };
        if produce {
            from.session.produce(from_node, 1 << 16).expect("within the backlog");
        }
        let n = max.min(from.session.out.len());
        if n == 0 {
            return false;
        }
        to.inbox.extend(from.session.out.drain(..n));
        // Receiving stops once after the handshake: what follows is read on.
        loop {
            let used = to.session.receive(to_node, &to.inbox, now).expect("a well-formed link");
            to.inbox.drain(..used);
            if used == 0 || to.inbox.is_empty() {
                break true;
            }
        }
    }

    fn cut(&mut self) {
        if self.link.take().is_some() {
            // What the link's event loop does when a link closes.
            // Each pair's replicator has one peer, in slot 0.
            for node in [&self.a, &self.b] {
                if !node.known_peers().is_empty() {
                    node.set_acking(0, false);
                }
            }
        }
    }

    /// Node B loses everything and comes back as a new run. A restart takes time:
    /// versions are unique across runs because the physical clock has moved on
    /// (the hybrid clock's assumption; a node restarted within the millisecond it
    /// died in could repeat a version it made before).
    fn restart_b(&mut self) {
        self.cut();
        self.clock.advance_ms(1);
        self.histories += 1;
        self.b = replicator(2, &self.clock, self.histories);
    }

    fn settle(&mut self) {
        self.connect();
        for _ in 0..10_000 {
            if !(self.deliver(true, usize::MAX) | self.deliver(false, usize::MAX)) {
                return;
            }
        }
        panic!("the link never went quiet");
    }
}

fn key(index: usize) -> Vec<u8> {
    format!("session:{index}").into_bytes()
}

/// What a client sees of a key: value, flags and CAS unique.
fn visible(store: &Store, key: &[u8]) -> Option<(Vec<u8>, u32, u64)> {
    let mut seen = None;
    store.get_for_meta(key, None, false, |item, _, _| seen = Some((item.value().to_vec(), item.flags(), item.cas())));
    seen
}

#[test]
fn a_pair_links_syncs_and_streams() {
    let mut pair = Pair::new();
    pair.a.store.store(&StoreRequest::new(StoreMode::Set, b"before", b"1"));
    pair.settle();
    assert_eq!(visible(&pair.b.store, b"before").map(|v| v.0), Some(b"1".to_vec()), "the first link syncs fully");
    assert_eq!(pair.a.peer(0).stats.full_syncs.load(std::sync::atomic::Ordering::Relaxed), 1);
    pair.b.store.store(&StoreRequest::new(StoreMode::Set, b"after", b"2"));
    pair.settle();
    assert_eq!(visible(&pair.a.store, b"after"), visible(&pair.b.store, b"after"));
    assert!(visible(&pair.a.store, b"after").is_some());
    assert_eq!(pair.b.acked(), 1, "A acknowledged B's change");

    pair.cut();
    pair.a.store.delete(b"before");
    pair.settle();
    assert_eq!(visible(&pair.b.store, b"before"), None, "the delete made while cut arrives");
    let stats = |replicator: &Replicator| {
        use std::sync::atomic::Ordering::Relaxed;
        let peer = &replicator.peer(0).stats;
        (peer.full_syncs.load(Relaxed), peer.partial_syncs.load(Relaxed))
    };
    assert_eq!((stats(&pair.a), stats(&pair.b)), ((1, 1), (1, 1)), "the reconnect resumed from the backlogs");
}

#[test]
fn silences_are_timed_on_the_monotonic_clock() {
    let mut pair = Pair::new();
    pair.settle();
    let now = pair.clock.now_ms();
    let timeout = pair.a.settings.timeout.as_millis() as u64;
    let (a, _) = pair.link.as_mut().expect("linked");
    // The wall clock stepped an hour ahead, the peer heard from just now: still up.
    let ahead = LinkTime { wall_ms: now + 3_600_000, mono_ms: now + 10 };
    assert_eq!(a.session.tick(&pair.a, ahead), Ok(()));
    // Stepped an hour back, the peer silent for longer than the timeout: down.
    let back = LinkTime { wall_ms: now - 3_600_000, mono_ms: now + timeout + 1 };
    let down = a.session.tick(&pair.a, back).unwrap_err();
    assert!(down.contains("declared down"), "{down}");
}

#[test]
fn a_stranger_is_refused_before_anything_is_sent() {
    let pair = Pair::new();
    let now = LinkTime::both(pair.clock.now_ms());
    let mut acceptor = LinkSession::start(&pair.a, false, now).unwrap();
    assert!(acceptor.out.is_empty(), "the accepting side speaks only after a valid hello");
    let refused = acceptor.receive(&pair.a, b"set k 0 0 1\r\nx\r\n", now).unwrap_err();
    assert!(refused.contains("unknown frame type"), "{refused}");
    assert!(acceptor.out.is_empty());

    let stranger = replicator(3, &pair.clock, 9);
    let mut stranger_identity = stranger.settings.clone();
    stranger_identity.identity = Identity::new(3, b"test", b"not the pair's secret!");
    let impostor = Arc::new(Replicator::new(Arc::clone(&stranger.store), stranger_identity, 9));
    let mut dialer = LinkSession::start(&impostor, true, now).unwrap();
    let mut acceptor = LinkSession::start(&pair.a, false, now).unwrap();
    let hello = std::mem::take(&mut dialer.out);
    acceptor.receive(&pair.a, &hello, now).unwrap();
    let challenge = std::mem::take(&mut acceptor.out);
    // The impostor refuses the pair's proof, but has sent its own by then.
    let _ = dialer.receive(&impostor, &challenge, now);
    let refused = acceptor.receive(&pair.a, &dialer.out, now).unwrap_err();
    assert!(refused.contains("--repl-secret"), "{refused}");
    assert!(acceptor.out.is_empty() && !acceptor.is_ready(), "nothing of the cache was sent");
}

#[derive(Clone, Debug)]
enum Op {
    Set { on_b: bool, key: usize, value: u8, ttl: u8 },
    Append { on_b: bool, key: usize, value: u8 },
    Incr { on_b: bool, key: usize },
    Delete { on_b: bool, key: usize },
    Flush { on_b: bool },
    Deliver { to_b: bool, bytes: u16 },
    Connect,
    Cut,
    RestartB,
    Tick { ms: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS;
    prop_oneof![
        6 => (any::<bool>(), key.clone(), any::<u8>(), 0..3u8)
            .prop_map(|(on_b, key, value, ttl)| Op::Set { on_b, key, value, ttl }),
        2 => (any::<bool>(), key.clone(), any::<u8>()).prop_map(|(on_b, key, value)| Op::Append { on_b, key, value }),
        2 => (any::<bool>(), key.clone()).prop_map(|(on_b, key)| Op::Incr { on_b, key }),
        3 => (any::<bool>(), key).prop_map(|(on_b, key)| Op::Delete { on_b, key }),
        1 => any::<bool>().prop_map(|on_b| Op::Flush { on_b }),
        8 => (any::<bool>(), 1..200u16).prop_map(|(to_b, bytes)| Op::Deliver { to_b, bytes }),
        2 => Just(Op::Connect),
        1 => Just(Op::Cut),
        1 => Just(Op::RestartB),
        3 => (0..1500u16).prop_map(|ms| Op::Tick { ms }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_interleaving_with_cuts_and_restarts_converges(ops in proptest::collection::vec(op(), 1..80)) {
        let mut pair = Pair::new();
        pair.connect();
        for op in ops {
            let (a, b) = (Arc::clone(&pair.a), Arc::clone(&pair.b));
            let pick = |on_b: bool| if on_b { &b.store } else { &a.store };
            match op {
                Op::Set { on_b, key: k, value, ttl } => {
                    let (value, name) = ([value], key(k));
                    // TTLs of 0 (none), 1 and 2 seconds, so that some expire on the way.
                    let req = StoreRequest { exptime: i32::from(ttl), ..StoreRequest::new(StoreMode::Set, &name, &value) };
                    pick(on_b).store(&req);
                }
                Op::Append { on_b, key: k, value } => {
                    pick(on_b).store(&StoreRequest::new(StoreMode::Append, &key(k), &[value]));
                }
                Op::Incr { on_b, key: k } => {
                    pick(on_b).arithmetic(&key(k), true, 1);
                }
                Op::Delete { on_b, key: k } => {
                    pick(on_b).delete(&key(k));
                }
                Op::Flush { on_b } => pick(on_b).flush_all(0),
                Op::Deliver { to_b, bytes } => {
                    pair.deliver(to_b, usize::from(bytes));
                }
                Op::Connect => pair.connect(),
                Op::Cut => pair.cut(),
                Op::RestartB => pair.restart_b(),
                Op::Tick { ms } => pair.clock.advance_ms(u64::from(ms)),
            }
        }
        pair.settle();
        for k in 0..KEYS {
            prop_assert_eq!(visible(&pair.a.store, &key(k)), visible(&pair.b.store, &key(k)), "key {}", k);
        }
    }
}

/// A client's write, through each of the store's write paths that replicate a
/// key's state whatever the node held before.
#[derive(Clone, Debug)]
enum Write {
    Set {
        value: u8,
        flags: bool,
        ttl: u8,
    },
    /// Text `delete` and binary DELETE.
    Delete,
    /// Meta `md`, quiet or not (the same store call).
    MetaDelete,
    /// A `set` refused as too large, which must not leave the old value.
    FailedSet,
}

#[derive(Clone, Debug)]
enum Step {
    Write {
        on_b: bool,
        key: usize,
        write: Write,
    },
    Deliver {
        to_b: bool,
        bytes: u16,
    },
    Connect,
    Cut,
    RestartB,
    Tick {
        ms: u16,
    },
    /// The sweeper's pass on one node: tombstones the peer has applied go.
    Sweep {
        on_b: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let write = prop_oneof![
        4 => (any::<u8>(), any::<bool>(), 0..3u8).prop_map(|(value, flags, ttl)| Write::Set { value, flags, ttl }),
        2 => Just(Write::Delete),
        2 => Just(Write::MetaDelete),
        1 => Just(Write::FailedSet),
    ];
    prop_oneof![
        8 => (any::<bool>(), 0..KEYS, write).prop_map(|(on_b, key, write)| Step::Write { on_b, key, write }),
        8 => (any::<bool>(), 1..200u16).prop_map(|(to_b, bytes)| Step::Deliver { to_b, bytes }),
        2 => Just(Step::Connect),
        1 => Just(Step::Cut),
        1 => Just(Step::RestartB),
        2 => (0..1500u16).prop_map(|ms| Step::Tick { ms }),
        2 => any::<bool>().prop_map(|on_b| Step::Sweep { on_b }),
    ]
}

/// A key's state as the client last left it: value, flags and expiry, or deleted.
type Expected = Option<(Vec<u8>, u32, u32)>;

/// One acknowledged write in the oracle's log.
struct Logged {
    key: usize,
    /// The change number it was recorded as on node B, or `None` if made on A
    /// (which never restarts, so never loses a write).
    seq_on_b: Option<u64>,
    /// B's run it was made in.
    history: u64,
    state: Expected,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// The oracle: once the link is back and quiet, each key holds what the last
    /// write to it in real time left, deletes included, on both nodes; only writes
    /// that node B answered and lost when it restarted before A applied them may be
    /// missing. Writes are a millisecond apart, as a client's writes to one session.
    #[test]
    fn the_last_acknowledged_write_wins_deletes_included(steps in proptest::collection::vec(step(), 1..80)) {
        let mut pair = Pair::new();
        pair.connect();
        let mut log: Vec<Logged> = Vec::new();
        // B's writes A had applied when B restarted: (history, change number).
        let mut survived_restarts: Vec<(u64, u64)> = Vec::new();
        for step in steps {
            match step {
                Step::Write { on_b, key: k, write } => {
                    pair.clock.advance_ms(1);
                    let replicator = if on_b { Arc::clone(&pair.b) } else { Arc::clone(&pair.a) };
                    let store = &replicator.store;
                    let name = key(k);
                    let before = replicator.last_seq();
                    let state = match write {
                        Write::Set { value, flags, ttl } => {
                            let flags = if flags { 0xC0FFEE } else { 0 };
                            let data = [value];
                            let req = StoreRequest {
                                flags,
                                exptime: i32::from(ttl),
                                ..StoreRequest::new(StoreMode::Set, &name, &data)
                            };
                            let stored = matches!(store.store(&req), crate::store::StoreOutcome::Stored { .. });
                            prop_assert!(stored, "a set is stored");
                            let now = store.clock().now_secs();
                            Some((vec![value], flags, crate::store::expiry::deadline(i32::from(ttl), now)))
                        }
                        Write::Delete => {
                            store.delete(&name);
                            None
                        }
                        Write::MetaDelete => {
                            store.delete_for_meta(&crate::store::DeleteRequest { key: &name, ..Default::default() });
                            None
                        }
                        Write::FailedSet => {
                            store.discard(&name);
                            None
                        }
                    };
                    let seq = replicator.last_seq();
                    prop_assert!(seq > before, "every write is recorded, whether or not the key was held");
                    log.push(Logged { key: k, seq_on_b: on_b.then_some(seq), history: replicator.history, state });
                }
                Step::Deliver { to_b, bytes } => {
                    pair.deliver(to_b, usize::from(bytes));
                }
                Step::Connect => pair.connect(),
                Step::Cut => pair.cut(),
                Step::RestartB => {
                    let held = pair.a.known_peers().first().map(|peer| *peer.progress()).unwrap_or_default();
                    let applied = if held.history == pair.b.history { held.applied } else { 0 };
                    survived_restarts.push((pair.b.history, applied));
                    pair.restart_b();
                }
                Step::Tick { ms } => pair.clock.advance_ms(u64::from(ms)),
                Step::Sweep { on_b } => {
                    let store = if on_b { &pair.b.store } else { &pair.a.store };
                    for _ in 0..store.shard_count() {
                        store.sweep_step(1024);
                    }
                }
            }
        }
        pair.settle();
        let now = pair.a.store.clock().now_secs();
        let lost = |entry: &Logged| {
            entry.seq_on_b.is_some_and(|seq| {
                survived_restarts.iter().any(|&(history, applied)| history == entry.history && seq > applied)
            })
        };
        for k in 0..KEYS {
            let seen_a = visible(&pair.a.store, &key(k)).map(|(value, flags, _)| (value, flags));
            let seen_b = visible(&pair.b.store, &key(k)).map(|(value, flags, _)| (value, flags));
            prop_assert_eq!(&seen_a, &seen_b, "key {} diverged", k);
            // What the key may hold: the state of its last write that survived, or
            // of a write after it that B answered and may have lost.
            let mut allowed: Vec<Option<(Vec<u8>, u32)>> = vec![None];
            for entry in log.iter().filter(|entry| entry.key == k) {
                let state = entry.state.clone().and_then(|(value, flags, expires_at)| {
                    (!crate::store::expiry::is_expired(expires_at, now)).then_some((value, flags))
                });
                if lost(entry) {
                    allowed.push(state);
                } else {
                    allowed = vec![state];
                }
            }
            prop_assert!(allowed.contains(&seen_a), "key {}: holds {:?}, the oracle allows {:?}", k, seen_a, allowed);
        }
    }
}

/// Where one node's lock holder stands, as a connection running `add` then
/// `delete` through the server moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Locker {
    Idle,
    /// Its `add` stored the lock as change `seq`, and the connection has yet to look
    /// for the verdict (the link may deliver meanwhile).
    Added(u64),
    /// The verdict on change `seq` was not in; the reply waits for it.
    Claiming(u64),
    Holding,
    /// Its `delete` is change `seq`; in ack mode the reply waits for the peer.
    Releasing(u64),
}

#[derive(Clone, Debug)]
enum LockStep {
    Act {
        on_b: bool,
    },
    Deliver {
        to_b: bool,
        bytes: u16,
        produce: bool,
    },
    Tick {
        ms: u8,
    },
    /// The link drops and comes back (a partial resync): grants made meanwhile are
    /// each node's alone.
    Relink,
    /// The sweeper's pass on one node: tombstones the peer has applied go.
    Sweep {
        on_b: bool,
    },
}

fn lock_step() -> impl Strategy<Value = LockStep> {
    prop_oneof![
        8 => any::<bool>().prop_map(|on_b| LockStep::Act { on_b }),
        12 => (any::<bool>(), 1..120u16, any::<bool>())
            .prop_map(|(to_b, bytes, produce)| LockStep::Deliver { to_b, bytes, produce }),
        2 => (0..3u8).prop_map(|ms| LockStep::Tick { ms }),
        1 => Just(LockStep::Relink),
        2 => any::<bool>().prop_map(|on_b| LockStep::Sweep { on_b }),
    ]
}

/// Moves a locker one step, as its connection would: an answered `add` either
/// holds the lock or, refused, runs again.
fn act(replicator: &Replicator, locker: Locker) -> Locker {
    let ack = |seq| replicator.settings.mode == SyncMode::Async || replicator.acknowledged(seq);
    match locker {
        Locker::Idle => {
            let add = StoreRequest { exptime: 30, ..StoreRequest::new(StoreMode::Add, b"lock", b"me") };
            match replicator.store.store(&add) {
                crate::store::StoreOutcome::Stored { .. } => Locker::Added(replicator.last_seq()),
                _ => Locker::Idle,
            }
        }
        // As a connection does right after the add: the verdict may be in already.
        Locker::Added(seq) => match replicator.take_claim_verdict(seq) {
            Some(true) => Locker::Holding,
            Some(false) => act(replicator, Locker::Idle),
            None => Locker::Claiming(seq),
        },
        Locker::Claiming(seq) if ack(seq) => match replicator.take_claim_verdict(seq) {
            Some(true) => Locker::Holding,
            Some(false) => act(replicator, Locker::Idle),
            None => locker,
        },
        Locker::Holding => {
            replicator.store.delete(b"lock");
            Locker::Releasing(replicator.last_seq())
        }
        Locker::Releasing(seq) if ack(seq) => Locker::Idle,
        waiting => waiting,
    }
}

/// The race on a pair whose clocks are `skew_ms` apart (B's ahead when positive).
fn lock_race(mode: SyncMode, skew_ms: i16, steps: Vec<LockStep>) -> Result<(), TestCaseError> {
    let mut pair = Pair::new();
    let clock_b = ManualClock::new(START_MS.saturating_add_signed(i64::from(skew_ms)));
    for (replicator, clock) in [(&mut pair.a, pair.clock.clone()), (&mut pair.b, clock_b.clone())] {
        let mut settings = replicator.settings.clone();
        settings.mode = mode;
        let store = Arc::clone(&replicator.store);
        // Rebuilt with the mode: the store's observer follows the new node.
        *replicator = Arc::new(Replicator::new(
            Arc::new(Store::new(
                StoreConfig { node_id: settings.identity.node, ..StoreConfig::default() },
                Clock::Manual(clock),
            )),
            settings,
            replicator.history,
        ));
        drop(store);
        assert!(replicator.observe());
    }
    pair.settle();
    let mut lockers = [Locker::Idle, Locker::Idle];
    // The link's generation, and the one each locker's `add` was made in: a grant
    // counts as decided by both nodes only if the link stayed up since its `add`.
    let mut generation = 0u64;
    let mut added_in = [0u64; 2];
    for step in steps {
        match step {
            LockStep::Act { on_b } => {
                pair.clock.advance_ms(1);
                clock_b.advance_ms(1);
                let side = usize::from(on_b);
                let replicator = if on_b { &pair.b } else { &pair.a };
                let before = lockers[side];
                lockers[side] = act(replicator, before);
                if matches!(lockers[side], Locker::Added(_)) {
                    added_in[side] = generation;
                }
            }
            LockStep::Deliver { to_b, bytes, produce } => {
                pair.deliver_produced(to_b, usize::from(bytes), produce);
            }
            LockStep::Tick { ms } => {
                pair.clock.advance_ms(u64::from(ms));
                clock_b.advance_ms(u64::from(ms));
            }
            LockStep::Relink => {
                pair.cut();
                generation += 1;
                pair.connect();
                generation += 1;
            }
            LockStep::Sweep { on_b } => {
                let store = if on_b { &pair.b.store } else { &pair.a.store };
                for _ in 0..store.shard_count() {
                    store.sweep_step(1024);
                }
            }
        }
        let linked = added_in.iter().all(|&made| made == generation);
        prop_assert!(!linked || lockers != [Locker::Holding, Locker::Holding], "both hold the lock");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Two lockers, one on each linked node, race `add`s for one lock while the
    /// link delivers in pieces: never do both hold it.
    #[test]
    fn linked_nodes_never_both_grant_a_lock_async(
        skew_ms in -3i16..=3, steps in proptest::collection::vec(lock_step(), 1..150)
    ) {
        lock_race(SyncMode::Async, skew_ms, steps)?;
    }

    #[test]
    fn linked_nodes_never_both_grant_a_lock_ack(
        skew_ms in -3i16..=3, steps in proptest::collection::vec(lock_step(), 1..150)
    ) {
        lock_race(SyncMode::Ack, skew_ms, steps)?;
    }
}

/// In ack mode a granted claim's writer is answered once every acknowledging peer
/// has the change that installed it, as any write's is: a read on another node
/// right after the reply finds the claim.
#[test]
fn a_granted_claim_in_ack_mode_waits_for_its_install_to_reach_every_peer() {
    let clock = ManualClock::new(START_MS);
    let peers = vec!["10.0.0.2:11212".to_string(), "10.0.0.3:11212".to_string()];
    let node = replicator_in_mode(1, &clock, 7, "", peers, ClaimRule::Majority, SyncMode::Ack);
    let (two, three) = (node.peer_slot(2).unwrap(), node.peer_slot(3).unwrap());
    for slot in [two, three] {
        node.set_acking(slot, true);
        node.caught_up_with(slot);
    }
    let req = StoreRequest { propose: true, ..StoreRequest::new(StoreMode::Add, b"lock", b"mine") };
    let mut receipt = Receipt::default();
    let outcome = node.propose(b"lock", &mut receipt, |receipt| node.store.store_noted(&req, receipt));
    assert!(matches!(outcome, Some(StoreOutcome::Stored { .. })));
    let claim = receipt.claim;
    node.peer_applied(two, claim);
    assert_eq!(node.take_claim_verdict(claim), None, "granted, but no peer has its install yet");
    let installed = claim + 1;
    assert!(node.backlog_figures().last_seq > claim, "the install is recorded after the proposal");
    node.peer_applied(two, installed);
    assert!(!node.claim_settled(claim), "node 3 has not applied the install");
    assert_eq!(node.take_claim_verdict(claim), None);
    node.peer_applied(three, installed);
    assert!(node.claim_settled(claim));
    assert_eq!(node.take_claim_verdict(claim), Some(true));
    // A lost claim is answered at once: it installed nothing to wait for.
    let req = StoreRequest { propose: true, ..StoreRequest::new(StoreMode::Add, b"other", b"mine") };
    let mut receipt = Receipt::default();
    node.propose(b"other", &mut receipt, |receipt| node.store.store_noted(&req, receipt));
    node.claim_refused(receipt.claim, two);
    node.claim_refused(receipt.claim, three);
    assert_eq!(node.take_claim_verdict(receipt.claim), Some(false));
}

/// Under `majority`, a node of three tries claims only while it and its linked
/// peers are two of the three: a claim is won once every linked peer has applied
/// it, and one whose majority goes while it waits is lost (its command runs again,
/// and is refused). Under `local`, a node alone decides alone.
#[test]
fn claims_by_majority_need_two_nodes_of_three() {
    let clock = ManualClock::new(START_MS);
    let peers = vec!["10.0.0.2:11212".to_string(), "10.0.0.3:11212".to_string()];
    let node = replicator_with(1, &clock, 7, "", peers.clone(), ClaimRule::Majority);
    assert_eq!((node.nodes(), node.majority()), (3, 2));
    assert!(node.refuses_claims(), "no peer linked yet");
    let (two, three) = (node.peer_slot(2).unwrap(), node.peer_slot(3).unwrap());
    node.set_acking(two, true);
    assert!(node.reaches_majority() && node.refuses_claims(), "not yet caught up with its peers");
    node.caught_up_with(two);
    assert!(node.refuses_claims(), "nor with node 3, which may hold a claim it voted for before");
    node.caught_up_with(three);
    assert!(node.reaches_majority() && !node.refuses_claims() && !node.counts_apart());
    // An add proposed: nothing is visible until it is granted.
    let add = |key: &'static [u8]| {
        let req = StoreRequest { propose: true, ..StoreRequest::new(StoreMode::Add, key, b"mine") };
        let mut receipt = Receipt::default();
        let outcome = node.propose(key, &mut receipt, |receipt| node.store.store_noted(&req, receipt));
        (matches!(outcome, Some(StoreOutcome::Stored { .. })), receipt.claim)
    };
    let held = |key: &[u8]| {
        let mut value = None;
        node.store.get(key, None, |item| value = Some(item.value().to_vec()));
        value
    };
    let (proposed, five) = add(b"five");
    assert!(proposed);
    assert_eq!(node.take_claim_verdict(five), None, "waits for node 2");
    assert_eq!(held(b"five"), None, "invisible while proposed");
    assert_eq!(node.votes_held(), 1, "its own vote");
    // A second claim on the key waits for the vote, proposing nothing meanwhile.
    let (proposed, wait) = add(b"five");
    assert!(!proposed && wait > five);
    assert_eq!((node.claim_settled(wait), node.take_claim_verdict(wait)), (false, None));
    node.peer_applied(two, five);
    assert_eq!(node.take_claim_verdict(five), Some(true), "itself and node 2");
    assert_eq!(node.take_claim_verdict(wait), Some(false), "the vote is free: it runs again");
    assert_eq!(held(b"five").as_deref(), Some(&b"mine"[..]), "installed once granted");
    assert_eq!(node.votes_held(), 0, "resolved");
    // With node 3 linked too, the first accept beyond itself is enough.
    node.set_acking(three, true);
    let (_, six) = add(b"six");
    node.claim_refused(six, three);
    node.peer_applied(three, six);
    assert_eq!(node.take_claim_verdict(six), None, "node 3 refused; node 2 may still accept");
    node.peer_applied(two, six);
    assert_eq!(node.take_claim_verdict(six), Some(true), "a refusal from a minority does not matter");
    let (_, seven) = add(b"seven");
    node.claim_refused(seven, two);
    node.claim_refused(seven, three);
    assert_eq!(node.take_claim_verdict(seven), Some(false), "both peers refused it");
    assert_eq!(held(b"seven"), None, "a lost claim leaves nothing");
    // Claim eight waits; both peers go: the majority is lost, and so is the claim.
    let (_, eight) = add(b"eight");
    assert_eq!(node.take_claim_verdict(eight), None);
    node.set_acking(two, false);
    assert_eq!(node.take_claim_verdict(eight), None, "node 3 still judges");
    node.set_acking(three, false);
    assert!(node.refuses_claims());
    assert_eq!(node.take_claim_verdict(eight), Some(false));
    assert_eq!((held(b"eight"), node.votes_held()), (None, 0));

    let alone = replicator_with(1, &clock, 8, "", peers, ClaimRule::Local);
    assert!(!alone.refuses_claims() && alone.counts_apart());
    assert_eq!(alone.take_claim_verdict(1), Some(true), "no judge linked: decided here");
}
