//! Store tests, driven by a manual clock.

use super::*;

const START_MS: u64 = 1_800_000_000_000;

fn store_with(config: StoreConfig) -> (Store, ManualClock) {
    let clock = ManualClock::new(START_MS);
    (Store::new(config, Clock::Manual(clock.clone())), clock)
}

fn store() -> (Store, ManualClock) {
    store_with(StoreConfig::default())
}

fn req<'a>(mode: StoreMode, key: &'a [u8], data: &'a [u8], exptime: i32) -> StoreRequest<'a> {
    StoreRequest { flags: 3, exptime, ..StoreRequest::new(mode, key, data) }
}

fn set(store: &Store, key: &[u8], data: &[u8], exptime: i32) -> u64 {
    match store.store(&req(StoreMode::Set, key, data, exptime)) {
        StoreOutcome::Stored { cas, .. } => cas,
        other => panic!("set failed: {other:?}"),
    }
}

fn read(store: &Store, key: &[u8]) -> Option<Vec<u8>> {
    let mut out = None;
    store.get(key, None, |item| out = Some(item.value().to_vec()));
    out
}

#[test]
fn storage_modes_follow_memcached() {
    let (s, _) = store();
    assert_eq!(s.store(&req(StoreMode::Replace, b"k", b"x", 0)), StoreOutcome::NotStored);
    assert_eq!(s.store(&req(StoreMode::Append, b"k", b"x", 0)), StoreOutcome::NotStored);
    assert!(matches!(s.store(&req(StoreMode::Add, b"k", b"mid", 0)), StoreOutcome::Stored { .. }));
    assert_eq!(s.store(&req(StoreMode::Add, b"k", b"other", 0)), StoreOutcome::NotStored);
    assert!(matches!(
        s.store(&req(StoreMode::Append, b"k", b">", 0)),
        StoreOutcome::Stored { value_len: 4, expires_at: 0, .. }
    ));
    assert!(matches!(s.store(&req(StoreMode::Prepend, b"k", b"<", 0)), StoreOutcome::Stored { value_len: 5, .. }));
    assert_eq!(read(&s, b"k").unwrap(), b"<mid>");
    let too_long = |_flags: u32, len: usize| len <= 5;
    let append = StoreRequest { fits: Some(&too_long), ..req(StoreMode::Append, b"k", b"!", 0) };
    assert_eq!(s.store(&append), StoreOutcome::NotStored);
    assert!(matches!(s.store(&req(StoreMode::Replace, b"k", b"new", 0)), StoreOutcome::Stored { .. }));
    assert_eq!(read(&s, b"k").unwrap(), b"new");
}

#[test]
fn cas_compares_uniques() {
    let (s, _) = store();
    let cas_req = |unique| StoreRequest { cas_unique: unique, ..req(StoreMode::Cas, b"k", b"v2", 0) };
    assert_eq!(s.store(&cas_req(1)), StoreOutcome::NotFound);
    let unique = set(&s, b"k", b"v1", 0);
    assert_eq!(s.store(&cas_req(unique + 1000)), StoreOutcome::Exists);
    let StoreOutcome::Stored { cas, .. } = s.store(&cas_req(unique)) else { panic!("cas with current unique") };
    assert!(cas > unique);
    assert_eq!(s.store(&cas_req(unique)), StoreOutcome::Exists, "a stale unique fails");
    let mut seen = 0;
    s.get(b"k", None, |it| seen = it.cas());
    assert_eq!(seen, cas);
}

#[test]
fn items_expire_by_the_clock() {
    let (s, clock) = store();
    set(&s, b"ttl", b"v", 10);
    set(&s, b"never", b"v", 0);
    set(&s, b"gone", b"v", -1);
    assert_eq!(read(&s, b"gone"), None);
    clock.advance_secs(9);
    assert!(read(&s, b"ttl").is_some());
    clock.advance_secs(1);
    assert_eq!(read(&s, b"ttl"), None);
    assert!(read(&s, b"never").is_some());
    let st = s.stats();
    assert_eq!((st.get_expired, st.curr_items, st.reclaimed), (2, 1, 2));
}

#[test]
fn touch_and_gat_move_the_deadline() {
    let (s, clock) = store();
    set(&s, b"k", b"v", 5);
    assert_eq!(s.touch(b"k", 100), Found::Hit);
    clock.advance_secs(50);
    assert!(read(&s, b"k").is_some());
    assert_eq!(s.get(b"k", Some(-1), |_| {}), Found::Hit, "gat returns the item, then expires it");
    assert_eq!(read(&s, b"k"), None);
    assert_eq!(s.touch(b"missing", 1), Found::Miss);
}

#[test]
fn arithmetic_wraps_floors_and_pads() {
    let (s, _) = store();
    set(&s, b"n", b"18446744073709551615", 0);
    assert_eq!(s.arithmetic(b"n", true, 2), DeltaOutcome::Value(1));
    assert_eq!(read(&s, b"n").unwrap(), b"1                   ");
    set(&s, b"n", b"5", 0);
    assert_eq!(s.arithmetic(b"n", false, 10), DeltaOutcome::Value(0));
    assert_eq!(s.arithmetic(b"n", true, 99), DeltaOutcome::Value(99));
    assert_eq!(read(&s, b"n").unwrap(), b"99", "a longer result makes a new item");
    set(&s, b"t", b"abc", 0);
    assert_eq!(s.arithmetic(b"t", true, 1), DeltaOutcome::NonNumeric);
    set(&s, b"e", b"", 0);
    assert_eq!(s.arithmetic(b"e", true, 1), DeltaOutcome::NonNumeric);
    assert_eq!(s.arithmetic(b"none", true, 1), DeltaOutcome::NotFound);
}

#[test]
fn flush_now_and_later() {
    let (s, clock) = store();
    set(&s, b"a", b"1", 0);
    s.flush_all(0);
    assert_eq!(read(&s, b"a"), None);
    set(&s, b"b", b"2", 0);
    assert!(read(&s, b"b").is_some(), "items stored after a flush live");
    s.flush_all(10);
    clock.advance_secs(5);
    set(&s, b"c", b"3", 0);
    assert!(read(&s, b"b").is_some() && read(&s, b"c").is_some());
    clock.advance_secs(5);
    assert_eq!((read(&s, b"b"), read(&s, b"c")), (None, None));
    set(&s, b"d", b"4", 0);
    assert!(read(&s, b"d").is_some(), "items stored after the delayed flush live");
    assert_eq!(s.stats().get_flushed, 3);
}

#[test]
fn sweep_reclaims_expired_items_without_access() {
    let (s, clock) = store_with(StoreConfig { shards: 4, ..Default::default() });
    for i in 0..1000 {
        set(&s, format!("k{i}").as_bytes(), b"value", if i % 2 == 0 { 10 } else { 0 });
    }
    clock.advance_secs(11);
    let mut removed = 0;
    for _ in 0..64 {
        removed += s.sweep_step(4096);
    }
    assert_eq!(removed, 500);
    let st = s.stats();
    assert_eq!((st.curr_items, st.expired_unfetched), (500, 500));
}

#[test]
fn memory_limit_evicts_least_recently_read() {
    let limit = 256 * 1024;
    let (s, _) = store_with(StoreConfig { memory_limit: limit, shards: 1, ..Default::default() });
    set(&s, b"hot", &[b'h'; 100], 0);
    for i in 0..10_000 {
        set(&s, format!("key{i}").as_bytes(), &[b'x'; 100], 0);
        // Reading "hot" now and then keeps its CLOCK bit set.
        read(&s, b"hot").expect("a hot key survives eviction");
        let st = s.stats();
        assert!(st.memory_used <= limit as u64, "{} > {limit}", st.memory_used);
    }
    let st = s.stats();
    assert!(st.evictions > 8_000, "evictions {}", st.evictions);
    assert_eq!(st.curr_items + st.evictions, 10_001);
}

#[test]
fn without_eviction_a_full_store_refuses() {
    let (s, _) = store_with(StoreConfig { memory_limit: 64 * 1024, evict: false, shards: 2, ..Default::default() });
    let mut stored = 0;
    loop {
        match s.store(&req(StoreMode::Set, format!("k{stored}").as_bytes(), &[0; 100], 0)) {
            StoreOutcome::Stored { .. } => stored += 1,
            StoreOutcome::NoMemory => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(stored > 100);
    assert_eq!(s.stats().evictions, 0);
    assert!(read(&s, b"k0").is_some(), "nothing was evicted");
}

#[test]
fn protected_items_are_never_evicted_and_their_room_is_refused_instead() {
    let (s, _) = store_with(StoreConfig {
        memory_limit: 256 * 1024,
        shards: 4,
        protected_prefixes: vec![b"sess:".as_slice().into()],
        ..Default::default()
    });
    // Sessions and cache entries share the store; cache entries make room.
    let mut sessions = 0;
    let mut refused = None;
    for i in 0..10_000 {
        // Once only sessions are left, a cache entry is refused too.
        s.store(&req(StoreMode::Set, format!("cache:{i}").as_bytes(), &[b'c'; 100], 0));
        match s.store(&req(StoreMode::Set, format!("sess:{i}").as_bytes(), &[b's'; 100], 0)) {
            StoreOutcome::Stored { .. } => sessions += 1,
            StoreOutcome::NoMemory => {
                refused = Some(i);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let refused = refused.expect("the store filled up with sessions");
    assert_eq!(sessions, refused);
    // Every session stored is still there: the cache entries went instead.
    for i in 0..sessions {
        assert!(read(&s, format!("sess:{i}").as_bytes()).is_some(), "sess:{i} was evicted");
    }
    let stats = s.stats();
    assert!(stats.evictions > 0);
    assert!(stats.evictions_skipped_protected > 0);
    // With only sessions left, an unprotected item is refused too rather than
    // evicting one.
    assert_eq!(s.store(&req(StoreMode::Set, b"cache:late", &[b'c'; 100], 0)), StoreOutcome::NoMemory);
    // Deleting a session makes room for the next.
    assert!(s.delete(b"sess:0").is_some());
    assert!(matches!(
        s.store(&req(StoreMode::Set, format!("sess:{refused}").as_bytes(), &[b's'; 100], 0)),
        StoreOutcome::Stored { .. }
    ));
}

#[test]
fn delete_and_discard() {
    let (s, _) = store();
    set(&s, b"k", b"v", 0);
    assert_eq!(s.delete(b"k"), Some(1));
    assert_eq!(s.delete(b"k"), None);
    set(&s, b"k", b"v", 0);
    s.discard(b"k");
    assert_eq!(read(&s, b"k"), None);
    let st = s.stats();
    assert_eq!((st.curr_items, st.item_bytes), (0, 0));
}

#[test]
fn flush_quirks_follow_memcached() {
    let (s, clock) = store();
    set(&s, b"a", b"1", 0);
    s.flush_all(1);
    set(&s, b"b", b"2", 0);
    assert_eq!((read(&s, b"a"), read(&s, b"b")), (None, None), "flush_all 1 covers the current second");
    clock.advance_secs(1);
    set(&s, b"c", b"3", 0);
    assert!(read(&s, b"c").is_some());
    s.flush_all(100);
    s.flush_all(1_000_000_000);
    clock.advance_secs(200);
    assert!(read(&s, b"c").is_some(), "an absolute time before the start cancels the pending flush");
}

#[test]
fn flush_covers_items_with_a_client_cas_by_their_time() {
    let (s, clock) = store();
    let with_cas = |key: &'static [u8], cas| StoreRequest { new_cas: Some(cas), ..req(StoreMode::Set, key, b"v", 0) };
    assert!(matches!(s.store(&with_cas(b"old", u64::MAX)), StoreOutcome::Stored { cas: u64::MAX, .. }));
    clock.advance_secs(2);
    s.flush_all(0);
    assert_eq!(read(&s, b"old"), None, "written before the flush's second");
    // A client's CAS below the flush mark does not hide an item written after it.
    assert!(matches!(s.store(&with_cas(b"new", 1)), StoreOutcome::Stored { cas: 1, .. }));
    assert_eq!(read(&s, b"new").unwrap(), b"v");
    clock.advance_secs(1);
    assert_eq!(read(&s, b"new").unwrap(), b"v");
    // The version clock is untouched by clients' values.
    assert!(set(&s, b"k", b"v", 0) < 1 << 63);
}

#[test]
fn meta_delete_invalidates_and_empties() {
    let (s, _) = store();
    let cas = set(&s, b"k", b"value", 0);
    let wrong = DeleteRequest { key: b"k", compare_cas: Some(cas + 1), ..Default::default() };
    assert_eq!(s.delete_for_meta(&wrong), DeleteOutcome::Exists);
    let invalidate = DeleteRequest { key: b"k", invalidate: true, ttl: Some(30), ..Default::default() };
    assert_eq!(s.delete_for_meta(&invalidate), DeleteOutcome::Kept);
    let mut seen = None;
    s.get_for_meta(b"k", None, true, |item, now, _| {
        seen = Some((item.has_bit(BIT_STALE), item.cas() > cas, item.expires_at() - now, item.value().to_vec()))
    });
    assert_eq!(seen, Some((true, true, 30, b"value".to_vec())));
    let empty = DeleteRequest { key: b"k", empty_value: Some((7, 0)), ..Default::default() };
    assert_eq!(s.delete_for_meta(&empty), DeleteOutcome::Kept);
    s.get(b"k", None, |item| seen = Some((item.has_bit(BIT_STALE), false, item.flags(), item.value().to_vec())));
    assert_eq!(seen, Some((false, false, 7, Vec::new())));
    assert_eq!(
        s.delete_for_meta(&DeleteRequest { key: b"k", ..Default::default() }),
        DeleteOutcome::Deleted { value_len: 0 }
    );
    assert_eq!(s.delete_for_meta(&DeleteRequest { key: b"k", ..Default::default() }), DeleteOutcome::NotFound);
}

#[test]
fn meta_get_vivifies_once() {
    let (s, _) = store();
    let vivify = Some(Vivify { exptime: 30, cas: None, binary_key: false });
    assert_eq!(s.get_for_meta(b"k", vivify, true, |_, _, created| assert!(created)), MetaFound::Created);
    assert_eq!(
        s.get_for_meta(b"k", vivify, true, |item, _, created| assert!(!created && item.value().is_empty())),
        MetaFound::Hit
    );
    assert_eq!(s.get_for_meta(b"x", None, true, |_, _, _| unreachable!()), MetaFound::Miss);
}

#[test]
fn arithmetic_with_compare_and_vivify() {
    let (s, _) = store();
    let created = DeltaRequest { vivify: Some(10), ..DeltaRequest::new(b"n", true, 1) };
    assert_eq!(s.arithmetic_with(&created, |_, _, c| assert!(c)), DeltaOutcome::Created(10));
    assert_eq!(s.arithmetic_with(&created, |_, _, c| assert!(!c)), DeltaOutcome::Value(11));
    let stale = DeltaRequest { compare_cas: 1, ..DeltaRequest::new(b"n", true, 1) };
    assert_eq!(s.arithmetic_with(&stale, |_, _, _| {}), DeltaOutcome::Exists);
}
