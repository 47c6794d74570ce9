//! examples/webfarm end to end: haproxy round-robin over two PHP app servers whose
//! sessions live in a stickless pair; a node killed with SIGKILL and restarted
//! mid-run, and every request still sees its session, its count never going back.

use std::process::Command;

#[test]
fn a_web_farm_keeps_every_session_through_a_killed_and_restarted_node() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/webfarm/webfarm.py");
    // Bounded: coreutils' timeout stops a run that hangs.
    let output = Command::new("timeout")
        .args(["120", "/usr/bin/python3", script, "--stickless", env!("CARGO_BIN_EXE_stickless")])
        .output()
        .expect("python3, php and haproxy (scripts/test installs them)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.ends_with("ok\n"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
