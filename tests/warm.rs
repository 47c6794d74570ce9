//! Warm restart (`-e FILE`): a node stopped gracefully (SIGTERM, SIGINT, SIGUSR1 or
//! `shutdown graceful`) and started again with the same file serves the same items
//! with the same CAS uniques, flags and expiry; a damaged, truncated or foreign
//! file is refused with a message, and the node starts empty.

mod common;

use common::{Client, Daemon};
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    common::scratch_dir(&format!("warm-{name}"))
}

fn start(file: &Path, extra: &[&str]) -> Daemon {
    let mut args = vec!["-e", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    Daemon::start(&args)
}

/// What a client sees of the keys: values, flags, CAS uniques.
const SEEN: &[u8] = b"gets sess:1 sess:2 binary plain\r\n";

fn fill(daemon: &Daemon) -> Vec<u8> {
    let mut client = Client::connect(daemon.addr);
    let value = "x".repeat(5000);
    let set = format!("set sess:1 3 600 {}\r\n{value}\r\nset sess:2 0 0 5\r\nhello\r\n", value.len());
    assert_eq!(client.step(set.as_bytes()), b"STORED\r\nSTORED\r\n");
    assert_eq!(client.step(b"set plain 65535 0 1\r\n1\r\nincr plain 41\r\n"), b"STORED\r\n42\r\n");
    // A key sent in base64 (`b`), stored as the bytes it decodes to.
    assert_eq!(client.step(b"ms YmluYXJ5 2 b T900 F9\r\nhi\r\n"), b"HD\r\n");
    client.step(SEEN)
}

#[test]
fn every_graceful_stop_keeps_items_cas_uniques_and_expiry() {
    let dir = scratch("stops");
    let file = dir.join("items");
    let stops: [(&str, &[&str]); 4] =
        [("SIGTERM", &[]), ("SIGINT", &[]), ("SIGUSR1", &[]), ("shutdown graceful", &["-A"])];
    for (stop, flags) in stops {
        let mut first = start(&file, flags);
        let seen = fill(&first);
        let status = match stop {
            "SIGTERM" => first.stop_with(libc::SIGTERM),
            "SIGINT" => first.stop_with(libc::SIGINT),
            "SIGUSR1" => first.stop_with(libc::SIGUSR1),
            _ => {
                Client::connect(first.addr).send(b"shutdown graceful\r\n");
                first.wait_exit()
            }
        };
        assert!(status.success(), "{stop}: {status}");
        assert!(first.log().contains("warm restart: saved 4 items"), "{stop}: {}", first.log());
        // It holds every session: only the daemon's user may read it.
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600, "{stop}");
        let second = start(&file, flags);
        assert!(second.log().contains("warm restart: loaded 4 items"), "{stop}: {}", second.log());
        let mut client = Client::connect(second.addr);
        assert_eq!(common::show(&client.step(SEEN)), common::show(&seen), "{stop}: the same bytes after the restart");
        // Expiry is absolute: the TTL goes on from where it was, and no further.
        let ttl = String::from_utf8(client.step(b"mg sess:1 t\r\nmg sess:2 t\r\nmg YmluYXJ5 b t f\r\n")).unwrap();
        let left: Vec<&str> = ttl.lines().collect();
        assert!(left[0].starts_with("HD t") && left[0][4..].parse::<u32>().unwrap() <= 600, "{ttl}");
        assert_eq!(left[1], "HD t-1");
        assert!(left[2].starts_with("HD t") && left[2].ends_with(" f9"), "{ttl}");
        // New writes get newer CAS uniques than every loaded one.
        let fresh = String::from_utf8(client.step(b"set new 0 0 1\r\nn\r\ngets new\r\n")).unwrap();
        let unique: u64 = fresh.lines().nth(1).unwrap().rsplit(' ').next().unwrap().parse().unwrap();
        let loaded = String::from_utf8(seen.clone()).unwrap();
        assert!(
            loaded.lines().filter(|l| l.starts_with("VALUE")).all(|l| l
                .rsplit(' ')
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                < unique),
            "{loaded} / {fresh}"
        );
        // The file was used up: a crash now would not bring this run's items back stale.
        assert!(!file.exists());
        drop(second);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn items_that_expired_meanwhile_are_dropped() {
    let dir = scratch("expired");
    let file = dir.join("items");
    let mut first = start(&file, &[]);
    let mut client = Client::connect(first.addr);
    assert_eq!(client.step(b"set brief 0 1 1\r\nb\r\nset long 0 0 1\r\nl\r\n"), b"STORED\r\nSTORED\r\n");
    assert!(first.stop_with(libc::SIGTERM).success());
    // Wait (bounded) until the brief item's second has passed on the wall clock.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let saved_at = std::time::SystemTime::now();
    while saved_at.elapsed().unwrap() < std::time::Duration::from_millis(2100) {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let second = start(&file, &[]);
    assert!(
        second.log().contains("loaded 1 items") && second.log().contains("1 expired meanwhile"),
        "{}",
        second.log()
    );
    assert_eq!(Client::connect(second.addr).step(b"get brief long\r\n"), b"VALUE long 0 1\r\nl\r\nEND\r\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_truncated_or_foreign_file_is_refused_and_the_node_starts_empty() {
    let dir = scratch("damaged");
    let file = dir.join("items");
    let mut first = start(&file, &[]);
    fill(&first);
    assert!(first.stop_with(libc::SIGTERM).success());
    let good = std::fs::read(&file).unwrap();
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("one bit flipped", flipped, "checksum does not match"),
        ("cut short", good[..good.len() - 100].to_vec(), "checksum does not match"),
        ("cut to its header", good[..20].to_vec(), "too short"),
        (
            "a foreign file",
            b"#!/bin/sh\necho this is not a cache file, but it is long enough to be read\n".to_vec(),
            "not a stickless warm restart file",
        ),
        ("a newer format", [&good[..8], &99u32.to_le_bytes()[..], &good[12..]].concat(), "format 99"),
    ];
    for (what, bytes, says) in cases {
        std::fs::write(&file, &bytes).unwrap();
        let node = start(&file, &[]);
        let log = node.log();
        assert!(log.contains("warm restart:") && log.contains(says) && log.contains("starting empty"), "{what}: {log}");
        assert_eq!(Client::connect(node.addr).step(b"get sess:2\r\n"), b"END\r\n", "{what}");
        // A refused file stays for the operator to look at.
        assert_eq!(std::fs::read(&file).unwrap(), bytes, "{what}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
