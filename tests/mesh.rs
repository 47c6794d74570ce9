//! Three `stickless` daemons in a full mesh, each given the other two with
//! `--peer`, every link passing through relays the test can cut: writes and
//! deletes from every node, a node partitioned away while both sides write, one
//! link cut while both its ends still reach the third node, a node killed and
//! restarted empty, and ack mode's promise that an answered write survives the
//! death of the node that answered it. Every wait has a deadline; every process
//! is ended by its PID.

mod common;

use common::mesh::{Mesh, NODES, gets, keys, values};
use common::nodes::{CONVERGE, Node, wait_for};
use common::pki::Pki;
use common::show;
use std::time::{Duration, Instant};

#[test]
fn a_write_and_a_delete_on_each_node_reach_every_node() {
    let mesh = Mesh::start(&[]);
    for index in 0..NODES {
        mesh.set(index, &format!("from{index}"), &format!("value{index}"));
        mesh.set(index, &format!("gone{index}"), "soon");
    }
    let all: Vec<String> = (0..NODES).flat_map(|i| [format!("from{i}"), format!("gone{i}")]).collect();
    assert_eq!(values(&mesh.wait_same(&all)).len(), 2 * NODES);
    // Each node deletes a key another node wrote.
    for index in 0..NODES {
        mesh.delete(index, &format!("gone{}", (index + 1) % NODES));
    }
    let seen = mesh.wait_same(&all);
    assert_eq!(values(&seen), ["value0", "value1", "value2"], "{}", show(&seen));
    for node in mesh.running() {
        let stats = node.stats();
        assert_eq!(stats["repl_peers"], "2", "{stats:?}");
        let nodes: Vec<&str> = stats["repl_peer_node_id"].split(',').collect();
        for peer in nodes {
            assert_eq!(stats[&format!("repl_peer_{peer}_state")], "up", "{stats:?}");
        }
    }
}

/// Node 0 is held apart while it and the other two write the same keys and
/// others of their own; once healed, all three hold the same, and a key deleted
/// on either side stays deleted.
#[test]
fn a_partitioned_node_and_the_rest_converge_once_healed() {
    let mesh = Mesh::start(&[]);
    mesh.set(1, "doomed", "before");
    mesh.wait_same(&keys(&["doomed"]));
    mesh.partition(0);
    wait_for("node 0 to see both peers down", CONVERGE, || mesh.node(0).stats()["repl_peers_up"] == "0");
    for round in 0..20 {
        mesh.set(0, &format!("alone{round}"), "0");
        mesh.set(1 + round % 2, &format!("rest{round}"), "r");
        mesh.set(0, "shared", &format!("apart{round}"));
        mesh.set(1 + round % 2, "shared", &format!("rest{round}"));
    }
    mesh.delete(0, "doomed");
    // Node 0 (id 1) keeps the delete for both peers until they have it.
    let pending = |peer: usize| mesh.node(0).stat(&format!("repl_peer_{peer}_tombstones_pending"));
    assert_eq!((pending(2), pending(3)), (1, 1));
    mesh.heal(0);
    mesh.wait_linked();
    wait_for("both peers to have node 0's delete", CONVERGE, || pending(2) == 0 && pending(3) == 0);
    let mut all: Vec<String> = (0..20).flat_map(|round| [format!("alone{round}"), format!("rest{round}")]).collect();
    all.extend(keys(&["shared", "doomed"]));
    let seen = values(&mesh.wait_same(&all));
    assert_eq!(seen.len(), 41, "every key but the deleted one: {seen:?}");
    assert!(seen.last().is_some_and(|shared| shared == "apart19" || shared == "rest19"), "{seen:?}");
}

/// Node 0 is held apart while every node counts on one key: once healed, all
/// three hold the sum of every increment and decrement each side answered. (Under
/// `--repl-claims local`: with the default, `majority`, node 0 refuses its
/// increments, as tests/quorum.rs shows.)
#[test]
fn counts_on_both_sides_of_a_partition_add_up_once_healed() {
    let mesh = Mesh::start(&["--repl-claims=local"]);
    mesh.set(1, "hits", "100");
    mesh.wait_same(&keys(&["hits"]));
    mesh.partition(0);
    wait_for("node 0 to see both peers down", CONVERGE, || mesh.node(0).stats()["repl_peers_up"] == "0");
    let step = |index: usize, request: &str| show(&mesh.node(index).client().step(request.as_bytes()));
    for expected in 101..=105 {
        assert_eq!(step(0, "incr hits 1\r\n"), format!("{expected}\\r\\n"));
    }
    // Nodes 1 and 2 still reach each other: each sees the other's count.
    assert_eq!(step(1, "incr hits 10\r\n"), "110\\r\\n");
    wait_for("node 2 to see node 1's count", CONVERGE, || step(2, "mg hits v\r\n") == "VA 3\\r\\n110\\r\\n");
    assert_eq!(step(2, "decr hits 3\r\n"), "107\\r\\n");
    mesh.heal(0);
    mesh.wait_linked();
    let seen = mesh.wait_same(&keys(&["hits"]));
    assert_eq!(values(&seen), ["112"], "100 + 5 on node 0, + 10 - 3 on the others: {}", show(&seen));
}

/// The link between nodes 0 and 1 is cut, and both still reach node 2: what
/// each writes reaches the other through node 2 while the link is down, and the
/// link comes back with partial resyncs.
#[test]
fn a_single_cut_link_is_bridged_by_the_third_node() {
    let mesh = Mesh::start(&[]);
    mesh.cut(0, 1);
    wait_for("nodes 0 and 1 to see their link down", CONVERGE, || {
        mesh.node(0).stats()["repl_peers_up"] == "1" && mesh.node(1).stats()["repl_peers_up"] == "1"
    });
    mesh.set(0, "via-two", "from0");
    mesh.set(1, "also-via-two", "from1");
    let seen = mesh.wait_same(&keys(&["via-two", "also-via-two"]));
    assert_eq!(values(&seen), ["from0", "from1"], "passed on by node 2 with the link down");
    let full_syncs: Vec<u64> = mesh.running().map(|node| node.stat("repl_full_syncs")).collect();
    mesh.restore(0, 1);
    mesh.wait_linked();
    mesh.set(1, "after", "x");
    mesh.wait_same(&keys(&["via-two", "also-via-two", "after"]));
    let after: Vec<u64> = mesh.running().map(|node| node.stat("repl_full_syncs")).collect();
    assert_eq!(full_syncs, after, "the link resumed without a full sync");
}

/// A node killed and started again, empty, takes what the others hold. (That it
/// takes one full sync and resumes from the other peer is checked by the
/// simulator; here both sides dial, and a link replaced by the one the lower id
/// dialed can cost a second full sync.)
#[test]
fn a_killed_node_comes_back_with_everything() {
    let mut mesh = Mesh::start(&[]);
    for index in 0..NODES {
        for i in 0..50 {
            mesh.set(index, &format!("k{index}-{i}"), &format!("v{i}"));
        }
    }
    let all: Vec<String> = (0..NODES).flat_map(|index| (0..50).map(move |i| format!("k{index}-{i}"))).collect();
    mesh.wait_same(&all);
    mesh.nodes[2] = None;
    mesh.set(0, "while-down", "w");
    let restarted = mesh.boot(2);
    mesh.nodes[2] = Some(restarted);
    mesh.wait_linked();
    let mut expected = all.clone();
    expected.push("while-down".into());
    assert_eq!(values(&mesh.wait_same(&expected)).len(), expected.len());
}

/// Every link of the mesh runs over mutual TLS (each node shows a certificate from
/// the CA, for 127.0.0.1), and none of the bytes on any link shows a session; a
/// link cut comes back over TLS too.
#[test]
fn every_link_of_a_mesh_runs_over_mutual_tls() {
    let pki = Pki::standard("mesh-mtls");
    let tls = [
        format!("--repl-tls-cert={}", pki.path("server.pem").display()),
        format!("--repl-tls-key={}", pki.path("server.key").display()),
        format!("--repl-tls-ca={}", pki.path("ca.pem").display()),
    ];
    let mesh = Mesh::start(&tls.iter().map(String::as_str).collect::<Vec<_>>());
    let secret = "session-value-never-in-clear-".repeat(4);
    for index in 0..NODES {
        mesh.set(index, &format!("secret{index}"), &secret);
    }
    mesh.cut(0, 1);
    mesh.set(0, "during-cut", &secret);
    mesh.restore(0, 1);
    mesh.wait_linked();
    let all = keys(&["secret0", "secret1", "secret2", "during-cut"]);
    assert_eq!(values(&mesh.wait_same(&all)).len(), 4);
    for node in mesh.running() {
        assert_eq!(node.stats()["repl_link_tls"], "1");
    }
    for relay in mesh.relays.iter().flatten().flatten() {
        let recorded = relay.recorded.lock().unwrap();
        assert!(!recorded.is_empty(), "every link carried something");
        let clear = recorded.windows(secret.len()).any(|window| window == secret.as_bytes());
        assert!(!clear, "a session crossed a link in clear text");
    }
}

/// `watch replication` on node 0 shows its link to node 1 going down with the
/// reason, coming back, and the partial resync each way it starts.
#[test]
fn watch_shows_each_peers_link_events() {
    use std::io::{Read, Write};
    let mesh = Mesh::start(&[]);
    let mut watcher = std::net::TcpStream::connect(mesh.node(0).addr).unwrap();
    watcher.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    watcher.write_all(b"watch replication\r\n").unwrap();
    let mut seen = String::new();
    let mut read_until = |wanted: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + CONVERGE;
        let mut buf = [0; 4096];
        while !wanted(&seen) {
            assert!(Instant::now() < deadline, "watch showed only: {seen}");
            match watcher.read(&mut buf) {
                Ok(0) => panic!("the watcher was closed after: {seen}"),
                Ok(n) => seen.push_str(std::str::from_utf8(&buf[..n]).unwrap()),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => panic!("{e}"),
            }
        }
    };
    read_until(&|seen: &str| seen.starts_with("OK\r\n"));
    mesh.cut(0, 1);
    read_until(&|seen: &str| seen.contains("type=repl_link peer=2 ") && seen.contains(" event=down detail="));
    mesh.restore(0, 1);
    read_until(&|seen: &str| {
        seen.contains(" event=up ") && seen.contains(" event=partial_sync detail=from%20change%20")
    });
    for line in seen.lines().skip(1) {
        assert!(line.starts_with("ts=") && line.contains(" type=repl_link peer=2 addr=127.0.0.1:"), "{line}");
    }
}

/// Two nodes given one node id both dialing a third: the third says so in its log
/// (at the default verbosity), rather than linking each in turn as the same peer.
#[test]
fn two_nodes_with_one_id_are_named_in_the_log() {
    let hub = Node::start(&["--node-id=1", "--repl-timeout=0.5"]);
    let first = Node::start(&["--node-id=2", &hub.peer_arg()]);
    wait_for("the first node with id 2 to link", CONVERGE, || hub.stats()["repl_peers_up"] == "1");
    let _second = Node::start(&["--node-id=2", &hub.peer_arg(), "--repl-wait-sync=0"]);
    wait_for("the hub to name the shared id", CONVERGE, || hub.log().contains("two nodes claim node id 2"));
    assert!(hub.log().contains("give each node its own --node-id"), "{}", hub.log());
    // The first keeps its link meanwhile.
    assert_eq!(first.stats()["repl_peer_state"], "up");
}

/// In ack mode an answered write is on every linked node: the node that answered
/// it can die at once and the other two still have it.
#[test]
fn ack_mode_loses_no_answered_write_when_the_writer_dies() {
    let mut mesh = Mesh::start(&["--repl-sync=ack"]);
    for i in 0..100 {
        mesh.set(0, &format!("acked{i}"), "v");
    }
    // No wait: the kill follows the last reply at once.
    mesh.nodes[0] = None;
    let all: Vec<String> = (0..100).map(|i| format!("acked{i}")).collect();
    for index in 1..NODES {
        assert_eq!(values(&gets(mesh.node(index), &all)).len(), 100, "node {index} has every answered write");
    }
}
