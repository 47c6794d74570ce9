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
