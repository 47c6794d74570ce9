//! Claims by majority on real daemons: three nodes in a full mesh (each link
//! through a relay the test cuts), and a pair run with `--repl-claims majority`.
//! A node cut off from the majority grants no claim and says why in each
//! protocol's words, keeps serving plain reads and writes, and turns its
//! `/health` to 503; PHP's session handlers on it fail cleanly. Every wait has a
//! deadline; every process is ended by its PID.

mod common;

use common::mesh::{Mesh, keys};
use common::nodes::{CONVERGE, Node, Relay, wait_for};
use common::{binary_request, show};
use std::process::Command;
use std::time::{Duration, Instant};

/// What each text and meta claim answers on a node without a majority.
const NO_MAJORITY: &[u8] = b"SERVER_ERROR no majority of nodes reachable\r\n";
/// The binary protocol's "temporary failure" (protocol_binary.h `ETMPFAIL`).
const ETMPFAIL: u16 = 0x86;

const HEALTHY: &str = "HTTP/1.1 200 OK";
const UNHEALTHY: &str = "HTTP/1.1 503 Service Unavailable";

/// A mesh whose nodes notice a cut within a second and serve `/health`.
fn mesh(extra: &[&str]) -> Mesh {
    let mut args = vec!["--repl-timeout=1", "--metrics-listen=127.0.0.1:0", "--aspnet-listen=127.0.0.1:0"];
    args.extend_from_slice(extra);
    Mesh::start(&args)
}

fn binary_status(reply: &[u8]) -> u16 {
    u16::from_be_bytes([reply[6], reply[7]])
}

#[test]
fn a_node_cut_off_from_the_majority_grants_nothing_and_says_why() {
    let mesh = mesh(&[]);
    for index in 0..3 {
        let (status, body) = mesh.node(index).http_get("/health");
        assert_eq!((status.as_str(), body.as_str()), (HEALTHY, "ok: 3 of 3 nodes reachable\n"), "node {index}");
    }
    let mut client = mesh.node(0).client();
    assert_eq!(client.step(b"add before 0 0 1\r\nb\r\n"), b"STORED\r\n");
    assert_eq!(client.step(b"set counter 0 0 1\r\n5\r\n"), b"STORED\r\n");
    let mut state = common::Client::connect(mesh.node(0).aspnet.expect("--aspnet-listen"));
    let put = b"PUT /app/sess1 HTTP/1.1\r\nHost: x\r\nTimeout: 20\r\nContent-Length: 1\r\n\r\ns";
    assert!(state.request(put, b"\r\n\r\n").starts_with(b"HTTP/1.1 200 OK\r\n"));
    mesh.wait_same(&keys(&["before", "counter", "aspnet:/app/sess1"]));

    mesh.partition(0);
    wait_for("node 0 to know it is in the minority", CONVERGE, || mesh.node(0).http_get("/health").0 == UNHEALTHY);
    let (_, body) = mesh.node(0).http_get("/health");
    assert_eq!(body, "no majority: 1 of 3 nodes reachable, 2 needed\n");
    let mut client = mesh.node(0).client();
    // Every claim, in every protocol, is refused untried.
    assert_eq!(client.step(b"add lock 0 0 1\r\nx\r\n"), NO_MAJORITY);
    assert_eq!(client.step(b"ms lock 1 ME\r\ny\r\n"), NO_MAJORITY);
    assert_eq!(client.step(b"append before 0 0 1\r\nz\r\n"), NO_MAJORITY);
    assert_eq!(client.step(b"prepend before 0 0 1\r\nz\r\n"), NO_MAJORITY);
    let gets = client.request(b"gets before\r\n", b"END\r\n");
    let cas = String::from_utf8_lossy(&gets).split_whitespace().nth(4).unwrap().to_string();
    assert_eq!(client.step(format!("cas before 0 0 1 {cas}\r\nc\r\n").as_bytes()), NO_MAJORITY);
    assert_eq!(client.step(format!("ms before 1 C{cas}\r\nc\r\n").as_bytes()), NO_MAJORITY);
    assert_eq!(client.step(b"incr counter 1\r\n"), NO_MAJORITY, "pecl memcache takes its lock on an incr");
    assert_eq!(client.step(b"ma counter\r\n"), NO_MAJORITY);
    let add = binary_request(0x02, b"lock", &[0, 0, 0, 0, 0, 0, 0, 0], b"w");
    let reply = mesh.node(0).client().binary_step(&add);
    assert_eq!(binary_status(&reply), ETMPFAIL, "{}", show(&reply));
    assert_eq!(&reply[24..], b"No majority of nodes reachable");
    // ASP.NET's lock: 503, so the web server tries again or another node.
    let mut state = common::Client::connect(mesh.node(0).aspnet.expect("--aspnet-listen"));
    let acquire = b"GET /app/sess1 HTTP/1.1\r\nHost: x\r\nExclusive: acquire\r\nContent-Length: 0\r\n\r\n";
    let reply = state.request(acquire, b"\r\n\r\n");
    assert!(reply.starts_with(b"HTTP/1.1 503 Service Unavailable\r\n"), "{}", show(&reply));
    // Nothing of them was written.
    assert_eq!(client.step(b"mg lock v\r\n"), b"EN\r\n");
    assert_eq!(
        client.request(b"get before counter\r\n", b"END\r\n"),
        b"VALUE before 0 1\r\nb\r\nVALUE counter 0 1\r\n5\r\nEND\r\n"
    );
    // Plain writes and reads go on.
    assert_eq!(client.step(b"set plain 0 0 1\r\np\r\n"), b"STORED\r\n");
    assert_eq!(client.step(b"touch plain 100\r\n"), b"TOUCHED\r\n");
    assert_eq!(client.step(b"delete before\r\n"), b"DELETED\r\n");
    assert_eq!(client.request(b"get plain\r\n", b"END\r\n"), b"VALUE plain 0 1\r\np\r\nEND\r\n");
    let stats = mesh.node(0).stats();
    assert_eq!((stats["repl_claims"].as_str(), stats["repl_nodes"].as_str()), ("majority", "3"));
    assert_eq!(stats["repl_majority"], "0");
    assert_eq!(stats["repl_claims_no_majority"], "10", "{stats:?}");
    let (_, metrics) = mesh.node(0).http_get("/metrics");
    assert!(metrics.contains("\nstickless_replication_majority 0\n"), "{metrics}");
    assert!(metrics.contains("stickless_replication_claims_total{outcome=\"no_majority\"} 10\n"), "{metrics}");

    // The other two are a majority: they grant.
    let mut majority = mesh.node(1).client();
    assert_eq!(majority.step(b"add lock 0 0 1\r\nm\r\n"), b"STORED\r\n");
    assert_eq!(majority.step(b"incr counter 1\r\n"), b"6\r\n");
    assert_eq!(mesh.node(1).http_get("/health").0, HEALTHY);
    assert_eq!(mesh.node(1).stats()["repl_majority"], "1");

    mesh.heal(0);
    wait_for("node 0 back in the majority", CONVERGE, || mesh.node(0).http_get("/health").0 == HEALTHY);
    wait_for("the lock taken meanwhile to reach node 0", CONVERGE, || {
        mesh.node(0).client().step(b"mg lock v\r\n") == b"VA 1\r\nm\r\n"
    });
    let mut client = mesh.node(0).client();
    assert_eq!(client.step(b"add lock 0 0 1\r\nx\r\n"), b"NOT_STORED\r\n");
    assert_eq!(client.step(b"add after 0 0 1\r\na\r\n"), b"STORED\r\n");
    assert_eq!(client.step(b"incr counter 1\r\n"), b"7\r\n");
}

/// `--repl-claims local` keeps a cut-off node granting, as a pair does by default.
#[test]
fn local_claims_keep_a_cut_off_node_granting() {
    let mesh = mesh(&["--repl-claims=local"]);
    mesh.partition(0);
    wait_for("node 0 to see both peers down", CONVERGE, || mesh.node(0).stats()["repl_peers_up"] == "0");
    let mut client = mesh.node(0).client();
    assert_eq!(client.step(b"add lock 0 0 1\r\nx\r\n"), b"STORED\r\n");
    assert_eq!(client.step(b"incr lock2 1\r\n"), b"NOT_FOUND\r\n");
    let stats = mesh.node(0).stats();
    assert_eq!((stats["repl_claims"].as_str(), stats["repl_majority"].as_str()), ("local", "0"));
    assert_eq!(mesh.node(0).http_get("/health").0, HEALTHY, "local claims are granted: the node serves");
}

/// Two nodes through a relay, both given `extra`: `b` dials `a`.
fn pair(extra: &[&str]) -> (Node, Node, Relay) {
    let mut args = vec!["--repl-timeout=1", "--metrics-listen=127.0.0.1:0", "--node-id=1"];
    args.extend_from_slice(extra);
    let a = Node::start(&args);
    let relay = Relay::start(a.repl);
    args[2] = "--node-id=2";
    let peer = format!("--peer={}", relay.addr);
    args.push(&peer);
    let b = Node::start(&args);
    wait_for("the pair to link", CONVERGE, || {
        a.stats()["repl_peer_state"] == "up" && b.stats()["repl_peer_state"] == "up"
    });
    (a, b, relay)
}

/// A pair run with `--repl-claims majority` refuses locks on both sides of a cut
/// rather than grant one on each; by default it grants on both, as it always has.
#[test]
fn a_pair_with_majority_claims_refuses_locks_while_cut() {
    let (a, b, relay) = pair(&["--repl-claims=majority"]);
    assert_eq!(a.client().step(b"add lock 0 0 1\r\nx\r\n"), b"STORED\r\n");
    relay.cut();
    for node in [&a, &b] {
        wait_for("the cut to be noticed", CONVERGE, || node.http_get("/health").0 == UNHEALTHY);
        assert_eq!(node.client().step(b"add lock2 0 0 1\r\nx\r\n"), NO_MAJORITY);
        assert_eq!(node.client().step(b"set plain 0 0 1\r\np\r\n"), b"STORED\r\n");
    }
    assert_eq!(a.http_get("/health").1, "no majority: 1 of 2 nodes reachable, 2 needed\n");
    relay.restore();
    wait_for("the pair to grant again", CONVERGE, || a.http_get("/health").0 == HEALTHY);
    assert_eq!(b.client().step(b"add lock2 0 0 1\r\nx\r\n"), b"STORED\r\n");

    let (a, b, relay) = pair(&[]);
    relay.cut();
    wait_for("the cut to be noticed", CONVERGE, || a.stats()["repl_peer_state"] != "up");
    wait_for("the cut to be noticed", CONVERGE, || b.stats()["repl_peer_state"] != "up");
    assert_eq!(a.client().step(b"add lock 0 0 1\r\nx\r\n"), b"STORED\r\n");
    assert_eq!(b.client().step(b"add lock 0 0 1\r\nx\r\n"), b"STORED\r\n");
    assert_eq!(a.http_get("/health").0, HEALTHY);
    assert_eq!(a.stats()["repl_claims"], "local");
}

/// The time limit on each PHP request.
const PHP_LIMIT: &str = "20";

fn php(script: &str, args: &[&str]) -> (String, String, Duration) {
    let started = Instant::now();
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("timeout")
        .args([PHP_LIMIT, "php", &path])
        .args(args)
        .output()
        .expect("php (scripts/test installs it)");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_string();
    (text(&output.stdout), text(&output.stderr), started.elapsed())
}

/// php-memcached's handler and pecl memcache's, each on a node cut off from the
/// majority, answer at once rather than hang, and take no lock there.
/// php-memcached's `session_start` fails ("Failed to read session data"). pecl
/// memcache takes a server error on its lock as it takes a server down: it goes
/// on without the lock (README, "Session locks"), which is why `/health` takes a
/// minority node out of a balancer's rotation. On a node of the majority both
/// take the lock and write the session.
#[test]
fn php_session_handlers_fail_cleanly_on_a_minority_node() {
    let mesh = mesh(&[]);
    mesh.partition(0);
    wait_for("node 0 to know it is in the minority", CONVERGE, || mesh.node(0).http_get("/health").0 == UNHEALTHY);
    let minority = mesh.node(0).addr.to_string();
    let majority = mesh.node(1).addr.to_string();
    // Each handler's lock key for the session, and what it does on the minority.
    let handlers = [
        ("memcached", "memc.sess.key.lock.sess-minority", "refused"),
        ("memcache", "sess-minority.lock", "acquired written"),
    ];
    for (handler, lock, on_minority) in handlers {
        let (out, err, took) = php("php_minority.php", &[handler, &minority, "sess-minority"]);
        assert_eq!(out, on_minority, "{handler}: {err}");
        // Both handlers' lock waits are set to about 2 s in the script.
        assert!(took < Duration::from_secs(2), "{handler} took {took:?}");
        let mut client = mesh.node(0).client();
        assert_eq!(client.step(format!("mg {lock} v\r\n").as_bytes()), b"EN\r\n", "{handler} took no lock");
        let (out, err, _) = php("php_minority.php", &[handler, &majority, &format!("sess-{handler}")]);
        assert_eq!(out, "acquired written", "{handler}: {err}");
    }
}

/// The token `ms ... ME c` returns (the lease's CAS) out of a reply `HD c<token>`.
fn token(reply: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(reply);
    let token = text.trim_end().strip_prefix("HD c").unwrap_or_else(|| panic!("not a granted lease: {text}"));
    token.parse().unwrap()
}

/// Lease tokens rise across the mesh: a lease granted on any node after another
/// ran out gets a larger token, and the old holder's token can neither release
/// nor overwrite the new lease, on any node, through a partition and its healing.
#[test]
fn lease_tokens_rise_across_nodes_and_a_stale_one_cannot_release() {
    let mesh = mesh(&[]);
    let take = |index: usize, lease: u32| {
        mesh.node(index).client().step(format!("ms lease 1 ME T{lease} c\r\nx\r\n").as_bytes())
    };
    let first = token(&take(0, 1));
    // The lease runs out on every node (memcached's expiry is in whole seconds).
    wait_for("the first lease to run out everywhere", CONVERGE, || {
        (0..3).all(|index| mesh.node(index).client().step(b"mg lease v\r\n") == b"EN\r\n")
    });
    let second = token(&take(1, 30));
    assert!(second > first, "{second} after {first}");
    mesh.wait_same(&keys(&["lease"]));
    for index in 0..3 {
        let mut client = mesh.node(index).client();
        assert_eq!(client.step(format!("md lease C{first}\r\n").as_bytes()), b"EX\r\n", "node {index}");
        assert_eq!(client.step(format!("ms lease 1 C{first}\r\ny\r\n").as_bytes()), b"EX\r\n", "node {index}");
        assert_eq!(client.step(b"ms lease 1 ME T30 c\r\nz\r\n"), b"NS c0\r\n", "node {index}: the lease is held");
    }

    // Node 0, cut off, can neither take the lease nor release it with any token.
    mesh.partition(0);
    wait_for("node 0 in the minority", CONVERGE, || mesh.node(0).http_get("/health").0 == UNHEALTHY);
    assert_eq!(take(0, 30), NO_MAJORITY);
    assert_eq!(mesh.node(2).client().step(format!("md lease C{second}\r\n").as_bytes()), b"HD\r\n");
    let third = token(&take(2, 30));
    assert!(third > second, "{third} after {second}");
    mesh.heal(0);
    wait_for("node 0 back in the majority", CONVERGE, || mesh.node(0).http_get("/health").0 == HEALTHY);
    mesh.wait_same(&keys(&["lease"]));
    let mut client = mesh.node(0).client();
    assert_eq!(client.step(format!("md lease C{second}\r\n").as_bytes()), b"EX\r\n", "a released token");
    assert_eq!(client.step(b"ms lease 1 ME T30 c\r\nz\r\n"), b"NS c0\r\n");
    assert_eq!(client.step(format!("md lease C{third}\r\n").as_bytes()), b"HD\r\n");
    let fourth = token(&client.step(b"ms lease 1 ME T30 c\r\nw\r\n"));
    assert!(fourth > third, "{fourth} after {third}");
}

/// One lock held, as its holder's client saw it: from the `STORED` of its `add` to
/// the moment its `delete` was sent.
#[derive(Clone, Copy, Debug)]
struct Grant {
    lock: usize,
    node: usize,
    from: Instant,
    to: Instant,
}

/// What one racing client saw.
#[derive(Default)]
struct Race {
    grants: Vec<Grant>,
    refused: u64,
    attempts: u64,
    anomalies: Vec<String>,
}

const RACED_LOCKS: usize = 4;
/// The locks' lease, in seconds: far past a hold of a few milliseconds.
const RACED_LEASE: u32 = 30;

/// Races `add` for a few locks through node `node` until `until`, holding each won
/// lock for a moment before deleting it.
fn race_for_locks(node: usize, addr: std::net::SocketAddr, until: Instant) -> Race {
    let mut race = Race::default();
    let mut client = common::Client::connect(addr);
    let mut turn = node;
    while Instant::now() < until {
        turn += 1;
        let lock = turn % RACED_LOCKS;
        race.attempts += 1;
        // One line back, however long the verdict takes (a cut peer is declared
        // down only after --repl-timeout).
        let reply = client.request(format!("add race{lock} 0 {RACED_LEASE} 5\r\nnode{node}\r\n").as_bytes(), b"\r\n");
        match &reply[..] {
            b"STORED\r\n" => {
                let from = Instant::now();
                std::thread::sleep(Duration::from_millis(1 + (turn % 4) as u64));
                let to = Instant::now();
                race.grants.push(Grant { lock, node, from, to });
                let released = client.request(format!("delete race{lock}\r\n").as_bytes(), b"\r\n");
                // Deleted: its own lock; anything else means another client held it.
                if released != b"DELETED\r\n" {
                    race.anomalies.push(format!("node {node} released race{lock}: {}", show(&released)));
                }
            }
            b"NOT_STORED\r\n" => {}
            reply if reply == NO_MAJORITY => {
                race.refused += 1;
                // A node without a majority answers at once: no busy loop on it.
                std::thread::sleep(Duration::from_millis(5));
            }
            other => race.anomalies.push(format!("node {node}: add answered {}", show(other))),
        }
    }
    race
}

/// Jepsen's lock test on three daemons: a client on each node races `add`s for four
/// locks while one node after another is cut off from the other two and healed,
/// and every grant's interval is checked against every other's: no lock is ever
/// held by two clients at once. `STICKLESS_QUORUM_SECS` sets the length (20 s in
/// CI; an hour locally, see BENCHMARKS.md). Cuts isolate a whole node: a node
/// linked to both sides of a partial cut can still judge for both (README, "Locks
/// by majority").
#[test]
fn racing_locks_are_never_held_twice_while_partitions_come_and_go() {
    let secs: u64 = std::env::var("STICKLESS_QUORUM_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let mesh = mesh(&[]);
    let addrs: Vec<_> = (0..3).map(|index| mesh.node(index).addr).collect();
    let until = Instant::now() + Duration::from_secs(secs);
    let mut isolations = 0;
    let races: Vec<Race> = std::thread::scope(|scope| {
        let racers: Vec<_> = addrs
            .iter()
            .enumerate()
            .map(|(node, &addr)| scope.spawn(move || race_for_locks(node, addr, until)))
            .collect();
        // The nemesis: every 1.5 s, heal, or cut off the next node.
        let mut isolated: Option<usize> = None;
        let mut step = 0;
        while Instant::now() + Duration::from_millis(1500) < until {
            std::thread::sleep(Duration::from_millis(1500));
            step += 1;
            match isolated.take() {
                Some(node) => mesh.heal(node),
                None => {
                    let node = step % 3;
                    mesh.partition(node);
                    isolated = Some(node);
                    isolations += 1;
                }
            }
        }
        if let Some(node) = isolated {
            mesh.heal(node);
        }
        racers.into_iter().map(|racer| racer.join().expect("a racer")).collect()
    });
    let anomalies: Vec<&String> = races.iter().flat_map(|race| &race.anomalies).collect();
    assert!(anomalies.is_empty(), "{anomalies:?}");
    let mut grants: Vec<Grant> = races.iter().flat_map(|race| race.grants.iter().copied()).collect();
    grants.sort_by_key(|grant| (grant.lock, grant.from));
    for pair in grants.windows(2) {
        let (earlier, later) = (pair[0], pair[1]);
        assert!(
            earlier.lock != later.lock || later.from >= earlier.to,
            "lock {} held twice: by node {}'s client from {:?} to {:?}, and by node {}'s from {:?}",
            earlier.lock,
            earlier.node,
            earlier.from,
            earlier.to,
            later.node,
            later.from
        );
    }
    let refused: u64 = races.iter().map(|race| race.refused).sum();
    let attempts: u64 = races.iter().map(|race| race.attempts).sum();
    eprintln!(
        "quorum race, {secs} s: {} grants in {attempts} attempts, {refused} refused for lack of a majority, {isolations} \
         isolations, 0 held twice",
        grants.len()
    );
    assert!(grants.len() > 100 && isolations > 0, "too little happened to prove anything");
    assert!(secs < 10 || refused > 0, "no isolated node was ever asked");
}
