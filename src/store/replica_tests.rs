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
            };
            sink.lock().unwrap().push_back(outgoing);
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
    assert_eq!(a.store.tombstones(), 1, "the delete's version is remembered");
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
    source.store.observe_changes(Box::new(|_| {}), 3600);
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
        cursor = source.store.sync_slice(cursor, 64, |change| {
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
    assert_eq!(target.store.tombstones(), 100);
    for i in 100..2_000 {
        assert_eq!(visible(&target.store, &key(i)).map(|v| v.0), Some(b"v".to_vec()), "key {i}");
    }
    assert_eq!(visible(&target.store, &key(5)), None);
}

#[derive(Clone, Debug)]
enum Op {
    Set { on_b: bool, key: usize, value: u8, ttl: u8 },
    Append { on_b: bool, key: usize, value: u8 },
    Incr { on_b: bool, key: usize },
    Delete { on_b: bool, key: usize },
    Touch { on_b: bool, key: usize, ttl: u8 },
    Flush { on_b: bool },
    Deliver { to_b: bool, count: u8 },
    Tick { ms: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS;
    prop_oneof![
        6 => (any::<bool>(), key.clone(), any::<u8>(), 0..3u8)
            .prop_map(|(on_b, key, value, ttl)| Op::Set { on_b, key, value, ttl }),
        2 => (any::<bool>(), key.clone(), any::<u8>()).prop_map(|(on_b, key, value)| Op::Append { on_b, key, value }),
        2 => (any::<bool>(), key.clone()).prop_map(|(on_b, key)| Op::Incr { on_b, key }),
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
            let KeyState::Value { value, flags, expires_at } = change.state else { panic!("a value") };
            owned = Some((change.version, value.to_vec(), flags, expires_at));
        });
        owned.expect("the lock")
    };
    let (a_claim, b_claim) = (claim_of(&a.store), claim_of(&b.store));
    let apply = |store: &Store, (version, value, flags, expires_at): &(u64, Vec<u8>, u32, u32)| {
        let state = KeyState::Value { value, flags: *flags, expires_at: *expires_at };
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
