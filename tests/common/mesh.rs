//! Three daemons in a full mesh, each given the other two with `--peer`, every
//! link passing through a relay the test can cut (tests/mesh.rs, tests/quorum.rs).

use super::nodes::{CONVERGE, Node, Relay, wait_for};
use super::{free_port, show};
use std::time::{Duration, Instant};

pub const NODES: usize = 3;

/// Three nodes on ports picked up front, so that each can be given the others'
/// addresses at start; node `i` reaches node `j` through `relays[i][j]`.
pub struct Mesh {
    pub nodes: Vec<Option<Node>>,
    pub relays: Vec<Vec<Option<Relay>>>,
    repl_ports: Vec<u16>,
    extra: Vec<String>,
}

impl Mesh {
    pub fn start(extra: &[&str]) -> Mesh {
        let repl_ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
        let relays = (0..NODES)
            .map(|from| {
                (0..NODES)
                    .map(|to| (from != to).then(|| Relay::start(([127, 0, 0, 1], repl_ports[to]).into())))
                    .collect()
            })
            .collect();
        let extra = extra.iter().map(ToString::to_string).collect();
        let mut mesh = Mesh { nodes: Vec::new(), relays, repl_ports, extra };
        for index in 0..NODES {
            // At first start no peer holds anything to wait for, and the later
            // nodes are not up yet: the first would wait out --repl-wait-sync.
            let node = mesh.boot_with(index, &["--repl-wait-sync=0"]);
            mesh.nodes.push(Some(node));
        }
        mesh.wait_linked();
        mesh
    }

    /// Starts node `index` on its replication port, given every other node. Its id
    /// is its own across restarts, as one derived from a fixed port would be (the
    /// client port here is picked by the kernel, which makes a derived id random).
    pub fn boot(&self, index: usize) -> Node {
        self.boot_with(index, &[])
    }

    /// [`Mesh::boot`] with `more` arguments.
    fn boot_with(&self, index: usize, more: &[&str]) -> Node {
        let mut args =
            vec![format!("--repl-listen=127.0.0.1:{}", self.repl_ports[index]), format!("--node-id={}", index + 1)];
        args.extend(more.iter().map(ToString::to_string));
        for to in (0..NODES).filter(|&to| to != index) {
            args.push(format!("--peer={}", self.relay(index, to).addr));
        }
        args.extend(self.extra.iter().cloned());
        Node::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    pub fn relay(&self, from: usize, to: usize) -> &Relay {
        self.relays[from][to].as_ref().expect("a relay between two nodes")
    }

    pub fn node(&self, index: usize) -> &Node {
        self.nodes[index].as_ref().expect("a running node")
    }

    pub fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().flatten()
    }

    /// Cuts the link between `a` and `b` both ways (each dials the other).
    pub fn cut(&self, a: usize, b: usize) {
        self.relay(a, b).cut();
        self.relay(b, a).cut();
    }

    pub fn restore(&self, a: usize, b: usize) {
        self.relay(a, b).restore();
        self.relay(b, a).restore();
    }

    /// Holds node `index` apart from both others.
    pub fn partition(&self, index: usize) {
        for other in (0..NODES).filter(|&other| other != index) {
            self.cut(index, other);
        }
    }

    pub fn heal(&self, index: usize) {
        for other in (0..NODES).filter(|&other| other != index) {
            self.restore(index, other);
        }
    }

    pub fn wait_linked(&self) {
        wait_for("every link to come up", CONVERGE, || {
            self.running().all(|node| {
                let stats = node.stats();
                stats["repl_peer_state"] == "up" && stats["repl_peers_up"] == (NODES - 1).to_string()
            })
        });
    }

    pub fn set(&self, index: usize, key: &str, value: &str) {
        let request = format!("set {key} 0 0 {}\r\n{value}\r\n", value.len());
        assert_eq!(self.node(index).client().step(request.as_bytes()), b"STORED\r\n", "set {key} on node {index}");
    }

    pub fn delete(&self, index: usize, key: &str) {
        let reply = self.node(index).client().step(format!("delete {key}\r\n").as_bytes());
        assert_eq!(reply, b"DELETED\r\n", "delete {key} on node {index}");
    }

    /// Waits until every running node shows the same `gets` of `keys`, and returns it.
    pub fn wait_same(&self, keys: &[String]) -> Vec<u8> {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let seen: Vec<Vec<u8>> = self.running().map(|node| gets(node, keys)).collect();
            if seen.windows(2).all(|pair| pair[0] == pair[1]) {
                return seen.into_iter().next().expect("a running node");
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = seen.iter().map(|reply| show(reply)).collect();
                panic!("nodes differ on {keys:?}:\n{}", seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// What `gets` shows of each key, for comparing nodes.
pub fn gets(node: &Node, keys: &[String]) -> Vec<u8> {
    let request = format!("gets {}\r\n", keys.join(" "));
    node.client().request(request.as_bytes(), b"END\r\n")
}

pub fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(ToString::to_string).collect()
}

/// The values `gets` returned, in order.
pub fn values(reply: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(reply);
    let lines: Vec<&str> = text.split("\r\n").collect();
    (0..lines.len()).filter(|&at| lines[at].starts_with("VALUE ")).map(|at| lines[at + 1].to_string()).collect()
}
