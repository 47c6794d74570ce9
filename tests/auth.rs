//! Text-protocol authentication (`-Y`), compared with Debian's memcached started
//! with the same authfile: every reply must be byte-identical.

mod common;

use common::{Client, Memcached, parse_stats, show, start_stickless};
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
