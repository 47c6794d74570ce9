//! The example farms end to end, each with a node killed with SIGKILL and restarted
//! mid-run. examples/webfarm: haproxy round-robin over two PHP app servers whose
//! sessions live in a mesh of three stickless nodes, one of them also cut off from
//! the others (haproxy's /health check takes it out); every request still sees its
//! session, its count going up by one each time. examples/aspnet-farm: an ASP.NET farm's state server
//! traffic through haproxy to a pair on `--aspnet-listen`.

use std::process::Command;

#[test]
fn a_web_farm_keeps_every_session_through_a_killed_a_restarted_and_a_cut_off_node() {
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

/// examples/aspnet-farm end to end: two web servers' state server traffic, as
/// System.Web sends it, through haproxy to a stickless pair; a node killed with
/// SIGKILL and restarted mid-run, and every page still finds its session, locks
/// it and saves it, its count never going back.
#[test]
fn an_aspnet_farm_keeps_its_session_and_lock_through_a_killed_and_restarted_node() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/aspnet-farm/farm.py");
    // Bounded: coreutils' timeout stops a run that hangs.
    let output = Command::new("timeout")
        .args(["120", "/usr/bin/python3", script, "--stickless", env!("CARGO_BIN_EXE_stickless")])
        .output()
        .expect("python3 and haproxy (scripts/test installs them)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.ends_with("ok\n"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
