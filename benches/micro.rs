//! Micro-benchmarks of the layers under the server: the text parser, get and set
//! through the node every front end writes through (alone and contended by two
//! threads), and the store's expiry sweep.
//!
//! `cargo bench --bench micro`; under `cargo test` each runs once as a check.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use stickless::node::Node;
use stickless::protocol::{self, Limits};
use stickless::store::{Clock, ManualClock, Store, StoreConfig, StoreMode, StoreRequest};

/// Row (a) of BENCHMARKS.md: 100,000 keys of memtier's shape, 100-byte values.
const KEYS: usize = 100_000;
const VALUE: [u8; 100] = [b'x'; 100];

const LIMITS: Limits = Limits { item_size_max: 1024 * 1024, cas_enabled: true };

fn key(n: usize) -> Vec<u8> {
    format!("memtier-{n}").into_bytes()
}

/// A fixed, cheap sequence of key indexes (a multiplicative hash of a counter), so
/// that every run touches the same keys without a random generator in the loop.
fn scattered(i: usize) -> usize {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7) % KEYS
}

fn set(node: &Node, key: &[u8], exptime: i32) {
    let req = StoreRequest { exptime, ..StoreRequest::new(StoreMode::Set, key, &VALUE) };
    black_box(node.store_item(&req).outcome);
}

fn get(node: &Node, key: &[u8]) {
    black_box(
        node.get(key, None, |item| {
            black_box(item.value());
        })
        .outcome,
    );
}

/// A node over a store of `items` keys; the store too, for the sweep.
fn loaded(clock: Clock, exptime: i32, items: usize, shards: usize) -> (Arc<Store>, Node, Vec<Vec<u8>>) {
    let store = Arc::new(Store::new(StoreConfig { memory_limit: 1 << 30, shards, ..StoreConfig::default() }, clock));
    let node = Node::new(Arc::clone(&store));
    let keys: Vec<Vec<u8>> = (0..items).map(key).collect();
    for k in &keys {
        set(&node, k, exptime);
    }
    (store, node, keys)
}

fn loaded_node(clock: Clock, exptime: i32) -> (Node, Vec<Vec<u8>>) {
    let (_, node, keys) = loaded(clock, exptime, KEYS, StoreConfig::default().shards);
    (node, keys)
}

fn parsing(c: &mut Criterion) {
    // memtier's 1:10 mix: one set, then ten gets, repeated.
    let mut buf = Vec::new();
    let mut requests = 0u64;
    for n in 0..1_000 {
        if n % 11 == 0 {
            buf.extend_from_slice(format!("set memtier-{n} 0 0 100\r\n").as_bytes());
            buf.extend_from_slice(&VALUE);
            buf.extend_from_slice(b"\r\n");
        } else {
            buf.extend_from_slice(format!("get memtier-{n}\r\n").as_bytes());
        }
        requests += 1;
    }
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(requests));
    group.bench_function("pipelined 1:10 set:get", |b| {
        b.iter(|| {
            let mut at = 0;
            while at < buf.len() {
                let parsed = protocol::parse(&buf[at..], &LIMITS).expect("complete requests");
                at += parsed.consumed;
                black_box(parsed.cmd);
            }
        })
    });
    group.finish();
}

fn single_thread(c: &mut Criterion) {
    let (store, keys) = loaded_node(Clock::System, 0);
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("get hit, uniform keys", |b| {
        b.iter(|| {
            i += 1;
            get(&store, &keys[scattered(i)]);
        })
    });
    group.bench_function("get miss", |b| b.iter(|| get(&store, b"memtier-absent")));
    group.bench_function("set, uniform keys", |b| {
        b.iter(|| {
            i += 1;
            set(&store, &keys[scattered(i)], 0);
        })
    });
    group.finish();
}

/// Two threads run `op` `iters` times each; the time is the slower thread's.
fn two_threads(iters: u64, op: impl Fn(usize, usize) + Sync) -> Duration {
    let barrier = Barrier::new(2);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|thread| {
                let (barrier, op) = (&barrier, &op);
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        op(thread, i);
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("bench thread")).max().unwrap_or_default()
    })
}

fn contended(c: &mut Criterion) {
    let (store, keys) = loaded_node(Clock::System, 0);
    let hot = &keys[0];
    let mut group = c.benchmark_group("store, 2 threads");
    // Each iteration is one operation on each thread.
    group.throughput(Throughput::Elements(2));
    group.bench_function("get, one hot key", |b| b.iter_custom(|n| two_threads(n, |_, _| get(&store, hot))));
    group.bench_function("get, uniform keys", |b| {
        b.iter_custom(|n| two_threads(n, |t, i| get(&store, &keys[scattered(i * 2 + t)])))
    });
    group.bench_function("set, one hot key", |b| b.iter_custom(|n| two_threads(n, |_, _| set(&store, hot, 0))));
    group.bench_function("set, uniform keys", |b| {
        b.iter_custom(|n| two_threads(n, |t, i| set(&store, &keys[scattered(i * 2 + t)], 0)))
    });
    group.bench_function("1:10 set:get, uniform keys", |b| {
        b.iter_custom(|n| {
            two_threads(n, |t, i| {
                let k = &keys[scattered(i * 2 + t)];
                if i % 11 == 0 { set(&store, k, 0) } else { get(&store, k) }
            })
        })
    });
    group.finish();
}

/// memcached's crawler and our sweeper walk the table in slices; this is one slice of
/// the sweeper's default size (1,024 buckets, `Config::sweep_buckets`).
fn sweep(c: &mut Criterion) {
    const SLICE: usize = 1024;
    let mut group = c.benchmark_group("sweep");
    group.throughput(Throughput::Elements(SLICE as u64));
    let (live, _, _) = loaded(Clock::System, 0, KEYS, StoreConfig::default().shards);
    group.bench_function("1024 buckets, nothing expired", |b| b.iter(|| black_box(live.sweep_step(SLICE))));
    group.bench_function("1024 buckets, everything expired", |b| {
        b.iter_batched(
            || {
                // One shard of 1,024 buckets, as full as hashbrown lets it be (7/8).
                let clock = ManualClock::new(1_700_000_000_000);
                let (store, _, _) = loaded(Clock::Manual(clock.clone()), 60, SLICE * 7 / 8, 1);
                clock.advance_secs(61);
                store
            },
            |store| black_box(store.sweep_step(SLICE)),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, parsing, single_thread, contended, sweep);
criterion_main!(benches);
