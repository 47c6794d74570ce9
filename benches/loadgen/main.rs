//! stickless against memcached, side by side, with memtier_benchmark's workloads.
//!
//! `cargo bench --bench loadgen` runs every row of BENCHMARKS.md: both servers (same
//! `-t` and `-m`) are started on the same core, away from the load generator's, and
//! loaded with the row's key space; then runs alternate between them (ABBA), each
//! warming up before it is measured. Each figure is the median over the runs, and
//! the ratio stickless/memcached is the median of the paired runs' ratios.
//! Server CPU time per operation comes from /proc/PID/stat: with two cores the load
//! generator often saturates first, and CPU per operation shows the server's own cost.
//!
//! Run without `--bench` (as `cargo test --all-targets` does) it makes a short smoke
//! run against both servers and fails on any wrong reply.

mod aspnet;
mod driver;
mod nothing;
mod server;

use driver::{KeyPattern, Outcome, Protocol, SessionLock, Workload};
use server::{CpuTime, Kind, Server, context_switches};
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: cargo bench --bench loadgen -- [ROW...] [OPTIONS]

rows: a b c d e f g memory r m rs lock-php lock-pecl aspnet sync tombstones warm (default: all), or custom
  r: row b with a replication peer attached (async and ack); m: row b with one peer, then two
  (a mesh of three: async and ack); rs: row r with session-shaped
  traffic (4 KiB values, 1:1, pipeline 1); lock-php, lock-pecl: the PHP session handlers' lock
  cycles (lock, read, write, unlock) with and without a peer; aspnet: the ASP.NET State Server port,
  one node and an ack pair; sync: full sync of --items to a new peer;
  tombstones: memory of --items live items and as many deletes the stopped peer has not applied;
  warm: a stop and a start with -e holding --items sessions of 4 KiB

options:
  --runs N              runs per server and row, figures are medians (default 6)
  --test-time SECONDS   measured time of each run (default 5)
  --warmup SECONDS      unmeasured time before it (default 1)
  --server-threads N    -t of both servers (default 1)
  --memory MB           -m of both servers (default 1024)
  --servers LIST        of stickless, memcached, paired-async, paired-ack (a stickless
                        with a peer on the load generator's CPUs), nothing (a server that
                        stores nothing: the ceiling, text protocol over TCP only; default
                        the first two)
  --threads N           load generator threads (default 1)
  --no-pin              do not pin the servers and the load generator to CPUs
  --peer-nice N         start replication peers at nice N (default 0; -10 keeps a peer from
                        waiting behind the load generator on the CPU the two share)
  --items N             items loaded by the memory, sync and tombstones rows (default 1000000)
  --tls                 every server serves TLS (memcached's -Z) with a certificate made for
                        the run, and the load generator speaks TLS (rustls, as memtier_benchmark's
                        --tls speaks OpenSSL)
workload options (for custom, defaults of row a):
  --connections N --pipeline N --ratio SETS:GETS --data-size BYTES
  --key-maximum N --key-pattern R|G --protocol memcache_text|memcache_binary
";

#[derive(Clone)]
struct Settings {
    runs: usize,
    test_time: Duration,
    warmup: Duration,
    server_threads: usize,
    memory_mb: usize,
    servers: Vec<Kind>,
    loadgen_threads: usize,
    pin: bool,
    memory_items: u64,
    /// `--tls`.
    tls: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            runs: 6,
            test_time: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            server_threads: 1,
            memory_mb: 1024,
            servers: vec![Kind::Stickless, Kind::Memcached],
            loadgen_threads: 1,
            pin: true,
            memory_items: 1_000_000,
            tls: false,
        }
    }
}

/// A throughput row of BENCHMARKS.md.
struct Row {
    name: String,
    title: String,
    workload: Workload,
}

/// Row (a): memtier-like defaults for a session cache's traffic.
fn base_workload() -> Workload {
    Workload {
        protocol: Protocol::Text,
        connections: 50,
        pipeline: 1,
        sets: 1,
        gets: 10,
        key_pattern: KeyPattern::Uniform,
        key_maximum: 100_000,
        data_size: 100,
        session_lock: None,
    }
}

fn standard_row(name: &str) -> Option<Row> {
    let mut workload = base_workload();
    let title = match name {
        "a" => "50 connections, pipeline 1, 1:10 set:get, 100-byte values, 100,000 keys",
        "b" => {
            workload.pipeline = 16;
            "as (a) with pipeline 16"
        }
        "c" => {
            workload.data_size = 4096;
            "as (a) with 4 KiB values (session-sized)"
        }
        "d" => {
            workload.sets = 1;
            workload.gets = 1;
            "as (a) with 1:1 set:get"
        }
        "e" => {
            workload.connections = 1;
            "one connection, pipeline 1: latency"
        }
        "f" => {
            workload.protocol = Protocol::Binary;
            "as (a) over the binary protocol"
        }
        "g" => {
            workload.protocol = Protocol::Binary;
            workload.pipeline = 16;
            "as (b) over the binary protocol"
        }
        _ => return None,
    };
    Some(Row { name: name.to_string(), title: title.to_string(), workload })
}

fn describe(w: &Workload) -> String {
    if let Some(style) = w.session_lock {
        return format!(
            "{} session lock cycles, {} connections each locking, reading, writing and unlocking \
             {}-byte sessions of its own out of {}",
            style.name(),
            w.connections,
            w.data_size,
            w.key_maximum
        );
    }
    format!(
        "{}{} connections, pipeline {}, {}:{} set:get, {}-byte values, {} keys, {} keys",
        if w.protocol == Protocol::Binary { "binary protocol, " } else { "" },
        w.connections,
        w.pipeline,
        w.sets,
        w.gets,
        w.data_size,
        w.key_maximum,
        match w.key_pattern {
            KeyPattern::Uniform => "uniform",
            KeyPattern::Gaussian => "gaussian",
        }
    )
}

/// The memtier_benchmark command a user would run for the same workload.
fn memtier_command(w: &Workload, settings: &Settings) -> String {
    if w.session_lock.is_some() {
        return "none (memtier_benchmark sends no session lock cycles)".to_string();
    }
    let pattern = match w.key_pattern {
        KeyPattern::Uniform => "R:R",
        KeyPattern::Gaussian => "G:G",
    };
    format!(
        "memtier_benchmark --protocol={} -s 127.0.0.1 -p 11211 -t 1 -c {} --pipeline={} \
         --ratio={}:{} --data-size={} --key-maximum={} --key-pattern={} --test-time={} --hide-histogram{}",
        w.protocol.memtier_name(),
        w.connections,
        w.pipeline,
        w.sets,
        w.gets,
        w.data_size,
        w.key_maximum,
        pattern,
        settings.test_time.as_secs(),
        if settings.tls { " --tls --cacert=ca.pem --sni=localhost" } else { "" }
    )
}

/// How the CPUs are shared between the servers and the load generator.
struct Placement {
    server: Option<Vec<usize>>,
    loadgen: Option<Vec<usize>>,
}

impl Placement {
    fn choose(pin: bool) -> Placement {
        let cpus = server::allowed_cpus();
        if !pin || cpus.len() < 2 {
            return Placement { server: None, loadgen: None };
        }
        // The server gets the last CPU, the load generator the others.
        let (loadgen, server) = cpus.split_at(cpus.len() - 1);
        Placement { server: Some(server.to_vec()), loadgen: Some(loadgen.to_vec()) }
    }

    fn describe(&self) -> String {
        match (&self.server, &self.loadgen) {
            (Some(server), Some(loadgen)) => {
                format!("servers pinned to CPU {server:?}, load generator to CPU {loadgen:?}")
            }
            _ => "not pinned (fewer than 2 CPUs, or --no-pin)".to_string(),
        }
    }
}

/// One run's figures.
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    /// Server CPU (user + system) per operation, in microseconds.
    cpu_us_per_op: f64,
    /// The system share of it.
    sys_us_per_op: f64,
    /// Load generator CPU per operation, in microseconds.
    loadgen_us_per_op: f64,
    /// The server's context switches (all its threads) per operation.
    switches_per_op: f64,
    /// With a peer: the peer's CPU per operation, in microseconds.
    peer_us_per_op: f64,
    /// With a peer: the share of the load generator's CPUs that it and the peer used.
    loadgen_cpus_busy: f64,
    /// With a peer: replication lag (change recorded to peer's acknowledgement).
    lag_p50_us: f64,
    lag_p99_us: f64,
    /// Session lock rows: cycles completed per second.
    cycles_per_sec: f64,
}

/// One measured run of `workload` on a started, loaded server.
fn measure(kind: Kind, server: &Server, workload: &Workload, settings: &Settings, seed: u64) -> (Figures, Outcome) {
    let threads = settings.loadgen_threads.clamp(1, workload.connections);
    // Connections are set up during the warm-up, which therefore lasts at least this long.
    let warmup = settings.warmup.max(Duration::from_millis(200));
    let measure_from = Instant::now() + warmup;
    let until = measure_from + settings.test_time;
    let (outcomes, server_used, loadgen_used) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let connections = workload.connections / threads + usize::from(thread < workload.connections % threads);
                let addr = server.addr;
                scope.spawn(move || {
                    driver::run(addr, workload, connections, seed + thread as u64, measure_from, until)
                        .unwrap_or_else(|e| panic!("{}: {e}", kind.name()))
                })
            })
            .collect();
        std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
        let server_start = CpuTime::of(server.pid()).expect("server CPU time");
        let peer_pids = server.peer_pids();
        let peer_start: Vec<CpuTime> = peer_pids.iter().map(|&pid| CpuTime::of(pid).expect("peer CPU time")).collect();
        let switches_start = context_switches(server.pid()).expect("server context switches");
        let loadgen_start = CpuTime::of(std::process::id()).expect("own CPU time");
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
        let server_used = CpuTime::of(server.pid()).expect("server CPU time").since(server_start);
        let peer_used = (!peer_pids.is_empty()).then(|| {
            (peer_pids.iter().zip(&peer_start))
                .map(|(&pid, start)| CpuTime::of(pid).expect("peer CPU time").since(*start).total())
                .sum::<Duration>()
        });
        let switches = context_switches(server.pid()).expect("server context switches") - switches_start;
        let loadgen_used = CpuTime::of(std::process::id()).expect("own CPU time").since(loadgen_start);
        let outcomes: Vec<Outcome> = handles.into_iter().map(|h| h.join().expect("load thread")).collect();
        (outcomes, (server_used, switches, peer_used), loadgen_used)
    });
    let (server_used, switches, peer_used) = server_used;
    let outcome = outcomes
        .into_iter()
        .reduce(|mut a, b| {
            a.merge(&b);
            a
        })
        .expect("at least one load thread");
    let ops = outcome.ops().max(1) as f64;
    let ms = |q: f64| outcome.latency.value_at_quantile(q) as f64 / 1e6;
    let figures = Figures {
        ops_per_sec: outcome.ops() as f64 / settings.test_time.as_secs_f64(),
        cycles_per_sec: outcome.cycles as f64 / settings.test_time.as_secs_f64(),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        cpu_us_per_op: server_used.total().as_secs_f64() * 1e6 / ops,
        sys_us_per_op: server_used.system.as_secs_f64() * 1e6 / ops,
        loadgen_us_per_op: loadgen_used.total().as_secs_f64() * 1e6 / ops,
        switches_per_op: switches as f64 / ops,
        peer_us_per_op: peer_used.map_or(f64::NAN, |used| used.as_secs_f64() * 1e6 / ops),
        loadgen_cpus_busy: peer_used.map_or(f64::NAN, |used| {
            // The CPUs this process may use: the load generator's, which the peer shares.
            let cpus = server::allowed_cpus().len().max(1) as f64;
            (used + loadgen_used.total()).as_secs_f64() / settings.test_time.as_secs_f64() / cpus
        }),
        ..Figures::default()
    };
    (figures, outcome)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

fn median_of(runs: &[Figures], pick: impl Fn(&Figures) -> f64) -> f64 {
    median(runs.iter().map(pick).collect())
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Runs a throughput row on every server, alternating servers run by run, and prints
/// its table. Returns each server's runs, in `settings.servers` order.
fn throughput_row(row: &Row, settings: &Settings, placement: &Placement) -> Vec<(Kind, Vec<Figures>, Vec<Outcome>)> {
    let mut results: Vec<(Kind, Vec<Figures>, Vec<Outcome>)> =
        settings.servers.iter().map(|&k| (k, Vec::new(), Vec::new())).collect();
    // Both servers run side by side on the same CPU, loaded the same way, and the runs
    // alternate between them in ABBA order: this machine's speed drifts by tens of
    // percent from minute to minute, and paired, interleaved runs see the same drift.
    let servers: Vec<Server> = results
        .iter()
        .map(|(kind, _, _)| {
            let server = Server::start(*kind, settings.server_threads, settings.memory_mb, placement.server.clone())
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", kind.name()));
            driver::load(server.addr, &row.workload).unwrap_or_else(|e| panic!("loading {}: {e}", kind.name()));
            server
        })
        .collect();
    for run in 0..settings.runs {
        let mut order: Vec<usize> = (0..results.len()).collect();
        if run % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let (kind, figures, outcomes) = &mut results[index];
            let paired = matches!(kind, Kind::Paired { .. });
            if paired {
                servers[index].reset_stats().expect("stats reset");
            }
            let (mut f, o) = measure(*kind, &servers[index], &row.workload, settings, 42 + run as u64);
            if paired {
                let lag = |name| servers[index].stat_text("replication", name).expect(name).parse().unwrap_or(f64::NAN);
                f.lag_p50_us = lag("repl_lag_p50_us");
                f.lag_p99_us = lag("repl_lag_p99_us");
            }
            eprintln!(
                "  ({}) run {} {}: {} ops/s, p99 {:.3} ms, server CPU {:.2} µs/op",
                row.name,
                run + 1,
                kind.name(),
                thousands(f.ops_per_sec),
                f.p99_ms,
                f.cpu_us_per_op
            );
            figures.push(f);
            outcomes.push(o);
        }
    }
    println!("### ({}) {}\n", row.name, row.title);
    println!("Workload: {}.", describe(&row.workload));
    println!("memtier_benchmark equivalent: `{}`\n", memtier_command(&row.workload, settings));
    println!("| server | ops/s | p50 ms | p99 ms | p99.9 ms | server CPU µs/op (sys) | load generator CPU µs/op |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (kind, figures, _) in &results {
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.2} ({:.2}) | {:.2} |",
            kind.name(),
            thousands(median_of(figures, |f| f.ops_per_sec)),
            median_of(figures, |f| f.p50_ms),
            median_of(figures, |f| f.p99_ms),
            median_of(figures, |f| f.p999_ms),
            median_of(figures, |f| f.cpu_us_per_op),
            median_of(figures, |f| f.sys_us_per_op),
            median_of(figures, |f| f.loadgen_us_per_op),
        );
    }
    let figures_of = |wanted: Kind| results.iter().find(|(kind, _, _)| *kind == wanted).map(|(_, f, _)| f);
    for against in [Kind::Memcached, Kind::Nothing] {
        let (Some(ours), Some(theirs)) = (figures_of(Kind::Stickless), figures_of(against)) else {
            continue;
        };
        // The median of the ratios of paired runs, which cancels the drift between pairs.
        let ratio =
            |pick: fn(&Figures) -> f64| median(ours.iter().zip(theirs).map(|(o, t)| pick(o) / pick(t)).collect());
        println!(
            "| **stickless/{}** | **{:.2}×** | {:.2}× | {:.2}× | {:.2}× | {:.2}× | |",
            if against == Kind::Nothing { "ceiling" } else { "memcached" },
            ratio(|f| f.ops_per_sec),
            ratio(|f| f.p50_ms),
            ratio(|f| f.p99_ms),
            ratio(|f| f.p999_ms),
            ratio(|f| f.cpu_us_per_op),
        );
    }
    if let Some((_, alone, _)) = results.iter().find(|(kind, _, _)| *kind == Kind::Stickless) {
        let paired: Vec<_> = results.iter().filter(|(kind, _, _)| matches!(kind, Kind::Paired { .. })).collect();
        if !paired.is_empty() {
            println!();
            println!(
                "| with a peer | ops/s against stickless alone | server CPU µs/op against alone | p99 against alone | \
                 context switches per op (alone: {:.3}) | replication lag p50 µs | p99 µs | peer CPU µs/op | \
                 load generator's CPUs busy (with the peer) |",
                median_of(alone, |f| f.switches_per_op),
            );
            println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        }
        for (kind, figures, _) in paired {
            let ratio =
                |pick: fn(&Figures) -> f64| median(figures.iter().zip(alone).map(|(p, a)| pick(p) / pick(a)).collect());
            println!(
                "| {} | **{:.2}×** | {:.2}× | {:.2}× | {:.3} | {:.0} | {:.0} | {:.2} | {:.0}% |",
                kind.name(),
                ratio(|f| f.ops_per_sec),
                ratio(|f| f.cpu_us_per_op),
                ratio(|f| f.p99_ms),
                median_of(figures, |f| f.switches_per_op),
                median_of(figures, |f| f.lag_p50_us),
                median_of(figures, |f| f.lag_p99_us),
                median_of(figures, |f| f.peer_us_per_op),
                median_of(figures, |f| f.loadgen_cpus_busy) * 100.0,
            );
        }
    }
    if row.workload.session_lock.is_some() {
        println!();
        println!("| server | lock cycles/s | against stickless alone | lock requests that found the lock held |");
        println!("|---|---:|---:|---:|");
        let alone = results.iter().find(|(kind, _, _)| *kind == Kind::Stickless).map(|(_, figures, _)| figures);
        for (kind, figures, outcomes) in &results {
            let against = alone.map_or(f64::NAN, |alone| {
                median(figures.iter().zip(alone).map(|(f, a)| f.cycles_per_sec / a.cycles_per_sec).collect())
            });
            println!(
                "| {} | {} | {:.2}× | {} |",
                kind.name(),
                thousands(median_of(figures, |f| f.cycles_per_sec)),
                against,
                outcomes.iter().map(|o| o.contended).sum::<u64>()
            );
        }
    }
    println!();
    for (kind, figures, _) in &results {
        let runs: Vec<String> = figures.iter().map(|f| thousands(f.ops_per_sec)).collect();
        println!("{} runs (ops/s): {}  ", kind.name(), runs.join(", "));
    }
    println!();
    results
}

/// Row (m): row (b) on stickless alone, with one peer, with two (a mesh of three)
/// in each mode, and on memcached, side by side.
/// Row (r): row (b) on stickless alone, with a peer attached in each mode, and on
/// memcached, side by side. Row (rs) does the same with session-shaped traffic:
/// 4 KiB values, 1:1 set:get, pipeline 1 (what a PHP session handler sends). Rows
/// (lock-php) and (lock-pecl) run the two PHP session handlers' lock cycles, whose
/// `add` and `incr` are claims the peers must settle, on one node, a pair and a
/// mesh of three.
fn replication_row(name: &str, settings: &Settings, placement: &Placement) {
    let session = Workload { data_size: 4096, sets: 1, gets: 1, ..base_workload() };
    let row = match name {
        "rs" => Row { name: name.into(), title: describe(&session), workload: session },
        "lock-php" | "lock-pecl" => {
            let style = if name == "lock-php" { SessionLock::PhpMemcached } else { SessionLock::PeclMemcache };
            let workload = Workload { session_lock: Some(style), ..session };
            Row { name: name.into(), title: describe(&workload), workload }
        }
        _ => standard_row("b").expect("row b"),
    };
    let attached = if name == "m" { "one replication peer, then two (a mesh of three)," } else { "a replication peer" };
    let row = Row { name: name.into(), title: format!("{}, with {attached} attached", row.title), ..row };
    let paired = |ack, peers| Kind::Paired { ack, peers };
    let servers = if name == "m" {
        vec![Kind::Stickless, paired(false, 1), paired(false, 2), paired(true, 2), Kind::Memcached]
    } else if name.starts_with("lock-") {
        // A claim waits for every peer linked: one for a pair, two in a mesh of
        // three (claims by majority there).
        vec![Kind::Stickless, paired(false, 1), paired(true, 1), paired(false, 2), paired(true, 2), Kind::Memcached]
    } else {
        vec![
            Kind::Stickless,
            Kind::Paired { ack: false, peers: 1 },
            Kind::Paired { ack: true, peers: 1 },
            Kind::Memcached,
        ]
    };
    let settings = Settings { servers, ..settings.clone() };
    throughput_row(&row, &settings, placement);
}

/// Row (aspnet): the ASP.NET State Server port of one node and of a pair in ack
/// mode, side by side, runs alternating: requests per second, latency, and the
/// server's CPU per request, for a page's cycle and a new session's.
fn aspnet_row(settings: &Settings, placement: &Placement) {
    use aspnet::Cycle;
    server::ASPNET_PORTS.store(true, std::sync::atomic::Ordering::Relaxed);
    const SESSIONS: u64 = 100_000;
    const BODY: usize = 4096;
    const CONNECTIONS: usize = 50;
    // Every new-session cycle leaves a session behind: room for all the runs' new
    // sessions, so that none is evicted between its creation and its first lock.
    const MEMORY_MB: usize = 4096;
    let memory_mb = settings.memory_mb.max(MEMORY_MB);
    let kinds = [Kind::Stickless, Kind::Paired { ack: true, peers: 1 }];
    let servers: Vec<Server> = kinds
        .iter()
        .map(|&kind| {
            let server = Server::start(kind, settings.server_threads, memory_mb, placement.server.clone())
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", kind.name()));
            aspnet::load(server.aspnet.expect("a state server port"), SESSIONS, BODY).expect("load the sessions");
            server
        })
        .collect();
    println!("### (aspnet) ASP.NET State Server: {CONNECTIONS} connections, {BODY}-byte sessions, -m {memory_mb}\n");
    println!(
        "Each connection plays one web server of a farm, one request at a time, on sessions of its own \
         ({SESSIONS} loaded). No memtier_benchmark equivalent: it speaks only memcached.\n"
    );
    println!(
        "| cycle | server | requests/s | cycles/s | p50 ms | p99 ms | server CPU µs/request | requests/s against one node |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for cycle in [Cycle::Page, Cycle::NewSession] {
        // Per server, per run: requests/s, cycles/s, p50 ms, p99 ms, CPU µs/request.
        type Run = (f64, f64, f64, f64, f64);
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); kinds.len()];
        for run in 0..settings.runs {
            let mut order: Vec<usize> = (0..kinds.len()).collect();
            if run % 2 == 1 {
                order.reverse();
            }
            for index in order {
                let server = &servers[index];
                let addr = server.aspnet.expect("a state server port");
                let measure_from = Instant::now() + settings.warmup.max(Duration::from_millis(200));
                let until = measure_from + settings.test_time;
                let seed = 1 + run as u64 * 2 + index as u64;
                let (outcome, used) = std::thread::scope(|scope| {
                    let load = scope.spawn(|| {
                        let load =
                            aspnet::Load { cycle, connections: CONNECTIONS, sessions: SESSIONS, body_len: BODY, seed };
                        aspnet::run(addr, &load, measure_from, until)
                            .unwrap_or_else(|e| panic!("{}: {e}", kinds[index].name()))
                    });
                    std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
                    let start = CpuTime::of(server.pid()).expect("server CPU time");
                    std::thread::sleep(until.saturating_duration_since(Instant::now()));
                    let used = CpuTime::of(server.pid()).expect("server CPU time").since(start);
                    (load.join().expect("load thread"), used)
                });
                let stat = |name| server.stat_text("", name).unwrap_or_default();
                eprintln!(
                    "  (aspnet) {}: curr_items {} memory_used {} limit {} evictions {}",
                    kinds[index].name(),
                    stat("curr_items"),
                    stat("memory_used"),
                    stat("limit_maxbytes"),
                    stat("evictions")
                );
                assert_eq!(
                    outcome.errors,
                    0,
                    "{}: unexpected statuses: {:?}",
                    kinds[index].name(),
                    outcome.first_errors
                );
                let secs = settings.test_time.as_secs_f64();
                let requests = outcome.requests.max(1) as f64;
                let figures = (
                    outcome.requests as f64 / secs,
                    outcome.cycles as f64 / secs,
                    aspnet::ms(&outcome.latency, 0.5),
                    aspnet::ms(&outcome.latency, 0.99),
                    used.total().as_secs_f64() * 1e6 / requests,
                );
                eprintln!(
                    "  (aspnet) {} run {} {}: {} requests/s, server CPU {:.2} µs/request",
                    cycle.name(),
                    run + 1,
                    kinds[index].name(),
                    thousands(figures.0),
                    figures.4
                );
                runs[index].push(figures);
            }
        }
        for (index, kind) in kinds.iter().enumerate() {
            let pick = |f: fn(&Run) -> f64| median(runs[index].iter().map(f).collect());
            let against = median(runs[index].iter().zip(&runs[0]).map(|(r, alone)| r.0 / alone.0).collect());
            println!(
                "| {} | {} | {} | {} | {:.3} | {:.3} | {:.2} | {:.2}× |",
                cycle.name(),
                kind.name(),
                thousands(pick(|f| f.0)),
                thousands(pick(|f| f.1)),
                pick(|f| f.2),
                pick(|f| f.3),
                pick(|f| f.4),
                against
            );
        }
    }
    println!();
    server::ASPNET_PORTS.store(false, std::sync::atomic::Ordering::Relaxed);
}

/// One full sync: how long a new peer takes to receive every item, and the
/// sender's get latency meanwhile against the same load without a sync.
struct SyncSample {
    seconds: f64,
    items: u64,
    p99_ms_during: f64,
    p99_ms_before: f64,
    gets_during: u64,
}

/// Row (sync): a node holding `--items` items of 100 bytes is joined by an empty
/// peer; a light get load (10 connections, pipeline 1) runs against the sender.
/// Then a third node joins a pair holding them (a mesh of three): it takes a full
/// sync from each.
fn sync_row(settings: &Settings, placement: &Placement) {
    let items = settings.memory_items;
    let loaded = Workload { key_maximum: items, ..base_workload() };
    let probe = Workload { connections: 10, sets: 0, gets: 1, key_maximum: items, ..base_workload() };
    let window = settings.test_time.max(Duration::from_secs(4));
    let mut table = Vec::new();
    for (ack, third) in [(false, false), (true, false), (false, true)] {
        let mut samples = Vec::new();
        for run in 0..settings.runs.min(3) {
            let kind = if third { Kind::Paired { ack, peers: 1 } } else { Kind::Replicating };
            let server = Server::start(kind, settings.server_threads, settings.memory_mb, placement.server.clone())
                .expect("start stickless");
            driver::load(server.addr, &loaded).expect("load");
            // The pair holds every item before the third node joins.
            let deadline = Instant::now() + Duration::from_secs(120);
            while server.peers_hold() < items {
                assert!(Instant::now() < deadline, "the peer did not catch up");
                std::thread::sleep(Duration::from_millis(20));
            }
            let start = Instant::now() + Duration::from_millis(200);
            let before = driver::run(server.addr, &probe, probe.connections, 7, start, start + window).expect("probe");
            let from = Instant::now() + Duration::from_millis(200);
            let (during, seconds, received) = std::thread::scope(|scope| {
                let addr = server.addr;
                let probe = &probe;
                let load = scope.spawn(move || driver::run(addr, probe, probe.connections, 8, from, from + window));
                std::thread::sleep(from.saturating_duration_since(Instant::now()));
                let joined = Instant::now();
                let peer = Server::peer_of(
                    &server,
                    &server.peer_repl_addrs(),
                    settings.server_threads,
                    settings.memory_mb,
                    ack,
                    placement.loadgen.clone(),
                    false,
                )
                .expect("start the peer");
                let deadline = joined + Duration::from_secs(120);
                let received = loop {
                    let stat = |name| peer.stat_text("replication", name).unwrap_or_default();
                    let received: u64 = stat("repl_sync_items_received").parse().unwrap_or(0);
                    // A third node takes a full sync from one of the pair and resumes
                    // from the other: done once it holds every item and no sync runs.
                    let held = if third { peer.stat("curr_items").unwrap_or(0) } else { received };
                    if held >= items && stat("repl_syncing") == "0" {
                        break received;
                    }
                    assert!(Instant::now() < deadline, "the full sync did not finish");
                    std::thread::sleep(Duration::from_millis(5));
                };
                let seconds = joined.elapsed().as_secs_f64();
                (load.join().expect("probe thread").expect("probe"), seconds, received)
            });
            let p99 = |o: &Outcome| o.latency.value_at_quantile(0.99) as f64 / 1e6;
            let sample = SyncSample {
                seconds,
                items: received,
                p99_ms_during: p99(&during),
                p99_ms_before: p99(&before),
                gets_during: during.gets,
            };
            eprintln!(
                "  (sync) run {} {}: {:.2} s for {} items, sender get p99 {:.3} ms during, {:.3} ms before",
                run + 1,
                sync_mode(ack, third),
                sample.seconds,
                sample.items,
                sample.p99_ms_during,
                sample.p99_ms_before
            );
            samples.push(sample);
        }
        table.push((ack, third, samples));
    }
    println!(
        "### (sync) full sync of {} items of 100 bytes to a new peer
",
        thousands(items as f64)
    );
    println!(
        "The sender holds the items; an empty peer (on the load generator's CPU) joins. Time from starting the \
         peer to its last item applied. Meanwhile {} connections at pipeline 1 send gets to the sender for {} s; \
         its p99 is set beside the same load just before the sync. The third row: the sender has a peer \
         already, and the empty node joins both (a full sync from one, then a partial resync from the other).\n",
        probe.connections,
        window.as_secs()
    );
    println!("| mode | sync seconds | items | sender get p99 ms during | before | gets served during |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (ack, third, samples) in &table {
        println!(
            "| {} | **{:.2}** | {} | {:.3} | {:.3} | {} |",
            sync_mode(*ack, *third),
            median(samples.iter().map(|s| s.seconds).collect()),
            samples.last().map_or(0, |s| s.items),
            median(samples.iter().map(|s| s.p99_ms_during).collect()),
            median(samples.iter().map(|s| s.p99_ms_before).collect()),
            thousands(median(samples.iter().map(|s| s.gets_during as f64).collect())),
        );
    }
    println!();
}

/// How row (sync) names a run.
fn sync_mode(ack: bool, third: bool) -> &'static str {
    match (ack, third) {
        (_, true) => "async, third node joins a pair",
        (true, false) => "ack",
        (false, false) => "async",
    }
}

/// Row (warm): `-e` with `--items` sessions of 4 KiB: how long the stop takes to
/// save them and the next start to load them (until it listens).
fn warm_row(settings: &Settings, placement: &Placement) {
    use std::os::unix::process::CommandExt;
    let items = settings.memory_items;
    let data_size = 4096;
    // Room for the items (about 4.2 KiB each with key and header) and their tables.
    let memory_mb = (items * 4400 / (1024 * 1024) + 256).to_string();
    let dir = std::env::temp_dir().join(format!("stickless-loadgen-warm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let file = dir.join("items");
    let port = server::free_port().expect("a port");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // The node that is filled runs on the server's CPU, away from the load
    // generator; the restarted one is not pinned, as nothing else runs while it
    // loads and its checksum thread runs beside the load.
    let start = |pinned: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_stickless"));
        cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-u", "root", "-t", "1", "-m", &memory_mb, "-e"])
            .arg(&file)
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(cpus) = placement.server.clone().filter(|_| pinned) {
            // SAFETY: sched_setaffinity between fork and exec, async-signal-safe.
            unsafe {
                cmd.pre_exec(move || server::pin_current(&cpus));
            }
        }
        let started = Instant::now();
        let child = cmd.spawn().expect("start stickless");
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(started.elapsed() < Duration::from_secs(600), "stickless did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        (child, started.elapsed().as_secs_f64())
    };
    let mut runs = Vec::new();
    for _ in 0..settings.runs.min(3) {
        let _ = std::fs::remove_file(&file);
        let (mut child, _) = start(true);
        let workload = Workload { data_size, key_maximum: items, connections: 8, ..base_workload() };
        driver::load(addr, &workload).expect("load the sessions");
        let stopped = Instant::now();
        // SAFETY: kill(2) on the child this benchmark started.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().expect("the stop");
        let save = stopped.elapsed().as_secs_f64();
        let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        let (mut child, load) = start(false);
        let probe = Server::stat_at(addr, "curr_items").expect("curr_items");
        // SAFETY: as above.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        eprintln!("  (warm) {items} items: saved in {save:.2} s ({bytes} bytes), loaded in {load:.2} s, {probe} back");
        assert_eq!(probe, items, "every session came back");
        runs.push((save, load, bytes));
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("### (warm) warm restart with -e: {} sessions of {data_size} bytes\n", thousands(items as f64));
    println!(
        "Loaded with the load generator, then SIGTERM: the stop's time (finishing, saving, fsync, rename) until \
         the process exits, and the next start's, unpinned, until it listens (loading, and checking the file's SHA-256 \
         on a second thread).\n"
    );
    println!("| file bytes | stop and save, s | start and load, s |");
    println!("|---:|---:|---:|");
    println!(
        "| {} | **{:.2}** | **{:.2}** |\n",
        thousands(runs.last().map_or(0.0, |r| r.2 as f64)),
        median(runs.iter().map(|r| r.0).collect()),
        median(runs.iter().map(|r| r.1).collect())
    );
}

/// What a replicating node holds at one point of the tombstones row.
#[derive(Clone, Copy, Default)]
struct Held {
    memory_used: u64,
    tombstone_bytes: u64,
    tombstones: u64,
    resident: u64,
}

impl Held {
    fn of(server: &Server) -> Held {
        let stat = |name| server.stat(name).unwrap_or_else(|e| panic!("stat {name}: {e}"));
        Held {
            memory_used: stat("memory_used"),
            tombstone_bytes: stat("repl_tombstone_bytes"),
            tombstones: stat("repl_tombstones"),
            resident: server::resident_bytes(server.pid()).expect("RSS"),
        }
    }
}

/// Sends `delete PREFIX-N noreply` for N below `count` and waits until the server has
/// run them all (a `version` sent after them is answered).
fn delete_missing(addr: std::net::SocketAddr, prefix: &str, count: u64) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    let mut batch = Vec::with_capacity(64 * 1024);
    for n in 0..count {
        // noreply: memcached's protocol.txt allows it on delete, and it spares the reads.
        writeln!(batch, "delete {prefix}-{n:07} noreply\r")?;
        if batch.len() > 60 * 1024 {
            stream.write_all(&batch)?;
            batch.clear();
        }
    }
    batch.extend_from_slice(b"version\r\n");
    stream.write_all(&batch)?;
    let mut reply = [0u8; 8];
    stream.read_exact(&mut reply)?;
    if &reply != b"VERSION " {
        return Err(std::io::Error::other(format!("unexpected reply {:?}", String::from_utf8_lossy(&reply))));
    }
    Ok(())
}

/// Row (tombstones): a node with a peer holds `--items` items of 100 bytes; the peer
/// is stopped (SIGSTOP) and the node takes as many deletes of keys it never held,
/// each leaving a tombstone until the peer has it; the peer is then let go on.
fn tombstones_row(settings: &Settings, placement: &Placement) {
    let items = settings.memory_items;
    let loaded = Workload { key_maximum: items, ..base_workload() };
    let mut samples: Vec<[Held; 3]> = Vec::new();
    for run in 0..settings.runs.min(3) {
        let server =
            Server::start(Kind::Replicating, settings.server_threads, settings.memory_mb, placement.server.clone())
                .expect("start stickless");
        let peer = Server::peer_of(
            &server,
            &[],
            settings.server_threads,
            settings.memory_mb,
            false,
            placement.loadgen.clone(),
            false,
        )
        .expect("start the peer");
        server.wait_linked().expect("link");
        let empty = Held::of(&server);
        driver::load(server.addr, &loaded).expect("load");
        let live = Held::of(&server);
        let signal = |sig| {
            // SAFETY: kill has no memory preconditions; the pid is our own child's.
            let rc = unsafe { libc::kill(peer.pid() as i32, sig) };
            assert_eq!(rc, 0, "signal the peer");
        };
        signal(libc::SIGSTOP);
        // kill returns before the peer's threads have all stopped: wait for state T.
        let stopped_by = Instant::now() + Duration::from_secs(5);
        while !server::is_stopped(peer.pid()) {
            assert!(Instant::now() < stopped_by, "the peer did not stop");
            std::thread::sleep(Duration::from_millis(1));
        }
        delete_missing(server.addr, "gone", items).expect("deletes");
        let buried = Held::of(&server);
        signal(libc::SIGCONT);
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.stat("repl_tombstones").expect("repl_tombstones") > 0 {
            assert!(Instant::now() < deadline, "the peer never applied the deletes");
            std::thread::sleep(Duration::from_millis(50));
        }
        let forgotten = Held::of(&server);
        eprintln!(
            "  (tombstones) run {}: {} tombstones, {:.1} B each in memory_used, {:.1} B each of RSS",
            run + 1,
            buried.tombstones,
            (buried.memory_used - live.memory_used) as f64 / items as f64,
            buried.resident.saturating_sub(live.resident) as f64 / items as f64
        );
        samples.push([live, buried, forgotten].map(|held| Held {
            resident: held.resident.saturating_sub(empty.resident),
            memory_used: held.memory_used.saturating_sub(empty.memory_used),
            ..held
        }));
    }
    println!("### (tombstones) {} live items and {0} deletes the peer has not yet applied\n", thousands(items as f64));
    println!(
        "A node with a peer attached (`-t {} -m {}`) is loaded with the items (100 bytes); its peer is stopped \
         (SIGSTOP) and the node takes as many `delete` of keys it never held, each leaving a tombstone until the \
         peer has it; then the peer goes on. Memory is what `-m` bounds (`memory_used`) and VmRSS, both grown since \
         the node started; medians of {} runs.\n",
        settings.server_threads,
        settings.memory_mb,
        samples.len()
    );
    println!("| state | memory_used, MB | RSS growth, MB | tombstones | per tombstone: accounted, RSS |");
    println!("|---|---:|---:|---:|---:|");
    let states = ["live items only", "+ tombstones, peer stopped", "peer back, tombstones applied and forgotten"];
    for (index, state) in states.iter().enumerate() {
        let pick = |f: fn(&Held) -> u64| median(samples.iter().map(|s| f(&s[index]) as f64).collect());
        let per = if index == 1 {
            let grown = |f: fn(&Held) -> u64| {
                median(samples.iter().map(|s| f(&s[1]).saturating_sub(f(&s[0])) as f64 / items as f64).collect())
            };
            let accounted =
                median(samples.iter().map(|s| s[1].tombstone_bytes as f64 / s[1].tombstones.max(1) as f64).collect());
            format!("{accounted:.0} B (`repl_tombstone_bytes`), {:.0} B", grown(|h| h.resident))
        } else {
            String::new()
        };
        println!(
            "| {state} | {:.1} | {:.1} | {} | {per} |",
            pick(|h| h.memory_used) / 1e6,
            pick(|h| h.resident) / 1e6,
            thousands(pick(|h| h.tombstones)),
        );
    }
    println!();
}

/// One memory run of one server.
struct MemorySample {
    bytes_per_item: f64,
    resident: u64,
    items: u64,
}

/// Bytes per item: resident memory grown by loading `items` values of 100 bytes.
fn memory_row(settings: &Settings, placement: &Placement) -> Vec<(Kind, Vec<MemorySample>)> {
    let workload = Workload { key_maximum: settings.memory_items, ..base_workload() };
    let mut results: Vec<(Kind, Vec<MemorySample>)> = settings.servers.iter().map(|&k| (k, Vec::new())).collect();
    for run in 0..settings.runs {
        for (kind, samples) in &mut results {
            let server = Server::start(*kind, settings.server_threads, settings.memory_mb, placement.server.clone())
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", kind.name()));
            let before = server::resident_bytes(server.pid()).expect("RSS");
            driver::load(server.addr, &workload).unwrap_or_else(|e| panic!("loading {}: {e}", kind.name()));
            let after = server::resident_bytes(server.pid()).expect("RSS");
            let items = server.stat("curr_items").expect("curr_items");
            let evictions = server.stat("evictions").expect("evictions");
            assert_eq!(evictions, 0, "{} evicted while loading; raise --memory", kind.name());
            let per_item = after.saturating_sub(before) as f64 / items.max(1) as f64;
            eprintln!("  (memory) run {} {}: {per_item:.1} B/item, RSS {after} B, {items} items", run + 1, kind.name());
            samples.push(MemorySample { bytes_per_item: per_item, resident: after, items });
        }
    }
    println!("### (memory) {} items of 100 bytes\n", thousands(settings.memory_items as f64));
    println!(
        "Resident memory (VmRSS) grown by loading the items, divided by `curr_items`; both servers with `-m {}`.\n",
        settings.memory_mb
    );
    println!(
        "memtier_benchmark equivalent: `memtier_benchmark --protocol=memcache_text -s 127.0.0.1 -p 11211 \
         --ratio=1:0 --data-size=100 --key-pattern=P:P --key-minimum=1 --key-maximum={} --requests=allkeys`\n",
        settings.memory_items
    );
    println!("| server | bytes per item | RSS after load, MiB | items |");
    println!("|---|---:|---:|---:|");
    for (kind, samples) in &results {
        println!(
            "| {} | {:.1} | {:.1} | {} |",
            kind.name(),
            median(samples.iter().map(|s| s.bytes_per_item).collect()),
            median(samples.iter().map(|s| s.resident as f64).collect()) / 1048576.0,
            samples.last().map_or(0, |s| s.items)
        );
    }
    if let [(Kind::Stickless, ours), (Kind::Memcached, theirs)] = &results[..] {
        let ours = median(ours.iter().map(|s| s.bytes_per_item).collect());
        let theirs = median(theirs.iter().map(|s| s.bytes_per_item).collect());
        println!("| **stickless/memcached** | **{:.2}×** | | |", ours / theirs);
    }
    println!();
    results
}

fn parse_number<T: std::str::FromStr>(flag: &str, value: Option<String>) -> T {
    value.and_then(|v| v.parse().ok()).unwrap_or_else(|| usage_error(&format!("{flag} needs a number")))
}

fn usage_error(message: &str) -> ! {
    eprintln!("loadgen: {message}\n\n{USAGE}");
    std::process::exit(64);
}

fn parse_args(args: Vec<String>) -> (Settings, Vec<String>, Option<Workload>) {
    let mut settings = Settings::default();
    let mut rows = Vec::new();
    let mut custom: Option<Workload> = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--runs" => settings.runs = parse_number(&arg, args.next()),
            "--test-time" => settings.test_time = Duration::from_secs_f64(parse_number(&arg, args.next())),
            "--warmup" => settings.warmup = Duration::from_secs_f64(parse_number(&arg, args.next())),
            "--server-threads" => settings.server_threads = parse_number(&arg, args.next()),
            "--memory" => settings.memory_mb = parse_number(&arg, args.next()),
            "--threads" => settings.loadgen_threads = parse_number(&arg, args.next()),
            "--items" => settings.memory_items = parse_number(&arg, args.next()),
            "--no-pin" => settings.pin = false,
            "--tls" => settings.tls = true,
            "--peer-nice" => {
                let nice: i32 = parse_number(&arg, args.next());
                server::PEER_NICE.store(nice, std::sync::atomic::Ordering::Relaxed);
            }
            "--servers" => {
                let list = args.next().unwrap_or_default();
                settings.servers = list
                    .split(',')
                    .map(|name| match name {
                        "stickless" => Kind::Stickless,
                        "memcached" => Kind::Memcached,
                        "paired-async" => Kind::Paired { ack: false, peers: 1 },
                        "paired-ack" => Kind::Paired { ack: true, peers: 1 },
                        "mesh-async" => Kind::Paired { ack: false, peers: 2 },
                        "mesh-ack" => Kind::Paired { ack: true, peers: 2 },
                        "nothing" => Kind::Nothing,
                        other => usage_error(&format!("unknown server {other:?}")),
                    })
                    .collect();
            }
            "--connections" => custom.get_or_insert_with(base_workload).connections = parse_number(&arg, args.next()),
            "--pipeline" => custom.get_or_insert_with(base_workload).pipeline = parse_number(&arg, args.next()),
            "--data-size" => custom.get_or_insert_with(base_workload).data_size = parse_number(&arg, args.next()),
            "--key-maximum" => custom.get_or_insert_with(base_workload).key_maximum = parse_number(&arg, args.next()),
            "--ratio" => {
                let value = args.next().unwrap_or_default();
                let (sets, gets) = value
                    .split_once(':')
                    .and_then(|(s, g)| Some((s.parse().ok()?, g.parse().ok()?)))
                    .filter(|&(s, g): &(u32, u32)| s + g > 0)
                    .unwrap_or_else(|| usage_error("--ratio needs SETS:GETS"));
                let w = custom.get_or_insert_with(base_workload);
                w.sets = sets;
                w.gets = gets;
            }
            "--protocol" => {
                custom.get_or_insert_with(base_workload).protocol = match args.next().as_deref() {
                    Some("memcache_text") => Protocol::Text,
                    Some("memcache_binary") => Protocol::Binary,
                    _ => usage_error("--protocol is memcache_text or memcache_binary"),
                }
            }
            "--key-pattern" => {
                custom.get_or_insert_with(base_workload).key_pattern = match args.next().as_deref() {
                    Some("R") => KeyPattern::Uniform,
                    Some("G") => KeyPattern::Gaussian,
                    _ => usage_error("--key-pattern is R or G"),
                }
            }
            row if !row.starts_with('-') => {
                if !matches!(
                    row,
                    "memory"
                        | "custom"
                        | "r"
                        | "m"
                        | "rs"
                        | "lock-php"
                        | "lock-pecl"
                        | "aspnet"
                        | "sync"
                        | "tombstones"
                        | "warm"
                ) && standard_row(row).is_none()
                {
                    usage_error(&format!("unknown row {row:?}"));
                }
                rows.push(row.to_string());
            }
            other => usage_error(&format!("unknown option {other}")),
        }
    }
    if settings.runs == 0 || settings.server_threads == 0 || settings.loadgen_threads == 0 {
        usage_error("--runs, --server-threads and --threads must be positive");
    }
    if let Some(w) = &custom
        && (w.connections == 0 || w.pipeline == 0 || w.key_maximum == 0)
    {
        usage_error("--connections, --pipeline and --key-maximum must be positive");
    }
    (settings, rows, custom)
}

fn header(settings: &Settings, placement: &Placement) {
    // Online CPUs of the machine, not of this (possibly pinned) process.
    // SAFETY: sysconf has no preconditions.
    let cores = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let memcached = std::process::Command::new("memcached")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "memcached not found".into());
    let nice = server::PEER_NICE.load(std::sync::atomic::Ordering::Relaxed);
    let mut peers = if nice == 0 { String::new() } else { format!(", replication peers at nice {nice}") };
    if settings.tls {
        peers.push_str(", over TLS (P-256 certificate, TLS 1.3)");
    }
    println!(
        "Machine: {cores} CPUs; {}{peers}. Servers: `-t {} -m {}`, stickless {} against {memcached}. \
         {} run(s) of {} s after {} s of warm-up, alternating servers ABBA; figures are medians, \
         ratios the medians of the paired runs' ratios.\n",
        placement.describe(),
        settings.server_threads,
        settings.memory_mb,
        env!("CARGO_PKG_VERSION"),
        settings.runs,
        settings.test_time.as_secs_f64(),
        settings.warmup.as_secs_f64(),
    );
}

/// A directory of certificates for one run, removed when dropped.
struct Certificates(std::path::PathBuf);

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `--tls`: makes a CA and a certificate for localhost with `openssl`, has every
/// server started from now on serve TLS with it, and every connection trust it.
fn use_tls() -> Certificates {
    let dir = std::env::temp_dir().join(format!("stickless-loadgen-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("certificate directory");
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(&dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &curve,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=loadgen-ca"],
        ]
        .concat(),
    );
    openssl(
        &[&["req"][..], &curve, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat(),
    );
    std::fs::write(dir.join("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    let roots = stickless::tls::load_roots(&dir.join("ca.pem")).expect("the CA");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let _ = driver::CLIENT_TLS.set(std::sync::Arc::new(config));
    let _ = server::SERVER_TLS.set(server::TlsFiles {
        chain: dir.join("server.pem"),
        key: dir.join("server.key"),
        ca: dir.join("ca.pem"),
    });
    Certificates(dir)
}

/// The short run made by `cargo test`: both servers, every reply checked.
fn smoke() {
    let settings = Settings {
        runs: 1,
        test_time: Duration::from_millis(1500),
        warmup: Duration::from_millis(300),
        memory_mb: 64,
        memory_items: 20_000,
        ..Settings::default()
    };
    let placement = Placement::choose(true);
    if let Some(loadgen) = &placement.loadgen {
        server::pin_current(loadgen).expect("pin the load generator");
    }
    header(&settings, &placement);
    let workload = Workload {
        connections: 8,
        pipeline: 4,
        key_maximum: 2_000,
        key_pattern: KeyPattern::Gaussian,
        ..base_workload()
    };
    for protocol in [Protocol::Text, Protocol::Binary] {
        let workload = Workload { protocol, ..workload.clone() };
        let row = Row { name: "smoke".into(), title: describe(&workload), workload };
        // The store-nothing ceiling speaks the text protocol alone.
        let mut settings = settings.clone();
        if protocol == Protocol::Text {
            settings.servers.push(Kind::Nothing);
        }
        for (kind, _, outcomes) in throughput_row(&row, &settings, &placement) {
            let outcome = &outcomes[0];
            assert!(outcome.sets > 0 && outcome.gets > 0, "{} {protocol:?}: no traffic", kind.name());
            assert_eq!(outcome.errors, 0, "{} {protocol:?}: wrong replies", kind.name());
            assert_eq!(outcome.misses, 0, "{} {protocol:?}: a loaded key was missing", kind.name());
        }
    }
    for style in [SessionLock::PhpMemcached, SessionLock::PeclMemcache] {
        let workload = Workload { session_lock: Some(style), data_size: 1024, ..workload.clone() };
        let row = Row { name: "smoke".into(), title: describe(&workload), workload };
        for (kind, _, outcomes) in throughput_row(&row, &settings, &placement) {
            let outcome = &outcomes[0];
            let name = kind.name();
            assert!(outcome.cycles > 0 && outcome.locks > 0, "{name} {style:?}: no cycles");
            assert_eq!(outcome.errors, 0, "{name} {style:?}: wrong replies");
            assert_eq!(outcome.contended, 0, "{name} {style:?}: a lone client found its lock held");
            assert_eq!(outcome.misses, 0, "{name} {style:?}: a loaded session was missing");
        }
    }
    for (kind, samples) in memory_row(&settings, &placement) {
        assert_eq!(samples[0].items, settings.memory_items, "{}: items after load", kind.name());
    }
    // Last, as `--tls` turns TLS on for every server started after it. stickless
    // alone: Debian's memcached 1.6.18 `-Z` now and then stops answering the load's
    // deep pipelines of 3000-byte sets under the unoptimised load generator
    // (BENCHMARKS.md, TLS), and tests/tls.rs compares the two over TLS already.
    let settings = Settings { tls: true, servers: vec![Kind::Stickless], ..settings };
    let _certificates = use_tls();
    for protocol in [Protocol::Text, Protocol::Binary] {
        let workload = Workload { protocol, data_size: 3000, ..workload.clone() };
        let row = Row { name: "smoke over TLS".into(), title: describe(&workload), workload };
        for (kind, _, outcomes) in throughput_row(&row, &settings, &placement) {
            let outcome = &outcomes[0];
            assert!(outcome.sets > 0 && outcome.gets > 0, "{} {protocol:?} over TLS: no traffic", kind.name());
            assert_eq!(outcome.errors, 0, "{} {protocol:?} over TLS: wrong replies", kind.name());
            assert_eq!(outcome.misses, 0, "{} {protocol:?} over TLS: a loaded key was missing", kind.name());
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve-nothing") {
        nothing::serve(&args[1..]);
    }
    // `cargo bench` passes --bench; `cargo test` does not, and gets the smoke run.
    if !args.iter().any(|a| a == "--bench") {
        smoke();
        return;
    }
    let (settings, mut rows, custom) = parse_args(args.into_iter().filter(|a| a != "--bench").collect());
    let _certificates = settings.tls.then(use_tls);
    let placement = Placement::choose(settings.pin);
    if let Some(loadgen) = &placement.loadgen {
        server::pin_current(loadgen).expect("pin the load generator");
    }
    if rows.is_empty() {
        rows = if custom.is_some() {
            vec!["custom".into()]
        } else {
            [
                "a",
                "b",
                "c",
                "d",
                "e",
                "f",
                "g",
                "memory",
                "r",
                "m",
                "rs",
                "lock-php",
                "lock-pecl",
                "aspnet",
                "sync",
                "tombstones",
                "warm",
            ]
            .map(String::from)
            .to_vec()
        };
    }
    header(&settings, &placement);
    for name in &rows {
        match name.as_str() {
            "memory" => {
                memory_row(&settings, &placement);
            }
            "r" | "m" | "rs" | "lock-php" | "lock-pecl" => replication_row(name, &settings, &placement),
            "sync" => sync_row(&settings, &placement),
            "aspnet" => aspnet_row(&settings, &placement),
            "tombstones" => tombstones_row(&settings, &placement),
            "warm" => warm_row(&settings, &placement),
            "custom" => {
                let workload = custom.clone().unwrap_or_else(base_workload);
                let row = Row { name: "custom".into(), title: describe(&workload), workload };
                throughput_row(&row, &settings, &placement);
            }
            other => {
                let row = standard_row(other).expect("rows are checked while parsing");
                throughput_row(&row, &settings, &placement);
            }
        }
    }
}
