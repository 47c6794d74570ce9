//! Pairs of `stickless` daemons replicating on loopback: every protocol path, and
//! each of repcached's failures as a regression test (replication-lessons). Every
//! wait has a deadline; every process is ended by its PID.

mod common;

use common::nodes::{CONVERGE, Node, Relay, wait_for};
use common::pki::{LIBFAKETIME, Pki};
use common::{Client, parse_stats, show};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A linked pair: A waits for B, B dials A.
fn pair(a_args: &[&str], b_args: &[&str]) -> (Node, Node) {
    let a = Node::start(a_args);
    let mut args = vec![a.peer_arg()];
    args.extend(b_args.iter().map(ToString::to_string));
    let b = Node::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    wait_linked(&a, &b);
    (a, b)
}

fn wait_linked(a: &Node, b: &Node) {
    wait_for("the link to come up", CONVERGE, || {
        a.stats()["repl_peer_state"] == "up" && b.stats()["repl_peer_state"] == "up"
    });
}

/// Waits until each node has applied everything the other recorded.
fn wait_quiet(a: &Node, b: &Node) {
    wait_for("replication to catch up", CONVERGE, || {
        let (sa, sb) = (a.stats(), b.stats());
        sa["repl_applied_seq"] == sb["repl_last_seq"]
            && sb["repl_applied_seq"] == sa["repl_last_seq"]
            && sa["repl_syncing"] == "0"
            && sb["repl_syncing"] == "0"
    });
}

/// What `gets` shows of each key (value line and data), for comparing nodes.
fn gets(node: &Node, keys: &[String]) -> Vec<u8> {
    let mut request = b"gets".to_vec();
    for key in keys {
        request.push(b' ');
        request.extend_from_slice(key.as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    node.client().request(&request, b"END\r\n")
}

fn wait_same(a: &Node, b: &Node, keys: &[&str]) -> Vec<u8> {
    let keys: Vec<String> = keys.iter().map(ToString::to_string).collect();
    let deadline = Instant::now() + CONVERGE;
    loop {
        let (on_a, on_b) = (gets(a, &keys), gets(b, &keys));
        if on_a == on_b {
            return on_a;
        }
        if Instant::now() >= deadline {
            panic!("nodes differ on {keys:?}:\nA {}\nB {}", show(&on_a), show(&on_b));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn every_protocol_path_replicates_both_ways() {
    let (a, b) = pair(&[], &[]);
    for (writer, reader) in [(&a, &b), (&b, &a)] {
        let mut c = writer.client();
        // Text.
        assert_eq!(c.step(b"set t:set 1 0 2\r\nv1\r\n"), b"STORED\r\n");
        assert_eq!(c.step(b"add t:add 2 0 2\r\nv2\r\n"), b"STORED\r\n");
        assert_eq!(c.step(b"set t:rep 0 0 1\r\nx\r\nreplace t:rep 3 0 2\r\nv3\r\n"), b"STORED\r\nSTORED\r\n");
        assert_eq!(
            c.step(b"set t:app 0 0 1\r\nb\r\nappend t:app 0 0 1\r\nc\r\nprepend t:app 0 0 1\r\na\r\n"),
            b"STORED\r\nSTORED\r\nSTORED\r\n"
        );
        assert_eq!(c.step(b"set t:num 0 0 2\r\n10\r\nincr t:num 5\r\ndecr t:num 3\r\n"), b"STORED\r\n15\r\n12\r\n");
        assert_eq!(c.step(b"set t:del 0 0 1\r\nd\r\ndelete t:del\r\n"), b"STORED\r\nDELETED\r\n");
        assert_eq!(c.step(b"set t:touch 0 0 1\r\nt\r\ntouch t:touch 1000\r\n"), b"STORED\r\nTOUCHED\r\n");
        let unique = String::from_utf8(c.step(b"gets t:set\r\n")).unwrap();
        let unique = unique.lines().next().unwrap().rsplit(' ').next().unwrap().to_string();
        assert_eq!(c.step(format!("cas t:set 9 0 2 {unique}\r\nv9\r\n").as_bytes()), b"STORED\r\n");
        // Meta.
        assert_eq!(c.step(b"ms m:set 2 F7 T0\r\nmv\r\n"), b"HD\r\n");
        assert_eq!(c.step(b"ms m:num 1\r\n5\r\nma m:num D4\r\n"), b"HD\r\nHD\r\n");
        assert_eq!(c.step(b"ms m:del 1\r\nx\r\nmd m:del\r\n"), b"HD\r\nHD\r\n");
        assert_eq!(c.step(b"ms m:gat 1\r\ng\r\nmg m:gat T500\r\n"), b"HD\r\nHD\r\n");
        // Binary: SET of b:set = "bv", then DELETE of b:gone after setting it.
        let bin_set = |key: &[u8], value: &[u8]| {
            let mut req = vec![0x80, 0x01, 0, key.len() as u8, 8, 0, 0, 0];
            req.extend_from_slice(&((8 + key.len() + value.len()) as u32).to_be_bytes());
            req.extend_from_slice(&[0; 12]);
            req.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0]);
            req.extend_from_slice(key);
            req.extend_from_slice(value);
            req
        };
        let mut bin_delete = vec![0x80, 0x04, 0, 6, 0, 0, 0, 0, 0, 0, 0, 6];
        bin_delete.extend_from_slice(&[0; 12]);
        bin_delete.extend_from_slice(b"b:gone");
        let mut request = bin_set(b"b:set", b"bv");
        request.extend(bin_set(b"b:gone", b"g"));
        request.extend(bin_delete);
        let replies = writer.client().binary_step(&request);
        assert_eq!(replies.len(), 24 * 3, "{}", show(&replies));
        let keys = [
            "t:set", "t:add", "t:rep", "t:app", "t:num", "t:del", "t:touch", "m:set", "m:num", "m:del", "m:gat",
            "b:set", "b:gone",
        ];
        let seen = wait_same(writer, reader, &keys);
        let seen = String::from_utf8(seen).unwrap();
        for expected in
            ["t:set 9 2", "t:add 2 2", "t:rep 3 2", "t:app 0 3", "t:num 0 2", "m:set 7 2", "m:num 0 1", "b:set 4 2"]
        {
            assert!(seen.contains(&format!("VALUE {expected} ")), "{expected} in {seen}");
        }
        assert!(!seen.contains("t:del") && !seen.contains("m:del") && !seen.contains("b:gone"), "{seen}");
        // Touched TTLs travel too: both nodes report the same remaining time.
        let ttl = |node: &Node| node.client().step(b"mg t:touch t\r\nmg m:gat t\r\n");
        wait_for("touched TTLs to match", CONVERGE, || ttl(writer) == ttl(reader));
        // A second may tick between the touch and the read.
        let left = String::from_utf8(ttl(reader)).unwrap();
        assert!(
            ["HD t1000\r\nHD t500\r\n", "HD t999\r\nHD t500\r\n", "HD t999\r\nHD t499\r\n"].contains(&left.as_str()),
            "{left:?}"
        );
        // flush_all empties both.
        assert_eq!(c.step(b"flush_all\r\n"), b"OK\r\n");
        wait_for("the flush to cross", CONVERGE, || gets(reader, &["t:set".into(), "b:set".into()]) == b"END\r\n");
    }
}

#[test]
fn pipelined_delete_set_and_flush_set_arrive_in_order() {
    let (a, b) = pair(&[], &[]);
    let mut c = a.client();
    for round in 0..100 {
        let request = format!(
            "set k 0 0 3\r\nold\r\ndelete k\r\nset k 0 0 4\r\nr{round:03}\r\nflush_all\r\nset j 0 0 4\r\nj{round:03}\r\n"
        );
        assert_eq!(c.step(request.as_bytes()), b"STORED\r\nDELETED\r\nSTORED\r\nOK\r\nSTORED\r\n");
    }
    wait_quiet(&a, &b);
    // k was flushed by the last round's flush; j was written after it.
    assert_eq!(gets(&b, &["k".into(), "j".into()]), gets(&a, &["k".into(), "j".into()]));
    let on_b = String::from_utf8(gets(&b, &["j".into()])).unwrap();
    assert!(on_b.starts_with("VALUE j 0 4 ") && on_b.contains("\r\nj099\r\n"), "{on_b}");
    let mut c = a.client();
    for round in 0..100 {
        let request = format!("set k 0 0 4\r\nr{round:03}\r\ndelete k\r\nset k 0 0 4\r\ns{round:03}\r\n");
        assert_eq!(c.step(request.as_bytes()), b"STORED\r\nDELETED\r\nSTORED\r\n");
    }
    let seen = String::from_utf8(wait_same(&a, &b, &["k"])).unwrap();
    assert!(seen.contains("\r\ns099\r\n"), "the last set wins on both: {seen}");
}

#[test]
fn concurrent_writes_to_2000_keys_on_both_nodes_converge() {
    let (a, b) = pair(&[], &[]);
    const KEYS: usize = 2000;
    let write = |node: &Node, tag: &'static str| {
        let addr = node.addr;
        std::thread::spawn(move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            let mut request = Vec::new();
            for round in 0..3 {
                for key in 0..KEYS {
                    if (key + round) % 7 == 0 {
                        request.extend_from_slice(format!("delete key:{key} noreply\r\n").as_bytes());
                    } else {
                        let value = format!("{tag}{round}-{key}");
                        request.extend_from_slice(
                            format!("set key:{key} 0 0 {} noreply\r\n{value}\r\n", value.len()).as_bytes(),
                        );
                    }
                }
            }
            request.extend_from_slice(b"mn\r\n");
            stream.write_all(&request).unwrap();
            let mut reply = [0u8; 4];
            stream.read_exact(&mut reply).unwrap();
            assert_eq!(&reply, b"MN\r\n");
        })
    };
    let (on_a, on_b) = (write(&a, "a"), write(&b, "b"));
    on_a.join().unwrap();
    on_b.join().unwrap();
    wait_quiet(&a, &b);
    let keys: Vec<String> = (0..KEYS).map(|k| format!("key:{k}")).collect();
    let mut divergent = 0;
    for chunk in keys.chunks(100) {
        let (x, y) = (gets(&a, chunk), gets(&b, chunk));
        if x != y {
            divergent += 1;
            eprintln!("A {}\nB {}", show(&x), show(&y));
        }
    }
    assert_eq!(divergent, 0, "chunks of keys that differ");
    let conflicts = a.stat("repl_conflicts") + b.stat("repl_conflicts");
    assert!(conflicts > 0, "concurrent writes to the same keys must have met");
}

#[test]
fn cas_uniques_agree_and_a_stale_one_fails_on_both() {
    let (a, b) = pair(&[], &[]);
    assert_eq!(a.client().step(b"set s 0 0 1\r\n1\r\n"), b"STORED\r\n");
    let seen = wait_same(&a, &b, &["s"]);
    let line = String::from_utf8(seen).unwrap();
    let unique = line.lines().next().unwrap().rsplit(' ').next().unwrap().to_string();
    assert_eq!(b.client().step(format!("cas s 0 0 1 {unique}\r\n2\r\n").as_bytes()), b"STORED\r\n");
    wait_same(&a, &b, &["s"]);
    for node in [&a, &b] {
        assert_eq!(node.client().step(format!("cas s 0 0 1 {unique}\r\n3\r\n").as_bytes()), b"EXISTS\r\n");
    }
}

#[test]
fn a_peer_with_a_tenth_of_the_memory_evicts_only_locally() {
    let (a, b) = pair(&["-m", "40"], &["-m", "4"]);
    let value = vec![b'v'; 100 * 1024];
    let mut c = a.client();
    for key in 0..200 {
        let mut request = format!("set big:{key} 0 0 {} noreply\r\n", value.len()).into_bytes();
        request.extend_from_slice(&value);
        request.extend_from_slice(b"\r\n");
        c.send(&request);
    }
    assert_eq!(c.step(b""), b"");
    wait_quiet(&a, &b);
    let items = |node: &Node| parse_stats(&node.client().request(b"stats\r\n", b"END\r\n"));
    let (on_a, on_b) = (items(&a), items(&b));
    assert_eq!(on_a["curr_items"], "200", "the big node keeps everything");
    assert_eq!(on_a["evictions"], "0");
    assert!(on_b["evictions"].parse::<u64>().unwrap() > 0, "the small node evicted");
    assert!(on_b["curr_items"].parse::<u64>().unwrap() < 200);
    // And what the small node evicted is not deleted on the big one, even later.
    assert_eq!(b.client().step(b"set marker 0 0 1\r\nm\r\n"), b"STORED\r\n");
    wait_same(&a, &b, &["marker"]);
    assert_eq!(items(&a)["curr_items"], "201");
}

#[test]
fn a_peer_whose_clock_is_30_s_ahead_expires_items_at_the_same_moment() {
    let a = Node::start(&[]);
    let faketime = [("LD_PRELOAD", LIBFAKETIME), ("FAKETIME", "+30s")];
    let b = Node::start_with_env(&faketime, &[&a.peer_arg()]);
    wait_linked(&a, &b);
    wait_for("a clock sample", CONVERGE, || a.stat("repl_clock_skew_ms").abs_diff(30_000) < 1_000);
    assert!(a.log().contains("clock is") || b.log().contains("clock is"), "the skew is warned about");
    assert_eq!(a.client().step(b"set from-a 0 3 1\r\na\r\n"), b"STORED\r\n");
    assert_eq!(b.client().step(b"set from-b 0 3 1\r\nb\r\n"), b"STORED\r\n");
    let ttl = |node: &Node| node.client().step(b"mg from-a t\r\nmg from-b t\r\n");
    wait_for("both items on both nodes", CONVERGE, || {
        let (x, y) = (ttl(&a), ttl(&b));
        x.starts_with(b"HD t") && x.ends_with(b"\r\n") && x.split(|&c| c == b'\n').count() == 3 && x == y
    });
    let remaining = String::from_utf8(ttl(&b)).unwrap();
    assert!(remaining.contains("HD t3") || remaining.contains("HD t2"), "not expired at once: {remaining}");
    // Gone on both within a second of each other.
    wait_for("expiry on A", Duration::from_secs(6), || ttl(&a) == b"EN\r\nEN\r\n");
    wait_for("expiry on B", Duration::from_secs(1), || ttl(&b) == b"EN\r\nEN\r\n");
}

#[test]
fn a_stranger_on_the_replication_port_receives_nothing_and_cannot_write() {
    let secret_dir = std::env::temp_dir().join(format!("stickless-repl-{}", std::process::id()));
    std::fs::create_dir_all(&secret_dir).unwrap();
    let (right, wrong) = (secret_dir.join("right"), secret_dir.join("wrong"));
    std::fs::write(&right, "a secret of the pair, long enough\n").unwrap();
    std::fs::write(&wrong, "someone else's secret, long enough\n").unwrap();
    let secret = |path: &std::path::Path| format!("--repl-secret={}", path.display());
    let (a, b) = pair(&[&secret(&right)], &[&secret(&right)]);
    assert_eq!(a.client().step(b"set private 0 0 6\r\nsecret\r\n"), b"STORED\r\n");
    wait_same(&a, &b, &["private"]);

    // Raw strangers: memcached commands, repcached's replication lines, noise.
    for probe in [&b"get private\r\n"[..], b"rep private 0 0 1\r\nx\r\n", &[0x01, 0, 0, 0, 4, 1, 2, 3, 4]] {
        let mut stranger = TcpStream::connect(a.repl).unwrap();
        stranger.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = stranger.write_all(probe);
        let mut received = Vec::new();
        let _ = stranger.read_to_end(&mut received);
        assert!(received.is_empty(), "a stranger received {}", show(&received));
    }
    // A daemon with the wrong secret.
    let impostor = Node::start(&[&a.peer_arg(), &secret(&wrong), "--node-id=77"]);
    assert_eq!(impostor.client().step(b"set private 0 0 6\r\nstolen\r\n"), b"STORED\r\n");
    wait_for("the impostor to refuse A's proof", CONVERGE, || impostor.log().contains("wrong --repl-secret"));
    wait_for("A to log the refusal", CONVERGE, || a.log().matches("refused a connection").count() >= 4);
    assert!(a.stat("repl_refused") >= 4);
    assert_eq!(impostor.stat("repl_full_syncs"), 0);
    assert_eq!(impostor.stat("repl_changes_applied"), 0);
    let on_a = String::from_utf8(gets(&a, &["private".into()])).unwrap();
    assert!(on_a.contains("\r\nsecret\r\n"), "{on_a}");
    let _ = std::fs::remove_dir_all(&secret_dir);
}

#[test]
fn a_cut_link_comes_back_with_a_partial_resync() {
    let a = Node::start(&[]);
    let relay = Relay::start(a.repl);
    let b = Node::start(&[&format!("--peer={}", relay.addr)]);
    wait_linked(&a, &b);
    assert_eq!(a.client().step(b"set before 0 0 1\r\n1\r\n"), b"STORED\r\n");
    wait_same(&a, &b, &["before"]);
    let full_syncs = (a.stat("repl_full_syncs"), b.stat("repl_full_syncs"));

    relay.cut();
    wait_for("both sides to see the cut", CONVERGE, || {
        a.stats()["repl_peer_state"] != "up" && b.stats()["repl_peer_state"] != "up"
    });
    for i in 0..50 {
        let (ka, kb) = (format!("set cut-a{i} 0 0 1\r\na\r\n"), format!("set cut-b{i} 0 0 1\r\nb\r\n"));
        assert_eq!(a.client().step(ka.as_bytes()), b"STORED\r\n");
        assert_eq!(b.client().step(kb.as_bytes()), b"STORED\r\n");
    }
    assert_eq!(a.client().step(b"delete before\r\n"), b"DELETED\r\n");
    relay.restore();
    wait_linked(&a, &b);
    wait_quiet(&a, &b);
    let keys: Vec<String> =
        (0..50).flat_map(|i| [format!("cut-a{i}"), format!("cut-b{i}")]).chain(["before".into()]).collect();
    assert_eq!(gets(&a, &keys), gets(&b, &keys));
    assert!(!String::from_utf8(gets(&b, &["before".into()])).unwrap().contains("VALUE"));
    assert_eq!((a.stat("repl_full_syncs"), b.stat("repl_full_syncs")), full_syncs, "no full sync after the cut");
    assert!(a.stat("repl_partial_syncs") >= 1 && b.stat("repl_partial_syncs") >= 1);
}

/// `--repl-tls-*` for a node showing `name`'s certificate of `pki`.
fn tls_args(pki: &Pki, name: &str) -> [String; 3] {
    let file = |suffix: &str| pki.path(&format!("{name}.{suffix}")).display().to_string();
    [
        format!("--repl-tls-cert={}", file("pem")),
        format!("--repl-tls-key={}", file("key")),
        format!("--repl-tls-ca={}", pki.path("ca.pem").display()),
    ]
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn a_pair_over_mutual_tls_shows_the_network_no_session() {
    let pki = Pki::standard("repl-mtls");
    // Non-loopback listening needs the encryption: the pair listens on 127.0.0.1
    // here, but runs exactly as it would across hosts.
    let a = Node::start(&strs(&tls_args(&pki, "server")));
    // Written before B exists: B gets it by full sync, over TLS.
    let secret: String = "session-value-never-in-clear-".repeat(4);
    let set = |key: &str| format!("set {key} 0 0 {}\r\n{secret}\r\n", secret.len());
    for i in 0..200 {
        assert_eq!(a.client().step(set(&format!("full{i}")).as_bytes()), b"STORED\r\n");
    }
    let relay = Relay::start(a.repl);
    let mut b_args = tls_args(&pki, "client").to_vec();
    b_args.push(format!("--peer={}", relay.addr));
    let b = Node::start(&strs(&b_args));
    wait_linked(&a, &b);
    assert_eq!(b.client().step(set("from-b").as_bytes()), b"STORED\r\n");
    assert_eq!(a.client().step(set("from-a").as_bytes()), b"STORED\r\n");
    wait_same(&a, &b, &["full0", "full199", "from-a", "from-b"]);
    assert_eq!(b.stat("repl_full_syncs"), 1);

    // A cut: heartbeats notice, the dial comes back through TLS, and the partial
    // resync runs over it.
    relay.cut();
    wait_for("both sides to see the cut", CONVERGE, || {
        a.stats()["repl_peer_state"] != "up" && b.stats()["repl_peer_state"] != "up"
    });
    assert_eq!(a.client().step(set("during-cut").as_bytes()), b"STORED\r\n");
    relay.restore();
    wait_linked(&a, &b);
    wait_same(&a, &b, &["during-cut"]);
    assert!(b.stat("repl_partial_syncs") >= 1, "resumed from the backlog");

    let recorded = relay.recorded.lock().unwrap().clone();
    assert!(recorded.len() > 200 * secret.len(), "the relay carried the traffic ({} bytes)", recorded.len());
    assert_eq!(recorded[0], 0x16, "the link starts with a TLS handshake record");
    let needle = b"session-value-never-in-clear-";
    assert!(!recorded.windows(needle.len()).any(|w| w == needle), "a session value crossed the network in clear");
    assert!(!recorded.windows(4).any(|w| w == b"full"), "a key crossed the network in clear");
}

#[test]
fn a_node_with_a_certificate_from_another_ca_gets_nothing() {
    let pki = Pki::standard("repl-stranger");
    let a = Node::start(&strs(&tls_args(&pki, "server")));
    assert_eq!(a.client().step(b"set private 0 0 6\r\nsecret\r\n"), b"STORED\r\n");
    // The stranger trusts A's CA, but its own certificate comes from another.
    let mut args = tls_args(&pki, "stranger").to_vec();
    // It would wait for a sync that never comes before serving clients.
    args.extend([a.peer_arg(), "--node-id=77".to_string(), "--repl-wait-sync=0".to_string()]);
    let stranger = Node::start(&strs(&args));
    wait_for("A to refuse the stranger", CONVERGE, || a.stat("repl_refused") >= 2);
    assert!(a.log().contains("TLS with"), "{}", a.log());
    assert_eq!(stranger.stat("repl_full_syncs"), 0);
    assert_eq!(stranger.stat("repl_changes_applied"), 0);
    assert_eq!(stranger.client().step(b"get private\r\n"), b"END\r\n");
    // Plaintext on the TLS replication port: nothing comes back.
    let mut raw = TcpStream::connect(a.repl).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = raw.write_all(b"get private\r\n");
    let mut received = Vec::new();
    let _ = raw.read_to_end(&mut received);
    assert!(received.is_empty(), "a plaintext stranger received {}", show(&received));
}

/// TLS on only one node of a pair: each side's log says which side speaks TLS and
/// what to do, `repl_tls_mismatches` counts it, and `repl_link_tls` shows whether
/// each node's link is encrypted.
#[test]
fn tls_on_only_one_side_is_named_in_the_log_and_the_stats() {
    let pki = Pki::standard("repl-one-sided");
    let advice = "give both nodes --repl-tls-cert, --repl-tls-key and --repl-tls-ca, or neither";
    // A TLS node dials a plaintext one: the plaintext side hears a TLS handshake.
    let plain = Node::start(&["--repl-wait-sync=0", "--node-id=81"]);
    let mut args = tls_args(&pki, "server").to_vec();
    args.extend([plain.peer_arg(), "--repl-wait-sync=0".into(), "--node-id=82".into()]);
    let tls = Node::start(&strs(&args));
    // The count goes up as the bytes are read, the log line when the link closes
    // just after: wait for both.
    let heard_tls = format!("speaks TLS and this node does not: {advice}");
    wait_for("the plaintext node to name the mismatch", CONVERGE, || {
        plain.stat("repl_tls_mismatches") >= 1 && plain.log().contains(&heard_tls)
    });
    // A plaintext node dials the TLS one: the TLS side hears plaintext.
    let _dialer = Node::start(&[&tls.peer_arg(), "--repl-wait-sync=0", "--node-id=83"]);
    let heard_plaintext = format!("sent plaintext, not TLS: {advice}");
    wait_for("the TLS node to name the mismatch", CONVERGE, || {
        tls.stat("repl_tls_mismatches") >= 1 && tls.log().contains(&heard_plaintext)
    });
    for node in [&plain, &tls] {
        assert!(!node.log().contains("unknown frame type"), "{}", node.log());
        assert_ne!(node.stats()["repl_peer_state"], "up");
    }
    assert_eq!((plain.stats()["repl_link_tls"].as_str(), tls.stats()["repl_link_tls"].as_str()), ("0", "1"));
}

#[test]
fn a_stalled_peer_leaves_clients_unblocked_and_catches_up() {
    let (a, b) = pair(&["--repl-timeout=1"], &["--repl-timeout=1"]);
    b.signal(libc::SIGSTOP);
    // Writes keep being answered while the peer is frozen and after it is declared
    // down: no request waits on the link (a blocked one would wait for the timeout).
    let mut c = a.client();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..2000 {
        let request = format!("set stall:{i} 0 0 100\r\n{}\r\n", "x".repeat(100));
        let sent = Instant::now();
        assert_eq!(c.step(request.as_bytes()), b"STORED\r\n");
        slowest = slowest.max(sent.elapsed());
        if i % 100 == 0 {
            assert!(c.step(b"get stall:0\r\n").starts_with(b"VALUE stall:0 0 100\r\n"));
        }
    }
    wait_for("the frozen peer to be declared down", CONVERGE, || a.stats()["repl_peer_state"] == "down");
    assert!(a.log().contains("declared down"), "{}", a.log());
    assert!(slowest < Duration::from_millis(500), "a request took {slowest:?} (of {:?})", started.elapsed());
    b.signal(libc::SIGCONT);
    wait_linked(&a, &b);
    wait_quiet(&a, &b);
    let keys: Vec<String> = (0..2000).step_by(97).map(|i| format!("stall:{i}")).collect();
    assert_eq!(gets(&a, &keys), gets(&b, &keys));
    assert_eq!(b.stat("repl_full_syncs"), 1, "caught up from the backlog");
}

/// README, failure table: in ack mode a peer that hangs rather than dies holds
/// every write until it is declared down (`--repl-timeout`), which is then answered
/// without it; a `noreply` write is sent no answer, and a later reply on the same
/// connection waits behind it.
#[test]
fn in_ack_mode_a_hung_peer_holds_writes_until_it_is_declared_down() {
    let (a, b) = pair(&["--repl-timeout=1", "--repl-sync=ack"], &["--repl-timeout=1", "--repl-sync=ack"]);
    b.signal(libc::SIGSTOP);
    let mut c = a.client();
    // Answered only after A gave up on B: the reply finds A degraded.
    assert_eq!(c.request(b"set hung 0 0 1\r\n1\r\n", b"\r\n"), b"STORED\r\n");
    let stats = a.stats();
    assert_eq!((stats["repl_peer_state"].as_str(), stats["repl_degraded"].as_str()), ("down", "1"), "{stats:?}");
    b.signal(libc::SIGCONT);
    wait_linked(&a, &b);
    wait_for("A to leave degraded mode", CONVERGE, || a.stats()["repl_degraded"] == "0");
    b.signal(libc::SIGSTOP);
    // A noreply write: nothing comes back for it; the no-op after it is answered
    // only once the write is settled, after the peer is declared down.
    assert_eq!(c.request(b"set quiet 0 0 1 noreply\r\n1\r\nmn\r\n", b"MN\r\n"), b"MN\r\n");
    assert_eq!(a.stats()["repl_degraded"], "1");
    b.signal(libc::SIGCONT);
    wait_linked(&a, &b);
    wait_same(&a, &b, &["hung", "quiet"]);
}

#[test]
fn ack_mode_loses_no_acknowledged_write_when_either_node_is_killed() {
    for kill_writer in [true, false] {
        let (a, b) = pair(&["--repl-sync=ack"], &["--repl-sync=ack"]);
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let (addr, acked, stop) = (a.addr, Arc::clone(&acknowledged), Arc::new(AtomicBool::new(false)));
        let stopping = Arc::clone(&stop);
        let writer = std::thread::spawn(move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut reply = [0u8; 8];
            for i in 0..100_000 {
                if stopping.load(Ordering::Acquire) {
                    break;
                }
                if stream.write_all(format!("set ack:{i} 0 0 4\r\nv{:03}\r\n", i % 1000).as_bytes()).is_err() {
                    break;
                }
                match stream.read_exact(&mut reply) {
                    Ok(()) if &reply == b"STORED\r\n" => acked.lock().unwrap().push(i),
                    _ => break,
                }
            }
        });
        wait_for("writes to be acknowledged", CONVERGE, || acknowledged.lock().unwrap().len() >= 300);
        if kill_writer {
            a.signal(libc::SIGKILL);
            writer.join().unwrap();
            let acked = acknowledged.lock().unwrap().clone();
            let keys: Vec<String> = acked.iter().map(|i| format!("ack:{i}")).collect();
            for chunk in keys.chunks(100) {
                let found = String::from_utf8(gets(&b, chunk)).unwrap();
                assert_eq!(found.matches("VALUE ").count(), chunk.len(), "acknowledged writes missing on B");
            }
        } else {
            b.signal(libc::SIGKILL);
            let before = acknowledged.lock().unwrap().len();
            wait_for("writes to go on without the peer", CONVERGE, || {
                acknowledged.lock().unwrap().len() > before + 100
            });
            stop.store(true, Ordering::Release);
            writer.join().unwrap();
            assert_eq!(a.stat("repl_degraded"), 1);
            assert!(a.log().contains("acknowledged without it"), "{}", a.log());
            let acked = acknowledged.lock().unwrap().clone();
            let keys: Vec<String> = acked.iter().map(|i| format!("ack:{i}")).collect();
            for chunk in keys.chunks(100) {
                let found = String::from_utf8(gets(&a, chunk)).unwrap();
                assert_eq!(found.matches("VALUE ").count(), chunk.len());
            }
        }
    }
}

#[test]
fn ack_mode_replies_to_pipelined_writes_only_once_the_peer_holds_them() {
    // Many connections on both workers, each pipelining writes and reads: every
    // reply comes, and a write's reply means the peer already has it.
    let (a, b) = pair(&["--repl-sync=ack"], &["--repl-sync=ack"]);
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let (a_addr, b_addr) = (a.addr, b.addr);
            std::thread::spawn(move || {
                let mut on_a = Client::connect(a_addr);
                let mut on_b = Client::connect(b_addr);
                for round in 0..20 {
                    let mut batch = Vec::new();
                    let mut expected = Vec::new();
                    let mut keys = Vec::new();
                    for i in 0..16 {
                        let key = format!("pipe:{client}:{round}:{i}");
                        if i % 4 == 3 {
                            batch.extend_from_slice(format!("get {key}\r\n").as_bytes());
                            expected.extend_from_slice(b"END\r\n");
                        } else {
                            batch.extend_from_slice(format!("set {key} 0 0 2\r\n{i:02}\r\n").as_bytes());
                            expected.extend_from_slice(b"STORED\r\n");
                            keys.push(key);
                        }
                    }
                    // `verbosity` answers OK, which no other reply ends with.
                    batch.extend_from_slice(b"verbosity 0\r\n");
                    expected.extend_from_slice(b"OK\r\n");
                    let replies = on_a.request(&batch, b"OK\r\n");
                    assert_eq!(show(&replies), show(&expected), "client {client} round {round}");
                    let mut request = b"get".to_vec();
                    for key in &keys {
                        request.push(b' ');
                        request.extend_from_slice(key.as_bytes());
                    }
                    request.extend_from_slice(b"\r\n");
                    let found = on_b.request(&request, b"END\r\n");
                    let found = String::from_utf8(found).unwrap();
                    assert_eq!(found.matches("VALUE ").count(), keys.len(), "client {client} round {round}: {found}");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(a.stat("repl_degraded"), 0);
}

#[test]
fn stats_replication_shows_the_link() {
    let (a, b) = pair(&["--node-id=11"], &["--node-id=12", "--repl-backlog=1m"]);
    assert_eq!(a.client().step(b"set s 0 0 1\r\n1\r\n"), b"STORED\r\n");
    wait_quiet(&a, &b);
    let stats = b.stats();
    assert_eq!(stats["repl_enabled"], "1");
    assert_eq!((stats["repl_node_id"].as_str(), stats["repl_peer_node_id"].as_str()), ("12", "11"));
    assert_eq!(stats["repl_backlog_size"], "1048576");
    assert_eq!(stats["repl_mode"], "async");
    assert_eq!(stats["repl_applied_seq"], "1");
    assert_eq!(a.stats()["repl_acked_seq"], "1");
    for name in ["repl_rtt_ms", "repl_clock_skew_ms", "repl_lag_ops", "repl_lag_ms", "repl_full_syncs"] {
        assert!(stats.contains_key(name), "{name}");
    }
    let general = parse_stats(&a.client().request(b"stats\r\n", b"END\r\n"));
    assert_eq!(general["repl_peer_state"], "up", "plain stats carries the replication lines");
    let alone = common::Daemon::start(&[]);
    let reply = Client::connect(alone.addr).request(b"stats replication\r\n", b"END\r\n");
    assert_eq!(reply, b"STAT repl_enabled 0\r\nEND\r\n");
}

/// Sends `requests[i]` to `nodes[i]` all at once, then reads each reply line.
fn race(nodes: &[&Node], requests: &[String]) -> Vec<String> {
    let mut clients: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    for (client, request) in clients.iter_mut().zip(requests) {
        client.send(request.as_bytes());
    }
    clients.iter_mut().map(|c| String::from_utf8(c.request(b"", b"\r\n")).unwrap()).collect()
}

/// The lock hazard of a replicated pair: two clients `add` the same lock, one on
/// each node, at the same moment. Plain memcached commands, and exactly one wins,
/// in the text and the meta protocol, and both nodes end with the winner's lock.
#[test]
fn concurrent_adds_on_both_nodes_never_both_win() {
    let (a, b) = pair(&[], &[]);
    const ROUNDS: usize = 150;
    for round in 0..ROUNDS {
        let key = format!("memc.sess.key.lock.{round}");
        let replies = if round % 2 == 0 {
            race(&[&a, &b], &[format!("add {key} 0 30 1\r\na\r\n"), format!("add {key} 0 30 1\r\nb\r\n")])
        } else {
            race(&[&a, &b], &[format!("ms {key} 1 ME T30\r\na\r\n"), format!("ms {key} 1 ME T30\r\nb\r\n")])
        };
        let won: Vec<&String> = replies.iter().filter(|r| *r == "STORED\r\n" || *r == "HD\r\n").collect();
        if won.len() != 1 {
            let pick = |n: &Node| {
                let s = n.stats();
                ["repl_claims_refused", "repl_claims_lost", "repl_peer_state", "repl_acked_seq", "repl_sent_seq"]
                    .map(|k| format!("{k}={}", s.get(k).cloned().unwrap_or_default()))
                    .join(" ")
            };
            panic!("round {round}: {replies:?}\na: {}\nb: {}", pick(&a), pick(&b));
        }
        for reply in &replies {
            assert!(["STORED\r\n", "NOT_STORED\r\n", "HD\r\n", "NS\r\n"].contains(&reply.as_str()), "{reply:?}");
        }
        let winner = if replies[0] == *won[0] { "a" } else { "b" };
        let expected = format!("VA 1\r\n{winner}\r\n");
        for node in [&a, &b] {
            wait_for("the winner's lock on both nodes", CONVERGE, || {
                node.client().step(format!("mg {key} v\r\n").as_bytes()) == expected.as_bytes()
            });
        }
    }
    // The race was real: adds lost to a concurrent one on the other node, refused
    // there or found replaced by it here before their claim went out.
    let refused = a.stat("repl_claims_refused") + b.stat("repl_claims_refused");
    let lost = a.stat("repl_claims_lost") + b.stat("repl_claims_lost");
    assert!(lost > 0, "no round raced");
    assert!(lost >= refused, "lost {lost}, refused {refused}");
}

/// The other lock hazard: a holder whose lease ran out deletes the lock another
/// client holds now. With plain `delete` it does; with the lock's token (`ms ... ME
/// c`, then `md ... C<token>`) it cannot, on either node.
#[test]
fn a_stale_holder_cannot_release_the_next_holders_lock() {
    let (a, b) = pair(&[], &[]);
    let token = |reply: &[u8]| -> String {
        let line = String::from_utf8(reply.to_vec()).unwrap();
        assert!(line.starts_with("HD c"), "{line:?}");
        line.trim_end()["HD c".len()..].to_string()
    };
    for (name, release) in [("plain", "delete"), ("token", "md")] {
        let key = format!("lock:{name}");
        // The first holder takes it on node a; its lease runs out (made to expire
        // at once, as the clock would), and a second holder takes it on node b.
        let first = token(&a.client().step(format!("ms {key} 5 ME T30 c\r\nfirst\r\n").as_bytes()));
        assert_eq!(a.client().step(format!("touch {key} -1\r\n").as_bytes()), b"TOUCHED\r\n");
        let mut second = String::new();
        wait_for("the lock free on b", CONVERGE, || {
            let reply = b.client().step(format!("ms {key} 6 ME T30 c\r\nsecond\r\n").as_bytes());
            let taken = reply.starts_with(b"HD c");
            if taken {
                second = token(&reply);
            }
            taken
        });
        wait_for("the second lock on a", CONVERGE, || {
            a.client().step(format!("mg {key} v\r\n").as_bytes()) == b"VA 6\r\nsecond\r\n"
        });
        // The first holder, done at last, releases "its" lock on node a.
        if release == "delete" {
            assert_eq!(a.client().step(format!("delete {key}\r\n").as_bytes()), b"DELETED\r\n");
            // The hazard: the second holder's lock is gone, on both nodes.
            for node in [&a, &b] {
                wait_for("the delete on both nodes", CONVERGE, || {
                    node.client().step(format!("mg {key} v\r\n").as_bytes()) == b"EN\r\n"
                });
            }
        } else {
            assert_eq!(a.client().step(format!("md {key} C{first}\r\n").as_bytes()), b"EX\r\n");
            assert_eq!(
                b.client().step(format!("mg {key} c v\r\n").as_bytes()),
                format!("VA 6 c{second}\r\nsecond\r\n").as_bytes()
            );
            // The holder releases with its own token.
            assert_eq!(b.client().step(format!("md {key} C{second}\r\n").as_bytes()), b"HD\r\n");
            wait_for("the release on a", CONVERGE, || {
                a.client().step(format!("mg {key} v\r\n").as_bytes()) == b"EN\r\n"
            });
        }
    }
}

/// With the link cut, each node grants locks alone (documented): both `add`s win.
/// When the link returns, the newer lock is the one both nodes keep.
#[test]
fn without_the_peer_each_node_grants_alone_and_the_newer_lock_stays() {
    let a = Node::start(&[]);
    let relay = Relay::start(a.repl);
    let b = Node::start(&[&format!("--peer={}", relay.addr)]);
    wait_linked(&a, &b);
    relay.cut();
    wait_for("both sides to see the cut", CONVERGE, || {
        a.stats()["repl_peer_state"] != "up" && b.stats()["repl_peer_state"] != "up"
    });
    let token = |node: &Node, owner: &str| -> u64 {
        let reply =
            String::from_utf8(node.client().step(format!("ms lock:split 1 ME T60 c\r\n{owner}\r\n").as_bytes()))
                .unwrap();
        assert!(reply.starts_with("HD c"), "{owner}: {reply:?}");
        reply.trim_end()["HD c".len()..].parse().unwrap()
    };
    let (token_a, token_b) = (token(&a, "a"), token(&b, "b"));
    relay.restore();
    wait_linked(&a, &b);
    // The newer of the two locks (the greater token) stays, on both nodes.
    let expected: &[u8] = if token_b > token_a { b"VA 1\r\nb\r\n" } else { b"VA 1\r\na\r\n" };
    for node in [&a, &b] {
        wait_for("the newer lock on both nodes", CONVERGE, || node.client().step(b"mg lock:split v\r\n") == expected);
    }
}

/// Read-modify-writes racing on both nodes lose nothing: increments made at once on
/// each node all count, and of two `cas` with the same unique exactly one succeeds.
#[test]
fn concurrent_increments_and_cas_on_both_nodes_lose_nothing() {
    let (a, b) = pair(&[], &[]);
    assert_eq!(a.client().step(b"set hits 0 0 1\r\n0\r\n"), b"STORED\r\n");
    wait_for("the counter on b", CONVERGE, || b.client().step(b"mg hits v\r\n") == b"VA 1\r\n0\r\n");
    const ROUNDS: usize = 200;
    let mut counts = Vec::new();
    for _ in 0..ROUNDS {
        let replies = race(&[&a, &b], &["incr hits 1\r\n".to_string(), "incr hits 1\r\n".to_string()]);
        counts.extend(replies.iter().map(|r| r.trim_end().parse::<usize>().unwrap()));
    }
    // Every increment returned a different count: none was lost or counted twice.
    counts.sort_unstable();
    assert_eq!(counts, (1..=2 * ROUNDS).collect::<Vec<_>>());
    let total = format!("{}", 2 * ROUNDS);
    for node in [&a, &b] {
        wait_for("the total on both nodes", CONVERGE, || {
            node.client().step(b"mg hits v\r\n") == format!("VA {}\r\n{total}\r\n", total.len()).as_bytes()
        });
    }

    for round in 0..100 {
        let key = format!("doc:{round}");
        assert_eq!(a.client().step(format!("set {key} 0 0 2\r\nv0\r\n").as_bytes()), b"STORED\r\n");
        let mut unique = String::new();
        wait_for("the document on b", CONVERGE, || {
            let reply = String::from_utf8(b.client().step(format!("gets {key}\r\n").as_bytes())).unwrap();
            let line = reply.lines().next().unwrap_or("").to_string();
            unique = line.rsplit(' ').next().unwrap_or("").to_string();
            line.starts_with(&format!("VALUE {key} 0 2 "))
        });
        let replies = race(
            &[&a, &b],
            &[format!("cas {key} 0 0 2 {unique}\r\nva\r\n"), format!("cas {key} 0 0 2 {unique}\r\nvb\r\n")],
        );
        assert_eq!(replies.iter().filter(|r| *r == "STORED\r\n").count(), 1, "round {round}: {replies:?}");
        assert!(replies.contains(&"EXISTS\r\n".to_string()), "round {round}: {replies:?}");
    }
}

/// Increments and decrements made on both sides of a cut, in the text and meta
/// protocols, all count once the link returns; increments made once linked again
/// count on top of them and return distinct values.
#[test]
fn increments_on_both_sides_of_a_cut_all_count_once_healed() {
    let a = Node::start(&[]);
    let relay = Relay::start(a.repl);
    let b = Node::start(&[&format!("--peer={}", relay.addr)]);
    wait_linked(&a, &b);
    assert_eq!(a.client().step(b"set hits 0 0 3\r\n100\r\n"), b"STORED\r\n");
    wait_for("the counter on b", CONVERGE, || b.client().step(b"mg hits v\r\n") == b"VA 3\r\n100\r\n");
    relay.cut();
    wait_for("both sides to see the cut", CONVERGE, || {
        a.stats()["repl_peer_state"] != "up" && b.stats()["repl_peer_state"] != "up"
    });
    // Each side answers from what it holds, as memcached would.
    for expected in 101..=105 {
        assert_eq!(a.client().step(b"incr hits 1\r\n"), format!("{expected}\r\n").as_bytes());
    }
    for expected in ["110", "120", "130"] {
        assert_eq!(b.client().step(b"ma hits D10 v\r\n"), format!("VA 3\r\n{expected}\r\n").as_bytes());
    }
    assert_eq!(b.client().step(b"decr hits 1\r\n"), b"129\r\n");
    relay.restore();
    wait_linked(&a, &b);
    // 100, five increments of 1 on a, three of 10 and a decrement on b.
    let total = wait_same(&a, &b, &["hits"]);
    assert!(String::from_utf8_lossy(&total).contains("\r\n134\r\n"), "{}", show(&total));
    let replies = race(&[&a, &b], &["incr hits 1\r\n".to_string(), "incr hits 1\r\n".to_string()]);
    let mut counts: Vec<u64> = replies.iter().map(|r| r.trim_end().parse().unwrap()).collect();
    counts.sort_unstable();
    assert_eq!(counts, [135, 136], "linked again, increments are claims: {replies:?}");
}

/// A node started with `--repl-wait-sync` listens for clients only once its peer
/// has sent it everything: the first client it accepts reads every item.
#[test]
fn a_node_waiting_for_its_sync_serves_only_once_it_holds_everything() {
    let a = Node::start(&[]);
    let mut client = a.client();
    let mut batch = Vec::new();
    for i in 0..5000 {
        batch.extend_from_slice(format!("set item:{i} 0 0 10 noreply\r\nvalue-{i:04}\r\n").as_bytes());
    }
    client.send(&batch);
    assert_eq!(client.step(b"mn\r\n"), b"MN\r\n");
    let b = Node::start(&[&a.peer_arg(), "--repl-wait-sync=10"]);
    // No waiting here: b listened only after the sync.
    assert_eq!(parse_stats(&b.client().request(b"stats\r\n", b"END\r\n"))["curr_items"], "5000");
    assert_eq!(b.client().step(b"mg item:4999 v\r\n"), b"VA 10\r\nvalue-4999\r\n");
}

/// A rolling restart with `-e`: each node in turn is stopped (SIGTERM), saves its
/// items and where replication stood, and comes back with them; the pair resumes by
/// partial resync both ways, and no full sync moves the data again.
#[test]
fn a_rolling_restart_with_warm_files_moves_almost_nothing() {
    let dir = std::env::temp_dir().join(format!("stickless-rolling-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (file_a, file_b) = (dir.join("a.items"), dir.join("b.items"));
    let a_args = |file: &std::path::Path| vec![format!("--memory-file={}", file.display()), "--node-id=1".to_string()];
    let start_a = |listen: &str| {
        let mut args = a_args(&file_a);
        args.push(format!("--repl-listen={listen}"));
        Node::start(&strs(&args))
    };
    let mut a = start_a("127.0.0.1:0");
    let repl_a = a.repl.to_string();
    let b_args = vec![format!("--memory-file={}", file_b.display()), "--node-id=2".to_string(), a.peer_arg()];
    let mut b = Node::start(&strs(&b_args));
    wait_linked(&a, &b);
    for i in 0..300 {
        let set = format!("set roll{i} 0 0 4\r\nv{i:03}\r\n");
        assert_eq!([&a, &b][i % 2].client().step(set.as_bytes()), b"STORED\r\n");
    }
    wait_quiet(&a, &b);
    let keys: Vec<String> = (0..300).map(|i| format!("roll{i}")).collect();
    let before = gets(&a, &keys);
    assert_eq!(gets(&b, &keys), before);

    // B first: stopped, restarted from its file, relinked.
    b.signal(libc::SIGTERM);
    assert!(b.child.wait().unwrap().success());
    // The log's last lines may still be on their way from the pipe.
    wait_for("B to log its save", CONVERGE, || b.log().contains("warm restart: saved 300 items"));
    let a_full_syncs = a.stat("repl_full_syncs");
    b = Node::start(&strs(&b_args));
    assert!(b.log().contains("warm restart: loaded 300 items"), "{}", b.log());
    wait_linked(&a, &b);
    wait_quiet(&a, &b);
    assert_eq!((b.stat("repl_full_syncs"), a.stat("repl_full_syncs")), (0, a_full_syncs), "B: {}", b.log());
    assert!(b.stat("repl_partial_syncs") >= 1 && a.stat("repl_partial_syncs") >= 1);
    assert_eq!(gets(&b, &keys), before);

    // Then A, on the same replication address, while B takes a write.
    a.signal(libc::SIGTERM);
    assert!(a.child.wait().unwrap().success());
    assert_eq!(b.client().step(b"set during 0 0 1\r\nd\r\n"), b"STORED\r\n");
    a = start_a(&repl_a);
    wait_linked(&a, &b);
    wait_quiet(&a, &b);
    assert_eq!(a.stat("repl_full_syncs"), 0, "A: {}", a.log());
    assert!(a.stat("repl_partial_syncs") >= 1);
    assert_eq!(gets(&a, &keys), before);
    assert_eq!(gets(&a, &["during".to_string()]), gets(&b, &["during".to_string()]));
    let _ = std::fs::remove_dir_all(&dir);
}
