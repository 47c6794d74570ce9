//! Daemons started on free ports for replication tests, and a relay standing for
//! the network between them that a test can cut. Every process is ended by its PID.

use super::{Client, parse_stats};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long replication may take to show a change on the peer.
pub const CONVERGE: Duration = Duration::from_secs(10);
/// A daemon started by the test, killed by its PID on drop.
pub struct Node {
    pub child: Child,
    pub addr: SocketAddr,
    pub repl: SocketAddr,
    /// Where `--metrics-listen` serves, when given.
    pub metrics: Option<SocketAddr>,
    /// Where `--aspnet-listen` serves, when given.
    pub aspnet: Option<SocketAddr>,
    pub log: Arc<Mutex<String>>,
}

impl Node {
    pub fn start(args: &[&str]) -> Node {
        Node::start_with_env(&[], args)
    }

    /// Starts the daemon with `env` added (libfaketime's preload), on free ports.
    /// libfaketime is preloaded rather than run through Debian's `faketime` wrapper:
    /// the wrapper names a semaphore after its PID, which a killed wrapper leaves in
    /// /dev/shm, and a later wrapper given the same PID then refuses to start.
    pub fn start_with_env(env: &[(&str, &str)], args: &[&str]) -> Node {
        let mut command = Command::new(env!("CARGO_BIN_EXE_stickless"));
        command.envs(env.iter().copied());
        let mut args: Vec<&str> = args.to_vec();
        if !args.iter().any(|a| a.starts_with("--repl-listen")) {
            args.push("--repl-listen=127.0.0.1:0");
        }
        // Its own process group, which dropping the node ends whole.
        let mut child = command
            .process_group(0)
            .args(["-l", "127.0.0.1", "-p", "0", "-v", "-t", "2", "-u", "root"])
            .args(&args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the daemon");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(String::new()));
        let (mut addr, mut repl, mut metrics, mut aspnet) = (None, None, None, None);
        let wants = |flag: &str| args.iter().any(|a| a.starts_with(flag));
        let (wants_metrics, wants_aspnet) = (wants("--metrics-listen"), wants("--aspnet-listen"));
        while repl.is_none() || (wants_metrics && metrics.is_none()) || (wants_aspnet && aspnet.is_none()) {
            let Some(line) = lines.next() else {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                panic!("the daemon exited ({status}) before listening; its log:\n{}", log.lock().unwrap());
            };
            let line = line.unwrap();
            log.lock().unwrap().push_str(&format!("{line}\n"));
            if let Some(at) = line.split("replication listening on ").nth(1) {
                repl = Some(at.trim().parse().expect("replication address"));
            } else if let Some(at) = line.split("metrics listening on ").nth(1) {
                metrics = Some(at.trim().parse().expect("metrics address"));
            } else if let Some(at) = line.split("ASP.NET State Server listening on ").nth(1) {
                aspnet = Some(at.trim().parse().expect("ASP.NET address"));
            } else if let Some(at) = line.split("listening on ").nth(1) {
                addr = addr.or(Some(at.trim().parse().expect("listen address")));
            }
        }
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Node { child, addr: addr.expect("a client address"), repl: repl.unwrap(), metrics, aspnet, log }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    pub fn stats(&self) -> BTreeMap<String, String> {
        parse_stats(&self.client().request(b"stats replication\r\n", b"END\r\n"))
    }

    pub fn stat(&self, name: &str) -> u64 {
        let stats = self.stats();
        stats.get(name).unwrap_or_else(|| panic!("no {name} in {stats:?}")).parse().unwrap()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `GET path` on the metrics port: the status line and the body.
    pub fn http_get(&self, path: &str) -> (String, String) {
        let addr = self.metrics.expect("started with --metrics-listen");
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(super::EXCHANGE_DEADLINE)).unwrap();
        stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: stickless\r\n\r\n").as_bytes()).unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").expect("a complete response");
        (head.lines().next().unwrap().to_string(), body.to_string())
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    pub fn peer_arg(&self) -> String {
        format!("--peer={}", self.repl)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test started (see `start_under`).
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Polls `check` until it holds, failing with `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A TCP relay the test can cut and restore, standing for the network.
pub struct Relay {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    /// Every byte relayed, both ways, up to [`RELAY_RECORD_MAX`].
    pub recorded: Arc<Mutex<Vec<u8>>>,
}

/// What a relay keeps of the bytes it passes on.
const RELAY_RECORD_MAX: usize = 64 << 20;

impl Relay {
    pub fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let recorded: Arc<Mutex<Vec<u8>>> = Arc::default();
        let (is_open, held, record) = (Arc::clone(&open), Arc::clone(&streams), Arc::clone(&recorded));
        std::thread::spawn(move || {
            for incoming in listener.incoming() {
                let Ok(client) = incoming else { return };
                if !is_open.load(Ordering::Acquire) {
                    continue; // dropped: the dial fails
                }
                let Ok(server) = TcpStream::connect(target) else { continue };
                let mut all = held.lock().unwrap();
                // Cut while connecting: `cut` drains the streams under this lock
                // once it has closed the relay, so this one would outlive it.
                if !is_open.load(Ordering::Acquire) {
                    continue;
                }
                all.push(client.try_clone().unwrap());
                all.push(server.try_clone().unwrap());
                for (mut from, mut to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    let record = Arc::clone(&record);
                    std::thread::spawn(move || {
                        let mut buf = vec![0; 64 * 1024];
                        while let Ok(n @ 1..) = from.read(&mut buf) {
                            let mut recorded = record.lock().unwrap();
                            let room = RELAY_RECORD_MAX.saturating_sub(recorded.len());
                            recorded.extend_from_slice(&buf[..n.min(room)]);
                            drop(recorded);
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay { addr, open, streams, recorded }
    }

    pub fn cut(&self) {
        self.open.store(false, Ordering::Release);
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::Release);
    }
}
