//! `stats conns`, `watch` and the unix socket (`-s`, `-a`): what an operator uses to
//! see into a running daemon, compared with memcached where memcached defines it.

mod common;

use common::{Client, Daemon, EXCHANGE_DEADLINE, Memcached, binary_request};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Opens one connection in each state memcached names, then asks for `stats conns`
/// on a last one; returns the reply with descriptors and ports replaced by their
/// order of appearance, so two servers' replies compare.
fn conns_in_every_state(addr: SocketAddr) -> String {
    let connect = || {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(EXCHANGE_DEADLINE)).unwrap();
        stream
    };
    let read_reply = |stream: &mut TcpStream, end: &[u8]| {
        let mut got = Vec::new();
        let mut buf = [0; 4096];
        while !got.ends_with(end) {
            let n = stream.read(&mut buf).expect("reply within the deadline");
            assert!(n > 0, "closed");
            got.extend_from_slice(&buf[..n]);
        }
        got
    };
    let new = connect();
    let mut done = connect();
    done.write_all(b"version\r\n").unwrap();
    read_reply(&mut done, b"\r\n");
    let mut partial_line = connect();
    partial_line.write_all(b"get fo").unwrap();
    let mut nread = connect();
    nread.write_all(b"set a 0 0 10\r\nabc").unwrap();
    let mut swallow = connect();
    // memcached answers a value over -I once it has swallowed it; this one never ends.
    swallow.write_all(b"set a 0 0 2000000\r\nabc").unwrap();
    let mut asker = connect();
    // The others' bytes reach the server before this request (one loopback path), but
    // the server may not have read them yet: ask until it has.
    let deadline = Instant::now() + EXCHANGE_DEADLINE;
    loop {
        asker.write_all(b"stats conns\r\n").unwrap();
        let reply = String::from_utf8(read_reply(&mut asker, b"END\r\n")).unwrap();
        let settled = ["conn_nread", "conn_swallow", "conn_new_cmd"].iter().all(|s| reply.contains(s))
            && reply.matches("conn_read").count() == 2;
        if settled || Instant::now() > deadline {
            drop((new, partial_line, nread, swallow));
            return normalize_conns(&reply);
        }
    }
}

/// Replaces each descriptor and each port by `#n` in order of first appearance, and
/// idle seconds by `S`.
fn normalize_conns(reply: &str) -> String {
    let mut names: Vec<String> = Vec::new();
    let mut name = |raw: &str| {
        let index = names.iter().position(|n| n == raw).unwrap_or_else(|| {
            names.push(raw.to_string());
            names.len() - 1
        });
        format!("#{index}")
    };
    let mut out = String::new();
    for line in reply.lines() {
        let Some(rest) = line.strip_prefix("STAT ") else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let (fd, rest) = rest.split_once(':').unwrap();
        let (stat, value) = rest.split_once(' ').unwrap();
        let value = match stat {
            "secs_since_last_cmd" => "S".to_string(),
            "addr" | "listen_addr" => {
                let (host, port) = value.rsplit_once(':').unwrap();
                format!("{host}:{}", name(&format!("port {port}")))
            }
            _ => value.to_string(),
        };
        out.push_str(&format!("STAT {}:{stat} {value}\n", name(&format!("fd {fd}"))));
    }
    out
}

#[test]
fn stats_conns_names_the_states_memcached_names() {
    let memcached = Memcached::start(&[]);
    let stickless = Daemon::start(&[]);
    let expected = conns_in_every_state(memcached.addr);
    assert_eq!(conns_in_every_state(stickless.addr), expected);
    for state in ["conn_listening", "conn_new_cmd", "conn_read", "conn_nread", "conn_swallow", "conn_parse_cmd"] {
        assert!(expected.contains(state), "{state} in {expected}");
    }
}

/// The `cfd` the server knows a client by: the descriptor `stats conns` shows in
/// `conn_parse_cmd` when the client itself asks.
/// The server's descriptor for `client`'s connection, found in `stats conns` by
/// the client's address (the watcher may be mid-command too, so its state cannot
/// tell them apart).
fn own_descriptor(client: &mut Client) -> String {
    let addr = format!(":addr tcp:{}", client.local_addr());
    let reply = String::from_utf8(client.step(b"stats conns\r\n")).unwrap();
    let line = reply.lines().find(|l| l.ends_with(&addr)).unwrap_or_else(|| panic!("no {addr} in {reply}"));
    line.trim_start_matches("STAT ").split(':').next().unwrap().to_string()
}

/// Reads log lines until `count` have arrived, with their timestamps removed.
fn watch_lines(watcher: &mut TcpStream, count: usize) -> Vec<String> {
    let deadline = Instant::now() + EXCHANGE_DEADLINE;
    let mut got = String::new();
    let mut buf = [0; 4096];
    while got.matches('\n').count() < count {
        assert!(Instant::now() < deadline, "only these lines arrived: {got}");
        match watcher.read(&mut buf) {
            Ok(0) => panic!("the watcher was closed after: {got}"),
            Ok(n) => got.push_str(std::str::from_utf8(&buf[..n]).unwrap()),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("{e}"),
        }
    }
    got.lines()
        .map(|line| {
            let (ts, rest) = line.split_once(' ').unwrap();
            let (secs, micros) = ts.strip_prefix("ts=").unwrap().split_once('.').unwrap();
            assert!(secs.parse::<u64>().is_ok() && micros.len() == 6, "timestamp in {line}");
            rest.to_string()
        })
        .collect()
}

fn watcher(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    stream.write_all(request).unwrap();
    let mut ok = [0; 4];
    let deadline = Instant::now() + EXCHANGE_DEADLINE;
    let mut got = 0;
    while got < ok.len() {
        assert!(Instant::now() < deadline, "no OK to the watch");
        match stream.read(&mut ok[got..]) {
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(&ok, b"OK\r\n");
    stream
}

#[test]
fn watch_reports_every_protocol_path_in_memcacheds_format() {
    let server = common::start_stickless(2, |_| {});
    let mut watched = watcher(server.local_addr(), b"watch mutations deletions fetchers\r\n");
    let mut client = Client::connect(server.local_addr());
    let cfd = own_descriptor(&mut client);
    let replies = client.step(
        b"set foo 5 100 3\r\nbar\r\nappend foo 0 0 1\r\nx\r\nadd foo 0 0 1\r\nx\r\nget foo nope\r\n\
          delete foo\r\nms k 2 T10\r\nhi\r\ncas k 0 0 1 999\r\nz\r\nmg k v\r\nmd k\r\nincr k 1\r\ntouch k 1\r\n",
    );
    assert_eq!(
        String::from_utf8(replies).unwrap(),
        "STORED\r\nSTORED\r\nNOT_STORED\r\nVALUE foo 5 4\r\nbarx\r\nEND\r\nDELETED\r\nHD\r\nEXISTS\r\nVA 2\r\nhi\r\n\
         HD\r\nNOT_FOUND\r\nNOT_FOUND\r\n"
    );
    let expected = [
        format!("gid=1 type=item_store key=foo status=stored cmd=set ttl=100 clsid=1 cfd={cfd} size=3"),
        format!("gid=2 type=item_store key=foo status=stored cmd=append ttl=100 clsid=1 cfd={cfd} size=4"),
        format!("gid=3 type=item_store key=foo status=not_stored cmd=add ttl=0 clsid=1 cfd={cfd} size=1"),
        format!("gid=4 type=item_get key=foo status=found clsid=1 cfd={cfd} size=4"),
        format!("gid=5 type=item_get key=nope status=not_found clsid=0 cfd={cfd} size=0"),
        "gid=6 type=deleted key=foo cmd=delete clsid=1 size=4".to_string(),
        format!("gid=7 type=item_store key=k status=stored cmd=set ttl=10 clsid=1 cfd={cfd} size=2"),
        format!("gid=8 type=item_store key=k status=exists cmd=cas ttl=0 clsid=1 cfd={cfd} size=1"),
        format!("gid=9 type=item_get key=k status=found clsid=1 cfd={cfd} size=2"),
        "gid=10 type=deleted key=k cmd=md clsid=1 size=2".to_string(),
    ];
    assert_eq!(watch_lines(&mut watched, expected.len()), expected);

    // The binary protocol logs the same way; its keys may hold any byte.
    let mut binary = Client::connect(server.local_addr());
    let set = binary_request(0x01, b"a key\n", &[0; 8], b"v");
    let delete = binary_request(0x04, b"a key\n", &[], b"");
    binary.binary_step(&[set, delete].concat());
    let lines = watch_lines(&mut watched, 2);
    assert!(lines[0].starts_with("gid=11 type=item_store key=a%20key%0A status=stored cmd=set ttl=0"), "{lines:?}");
    assert_eq!(lines[1], "gid=12 type=deleted key=a%20key%0A cmd=delete clsid=1 size=1");
}

#[test]
fn watch_evictions_names_the_evicted_keys() {
    // A manual clock: `la` (seconds since the last access) must not depend on a
    // second boundary falling inside the batch.
    let clock = stickless::store::ManualClock::new(1_700_000_000_000);
    let server = common::start_stickless(1, |c| {
        c.memory_limit = 2 << 20;
        c.clock = stickless::store::Clock::Manual(clock.clone());
    });
    let mut watched = watcher(server.local_addr(), b"watch evictions\r\n");
    let mut client = Client::connect(server.local_addr());
    let value = vec![b'v'; 100_000];
    let mut batch = Vec::new();
    for i in 0..40 {
        batch.extend_from_slice(format!("set big{i} 0 0 {} noreply\r\n", value.len()).as_bytes());
        batch.extend_from_slice(&value);
        batch.extend_from_slice(b"\r\n");
    }
    client.step(&batch);
    let line = &watch_lines(&mut watched, 1)[0];
    let rest = line.split_once(" type=eviction key=big").unwrap_or_else(|| panic!("an eviction: {line}")).1;
    assert!(rest.ends_with(" fetch=no ttl=-1 la=0 clsid=1 size=100000"), "{line}");
}

#[test]
fn watch_refusals_and_a_departed_watcher() {
    let memcached = Memcached::start(&[]);
    let server = common::start_stickless(1, |_| {});
    for addr in [memcached.addr, server.local_addr()] {
        let mut client = Client::connect(addr);
        assert_eq!(client.step(b"watch bogus\r\n"), b"ERROR\r\n", "{addr}");
        // noreply silences the refusal of the unknown stream "noreply".
        assert_eq!(client.step(b"watch mutations noreply\r\n"), b"", "{addr}");
    }
    let watched = watcher(server.local_addr(), b"watch\r\n");
    let mut client = Client::connect(server.local_addr());
    let states = |client: &mut Client| String::from_utf8(client.step(b"stats conns\r\n")).unwrap();
    assert!(states(&mut client).contains("state conn_watch"));
    drop(watched);
    let deadline = Instant::now() + EXCHANGE_DEADLINE;
    while states(&mut client).contains("conn_watch") {
        assert!(Instant::now() < deadline, "the closed watcher is still listed");
    }
    // Commands still run normally with nobody watching.
    assert_eq!(client.step(b"set k 0 0 1\r\nv\r\nget k\r\n"), b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n");
}

/// The daemon on a unix socket: started, then waited for until the socket answers.
struct UnixDaemon {
    child: std::process::Child,
    path: PathBuf,
}

impl UnixDaemon {
    fn start(path: &Path, extra: &[&str]) -> UnixDaemon {
        let child = Command::new(env!("CARGO_BIN_EXE_stickless"))
            .args(["-u", "root", "-s"])
            .arg(path)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut daemon = UnixDaemon { child, path: path.to_path_buf() };
        let deadline = Instant::now() + EXCHANGE_DEADLINE;
        while UnixStream::connect(path).is_err() {
            assert!(daemon.child.try_wait().unwrap().is_none(), "the daemon exited");
            assert!(Instant::now() < deadline, "the daemon never listened on {}", path.display());
            std::thread::yield_now();
        }
        daemon
    }

    /// Stops the daemon as an init system would (SIGTERM) and waits for it.
    fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        self.child.wait().unwrap()
    }

    fn exchange(&self, request: &[u8], end: &[u8]) -> Vec<u8> {
        let mut stream = UnixStream::connect(&self.path).unwrap();
        stream.set_read_timeout(Some(EXCHANGE_DEADLINE)).unwrap();
        stream.write_all(request).unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 4096];
        while !got.ends_with(end) {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        got
    }
}

impl Drop for UnixDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn socket_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("stickless-{}-{name}.sock", std::process::id()))
}

#[test]
fn unix_socket_with_its_mask_replacing_a_stale_one() {
    let path = socket_path("mask");
    // A socket file left by a crashed daemon is replaced, as memcached replaces it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let daemon = UnixDaemon::start(&path, &["-a", "770"]);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o770);
    assert_eq!(
        daemon.exchange(b"set k 0 0 2\r\nhi\r\nget k\r\n", b"END\r\n"),
        b"STORED\r\nVALUE k 0 2\r\nhi\r\nEND\r\n"
    );
    let conns = String::from_utf8(daemon.exchange(b"stats conns\r\n", b"END\r\n")).unwrap();
    let listener = format!("addr unix:{}\r\n", path.display());
    assert!(conns.contains(&listener), "{conns}");
    assert!(conns.contains(&format!("listen_addr unix:{}\r\n", path.display())), "{conns}");
    drop(daemon);

    let default_mask = socket_path("default");
    let daemon = UnixDaemon::start(&default_mask, &[]);
    assert_eq!(std::fs::metadata(&default_mask).unwrap().permissions().mode() & 0o777, 0o700);
    drop(daemon);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&default_mask);
}

#[test]
fn unix_socket_refuses_to_replace_a_file_and_disables_tcp() {
    let path = socket_path("file");
    std::fs::write(&path, b"not a socket").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_stickless")).args(["-u", "root", "-s"]).arg(&path).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a socket"), "{stderr}");
    assert_eq!(std::fs::read(&path).unwrap(), b"not a socket", "the file is left alone");
    std::fs::remove_file(&path).unwrap();

    // With -s, -p is not listened on (memcached: "disables network support").
    let port = common::free_port();
    let path = socket_path("notcp");
    let daemon = UnixDaemon::start(&path, &["-p", &port.to_string(), "-l", "127.0.0.1"]);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert_eq!(daemon.exchange(b"version\r\n", b"\r\n").split_at(8).0, b"VERSION ");
    assert!(daemon.stop().success());
    assert!(!path.exists(), "the socket is removed on a clean exit");
}

/// The ASP.NET State Server port's requests show under `watch`: writes under
/// `mutations`, reads under `fetchers`.
#[test]
fn watch_reports_state_server_requests() {
    use std::io::Write;
    let server = common::start_stickless(2, |c| c.aspnet.listen = Some("127.0.0.1:0".into()));
    let mut watched = watcher(server.local_addr(), b"watch mutations fetchers\r\n");
    let mut state = std::net::TcpStream::connect(server.aspnet_addr().expect("the state server port")).unwrap();
    state
        .write_all(
            b"PUT /w HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi\
              GET /w HTTP/1.1\r\nExclusive: acquire\r\n\r\n\
              GET /w HTTP/1.1\r\n\r\n\
              HEAD /gone HTTP/1.1\r\n\r\n",
        )
        .unwrap();
    let lines = watch_lines(&mut watched, 4);
    let expected = [
        ("gid=1 type=aspnet method=PUT exclusive=none key=/w status=200 cfd=", " size=2"),
        ("gid=2 type=aspnet method=GET exclusive=acquire key=/w status=200 cfd=", " size=2"),
        ("gid=3 type=aspnet method=GET exclusive=none key=/w status=423 cfd=", " size=0"),
        ("gid=4 type=aspnet method=HEAD exclusive=none key=/gone status=404 cfd=", " size=0"),
    ];
    for (line, (start, end)) in lines.iter().zip(expected) {
        assert!(line.starts_with(start) && line.ends_with(end), "{line} is not {start}…{end}");
    }
    server.shutdown();
}

/// One HTTP request to the metrics port; the status line and the body.
fn http(addr: SocketAddr, request: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(EXCHANGE_DEADLINE)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").expect("a complete response");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// Parses the exposition with the Prometheus client library's own parser and
/// prints each sample as `name{labels} value`, sorted; fails on anything malformed.
const PARSE_EXPOSITION: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
text = sys.stdin.read()
samples = []
for family in text_string_to_metric_families(text):
    assert family.name.startswith("stickless_"), family.name
    assert family.documentation, family.name
    for sample in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
        samples.append(f"{sample.name}{{{labels}}} {sample.value:g}")
print("\n".join(sorted(samples)))
"#;

fn parsed_metrics(addr: SocketAddr) -> std::collections::BTreeMap<String, f64> {
    let (status, body) = http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let mut parser = Command::new("/usr/bin/python3")
        .args(["-c", PARSE_EXPOSITION])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with prometheus_client (scripts/test installs it)");
    parser.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = parser.wait_with_output().unwrap();
    assert!(out.status.success(), "the exposition does not parse: {}\n{body}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}

/// `--metrics-listen`: `/metrics` parses with Prometheus's own parser and counts
/// what the clients did, replication included; other paths are 404, other methods 405.
#[test]
fn metrics_parse_and_count_what_clients_did() {
    let a = Daemon::start(&["--metrics-listen", "127.0.0.1:0", "--repl-listen", "127.0.0.1:0"]);
    let peer = format!("--peer={}", a.repl_addr.unwrap());
    let b = Daemon::start(&["--repl-listen", "127.0.0.1:0", &peer, "--repl-wait-sync", "5"]);
    let metrics = a.metrics_addr.unwrap();
    let mut client = Client::connect(a.addr);
    assert_eq!(
        client.step(b"set k 0 0 1\r\nv\r\nget k\r\nget nope\r\ndelete nope\r\n"),
        b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\nEND\r\nNOT_FOUND\r\n"
    );
    // Wait for the peer to acknowledge, so the lag histogram has its sample.
    let deadline = Instant::now() + EXCHANGE_DEADLINE;
    let m = loop {
        let m = parsed_metrics(metrics);
        if m.get("stickless_replication_lag_seconds_count{}").copied().unwrap_or(0.0) >= 1.0 {
            break m;
        }
        assert!(Instant::now() < deadline, "no replication lag sample: {m:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let get = |name: &str| *m.get(name).unwrap_or_else(|| panic!("no {name} in {m:#?}"));
    assert_eq!(get("stickless_commands_total{command=\"get\"}"), 2.0);
    assert_eq!(get("stickless_commands_total{command=\"set\"}"), 1.0);
    assert_eq!(get("stickless_lookups_total{command=\"get\",result=\"hit\"}"), 1.0);
    assert_eq!(get("stickless_lookups_total{command=\"get\",result=\"miss\"}"), 1.0);
    assert_eq!(get("stickless_lookups_total{command=\"delete\",result=\"miss\"}"), 1.0);
    assert_eq!(get("stickless_items{}"), 1.0);
    assert_eq!(get("stickless_connections{}"), 1.0);
    assert_eq!(get("stickless_replication_peer_up{}"), 1.0);
    assert!(get("stickless_replication_syncs_total{kind=\"full\"}") >= 1.0);
    assert!(get("stickless_memory_bytes{kind=\"items\"}") > 0.0);
    assert!(get("stickless_memory_bytes{kind=\"connection_buffers\"}") >= 16384.0);
    assert!(get("stickless_memory_bytes{kind=\"backlog\"}") > 0.0);
    assert_eq!(
        get("stickless_replication_lag_seconds_bucket{le=\"+Inf\"}"),
        get("stickless_replication_lag_seconds_count{}")
    );
    // Every counter family's samples end in _total (or are a histogram's).
    for name in m.keys() {
        let family = name.split('{').next().unwrap();
        assert!(!family.contains("__") && family.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{family}");
    }

    assert_eq!(http(metrics, "GET /other HTTP/1.1\r\n\r\n").0, "HTTP/1.1 404 Not Found");
    assert_eq!(
        http(metrics, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").0,
        "HTTP/1.1 405 Method Not Allowed"
    );
    assert_eq!(http(metrics, "\x16\x03\x01 garbage\r\n\r\n").0, "HTTP/1.1 400 Bad Request");
    let (status, body) = http(metrics, "HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", ""));
    drop(b);
}
