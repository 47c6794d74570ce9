//! The memory limit holds in a real process: the daemon is filled with ten times its
//! `-m`, and its resident memory stays within the limit plus a documented overhead,
//! while `evictions` accounts for every item that left.

mod common;

use common::{Client, Daemon, parse_stats};

/// What a running daemon holds besides items and hash tables: code and libraries,
/// thread stacks, connection buffers and allocator slack. Measured at 3-6 MiB with
/// 4 KiB values; the bound leaves room for allocator fragmentation.
const OVERHEAD_BYTES: u64 = 12 * 1024 * 1024;

fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

#[test]
fn a_fill_of_ten_times_the_limit_stays_within_it() {
    const LIMIT_MB: u64 = 16;
    let daemon = Daemon::start(&["-m", &LIMIT_MB.to_string(), "-t", "2"]);
    let pid = daemon.child.id();
    let mut client = Client::connect(daemon.addr);
    let value = vec![b'v'; 4096];
    let items = (LIMIT_MB * 10 * 1024 * 1024) / value.len() as u64;
    let mut peak = 0;
    for batch in 0..items / 64 {
        let mut request = Vec::with_capacity(64 * (value.len() + 40));
        for i in 0..64 {
            request.extend_from_slice(format!("set key:{}:{i} 0 0 {}\r\n", batch, value.len()).as_bytes());
            request.extend_from_slice(&value);
            request.extend_from_slice(b"\r\n");
        }
        let reply = client.step(&request);
        assert_eq!(reply, b"STORED\r\n".repeat(64));
        if batch % 16 == 0 {
            peak = peak.max(resident_bytes(pid));
        }
    }
    peak = peak.max(resident_bytes(pid));
    let stats = parse_stats(&client.step(b"stats\r\n"));
    drop(daemon);

    let limit = LIMIT_MB * 1024 * 1024;
    eprintln!("limit {limit} B, accounted {} B, peak resident {peak} B", stats["memory_used"]);
    let used: u64 = stats["memory_used"].parse().unwrap();
    assert!(used <= limit, "accounted memory {used} over the limit {limit}");
    assert!(peak <= limit + OVERHEAD_BYTES, "resident {peak} bytes over {limit} + {OVERHEAD_BYTES}");
    let stored = items / 64 * 64;
    let evictions: u64 = stats["evictions"].parse().unwrap();
    let current: u64 = stats["curr_items"].parse().unwrap();
    assert_eq!(current + evictions, stored, "every item is either present or counted as evicted");
    assert!(evictions > stored * 8 / 10, "most of a tenfold fill must have been evicted");
}

/// The hazard, with memcached itself: under memory pressure it evicts live
/// sessions as readily as anything else.
#[test]
fn memcached_evicts_live_sessions_under_pressure() {
    let memcached = common::Memcached::start(&["-m", "2"]);
    let mut client = Client::connect(memcached.addr);
    let value = vec![b's'; 1000];
    for i in 0..3000 {
        for key in [format!("cache:{i}"), format!("memc.sess.key.{i}")] {
            let mut request = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
            request.extend_from_slice(&value);
            request.extend_from_slice(b"\r\n");
            assert_eq!(client.step(&request), b"STORED\r\n");
        }
    }
    let lost = (0..3000).filter(|i| client.step(format!("mg memc.sess.key.{i} v\r\n").as_bytes()) == b"EN\r\n").count();
    assert!(lost > 1000, "memcached kept all but {lost} of 3000 sessions");
}

/// Live sessions under a protected prefix survive a fill that evicts everything else,
/// and the session that finds no room is refused with memcached's exact error.
#[test]
fn protected_sessions_are_not_evicted_and_the_overflow_is_refused() {
    let daemon = Daemon::start(&["-m", "2", "-t", "1", "--protect-prefix", "memc.sess.key."]);
    let mut client = Client::connect(daemon.addr);
    let value = vec![b's'; 1000];
    let store = |client: &mut Client, key: &str| {
        let mut request = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
        request.extend_from_slice(&value);
        request.extend_from_slice(b"\r\n");
        client.step(&request)
    };
    let mut sessions = 0;
    loop {
        // Cache entries are stored between sessions while there is room for them.
        let _ = store(&mut client, &format!("cache:{sessions}"));
        let reply = store(&mut client, &format!("memc.sess.key.{sessions}"));
        if reply != b"STORED\r\n" {
            assert_eq!(reply, b"SERVER_ERROR out of memory storing object\r\n");
            break;
        }
        sessions += 1;
        assert!(sessions < 10_000, "2 MB never filled");
    }
    assert!(sessions > 1000, "only {sessions} sessions fitted");
    for i in 0..sessions {
        let key = format!("memc.sess.key.{i}");
        let reply = client.step(format!("mg {key} v\r\n").as_bytes());
        assert!(reply.starts_with(b"VA 1000"), "{key} is gone: {:?}", String::from_utf8_lossy(&reply));
    }
    let stats = parse_stats(&client.step(b"stats\r\n"));
    assert!(stats["evictions"].parse::<u64>().unwrap() > 0, "{stats:?}");
    assert!(stats["evictions_skipped_protected"].parse::<u64>().unwrap() > 0, "{stats:?}");
    assert!(stats["store_no_memory"].parse::<u64>().unwrap() >= 1, "{stats:?}");
    // A deleted session makes room for the refused one.
    assert_eq!(client.step(b"delete memc.sess.key.0\r\n"), b"DELETED\r\n");
    assert_eq!(store(&mut client, &format!("memc.sess.key.{sessions}")), b"STORED\r\n");
}
