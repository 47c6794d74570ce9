//! What session clients put on the wire (../README.md, "Sessions"), against a
//! stickless pair, with requests going to either node as a round-robin load
//! balancer sends them: php-memcached's session handler with its locking, over its
//! default binary protocol; pecl memcache's incr/add lock; and
//! memcached-session-manager's lock:, validity: and bak: keys. Then the failover
//! cycle of the README's table: a node killed while every session is updated, one
//! PHP process per request, in each supported setup, beside the setups that lose
//! sessions (the handler's defaults with both nodes listed, two memcached servers).

mod common;

use common::{Client, Daemon};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONVERGE: Duration = Duration::from_secs(5);
/// Every PHP process runs under coreutils' `timeout`, so a hung one fails the test.
const CLIENT_TIMEOUT_SECS: &str = "60";

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + CONVERGE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A linked pair; `extra` for both nodes.
fn pair(extra: &[&str]) -> (Daemon, Daemon) {
    let mut args = vec!["--repl-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let first = Daemon::start(&args);
    let peer = first.repl_addr.unwrap().to_string();
    let mut second_args = args.clone();
    second_args.extend_from_slice(&["--peer", &peer]);
    let second = Daemon::start(&second_args);
    let (mut a, mut b) = (Client::connect(first.addr), Client::connect(second.addr));
    assert_eq!(a.step(b"set linked 0 0 1\r\n1\r\n"), b"STORED\r\n");
    wait_for("the pair to link", || b.step(b"mg linked v\r\n") == b"VA 1\r\n1\r\n");
    (first, second)
}

/// Sends `requests[i]` to `addrs[i]` all at once, then reads each reply up to `end`.
fn race(addrs: &[SocketAddr], requests: &[Vec<u8>], end: &[u8]) -> Vec<String> {
    let mut clients: Vec<Client> = addrs.iter().map(|addr| Client::connect(*addr)).collect();
    for (client, request) in clients.iter_mut().zip(requests) {
        client.send(request);
    }
    clients.iter_mut().map(|c| String::from_utf8_lossy(&c.request(b"", end)).into_owned()).collect()
}

fn php_session(mode: &str, server: SocketAddr, id: &str) -> String {
    let script = format!("{}/tests/clients/php_session.php", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("timeout")
        .args([CLIENT_TIMEOUT_SECS, "php", &script, mode, &server.to_string(), id])
        .output()
        .expect("php (scripts/test installs it)");
    assert!(output.status.success(), "{mode}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// php-memcached's handler (binary protocol, locking on) with each request on the
/// other node: the session follows, and a request holding the session's lock on one
/// node keeps out a request on the other.
#[test]
fn php_memcached_sessions_follow_requests_across_the_pair_and_lock_across_it() {
    // Ack mode: a write's reply means the other node has it, so the next request
    // reads it wherever it lands.
    let (a, b) = pair(&["--repl-sync", "ack"]);
    let nodes = [a.addr, b.addr];
    for request in 0..6 {
        assert_eq!(php_session("count", nodes[request % 2], "sess-rr"), format!("{}\n", request + 1));
    }

    let script = format!("{}/tests/clients/php_session.php", env!("CARGO_MANIFEST_DIR"));
    let mut holder = Command::new("timeout")
        .args([CLIENT_TIMEOUT_SECS, "php", &script, "hold", &a.addr.to_string(), "sess-rr"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut holder_out = BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    holder_out.read_line(&mut line).unwrap();
    assert_eq!(line, "locked\n");
    assert_eq!(php_session("try", b.addr, "sess-rr"), "refused\n");
    holder.stdin.take().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    holder_out.read_line(&mut line).unwrap();
    assert_eq!(line, "released\n");
    assert!(holder.wait().unwrap().success());
    assert_eq!(php_session("try", b.addr, "sess-rr"), "acquired {\"count\":6,\"held\":\"yes\"}\n");
}

/// pecl memcache's lock: a pipelined `incr <sid>.lock 1`, `add <sid>.lock`, `get
/// <sid>`; the lock is taken when the incr answers 1 or the add is stored, and
/// released by setting it to 0. Two requests on the two nodes at once: one takes it.
#[test]
fn pecl_memcache_locks_are_exclusive_across_the_pair() {
    let (a, b) = pair(&[]);
    // The extension's pipeline, and a meta no-op to mark where its replies end.
    let acquire = |sid: &str| -> Vec<u8> {
        format!("incr {sid}.lock 1\r\nadd {sid}.lock 0 15 1\r\n1\r\nget {sid}\r\nmn\r\n").into_bytes()
    };
    let locked = |reply: &str| reply.starts_with("1\r\n") || reply.contains("\r\nSTORED\r\n");
    for round in 0..60 {
        let sid = format!("pecl{round}");
        // The first round of each session finds no lock key (the add takes it); later
        // ones find it released to 0 (the incr takes it).
        for attempt in 0..2 {
            let replies = race(&[a.addr, b.addr], &[acquire(&sid), acquire(&sid)], b"MN\r\n");
            let winners = replies.iter().filter(|r| locked(r)).count();
            assert_eq!(winners, 1, "round {round}, attempt {attempt}: {replies:?}");
            // The holder releases: the lock key goes back to 0.
            let holder = if locked(&replies[0]) { a.addr } else { b.addr };
            let mut client = Client::connect(holder);
            assert_eq!(client.step(format!("set {sid}.lock 0 15 1\r\n0\r\n").as_bytes()), b"STORED\r\n");
            let other = if holder == a.addr { b.addr } else { a.addr };
            let mut other = Client::connect(other);
            wait_for("the release on the other node", || {
                other.step(format!("mg {sid}.lock v\r\n").as_bytes()) == b"VA 1\r\n0\r\n"
            });
        }
    }
}

/// memcached-session-manager: `add lock:<sid>` to lock, the session and
/// `validity:<sid>` read and written, a `bak:` copy on the next node, `delete
/// lock:<sid>` to unlock. Racing lockers on the two nodes: one wins; the session
/// written through one node reads back, with its backup, from the other.
#[test]
fn memcached_session_manager_keys_work_across_the_pair() {
    let (a, b) = pair(&["--repl-sync", "ack"]);
    for round in 0..40 {
        let sid = format!("{round:08X}-n1");
        let lock = |owner: &str| format!("add lock:{sid} 0 5 6\r\n{owner}\r\n").into_bytes();
        let replies = race(&[a.addr, b.addr], &[lock("locked"), lock("locked")], b"\r\n");
        assert_eq!(replies.iter().filter(|r| *r == "STORED\r\n").count(), 1, "round {round}: {replies:?}");
        let (holder, other) = if replies[0] == "STORED\r\n" { (a.addr, b.addr) } else { (b.addr, a.addr) };
        let mut client = Client::connect(holder);
        let session = format!("session-data-{round}");
        let validity = "\x01\x02validity";
        let mut writes = Vec::new();
        for (key, value) in
            [(sid.clone(), session.as_str()), (format!("validity:{sid}"), validity), (format!("bak:{sid}"), &session)]
        {
            writes.extend_from_slice(format!("set {key} 0 1800 {}\r\n{value}\r\n", value.len()).as_bytes());
        }
        assert_eq!(client.step(&writes), b"STORED\r\n".repeat(3));
        assert_eq!(client.step(format!("delete lock:{sid}\r\n").as_bytes()), b"DELETED\r\n");
        // Ack mode: the other node has all of it already.
        let mut reader = Client::connect(other);
        let expected = format!(
            "VALUE {sid} 0 {}\r\n{session}\r\nVALUE validity:{sid} 0 {}\r\n{validity}\r\nVALUE bak:{sid} 0 {}\r\n{session}\r\nEND\r\n",
            session.len(),
            validity.len(),
            session.len()
        );
        assert_eq!(
            String::from_utf8_lossy(
                &reader.request(format!("get {sid} validity:{sid} bak:{sid}\r\n").as_bytes(), b"END\r\n")
            ),
            expected
        );
        assert_eq!(reader.step(format!("add lock:{sid} 0 5 6\r\nlocked\r\n").as_bytes()), b"STORED\r\n");
    }
}

/// How many sessions each failover cycle runs (the README's table ran 50).
const FAILOVER_SESSIONS: usize = 24;

/// A port below Linux's ephemeral range, free now: a restarted server binds it
/// again, which a port the kernel hands out to outgoing connections could take.
/// Handed out in order from a fixed base, so that the clients' hashing of
/// `host:port` sends the same sessions to the same server in every run (a run
/// where one port is taken moves on to the next).
fn fixed_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(24_000);
    loop {
        let port = NEXT.fetch_add(1, Ordering::AcqRel);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One request through php-memcached's session handler (its own process).
fn php_request(mode: &str, save_path: &str, setup: &str, id: &str) -> String {
    let script = format!("{}/tests/clients/php_failover.php", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("timeout")
        .args([CLIENT_TIMEOUT_SECS, "php", &script, mode, save_path, setup, id])
        .output()
        .expect("php (scripts/test installs it)");
    assert!(output.status.success(), "{mode}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// What one setup went through: the kill, update, restart, read cycle.
#[derive(Debug, Default)]
struct Cycle {
    /// Updates while a node was dead that found their session.
    updated: usize,
    /// Sessions that read back with their update after the node returned.
    intact: usize,
}

/// A cache node the cycle can kill and start again on the same ports.
trait CacheNode {
    fn kill(&mut self);
    fn restart(&mut self);
}

/// Two cache servers, `[a, b]`, and where each request's PHP process points
/// (`save_path(request, b_dead)`, so a setup can route around a dead node as its
/// load balancer would); runs the cycle: `FAILOVER_SESSIONS` sessions written, A
/// killed, each updated, A started again, each read.
fn failover_cycle(
    nodes: &mut [Box<dyn CacheNode>; 2],
    setup: &str,
    save_path: impl Fn(usize, bool) -> String,
) -> Cycle {
    // Fixed ids, like the ports: each run hashes them alike.
    let ids: Vec<String> = (0..FAILOVER_SESSIONS).map(|i| format!("failover{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(php_request("write", &save_path(i, false), setup, id), "ok", "write {id}");
    }
    nodes[0].kill();
    let mut cycle = Cycle::default();
    for (i, id) in ids.iter().enumerate() {
        cycle.updated += usize::from(php_request("update", &save_path(i, true), setup, id) == "ok");
    }
    nodes[0].restart();
    for (i, id) in ids.iter().enumerate() {
        cycle.intact += usize::from(php_request("read", &save_path(i, false), setup, id) == "2");
    }
    cycle
}

/// A stickless node on fixed ports, in a pair: its peer is the other's replication port.
struct StickNode {
    daemon: Option<Daemon>,
    args: Vec<String>,
}

impl StickNode {
    fn start(args: Vec<String>) -> StickNode {
        let daemon = Some(Daemon::start(&args.iter().map(String::as_str).collect::<Vec<_>>()));
        StickNode { daemon, args }
    }
}

impl CacheNode for StickNode {
    fn kill(&mut self) {
        // Dropping the daemon kills it with SIGKILL, by its PID.
        self.daemon.take();
    }
    fn restart(&mut self) {
        self.daemon = Some(Daemon::start(&self.args.iter().map(String::as_str).collect::<Vec<_>>()));
    }
}

/// A stickless pair on fixed client ports; returns the nodes and their ports.
fn fixed_pair() -> ([Box<dyn CacheNode>; 2], [u16; 2]) {
    let (ports, repl) = ([fixed_port(), fixed_port()], [fixed_port(), fixed_port()]);
    let node = |i: usize| {
        let mut args: Vec<String> = ["-p", &ports[i].to_string(), "--repl-listen", &format!("127.0.0.1:{}", repl[i])]
            .map(String::from)
            .to_vec();
        args.extend(["--peer".into(), format!("127.0.0.1:{}", repl[1 - i]), "--repl-sync".into(), "ack".into()]);
        // Start without waiting for a peer that is not there yet; a restart waits.
        args.extend(["--node-id".into(), (i + 1).to_string()]);
        args
    };
    let mut first = node(0);
    first.extend(["--repl-wait-sync".into(), "0".into()]);
    let a = StickNode::start(first);
    let b = StickNode::start(node(1));
    let mut a = a;
    // A's restarts wait for B's sync, as a node behind a load balancer should.
    a.args.truncate(a.args.len() - 2);
    let mut probe = Client::connect(SocketAddr::from(([127, 0, 0, 1], ports[1])));
    assert_eq!(probe.step(b"set linked 0 0 1\r\n1\r\n"), b"STORED\r\n");
    let mut on_a = Client::connect(SocketAddr::from(([127, 0, 0, 1], ports[0])));
    wait_for("the pair to link", || on_a.step(b"mg linked v\r\n") == b"VA 1\r\n1\r\n");
    ([Box::new(a), Box::new(b)], ports)
}

/// Debian's memcached on a fixed port, killed and started again empty.
struct MemcachedNode {
    child: Option<std::process::Child>,
    port: u16,
}

impl MemcachedNode {
    fn start(port: u16) -> MemcachedNode {
        let mut node = MemcachedNode { child: None, port };
        node.restart();
        node
    }
}

impl CacheNode for MemcachedNode {
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    fn restart(&mut self) {
        let child = Command::new("memcached")
            .args(["-l", "127.0.0.1", "-p", &self.port.to_string(), "-U", "0", "-u", "root"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("memcached (scripts/test installs it)");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_for("memcached to listen", || std::net::TcpStream::connect(addr).is_ok());
    }
}

impl Drop for MemcachedNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// haproxy in front of a pair, as the README recommends: one TCP address, the first
/// node preferred and the second a backup; a refused connection marks the first
/// down at once. Stopped by its PID on drop.
struct Failover {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Failover {
    fn start(ports: [u16; 2]) -> Failover {
        let port = fixed_port();
        let dir = std::env::temp_dir().join(format!("stickless-sessions-haproxy-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("haproxy.cfg");
        std::fs::write(
            &config,
            format!(
                "defaults\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n\
                 listen cache\n    bind 127.0.0.1:{port}\n    mode tcp\n    option redispatch\n    retries 3\n\
                 \x20   server a 127.0.0.1:{} check inter 100ms fall 1 rise 2 observe layer4 error-limit 1 \
                 on-error mark-down\n\
                 \x20   server b 127.0.0.1:{} check inter 100ms fall 1 rise 2 backup\n",
                ports[0], ports[1]
            ),
        )
        .unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (scripts/test installs it)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for("haproxy to listen", || std::net::TcpStream::connect(addr).is_ok());
        Failover { child, port, dir }
    }
}

impl Drop for Failover {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn both(ports: [u16; 2]) -> String {
    format!("127.0.0.1:{},127.0.0.1:{}", ports[0], ports[1])
}

/// The README's table, setup by setup: a node killed with SIGKILL while every
/// session is updated, one PHP process per request, then started again and every
/// session read. The supported stickless setups lose nothing and fail no request;
/// the others are measured as they are, so the README's figures stay true.
#[test]
fn php_sessions_survive_a_dead_node_in_every_supported_setup() {
    // Both nodes listed with php-memcached's failover settings: it writes each
    // session to both, and leaves a failed node out for the rest of the request
    // (README, Sessions).
    let (mut nodes, ports) = fixed_pair();
    let listed = failover_cycle(&mut nodes, "failover", |_, _| both(ports));
    assert_eq!((listed.updated, listed.intact), (FAILOVER_SESSIONS, FAILOVER_SESSIONS), "both listed, replicas 1");
    drop(nodes);

    // One failover address (haproxy: the first node, the second as backup), the
    // handler's defaults: the README's recommendation.
    let (mut nodes, ports) = fixed_pair();
    let proxy = Failover::start(ports);
    let front = format!("127.0.0.1:{}", proxy.port);
    let fronted = failover_cycle(&mut nodes, "defaults", |_, _| front.clone());
    assert_eq!((fronted.updated, fronted.intact), (FAILOVER_SESSIONS, FAILOVER_SESSIONS), "one failover address");
    drop((proxy, nodes));

    // The local node on every app server: requests alternate between two app
    // servers, each pointing at its own node; while A's host is down, the load
    // balancer sends every request to B's.
    let (mut nodes, ports) = fixed_pair();
    let local = failover_cycle(&mut nodes, "defaults", |request, a_dead| {
        let app = if a_dead { 1 } else { request % 2 };
        format!("127.0.0.1:{}", ports[app])
    });
    assert_eq!((local.updated, local.intact), (FAILOVER_SESSIONS, FAILOVER_SESSIONS), "local node");
    drop(nodes);

    // pecl memcache's handler at its defaults, both nodes listed: it writes each
    // session to two servers (memcache.session_redundancy=2) and reads the next
    // when one fails (memcache.allow_failover=1).
    let (mut nodes, ports) = fixed_pair();
    let pecl = failover_cycle(&mut nodes, "pecl", |_, _| both(ports));
    assert_eq!((pecl.updated, pecl.intact), (FAILOVER_SESSIONS, FAILOVER_SESSIONS), "pecl memcache");
    drop(nodes);

    // The naive setup: both nodes listed, the handler's defaults. php-memcached
    // hashes each session to one node and never asks the other, so the sessions
    // hashed to the dead node fail their request (nothing a server can answer: no
    // stickless node is asked). The pair still holds their last saved state.
    let (mut nodes, ports) = fixed_pair();
    let naive = failover_cycle(&mut nodes, "defaults", |_, _| both(ports));
    assert!(naive.updated < FAILOVER_SESSIONS && naive.updated > 0, "defaults: {naive:?}");
    assert_eq!(naive.intact, naive.updated, "every update that succeeded is kept: {naive:?}");
    drop(nodes);

    // What PHP users do today: two of Debian's memcached, php-memcached's own
    // replication. Updates succeed, but the restarted, empty server is read first
    // for the sessions hashed to it: those users are logged out.
    let ports = [fixed_port(), fixed_port()];
    let mut nodes: [Box<dyn CacheNode>; 2] =
        [Box::new(MemcachedNode::start(ports[0])), Box::new(MemcachedNode::start(ports[1]))];
    let memcached = failover_cycle(&mut nodes, "failover", |_, _| both(ports));
    assert_eq!(memcached.updated, FAILOVER_SESSIONS, "memcached, failover settings: {memcached:?}");
    assert!(memcached.intact < FAILOVER_SESSIONS, "memcached loses the sessions it reads first from the empty server");
    drop(nodes);
    // pecl memcache over the same two memcached servers loses them the same way.
    let ports = [fixed_port(), fixed_port()];
    let mut nodes: [Box<dyn CacheNode>; 2] =
        [Box::new(MemcachedNode::start(ports[0])), Box::new(MemcachedNode::start(ports[1]))];
    let memcached_pecl = failover_cycle(&mut nodes, "pecl", |_, _| both(ports));
    assert_eq!(memcached_pecl.updated, FAILOVER_SESSIONS, "memcached, pecl memcache: {memcached_pecl:?}");
    assert!(memcached_pecl.intact < FAILOVER_SESSIONS, "pecl memcache reads the empty server too");
    eprintln!(
        "of {FAILOVER_SESSIONS} sessions: both listed, failover {listed:?}; one address {fronted:?}; local node \
         {local:?}; pecl memcache {pecl:?}; both listed, defaults {naive:?}; memcached pair, failover \
         {memcached:?}; memcached pair, pecl memcache {memcached_pecl:?}"
    );
}
