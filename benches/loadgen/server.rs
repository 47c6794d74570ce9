//! The servers under test: started on a free loopback port, pinned to their own
//! cores, read through /proc while they run, and stopped by PID.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to start listening.
const START_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Stickless,
    Memcached,
    /// stickless with `peers` replication peers attached (other stickless processes,
    /// on the load generator's CPUs, every one linked with every other), `--repl-sync
    /// ack` when `ack`.
    Paired {
        ack: bool,
        peers: u8,
    },
    /// stickless waiting for a peer that the benchmark starts itself (full sync).
    Replicating,
    /// The store-nothing ceiling (`nothing.rs`): this binary, serving the text
    /// protocol without keeping any item.
    Nothing,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Stickless => "stickless",
            Kind::Memcached => "memcached",
            Kind::Paired { ack: false, peers: 1 } => "stickless + peer (async)",
            Kind::Paired { ack: true, peers: 1 } => "stickless + peer (ack)",
            Kind::Paired { ack: false, .. } => "stickless + 2 peers (async)",
            Kind::Paired { ack: true, .. } => "stickless + 2 peers (ack)",
            Kind::Replicating => "stickless (replicating)",
            Kind::Nothing => "store-nothing ceiling",
        }
    }

    fn program(self) -> std::path::PathBuf {
        match self {
            Kind::Memcached => "memcached".into(),
            Kind::Nothing => std::env::current_exe().expect("the load generator's own path"),
            _ => env!("CARGO_BIN_EXE_stickless").into(),
        }
    }
}

/// How long a peer may take to link up.
const LINK_DEADLINE: Duration = Duration::from_secs(10);

/// The nice value peers start with (`--peer-nice`). The peer shares the load
/// generator's CPU here; a busy load generator can keep a peer at the same nice
/// value waiting for its time slice, which no peer on its own host would.
pub static PEER_NICE: AtomicI32 = AtomicI32::new(0);

/// stickless servers also serve the ASP.NET State Server protocol, on a port of
/// their own (`--aspnet-listen`), for row (aspnet).
pub static ASPNET_PORTS: AtomicBool = AtomicBool::new(false);

/// Set by `--tls`: servers serve TLS with this certificate and key (memcached's
/// `-Z -o ssl_chain_cert=,ssl_key=`), plus a plaintext port for `stats`, and
/// replicating ones link over mutual TLS with the same certificate and its CA.
pub static SERVER_TLS: std::sync::OnceLock<TlsFiles> = std::sync::OnceLock::new();

pub struct TlsFiles {
    pub chain: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub ca: std::path::PathBuf,
}

impl TlsFiles {
    /// `--repl-tls-*` for a replicating stickless.
    fn repl_args(&self) -> [String; 3] {
        [
            format!("--repl-tls-cert={}", self.chain.display()),
            format!("--repl-tls-key={}", self.key.display()),
            format!("--repl-tls-ca={}", self.ca.display()),
        ]
    }
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, and sched_getaffinity writes
    // at most size_of::<cpu_set_t>() bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&cpu| libc::CPU_ISSET(cpu, &set)).collect()
    }
}

/// Restricts the calling thread (pid 0) to `cpus`.
pub fn pin_current(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: as in allowed_cpus; CPU_SET only writes inside the set for cpu < CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A port that was free a moment ago.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running server, killed by PID when dropped (with its peer, if any).
pub struct Server {
    pub addr: SocketAddr,
    /// Where `stats` is asked: `addr`, or under TLS a plaintext port beside it.
    pub admin: SocketAddr,
    child: Child,
    /// The replication listener of a replicating server.
    pub repl: Option<SocketAddr>,
    /// The ASP.NET State Server port, under [`ASPNET_PORTS`].
    pub aspnet: Option<SocketAddr>,
    peers: Vec<Server>,
}

impl Server {
    /// Starts `kind` with `-t threads -m memory_mb` on a free port, on `cpus` when given.
    pub fn start(kind: Kind, threads: usize, memory_mb: usize, cpus: Option<Vec<usize>>) -> io::Result<Server> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let port = free_port()?;
            let mut cmd = Command::new(kind.program());
            if kind == Kind::Nothing {
                cmd.arg("--serve-nothing");
            }
            let repl = match kind {
                Kind::Paired { .. } | Kind::Replicating => Some(SocketAddr::from(([127, 0, 0, 1], free_port()?))),
                _ => None,
            };
            if let Some(repl) = repl {
                cmd.arg(format!("--repl-listen={repl}"));
                if let Some(files) = SERVER_TLS.get() {
                    cmd.args(files.repl_args());
                }
            }
            if let Kind::Paired { ack: true, .. } = kind {
                cmd.arg("--repl-sync=ack");
            }
            // Every node of a mesh claims by majority, as one listing its peers does
            // by default (the measured node only listens, and would claim alone).
            if let Kind::Paired { peers: 2.., .. } = kind {
                cmd.arg("--repl-claims=majority");
            }
            let aspnet = match kind {
                Kind::Memcached | Kind::Nothing => None,
                _ if ASPNET_PORTS.load(Ordering::Relaxed) => Some(SocketAddr::from(([127, 0, 0, 1], free_port()?))),
                _ => None,
            };
            if let Some(aspnet) = aspnet {
                cmd.arg(format!("--aspnet-listen={aspnet}"));
            }
            let addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut admin = addr;
            match SERVER_TLS.get() {
                None => {
                    cmd.args(["-l", "127.0.0.1"]);
                }
                Some(files) => {
                    admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
                    cmd.args(["-l", &format!("127.0.0.1,notls:{admin}"), "-Z", "-o"]).arg(format!(
                        "ssl_chain_cert={},ssl_key={}",
                        files.chain.display(),
                        files.key.display()
                    ));
                }
            }
            cmd.args(["-p", &port.to_string()])
                .args(["-t", &threads.to_string(), "-m", &memory_mb.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // memcached refuses to run as root unless told which user to be, and
            // stickless as memcached does; elsewhere both ignore -u.
            cmd.args(["-u", "root"]);
            if kind == Kind::Memcached {
                cmd.args(["-U", "0"]);
            } else {
                cmd.env_remove("RUST_LOG");
            }
            if let Some(cpus) = cpus.clone() {
                // SAFETY: the closure runs in the forked child before exec and only
                // calls sched_setaffinity, which is async-signal-safe.
                unsafe {
                    cmd.pre_exec(move || pin_current(&cpus));
                }
            }
            let mut child =
                cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", kind.program().display())))?;
            loop {
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(io::Error::new(io::ErrorKind::TimedOut, format!("{} did not start", kind.name())));
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken in the meantime: try another
                }
                if TcpStream::connect(admin).is_ok() {
                    let mut server = Server { addr, admin, child, repl, aspnet, peers: Vec::new() };
                    if let Kind::Paired { ack, peers } = kind {
                        let others: Vec<usize> = match &cpus {
                            Some(mine) => allowed_cpus().into_iter().filter(|c| !mine.contains(c)).collect(),
                            None => Vec::new(),
                        };
                        let peer_cpus = if others.is_empty() { None } else { Some(others) };
                        for _ in 0..peers {
                            // Each peer dials the server and the peers before it: a full mesh.
                            let before: Vec<SocketAddr> = server.peers.iter().filter_map(|peer| peer.repl).collect();
                            let mesh = peers >= 2;
                            let peer =
                                Server::peer_of(&server, &before, threads, memory_mb, ack, peer_cpus.clone(), mesh)?;
                            server.peers.push(peer);
                        }
                        server.wait_linked()?;
                    }
                    return Ok(server);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Starts a stickless peer of `server` (it dials `server`'s replication port,
    /// and `also`); one of a mesh's peers when `mesh` (claims by majority).
    pub fn peer_of(
        server: &Server,
        also: &[SocketAddr],
        threads: usize,
        memory_mb: usize,
        ack: bool,
        cpus: Option<Vec<usize>>,
        mesh: bool,
    ) -> io::Result<Server> {
        let repl = server.repl.ok_or_else(|| io::Error::other("not a replicating server"))?;
        let port = free_port()?;
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut cmd = Command::new(Kind::Stickless.program());
        cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-u", "root"])
            .args(["-t", &threads.to_string(), "-m", &memory_mb.to_string()])
            .arg(format!("--peer={repl}"))
            .args(also.iter().map(|addr| format!("--peer={addr}")))
            .arg(format!("--repl-listen={listen}"))
            .arg(if ack { "--repl-sync=ack" } else { "--repl-sync=async" })
            .args(mesh.then_some("--repl-claims=majority"))
            .args(SERVER_TLS.get().map(TlsFiles::repl_args).into_iter().flatten())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let nice = PEER_NICE.load(Ordering::Relaxed);
        // SAFETY: the closure runs between fork and exec and calls only
        // sched_setaffinity and setpriority, both async-signal-safe system calls.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(cpus) = &cpus {
                    pin_current(cpus)?;
                }
                if nice != 0 && libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START_DEADLINE;
        while TcpStream::connect(addr).is_err() {
            if Instant::now() >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "the peer did not start"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Server { addr, admin: addr, child, repl: Some(listen), aspnet: None, peers: Vec::new() })
    }

    /// Waits until the replication links to every peer are up.
    pub fn wait_linked(&self) -> io::Result<()> {
        let deadline = Instant::now() + LINK_DEADLINE;
        let want = self.peers.len().max(1).to_string();
        while self.stat_text("replication", "repl_peer_state")? != "up"
            || self.stat_text("replication", "repl_peers_up")? != want
        {
            if Instant::now() >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "the peer did not link up"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The fewest items any replication peer holds (`u64::MAX` with none).
    pub fn peers_hold(&self) -> u64 {
        self.peers.iter().map(|peer| peer.stat("curr_items").unwrap_or(0)).min().unwrap_or(u64::MAX)
    }

    /// The replication peers' own replication addresses, for a paired server.
    pub fn peer_repl_addrs(&self) -> Vec<SocketAddr> {
        self.peers.iter().filter_map(|peer| peer.repl).collect()
    }

    /// The replication peers' PIDs, for a paired server.
    pub fn peer_pids(&self) -> Vec<u32> {
        self.peers.iter().map(Server::pid).collect()
    }

    /// The named general statistic of whatever listens at `addr`.
    pub fn stat_at(addr: SocketAddr, name: &str) -> io::Result<u64> {
        stat_text_at(addr, "", name)?.parse().map_err(|_| io::Error::other(format!("stat {name} is not a number")))
    }

    /// Sends `stats GROUP` (plain `stats` for "") and returns the named statistic as text.
    pub fn stat_text(&self, group: &str, name: &str) -> io::Result<String> {
        stat_text_at(self.admin, group, name)
    }

    /// `stats reset`.
    pub fn reset_stats(&self) -> io::Result<()> {
        let mut stream = TcpStream::connect(self.admin)?;
        stream.write_all(b"stats reset\r\n")?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply)?;
        Ok(())
    }

    /// Sends `stats` and returns the named general statistic.
    pub fn stat(&self, name: &str) -> io::Result<u64> {
        self.stat_text("", name)?.parse().map_err(|_| io::Error::other(format!("stat {name} is not a number")))
    }
}

/// Sends `stats GROUP` to `addr` and returns the named statistic as text.
fn stat_text_at(addr: SocketAddr, group: &str, name: &str) -> io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(START_DEADLINE))?;
    let request = if group.is_empty() { "stats\r\n".to_string() } else { format!("stats {group}\r\n") };
    stream.write_all(request.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut found = None;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "END\r\n" {
            break;
        }
        let mut fields = line.trim_end().splitn(3, ' ');
        if let (Some("STAT"), Some(key), Some(value)) = (fields.next(), fields.next(), fields.next())
            && key == name
        {
            found = Some(value.to_string());
        }
    }
    found.ok_or_else(|| io::Error::other(format!("no stat {name}")))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time a process has used, user and system, from /proc/PID/stat.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTime {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTime {
    pub fn of(pid: u32) -> io::Result<CpuTime> {
        let mut stat = String::new();
        std::fs::File::open(format!("/proc/{pid}/stat"))?.read_to_string(&mut stat)?;
        // Fields after the command name, which is in parentheses and may hold spaces;
        // utime and stime are fields 14 and 15 of proc(5), so the 12th and 13th here.
        let after_name = &stat[stat.rfind(')').ok_or_else(|| io::Error::other("bad /proc stat"))? + 2..];
        let mut fields = after_name.split(' ').skip(11);
        let mut ticks = || -> io::Result<u64> {
            fields.next().and_then(|f| f.parse().ok()).ok_or_else(|| io::Error::other("bad /proc stat"))
        };
        let (user, system) = (ticks()?, ticks()?);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let to_duration = |t: u64| Duration::from_nanos(t * 1_000_000_000 / hz);
        Ok(CpuTime { user: to_duration(user), system: to_duration(system) })
    }

    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime { user: self.user - earlier.user, system: self.system - earlier.system }
    }

    pub fn total(self) -> Duration {
        self.user + self.system
    }
}

/// Context switches of every thread of a process so far, voluntary (it slept: a
/// wake-up each) and involuntary (preempted), from /proc/PID/task/*/status.
pub fn context_switches(pid: u32) -> io::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        for line in status.lines() {
            if let Some(count) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += count.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    Ok(total)
}

/// Resident memory of a process in bytes (VmRSS of /proc/PID/status).
pub fn resident_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| io::Error::other("no VmRSS"))
}

/// Whether a process is stopped by a signal (state T in /proc/PID/stat).
pub fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rfind(')').and_then(|end| stat[end + 1..].trim_start().chars().next()))
        == Some('T')
}
