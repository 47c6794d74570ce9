//! TLS on the client ports (`-Z`): certificates made here with `openssl`, clients
//! built on rustls (and Python's `ssl`, pymemcache's `tls_context`), every
//! `ssl_verify_mode`, wrong and expired certificates, plaintext and TLS crossed,
//! a handshake that never finishes, certificate reload, and memcached's own `-Z`
//! answering the same requests.

mod common;

use common::pki::Pki;
use common::{Daemon, Memcached, binary_request as binary, parse_stats, show, start_stickless};
use rustls::pki_types::ServerName;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stickless::server::Server;
use stickless::tls::{MinVersion, VerifyMode};

/// A server on 127.0.0.1 serving TLS with `server.pem`, clients verified as `mode` says.
fn start_tls(pki: &Pki, mode: VerifyMode, adjust: impl FnOnce(&mut stickless::server::Config)) -> Server {
    start_stickless(2, |c| {
        c.tls.enabled = true;
        c.tls.chain_cert = Some(pki.path("server.pem"));
        c.tls.key = Some(pki.path("server.key"));
        c.tls.ca_cert = Some(pki.path("ca.pem"));
        c.tls.verify_mode = mode;
        adjust(c);
    })
}

/// A blocking TLS connection that sends requests and reads replies to a sentinel.
struct TlsClient {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl TlsClient {
    /// Connects and completes the handshake (as far as the client sees it: under
    /// TLS 1.3 a server's refusal of the client's certificate arrives after).
    fn connect(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> std::io::Result<TlsClient> {
        let tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(common::EXCHANGE_DEADLINE))?;
        let name = ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(TlsClient { stream })
    }

    fn resumed(&self) -> bool {
        self.stream.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    /// Sends `bytes` and reads until the reply ends with `end` (kept).
    fn request(&mut self, bytes: &[u8], end: &[u8]) -> std::io::Result<Vec<u8>> {
        self.stream.write_all(bytes)?;
        self.stream.flush()?;
        let deadline = Instant::now() + common::EXCHANGE_DEADLINE;
        let mut out = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        while !out.ends_with(end) {
            assert!(Instant::now() < deadline, "no reply ending {} in {}", show(end), show(&out));
            match self.stream.read(&mut buf)? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => out.extend_from_slice(&buf[..n]),
            }
        }
        Ok(out)
    }

    /// Text or meta requests, answered up to a trailing `mn`'s `MN`, which is removed.
    fn step(&mut self, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = self.request(&[bytes, b"mn\r\n"].concat(), b"MN\r\n")?;
        out.truncate(out.len() - 4);
        Ok(out)
    }
}

/// Whether a client with this configuration is served: it connects, and a request
/// is answered.
fn served(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> Result<(), String> {
    let mut client = TlsClient::connect(addr, config).map_err(|e| e.to_string())?;
    match client.step(b"version\r\n") {
        Ok(reply) if reply.starts_with(b"VERSION ") => Ok(()),
        Ok(reply) => Err(show(&reply)),
        Err(e) => Err(e.to_string()),
    }
}

fn stats(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> std::collections::BTreeMap<String, String> {
    parse_stats(&TlsClient::connect(addr, config).unwrap().request(b"stats\r\n", b"END\r\n").unwrap())
}

#[test]
fn every_protocol_is_served_over_tls() {
    let pki = Pki::standard("protocols");
    let server = start_tls(&pki, VerifyMode::None, |_| {});
    let config = pki.client_config("ca", None);
    let mut client = TlsClient::connect(server.local_addr(), &config).unwrap();
    assert_eq!(
        client.step(b"set k 5 0 3\r\nabc\r\nget k\r\nms m 2 T0\r\nhi\r\nmg m v f\r\n").unwrap(),
        b"STORED\r\nVALUE k 5 3\r\nabc\r\nEND\r\nHD\r\nVA 2 f0\r\nhi\r\n"
    );
    // A value of many records, both ways.
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let set = [format!("set big 0 0 {}\r\n", big.len()).as_bytes(), &big, b"\r\n"].concat();
    assert_eq!(client.step(&set).unwrap(), b"STORED\r\n");
    let got = client.step(b"get big\r\n").unwrap();
    assert_eq!(got, [format!("VALUE big 0 {}\r\n", big.len()).as_bytes(), &big, b"\r\nEND\r\n"].concat());
    // A pipeline of 200 gets in one write.
    let pipeline: Vec<u8> = (0..200).flat_map(|_| b"get k\r\n".iter().copied()).collect();
    let replies = client.step(&pipeline).unwrap();
    assert_eq!(replies, b"VALUE k 5 3\r\nabc\r\nEND\r\n".repeat(200));

    // The binary protocol on its own connection: GET of the key set above.
    let mut bin = TlsClient::connect(server.local_addr(), &config).unwrap();
    let reply = bin.request(&binary(0x00, b"k", &[], &[]), b"abc").unwrap();
    assert_eq!((reply[0], &reply[6..8], &reply[24..28]), (0x81, &[0u8, 0][..], &5u32.to_be_bytes()[..]));
    assert_eq!(&reply[28..], b"abc");

    // A refresh with the same files succeeds; `stats` says when.
    assert_eq!(client.step(b"refresh_certs\r\nrefresh_certs noreply\r\n").unwrap(), b"OK\r\n");
    let stats = stats(server.local_addr(), &config);
    assert_eq!(stats["time_since_server_cert_refresh"], "0");
    assert_eq!(stats["ssl_handshake_errors"], "0");
    server.shutdown();
}

#[test]
fn sessions_resume_on_reconnect() {
    let pki = Pki::standard("resume");
    let server = start_tls(&pki, VerifyMode::None, |_| {});
    let config = pki.client_config("ca", None);
    let mut first = TlsClient::connect(server.local_addr(), &config).unwrap();
    // The tickets come after the handshake: a request makes sure they have arrived.
    first.step(b"version\r\n").unwrap();
    assert!(!first.resumed());
    let mut second = TlsClient::connect(server.local_addr(), &config).unwrap();
    assert!(second.resumed(), "the second connection resumes the first's session");
    assert!(second.step(b"version\r\n").unwrap().starts_with(b"VERSION "));
    server.shutdown();
}

#[test]
fn each_verify_mode_asks_for_what_memcached_asks_for() {
    let pki = Pki::standard("verify");
    // (mode, no certificate, a certificate from the CA, one from another CA)
    let table = [
        (VerifyMode::None, true, true, true),
        (VerifyMode::Request, true, true, false),
        (VerifyMode::Require, false, true, false),
        (VerifyMode::Once, false, true, false),
    ];
    for (mode, anonymous, trusted, stranger) in table {
        let server = start_tls(&pki, mode, |_| {});
        let addr = server.local_addr();
        let outcome = |identity| served(addr, &pki.client_config("ca", identity));
        assert_eq!(outcome(None).is_ok(), anonymous, "{mode:?} without a certificate: {:?}", outcome(None));
        assert_eq!(outcome(Some("client")).is_ok(), trusted, "{mode:?} with the CA's certificate");
        assert_eq!(outcome(Some("stranger")).is_ok(), stranger, "{mode:?} with another CA's certificate");
        let errors: u64 =
            stats(addr, &pki.client_config("ca", Some("client")))["ssl_handshake_errors"].parse().unwrap();
        let refused = [anonymous, trusted, stranger].iter().filter(|ok| !**ok).count() as u64;
        assert_eq!(errors, refused, "{mode:?}: each refusal counted as a handshake error");
        server.shutdown();
    }
}

#[test]
fn a_client_that_trusts_another_ca_refuses_the_server() {
    let pki = Pki::standard("wrong-ca");
    let server = start_tls(&pki, VerifyMode::None, |_| {});
    let error = served(server.local_addr(), &pki.client_config("other-ca", None)).unwrap_err();
    assert!(error.contains("UnknownIssuer"), "{error}");
    server.shutdown();
}

#[test]
fn expired_certificates_are_refused_both_ways() {
    let pki = Pki::standard("expired");
    // Made 40 days ago, valid for 10.
    pki.issue("ca", "old-server", Some("-40d")).issue("ca", "old-client", Some("-40d"));
    let server = start_tls(&pki, VerifyMode::None, |c| {
        c.tls.chain_cert = Some(pki.path("old-server.pem"));
        c.tls.key = Some(pki.path("old-server.key"));
    });
    let error = served(server.local_addr(), &pki.client_config("ca", None)).unwrap_err();
    assert!(error.contains("certificate expired"), "{error}");
    server.shutdown();

    let server = start_tls(&pki, VerifyMode::Require, |_| {});
    assert!(served(server.local_addr(), &pki.client_config("ca", Some("client"))).is_ok());
    assert!(served(server.local_addr(), &pki.client_config("ca", Some("old-client"))).is_err());
    server.shutdown();
}

#[test]
fn plaintext_and_tls_crossed_get_nothing() {
    let pki = Pki::standard("crossed");
    let server = start_tls(&pki, VerifyMode::None, |c| c.listen.push("notls:127.0.0.1".into()));
    let (tls_addr, plain_addr) = (server.local_addrs()[0], server.local_addrs()[1]);
    // Plaintext on the TLS port: not a byte back, not even an alert.
    let mut plain = TcpStream::connect(tls_addr).unwrap();
    plain.set_read_timeout(Some(common::EXCHANGE_DEADLINE)).unwrap();
    plain.write_all(b"set k 0 0 1\r\nx\r\nget k\r\n").unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert_eq!(got, b"", "a plaintext client on a TLS port is sent {}", show(&got));
    // Nothing was stored either.
    let config = pki.client_config("ca", None);
    let mut client = TlsClient::connect(tls_addr, &config).unwrap();
    assert_eq!(client.step(b"get k\r\n").unwrap(), b"END\r\n");
    assert_eq!(stats(tls_addr, &config)["ssl_handshake_errors"], "1");

    // The notls: listener beside it serves plaintext, and TLS there fails.
    let mut plain = common::Client::connect(plain_addr);
    assert_eq!(plain.step(b"get k\r\n"), b"END\r\n");
    assert!(TlsClient::connect(plain_addr, &config).is_err());
    server.shutdown();
}

#[test]
fn a_handshake_that_never_finishes_is_closed() {
    let pki = Pki::standard("slowloris");
    let server = start_tls(&pki, VerifyMode::None, |c| c.tls.handshake_timeout = Duration::from_millis(300));
    let started = Instant::now();
    // One that sends nothing, and one that sends the first bytes of a ClientHello.
    let silent = TcpStream::connect(server.local_addr()).unwrap();
    let mut trickle = TcpStream::connect(server.local_addr()).unwrap();
    trickle.write_all(&[0x16, 0x03, 0x01, 0x02]).unwrap();
    for mut stream in [silent, trickle] {
        stream.set_read_timeout(Some(common::EXCHANGE_DEADLINE)).unwrap();
        let mut got = Vec::new();
        let closed = stream.read_to_end(&mut got);
        assert!(closed.is_ok() && got.is_empty(), "{closed:?} {}", show(&got));
    }
    assert!(started.elapsed() < common::EXCHANGE_DEADLINE);
    let config = pki.client_config("ca", None);
    assert_eq!(stats(server.local_addr(), &config)["ssl_handshake_errors"], "2");
    // A client that does finish is not affected by the deadline.
    let mut client = TlsClient::connect(server.local_addr(), &config).unwrap();
    let deadline = Instant::now() + Duration::from_millis(600);
    while Instant::now() < deadline {
        assert_eq!(client.step(b"get none\r\n").unwrap(), b"END\r\n");
    }
    server.shutdown();
}

#[test]
fn refresh_certs_loads_new_files_and_keeps_the_old_on_failure() {
    let pki = Pki::standard("reload");
    pki.ca("ca2").issue("ca2", "server2", None);
    let live = |file: &str| pki.path(&format!("live-{file}"));
    pki.install("server", "live-server");
    let server = start_tls(&pki, VerifyMode::None, |c| {
        c.tls.chain_cert = Some(live("server.pem"));
        c.tls.key = Some(live("server.key"));
    });
    let addr = server.local_addr();
    // A new configuration for each check: one used before would resume its session
    // (tickets outlive a reload), and resuming verifies no certificate.
    let (trust_ca, trust_ca2) = (|| pki.client_config("ca", None), || pki.client_config("ca2", None));
    let mut admin = TlsClient::connect(addr, &trust_ca()).unwrap();
    pki.install("server2", "live-server");
    // Until refreshed, new connections get the certificate loaded at start.
    assert!(served(addr, &trust_ca()).is_ok());
    assert_eq!(admin.step(b"refresh_certs\r\n").unwrap(), b"OK\r\n");
    assert!(served(addr, &trust_ca2()).is_ok());
    assert!(served(addr, &trust_ca()).is_err());
    // A damaged key is reported in memcached's words, and the last good files stay.
    std::fs::write(live("server.key"), "not a key\n").unwrap();
    let reply = admin.step(b"refresh_certs\r\n").unwrap();
    let expected = format!("Error loading the key: {} : ", live("server.key").display());
    assert!(reply.starts_with(expected.as_bytes()) && reply.ends_with(b"\r\n"), "{}", show(&reply));
    assert!(served(addr, &trust_ca2()).is_ok());
    server.shutdown();
}

/// Options rustls cannot honour are accepted, as memcached's start lines carry them,
/// and each is named in the log at the default verbosity.
#[test]
fn options_rustls_cannot_honour_are_named_at_start() {
    let pki = Pki::standard("unhonoured");
    let option = format!(
        "ssl_chain_cert={},ssl_key={},ssl_ciphers=HIGH:!aNULL,ssl_kernel_tls",
        pki.path("server.pem").display(),
        pki.path("server.key").display()
    );
    let daemon = Daemon::start(&["-Z", "-o", &option]);
    assert!(served(daemon.addr, &pki.client_config("ca", None)).is_ok());
    let log = daemon.log();
    assert!(log.contains("ssl_ciphers=HIGH:!aNULL: not applied; rustls offers only AEAD suites"), "{log}");
    assert!(log.contains("ssl_kernel_tls: encryption stays in user space"), "{log}");
}

#[test]
fn sighup_reloads_the_daemons_certificates() {
    let pki = Pki::standard("sighup");
    pki.ca("ca2").issue("ca2", "server2", None);
    let live = |file: &str| pki.path(&format!("live-{file}"));
    pki.install("server", "live-server");
    let option = format!("ssl_chain_cert={},ssl_key={}", live("server.pem").display(), live("server.key").display());
    let daemon = Daemon::start(&["-Z", "-o", &option]);
    assert!(served(daemon.addr, &pki.client_config("ca", None)).is_ok());
    pki.install("server2", "live-server");
    // SAFETY: kill(2) on the daemon this test started, by its PID.
    assert_eq!(unsafe { libc::kill(daemon.child.id() as i32, libc::SIGHUP) }, 0);
    let trust_ca2 = pki.client_config("ca2", None);
    let deadline = Instant::now() + common::EXCHANGE_DEADLINE;
    while served(daemon.addr, &trust_ca2).is_err() {
        assert!(Instant::now() < deadline, "SIGHUP did not reload the certificates");
        std::thread::yield_now();
    }
}

#[test]
fn the_state_server_and_sasl_are_served_over_tls() {
    let pki = Pki::standard("aspnet");
    let dir = pki.path("pwdb");
    std::fs::write(&dir, "alice:wonderland\n").unwrap();
    let server = start_tls(&pki, VerifyMode::None, |c| {
        c.aspnet.listen = Some("127.0.0.1:0".into());
        c.sasl = true;
        c.sasl_pwdb = Some(dir.clone());
    });
    let config = pki.client_config("ca", None);
    let mut state = TlsClient::connect(server.aspnet_addr().unwrap(), &config).unwrap();
    let put = b"PUT /LM/W3SVC/1/ROOT/s1 HTTP/1.1\r\nHost: localhost\r\nTimeout: 20\r\nContent-Length: 3\r\n\r\nabc";
    let reply = state.request(put, b"\r\n\r\n").unwrap();
    assert!(reply.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", show(&reply));
    let get = b"GET /LM/W3SVC/1/ROOT/s1 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let reply = state.request(get, b"abc").unwrap();
    assert!(reply.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", show(&reply));

    // SASL PLAIN on the binary port, then a command it guards.
    let mut bin = TlsClient::connect(server.local_addr(), &config).unwrap();
    let reply = bin.request(&binary(0x21, b"PLAIN", &[], b"\0alice\0wonderland"), b"Authenticated").unwrap();
    assert_eq!(&reply[6..8], &[0, 0]);
    let reply = bin.request(&binary(0x0a, b"", &[], &[]), &[0]).unwrap();
    assert_eq!((reply[1], &reply[6..8]), (0x0a, &[0u8, 0][..]));
    server.shutdown();
}

/// `watch` over TLS: the log lines arrive sealed, like every reply.
#[test]
fn watch_streams_its_lines_over_tls() {
    let pki = Pki::standard("watch");
    let server = start_tls(&pki, VerifyMode::None, |_| {});
    let config = pki.client_config("ca", None);
    let mut writer = TlsClient::connect(server.local_addr(), &config).unwrap();
    let alone = curr_connections(&mut writer);
    let mut watcher = TlsClient::connect(server.local_addr(), &config).unwrap();
    assert_eq!(watcher.request(b"watch mutations\r\n", b"OK\r\n").unwrap(), b"OK\r\n");
    // The watcher has left its worker for the watch writer, and still counts.
    assert_eq!(curr_connections(&mut writer), alone + 1);
    assert_eq!(writer.step(b"set watched 0 0 2\r\nhi\r\n").unwrap(), b"STORED\r\n");
    let line = String::from_utf8(watcher.request(b"", b"\n").unwrap()).unwrap();
    assert!(line.starts_with("ts=") && line.contains(" type=item_store key=watched status=stored cmd=set "), "{line}");
    // After the first leaves, it no longer counts, and later watchers are served too.
    drop(watcher);
    let deadline = Instant::now() + Duration::from_secs(10);
    while curr_connections(&mut writer) != alone {
        assert!(Instant::now() < deadline, "the departed watcher still counts");
        std::thread::yield_now();
    }
    for _ in 0..2 {
        let mut again = TlsClient::connect(server.local_addr(), &config).unwrap();
        assert_eq!(again.request(b"watch\r\n", b"OK\r\n").unwrap(), b"OK\r\n");
    }
    server.shutdown();
}

fn curr_connections(client: &mut TlsClient) -> u64 {
    parse_stats(&client.request(b"stats\r\n", b"END\r\n").unwrap())["curr_connections"].parse().unwrap()
}

#[test]
fn pymemcache_and_python_ssl_clients() {
    let pki = Pki::standard("python");
    let server = start_tls(&pki, VerifyMode::Require, |_| {});
    let script = r#"
import ssl, socket, sys
from pymemcache.client.base import Client
host, port, ca, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
context = ssl.create_default_context(cafile=ca)
context.load_cert_chain(cert, key)
client = Client((host, port), tls_context=context, connect_timeout=5, timeout=5)
client.set("session:1", b"login=alice", expire=60)
assert client.get("session:1") == b"login=alice"
assert client.add("session:1", b"x", noreply=False) is False
client.delete("session:1")
assert client.get("session:1") is None
raw = context.wrap_socket(socket.create_connection((host, port), timeout=5), server_hostname="localhost")
raw.sendall(b"set k 0 0 2\r\nok\r\nget k\r\n")
reply = b""
while not reply.endswith(b"END\r\n"):
    reply += raw.recv(4096)
assert reply == b"STORED\r\nVALUE k 0 2\r\nok\r\nEND\r\n", reply
print("ok")
"#;
    let path = |f: &str| pki.path(f).display().to_string();
    let port = server.local_addr().port().to_string();
    let out = Command::new("timeout")
        .args(["60", "/usr/bin/python3", "-c", script, "127.0.0.1", &port])
        .args([path("ca.pem"), path("client.pem"), path("client.key")])
        .output()
        .expect("python3 (scripts/test installs python3-pymemcache)");
    assert!(
        out.status.success() && out.stdout == b"ok\n",
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    server.shutdown();
}

#[test]
fn memcached_and_stickless_answer_tls_requests_alike() {
    let pki = Pki::standard("differential");
    let option = format!(
        "ssl_chain_cert={},ssl_key={},ssl_ca_cert={},ssl_verify_mode=2",
        pki.path("server.pem").display(),
        pki.path("server.key").display(),
        pki.path("ca.pem").display()
    );
    let memcached = Memcached::start(&["-Z", "-o", &option]);
    let stickless = Daemon::start(&["-Z", "-o", &option]);
    let config = pki.client_config("ca", Some("client"));
    let requests: &[&[u8]] = &[
        b"set a 1 0 5\r\nhello\r\n",
        b"get a b\r\n",
        b"append a 0 0 1\r\n!\r\nget a\r\n",
        b"add a 0 0 1\r\nx\r\nincr a 1\r\n",
        b"set n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 100\r\n",
        b"ms m 3 T0 F7\r\nabc\r\nmg m v f\r\nmd m q\r\nmg m v\r\n",
        b"touch a 100\r\ndelete a\r\ndelete a\r\n",
        b"refresh_certs\r\nrefresh_certs noreply\r\n",
        b"bogus\r\nget\r\n",
        b"watch nothing\r\n",
    ];
    let mut mc = TlsClient::connect(memcached.addr, &config).unwrap();
    let mut us = TlsClient::connect(stickless.addr, &config).unwrap();
    for request in requests {
        let (theirs, ours) = (mc.step(request).unwrap(), us.step(request).unwrap());
        assert_eq!(show(&ours), show(&theirs), "request {}", show(request));
    }
    // The TLS lines of `stats settings` that mean the same here.
    let settings = |client: &mut TlsClient| {
        let all = parse_stats(&client.request(b"stats settings\r\n", b"END\r\n").unwrap());
        [
            "ssl_enabled",
            "ssl_chain_cert",
            "ssl_key",
            "ssl_verify_mode",
            "ssl_keyformat",
            "ssl_ca_cert",
            "ssl_min_version",
        ]
        .map(|name| (name, all.get(name).cloned()))
    };
    assert_eq!(settings(&mut us), settings(&mut mc));
    // Both refuse a client without a certificate.
    assert!(served(memcached.addr, &pki.client_config("ca", None)).is_err());
    assert!(served(stickless.addr, &pki.client_config("ca", None)).is_err());
}

#[test]
fn start_refuses_missing_or_unreadable_files() {
    let pki = Pki::standard("refusals");
    let start = |adjust: &dyn Fn(&mut stickless::server::Config)| {
        let mut config = stickless::server::Config { port: 0, listen: vec!["127.0.0.1".into()], ..Default::default() };
        config.tls.enabled = true;
        adjust(&mut config);
        Server::start(config).map(Server::shutdown).map_err(|e| e.to_string())
    };
    let missing = start(&|c| c.tls.chain_cert = Some(pki.path("nope.pem"))).unwrap_err();
    assert!(missing.starts_with("Error loading the certificate chain: "), "{missing}");
    let no_chain = start(&|_| {}).unwrap_err();
    assert!(no_chain.contains("ssl_chain_cert"), "{no_chain}");
    let no_ca = start(&|c| {
        c.tls.chain_cert = Some(pki.path("server.pem"));
        c.tls.key = Some(pki.path("server.key"));
        c.tls.verify_mode = VerifyMode::Require;
    })
    .unwrap_err();
    assert!(no_ca.contains("ssl_ca_cert"), "{no_ca}");
    let tls13 = start(&|c| {
        c.tls.chain_cert = Some(pki.path("server.pem"));
        c.tls.key = Some(pki.path("server.key"));
        c.tls.min_version = MinVersion::Tls13;
    });
    assert!(tls13.is_ok(), "{tls13:?}");
    let _: &Path = &pki.dir;
}
