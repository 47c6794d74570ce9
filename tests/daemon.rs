//! The `stickless` binary itself: usage, bad flags, and a clean exit on SIGTERM/SIGINT
//! that still answers what was already asked.

mod common;

use common::{Client, Daemon};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stickless"))
}

#[test]
fn help_and_bad_flags() {
    let help = bin().arg("-h").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    assert!(help.contains("-p, --port=<num>"));
    // Every replication option with a default names it.
    let sync = help.split("--repl-sync=").nth(1).unwrap().split("\n    --").next().unwrap();
    assert!(sync.contains("(default: async)"), "{sync}");
    let udp = bin().args(["-U", "11211"]).output().unwrap();
    assert_eq!(udp.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&udp.stderr).contains("UDP is not supported"));
}

fn stop_with(signal: i32) {
    let mut daemon = Daemon::start(&["-t", "2"]);
    let addr = daemon.addr;
    let mut client = Client::connect(addr);
    assert_eq!(client.step(b"set k 0 0 1\r\nv\r\n"), b"STORED\r\n");
    // SAFETY: kill with a valid signal on the PID of a child this test started.
    assert_eq!(unsafe { libc::kill(daemon.child.id() as i32, signal) }, 0);
    let status = daemon.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(client.read_until(b"<never>"), b"<closed>");
}

#[test]
fn sigterm_exits_cleanly() {
    stop_with(libc::SIGTERM);
}

#[test]
fn sigint_exits_cleanly() {
    stop_with(libc::SIGINT);
}

#[test]
fn shutdown_command_needs_dash_a_and_stops_the_daemon() {
    let daemon = Daemon::start(&["-t", "1"]);
    let mut client = Client::connect(daemon.addr);
    assert_eq!(client.step(b"shutdown\r\n"), b"ERROR: shutdown not enabled\r\n");
    drop(daemon);
    for mode in ["", " graceful"] {
        let mut daemon = Daemon::start(&["-t", "1", "-A"]);
        let mut client = Client::connect(daemon.addr);
        assert_eq!(client.step(b"shutdown later\r\n"), b"CLIENT_ERROR invalid shutdown mode\r\n");
        client.send(format!("shutdown{mode}\r\n").as_bytes());
        assert_eq!(client.read_until(b"<never>"), b"<closed>");
        let status = daemon.child.wait().unwrap();
        assert!(status.success(), "shutdown{mode}: exit status {status:?}");
    }
}

/// The daemon's stderr up to its "listening on" line (`-v`), then it is stopped.
fn start_up_log(args: &[&str]) -> String {
    use std::io::BufRead;
    let mut child = bin()
        .args(["-p", "0", "-v", "-u", "root"])
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the daemon");
    let mut log = String::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.expect("the daemon's log");
        log.push_str(&line);
        log.push('\n');
        if line.contains("listening on") {
            break;
        }
    }
    // SAFETY: kill has no memory preconditions; the pid is this test's own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    log
}

#[test]
fn a_port_open_to_the_network_without_authentication_is_warned_about() {
    let open = start_up_log(&["-l", "0.0.0.0"]);
    assert!(open.contains("WARN") && open.contains("served without authentication"), "{open}");
    let local = start_up_log(&["-l", "127.0.0.1"]);
    assert!(!local.contains("without authentication"), "{local}");
    let dir = std::env::temp_dir().join(format!("stickless-open-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let authfile = dir.join("authfile");
    std::fs::write(&authfile, "alice:wonderland\n").unwrap();
    let guarded = start_up_log(&["-l", "0.0.0.0", "-Y", authfile.to_str().unwrap()]);
    assert!(!guarded.contains("without authentication"), "{guarded}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The options of Debian's `/etc/memcached.conf` (as its start script passes them:
/// `-d`, a pid file, `-u memcache`), with the issue's `-c` and `-o idle_timeout`,
/// given to Debian's memcached and to stickless alike: both detach and return 0 once
/// listening, write their pid, run as the user, serve, and remove the pid file on
/// SIGTERM.
#[test]
fn debians_start_line_runs_both_binaries_alike() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("stickless-service-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = std::fs::read_to_string("/etc/memcached.conf").expect("Debian's memcached package installs it");
    // The start script's own lines (`logfile`) are not options; `-p` and `-P` are
    // the test's, so that the two binaries and any memcached already running
    // never share a port or a file.
    let mut options: Vec<String> = conf
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with('-') && !line.starts_with("-p") && !line.starts_with("-P"))
        .flat_map(|line| line.splitn(2, ' ').map(str::to_string).collect::<Vec<_>>())
        .collect();
    options.extend(["-c", "1024", "-o", "idle_timeout=600"].map(String::from));
    assert!(options.contains(&"-d".to_string()) && options.contains(&"-u".to_string()), "{options:?}");
    let user = options[options.iter().position(|o| o == "-u").unwrap() + 1].clone();
    let c_user = std::ffi::CString::new(user.clone()).unwrap();
    // SAFETY: getpwnam reads a NUL-terminated name; the entry is read at once.
    let uid = unsafe {
        let entry = libc::getpwnam(c_user.as_ptr());
        assert!(!entry.is_null(), "the user {user} exists (Debian's memcached package adds it)");
        (*entry).pw_uid
    };
    // The user's own, as Debian's /run/memcached is: it removes the pid file at exit.
    std::os::unix::fs::chown(&dir, Some(uid), None).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for program in ["memcached", env!("CARGO_BIN_EXE_stickless")] {
        let port = common::free_port();
        let pid_file = dir.join(format!("{}.pid", port));
        let status = Command::new("timeout")
            .args(["20", program])
            .args(&options)
            .args(["-p", &port.to_string(), "-P"])
            .arg(&pid_file)
            .stdin(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{program}: {status}");
        // The parent returned: the child listens (memcached writes its pid file
        // just after, so wait for that with a deadline).
        let deadline = std::time::Instant::now() + common::EXCHANGE_DEADLINE;
        let pid: i32 = loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|text| text.trim().parse().ok()) {
                break pid;
            }
            assert!(std::time::Instant::now() < deadline, "{program}: no pid file");
            std::thread::yield_now();
        };
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut client = Client::connect(addr);
        assert_eq!(
            client.step(b"set k 0 0 1\r\nv\r\nget k\r\n"),
            b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n",
            "{program}"
        );
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let runs_as = status.lines().find(|l| l.starts_with("Uid:")).unwrap().split_whitespace().nth(2).unwrap();
        assert_eq!(runs_as, uid.to_string(), "{program} runs as {user}");
        let settings = common::parse_stats(&client.request(b"stats settings\r\n", b"END\r\n"));
        assert_eq!(settings["idle_timeout"], "600", "{program}");
        assert_eq!(settings["maxconns"], "1024", "{program}");
        // SAFETY: kill(2) on the daemon this test started, by the pid it wrote.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let deadline = std::time::Instant::now() + common::EXCHANGE_DEADLINE;
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(std::time::Instant::now() < deadline, "{program} did not exit on SIGTERM");
            std::thread::yield_now();
        }
        if program != "memcached" {
            assert!(!pid_file.exists(), "stickless removes its pid file at exit");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A replication secret that is too short, or a file that cannot be read, is a
/// mistake in the command line: EX_USAGE (64), as for a bad flag, not EX_OSERR.
#[test]
fn a_bad_replication_secret_is_a_usage_error() {
    let dir = common::scratch_dir("bad-secret");
    let short = dir.join("short.secret");
    std::fs::write(&short, "too short\n").unwrap();
    let args = |secret: &std::path::Path| {
        let secret = secret.to_str().unwrap().to_string();
        bin()
            .args(["-u", "root", "-l", "127.0.0.1", "-p", "0", "--repl-listen", "127.0.0.1:0", "--repl-wait-sync", "0"])
            .args(["--repl-secret", &secret])
            .output()
            .unwrap()
    };
    let out = args(&short);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("shorter than 16 bytes"), "{out:?}");
    let out = args(&dir.join("missing.secret"));
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the replication secret"), "{out:?}");
    // A secret others may read is used, and named in the log with what to do.
    let loose = dir.join("loose.secret");
    std::fs::write(&loose, "0123456789abcdef0123456789abcdef\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let daemon = Daemon::start(&[
        "--repl-listen",
        "127.0.0.1:0",
        "--repl-wait-sync",
        "0",
        "--repl-secret",
        loose.to_str().unwrap(),
    ]);
    let warning =
        format!("the replication secret {} can be read by other users (mode 0644): chmod 600 it", loose.display());
    assert!(daemon.log().contains(&warning), "{}", daemon.log());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A node told to wait for its peer's sync says so at the default verbosity (no
/// `-v`), naming the peer and the wait, and says when it gives up: otherwise it
/// looks dead for `--repl-wait-sync` seconds.
#[test]
fn a_node_waiting_for_its_peer_says_whom_and_how_long() {
    let absent = format!("127.0.0.1:{}", common::free_port());
    let mut child = bin()
        .args(["-u", "root", "-l", "127.0.0.1", "-p", "0", "--repl-listen", "127.0.0.1:0", "--peer", &absent])
        .args(["--repl-wait-sync", "0.3"])
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A daemon that never says it gives up is stopped (by its PID, before it is
    // reaped) after a deadline, so the read below ends.
    let pid = child.id() as i32;
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(std::time::Duration::from_secs(20)).is_err() {
            // SAFETY: kill(2) on the daemon this test started; it is reaped only
            // after this thread is joined.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("serving clients from what this node holds")) {
        match lines.next() {
            Some(Ok(line)) => seen.push(line),
            _ => break,
        }
    }
    let _ = done.send(());
    watchdog.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let waiting = format!("waiting up to 0.3 s for the peer {absent} to send what it holds before serving clients");
    assert!(seen.iter().any(|l| l.contains(&waiting)), "{seen:#?}");
    assert!(seen.iter().any(|l| l.contains(&format!("no sync from the peer {absent} within 0.3 s"))), "{seen:#?}");
}

/// A daemon that cannot start says why on the terminal, and `-d` returns its status.
#[test]
fn a_detached_daemon_that_cannot_start_fails_in_the_foreground() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = bin().args(["-u", "root", "-d", "-l", "127.0.0.1", "-p", &port]).output().unwrap();
    assert_eq!(out.status.code(), Some(71));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on"), "{:?}", out);
}

/// As root, memcached refuses to start without `-u`, or with a user that does not
/// exist, before it binds anything; stickless refuses both with the same words and
/// exit status (EX_USAGE, EX_NOUSER). Not root, both ignore `-u`.
#[test]
fn root_without_a_user_to_become_is_refused_as_memcached_refuses_it() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let refusal = |program: &str, extra: &[&str]| {
        let port = common::free_port().to_string();
        let out = Command::new("timeout")
            .args(["-s", "KILL", "20", program, "-l", "127.0.0.1", "-p", &port, "-U", "0"])
            .args(extra)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    if !root {
        // Not root: -u names a user that is never looked up, in both.
        let (status, said) = refusal(env!("CARGO_BIN_EXE_stickless"), &["-u", "no-such-user-here", "-h"]);
        assert_eq!((status, said.as_str()), (Some(0), ""));
        return;
    }
    for (extra, expected) in [
        (&[][..], (Some(64), "can't run as root without the -u switch\n")),
        (&["-u", ""][..], (Some(64), "can't run as root without the -u switch\n")),
        (&["-u", "no-such-user-here"][..], (Some(67), "can't find the user no-such-user-here to switch to\n")),
        (&["-d", "-u", "no-such-user-here"][..], (Some(67), "can't find the user no-such-user-here to switch to\n")),
    ] {
        let memcached = refusal("memcached", extra);
        let stickless = refusal(env!("CARGO_BIN_EXE_stickless"), extra);
        assert_eq!((memcached.0, memcached.1.as_str()), expected, "memcached {extra:?}");
        assert_eq!(stickless, memcached, "stickless (left) and memcached (right), {extra:?}");
    }
}

/// `-o idle_timeout`: a connection silent that long is closed and counted
/// (`idle_kicks`); one that keeps talking is not.
#[test]
fn idle_connections_are_closed_after_idle_timeout() {
    let clock = stickless::store::ManualClock::new(1_700_000_000_000);
    let server = common::start_stickless(1, |c| {
        c.clock = stickless::store::Clock::Manual(clock.clone());
        c.idle_timeout = std::time::Duration::from_secs(30);
    });
    let mut idle = Client::connect(server.local_addr());
    assert_eq!(idle.step(b"version\r\n").len(), "VERSION ".len() + stickless::server::VERSION.len() + 2);
    let mut busy = Client::connect(server.local_addr());
    clock.advance_secs(20);
    assert_eq!(busy.step(b"get k\r\n"), b"END\r\n");
    clock.advance_secs(15);
    // The worker looks once a second: the idle one goes, the busy one (20 s ago) stays.
    assert_eq!(idle.read_until(b"<never>"), b"<closed>");
    assert_eq!(busy.step(b"get k\r\n"), b"END\r\n");
    let stats = common::parse_stats(&busy.request(b"stats\r\n", b"END\r\n"));
    assert_eq!(stats["idle_kicks"], "1");
    server.shutdown();
}
