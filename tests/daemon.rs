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
    assert!(String::from_utf8_lossy(&help.stdout).contains("-p, --port=<num>"));
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
        .args(["-p", "0", "-v"])
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
