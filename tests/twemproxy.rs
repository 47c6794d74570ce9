//! Scale-out past one pair on an existing engine: twemproxy (Debian's nutcracker)
//! hashes keys with ketama over two stickless pairs, each pair behind an haproxy
//! frontend that sends to one node and fails over to its peer. Keys spread over
//! both pairs, each pair holds its keys on both nodes, and a node killed within a
//! pair is invisible to the client: every key still reads back through twemproxy.

mod common;

use common::{Client, Daemon, free_port, show};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long replication, failover and startup may take.
const DEADLINE: Duration = Duration::from_secs(10);
const KEYS: usize = 200;

/// A helper process this test started, killed by PID on drop.
struct Helper(Child);

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Two daemons replicating with each other: the first listens for the second.
fn pair() -> (Daemon, Daemon) {
    let first = Daemon::start(&["--repl-listen", "127.0.0.1:0"]);
    let peer = first.repl_addr.unwrap().to_string();
    let second = Daemon::start(&["--repl-listen", "127.0.0.1:0", "--peer", &peer]);
    let (mut a, mut b) = (Client::connect(first.addr), Client::connect(second.addr));
    assert_eq!(a.step(b"set linked 0 0 1\r\n1\r\n"), b"STORED\r\n");
    wait_for("the pair to link", || b.step(b"mg linked v\r\n") == b"VA 1\r\n1\r\n");
    assert_eq!(a.step(b"delete linked\r\n"), b"DELETED\r\n");
    (first, second)
}

fn value(i: usize) -> String {
    format!("session-{i}-{}", "x".repeat(i % 50))
}

fn set(client: &mut Client, key: &str, value: &str) -> Vec<u8> {
    client.request(format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()).as_bytes(), b"\r\n")
}

fn get(client: &mut Client, key: &str) -> Vec<u8> {
    client.request(format!("get {key}\r\n").as_bytes(), b"END\r\n")
}

fn holds(client: &mut Client, key: &str, expected: &str) -> bool {
    client.step(format!("mg {key} v\r\n").as_bytes()) == format!("VA {}\r\n{expected}\r\n", expected.len()).into_bytes()
}

/// haproxy's view of one server ("UP", "DOWN", ...), from its stats socket.
fn haproxy_status(socket: &Path, backend: &str, server: &str) -> String {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return "no socket".into();
    };
    stream.write_all(b"show stat\n").unwrap();
    let mut csv = String::new();
    stream.read_to_string(&mut csv).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap_or("").trim_start_matches("# ").split(',').collect();
    let column = header.iter().position(|name| *name == "status").expect("a status column");
    csv.lines()
        .map(|line| line.split(',').collect::<Vec<_>>())
        .find(|fields| fields.len() > column && fields[0] == backend && fields[1] == server)
        .map(|fields| fields[column].to_string())
        .unwrap_or_default()
}

#[test]
fn ketama_spreads_keys_over_two_pairs_and_a_dead_node_is_invisible() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("twemproxy");
    std::fs::create_dir_all(&dir).unwrap();
    let (mut a1, a2) = pair();
    let (b1, b2) = pair();

    // haproxy: one frontend per pair, the second node a backup that takes over when
    // health checks find the first dead.
    let (front_a, front_b) = (free_port(), free_port());
    let socket = dir.join("haproxy.sock");
    let _ = std::fs::remove_file(&socket);
    let backend = |name: &str, front: u16, primary: SocketAddr, backup: SocketAddr| {
        format!(
            "frontend {name}\n    bind 127.0.0.1:{front}\n    default_backend {name}\n\
             backend {name}\n    server first {primary} check\n    server second {backup} check backup\n"
        )
    };
    let haproxy_config = dir.join("haproxy.cfg");
    std::fs::write(
        &haproxy_config,
        format!(
            "global\n    stats socket {} mode 600 level admin\n\
             defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n    \
             default-server inter 50ms fall 1 rise 1\n{}{}",
            socket.display(),
            backend("pair_a", front_a, a1.addr, a2.addr),
            backend("pair_b", front_b, b1.addr, b2.addr),
        ),
    )
    .unwrap();
    let _haproxy = Helper(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&haproxy_config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (scripts/test installs it)"),
    );
    wait_for("haproxy to see every node up", || {
        ["pair_a", "pair_b"].iter().all(|b| ["first", "second"].iter().all(|s| haproxy_status(&socket, b, s) == "UP"))
    });

    // twemproxy: ketama over the two frontends, as a user grows past one pair.
    let proxy_port = free_port();
    let proxy_config = dir.join("nutcracker.yml");
    std::fs::write(
        &proxy_config,
        format!(
            "sessions:\n  listen: 127.0.0.1:{proxy_port}\n  hash: fnv1a_64\n  distribution: ketama\n  \
             timeout: 2000\n  auto_eject_hosts: false\n  servers:\n   - 127.0.0.1:{front_a}:1 pair_a\n   \
             - 127.0.0.1:{front_b}:1 pair_b\n"
        ),
    )
    .unwrap();
    let _nutcracker = Helper(
        Command::new("nutcracker")
            .arg("-c")
            .arg(&proxy_config)
            .args(["-s", &free_port().to_string(), "-a", "127.0.0.1", "-o"])
            .arg(dir.join("nutcracker.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nutcracker (scripts/test installs it)"),
    );
    let proxy = SocketAddr::from(([127, 0, 0, 1], proxy_port));
    wait_for("twemproxy to listen", || TcpStream::connect(proxy).is_ok());
    // twemproxy speaks only the classic text commands (no `mn` to mark a reply's
    // end), so each request is read up to its own last line.
    let mut client = Client::connect(proxy);
    for i in 0..KEYS {
        let (key, value) = (format!("sess:{i}"), value(i));
        assert_eq!(show(&set(&mut client, &key, &value)), "STORED\\r\\n");
    }

    // Each key lives in exactly one pair, on both of its nodes; both pairs hold some.
    let mut nodes: Vec<Client> = [&a1, &a2, &b1, &b2].iter().map(|d| Client::connect(d.addr)).collect();
    let mut in_a = 0;
    for i in 0..KEYS {
        let (key, value) = (format!("sess:{i}"), value(i));
        let on_a = holds(&mut nodes[0], &key, &value);
        let on_b = holds(&mut nodes[2], &key, &value);
        assert!(on_a != on_b, "{key} is on pair a: {on_a}, on pair b: {on_b}");
        let (replica, name) = if on_a { (&mut nodes[1], "a2") } else { (&mut nodes[3], "b2") };
        wait_for(&format!("{key} on {name}"), || holds(replica, &key, &value));
        in_a += usize::from(on_a);
    }
    assert!(in_a > KEYS / 4 && in_a < KEYS * 3 / 4, "{in_a} of {KEYS} keys on pair a");

    // Kill pair a's first node. Once haproxy's checks see it down, the client reads
    // every key through twemproxy as before, and keeps writing.
    a1.child.kill().unwrap();
    a1.child.wait().unwrap();
    wait_for("haproxy to mark the dead node down", || haproxy_status(&socket, "pair_a", "first").starts_with("DOWN"));
    // The same client connection as before the kill.
    for i in 0..KEYS {
        let (key, value) = (format!("sess:{i}"), value(i));
        let expected = format!("VALUE {key} 0 {}\r\n{value}\r\nEND\r\n", value.len());
        assert_eq!(show(&get(&mut client, &key)), show(expected.as_bytes()), "after the failover");
    }
    for i in KEYS..KEYS + 50 {
        let (key, value) = (format!("sess:{i}"), value(i));
        assert_eq!(show(&set(&mut client, &key, &value)), "STORED\\r\\n");
        let expected = format!("VALUE {key} 0 {}\r\n{value}\r\nEND\r\n", value.len());
        assert_eq!(show(&get(&mut client, &key)), show(expected.as_bytes()));
    }
}
