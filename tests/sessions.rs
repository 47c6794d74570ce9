//! What session clients put on the wire (../README.md, "Sessions"), against a
//! stickless pair, with requests going to either node as a round-robin load
//! balancer sends them: php-memcached's session handler with its locking, over its
//! default binary protocol; pecl memcache's incr/add lock; and
//! memcached-session-manager's lock:, validity: and bak: keys.

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
