//! The fault soak: two or three real nodes (a pair, or a full mesh), writers on
//! all, and one fault at a time: a node's links cut (by relays between the nodes
//! that drop and refuse connections), with three nodes also one link alone, a
//! node stopped (`SIGSTOP`), a node killed (`SIGKILL`) and restarted empty, a node
//! stopped with SIGTERM and restarted from its warm restart file (`-e`), and a
//! node's wall clock stepped forward (libfaketime, reading its offset from a file).
//!
//! Each key has one writer, which sends each write to either node at random, so
//! the write it last saw answered is the key's expected state. After every fault
//! the nodes must catch up; at the end, with the link healed and quiet, the check
//! is: no key differs between the nodes, no answered write is lost (in async mode,
//! those answered by a node killed within 250 ms of answering may be), and no
//! deleted key is back. Between faults, lockers on both nodes race `add`s for a few
//! locks: a lock is never held by two at once while the nodes are linked.
//!
//! The suite runs a short seeded soak in each mode, for a pair and for three nodes;
//! `scripts/soak --secs 3600 [--nodes 3]` runs a long one (STICKLESS_SOAK_SECS, STICKLESS_SOAK_SEED, STICKLESS_SOAK_KEYS), and
//! `scripts/soak --tls` one whose link runs over mutual TLS (STICKLESS_SOAK_TLS=1).
//! Every loop is bounded by the run's deadline; every process is ended by its PID.

mod common;

use common::pki::{LIBFAKETIME, Pki};
use common::{Rng, parse_stats};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a client waits for a reply: longer than the soak's `--repl-timeout`,
/// after which an ack-mode node answers without its stopped peer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);
const REPL_TIMEOUT_SECS: &str = "1";
/// How long the nodes may take to catch up after a fault is healed.
const CATCH_UP: Duration = Duration::from_secs(30);
/// In async mode, a node killed this soon after answering a write may not have
/// sent it (its lag is usually under a millisecond: BENCHMARKS.md).
const ASYNC_LOSS_WINDOW: Duration = Duration::from_millis(250);
/// How long the link must stay the same before a lock race: many round trips.
const LINK_SETTLED: Duration = Duration::from_millis(300);
/// Keys each lock race is run on.
const LOCKS: usize = 4;
/// The least time between two writes to one key, as between one user's requests
/// to a session: well above the replication lag (a p99 of 2 ms here), which any
/// last-writer-wins store needs between writes to two nodes for them to keep
/// their order without waiting for each other.
const WRITE_GAP: Duration = Duration::from_millis(10);

/// A free port below Linux's ephemeral range (32768 on), which a node killed and
/// started again can bind once more: a port the kernel hands out to outgoing
/// connections could meanwhile be some connection's local port.
fn fixed_port(rng: &mut Rng) -> u16 {
    loop {
        let port = 20_000 + rng.below(12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Relays TCP connections to `target` until cut: then it drops every connection it
/// carries and closes new ones at once, as a network partition looks to the nodes.
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    carried: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, carried, stop) = (Arc::new(AtomicBool::new(false)), Arc::default(), Arc::new(AtomicBool::new(false)));
        let relay = Relay { port, cut: Arc::clone(&cut), carried: Arc::clone(&carried), stop: Arc::clone(&stop) };
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let Ok((inbound, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                if cut.load(Ordering::Acquire) {
                    continue;
                }
                let Ok(outbound) = TcpStream::connect(target) else {
                    continue;
                };
                inbound.set_nonblocking(false).unwrap();
                let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
                let mut carried = carried.lock().unwrap();
                carried.retain(|s: &TcpStream| s.peer_addr().is_ok());
                for (from, to) in [(&inbound, &outbound), (&outbound, &inbound)] {
                    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
                carried.push(inbound);
                carried.push(outbound);
            }
        });
        relay
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        for stream in self.carried.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::Release);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.cut();
    }
}

/// One daemon on fixed ports, so that it can be killed and started again in place,
/// under libfaketime with its clock offset read from a file.
struct Node {
    name: &'static str,
    args: Vec<String>,
    client_port: u16,
    clock_file: std::path::PathBuf,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    stopped: bool,
}

impl Node {
    fn new(name: &'static str, args: Vec<String>, client_port: u16, dir: &std::path::Path) -> Node {
        let clock_file = dir.join(format!("clock-{name}"));
        std::fs::write(&clock_file, "+0\n").unwrap();
        Node { name, args, client_port, clock_file, child: None, log: Arc::default(), stopped: false }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    /// Starts the daemon (it listens for clients once its peer's sync arrived).
    fn start(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stickless"))
            .args(&self.args)
            .args(["-u", "root"])
            .env("LD_PRELOAD", LIBFAKETIME)
            .env("FAKETIME_TIMESTAMP_FILE", &self.clock_file)
            // Only the wall clock moves: heartbeats and timeouts keep real time.
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env("FAKETIME_CACHE_DURATION", "1")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the daemon");
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::clone(&self.log);
        let name = self.name;
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut log = log.lock().unwrap();
                if log.len() > 400 {
                    log.drain(..200);
                }
                log.push(format!("{name}: {line}"));
            }
        });
        self.child = Some(child);
        self.stopped = false;
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(self.addr()).is_err() {
            assert!(Instant::now() < deadline, "node {} never listened:\n{}", self.name, self.log_tail());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// SIGTERM: the node finishes, saves its items (`-e`) and exits.
    fn stop_gracefully(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(status.success(), "node {} exited with {status} on SIGTERM:\n{}", self.name, self.log_tail());
                return;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("node {} did not stop on SIGTERM:\n{}", self.name, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn step_clock(&self, offset_secs: i64) {
        std::fs::write(&self.clock_file, format!("{offset_secs:+}\n")).unwrap();
    }

    fn stats(&self) -> Option<BTreeMap<String, String>> {
        let mut stream = TcpStream::connect(self.addr()).ok()?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).ok()?;
        stream.write_all(b"stats\r\n").ok()?;
        let mut reply = Vec::new();
        let mut chunk = [0u8; 16384];
        while !reply.ends_with(b"END\r\n") {
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            reply.extend_from_slice(&chunk[..n]);
        }
        Some(parse_stats(&reply))
    }

    fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.stopped && self.child.is_some() {
            self.signal(libc::SIGCONT);
        }
        self.kill();
    }
}

/// A connection that gives up on a reply after [`REPLY_TIMEOUT`].
struct Conn {
    stream: TcpStream,
    buffer: Vec<u8>,
}

/// What became of a request.
enum Sent {
    /// Its reply, up to and including `\r\n`.
    Reply(Vec<u8>),
    /// Never sent (no connection): nothing happened.
    Never,
    /// Sent, and no reply came: it may or may not have been applied.
    Unknown,
}

impl Conn {
    fn open(addr: SocketAddr) -> Option<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).ok()?;
        stream.set_nodelay(true).ok()?;
        Some(Conn { stream, buffer: Vec::new() })
    }

    /// Sends a request and reads one reply line.
    fn call(&mut self, request: &[u8]) -> Sent {
        if self.stream.write_all(request).is_err() {
            return Sent::Unknown;
        }
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                return Sent::Reply(self.buffer.drain(..end + 2).collect());
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return Sent::Unknown,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// A writer's connections to the nodes, reopened after a failure.
struct Conns {
    addrs: Vec<SocketAddr>,
    open: Vec<Option<Conn>>,
}

impl Conns {
    fn call(&mut self, node: usize, request: &[u8]) -> Sent {
        if self.open[node].is_none() {
            self.open[node] = Conn::open(self.addrs[node]);
        }
        let Some(conn) = self.open[node].as_mut() else {
            return Sent::Never;
        };
        let sent = conn.call(request);
        if !matches!(sent, Sent::Reply(_)) {
            self.open[node] = None;
        }
        sent
    }
}

/// One write of a key's history: the state it leaves, and how it was answered.
#[derive(Clone, Debug)]
struct Written {
    state: Option<String>,
    /// The node that answered it and when, or `None` if no answer came.
    answered: Option<(usize, Instant)>,
}

/// The writes a writer makes to its keys: sets and deletes through the text and
/// meta protocols, each to either node.
fn write_loop(
    writer: usize,
    keys: Vec<usize>,
    addrs: Vec<SocketAddr>,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Vec<Vec<Written>> {
    let mut rng = Rng::new(seed ^ (writer as u64 + 1) << 32);
    let nodes = addrs.len() as u64;
    let mut conns = Conns { open: addrs.iter().map(|_| None).collect(), addrs };
    let mut history: Vec<Vec<Written>> = vec![Vec::new(); keys.len()];
    let mut serial = 0u64;
    let mut last_write = vec![Instant::now(); keys.len()];
    while !stop.load(Ordering::Acquire) {
        let slot = rng.below(keys.len() as u64) as usize;
        if last_write[slot].elapsed() < WRITE_GAP {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let key = format!("soak:{}", keys[slot]);
        let node = rng.below(nodes) as usize;
        serial += 1;
        let value = format!("w{writer}.{serial}");
        let (request, state, answers): (Vec<u8>, Option<String>, &[&[u8]]) = match rng.below(6) {
            0 | 1 => {
                let request = format!("set {key} 0 0 {}\r\n{value}\r\n", value.len());
                (request.into_bytes(), Some(value), &[b"STORED\r\n"])
            }
            2 => {
                let request = format!("ms {key} {} T0\r\n{value}\r\n", value.len());
                (request.into_bytes(), Some(value), &[b"HD\r\n"])
            }
            3 => (format!("delete {key}\r\n").into_bytes(), None, &[b"DELETED\r\n", b"NOT_FOUND\r\n"]),
            4 => (format!("md {key}\r\n").into_bytes(), None, &[b"HD\r\n", b"NF\r\n"]),
            // Quiet: a hit is silent, a miss still answers NF (as memcached does), and
            // the no-op's MN ends it.
            _ => (format!("md {key} q\r\nmn\r\n").into_bytes(), None, &[b"MN\r\n", b"NF\r\n"]),
        };
        let answered = match conns.call(node, &request) {
            Sent::Never => {
                // A node starting (waiting for its sync) or down: try the other later.
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Sent::Unknown => None,
            Sent::Reply(mut reply) => {
                if reply == b"NF\r\n" && request.ends_with(b"mn\r\n") {
                    reply = match conns.call(node, b"") {
                        Sent::Reply(reply) => reply,
                        _ => b"<no MN>".to_vec(),
                    };
                }
                assert!(
                    answers.contains(&&reply[..]),
                    "{key} on node {node}: unexpected {:?}",
                    String::from_utf8_lossy(&reply)
                );
                Some((node, Instant::now()))
            }
        };
        history[slot].push(Written { state, answered });
        last_write[slot] = Instant::now();
    }
    history
}

/// A lock held from `from` to `to` by `holder`.
#[derive(Clone, Debug)]
struct Held {
    lock: usize,
    holder: usize,
    from: Instant,
    to: Instant,
    /// What the holder read of the lock once granted: its CAS, TTL and owner.
    seen: String,
}

/// What a locker saw in one round.
#[derive(Default)]
struct LockRound {
    held: Vec<Held>,
    attempts: u64,
    /// Replies that can only come from a lock held twice: a release that found the
    /// lock gone, or no reply at all.
    anomalies: Vec<String>,
}

/// What an `add` answers on a node that cannot reach a majority of the nodes.
const NO_MAJORITY: &[u8] = b"SERVER_ERROR no majority of nodes reachable\r\n";

/// Races for the locks through `add` on one node until `until`, holding each won
/// lock for a moment before deleting it.
fn lock_loop(locker: usize, node_addr: SocketAddr, seed: u64, until: Instant) -> LockRound {
    let mut rng = Rng::new(seed ^ 0x10C4 ^ locker as u64);
    let mut round = LockRound::default();
    let Some(mut conn) = Conn::open(node_addr) else {
        round.anomalies.push(format!("locker {locker} could not connect"));
        return round;
    };
    while Instant::now() < until {
        let lock = rng.below(LOCKS as u64) as usize;
        let owner = format!("locker{locker}");
        round.attempts += 1;
        let request = format!("add soaklock:{lock} 0 30 {}\r\n{owner}\r\n", owner.len());
        match conn.call(request.as_bytes()) {
            Sent::Reply(reply) if reply == b"STORED\r\n" => {
                let from = Instant::now();
                let mut seen = String::new();
                if let Sent::Reply(line) = conn.call(format!("mg soaklock:{lock} c t v\r\n").as_bytes()) {
                    seen.push_str(String::from_utf8_lossy(&line).trim_end());
                    if line.starts_with(b"VA")
                        && let Sent::Reply(owner) = conn.call(b"")
                    {
                        seen.push(' ');
                        seen.push_str(String::from_utf8_lossy(&owner).trim_end());
                    }
                }
                std::thread::sleep(rng.millis(1, 4));
                let to = Instant::now();
                round.held.push(Held { lock, holder: locker, from, to, seen });
                match conn.call(format!("delete soaklock:{lock}\r\n").as_bytes()) {
                    Sent::Reply(reply) if reply == b"DELETED\r\n" => {}
                    Sent::Reply(reply) => round.anomalies.push(format!(
                        "locker {locker} released lock {lock}: {}",
                        String::from_utf8_lossy(&reply).trim_end()
                    )),
                    _ => {
                        round.anomalies.push(format!("locker {locker}: no reply to the release of lock {lock}"));
                        return round;
                    }
                }
            }
            // Taken, or (three nodes or more) this node cannot reach a majority.
            Sent::Reply(reply) => {
                assert!(reply == b"NOT_STORED\r\n" || reply == NO_MAJORITY, "{}", String::from_utf8_lossy(&reply))
            }
            _ => {
                round.anomalies.push(format!("locker {locker}: no reply to an add"));
                return round;
            }
        }
    }
    round
}

#[derive(Debug, Default)]
struct Figures {
    faults: BTreeMap<&'static str, u64>,
    writes_answered: u64,
    writes_unknown: u64,
    excused_by_kill: u64,
    keys: usize,
    divergent: Vec<String>,
    lost: Vec<String>,
    resurrected: Vec<String>,
    locks_granted: u64,
    lock_attempts: u64,
    lock_rounds_relinked: u64,
    lock_overlaps: Vec<String>,
}

fn soak(mode: &str, count: usize) -> Figures {
    let secs: u64 = env_or("STICKLESS_SOAK_SECS", 15);
    let seed: u64 = env_or("STICKLESS_SOAK_SEED", 16);
    let key_count: usize = env_or("STICKLESS_SOAK_KEYS", 400);
    assert!(std::path::Path::new(LIBFAKETIME).exists(), "{LIBFAKETIME} is missing (Debian's faketime package)");
    let over = if env_or("STICKLESS_SOAK_TLS", 0) == 1 { ", link over mutual TLS" } else { "" };
    eprintln!("soak: {count} nodes, mode {mode}, {secs} s, seed {seed}, {key_count} keys{over}");
    let dir = std::env::temp_dir().join(format!("stickless-soak-{}-{mode}-{count}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ports = Rng::new(seed ^ u64::from(std::process::id()) ^ mode.len() as u64 ^ (count as u64) << 8);
    let client_ports: Vec<u16> = (0..count).map(|_| fixed_port(&mut ports)).collect();
    let repl_ports: Vec<u16> = (0..count).map(|_| fixed_port(&mut ports)).collect();
    // Node `from` dials node `to` through the relay `(from, to)`.
    let relays: Vec<(usize, usize, Relay)> = (0..count)
        .flat_map(|from| (0..count).filter(move |&to| to != from).map(move |to| (from, to)))
        .map(|(from, to)| (from, to, Relay::start(SocketAddr::from(([127, 0, 0, 1], repl_ports[to])))))
        .collect();
    let pki = (env_or("STICKLESS_SOAK_TLS", 0) == 1).then(|| Pki::standard(&format!("soak-{mode}-{count}")));
    let mut nodes: Vec<Node> = (0..count)
        .map(|i| {
            let mut args = vec![
                "-l".to_string(),
                "127.0.0.1".into(),
                "-p".into(),
                client_ports[i].to_string(),
                "-t".into(),
                "2".into(),
                "-v".into(),
                format!("--node-id={}", i + 1),
                format!("--repl-listen=127.0.0.1:{}", repl_ports[i]),
                format!("--repl-sync={mode}"),
                format!("--repl-timeout={REPL_TIMEOUT_SECS}"),
                // Used by the graceful restarts; a SIGKILL leaves no file (a loaded
                // one is removed), so those restart empty.
                format!("--memory-file={}", dir.join(format!("items-{i}")).display()),
            ];
            // Each dials every other through the relay in front of it.
            for (_, _, relay) in relays.iter().filter(|(from, ..)| *from == i) {
                args.push(format!("--peer=127.0.0.1:{}", relay.port));
            }
            if let Some(pki) = &pki {
                // Every certificate names 127.0.0.1; the third node shares the first's.
                let name = ["server", "client"][i % 2];
                args.push(format!("--repl-tls-cert={}", pki.path(&format!("{name}.pem")).display()));
                args.push(format!("--repl-tls-key={}", pki.path(&format!("{name}.key")).display()));
                args.push(format!("--repl-tls-ca={}", pki.path("ca.pem").display()));
            }
            Node::new(["A", "B", "C"][i], args, client_ports[i], &dir)
        })
        .collect();
    // All start at once: each waits (up to --repl-wait-sync) for a peer's sync.
    std::thread::scope(|scope| {
        let (first, rest) = nodes.split_first_mut().expect("nodes");
        for node in rest {
            scope.spawn(|| node.start());
        }
        first.start();
    });
    // Caught up: every link up, no sync running, and each node has applied every
    // change each other had recorded when the wait began (writers keep writing
    // meanwhile). Node `i` is node id `i + 1`.
    let caught_up = |nodes: &[Node]| -> Result<(), String> {
        let deadline = Instant::now() + CATCH_UP;
        let number = |s: &BTreeMap<String, String>, name: &str| s[name].parse::<u64>().unwrap();
        let mut recorded: Option<Vec<(String, u64)>> = None;
        loop {
            let stats: Vec<_> = nodes.iter().map(Node::stats).collect();
            if stats.iter().all(Option::is_some) {
                let stats: Vec<&BTreeMap<String, String>> = stats.iter().flatten().collect();
                let up = |s: &BTreeMap<String, String>| s["repl_peer_state"] == "up" && s["repl_syncing"] == "0";
                // A node's run is named by its pid here: a restart starts its numbering over.
                let now: Vec<(String, u64)> =
                    stats.iter().map(|s| (s["pid"].clone(), number(s, "repl_last_seq"))).collect();
                let target = match &recorded {
                    Some(then) if then.iter().zip(&now).all(|(then, now)| then.0 == now.0) => then.clone(),
                    _ => {
                        recorded = Some(now.clone());
                        now
                    }
                };
                let applied = |at: usize, of: usize| {
                    stats[at].get(&format!("repl_peer_{}_applied_seq", of + 1)).map_or(0, |n| n.parse().unwrap())
                };
                let caught = (0..nodes.len())
                    .all(|at| (0..nodes.len()).filter(|&of| of != at).all(|of| applied(at, of) >= target[of].1));
                if stats.iter().all(|s| up(s)) && caught {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("not caught up after {CATCH_UP:?}: {:?}", stats));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let fail = |nodes: &[Node], why: String| -> ! {
        let tails: Vec<String> = nodes.iter().map(Node::log_tail).collect();
        panic!("soak ({count} nodes, mode {mode}, seed {seed}): {why}\n{}", tails.join("\n"));
    };
    if let Err(why) = caught_up(&nodes) {
        fail(&nodes, why);
    }

    let addrs: Vec<SocketAddr> = nodes.iter().map(Node::addr).collect();
    let writers = 4;
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..writers)
        .map(|writer| {
            let keys: Vec<usize> = (writer..key_count).step_by(writers).collect();
            let stop = Arc::clone(&stop);
            let addrs = addrs.clone();
            std::thread::spawn(move || (keys.clone(), write_loop(writer, keys, addrs, seed, stop)))
        })
        .collect();

    let mut rng = Rng::new(seed);
    let mut figures = Figures::default();
    let mut kills: Vec<(usize, Instant)> = Vec::new();
    let started = Instant::now();
    let mut timeline = Vec::new();
    let end = started + Duration::from_secs(secs);
    while Instant::now() < end {
        // Linked: the lockers race on both nodes, once the link has stayed the same
        // for a while. A link that just replaced another is up before the peer has
        // asked for this node's changes, and until then each node decides alone.
        let links =
            |nodes: &[Node]| -> Vec<_> { nodes.iter().map(|n| n.stats().map(|s| s["repl_links"].clone())).collect() };
        let settle_by = Instant::now() + CATCH_UP;
        let mut links_before = links(&nodes);
        loop {
            std::thread::sleep(LINK_SETTLED);
            let now = links(&nodes);
            if now == links_before || Instant::now() > settle_by {
                break;
            }
            links_before = now;
        }
        let until = Instant::now() + rng.millis(300, 1200);
        let lockers: Vec<_> = (0..count)
            .map(|locker| {
                let (addr, seed) = (addrs[locker], seed ^ rng.next());
                std::thread::spawn(move || lock_loop(locker, addr, seed, until))
            })
            .collect();
        let mut round = LockRound::default();
        for locker in lockers {
            let seen = locker.join().expect("a locker failed");
            round.attempts += seen.attempts;
            round.held.extend(seen.held);
            round.anomalies.extend(seen.anomalies);
        }
        figures.lock_attempts += round.attempts;
        // A round during which the link went down and up again does not count: the
        // nodes each granted alone meanwhile, as documented.
        let links_after = links(&nodes);
        if links_before == links_after && links_after.iter().all(Option::is_some) {
            // Locks granted while linked never overlap.
            let after = timeline.last().map_or("the start", String::as_str);
            round.held.sort_by_key(|h| (h.lock, h.from));
            for pair in round.held.windows(2) {
                if pair[0].lock == pair[1].lock && pair[1].from < pair[0].to && pair[0].holder != pair[1].holder {
                    round.anomalies.push(format!(
                        "lock {} held by both lockers: {:?} / {:?}",
                        pair[0].lock, pair[0].seen, pair[1].seen
                    ));
                }
            }
            figures.lock_overlaps.extend(round.anomalies.into_iter().map(|line| format!("{line} (after {after})")));
            figures.locks_granted += round.held.len() as u64;
        } else {
            figures.lock_rounds_relinked += 1;
        }

        // One fault, then healed.
        let victim = rng.below(count as u64) as usize;
        let fault_began = Instant::now();
        let lasting = rng.millis(300, 2500);
        let touching = |(from, to, _): &&(usize, usize, Relay)| *from == victim || *to == victim;
        let fault = match rng.below(if count > 2 { 6 } else { 5 }) {
            0 => {
                // The victim's links, both ways: with two nodes, the link; with more,
                // the victim partitioned from the rest.
                relays.iter().filter(touching).for_each(|(.., relay)| relay.cut());
                std::thread::sleep(lasting);
                relays.iter().for_each(|(.., relay)| relay.heal());
                "link cut"
            }
            5 => {
                // One link alone, both ways: its two ends still reach the others.
                let other = (victim + 1 + rng.below(count as u64 - 1) as usize) % count;
                let link = |(from, to, _): &&(usize, usize, Relay)| {
                    (*from, *to) == (victim, other) || (*from, *to) == (other, victim)
                };
                relays.iter().filter(link).for_each(|(.., relay)| relay.cut());
                std::thread::sleep(lasting);
                relays.iter().for_each(|(.., relay)| relay.heal());
                "single link cut"
            }
            1 => {
                nodes[victim].signal(libc::SIGSTOP);
                nodes[victim].stopped = true;
                std::thread::sleep(lasting);
                nodes[victim].signal(libc::SIGCONT);
                nodes[victim].stopped = false;
                "SIGSTOP"
            }
            2 => {
                nodes[victim].kill();
                kills.push((victim, Instant::now()));
                std::thread::sleep(rng.millis(100, 800));
                nodes[victim].start();
                "SIGKILL and restart"
            }
            3 => {
                // Nothing it answered may be lost: its items, tombstones and
                // replication position come back from its -e file.
                nodes[victim].stop_gracefully();
                std::thread::sleep(rng.millis(100, 800));
                nodes[victim].start();
                "SIGTERM and warm restart"
            }
            _ => {
                let step = 1 + rng.below(3);
                nodes[victim].step_clock(step as i64);
                std::thread::sleep(lasting.max(Duration::from_millis(1500)));
                nodes[victim].step_clock(0);
                // The step outlasts itself: both nodes' versions stay ahead of the wall
                // clock for `step` seconds, counting writes rather than time, so writes
                // on two sides of a cut in that while keep no real-time order (README,
                // failures). The next fault waits until it is over.
                std::thread::sleep(Duration::from_secs(step + 1));
                "clock step"
            }
        };
        *figures.faults.entry(fault).or_default() += 1;
        timeline.push(format!("{fault} of node {victim} from {:?} to {:?}", fault_began - started, started.elapsed()));
        if let Err(why) = caught_up(&nodes) {
            fail(&nodes, format!("after a {fault} of node {victim}: {why}"));
        }
    }
    stop.store(true, Ordering::Release);
    let histories: Vec<_> = handles.into_iter().map(|h| h.join().expect("a writer failed")).collect();
    if let Err(why) = caught_up(&nodes) {
        fail(&nodes, format!("at the end: {why}"));
    }

    // Every key, read from both nodes.
    let read_all = |node: &Node, keys: &[String]| -> BTreeMap<String, String> {
        let mut conn = Conn::open(node.addr()).expect("connect for the final read");
        let mut seen = BTreeMap::new();
        for key in keys {
            let Sent::Reply(line) = conn.call(format!("mg {key} v\r\n").as_bytes()) else {
                fail(&nodes, format!("no reply reading {key}"));
            };
            if line.starts_with(b"VA ") {
                let Sent::Reply(value) = conn.call(b"") else { fail(&nodes, "a value line without data".into()) };
                seen.insert(key.clone(), String::from_utf8_lossy(&value[..value.len() - 2]).into_owned());
            } else {
                assert_eq!(line, b"EN\r\n", "{key}");
            }
        }
        seen
    };
    let all_keys: Vec<String> = (0..key_count).map(|k| format!("soak:{k}")).collect();
    let on: Vec<BTreeMap<String, String>> = nodes.iter().map(|node| read_all(node, &all_keys)).collect();
    figures.keys = key_count;
    for (keys, history) in &histories {
        for (slot, writes) in history.iter().enumerate() {
            let key = format!("soak:{}", keys[slot]);
            let held: Vec<Option<String>> = on.iter().map(|seen| seen.get(&key).cloned()).collect();
            let a = held[0].clone();
            for write in writes {
                if write.answered.is_some() {
                    figures.writes_answered += 1;
                } else {
                    figures.writes_unknown += 1;
                }
            }
            if held.iter().any(|other| *other != a) {
                figures.divergent.push(format!("{key}: {held:?}"));
                continue;
            }
            // What the key may hold: its last answered write's state (or nothing, if
            // none was answered), or that of a write after it whose outcome is not
            // known: unanswered, or answered by a node killed within its lag.
            let excused = |write: &Written| {
                mode == "async"
                    && write.answered.is_some_and(|(node, at)| {
                        kills
                            .iter()
                            .any(|&(killed, when)| killed == node && when >= at && when - at < ASYNC_LOSS_WINDOW)
                    })
            };
            let mut allowed: Vec<Option<String>> = vec![None];
            let mut last_answered: Option<&Written> = None;
            for write in writes {
                if write.answered.is_some() && !excused(write) {
                    allowed = vec![write.state.clone()];
                    last_answered = Some(write);
                } else {
                    if write.answered.is_some() {
                        figures.excused_by_kill += 1;
                    }
                    allowed.push(write.state.clone());
                }
            }
            if !allowed.contains(&a) {
                let recent: Vec<String> = writes
                    .iter()
                    .rev()
                    .take(4)
                    .map(|w| match w.answered {
                        Some((node, at)) => format!("{:?} by {} at {:?}", w.state, node, at - started),
                        None => format!("{:?} unanswered", w.state),
                    })
                    .collect();
                let line = format!("{key}: holds {a:?}, expected one of {allowed:?}; last writes {recent:?}");
                if a.is_some() && last_answered.is_some_and(|w| w.state.is_none()) {
                    figures.resurrected.push(line);
                } else {
                    figures.lost.push(line);
                }
            }
        }
    }
    if !(figures.lost.is_empty() && figures.resurrected.is_empty()) {
        eprintln!("faults: {timeline:#?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "soak {count} nodes {mode}: faults {:?}; {} writes answered, {} unknown, {} excused by a kill; {} keys: {} divergent, {} lost, \
         {} resurrected; {} locks granted in {} attempts, {} overlapping ({} rounds relinked)",
        figures.faults,
        figures.writes_answered,
        figures.writes_unknown,
        figures.excused_by_kill,
        figures.keys,
        figures.divergent.len(),
        figures.lost.len(),
        figures.resurrected.len(),
        figures.locks_granted,
        figures.lock_attempts,
        figures.lock_overlaps.len(),
        figures.lock_rounds_relinked
    );
    figures
}

fn assert_clean(figures: &Figures) {
    assert!(figures.divergent.is_empty(), "divergent keys: {:#?}", figures.divergent);
    assert!(figures.lost.is_empty(), "answered writes lost: {:#?}", figures.lost);
    assert!(figures.resurrected.is_empty(), "deleted keys back: {:#?}", figures.resurrected);
    assert!(figures.lock_overlaps.is_empty(), "locks held twice: {:#?}", figures.lock_overlaps);
    assert!(figures.faults.values().sum::<u64>() >= 3, "too few faults: {:?}", figures.faults);
    assert!(figures.writes_answered > 1000, "too little traffic: {figures:?}");
    assert!(figures.locks_granted > 10, "too few locks granted: {figures:?}");
}

#[test]
fn async_mode_survives_every_fault() {
    assert_clean(&soak("async", 2));
}

#[test]
fn ack_mode_survives_every_fault() {
    assert_clean(&soak("ack", 2));
}

#[test]
fn three_nodes_async_mode_survive_every_fault() {
    assert_clean(&soak("async", 3));
}

#[test]
fn three_nodes_ack_mode_survive_every_fault() {
    assert_clean(&soak("ack", 3));
}
