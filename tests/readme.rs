//! Every code block of README.md and bindings/README.md runs as written, or says why
//! it cannot in the marker before it (`<!-- test: skip: why -->`). Other markers
//! name the scenario that runs the block (`<!-- test: pair sessions -->`):
//!
//! - the first two commands, the pair in one minute and the C example run on
//!   loopback, in the checkout or a scratch home, with `stickless` on the PATH from
//!   the release build the README's first lines make;
//! - the production commands run verbatim on the hosts they name, cache1
//!   (10.0.0.1) and cache2 (10.0.0.2), beside a web server (10.0.0.10): network
//!   namespaces this test makes, joined by a bridge, each host with its own host
//!   name and its own `/etc` and `/usr/local` (overlays), its certificates and secret made by the
//!   README's own commands and installed by them;
//! - PHP's session settings run against that pair through a node's death and
//!   return, as the README's table says they do;
//! - configuration files are checked by the programs that read them.
//!
//! Every command runs in a PID namespace of its own, so what it started ends with
//! it; its `/tmp` is a private tmpfs.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The longest a command that should finish may take.
const RUN_DEADLINE: Duration = Duration::from_secs(180);
/// The longest a daemon may take to listen: a node waits for its peer's sync up to
/// `--repl-wait-sync` (10 s) first.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Every scenario marker, each of which names exactly one block.
const SCENARIOS: &[&str] = &[
    "top",
    "quick-start",
    "quick-start output",
    "pair-files",
    "pair-install",
    "pair replication",
    "pair sessions",
    "pair aspnet",
    "pair config",
    "php haproxy.cfg",
    "php recommended",
    "php failover",
    "php local",
    "php pecl",
    "aspnet requests",
    "aspnet requests output",
    "tls-files",
    "tls-clients",
    "config nutcracker",
    "config haproxy",
    "config prometheus",
    "c-example",
    "c-build",
    "c-build output",
    "checkout-sh",
    "install-library",
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A fenced code block and the marker before it.
struct Block {
    file: &'static str,
    line: usize,
    marker: Option<String>,
    text: String,
}

/// Every block of the two READMEs, read once per test process.
fn blocks() -> &'static [Block] {
    static BLOCKS: OnceLock<Vec<Block>> = OnceLock::new();
    BLOCKS.get_or_init(read_blocks)
}

fn read_blocks() -> Vec<Block> {
    let mut found = Vec::new();
    for file in ["README.md", "bindings/README.md"] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let trimmed = lines[i].trim_start();
            if trimmed.starts_with("```") {
                // A block inside a list item is indented; its lines lose the fence's indent.
                let indent = lines[i].len() - trimmed.len();
                let marker = lines[..i]
                    .iter()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .and_then(|l| l.trim().strip_prefix("<!-- test:"))
                    .and_then(|l| l.strip_suffix("-->"))
                    .map(|m| m.trim().to_string());
                let start = i;
                let mut body = String::new();
                i += 1;
                while !lines
                    .get(i)
                    .unwrap_or_else(|| panic!("{file}:{} never closes", start + 1))
                    .trim_start()
                    .starts_with("```")
                {
                    body.push_str(lines[i].get(indent..).unwrap_or(""));
                    body.push('\n');
                    i += 1;
                }
                found.push(Block { file, line: start + 1, marker, text: body });
            }
            i += 1;
        }
    }
    found
}

/// The text of the one block marked `marker`.
fn block(marker: &str) -> String {
    let blocks = blocks();
    let mut matching = blocks.iter().filter(|b| b.marker.as_deref() == Some(marker));
    let found = matching.next().unwrap_or_else(|| panic!("no block is marked {marker}"));
    assert!(matching.next().is_none(), "two blocks are marked {marker}");
    found.text.clone()
}

#[test]
fn every_block_runs_or_says_why() {
    let blocks = blocks();
    assert!(blocks.len() >= 30, "{} blocks", blocks.len());
    for b in blocks {
        let marker = b
            .marker
            .as_deref()
            .unwrap_or_else(|| panic!("{}:{}: a block with no `<!-- test: ... -->` marker before it", b.file, b.line));
        if let Some(why) = marker.strip_prefix("skip:") {
            assert!(why.trim().len() >= 20, "{}:{}: say why the block cannot run: {marker}", b.file, b.line);
            continue;
        }
        assert!(SCENARIOS.contains(&marker), "{}:{}: no scenario runs `{marker}`", b.file, b.line);
    }
    for scenario in SCENARIOS {
        let count = blocks.iter().filter(|b| b.marker.as_deref() == Some(scenario)).count();
        assert_eq!(count, 1, "blocks marked `{scenario}`");
    }
}

/// A command's output with the line ends a terminal shows.
fn printed(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace("\r\n", "\n").trim_end().to_string()
}

/// The release build the README's commands use: what its first lines build.
fn release_dir() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = without_cargo_env(Command::new("cargo"))
            .args(["build", "--release"])
            .current_dir(repo())
            .status()
            .expect("cargo");
        assert!(status.success(), "cargo build --release");
    });
    repo().join("target/release")
}

/// A command without the variables `cargo test` sets for its tests, so that a
/// `cargo` it runs behaves as on a user's terminal (and finds the release build
/// that `cargo build --release` made there up to date).
fn without_cargo_env(mut command: Command) -> Command {
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("CARGO_") && k != "CARGO_HOME") {
            command.env_remove(key);
        }
    }
    // OUT_DIR is this package's build script's: a build that sees it builds again.
    for key in ["OUT_DIR", "LD_LIBRARY_PATH", "RUST_LOG"] {
        command.env_remove(key);
    }
    command
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip (iproute2)");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// A network namespace made by this test, removed on drop.
struct Netns(String);

impl Netns {
    fn new(role: &str) -> Netns {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("readme-{}-{}-{role}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Connects to `addr` from inside the namespace `netns`: a thread enters it, and
/// the socket stays there.
fn connect_in(netns: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let path = format!("/run/netns/{netns}");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(&path)?;
                // SAFETY: setns(2) on a namespace file this thread opened; only this
                // thread moves, and it ends here.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
                stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                Ok(stream)
            })
            .join()
            .expect("the connecting thread")
    })
}

/// Sends `request` from `netns` and reads until the reply ends with `end`.
fn exchange(netns: &str, addr: &str, request: &[u8], end: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = connect_in(netns, addr.parse().expect("an address"))?;
    stream.write_all(request)?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while !reply.ends_with(end) {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, printed(&reply)));
        }
        reply.extend_from_slice(&chunk[..n]);
    }
    Ok(reply)
}

/// Polls `check` until it holds, failing with `what` after `limit`.
fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where a command runs.
#[derive(Clone, Copy)]
enum Cwd {
    /// The host's own directory (its administrator's home).
    Home,
    /// The checkout, as on the machine that built stickless; what the command
    /// writes there goes to an overlay and leaves the checkout as it was.
    Checkout,
}

/// A host: a network namespace, a host name, its own `/etc` and home.
struct Host {
    name: &'static str,
    netns: Netns,
    dir: PathBuf,
}

impl Host {
    /// A host alone, with loopback only.
    fn loopback(scratch: &Path, name: &'static str) -> Host {
        Host::with_netns(scratch, name, Netns::new(name))
    }

    fn with_netns(scratch: &Path, name: &'static str, netns: Netns) -> Host {
        let dir = scratch.join(name);
        for sub in
            ["etc-upper", "etc-work", "usr-local-upper", "usr-local-work", "checkout-upper", "checkout-work", "home"]
        {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        Host { name, netns, dir }
    }

    fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// The C example "saved as hello.c in the checkout": in the overlay this host's
    /// checkout runs under.
    fn save_c_example(&self) {
        std::fs::write(self.dir.join("checkout-upper/hello.c"), block("c-example")).unwrap();
    }

    /// A file of this host's `/etc` (`relative` to it), as its overlay holds it.
    fn etc_file(&self, relative: &str) -> PathBuf {
        self.dir.join("etc-upper").join(relative)
    }

    /// `script` in bash on this host: its network, a PID namespace of its own, its
    /// host name, its `/etc`, a private `/tmp`, and the release build on the PATH.
    fn command(&self, script: &str, cwd: Cwd, errexit: bool) -> Command {
        let dir = &self.dir;
        let mut setup = String::from("set -e\n");
        for (tree, layer) in [("/etc", "etc"), ("/usr/local", "usr-local")] {
            setup.push_str(&format!(
                "mount -t overlay overlay -o lowerdir={tree},upperdir={},workdir={} {tree}\n",
                dir.join(format!("{layer}-upper")).display(),
                dir.join(format!("{layer}-work")).display()
            ));
        }
        let cwd = match cwd {
            Cwd::Home => self.home(),
            Cwd::Checkout => {
                setup.push_str(&format!(
                    "mount -t overlay overlay -o lowerdir={repo},upperdir={},workdir={} {repo}\n",
                    dir.join("checkout-upper").display(),
                    dir.join("checkout-work").display(),
                    repo = repo().display()
                ));
                repo().to_path_buf()
            }
        };
        let shell = if errexit { "bash -e -o pipefail" } else { "bash" };
        setup.push_str(&format!(
            "hostname {}\ncd {}\nmount -t tmpfs tmpfs /tmp\nexec {shell} -c \"$1\"\n",
            self.name,
            cwd.display()
        ));
        let path = format!("{}:{}", release_dir().display(), std::env::var("PATH").unwrap_or_default());
        let mut command = without_cargo_env(Command::new("ip"));
        command
            .args(["netns", "exec", &self.netns.0])
            .args(["unshare", "--mount", "--uts", "--pid", "--fork", "--kill-child", "--propagation", "private"])
            .args(["bash", "-c", &setup, "host", script])
            .env("PATH", path)
            .stdin(Stdio::null());
        command
    }

    /// Runs `script` to its end; its output.
    fn run(&self, script: &str, cwd: Cwd, errexit: bool) -> Output {
        let child = self.command(script, cwd, errexit).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        finish(child, &format!("{} on {}", first_line(script), self.name))
    }

    /// Runs `script` to its end, which must be a success; what it printed.
    fn run_ok(&self, script: &str, cwd: Cwd) -> String {
        let out = self.run(script, cwd, true);
        assert!(out.status.success(), "on {}: {script}\n{}\n{}", self.name, printed(&out.stdout), printed(&out.stderr));
        printed(&out.stdout)
    }

    /// Starts `script` (a daemon in the foreground), ended on drop.
    fn spawn(&self, script: &str, cwd: Cwd) -> Running {
        let mut child = self.command(script, cwd, false).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        for stream in
            [Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>, Box::new(child.stderr.take().unwrap())]
        {
            let sink = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in std::io::BufRead::lines(std::io::BufReader::new(stream)).map_while(Result::ok) {
                    sink.lock().unwrap().push_str(&format!("{line}\n"));
                }
            });
        }
        Running { child, log, what: format!("{} on {}", first_line(script), self.name) }
    }
}

fn first_line(script: &str) -> &str {
    script.lines().find(|l| !l.trim().is_empty() && !l.starts_with('#')).unwrap_or(script)
}

/// Waits for `child` to exit within `RUN_DEADLINE` (killing it otherwise); its output.
fn finish(mut child: Child, what: &str) -> Output {
    let readers: Vec<_> =
        [Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>, Box::new(child.stderr.take().unwrap())]
            .into_iter()
            .map(|mut stream| {
                std::thread::spawn(move || {
                    let mut bytes = Vec::new();
                    let _ = stream.read_to_end(&mut bytes);
                    bytes
                })
            })
            .collect();
    let deadline = Instant::now() + RUN_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            end(&mut child);
            panic!("{what}: still running after {RUN_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut outputs = readers.into_iter().map(|r| r.join().unwrap());
    Output { status, stdout: outputs.next().unwrap(), stderr: outputs.next().unwrap() }
}

/// A command left running: killed with its PID namespace on drop.
struct Running {
    child: Child,
    log: Arc<Mutex<String>>,
    what: String,
}

impl Running {
    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Fails, with the log, if the command has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited ({status}):\n{}", self.what, self.log());
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        end(&mut self.child);
    }
}

/// Ends a host's command and everything it started. The child is `unshare`, whose
/// child is the first process of the PID namespace: killed, it takes the others
/// with it, and its exit, which `unshare` waits for, comes only once they are gone,
/// so the ports they held are free when this returns.
fn end(child: &mut Child) {
    let pid = child.id();
    let first = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()
        .and_then(|children| children.split_whitespace().next().and_then(|p| p.parse::<i32>().ok()));
    match first {
        // SAFETY: kill(2) on the namespace's first process, a child of the `unshare`
        // this test started and has not reaped (so the PID is still that process).
        Some(first) => unsafe {
            libc::kill(first, libc::SIGKILL);
        },
        None => {
            let _ = child.kill();
        }
    }
    let _ = child.wait();
}

/// A scratch directory of this test. Not under /tmp, which each host's command sees
/// as its own empty tmpfs: a program that returns to its working directory by name
/// (haproxy does) must find it.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new("/var/tmp").join(format!("stickless-readme-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The README's first two lines: the daemon starts on 11211 with memcached's
/// defaults; the second is the command that runs this suite (`.ci/run` runs it).
#[test]
fn the_first_lines_start_the_daemon_and_name_the_suite() {
    let text = block("top");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let command = |line: &str| line.split('#').next().unwrap().trim().to_string();
    assert_eq!(command(lines[1]), "scripts/test");
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(ci.contains("exec scripts/test"), "{ci}");

    let dir = scratch("top");
    let host = Host::loopback(&dir, "top");
    let mut daemon = host.spawn(&command(lines[0]), Cwd::Checkout);
    wait_for("the daemon on 127.0.0.1:11211", START_DEADLINE, || {
        daemon.assert_running();
        exchange(&host.netns.0, "127.0.0.1:11211", b"version\r\n", b"\r\n").is_ok()
    });
    let version = exchange(&host.netns.0, "127.0.0.1:11211", b"version\r\n", b"\r\n").unwrap();
    assert!(version.starts_with(b"VERSION 1.6.18-stickless-"), "{}", printed(&version));
    let settings = exchange(&host.netns.0, "127.0.0.1:11211", b"stats settings\r\n", b"END\r\n").unwrap();
    assert!(printed(&settings).contains("STAT maxbytes 67108864\n"), "-m 64: {}", printed(&settings));
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The pair in one minute prints what the README says it prints.
#[test]
fn a_pair_in_one_minute_prints_what_the_readme_shows() {
    let dir = scratch("quick-start");
    let host = Host::loopback(&dir, "laptop");
    let out = host.run(&block("quick-start"), Cwd::Home, false);
    assert_eq!(printed(&out.stdout), printed(block("quick-start output").as_bytes()), "{}", printed(&out.stderr));
    assert!(out.status.success(), "{}", printed(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The C example compiles against the release build, links by its SONAME, and
/// prints what the README shows.
#[test]
fn the_c_example_builds_and_runs_as_shown() {
    let dir = scratch("c");
    let host = Host::loopback(&dir, "builder");
    host.save_c_example();
    let printed_out = host.run_ok(&block("c-build"), Cwd::Checkout);
    assert_eq!(printed_out, printed(block("c-build output").as_bytes()));
    assert!(!repo().join("hello").exists() && !repo().join("hello.c").exists(), "the checkout stays clean");
    let _ = std::fs::remove_dir_all(&dir);
}

/// bindings/README.md's install puts the library where the loader finds it by its
/// SONAME: the C example, linked without an rpath, runs.
#[test]
fn the_installed_library_is_found_by_its_soname() {
    let dir = scratch("install");
    let host = Host::loopback(&dir, "server");
    host.save_c_example();
    host.run_ok(&block("install-library"), Cwd::Checkout);
    let found = host.run_ok("ldconfig -p | grep libstickless.so.1", Cwd::Checkout);
    assert!(found.contains("=> /usr/local/lib/libstickless.so.1"), "{found}");
    let ran = host.run_ok("cc -Iinclude hello.c -Ltarget/release -lstickless -o hello && ./hello", Cwd::Checkout);
    assert_eq!(ran, printed(block("c-build output").as_bytes()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// bindings/README.md's header for php-fpm's preloading is written where it says.
#[test]
fn the_php_preload_header_is_written_as_shown() {
    let dir = scratch("php-header");
    let host = Host::loopback(&dir, "web");
    host.run_ok(&block("checkout-sh"), Cwd::Checkout);
    let header = std::fs::read_to_string(host.etc_file("php/8.2/stickless.h")).expect("the header in /etc");
    assert!(
        header.starts_with("#define FFI_SCOPE \"stickless\"\n#define FFI_LIB \"/usr/local/lib/libstickless.so.1\"\n")
    );
    assert!(header.contains("int32_t stickless_get("), "the declarations follow");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The configuration files of "Growing past one pair", read by their programs
/// without an error or a warning.
#[test]
fn the_proxy_configurations_are_read_without_warnings() {
    let dir = scratch("proxies");
    let host = Host::loopback(&dir, "proxy");
    std::fs::write(host.home().join("nutcracker.yml"), block("config nutcracker")).unwrap();
    std::fs::write(host.home().join("haproxy.cfg"), block("config haproxy")).unwrap();
    std::fs::write(host.home().join("sessions.cfg"), block("php haproxy.cfg")).unwrap();
    let out = host.run("nutcracker -t -c nutcracker.yml", Cwd::Home, true);
    let said = format!("{}{}", printed(&out.stdout), printed(&out.stderr));
    assert!(out.status.success() && said.contains("syntax is ok"), "{said}");
    for config in ["haproxy.cfg", "sessions.cfg"] {
        let out = host.run(&format!("haproxy -c -f {config}"), Cwd::Home, true);
        let said = format!("{}{}", printed(&out.stdout), printed(&out.stderr));
        assert!(out.status.success() && !said.contains("WARNING") && !said.contains("ALERT"), "{config}: {said}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The charts of README.md and BENCHMARKS.md are what `scripts/charts` draws from
/// BENCHMARKS.md's Summary table, byte for byte.
#[test]
fn the_charts_are_drawn_from_the_benchmarks_summary() {
    let out = Command::new(repo().join("scripts/charts")).arg("--check").output().unwrap();
    assert!(out.status.success(), "{}{}", printed(&out.stdout), printed(&out.stderr));
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for chart in ["memcached.svg", "tls.svg", "peers.svg", "ceiling.svg"] {
        assert!(readme.contains(&format!("(benches/charts/{chart})")), "README.md shows {chart}");
    }
}

/// Operating's Prometheus configuration loads the rules from where the package
/// puts them (here read from the checkout's copy), as promtool reads it.
#[test]
fn the_prometheus_configuration_loads_the_packaged_rules() {
    let dir = scratch("prometheus");
    let installed = "/usr/share/stickless/prometheus/";
    let config = block("config prometheus");
    assert!(config.contains(&format!("{installed}stickless.rules.yml")), "{config}");
    let deb = std::fs::read_to_string(repo().join("scripts/deb")).unwrap();
    assert!(deb.contains("$root/usr/share/stickless/prometheus"), "scripts/deb installs the rules there");
    let checkout = format!("{}/", repo().join("packaging/prometheus").display());
    std::fs::write(dir.join("prometheus.yml"), config.replace(installed, &checkout)).unwrap();
    let out = Command::new("promtool").args(["check", "config", "prometheus.yml"]).current_dir(&dir).output();
    let out = out.expect("promtool (scripts/test installs Debian's prometheus package)");
    let said = format!("{}{}", printed(&out.stdout), printed(&out.stderr));
    let rules = std::fs::read_to_string(repo().join("packaging/prometheus/stickless.rules.yml")).unwrap();
    let count = rules
        .lines()
        .filter(|line| line.trim_start().starts_with("- alert:") || line.trim_start().starts_with("- record:"))
        .count();
    assert!(out.status.success() && said.contains(&format!("SUCCESS: {count} rules found")), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The README's two hosts and a web server on one bridge, with the pair's files
/// made by the README's commands on an administrator's machine, copied to each
/// node, and installed there by the README's commands.
struct Production {
    hosts: BTreeMap<&'static str, Host>,
    // Dropped after the hosts, whose veths it holds.
    _switch: Netns,
    dir: PathBuf,
}

/// Each host of the production commands and its address.
const HOSTS: [(&str, &str); 3] = [("cache1", "10.0.0.1"), ("cache2", "10.0.0.2"), ("web", "10.0.0.10")];

impl Production {
    fn new(name: &str) -> Production {
        let dir = scratch(name);
        let switch = Netns::new("lan");
        ip(&["-n", &switch.0, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch.0, "link", "set", "br0", "up"]);
        let mut hosts = BTreeMap::new();
        for (host, address) in HOSTS {
            let netns = Netns::new(host);
            ip(&["link", "add", "eth0", "netns", &netns.0, "type", "veth", "peer", "name", host, "netns", &switch.0]);
            ip(&["-n", &switch.0, "link", "set", host, "master", "br0", "up"]);
            ip(&["-n", &netns.0, "addr", "add", &format!("{address}/24"), "dev", "eth0"]);
            ip(&["-n", &netns.0, "link", "set", "eth0", "up"]);
            hosts.insert(host, Host::with_netns(&dir, host, netns));
        }
        let production = Production { hosts, _switch: switch, dir };
        // The administrator's machine makes the certificates and the secret.
        let admin = Host::loopback(&production.dir, "admin");
        admin.run_ok(&block("tls-files"), Cwd::Home);
        admin.run_ok(&block("pair-files"), Cwd::Home);
        for node in ["cache1", "cache2"] {
            let host = &production.hosts[node];
            for file in ["secret".to_string(), "ca.pem".into(), format!("{node}.pem"), format!("{node}.key")] {
                std::fs::copy(admin.home().join(&file), host.home().join(&file)).unwrap();
            }
            host.run_ok(&block("pair-install"), Cwd::Home);
            use std::os::unix::fs::PermissionsExt;
            for (file, mode) in [("secret", 0o600), ("node.key", 0o600), ("node.pem", 0o644), ("ca.pem", 0o644)] {
                let meta = std::fs::metadata(host.etc_file(&format!("stickless/{file}"))).unwrap();
                assert_eq!(meta.permissions().mode() & 0o777, mode, "{node}: /etc/stickless/{file}");
            }
        }
        production
    }

    fn host(&self, name: &str) -> &Host {
        &self.hosts[name]
    }

    /// `stats replication` of the node at `addr`, asked from the web server.
    fn replication(&self, addr: &str) -> std::io::Result<BTreeMap<String, String>> {
        let reply = exchange(&self.host("web").netns.0, addr, b"stats replication\r\n", b"END\r\n")?;
        Ok(printed(&reply)
            .lines()
            .filter_map(|l| l.strip_prefix("STAT "))
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// Starts each node's part of a pair block (`# on cacheN (...)` opens a node's
    /// lines; those before the first are both nodes'), and waits until each serves
    /// clients on `addr:11211` with its link up over TLS.
    fn start_pair(&self, marker: &str) -> [Running; 2] {
        let text = block(marker);
        let nodes = ["cache1", "cache2"].map(|node| self.host(node).spawn(&node_part(&text, node), Cwd::Home));
        self.wait_pair(nodes)
    }

    fn wait_pair(&self, mut nodes: [Running; 2]) -> [Running; 2] {
        for (node, address) in [("cache1", "10.0.0.1"), ("cache2", "10.0.0.2")] {
            let index = usize::from(node == "cache2");
            let addr = format!("{address}:11211");
            wait_for(&format!("{node} to serve with its link up"), START_DEADLINE, || {
                nodes[index].assert_running();
                self.replication(&addr).is_ok_and(|stats| stats.get("repl_peer_state").is_some_and(|s| s == "up"))
            });
            let stats = self.replication(&addr).unwrap();
            assert_eq!(stats["repl_link_tls"], "1", "{node}: the link is encrypted");
            assert!(nodes[index].log().contains("replication: linked to node"), "{}", nodes[index].log());
        }
        nodes
    }
}

impl Drop for Production {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The lines of a pair block that `node` runs.
fn node_part(text: &str, node: &str) -> String {
    let mut common = String::new();
    let mut own = String::new();
    let mut current: Option<bool> = None;
    for line in text.lines() {
        if let Some(header) = line.strip_prefix("# on ") {
            current = Some(header.starts_with(&format!("{node} ")));
            continue;
        }
        match current {
            None => common.push_str(&format!("{line}\n")),
            Some(true) => own.push_str(&format!("{line}\n")),
            Some(false) => {}
        }
    }
    assert!(!own.trim().is_empty(), "no `# on {node} (...)` part in:\n{text}");
    common + &own
}

/// Replication's commands on cache1 and cache2, and the configuration file of
/// Operating in place of cache1's command line: a session written on one node is
/// read on the other.
#[test]
fn the_production_pair_links_over_tls_from_the_command_line_and_the_configuration_file() {
    let production = Production::new("pair");
    let web = &production.host("web").netns.0;
    {
        let _pair = production.start_pair("pair replication");
        let set = b"set sess:prod 0 0 5\r\nalice\r\n";
        assert_eq!(exchange(web, "10.0.0.1:11211", set, b"\r\n").unwrap(), b"STORED\r\n");
        wait_for("the session on cache2", START_DEADLINE, || {
            exchange(web, "10.0.0.2:11211", b"get sess:prod\r\n", b"END\r\n").unwrap()
                == b"VALUE sess:prod 0 5\r\nalice\r\nEND\r\n"
        });
    }
    // cache1 from its configuration file, cache2 from Replication's command.
    let cache1 = production.host("cache1");
    std::fs::write(cache1.home().join("stickless.conf"), block("pair config")).unwrap();
    cache1.run_ok("install -m 644 stickless.conf /etc/stickless/stickless.conf", Cwd::Home);
    let from_file = cache1.spawn("stickless --config-file /etc/stickless/stickless.conf -u root", Cwd::Home);
    let cache2 = production.host("cache2").spawn(&node_part(&block("pair replication"), "cache2"), Cwd::Home);
    let _pair = production.wait_pair([from_file, cache2]);
    let stats = production.replication("10.0.0.1:11211").unwrap();
    assert_eq!(stats["repl_mode"], "ack", "the file's --repl-sync ack: {stats:?}");
}

/// The TLS section's client commands, each on cache1 with its files: TLS on the
/// network address, plaintext on `notls:` loopback, and client certificates
/// required by the second.
#[test]
fn the_tls_client_commands_serve_tls() {
    let production = Production::new("tls");
    let cache1 = production.host("cache1");
    let web = &production.host("web").netns.0;
    let admin = common::pki::Pki { dir: production.dir.join("admin/home") };
    let text = block("tls-clients");
    let commands: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).collect();
    assert_eq!(commands.len(), 2, "{text}");
    for (index, command) in commands.iter().enumerate() {
        let mut daemon = cache1.spawn(command, Cwd::Home);
        // The second requires a certificate from the CA: cache2 shows its own.
        let identity = (index == 1).then_some("cache2");
        let config = admin.client_config("ca", identity);
        wait_for(&format!("{command} to listen"), START_DEADLINE, || {
            daemon.assert_running();
            connect_in(web, "10.0.0.1:11211".parse().unwrap()).is_ok()
        });
        let stream = connect_in(web, "10.0.0.1:11211".parse().unwrap()).unwrap();
        let name = rustls::pki_types::ServerName::try_from("10.0.0.1").unwrap();
        let connection = rustls::ClientConnection::new(config, name).unwrap();
        let mut tls = rustls::StreamOwned::new(connection, stream);
        tls.write_all(b"version\r\n").unwrap();
        let mut reply = [0u8; 64];
        let n = tls.read(&mut reply).unwrap();
        assert!(reply[..n].starts_with(b"VERSION 1.6.18-stickless"), "{command}: {}", printed(&reply[..n]));
        if index == 0 {
            // notls:127.0.0.1:11211 stays plaintext, on the host itself.
            let plain = exchange(&cache1.netns.0, "127.0.0.1:11211", b"version\r\n", b"\r\n").unwrap();
            assert!(plain.starts_with(b"VERSION 1.6.18-stickless"), "{}", printed(&plain));
        } else {
            // Without a client certificate, no session.
            let refused = admin.client_config("ca", None);
            let stream = connect_in(web, "10.0.0.1:11211".parse().unwrap()).unwrap();
            let connection =
                rustls::ClientConnection::new(refused, rustls::pki_types::ServerName::try_from("10.0.0.1").unwrap())
                    .unwrap();
            let mut tls = rustls::StreamOwned::new(connection, stream);
            let answered = tls.write_all(b"version\r\n").and_then(|()| tls.read(&mut reply));
            assert!(!matches!(answered, Ok(n) if n > 0), "a client without a certificate was answered");
        }
    }
}

/// Sessions' pair, and every supported PHP setup of its table, through cache1's
/// death and return: each session written, cache1 killed, each updated, cache1
/// started again (it listens once cache2 has sent it every session), each read.
#[test]
fn every_supported_php_setup_keeps_its_session_through_a_dead_node() {
    let production = Production::new("php");
    let [cache1, cache2] = production.start_pair("pair sessions");
    let web = production.host("web");
    std::fs::write(web.home().join("haproxy.cfg"), block("php haproxy.cfg")).unwrap();
    let mut haproxy = web.spawn("haproxy -db -f haproxy.cfg", Cwd::Home);
    wait_for("haproxy on 127.0.0.1:11411", START_DEADLINE, || {
        haproxy.assert_running();
        exchange(&web.netns.0, "127.0.0.1:11411", b"version\r\n", b"\r\n").is_ok()
    });
    // (setup, the app server each step runs on: before the death, during, after)
    let setups = [
        ("recommended", ["web", "web", "web"]),
        ("failover", ["web", "web", "web"]),
        ("pecl", ["web", "web", "web"]),
        // The load balancer sends requests away from cache1 while its node is down.
        ("local", ["cache1", "cache2", "cache1"]),
    ];
    for (setup, _) in &setups {
        for host in ["web", "cache1", "cache2"] {
            let ini = production.host(host).home().join(format!("php-{setup}"));
            std::fs::create_dir_all(&ini).unwrap();
            std::fs::write(ini.join("sessions.ini"), block(&format!("php {setup}"))).unwrap();
        }
    }
    let script = repo().join("tests/clients/php_failover.php");
    let request = |setup: &str, host: &str, mode: &str| -> (String, String) {
        // The settings are the README's, read by PHP with its own php.ini files.
        let command =
            format!("PHP_INI_SCAN_DIR=:$PWD/php-{setup} php {} {mode} - ini readme-{setup}", script.display());
        let out = production.host(host).run(&command, Cwd::Home, true);
        assert!(out.status.success(), "{setup} {mode} on {host}: {}", printed(&out.stderr));
        (printed(&out.stdout), printed(&out.stderr))
    };
    for (setup, hosts) in &setups {
        assert_eq!(request(setup, hosts[0], "write").0, "ok", "{setup}: write");
    }
    drop(cache1);
    for (setup, hosts) in &setups {
        let (said, warned) = request(setup, hosts[1], "update");
        assert_eq!(said, "ok", "{setup}: the update found its session while cache1 was dead ({warned})");
        if *setup == "failover" {
            assert!(warned.contains("SERVER IS MARKED DEAD"), "the warning the README names: {warned}");
        }
    }
    let cache1 = production.host("cache1").spawn(&node_part(&block("pair sessions"), "cache1"), Cwd::Home);
    let _pair = production.wait_pair([cache1, cache2]);
    for (setup, hosts) in &setups {
        assert_eq!(request(setup, hosts[2], "read").0, "2", "{setup}: the session after cache1 came back");
    }
}

/// ASP.NET's pair, and the requests the section shows: saved through cache1, read
/// through cache2, answered as shown.
#[test]
fn the_aspnet_pair_answers_the_requests_shown() {
    let production = Production::new("aspnet");
    let _pair = production.start_pair("pair aspnet");
    let out = production.host("web").run(&block("aspnet requests"), Cwd::Home, false);
    assert_eq!(printed(&out.stdout), printed(block("aspnet requests output").as_bytes()), "{}", printed(&out.stderr));
}
