//! Two stores replicating through in-memory queues, on one manual clock: every
//! interleaving of writes, deliveries and flushes ends with identical stores.

use super::*;
use proptest::prelude::*;
use std::sync::{Arc, Mutex as StdMutex};

const START_MS: u64 = 1_800_000_000_000;
const KEYS: usize = 6;

/// A change waiting to cross to the peer.
#[derive(Clone, Debug)]
enum Outgoing {
    Key(Vec<u8>),
    Flush { version: u64, at: u32 },
}

struct Node {
    store: Store,
    outbox: Arc<StdMutex<std::collections::VecDeque<Outgoing>>>,
}

fn node(id: u16, clock: &ManualClock) -> Node {
    let config = StoreConfig { node_id: id, ..StoreConfig::default() };
    let store = Store::new(config, Clock::Manual(clock.clone()));
    let outbox: Arc<StdMutex<std::collections::VecDeque<Outgoing>>> = Arc::default();
    let sink = Arc::clone(&outbox);
    store.observe_changes(
        Box::new(move |change| {
            let outgoing = match change {
                Change::Key(key) | Change::Claim { key, .. } => Outgoing::Key(key.to_vec()),
                Change::Flush { version, at } => Outgoing::Flush { version, at },
                Change::Propose(_) => unreachable!("these stores never propose"),
            };
            let mut outbox = sink.lock().unwrap();
            outbox.push_back(outgoing);
            outbox.len() as u64
        }),
        3600,
    );
    Node { store, outbox }
}

/// Sends the oldest queued change of `from` to `to`, reading its current state as a
/// sender does. False when nothing was queued.
fn deliver_one(from: &Node, to: &Node) -> bool {
    let Some(outgoing) = from.outbox.lock().unwrap().pop_front() else {
        return false;
    };
    match outgoing {
        Outgoing::Key(key) => {
            from.store.key_state(&key, |change| to.store.apply_remote(&change));
        }
        Outgoing::Flush { version, at } => to.store.apply_remote_flush(version, at),
    }
    true
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
fn a_write_and_a_delete_cross_over() {
    let clock = ManualClock::new(START_MS);
    let (a, b) = (node(1, &clock), node(2, &clock));
    let set = StoreRequest { flags: 4, exptime: 100, ..StoreRequest::new(StoreMode::Set, b"k", b"v1") };
    let StoreOutcome::Stored { cas, .. } = a.store.store(&set) else { panic!("stored") };
    assert!(deliver_one(&a, &b));
    assert_eq!(visible(&b.store, b"k"), Some((b"v1".to_vec(), 4, cas)), "same value, flags and unique");
    let mut ttl = 0;
    b.store.get_for_meta(b"k", None, false, |item, now, _| ttl = item.expires_at() - now);
    assert_eq!(ttl, 100, "the expiry travels as an absolute time");
    assert_eq!(b.store.delete(b"k"), Some(2));
    assert!(deliver_one(&b, &a));
    assert_eq!(visible(&a.store, b"k"), None);
    assert_eq!(b.store.tombstones(), 1, "the delete's version is remembered where it was made");
    assert_eq!(a.store.tombstones(), 0, "a delete applied from the peer leaves none");
}

#[test]
fn an_old_write_arriving_late_neither_wins_nor_resurrects() {
    let clock = ManualClock::new(START_MS);
    let (a, b) = (node(1, &clock), node(2, &clock));
    a.store.store(&StoreRequest::new(StoreMode::Set, b"k", b"old"));
    clock.advance_ms(5);
    b.store.store(&StoreRequest::new(StoreMode::Set, b"k", b"new"));
    b.store.delete(b"k");
    assert!(deliver_one(&a, &b), "a's older write reaches b after b deleted");
    assert_eq!(visible(&b.store, b"k"), None);
    deliver_one(&b, &a);
    deliver_one(&b, &a);
    assert_eq!(visible(&a.store, b"k"), None);
}

#[test]
fn a_stale_unique_fails_on_both_nodes() {
    let clock = ManualClock::new(START_MS);
    let (a, b) = (node(1, &clock), node(2, &clock));
    let StoreOutcome::Stored { cas: first, .. } = a.store.store(&StoreRequest::new(StoreMode::Set, b"k", b"1")) else {
        panic!("stored")
    };
    deliver_one(&a, &b);
    let cas = |unique| StoreRequest { cas_unique: unique, ..StoreRequest::new(StoreMode::Cas, b"k", b"2") };
    assert!(matches!(b.store.store(&cas(first)), StoreOutcome::Stored { .. }), "the unique is valid on b");
    deliver_one(&b, &a);
    assert_eq!(a.store.store(&cas(first)), StoreOutcome::Exists, "and stale on a once b's write arrived");
    assert_eq!(b.store.store(&cas(first)), StoreOutcome::Exists);
}

#[test]
fn evictions_stay_local() {
    let clock = ManualClock::new(START_MS);
    let a = node(1, &clock);
    let small = StoreConfig { node_id: 2, memory_limit: 1 << 20, shards: 1, ..StoreConfig::default() };
    let b = Node { store: Store::new(small, Clock::Manual(clock.clone())), outbox: Arc::default() };
    let outbox = Arc::clone(&b.outbox);
    b.store.observe_changes(
        Box::new(move |change| {
            if let Change::Key(key) | Change::Claim { key, .. } = change {
                outbox.lock().unwrap().push_back(Outgoing::Key(key.to_vec()));
            }
            0
        }),
        3600,
    );
    let value = vec![b'v'; 10_000];
    for i in 0..300 {
        a.store.store(&StoreRequest::new(StoreMode::Set, &key(i), &value));
    }
    while deliver_one(&a, &b) {}
    assert!(b.store.stats().evictions > 0, "the small peer evicted");
    while deliver_one(&b, &a) {}
    assert!((0..300).all(|i| visible(&a.store, &key(i)).is_some()), "the big peer kept everything");
}

#[test]
fn a_full_sync_in_slices_sends_every_item_and_tombstone_despite_growth() {
    let clock = ManualClock::new(START_MS);
    let config = StoreConfig { node_id: 1, shards: 4, ..StoreConfig::default() };
    let (source, target) = (node(1, &clock), node(2, &clock));
    let source = Node { store: Store::new(config, Clock::Manual(clock.clone())), ..source };
    source.store.observe_changes(Box::new(|_| 0), 3600);
    for i in 0..2_000 {
        source.store.store(&StoreRequest::new(StoreMode::Set, &key(i), b"v"));
    }
    for i in 0..100 {
        source.store.delete(&key(i));
    }
    let mut cursor = SyncCursor::default();
    let mut slices = 0;
    let mut late = 2_000;
    while !cursor.done {
        cursor = source.store.sync_slice(cursor, 1, 64, |change| {
            target.store.apply_remote(&change);
        });
        slices += 1;
        // Writes between slices make every table grow (more than doubling it) under
        // the cursor.
        for _ in 0..100 {
            source.store.store(&StoreRequest::new(StoreMode::Set, &key(late), b"late"));
            late += 1;
        }
    }
    assert!(slices > 4 * 2, "the table was walked a slice at a time ({slices} slices)");
    for i in 100..2_000 {
        assert_eq!(visible(&target.store, &key(i)).map(|v| v.0), Some(b"v".to_vec()), "key {i}");
    }
    // The deletes crossed as tombstones: an older write of a deleted key that
    // reaches the source late stays dead.
    let older = KeyChange {
        key: &key(5),
        version: 1 << 30,
        state: KeyState::Value { value: b"v", flags: 0, expires_at: 0, counter: None },
    };
    assert_eq!(source.store.apply_remote(&older), Applied::Older);
    assert_eq!(source.store.tombstones(), 100);
    // Once the peer has applied the sync (change 1 and everything before it), the
    // source forgets them.
    source.store.peer_applied(1);
    sweep_all(&source.store);
    assert_eq!(source.store.tombstones(), 0);
    assert_eq!(source.store.tombstone_bytes(), 0);
}

fn sweep_all(store: &Store) {
    for _ in 0..store.shard_count() {
        store.sweep_step(1024);
    }
}

/// What a delete that missed here leaves for the peer.
fn sent_state(store: &Store, key: &[u8], seq: u64) -> Option<(u64, bool)> {
    store.key_state_sent(key, seq, |change| (change.version, change.state == KeyState::Deleted))
}

#[test]
fn a_delete_of_a_key_this_node_never_saw_still_deletes_it_on_the_peer() {
    let clock = ManualClock::new(START_MS);
    let (a, b) = (node(1, &clock), node(2, &clock));
    // Cut off: a holds the session, b never heard of it.
    a.store.store(&StoreRequest::new(StoreMode::Set, b"sess", b"alive"));
    clock.advance_ms(5);
    assert_eq!(b.store.delete(b"sess"), None, "not found, as memcached answers");
    assert_eq!(b.outbox.lock().unwrap().len(), 1, "but recorded as a change");
    // The link heals: both queues cross, in either order.
    assert!(deliver_one(&a, &b));
    assert_eq!(visible(&b.store, b"sess"), None, "the older write loses to the tombstone");
    assert!(deliver_one(&b, &a));
    assert_eq!(visible(&a.store, b"sess"), None, "and the delete reaches the node that held it");
}

#[test]
fn every_delete_path_writes_a_tombstone_on_a_miss() {
    let clock = ManualClock::new(START_MS);
    let b = node(2, &clock);
    let requests = [
        DeleteRequest { key: b"plain", ..Default::default() },
        DeleteRequest { key: b"compare", compare_cas: Some(42), ..Default::default() },
        DeleteRequest { key: b"invalidate", invalidate: true, ttl: Some(30), ..Default::default() },
        DeleteRequest { key: b"empty", empty_value: Some((0, 0)), ..Default::default() },
    ];
    for request in &requests {
        assert_eq!(b.store.delete_for_meta(request), DeleteOutcome::NotFound);
        assert_eq!(sent_state(&b.store, request.key, 1).map(|(_, deleted)| deleted), Some(true), "{request:?}");
    }
    b.store.discard(b"discarded");
    assert_eq!(sent_state(&b.store, b"discarded", 1).map(|(_, deleted)| deleted), Some(true));
    assert_eq!(b.outbox.lock().unwrap().len(), requests.len() + 1);
    assert_eq!(b.store.tombstones(), requests.len() + 1);
    assert!(b.store.stats().memory_used >= b.store.tombstone_bytes() as u64 && b.store.tombstone_bytes() > 0);

    // A store that does not replicate keeps nothing of a miss.
    let alone = Store::new(StoreConfig::default(), Clock::Manual(clock.clone()));
    assert_eq!(alone.delete(b"plain"), None);
    assert_eq!((alone.tombstones(), alone.stats().memory_used), (0, 0));
}

#[test]
fn a_tombstone_is_forgotten_once_the_peer_has_applied_the_change_that_carried_it() {
    let clock = ManualClock::new(START_MS);
    let b = node(2, &clock);
    b.store.delete(b"sent");
    b.store.delete(b"unsent");
    assert!(sent_state(&b.store, b"sent", 7).is_some());
    b.store.peer_applied(6);
    sweep_all(&b.store);
    assert_eq!(b.store.tombstones(), 2, "change 7 is not applied yet");
    b.store.peer_applied(7);
    sweep_all(&b.store);
    assert_eq!(b.store.tombstones(), 1, "change 7 is applied");
    assert_eq!(sent_state(&b.store, b"sent", 8), None);
    assert!(sent_state(&b.store, b"unsent", 8).is_some(), "never sent: kept");

    // A newer delete of the key makes the tombstone unsent again.
    b.store.delete(b"unsent");
    b.store.peer_applied(8);
    sweep_all(&b.store);
    assert_eq!(b.store.tombstones(), 1);
    // And every tombstone goes after --repl-tombstone seconds.
    clock.advance_ms(3_601_000);
    sweep_all(&b.store);
    assert_eq!((b.store.tombstones(), b.store.tombstone_bytes(), b.store.stats().memory_used), (0, 0, 0));
}

/// A node cut off from its peer takes deletes of keys it never held: its memory
/// stays within -m, live items keep at least half of it, and the deletes forgotten
/// to stay there are counted.
#[test]
fn tombstones_count_against_the_limit_and_are_shed_beyond_their_share() {
    let clock = ManualClock::new(START_MS);
    let limit = 4 << 20;
    let config = StoreConfig { node_id: 2, memory_limit: limit, shards: 4, ..StoreConfig::default() };
    let store = Store::new(config, Clock::Manual(clock.clone()));
    store.observe_changes(Box::new(|_| 0), 3600);
    let value = vec![b'v'; 100];
    for i in 0..200_000 {
        store.store(&StoreRequest::new(StoreMode::Set, format!("live:{i}").as_bytes(), &value));
        store.delete(format!("gone:{i}").as_bytes());
        let used = store.stats().memory_used as usize;
        assert!(used <= limit + 64 * 1024, "{used} bytes used at {i}");
    }
    let stats = store.stats();
    assert!(store.tombstone_bytes() <= limit / 2, "{} bytes of tombstones", store.tombstone_bytes());
    assert!(stats.item_bytes as usize >= limit / 3, "{} bytes of items", stats.item_bytes);
    assert!(store.tombstones_shed() > 0 && stats.evictions > 0);
}

#[derive(Clone, Debug)]
enum Op {
    Set {
        on_b: bool,
        key: usize,
        value: u8,
        ttl: u8,
    },
    Append {
        on_b: bool,
        key: usize,
        value: u8,
    },
    Incr {
        on_b: bool,
        key: usize,
    },
    /// An `incr` or `decr` made while the node is not linked with its peer.
    CountApart {
        on_b: bool,
        key: usize,
        incr: bool,
    },
    Delete {
        on_b: bool,
        key: usize,
    },
    Touch {
        on_b: bool,
        key: usize,
        ttl: u8,
    },
    Flush {
        on_b: bool,
    },
    Deliver {
        to_b: bool,
        count: u8,
    },
    Tick {
        ms: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS;
    prop_oneof![
        6 => (any::<bool>(), key.clone(), any::<u8>(), 0..3u8)
            .prop_map(|(on_b, key, value, ttl)| Op::Set { on_b, key, value, ttl }),
        2 => (any::<bool>(), key.clone(), any::<u8>()).prop_map(|(on_b, key, value)| Op::Append { on_b, key, value }),
        2 => (any::<bool>(), key.clone()).prop_map(|(on_b, key)| Op::Incr { on_b, key }),
        2 => (any::<bool>(), key.clone(), any::<bool>()).prop_map(|(on_b, key, incr)| Op::CountApart { on_b, key, incr }),
        3 => (any::<bool>(), key.clone()).prop_map(|(on_b, key)| Op::Delete { on_b, key }),
        2 => (any::<bool>(), key, 0..3u8).prop_map(|(on_b, key, ttl)| Op::Touch { on_b, key, ttl }),
        1 => any::<bool>().prop_map(|on_b| Op::Flush { on_b }),
        5 => (any::<bool>(), 1..4u8).prop_map(|(to_b, count)| Op::Deliver { to_b, count }),
        3 => (0..1500u16).prop_map(|ms| Op::Tick { ms }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_interleaving_converges(ops in proptest::collection::vec(op(), 1..60)) {
        let clock = ManualClock::new(START_MS);
        let (a, b) = (node(1, &clock), node(2, &clock));
        for op in ops {
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
                Op::CountApart { on_b, key: k, incr } => {
                    let name = key(k);
                    pick(on_b).arithmetic_with(&DeltaRequest { apart: true, ..DeltaRequest::new(&name, incr, 3) }, |_, _, _| {});
                }
                Op::Delete { on_b, key: k } => {
                    pick(on_b).delete(&key(k));
                }
                Op::Touch { on_b, key: k, ttl } => {
                    pick(on_b).touch(&key(k), i32::from(ttl));
                }
                Op::Flush { on_b } => pick(on_b).flush_all(0),
                Op::Deliver { to_b, count } => {
                    for _ in 0..count {
                        if to_b { deliver_one(&a, &b); } else { deliver_one(&b, &a); }
                    }
                }
                Op::Tick { ms } => clock.advance_ms(u64::from(ms)),
            }
        }
        // Quiet: everything queued crosses.
        while deliver_one(&a, &b) | deliver_one(&b, &a) {}
        for k in 0..KEYS {
            prop_assert_eq!(visible(&a.store, &key(k)), visible(&b.store, &key(k)), "key {}", k);
        }
    }
}

/// Two `add`s of one key, one on each node before either hears of the other: each
/// node applies the other's claim, and exactly one of them is refused — the same
/// one on both sides, whose node then converges on the winner.
#[test]
fn concurrent_claims_have_exactly_one_winner() {
    let clock = ManualClock::new(START_MS);
    let (a, b) = (node(1, &clock), node(2, &clock));
    let add = |store: &Store, value: &[u8]| {
        let request = StoreRequest { exptime: 30, ..StoreRequest::new(StoreMode::Add, b"lock", value) };
        assert!(matches!(store.store(&request), StoreOutcome::Stored { .. }));
    };
    add(&a.store, b"held by a");
    add(&b.store, b"held by b");
    let claim_of = |store: &Store| {
        let mut owned = None;
        store.key_state(b"lock", |change| {
            let KeyState::Value { value, flags, expires_at, .. } = change.state else { panic!("a value") };
            owned = Some((change.version, value.to_vec(), flags, expires_at));
        });
        owned.expect("the lock")
    };
    let (a_claim, b_claim) = (claim_of(&a.store), claim_of(&b.store));
    let apply = |store: &Store, (version, value, flags, expires_at): &(u64, Vec<u8>, u32, u32)| {
        let state = KeyState::Value { value, flags: *flags, expires_at: *expires_at, counter: None };
        store.apply_remote_claim(&KeyChange { key: b"lock", version: *version, state })
    };
    let at_b = apply(&b.store, &a_claim);
    let at_a = apply(&a.store, &b_claim);
    let (winner, refused) = if a_claim.0 > b_claim.0 { (b"held by a", at_a) } else { (b"held by b", at_b) };
    assert_eq!(refused, Applied::Refused);
    assert_eq!([at_a, at_b].iter().filter(|&&applied| applied == Applied::Refused).count(), 1);
    for store in [&a.store, &b.store] {
        let mut value = None;
        store.get(b"lock", None, |item| value = Some(item.value().to_vec()));
        assert_eq!(value.as_deref(), Some(winner.as_slice()));
    }
    // A claim the receiver already holds (the same version) is not a conflict.
    assert_eq!(apply(&a.store, &claim_of(&a.store)), Applied::Older);
}

/// Two claims made at once on one value, an `incr` on one node and an `append`
/// on the other: each node judges the other's claim, exactly one is refused, and
/// it is the one whose state the merge drops. The `append` made a newer base, so
/// it wins over the `incr` made later on the base it replaced.
#[test]
fn claims_on_different_bases_are_judged_as_they_merge() {
    let clock = ManualClock::new(START_MS);
    let (a, b) = (node(1, &clock), node(2, &clock));
    a.store.store(&StoreRequest::new(StoreMode::Set, b"id", b"48"));
    while deliver_one(&a, &b) {}
    clock.advance_ms(1);
    assert!(matches!(b.store.store(&StoreRequest::new(StoreMode::Append, b"id", b"x")), StoreOutcome::Stored { .. }));
    clock.advance_ms(1);
    assert_eq!(a.store.arithmetic(b"id", true, 1), DeltaOutcome::Value(49));
    let judged_by = |from: &Node, to: &Node| {
        let mut applied = None;
        from.store.key_state(b"id", |change| applied = Some(to.store.apply_remote_claim(&change)));
        applied.expect("a claim")
    };
    let (a_incr_at_b, b_append_at_a) = (judged_by(&a, &b), judged_by(&b, &a));
    assert_eq!((a_incr_at_b, b_append_at_a), (Applied::Refused, Applied::Applied));
    assert_eq!(value_of(&a.store, b"id").as_deref(), Some(&b"48x"[..]));
    assert_eq!(visible(&a.store, b"id"), visible(&b.store, b"id"));
}

/// Counts apart on each node: `incr` and `decr` by `delta`, which the node's own
/// command applies to the value it sees.
fn count_apart(node: &Node, key: &[u8], incr: bool, delta: u64) -> DeltaOutcome {
    let request = DeltaRequest { apart: true, ..DeltaRequest::new(key, incr, delta) };
    node.store.arithmetic_with(&request, |_, _, _| {})
}

fn value_of(store: &Store, key: &[u8]) -> Option<Vec<u8>> {
    visible(store, key).map(|(value, _, _)| value)
}

/// Both nodes count apart on one key, each answering from what it sees; once their
/// changes cross, both hold the sum of every change, whatever the order.
#[test]
fn counts_made_apart_add_up_once_they_meet() {
    let clock = ManualClock::new(START_MS);
    let (a, b) = (node(1, &clock), node(2, &clock));
    a.store.store(&StoreRequest::new(StoreMode::Set, b"hits", b"100"));
    while deliver_one(&a, &b) {}
    for _ in 0..5 {
        clock.advance_ms(1);
        count_apart(&a, b"hits", true, 1);
    }
    assert_eq!(count_apart(&b, b"hits", true, 10), DeltaOutcome::Value(110));
    assert_eq!(count_apart(&b, b"hits", false, 3), DeltaOutcome::Value(107));
    assert_eq!(count_apart(&a, b"hits", true, 1), DeltaOutcome::Value(106));
    while deliver_one(&a, &b) | deliver_one(&b, &a) {}
    assert_eq!(value_of(&a.store, b"hits").as_deref(), Some(&b"113"[..]));
    assert_eq!(visible(&a.store, b"hits"), visible(&b.store, b"hits"));
    // A claim linked nodes judge counts on top, and the parts still add.
    assert_eq!(a.store.arithmetic(b"hits", true, 1), DeltaOutcome::Value(114));
    assert_eq!(count_apart(&b, b"hits", true, 1), DeltaOutcome::Value(114));
    while deliver_one(&a, &b) | deliver_one(&b, &a) {}
    assert_eq!(value_of(&b.store, b"hits").as_deref(), Some(&b"115"[..]));
    assert_eq!(visible(&a.store, b"hits"), visible(&b.store, b"hits"));
}

/// A `set` starts the counter again: it wins over the increments made on the value
/// it replaced, on either node, and increments on top of it count.
#[test]
fn a_set_wins_over_the_counts_made_on_the_value_it_replaced() {
    let clock = ManualClock::new(START_MS);
    let (a, b) = (node(1, &clock), node(2, &clock));
    a.store.store(&StoreRequest::new(StoreMode::Set, b"hits", b"5"));
    while deliver_one(&a, &b) {}
    count_apart(&a, b"hits", true, 1);
    clock.advance_ms(1);
    b.store.store(&StoreRequest::new(StoreMode::Set, b"hits", b"50"));
    clock.advance_ms(1);
    count_apart(&a, b"hits", true, 1);
    count_apart(&b, b"hits", true, 2);
    while deliver_one(&a, &b) | deliver_one(&b, &a) {}
    assert_eq!(value_of(&a.store, b"hits").as_deref(), Some(&b"52"[..]));
    assert_eq!(visible(&a.store, b"hits"), visible(&b.store, b"hits"));
    // And a delete newer than every count wins over all of them.
    clock.advance_ms(1);
    a.store.delete(b"hits");
    while deliver_one(&a, &b) | deliver_one(&b, &a) {}
    assert_eq!((value_of(&a.store, b"hits"), value_of(&b.store, b"hits")), (None, None));
}

/// A claim that loses still brings the parts its node counted apart: the winner
/// keeps its agreed value and adds them.
#[test]
fn a_lost_claim_still_brings_what_its_node_counted_apart() {
    let clock = ManualClock::new(START_MS);
    let (a, b) = (node(1, &clock), node(2, &clock));
    a.store.store(&StoreRequest::new(StoreMode::Set, b"hits", b"0"));
    while deliver_one(&a, &b) {}
    count_apart(&a, b"hits", true, 7);
    a.store.arithmetic(b"hits", true, 1);
    clock.advance_ms(1);
    b.store.arithmetic(b"hits", true, 1);
    let state = |store: &Store| {
        let mut owned = None;
        store.key_state(b"hits", |change| {
            let KeyState::Value { value, counter, .. } = change.state else { panic!("a value") };
            let counter = counter.expect("a counter");
            owned = Some((
                change.version,
                value.to_vec(),
                counter.base_version,
                counter.agreed,
                counter.agreed_version,
                counter.parts.to_vec(),
            ));
        });
        owned.expect("the counter")
    };
    let (version, value, base_version, agreed, agreed_version, parts) = state(&a.store);
    let counter = Counter { base_version, agreed, agreed_version, parts: &parts };
    let change = KeyChange {
        key: b"hits",
        version,
        state: KeyState::Value { value: &value, flags: 0, expires_at: 0, counter: Some(counter) },
    };
    assert_eq!(b.store.apply_remote_claim(&change), Applied::Refused);
    assert_eq!(value_of(&b.store, b"hits").as_deref(), Some(&b"8"[..]), "b's claim and a's part");
}

/// A counter's parts travel with it through a full sync and a warm restart.
#[test]
fn counters_travel_whole_through_a_full_sync() {
    let clock = ManualClock::new(START_MS);
    let (a, b) = (node(1, &clock), node(2, &clock));
    a.store.store(&StoreRequest::new(StoreMode::Set, b"hits", b"1"));
    count_apart(&a, b"hits", true, 2);
    let mut cursor = SyncCursor::default();
    while !cursor.done {
        cursor = a.store.sync_slice(cursor, 0, 16, |change| {
            b.store.apply_remote(&change);
        });
    }
    count_apart(&b, b"hits", true, 4);
    count_apart(&a, b"hits", true, 8);
    while deliver_one(&a, &b) | deliver_one(&b, &a) {}
    assert_eq!(value_of(&a.store, b"hits").as_deref(), Some(&b"15"[..]));
    assert_eq!(visible(&a.store, b"hits"), visible(&b.store, b"hits"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Any interleaving of counts apart and deliveries ends with both nodes at the
    /// starting value plus every change each node's command made.
    #[test]
    fn every_count_made_apart_is_counted_once(ops in proptest::collection::vec((0..4u8, 1..20u64), 1..80)) {
        let clock = ManualClock::new(START_MS);
        let (a, b) = (node(1, &clock), node(2, &clock));
        a.store.store(&StoreRequest::new(StoreMode::Set, b"hits", b"1000"));
        while deliver_one(&a, &b) {}
        let mut expected: i64 = 1000;
        for (kind, delta) in ops {
            let (node, incr) = match kind {
                0 => (&a, true),
                1 => (&b, true),
                2 => (&a, false),
                _ => { deliver_one(&a, &b); deliver_one(&b, &a); clock.advance_ms(delta); continue; }
            };
            let before = value_of(&node.store, b"hits").map(|v| String::from_utf8(v).unwrap().trim().parse::<i64>().unwrap());
            let DeltaOutcome::Value(after) = count_apart(node, b"hits", incr, delta) else { panic!("counted") };
            expected += after as i64 - before.unwrap();
        }
        while deliver_one(&a, &b) | deliver_one(&b, &a) {}
        prop_assert_eq!(visible(&a.store, b"hits"), visible(&b.store, b"hits"));
        // An in-place decrement pads with spaces, as memcached's does.
        let value = value_of(&a.store, b"hits").map(|v| String::from_utf8(v).unwrap().trim_end().to_string());
        prop_assert_eq!(value, Some(expected.to_string()));
    }
}
