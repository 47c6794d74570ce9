//! The C ABI as a host sees it, beyond bindings/c: an embedded node replicates with a
//! daemon both ways, and many threads share one handle.

mod common;

use common::{Client, Daemon, show};
use std::time::{Duration, Instant};
use stickless::ffi::*;

const CONVERGE: Duration = Duration::from_secs(5);

/// An open handle, closed on drop.
struct Handle(*mut Stickless);

// SAFETY: the ABI's handles may be used from any thread at once.
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

impl Handle {
    fn open() -> Handle {
        let mut raw = std::ptr::null_mut();
        // SAFETY: NULL options mean the defaults; `raw` is valid for a write.
        assert_eq!(unsafe { stickless_open(std::ptr::null(), &mut raw) }, StickStatus::STICKLESS_OK as i32);
        Handle(raw)
    }

    fn set(&self, key: &[u8], value: &[u8]) -> i32 {
        // SAFETY: an open handle and live slices.
        unsafe { stickless_set(self.0, key.as_ptr().cast(), key.len(), value.as_ptr().cast(), value.len(), 0, 0) }
    }

    fn get(&self, key: &[u8]) -> Result<Vec<u8>, i32> {
        let mut buf = vec![0u8; 16];
        loop {
            let mut len = 0;
            // SAFETY: an open handle, live slices and out-pointers.
            let status = unsafe {
                stickless_get(
                    self.0,
                    key.as_ptr().cast(),
                    key.len(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut len,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
            match status {
                0 => return Ok(buf[..len].to_vec()),
                4 => buf.resize(len, 0),
                other => return Err(other),
            }
        }
    }

    fn lock(&self, key: &[u8], owner: &[u8], lease: u32) -> (i32, u64) {
        let mut token = 0;
        // SAFETY: an open handle, live slices and an out-pointer.
        let status = unsafe {
            stickless_lock(
                self.0,
                key.as_ptr().cast(),
                key.len(),
                owner.as_ptr().cast(),
                owner.len(),
                lease,
                &mut token,
            )
        };
        (status, token)
    }

    fn serve(&self, args: &str) {
        // SAFETY: an open handle and a live string.
        let status = unsafe { stickless_serve(self.0, args.as_ptr().cast(), args.len()) };
        assert_eq!(status, StickStatus::STICKLESS_OK as i32, "serve {args}");
    }

    fn port(&self, kind: StickPortKind) -> u16 {
        let mut port = 0;
        // SAFETY: an open handle; `port` is valid for a write.
        assert_eq!(unsafe { stickless_port(self.0, kind as i32, &mut port) }, 0);
        port
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: opened by `open`, closed once.
        unsafe { stickless_close(self.0) };
    }
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + CONVERGE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_embedded_node_replicates_with_a_daemon_both_ways() {
    let embedded = Handle::open();
    embedded.serve("-l 127.0.0.1 -p 0 --repl-listen 127.0.0.1:0");
    let repl_port = embedded.port(StickPortKind::STICKLESS_PORT_REPLICATION);
    let daemon = Daemon::start(&["--peer", &format!("127.0.0.1:{repl_port}"), "--repl-listen", "127.0.0.1:0"]);
    let mut client = Client::connect(daemon.addr);

    assert_eq!(embedded.set(b"sess:abc", b"user|s:5:\"alice\";"), 0);
    wait_for("the ABI's write on the daemon", || {
        client.request(b"get sess:abc\r\n", b"END\r\n") == b"VALUE sess:abc 0 17\r\nuser|s:5:\"alice\";\r\nEND\r\n"
    });
    assert_eq!(client.request(b"set from:daemon 0 0 5\r\nhello\r\n", b"\r\n"), b"STORED\r\n");
    wait_for("the daemon's write through the ABI", || embedded.get(b"from:daemon") == Ok(b"hello".to_vec()));

    // The embedded node's own memcached listener serves the same store.
    let served = embedded.port(StickPortKind::STICKLESS_PORT_MEMCACHED);
    let mut local = Client::connect(std::net::SocketAddr::from(([127, 0, 0, 1], served)));
    assert_eq!(local.request(b"get from:daemon\r\n", b"END\r\n"), b"VALUE from:daemon 0 5\r\nhello\r\nEND\r\n");
}

/// An embedded node given only `--peer` dials and opens no replication port, so a
/// local daemon holding repcached's port 11212 is no obstacle; a port that cannot be
/// bound is named in the error.
#[test]
fn an_embedded_node_accepts_a_peer_only_when_given_repl_listen() {
    // As a daemon started with the defaults holds it (taken by someone else already
    // does as well).
    let _daemon_default = std::net::TcpListener::bind("127.0.0.1:11212");
    let daemon = Daemon::start(&["--repl-listen", "127.0.0.1:0"]);
    let embedded = Handle::open();
    embedded.serve(&format!("-l 127.0.0.1 -p 0 --repl-wait-sync 0 --peer {}", daemon.repl_addr.unwrap()));
    let mut port = 0;
    // SAFETY: an open handle; `port` is valid for a write.
    let status = unsafe { stickless_port(embedded.0, StickPortKind::STICKLESS_PORT_REPLICATION as i32, &mut port) };
    assert_eq!(status, StickStatus::STICKLESS_NOT_FOUND as i32, "no replication port: {port}");
    let mut client = Client::connect(daemon.addr);
    assert_eq!(embedded.set(b"dialed", b"yes"), 0);
    wait_for("the dialing node's write on the daemon", || {
        client.request(b"get dialed\r\n", b"END\r\n") == b"VALUE dialed 0 3\r\nyes\r\nEND\r\n"
    });

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap();
    let other = Handle::open();
    let args = format!("-l 127.0.0.1 -p 0 --repl-listen {taken}");
    // SAFETY: an open handle and a live string.
    let status = unsafe { stickless_serve(other.0, args.as_ptr().cast(), args.len()) };
    assert_eq!(status, StickStatus::STICKLESS_IO_ERROR as i32);
    let mut message = vec![0u8; 512];
    let mut len = 0;
    // SAFETY: a writable buffer of its length and a writable length.
    assert_eq!(unsafe { stickless_last_error(message.as_mut_ptr().cast(), message.len(), &mut len) }, 0);
    let message = String::from_utf8_lossy(&message[..len]).to_string();
    assert!(message.starts_with(&format!("cannot listen for the peer on {taken} (--repl-listen): ")), "{message}");
}

#[test]
fn one_handle_serves_many_threads() {
    let handle = Handle::open();
    std::thread::scope(|scope| {
        for thread in 0..8 {
            let handle = &handle;
            scope.spawn(move || {
                for i in 0..2000 {
                    let key = format!("t{thread}:{i}");
                    assert_eq!(handle.set(key.as_bytes(), key.as_bytes()), 0);
                    assert_eq!(handle.get(key.as_bytes()), Ok(key.clone().into_bytes()));
                }
            });
        }
    });
    let mut stats = StickStats { struct_size: std::mem::size_of::<StickStats>() as u32, ..StickStats::default() };
    // SAFETY: an open handle; `stats` is valid for a write.
    assert_eq!(unsafe { stickless_stats(handle.0, &mut stats) }, 0);
    assert_eq!(stats.curr_items, 16_000);
}

#[test]
fn in_ack_mode_a_write_through_the_abi_returns_once_the_peer_holds_it() {
    let daemon = Daemon::start(&["--repl-listen", "127.0.0.1:0"]);
    let embedded = Handle::open();
    embedded.serve(&format!(
        "-l 127.0.0.1 -p 0 --repl-listen 127.0.0.1:0 --repl-sync ack --peer {}",
        daemon.repl_addr.unwrap()
    ));
    let mut client = Client::connect(daemon.addr);
    // Ack mode waits for the peer only while a link is up: wait for it first.
    wait_for("the link", || {
        embedded.set(b"probe", b"1");
        client.request(b"get probe\r\n", b"END\r\n") == b"VALUE probe 0 1\r\n1\r\nEND\r\n"
    });
    for i in 0..300 {
        let key = format!("acked:{i}");
        assert_eq!(embedded.set(key.as_bytes(), b"held"), 0);
        // No waiting here: the set returned, so the daemon already holds it.
        let expected = format!("VALUE {key} 0 4\r\nheld\r\nEND\r\n");
        assert_eq!(show(&client.request(format!("get {key}\r\n").as_bytes(), b"END\r\n")), show(expected.as_bytes()));
    }
}

#[test]
fn a_lock_through_the_abi_and_one_on_the_daemon_never_both_win() {
    let daemon = Daemon::start(&["--repl-listen", "127.0.0.1:0"]);
    let embedded = Handle::open();
    embedded.serve(&format!("-l 127.0.0.1 -p 0 --repl-listen 127.0.0.1:0 --peer {}", daemon.repl_addr.unwrap()));
    let mut client = Client::connect(daemon.addr);
    wait_for("the link", || {
        embedded.set(b"probe", b"1");
        client.request(b"get probe\r\n", b"END\r\n") == b"VALUE probe 0 1\r\n1\r\nEND\r\n"
    });
    let mut abi_wins = 0;
    for round in 0..100 {
        let key = format!("lock:{round}");
        // In turn: the host first, the daemon's client first, and a race (the
        // client's request on its way when the host asks).
        let request = format!("ms {key} 4 ME T30 c\r\nwire\r\n");
        let (abi, wire) = match round % 3 {
            0 => {
                let abi = embedded.lock(key.as_bytes(), b"abi", 30);
                (abi, client.request(request.as_bytes(), b"\r\n"))
            }
            1 => {
                let wire = client.request(request.as_bytes(), b"\r\n");
                (embedded.lock(key.as_bytes(), b"abi", 30), wire)
            }
            _ => {
                client.send(request.as_bytes());
                let abi = embedded.lock(key.as_bytes(), b"abi", 30);
                (abi, client.request(b"", b"\r\n"))
            }
        };
        let wire_won = wire.starts_with(b"HD c");
        let abi_won = abi.0 == StickStatus::STICKLESS_OK as i32;
        assert!(abi_won != wire_won, "round {round}: ABI {abi:?}, wire {}", show(&wire));
        assert!(abi_won || abi.0 == StickStatus::STICKLESS_EXISTS as i32, "{abi:?}");
        abi_wins += usize::from(abi_won);
        // Both nodes settle on the winner's lock.
        let expected: &[u8] = if abi_won { b"VA 3\r\nabi\r\nEN\r\n" } else { b"VA 4\r\nwire\r\nEN\r\n" };
        wait_for("the winner on the daemon", || {
            client.request(format!("mg {key} v\r\nmg {key}:none v\r\n").as_bytes(), b"EN\r\n") == expected
        });
        if round % 3 == 0 {
            assert!(abi_won, "round {round}: the host asked first");
        } else if round % 3 == 1 {
            assert!(!abi_won, "round {round}: the client asked first");
        }
    }
    assert!(abi_wins >= 34, "the ABI won {abi_wins} of 100 rounds");
}

#[test]
fn serving_with_protect_prefix_keeps_an_embedded_stores_sessions_from_eviction() {
    let mut raw = std::ptr::null_mut();
    let options = StickOptions {
        struct_size: std::mem::size_of::<StickOptions>() as u32,
        memory_limit: 2 << 20,
        ..StickOptions::default()
    };
    // SAFETY: valid options and out-pointer.
    assert_eq!(unsafe { stickless_open(&options, &mut raw) }, 0);
    let store = Handle(raw);
    store.serve("-l 127.0.0.1 -p 0 --protect-prefix sess:");
    let value = [b'v'; 1000];
    let mut sessions = 0;
    loop {
        let _ = store.set(format!("cache:{sessions}").as_bytes(), &value);
        let status = store.set(format!("sess:{sessions}").as_bytes(), &value);
        if status != 0 {
            assert_eq!(status, StickStatus::STICKLESS_OUT_OF_MEMORY as i32);
            break;
        }
        sessions += 1;
        assert!(sessions < 10_000, "2 MB never filled");
    }
    assert!(sessions > 1000, "{sessions}");
    for i in 0..sessions {
        assert_eq!(store.get(format!("sess:{i}").as_bytes()), Ok(value.to_vec()), "sess:{i} was evicted");
    }
}

#[test]
fn serving_through_the_abi_keeps_memcached_s_authentication_rules() {
    let handle = Handle::open();
    let dir = std::env::temp_dir().join(format!("stickless-ffi-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let authfile = dir.join("authfile");
    std::fs::write(&authfile, "alice:wonderland\n").unwrap();
    let refused = |args: String| {
        // SAFETY: an open handle and a live string.
        let status = unsafe { stickless_serve(handle.0, args.as_ptr().cast(), args.len()) };
        assert_eq!(status, StickStatus::STICKLESS_BAD_CONFIG as i32, "serve {args}");
    };
    // As the daemon refuses them: a protocol left open beside its authentication.
    refused(format!("-l 127.0.0.1 -p 0 -S --sasl-pwdb {} -B ascii", authfile.display()));
    refused(format!("-l 127.0.0.1 -p 0 -Y {} -B binary", authfile.display()));
    // -Y serves text alone: a binary request is an unauthenticated line, not served.
    handle.serve(&format!("-l 127.0.0.1 -p 0 -Y {}", authfile.display()));
    handle.set(b"sess", b"secret-session");
    let port = handle.port(StickPortKind::STICKLESS_PORT_MEMCACHED);
    let mut client = Client::connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    let binary_get = [&[0x80, 0x00, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 4][..], &[0; 12], b"sess"].concat();
    let reply = client.request(&[binary_get, b"\r\n".to_vec()].concat(), b"\r\n");
    assert_eq!(reply, b"CLIENT_ERROR unauthenticated\r\n");
    std::fs::remove_dir_all(&dir).unwrap();
}
