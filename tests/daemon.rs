//! The `stickless` binary itself: usage, bad flags, and a clean exit on SIGTERM/SIGINT
//! that still answers what was already asked.

mod common;

use common::Client;
use std::process::{Command, Stdio};

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
    let port = common::free_port();
    let mut child = bin()
        .args(["-l", "127.0.0.1", "-p", &port.to_string(), "-t", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + common::EXCHANGE_DEADLINE;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "daemon did not start");
        std::thread::yield_now();
    }
    let mut client = Client::connect(addr);
    assert_eq!(client.step(b"set k 0 0 1\r\nv\r\n"), b"STORED\r\n");
    // SAFETY: kill with a valid signal on the PID of a child this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let status = child.wait().unwrap();
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
