//! Real memcached clients against stickless: libmemcached's tools (text and binary,
//! SASL included), PHP's memcached extension and its session handler with locking,
//! and pymemcache's whole API. `scripts/test` installs them from Debian's packages.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use stickless::server::Server;

/// Every external client runs under coreutils' `timeout`, so a hung client fails
/// the test instead of stalling the suite.
const CLIENT_TIMEOUT_SECS: &str = "60";

fn run(program: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg(CLIENT_TIMEOUT_SECS)
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/test installs the clients)"))
}

/// Runs a client that must succeed, and returns its standard output.
fn succeed(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn scratch_dir(name: &str) -> PathBuf {
    common::scratch_dir(&format!("clients-{name}"))
}

const SASL_USER: &str = "alice";
const SASL_PASSWORD: &str = "s3cret";

/// A server that requires SASL PLAIN from binary connections.
fn start_with_sasl(dir: &Path) -> Server {
    let pwdb = dir.join("sasl-pwdb");
    std::fs::write(&pwdb, format!("{SASL_USER}:{SASL_PASSWORD}\n")).unwrap();
    common::start_stickless(2, |c| {
        c.sasl = true;
        c.sasl_pwdb = Some(pwdb);
    })
}

fn tool_test_file(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("greeting.txt");
    let content = "hello from a file; ".repeat(100);
    std::fs::write(&path, &content).unwrap();
    // memccat ends what it prints with a newline.
    (path, content + "\n")
}

#[test]
fn libmemcached_tools_in_text_and_binary() {
    let dir = scratch_dir("tools");
    let server = common::start_stickless(2, |_| {});
    let servers = format!("--servers={}", server.local_addr());
    let (file, content) = tool_test_file(&dir);
    let file = file.to_str().unwrap();
    for mode in [None, Some("--binary")] {
        let with = |args: &[&str]| -> Vec<String> {
            let mut all = vec![servers.clone()];
            all.extend(mode.map(str::to_string));
            all.extend(args.iter().map(|s| s.to_string()));
            all
        };
        let go = |program: &str, args: &[&str]| {
            let args = with(args);
            succeed(program, &args.iter().map(String::as_str).collect::<Vec<_>>())
        };
        let fail = |program: &str, args: &[&str]| {
            let args = with(args);
            !run(program, &args.iter().map(String::as_str).collect::<Vec<_>>()).status.success()
        };
        go("memccp", &[file]);
        assert_eq!(go("memccat", &["greeting.txt"]), content, "{mode:?}");
        go("memcexist", &["greeting.txt"]);
        go("memctouch", &["--expire=100", "greeting.txt"]);
        go("memcrm", &["greeting.txt"]);
        assert!(fail("memccat", &["greeting.txt"]), "a removed key is gone ({mode:?})");
        assert!(fail("memcexist", &["greeting.txt"]), "{mode:?}");
        go("memccp", &[file]);
        go("memcflush", &[]);
        assert!(fail("memccat", &["greeting.txt"]), "flushed ({mode:?})");
        let stats = go("memcstat", &[]);
        assert!(stats.contains("version: 1.6.18-stickless"), "{stats}");
        assert!(stats.contains("curr_connections:"), "{stats}");
        for test in ["set", "get", "mget"] {
            let out = go("memcslap", &["--concurrency=4", "--execute-number=200", &format!("--test={test}")]);
            assert!(out.contains(&format!("Time to {test}")), "memcslap --test={test} {mode:?}: {out}");
        }
    }
    // memcping speaks the text protocol only.
    succeed("memcping", &[&servers]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn memccapable_passes_every_text_and_binary_check() {
    let server = common::start_stickless(2, |_| {});
    let addr = server.local_addr();
    let out = succeed("memccapable", &["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()]);
    assert!(out.contains("All tests passed"), "{out}");
    assert!(!out.contains("[fail]"), "{out}");
}

#[test]
fn libmemcached_tools_authenticate_with_sasl() {
    let dir = scratch_dir("sasl-tools");
    let server = start_with_sasl(&dir);
    let servers = format!("--servers={}", server.local_addr());
    let (file, content) = tool_test_file(&dir);
    let user = format!("--username={SASL_USER}");
    let password = format!("--password={SASL_PASSWORD}");
    succeed("memccp", &[&servers, "--binary", &user, &password, file.to_str().unwrap()]);
    assert_eq!(succeed("memccat", &[&servers, "--binary", &user, &password, "greeting.txt"]), content);
    let wrong = run("memccat", &[&servers, "--binary", &user, "--password=wrong", "greeting.txt"]);
    assert!(!wrong.status.success(), "a wrong password reads nothing");
    assert!(!String::from_utf8_lossy(&wrong.stdout).contains("hello"));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn php(script: &str, args: &[&str]) -> Output {
    let script = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut all = vec![script.as_str()];
    all.extend_from_slice(args);
    run("php", &all)
}

#[test]
fn php_memcached_extension_over_binary_with_sasl() {
    let dir = scratch_dir("php");
    let server = start_with_sasl(&dir);
    let addr = server.local_addr().to_string();
    let output = php("php_client.php", &[&addr, SASL_USER, SASL_PASSWORD]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.ends_with("ok flush\ndone\n"), "{stdout}");

    let refused = php("php_client.php", &[&addr, SASL_USER, "wrong"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("AUTHENTICATION FAILURE"));

    // And without SASL, the same script on an open server.
    let open = common::start_stickless(2, |_| {});
    let output = php("php_client.php", &[&open.local_addr().to_string()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn php_sessions_lock_and_survive_across_requests() {
    let dir = scratch_dir("php-session");
    let server = start_with_sasl(&dir);
    let addr = server.local_addr().to_string();
    let session = |mode: &str| -> String {
        let output = php("php_session.php", &[mode, &addr, "sess1", SASL_USER, SASL_PASSWORD]);
        assert!(output.status.success(), "{mode}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    // Each request is a new PHP process: the session lives in the server only.
    assert_eq!(session("count"), "1\n");
    assert_eq!(session("count"), "2\n");

    // A request holding the session keeps others out until it ends.
    let script = format!("{}/tests/clients/php_session.php", env!("CARGO_MANIFEST_DIR"));
    let mut holder = Command::new("timeout")
        .args([CLIENT_TIMEOUT_SECS, "php", &script, "hold", &addr, "sess1", SASL_USER, SASL_PASSWORD])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut holder_out = BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    holder_out.read_line(&mut line).unwrap();
    assert_eq!(line, "locked\n");
    assert_eq!(session("try"), "refused\n");
    holder.stdin.take().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    holder_out.read_line(&mut line).unwrap();
    assert_eq!(line, "released\n");
    assert!(holder.wait().unwrap().success());
    assert_eq!(session("try"), "acquired {\"count\":2,\"held\":\"yes\"}\n");

    // Without the password the handler cannot even read the session.
    let refused = php("php_session.php", &["count", &addr, "sess1", SASL_USER, "wrong"]);
    assert!(!refused.status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Debian's python3-pymemcache belongs to Debian's interpreter.
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

fn pymemcache(addr: SocketAddr, extra: &[&str]) -> Output {
    let script = format!("{}/tests/clients/pymemcache_api.py", env!("CARGO_MANIFEST_DIR"));
    let addr = addr.to_string();
    let mut args = vec![script.as_str(), addr.as_str()];
    args.extend_from_slice(extra);
    run(DEBIAN_PYTHON, &args)
}

#[test]
fn pymemcache_whole_api() {
    // A daemon with -A, so that the script's last call, shutdown, stops it.
    let mut daemon = common::Daemon::start(&["-A"]);
    let output = pymemcache(daemon.addr, &["--shutdown"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.ends_with("ok shutdown\ndone\n"), "{stdout}");
    assert!(daemon.child.wait().unwrap().success(), "shutdown stops the daemon cleanly");
}
