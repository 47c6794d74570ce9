//! The store in-process against the same store over loopback: gets and sets of
//! 100-byte values through the C ABI, from C (`get_set.c`) and from Java
//! (`GetSet.java`, through bindings/java's JNA binding), against the same operations
//! on one loopback connection (pipeline 1) to the stickless daemon and to Debian's
//! memcached, each pinned to CPU 1 with the client on CPU 0.
//!
//! A last table times, over loopback at pipeline 1, the commands a peer makes wait
//! (claims: `incr`, `add`) against one that does not (`set`), on stickless alone and
//! on a stickless with a peer attached.
//!
//! `cargo bench --bench embedded [-- --runs N]`: every figure is the median over the
//! runs. Run without `--bench` (as `cargo test --all-targets` does) it makes one short
//! run of every row and fails on any wrong reply.

#[allow(dead_code)] // shared with the load generator, which uses more of it
#[path = "../loadgen/server.rs"]
mod server;

use server::{CpuTime, Kind, Server, pin_current};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Row (a)'s key space (BENCHMARKS.md), and one hot key to show the cost of the
/// call itself rather than of memory.
const KEYS: usize = 100_000;

#[derive(Clone, Copy)]
struct Sizes {
    runs: usize,
    embedded_ops: usize,
    wire_ops: usize,
    keys: usize,
}

/// One timed run's figures, as the host programs print them.
#[derive(Clone, Copy, Default)]
struct Figures {
    get_ns: f64,
    set_ns: f64,
    get_mops: f64,
    set_mops: f64,
    /// Server CPU per operation (wire rows only).
    server_us: Option<f64>,
}

fn parse(output: &str) -> Figures {
    let words: Vec<&str> = output.split_whitespace().collect();
    let field = |name: &str| -> f64 {
        let at = words.iter().position(|w| *w == name).unwrap_or_else(|| panic!("no {name} in {output:?}"));
        words[at + 1].parse().unwrap_or_else(|_| panic!("bad {name} in {output:?}"))
    };
    Figures {
        get_ns: field("get_ns"),
        set_ns: field("set_ns"),
        get_mops: field("get_mops"),
        set_mops: field("set_mops"),
        server_us: None,
    }
}

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The cdylib built with this bench, in `target/<profile>/deps/` or beside it.
fn library() -> PathBuf {
    let exe = std::env::current_exe().expect("bench executable");
    let deps = exe.parent().expect("target/<profile>/deps");
    [deps.join("libstickless.so"), deps.parent().expect("target/<profile>").join("libstickless.so")]
        .into_iter()
        .find(|path| path.exists())
        .expect("libstickless.so beside the bench")
}

struct Hosts {
    c: PathBuf,
    java_classpath: String,
    library_dir: PathBuf,
}

fn build_hosts() -> Hosts {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("embedded-bench");
    let classes = dir.join("classes");
    std::fs::create_dir_all(&classes).unwrap();
    let link = dir.join("libstickless.so.1");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(library(), &link).unwrap();
    let c = dir.join("get_set");
    run(Command::new("gcc")
        .args(["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-D_DEFAULT_SOURCE", "-I"])
        .arg(root.join("include"))
        .arg(root.join("benches/embedded/get_set.c"))
        .arg(&link)
        .args(["-lpthread", "-o"])
        .arg(&c));
    let jna = "/usr/share/java/jna.jar";
    let mut javac = Command::new("javac");
    javac.args(["--release", "17", "-Xlint:all", "-Werror", "-cp", jna, "-d"]).arg(&classes);
    for entry in std::fs::read_dir(root.join("bindings/java/src/main/java/stickless")).unwrap() {
        javac.arg(entry.unwrap().path());
    }
    run(javac.arg(root.join("benches/embedded/GetSet.java")));
    Hosts { c, java_classpath: format!("{}:{jna}", classes.display()), library_dir: dir }
}

#[derive(Clone, Copy, PartialEq)]
enum Host {
    C,
    Java,
}

impl Hosts {
    fn command(&self, host: Host, args: &[String], cpus: Option<Vec<usize>>) -> Command {
        let mut command = match host {
            Host::C => Command::new(&self.c),
            Host::Java => {
                let mut java = Command::new("java");
                java.args(["-cp", &self.java_classpath, "GetSet"]);
                java
            }
        };
        command
            .args(args)
            .env("LD_LIBRARY_PATH", &self.library_dir)
            .env("STICKLESS_LIBRARY", self.library_dir.join("libstickless.so.1"));
        if let Some(cpus) = cpus {
            // SAFETY: the closure runs in the forked child before exec and only calls
            // sched_setaffinity, which is async-signal-safe.
            unsafe {
                command.pre_exec(move || pin_current(&cpus));
            }
        }
        command
    }

    fn embedded(&self, host: Host, keys: usize, ops: usize, threads: usize, pin: bool) -> Figures {
        let args = ["embedded".to_string(), keys.to_string(), ops.to_string(), threads.to_string()];
        // One thread runs alone on CPU 1; more share both CPUs.
        let cpus = (pin && threads == 1).then(|| vec![1]);
        parse(&run(&mut self.command(host, &args, cpus)))
    }

    fn wire(&self, host: Host, server: &Server, keys: usize, ops: usize, pin: bool) -> Figures {
        let args = ["wire".to_string(), server.addr.port().to_string(), keys.to_string(), ops.to_string()];
        let before = CpuTime::of(server.pid()).expect("server CPU time");
        let mut figures = parse(&run(&mut self.command(host, &args, pin.then(|| vec![0]))));
        let cpu = CpuTime::of(server.pid()).expect("server CPU time").since(before).total();
        // The load (keys) plus the timed gets and sets; Java times its loops twice.
        let passes = if host == Host::Java { 2 } else { 1 };
        figures.server_us = Some(cpu.as_secs_f64() * 1e6 / (keys + 2 * ops * passes) as f64);
        figures
    }
}

/// Mean microseconds of one request/reply round trip of each command on `server`,
/// `ops` times (one connection, pipeline 1); every reply is checked.
fn claim_round_trips(server: &Server, ops: usize) -> [f64; 3] {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut reply = [0u8; 256];
    let mut exchange = |request: &[u8], expect: &dyn Fn(&[u8]) -> bool| {
        stream.write_all(request).expect("write");
        let mut used = 0;
        while !reply[..used].ends_with(b"\r\n") {
            let n = stream.read(&mut reply[used..]).expect("read");
            assert!(n > 0, "the server closed the connection");
            used += n;
        }
        assert!(
            expect(&reply[..used]),
            "{:?} answered {:?}",
            String::from_utf8_lossy(request),
            String::from_utf8_lossy(&reply[..used])
        );
    };
    exchange(b"set claim:counter 0 0 1\r\n0\r\n", &|r| r == b"STORED\r\n");
    let time = |exchange: &mut dyn FnMut(usize)| {
        let start = std::time::Instant::now();
        for i in 0..ops {
            exchange(i);
        }
        start.elapsed().as_secs_f64() * 1e6 / ops as f64
    };
    let incr = time(&mut |_| exchange(b"incr claim:counter 1\r\n", &|r| r[0].is_ascii_digit()));
    // Fresh keys on every call, so that each add creates its key.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let add =
        time(&mut |i| exchange(format!("add claim:{run}:{i} 0 0 1\r\n1\r\n").as_bytes(), &|r| r == b"STORED\r\n"));
    let set =
        time(&mut |i| exchange(format!("set claim:{run}:{i} 0 0 1\r\n2\r\n").as_bytes(), &|r| r == b"STORED\r\n"));
    [incr, add, set]
}

/// The claims table: each command's round trip on stickless alone and with a peer.
fn claims_table(sizes: &Sizes, pin: bool, alone: &Server) -> String {
    let cpus = pin.then(|| vec![1]);
    let paired = Server::start(Kind::Paired { ack: false, peers: 1 }, 1, 1024, cpus).expect("start a pair");
    if pin {
        pin_current(&[0]).expect("pin the client");
    }
    let ops = sizes.wire_ops / 4;
    let mut runs: [Vec<[f64; 3]>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..sizes.runs {
        runs[0].push(claim_round_trips(alone, ops));
        runs[1].push(claim_round_trips(&paired, ops));
    }
    let mut table = format!(
        "\nClaims over loopback, pipeline 1, {ops} of each, {} runs, medians\n\
         | command | alone µs/op | with a peer (async) µs/op |\n|---|---:|---:|\n",
        sizes.runs
    );
    for (column, name) in ["incr (a claim)", "add (a claim)", "set (not a claim)"].iter().enumerate() {
        let pick = |node: usize| median(runs[node].iter().map(|r| r[column]).collect());
        table += &format!("| {name} | {:.1} | {:.1} |\n", pick(0), pick(1));
    }
    table
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let runs = args.iter().position(|a| a == "--runs").map(|at| args[at + 1].parse().expect("--runs N")).unwrap_or(5);
    let sizes = if bench {
        Sizes { runs, embedded_ops: 2_000_000, wire_ops: 20_000, keys: KEYS }
    } else {
        Sizes { runs: 1, embedded_ops: 20_000, wire_ops: 200, keys: 1000 }
    };
    let pin = server::allowed_cpus().len() >= 2;
    let hosts = &build_hosts();
    let cpus = pin.then(|| vec![1]);
    let stickless = &Server::start(Kind::Stickless, 1, 1024, cpus.clone()).expect("start stickless");
    let memcached = &Server::start(Kind::Memcached, 1, 1024, cpus).expect("start memcached");

    type Row<'a> = (String, Box<dyn Fn(Host) -> Figures + 'a>);
    let mut rows: Vec<Row> = vec![
        (
            "in-process, 1 key, 1 thread".into(),
            Box::new(move |host| hosts.embedded(host, 1, sizes.embedded_ops, 1, pin)),
        ),
        (
            format!("in-process, {} keys, 1 thread", sizes.keys),
            Box::new(move |host| hosts.embedded(host, sizes.keys, sizes.embedded_ops, 1, pin)),
        ),
    ];
    for threads in [2, 4] {
        rows.push((
            format!("in-process, {} keys, {threads} threads", sizes.keys),
            Box::new(move |host| hosts.embedded(host, sizes.keys, sizes.embedded_ops, threads, pin)),
        ));
    }
    rows.push((
        format!("loopback to the stickless daemon, {} keys", sizes.keys),
        Box::new(move |host| hosts.wire(host, stickless, sizes.keys, sizes.wire_ops, pin)),
    ));
    rows.push((
        format!("loopback to memcached, {} keys", sizes.keys),
        Box::new(move |host| hosts.wire(host, memcached, sizes.keys, sizes.wire_ops, pin)),
    ));

    // On a thread of its own: it pins itself to CPU 0, and the hosts started later
    // must inherit this thread's affinity (both CPUs), not that one.
    let claims = std::thread::scope(|scope| scope.spawn(|| claims_table(&sizes, pin, stickless)).join().unwrap());
    for host in [Host::C, Host::Java] {
        let mut results: Vec<Vec<Figures>> = vec![Vec::new(); rows.len()];
        for _ in 0..sizes.runs {
            for (row, (_, measure)) in rows.iter().enumerate() {
                results[row].push(measure(host));
            }
        }
        println!("\n{} host, {} runs, medians", if host == Host::C { "C" } else { "Java (JNA)" }, sizes.runs);
        println!(
            "| row | get ns/op | set ns/op | get Mops/s, all threads | set Mops/s, all threads | server CPU µs/op |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for ((name, _), figures) in rows.iter().zip(&results) {
            let pick = |f: fn(&Figures) -> f64| median(figures.iter().map(f).collect());
            let server = match figures[0].server_us {
                Some(_) => format!("{:.2}", pick(|f| f.server_us.unwrap_or(0.0))),
                None => "–".into(),
            };
            println!(
                "| {name} | {:.0} | {:.0} | {:.2} | {:.2} | {server} |",
                pick(|f| f.get_ns),
                pick(|f| f.set_ns),
                pick(|f| f.get_mops),
                pick(|f| f.set_mops)
            );
        }
    }
    println!("{claims}");
}
