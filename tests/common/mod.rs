//! Helpers shared by the integration tests: servers on port 0, a reference memcached,
//! raw-byte exchanges, and the request corpus.
#![allow(dead_code)]

pub mod corpus;
pub mod mesh;
pub mod nodes;
pub mod pki;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use stickless::server::{Config, Server};

/// How long any single exchange may take before the test fails.
pub const EXCHANGE_DEADLINE: Duration = Duration::from_secs(5);

/// A stickless server on 127.0.0.1 and a free port.
pub fn start_stickless(threads: usize, adjust: impl FnOnce(&mut Config)) -> Server {
    let mut config = Config { port: 0, listen: vec!["127.0.0.1".into()], threads, ..Config::default() };
    adjust(&mut config);
    Server::start(config).expect("start stickless")
}

/// Debian's memcached, started by this test and stopped (by its PID) on drop.
pub struct Memcached {
    child: Child,
    pub addr: SocketAddr,
}

impl Memcached {
    /// Starts `memcached` with the given extra arguments on a free loopback port.
    /// memcached cannot report a port it picked, so a port another test took in the
    /// meantime is retried with a new one.
    pub fn start(extra: &[&str]) -> Memcached {
        Memcached::start_with_env(extra, &[])
    }

    /// [`Memcached::start`] with environment variables (SASL's `SASL_CONF_PATH`).
    pub fn start_with_env(extra: &[&str], env: &[(&str, &std::path::Path)]) -> Memcached {
        let deadline = Instant::now() + EXCHANGE_DEADLINE;
        loop {
            let port = free_port();
            let mut cmd = Command::new("memcached");
            cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"]).args(extra);
            cmd.envs(env.iter().copied());
            // memcached refuses to run as root unless told which user to be.
            // SAFETY: geteuid has no preconditions and cannot fail.
            if unsafe { libc::geteuid() } == 0 {
                cmd.args(["-u", "root"]);
            }
            let mut child = cmd
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("memcached must be installed (scripts/test installs Debian's package)");
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            loop {
                assert!(Instant::now() < deadline, "memcached did not start listening");
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken: try another
                }
                if TcpStream::connect(addr).is_ok() {
                    return Memcached { child, addr };
                }
                std::thread::yield_now();
            }
        }
    }
}

/// The `stickless` binary started by a test on a port it picks itself (`-p 0`); the
/// addresses are read from its `-v` log. Stopped by PID on drop unless waited for.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    /// Where peers connect, when started with `--repl-listen`.
    pub repl_addr: Option<SocketAddr>,
    /// The ASP.NET State Server port, when started with `--aspnet-listen`.
    pub aspnet_addr: Option<SocketAddr>,
    /// The metrics port, when started with `--metrics-listen`.
    pub metrics_addr: Option<SocketAddr>,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    /// The thread copying the log, which ends when the daemon does.
    drain: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    pub fn start(args: &[&str]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stickless"))
            .args(["-l", "127.0.0.1", "-p", "0", "-v", "-u", "root"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the daemon");
        let stderr = child.stderr.take().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
        let replicates = args.contains(&"--repl-listen");
        let states = args.contains(&"--aspnet-listen");
        let metrics = args.contains(&"--metrics-listen");
        let (mut addr, mut repl_addr, mut aspnet_addr, mut metrics_addr) = (None, None, None, None);
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        while addr.is_none()
            || (replicates && repl_addr.is_none())
            || (states && aspnet_addr.is_none())
            || (metrics && metrics_addr.is_none())
        {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("the daemon exited before listening; its log:\n{}", log.lock().unwrap()))
                .unwrap();
            log.lock().unwrap().push_str(&format!("{line}\n"));
            let parse = |marker: &str| line.split(marker).nth(1).map(|a| a.trim().parse().expect("listen address"));
            if let Some(found) = parse("ASP.NET State Server listening on ") {
                aspnet_addr = Some(found);
            } else if let Some(found) = parse("replication listening on ") {
                repl_addr = Some(found);
            } else if let Some(found) = parse("metrics listening on ") {
                metrics_addr = Some(found);
            } else if let Some(found) = parse("listening on ") {
                addr = addr.or(Some(found));
            }
        }
        // Keep draining the log so the daemon never blocks on a full pipe.
        let sink = std::sync::Arc::clone(&log);
        let drain = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Daemon { child, addr: addr.unwrap(), repl_addr, aspnet_addr, metrics_addr, log, drain: Some(drain) }
    }

    /// What the daemon has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends `signal` and waits for the daemon to exit; its exit status.
    pub fn stop_with(&mut self, signal: i32) -> std::process::ExitStatus {
        // SAFETY: kill(2) on the PID of the child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
        self.wait_exit()
    }

    /// Waits for the daemon to exit and for its last log lines; its exit status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let status = self.child.wait().unwrap();
        if let Some(drain) = self.drain.take() {
            let _ = drain.join();
        }
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (memcached cannot be told to pick one), and
/// that this test process has not handed out before (two listeners that share a
/// port with SO_REUSEPORT, haproxy's frontends, would both bind it). It is taken
/// below Linux's ephemeral range (32768 on): a port from that range may meanwhile
/// become the local port of some outgoing connection (a relay's, a peer's dial)
/// before the daemon it was picked for binds it.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let mut rng = Rng::new(u64::from(std::process::id()) << 32 | u64::from(nanos));
    loop {
        let port = 20_000 + rng.below(12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && HANDED_OUT.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// An empty scratch directory of this test process, `stickless-<name>-<pid>`.
/// The cdylib cargo built with these tests: `cargo test` leaves it in
/// `target/<profile>/deps/`; a `cargo build` also copies it up to `target/<profile>/`.
pub fn built_cdylib() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let deps = exe.parent().expect("target/<profile>/deps");
    let candidates = [deps.join("libstickless.so"), deps.parent().expect("target/<profile>").join("libstickless.so")];
    candidates
        .iter()
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("no libstickless.so in {candidates:?}"))
        .clone()
}

pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("stickless-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// How long a step waits for its sentinel before sending another one.
const RESENTINEL_AFTER: Duration = Duration::from_millis(500);
const TIMEOUT_MARK: &[u8] = b"<timeout>";

/// A binary NOOP with a distinctive opaque, and memcached's response to it.
pub const BINARY_SENTINEL: [u8; 24] =
    [0x80, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x5e, 0x47, 0x11, 0xe1, 0, 0, 0, 0, 0, 0, 0, 0];
pub const BINARY_SENTINEL_REPLY: [u8; 24] =
    [0x81, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x5e, 0x47, 0x11, 0xe1, 0, 0, 0, 0, 0, 0, 0, 0];

/// A binary protocol request: memcached's protocol_binary.h header (opaque and CAS
/// zero), then extras, key and value.
pub fn binary_request(opcode: u8, key: &[u8], extras: &[u8], value: &[u8]) -> Vec<u8> {
    let body = (extras.len() + key.len() + value.len()) as u32;
    let mut out = vec![0x80, opcode];
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(&[extras.len() as u8, 0, 0, 0]);
    out.extend_from_slice(&body.to_be_bytes());
    out.extend_from_slice(&[0; 12]);
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}

/// A raw connection that sends bytes and reads replies up to a sentinel.
pub struct Client {
    stream: TcpStream,
}

/// Sent after each step so the reader knows where the step's replies end: `mn`
/// (meta no-op) is answered `MN` by memcached and by stickless.
pub const SENTINEL: &[u8] = b"mn\r\n";
pub const SENTINEL_REPLY: &[u8] = b"MN\r\n";

impl Client {
    /// This client's end of the connection (the server's `stats conns` shows it as
    /// the connection's `addr`).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("a connected socket")
    }

    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        Client { stream }
    }

    /// Sends bytes without waiting for anything.
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Sends `bytes` then the sentinel, and returns the replies before the sentinel's.
    /// A closed connection ends the reply with `<closed>`.
    pub fn step(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut request = bytes.to_vec();
        request.extend_from_slice(SENTINEL);
        let mut writer = self.stream.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            let _ = writer.write_all(&request);
        });
        // A request that is short of its data eats the sentinel as data; if no answer
        // comes soon, one more sentinel completes the data block and ends the step.
        // A request with `mn` lines of its own has that many more MN replies before
        // the sentinel's.
        let own_noops = bytes.split(|&b| b == b'\n').filter(|line| *line == b"mn\r").count();
        let mut out = self.read_until_nth(SENTINEL_REPLY, own_noops + 1, RESENTINEL_AFTER);
        if out.ends_with(TIMEOUT_MARK) {
            out.truncate(out.len() - TIMEOUT_MARK.len());
            self.stream.write_all(SENTINEL).unwrap();
            out.extend(self.read_until(SENTINEL_REPLY));
        }
        let _ = sender.join();
        out
    }

    /// Reads until the output ends with `end` (which is removed) or the peer closes;
    /// after [`EXCHANGE_DEADLINE`] the output ends with `<timeout>`.
    pub fn read_until(&mut self, end: &[u8]) -> Vec<u8> {
        self.read_until_within(end, EXCHANGE_DEADLINE)
    }

    fn read_until_within(&mut self, end: &[u8], limit: Duration) -> Vec<u8> {
        self.read_until_nth(end, 1, limit)
    }

    /// Like `read_until`, but the output must hold `end` at least `nth` times.
    fn read_until_nth(&mut self, end: &[u8], nth: usize, limit: Duration) -> Vec<u8> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if out.ends_with(end) && out.windows(end.len()).filter(|w| *w == end).count() >= nth {
                out.truncate(out.len() - end.len());
                return out;
            }
            if Instant::now() >= deadline {
                // Reported as part of the reply, so a comparison shows where it hung.
                out.extend_from_slice(TIMEOUT_MARK);
                return out;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    out.extend_from_slice(b"<closed>");
                    return out;
                }
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    out.extend_from_slice(b"<closed>");
                    return out;
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// The binary protocol's `step`: sends `bytes` then a NOOP whose response ends
    /// the step, and returns the responses before it (`<closed>` if the server hung up).
    pub fn binary_step(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut request = bytes.to_vec();
        request.extend_from_slice(&BINARY_SENTINEL);
        self.send(&request);
        self.read_until(&BINARY_SENTINEL_REPLY)
    }

    /// Reads exactly until `end`, for replies that need no sentinel.
    pub fn request(&mut self, bytes: &[u8], end: &[u8]) -> Vec<u8> {
        self.send(bytes);
        let mut out = self.read_until(end);
        out.extend_from_slice(end);
        out
    }
}

/// Bytes as a readable string: printable ASCII as is, the rest escaped; long runs cut.
pub fn show(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes.iter().take(600) {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > 600 {
        s.push_str(&format!("...({} bytes)", bytes.len()));
    }
    s
}

/// Parses `STAT name value` lines.
pub fn parse_stats(reply: &[u8]) -> std::collections::BTreeMap<String, String> {
    String::from_utf8_lossy(reply)
        .lines()
        .filter_map(|line| {
            let mut parts = line.strip_prefix("STAT ")?.splitn(2, ' ');
            Some((parts.next()?.to_string(), parts.next().unwrap_or("").to_string()))
        })
        .collect()
}

/// A small deterministic generator (xorshift64*), so that a seed replays a run
/// exactly.
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// A generator from any seed, 0 included.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A duration of `from` to `to` milliseconds (`to` excluded).
    pub fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

/// Deterministic mutations of a request, as a fuzzer makes them: one to four edits,
/// each a byte overwritten or inserted (from bytes that matter to parsers) or the
/// rest cut off. The same seed gives the same mutations on every run.
pub struct Mutator {
    state: u64,
    interesting: &'static [u8],
}

impl Mutator {
    pub fn new(seed: u64, interesting: &'static [u8]) -> Mutator {
        Mutator { state: seed | 1, interesting }
    }

    /// xorshift64: a number below `n`.
    fn next(&mut self, n: usize) -> usize {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state % n.max(1) as u64) as usize
    }

    pub fn mutate(&mut self, original: &[u8]) -> Vec<u8> {
        let mut bytes = original.to_vec();
        for _ in 0..1 + self.next(4) {
            let at = self.next(bytes.len() + 1);
            let byte = self.interesting[self.next(self.interesting.len())];
            match self.next(3) {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => bytes.truncate(at),
            }
        }
        bytes
    }
}
