//! Text-protocol authentication (`-Y`), compared with Debian's memcached started
//! with the same authfile: every reply must be byte-identical.

mod common;

use common::pki::Pki;

use common::{Client, Memcached, binary_request as packet, parse_stats, show, start_stickless};
use std::net::SocketAddr;

/// Steps on one connection, each answered by one line before the next is sent (the
/// usual `mn` sentinel would itself be refused before authentication).
const SESSION: &[&[u8]] = &[
    b"get a\r\n",
    b"version\r\n",
    b"set a 0 0 x\r\n",
    b"set a 0 0 2\r\nuu\r\n",
    b"set a 0 0 4\r\nu pXXX",
    b"set a 0 0 10\r\nalice nope\r\n",
    b"set a 0 0 11\r\nalice magic\r\n",
];

fn run(addr: SocketAddr) -> Vec<Vec<u8>> {
    let mut client = Client::connect(addr);
    let mut replies: Vec<Vec<u8>> = SESSION.iter().map(|step| client.request(step, b"\r\n")).collect();
    // Authenticated now: the connection serves commands.
    replies.push(client.step(b"set a 0 0 1\r\nx\r\nget a\r\n"));
    replies
}

#[test]
fn authfile_replies_match_memcached() {
    let dir = std::env::temp_dir().join(format!("stickless-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("authfile");
    std::fs::write(&file, "alice:magic\nbob:builder\n").unwrap();
    let memcached = Memcached::start(&["-Y", file.to_str().unwrap()]);
    let stickless = start_stickless(1, |c| c.auth_file = Some(file.clone()));
    let expected = run(memcached.addr);
    let actual = run(stickless.local_addr());
    assert_eq!(expected.len(), actual.len());
    for (index, (e, a)) in expected.iter().zip(&actual).enumerate() {
        assert_eq!(show(e), show(a), "step {index}");
    }
    assert_eq!(actual[6], b"STORED\r\n");
    // Both count attempts and failures the same way.
    let mut admin = Client::connect(stickless.local_addr());
    admin.step(b"set a 0 0 11\r\nbob builder\r\n");
    let stats = parse_stats(&admin.step(b"stats\r\n"));
    assert_eq!((stats["auth_cmds"].as_str(), stats["auth_errors"].as_str()), ("3", "1"));
    stickless.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

// Opcodes from memcached's protocol_binary.h.
const GET: u8 = 0x00;
const SET: u8 = 0x01;
const DELETE: u8 = 0x04;
const INCREMENT: u8 = 0x05;
const QUIT: u8 = 0x07;
const FLUSH: u8 = 0x08;
const GETQ: u8 = 0x09;
const NOOP: u8 = 0x0a;
const VERSION: u8 = 0x0b;
const APPEND: u8 = 0x0e;
const STAT: u8 = 0x10;
const TOUCH: u8 = 0x1c;
const GAT: u8 = 0x1d;
const SASL_LIST_MECHS: u8 = 0x20;
const SASL_AUTH: u8 = 0x21;
const SASL_STEP: u8 = 0x22;

/// Bytes a fresh connection sends, and what ends its replies: `<closed>` for a
/// connection the server must hang up on.
type Door = (&'static str, Vec<u8>, &'static [u8]);

/// Sends each case on a fresh connection and returns what came back up to its end.
fn knock(addr: SocketAddr, doors: &[Door]) -> Vec<String> {
    doors
        .iter()
        .map(|(name, bytes, end)| {
            let mut client = Client::connect(addr);
            client.send(bytes);
            let reply = if *end == b"<closed>" { client.read_until(b"<never>") } else { client.request(b"", end) };
            format!("{name}: {}", show(&reply))
        })
        .collect()
}

/// Where Cyrus SASL finds memcached's configuration and its user database, made with
/// Debian's `saslpasswd2` for one user, and the same user as stickless's `--sasl-pwdb`.
struct SaslUsers {
    dir: std::path::PathBuf,
}

impl SaslUsers {
    fn new(name: &str, user: &str, password: &str) -> SaslUsers {
        let dir = std::env::temp_dir().join(format!("stickless-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sasldb = dir.join("sasldb2");
        let mut saslpasswd = std::process::Command::new("saslpasswd2")
            .args(["-p", "-a", "memcached", "-c", "-f", sasldb.to_str().unwrap(), user])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("saslpasswd2 must be installed (scripts/test installs Debian's sasl2-bin)");
        use std::io::Write;
        saslpasswd.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
        assert!(saslpasswd.wait().unwrap().success(), "saslpasswd2 failed");
        std::fs::write(dir.join("memcached.conf"), format!("mech_list: plain\nsasldb_path: {}\n", sasldb.display()))
            .unwrap();
        std::fs::write(dir.join("pwdb"), format!("{user}:{password}\n")).unwrap();
        std::fs::write(dir.join("authfile"), format!("{user}:{password}\n")).unwrap();
        SaslUsers { dir }
    }

    fn pwdb(&self) -> std::path::PathBuf {
        self.dir.join("pwdb")
    }

    fn authfile(&self) -> std::path::PathBuf {
        self.dir.join("authfile")
    }
}

impl Drop for SaslUsers {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What an unauthenticated connection may try on a node started with `-S`: text and
/// meta commands, binary commands that read, write, wipe or stop, and the SASL steps.
fn sasl_doors() -> Vec<Door> {
    let closed: &[u8] = b"<closed>";
    let store = [0u8; 8];
    let incr = [0u8, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let good = packet(SASL_AUTH, b"PLAIN", &[], b"\0alice\0wonderland");
    vec![
        ("text get and set", b"get sess\r\nset sess 0 0 5\r\nforge\r\n".to_vec(), closed),
        ("meta get and set", b"mg sess v\r\nms sess 5 T0\r\nforge\r\n".to_vec(), closed),
        ("text flush_all and shutdown", b"flush_all\r\nshutdown\r\nversion\r\n".to_vec(), closed),
        ("binary get", packet(GET, b"sess", &[], b""), closed),
        ("binary getq", packet(GETQ, b"sess", &[], b""), closed),
        ("binary set", packet(SET, b"sess", &store, b"forge"), closed),
        ("binary append", packet(APPEND, b"sess", &[], b"more"), closed),
        ("binary delete", packet(DELETE, b"sess", &[], b""), closed),
        ("binary increment", packet(INCREMENT, b"n", &incr, b""), closed),
        ("binary touch", packet(TOUCH, b"sess", &[0, 0, 0, 9], b""), closed),
        ("binary gat", packet(GAT, b"sess", &[0, 0, 0, 9], b""), closed),
        ("binary flush", packet(FLUSH, b"", &[], b""), closed),
        ("binary stat", packet(STAT, b"", &[], b""), closed),
        ("binary noop", packet(NOOP, b"", &[], b""), closed),
        ("binary quit", packet(QUIT, b"", &[], b""), closed),
        (
            "list mechanisms, then get",
            [packet(SASL_LIST_MECHS, b"", &[], b""), packet(GET, b"sess", &[], b"")].concat(),
            closed,
        ),
        (
            "a wrong password, then get",
            [packet(SASL_AUTH, b"PLAIN", &[], b"\0alice\0guess"), packet(GET, b"sess", &[], b"")].concat(),
            closed,
        ),
        (
            "a step before any auth, then get",
            [packet(SASL_STEP, b"PLAIN", &[], b"x"), packet(GET, b"sess", &[], b"")].concat(),
            closed,
        ),
        (
            "an unknown mechanism, then get",
            [packet(SASL_AUTH, b"CRAM-MD5", &[], b"x"), packet(GET, b"sess", &[], b"")].concat(),
            closed,
        ),
        (
            "a wrong password, the right one, then get and quit",
            [
                packet(SASL_AUTH, b"PLAIN", &[], b"\0alice\0guess"),
                good.clone(),
                packet(GET, b"sess", &[], b""),
                packet(QUIT, b"", &[], b""),
            ]
            .concat(),
            closed,
        ),
        (
            "authenticated, a step, then get",
            [good.clone(), packet(SASL_STEP, b"PLAIN", &[], b"x"), packet(GET, b"sess", &[], b"")].concat(),
            closed,
        ),
        (
            "authenticated, mechanisms listed, then get",
            [good.clone(), packet(SASL_LIST_MECHS, b"", &[], b""), packet(GET, b"sess", &[], b"")].concat(),
            closed,
        ),
        ("authenticated twice, then quit", [good.clone(), good.clone(), packet(QUIT, b"", &[], b"")].concat(), closed),
        (
            // The largest message memcached holds in one slab chunk, and one byte more.
            "a message of 524,224 bytes, then get",
            [packet(SASL_AUTH, b"PLAIN", &[], &vec![b'x'; 524_224]), packet(GET, b"sess", &[], b"")].concat(),
            closed,
        ),
        (
            "a message of 524,225 bytes, then get",
            [packet(SASL_AUTH, b"PLAIN", &[], &vec![b'x'; 524_225]), packet(GET, b"sess", &[], b"")].concat(),
            closed,
        ),
        (
            "a mechanism name of 33 bytes, then get",
            [packet(SASL_AUTH, &[b'M'; 33], &[], b"x"), packet(GET, b"sess", &[], b"")].concat(),
            closed,
        ),
        (
            "an oversized mechanism value, then get",
            [packet(SASL_AUTH, b"PLAIN", &[], &vec![b'x'; 1 << 20]), packet(GET, b"sess", &[], b"")].concat(),
            closed,
        ),
        (
            // (A stored value's CAS is a version here and a counter there: a miss it is.)
            "authenticated: get, then quit",
            [good, packet(GET, b"sess", &[], b""), packet(QUIT, b"", &[], b"")].concat(),
            closed,
        ),
    ]
}

/// What an unauthenticated connection may try on a node serving text alone (`-Y`).
fn text_only_doors() -> Vec<Door> {
    let unauthenticated: &[u8] = b"CLIENT_ERROR unauthenticated\r\n";
    vec![
        ("binary get, then a line end", [packet(GET, b"sess", &[], b""), b"\r\n".to_vec()].concat(), unauthenticated),
        (
            "binary sasl auth, then a line end",
            [packet(SASL_AUTH, b"PLAIN", &[], b"\0alice\0wonderland"), b"\r\n".to_vec()].concat(),
            unauthenticated,
        ),
        ("binary bytes with no line end", [packet(SET, b"k", &[0; 8], &[b'v'; 2100])].concat(), b"<closed>"),
        ("meta get", b"mg sess v\r\n".to_vec(), unauthenticated),
        ("meta set", b"ms sess 5 T0\r\n".to_vec(), unauthenticated),
        ("meta delete", b"md sess\r\n".to_vec(), unauthenticated),
        ("flush_all", b"flush_all\r\n".to_vec(), unauthenticated),
        ("shutdown", b"shutdown\r\n".to_vec(), unauthenticated),
        ("stats", b"stats\r\n".to_vec(), unauthenticated),
    ]
}

fn assert_same(memcached: &[String], stickless: &[String]) {
    assert_eq!(memcached.len(), stickless.len());
    for (m, s) in memcached.iter().zip(stickless) {
        assert_eq!(m, s, "memcached, then stickless");
    }
}

#[test]
fn a_sasl_node_serves_authenticated_binary_connections_alone_as_memcached_does() {
    let users = SaslUsers::new("sasl-doors", "alice", "wonderland");
    let memcached = Memcached::start_with_env(&["-S"], &[("SASL_CONF_PATH", &users.dir)]);
    let stickless = start_stickless(1, |c| {
        c.sasl = true;
        c.sasl_pwdb = Some(users.pwdb());
    });
    let doors = sasl_doors();
    let expected = knock(memcached.addr, &doors);
    let actual = knock(stickless.local_addr(), &doors);
    assert_same(&expected, &actual);
    // A short text line is waited on as the start of a binary header, as memcached
    // does; the version a binary VERSION reports is stickless's own.
    for addr in [memcached.addr, stickless.local_addr()] {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.write_all(b"get sess\r\n").unwrap();
        // Nothing comes, and the connection stays: a slower server would only wait longer.
        stream.set_read_timeout(Some(std::time::Duration::from_millis(200))).unwrap();
        let mut byte = [0u8; 1];
        // A read a signal interrupted is read again, as any caller does (seen once
        // in a full run: EINTR rather than the timeout).
        let waited = loop {
            match stream.read(&mut byte).map_err(|e| e.kind()) {
                Err(std::io::ErrorKind::Interrupted) => continue,
                waited => break waited,
            }
        };
        assert!(
            matches!(waited, Err(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
            "{addr}: {waited:?}"
        );
        // The rest of a header: judged, and refused by a close.
        stream.write_all(&packet(VERSION, b"", &[], b"")[..15]).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        let closed = stream.read_to_end(&mut rest).map(|_| rest).map_err(|e| e.kind());
        assert!(
            matches!(&closed, Ok(rest) if rest.is_empty()) || closed == Err(std::io::ErrorKind::ConnectionReset),
            "{addr}: {closed:?}"
        );
    }
    stickless.shutdown();
}

#[test]
fn a_text_auth_node_serves_text_alone_as_memcached_does() {
    let users = SaslUsers::new("text-doors", "alice", "wonderland");
    let authfile = users.authfile();
    let memcached = Memcached::start(&["-Y", authfile.to_str().unwrap()]);
    let stickless = start_stickless(1, |c| c.auth_file = Some(authfile.clone()));
    let doors = text_only_doors();
    assert_same(&knock(memcached.addr, &doors), &knock(stickless.local_addr(), &doors));
    stickless.shutdown();

    // With -S as well, memcached serves text with -Y's authentication: SASL has no door.
    let memcached =
        Memcached::start_with_env(&["-S", "-Y", authfile.to_str().unwrap()], &[("SASL_CONF_PATH", &users.dir)]);
    let stickless = start_stickless(1, |c| {
        c.sasl = true;
        c.sasl_pwdb = Some(users.pwdb());
        c.auth_file = Some(authfile.clone());
    });
    assert_same(&knock(memcached.addr, &doors), &knock(stickless.local_addr(), &doors));
    stickless.shutdown();
}

#[test]
fn contradictory_protocol_flags_are_refused_at_start_as_memcached_refuses_them() {
    let users = SaslUsers::new("start-flags", "alice", "wonderland");
    let authfile = users.authfile();
    let authfile = authfile.to_str().unwrap();
    let combinations: &[&[&str]] = &[
        &["-S", "-B", "ascii"],
        &["-S", "-B", "auto"],
        &["-Y", authfile, "-B", "binary"],
        &["-Y", authfile, "-B", "auto"],
        &["-S", "-Y", authfile, "-B", "binary"],
        &["-S", "-Y", authfile, "-B", "ascii"],
    ];
    let finish = |mut command: std::process::Command| {
        let output = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run the server");
        (output.status.code(), String::from_utf8_lossy(&output.stderr).trim().to_string())
    };
    for flags in combinations {
        let mut memcached = std::process::Command::new("memcached");
        memcached.args(["-l", "127.0.0.1", "-p", "0", "-U", "0", "-u", "root"]).args(*flags);
        memcached.env("SASL_CONF_PATH", &users.dir);
        let (memcached_status, memcached_says) = finish(memcached);
        let mut stickless = std::process::Command::new(env!("CARGO_BIN_EXE_stickless"));
        stickless.args(["-l", "127.0.0.1", "-p", "0", "-u", "root", "--sasl-pwdb"]).arg(users.pwdb()).args(*flags);
        let (stickless_status, stickless_says) = finish(stickless);
        assert_eq!(memcached_status, Some(64), "{flags:?}: {memcached_says}");
        assert_eq!(stickless_status, memcached_status, "{flags:?}: {stickless_says}");
        assert!(stickless_says.contains(&memcached_says), "{flags:?}: {stickless_says:?} / {memcached_says:?}");
    }
}

/// A connection to one of a node's doors, TCP or unix, or TLS without a
/// certificate of its own.
enum Knock {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
    Tls(std::net::TcpStream, std::sync::Arc<rustls::ClientConfig>),
}

impl Knock {
    /// Sends `bytes`, ends the connection's writing side, and returns all the server
    /// sent before it closed (the server reads to the end first).
    fn try_bytes(self, bytes: &[u8]) -> Vec<u8> {
        use std::io::{Read, Write};
        let limit = Some(std::time::Duration::from_secs(10));
        let mut received = Vec::new();
        match self {
            Knock::Tcp(mut stream) => {
                stream.set_read_timeout(limit).unwrap();
                let _ = stream.write_all(bytes);
                let _ = stream.shutdown(std::net::Shutdown::Write);
                let _ = stream.read_to_end(&mut received);
            }
            Knock::Unix(mut stream) => {
                stream.set_read_timeout(limit).unwrap();
                let _ = stream.write_all(bytes);
                let _ = stream.shutdown(std::net::Shutdown::Write);
                let _ = stream.read_to_end(&mut received);
            }
            Knock::Tls(stream, config) => {
                stream.set_read_timeout(limit).unwrap();
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let conn = rustls::ClientConnection::new(config, name).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let _ = tls.write_all(bytes).and_then(|()| tls.flush());
                tls.conn.send_close_notify();
                let _ = tls.flush();
                let _ = tls.read_to_end(&mut received);
            }
        }
        received
    }
}

/// Commands and frames that read, write, wipe or stop, in every protocol, sent
/// without credentials.
fn intrusions() -> Vec<(&'static str, Vec<u8>)> {
    let store = [0u8; 8];
    let incr = [0u8, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    vec![
        ("text get", b"get sess\r\ngets sess\r\n".to_vec()),
        ("text set", b"set forged 0 0 5\r\nforge\r\n".to_vec()),
        ("text delete", b"delete sess\r\n".to_vec()),
        ("text flush_all", b"flush_all\r\n".to_vec()),
        ("text shutdown", b"shutdown\r\n".to_vec()),
        ("meta get", b"mg sess v\r\n".to_vec()),
        ("meta set", b"ms forged 5 T0\r\nforge\r\n".to_vec()),
        ("meta delete", b"md sess\r\n".to_vec()),
        ("binary get", packet(GET, b"sess", &[], b"")),
        ("binary set", packet(SET, b"forged", &store, b"forge")),
        ("binary append", packet(APPEND, b"sess", &[], b"forge")),
        ("binary increment", packet(INCREMENT, b"sess", &incr, b"")),
        ("binary delete", packet(DELETE, b"sess", &[], b"")),
        ("binary flush", packet(FLUSH, b"", &[], b"")),
        ("binary wrong password", packet(SASL_AUTH, b"PLAIN", &[], b"\0alice\0guess")),
        ("replication handshake without the secret", b"\x00\x00\x00\x10HELLO stickless\r\n".to_vec()),
        ("state server GET of a memcached key", b"GET sess HTTP/1.1\r\n\r\nGET /sess HTTP/1.1\r\n\r\n".to_vec()),
        ("state server PUT", b"PUT /forged HTTP/1.1\r\nContent-Length: 5\r\n\r\nforge".to_vec()),
        ("state server DELETE", b"DELETE sess HTTP/1.1\r\n\r\nDELETE /sess HTTP/1.1\r\n\r\n".to_vec()),
    ]
}

const SESSION_VALUE: &[u8] = b"secret-session";

/// Every door a node opens, tried with every intrusion: none reveals the stored
/// session, changes anything, or stops the node, and the table names what guards
/// each door.
#[test]
fn every_door_refuses_a_connection_without_credentials() {
    let users = SaslUsers::new("security-table", "alice", "wonderland");
    let secret = users.dir.join("repl-secret");
    std::fs::write(&secret, "a secret of the pair, long enough\n").unwrap();
    let socket = users.dir.join("socket");
    let pki = Pki::standard("security-table");
    // A client that trusts the node's CA but has no certificate of its own.
    let anonymous = pki.client_config("ca", None);
    struct Row {
        door: &'static str,
        guard: &'static str,
        server: stickless::server::Server,
        knock: Box<dyn Fn(&stickless::server::Server) -> Knock>,
    }
    let sasl = |c: &mut stickless::server::Config| {
        c.sasl = true;
        c.sasl_pwdb = Some(users.pwdb());
        c.enable_shutdown = true;
    };
    let text_auth = |c: &mut stickless::server::Config| {
        c.auth_file = Some(users.authfile());
        c.enable_shutdown = true;
    };
    let tcp =
        |server: &stickless::server::Server| Knock::Tcp(std::net::TcpStream::connect(server.local_addr()).unwrap());
    let unix = {
        let socket = socket.clone();
        move |_: &stickless::server::Server| Knock::Unix(std::os::unix::net::UnixStream::connect(&socket).unwrap())
    };
    let rows = vec![
        Row {
            door: "client TCP, -S",
            guard: "SASL PLAIN (binary only)",
            server: start_stickless(1, sasl),
            knock: Box::new(tcp),
        },
        Row {
            door: "client TCP, -Y",
            guard: "the authfile line (text only)",
            server: start_stickless(1, text_auth),
            knock: Box::new(tcp),
        },
        Row {
            door: "unix socket, -S",
            guard: "mode 0700, then SASL PLAIN",
            server: start_stickless(1, |c| {
                sasl(c);
                c.unix_socket = Some(socket.clone());
            }),
            knock: Box::new(unix.clone()),
        },
        Row {
            door: "ASP.NET State Server port",
            guard: "loopback unless --repl-secret or --aspnet-allow-remote; reaches only aspnet: items",
            server: start_stickless(1, |c| {
                sasl(c);
                c.aspnet.listen = Some("127.0.0.1:0".into());
            }),
            knock: Box::new(|server: &stickless::server::Server| {
                Knock::Tcp(std::net::TcpStream::connect(server.aspnet_addr().expect("the state server port")).unwrap())
            }),
        },
        Row {
            door: "replication",
            guard: "the HMAC handshake over --repl-secret",
            server: start_stickless(1, |c| {
                sasl(c);
                c.replication.listen = "127.0.0.1:0".into();
                c.replication.listen_given = true;
                c.replication.secret = Some(secret.clone());
            }),
            knock: Box::new(|server: &stickless::server::Server| {
                Knock::Tcp(std::net::TcpStream::connect(server.replication_addr().expect("replication")).unwrap())
            }),
        },
    ];
    let verified_tls = |c: &mut stickless::server::Config| {
        c.tls.enabled = true;
        c.tls.chain_cert = Some(pki.path("server.pem"));
        c.tls.key = Some(pki.path("server.key"));
        c.tls.ca_cert = Some(pki.path("ca.pem"));
        c.tls.verify_mode = stickless::tls::VerifyMode::Require;
    };
    let mutual_tls = |c: &mut stickless::server::Config| {
        c.replication.listen = "127.0.0.1:0".into();
        c.replication.listen_given = true;
        c.replication.tls = Some(stickless::tls::PeerSettings {
            cert: pki.path("server.pem"),
            key: pki.path("server.key"),
            ca: pki.path("ca.pem"),
        });
    };
    let repl_addr = |server: &stickless::server::Server| server.replication_addr().expect("replication");
    let mut rows = rows;
    rows.extend([
        Row {
            door: "metrics (--metrics-listen)",
            guard: "off by default; answers GET /metrics with counts only, and nothing it reads reaches the store",
            server: start_stickless(1, |c| {
                sasl(c);
                c.metrics_listen = Some("127.0.0.1:0".into());
            }),
            knock: Box::new(|server: &stickless::server::Server| {
                Knock::Tcp(std::net::TcpStream::connect(server.metrics_addr().expect("the metrics port")).unwrap())
            }),
        },
        Row {
            door: "client TCP, -Z, plaintext",
            guard: "TLS: a plaintext client is sent nothing",
            server: start_stickless(1, verified_tls),
            knock: Box::new(tcp),
        },
        Row {
            door: "client TCP, -Z ssl_verify_mode=2, TLS without a certificate",
            guard: "a client certificate from ssl_ca_cert",
            server: start_stickless(1, verified_tls),
            knock: Box::new({
                let anonymous = anonymous.clone();
                move |server: &stickless::server::Server| {
                    Knock::Tls(std::net::TcpStream::connect(server.local_addr()).unwrap(), anonymous.clone())
                }
            }),
        },
        Row {
            door: "replication over mutual TLS, plaintext",
            guard: "TLS: a plaintext stranger is sent nothing",
            server: start_stickless(1, mutual_tls),
            knock: Box::new(move |server: &stickless::server::Server| {
                Knock::Tcp(std::net::TcpStream::connect(repl_addr(server)).unwrap())
            }),
        },
        Row {
            door: "replication over mutual TLS, TLS without a certificate",
            guard: "a certificate from --repl-tls-ca",
            server: start_stickless(1, mutual_tls),
            knock: Box::new({
                let anonymous = anonymous.clone();
                move |server: &stickless::server::Server| {
                    Knock::Tls(std::net::TcpStream::connect(repl_addr(server)).unwrap(), anonymous.clone())
                }
            }),
        },
    ]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the unix socket is its owner's alone");
    let seed = |server: &stickless::server::Server| {
        let request = stickless::store::StoreRequest::new(stickless::store::StoreMode::Set, b"sess", SESSION_VALUE);
        let _ = server.node().store_item(&request);
    };
    for row in &rows {
        seed(&row.server);
        for (name, bytes) in intrusions() {
            let received = (row.knock)(&row.server).try_bytes(&bytes);
            assert!(
                !received.windows(SESSION_VALUE.len()).any(|w| w == SESSION_VALUE),
                "{} ({}): {name} read the session: {}",
                row.door,
                row.guard,
                show(&received)
            );
            let mut held = None;
            let _ =
                row.server.node().get_for_meta(b"sess", None, false, |item, _, _| held = Some(item.value().to_vec()));
            assert_eq!(
                held.as_deref(),
                Some(SESSION_VALUE),
                "{} ({}): {name} changed the session",
                row.door,
                row.guard
            );
            let mut forged = false;
            let _ = row.server.node().get_for_meta(b"forged", None, false, |_, _, _| forged = true);
            assert!(!forged, "{} ({}): {name} wrote a key", row.door, row.guard);
            assert!(
                !row.server.shared().shutting_down.load(std::sync::atomic::Ordering::Acquire),
                "{} ({}): {name} stopped the node",
                row.door,
                row.guard
            );
        }
    }
    for row in rows {
        row.server.shutdown();
    }
}

/// A client that shuts its writing side in the middle of a request is closed, as
/// memcached closes it, even when the end of input came in the same packet as the
/// last bytes (the poll is edge-triggered: no later event would tell).
#[test]
fn a_half_closed_connection_is_closed_mid_request() {
    let memcached = Memcached::start(&[]);
    let stickless = start_stickless(1, |_| {});
    for addr in [memcached.addr, stickless.local_addr()] {
        for partial in [&b"get sess"[..], b"set sess 0 0 5\r\nfor", &packet(GET, b"sess", &[], b"")[..20]] {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
            stream.write_all(partial).unwrap();
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            let closed = stream.read_to_end(&mut rest).map_err(|e| e.kind());
            assert!(closed.is_ok(), "{addr}: {} left open: {closed:?}", show(partial));
        }
    }
    stickless.shutdown();
}

/// Unauthenticated connections flooding an `-S` node with what it serves them (SASL
/// mechanism lists, wrong passwords, half headers) do not starve a client that
/// authenticated: its requests all complete while the flood goes on.
#[test]
fn an_unauthenticated_flood_does_not_starve_authenticated_clients() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let users = SaslUsers::new("flood", "alice", "wonderland");
    let node = start_stickless(2, |c| {
        c.sasl = true;
        c.sasl_pwdb = Some(users.pwdb());
    });
    let addr = node.local_addr();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let served = std::sync::Arc::new(AtomicU64::new(0));
    // Bounded: the flood stops when the client is done, or after this long.
    let flood_until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let flooders: Vec<_> = (0..3)
        .map(|flooder| {
            let (stop, served) = (std::sync::Arc::clone(&stop), std::sync::Arc::clone(&served));
            std::thread::spawn(move || {
                let mut conns: Vec<std::net::TcpStream> = (0..60)
                    .map(|_| {
                        let conn = std::net::TcpStream::connect(addr).unwrap();
                        conn.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
                        conn
                    })
                    .collect();
                // A third of them only ever send half a header, and hold their slot.
                for idle in conns.iter_mut().step_by(3) {
                    idle.write_all(&packet(GET, b"sess", &[], b"")[..12]).unwrap();
                }
                let mechs =
                    [packet(SASL_LIST_MECHS, b"", &[], b""), packet(SASL_AUTH, b"PLAIN", &[], b"\0mallory\0guess")]
                        .concat();
                let mut reply = vec![0u8; 24 + 5 + 24 + 13];
                while !stop.load(Ordering::Acquire) && std::time::Instant::now() < flood_until {
                    for (index, conn) in conns.iter_mut().enumerate() {
                        if index % 3 == 0 {
                            continue;
                        }
                        conn.write_all(&mechs).unwrap();
                        conn.read_exact(&mut reply).unwrap_or_else(|e| panic!("flooder {flooder}: {e}"));
                        served.fetch_add(2, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // The client starts once the flood is under way: its connections are open and
    // being answered.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while served.load(Ordering::Relaxed) < 200 {
        assert!(std::time::Instant::now() < deadline, "the flood never started");
        std::thread::yield_now();
    }
    let mut client = Client::connect(addr);
    let authenticated = client.binary_step(&packet(SASL_AUTH, b"PLAIN", &[], b"\0alice\0wonderland"));
    assert!(authenticated.ends_with(b"Authenticated"), "{}", show(&authenticated));
    let flood_before = served.load(Ordering::Relaxed);
    // At least 500 rounds, and on until the flood has been answered alongside them: a
    // client that finishes before the flooders are scheduled again proves nothing.
    let mut round = 0u32;
    while round < 500 || served.load(Ordering::Relaxed) < flood_before + 200 {
        round += 1;
        let value = round.to_string();
        let stored = client.binary_step(&packet(SET, b"sess", &[0; 8], value.as_bytes()));
        assert_eq!(&stored[..2], &[0x81, SET], "round {round}: {}", show(&stored));
        let read = client.binary_step(&packet(GET, b"sess", &[], b""));
        assert!(read.ends_with(value.as_bytes()), "round {round}: {}", show(&read));
        assert!(std::time::Instant::now() < deadline, "the authenticated client starved at round {round}");
    }
    stop.store(true, Ordering::Release);
    for flooder in flooders {
        flooder.join().expect("a flooder failed");
    }
    assert!(served.load(Ordering::Relaxed) >= flood_before + 200, "the flood ran alongside the client");
    node.shutdown();
}
