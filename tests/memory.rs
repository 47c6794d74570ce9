//! The memory limit holds in a real process: the daemon is filled with ten times its
//! `-m`, and its resident memory stays within the limit plus a documented overhead,
//! while `evictions` accounts for every item that left.

mod common;

use common::{Client, Daemon, parse_stats};

/// What a running daemon holds besides items and hash tables: code and libraries,
/// thread stacks, connection buffers and allocator slack. Measured at 3-6 MiB with
/// 4 KiB values; the bound leaves room for allocator fragmentation. It includes
/// [`USER_SWITCH_BYTES`]: the tests run as root and pass `-u root`.
const OVERHEAD_BYTES: u64 = 12 * 1024 * 1024 + USER_SWITCH_BYTES;

/// What `-u` costs a daemon started as root: `getpwnam` and `initgroups` load
/// glibc's NSS modules. An idle node measured 7.4 MiB resident without it and
/// 8.2 MiB with it; memcached pays the same for its `-u`.
const USER_SWITCH_BYTES: u64 = 1024 * 1024;

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

/// Writes `count` distinct keys and deletes each, pipelined without replies, then
/// waits for a reply so that every command has been handled.
fn set_and_delete(client: &mut Client, count: usize, mut sample: impl FnMut()) {
    const BATCH: usize = 2000;
    let value = [b'v'; 100];
    for base in (0..count).step_by(BATCH) {
        let mut request = Vec::with_capacity(BATCH * 160);
        for i in base..(base + BATCH).min(count) {
            request.extend_from_slice(format!("set sess:{i} 0 0 {} noreply\r\n", value.len()).as_bytes());
            request.extend_from_slice(&value);
            request.extend_from_slice(format!("\r\ndelete sess:{i} noreply\r\n").as_bytes());
        }
        client.send(&request);
        if base % (50 * BATCH) == 0 {
            wait_handled(client);
            sample();
        }
    }
    wait_handled(client);
}

/// Waits until every command sent so far has been handled: the no-op after them is
/// answered, and nothing else is. (No second sentinel is ever needed here, since
/// nothing sent is short of its data, so a slow answer cannot be mistaken.)
fn wait_handled(client: &mut Client) {
    client.send(b"mn\r\n");
    assert_eq!(client.read_until(b"MN\r\n"), b"");
}

/// Bytes a node may hold beyond `-m`: the replication backlog's 16 MiB (default
/// `--repl-backlog`, which bounds its real memory) and the daemon's own overhead.
const REPLICATING_OVERHEAD_BYTES: u64 = 16 * 1024 * 1024 + OVERHEAD_BYTES;

/// Two nodes with `-m limit_mb`, B dialing A.
fn replicating_pair(limit_mb: u64) -> (Daemon, Daemon) {
    let limit = limit_mb.to_string();
    let a = Daemon::start(&["-m", &limit, "-t", "2", "--repl-listen", "127.0.0.1:0"]);
    let peer = format!("--peer={}", a.repl_addr.unwrap());
    let b = Daemon::start(&["-m", &limit, "-t", "2", "--repl-listen", "127.0.0.1:0", &peer]);
    (a, b)
}

/// A pair takes a million sets and deletes of distinct keys: the tombstones the
/// deletes leave go once the peer has them, and each node stays within its `-m`
/// plus the backlog and its fixed overhead. (Kept for ten minutes each, they took
/// about 60 bytes a delete: 60 MB here, 120 MB for the two million of a longer run.)
#[test]
fn a_pair_taking_a_million_deletes_stays_within_its_limit() {
    const LIMIT_MB: u64 = 16;
    let (a, b) = replicating_pair(LIMIT_MB);
    let mut client = Client::connect(a.addr);
    let mut peak = [0u64; 2];
    let mut sample = || {
        for (peak, daemon) in peak.iter_mut().zip([&a, &b]) {
            *peak = (*peak).max(resident_bytes(daemon.child.id()));
        }
    };
    set_and_delete(&mut client, 1_000_000, &mut sample);
    sample();
    let bound = LIMIT_MB * 1024 * 1024 + REPLICATING_OVERHEAD_BYTES;
    eprintln!("peak resident: A {} B, B {} B (bound {bound} B)", peak[0], peak[1]);
    for (name, peak) in ["A", "B"].iter().zip(peak) {
        assert!(peak <= bound, "node {name}: resident {peak} bytes over {bound}");
    }
    // Once the peer has acknowledged the deletes, the sweep forgets their tombstones.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stats = parse_stats(&client.step(b"stats\r\n"));
        let used: u64 = stats["memory_used"].parse().unwrap();
        assert!(used <= LIMIT_MB * 1024 * 1024, "accounted {used} bytes");
        if stats["repl_tombstones"] == "0" {
            assert_eq!(stats["repl_tombstone_bytes"], "0");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "tombstones left: {}", stats["repl_tombstones"]);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// With its peer stopped, a node cannot forget the deletes it takes: their
/// tombstones count against `-m`, and beyond it the oldest are shed (counted)
/// rather than the node growing.
#[test]
fn a_node_whose_peer_is_stopped_keeps_its_deletes_within_its_limit() {
    const LIMIT_MB: u64 = 8;
    let (a, b) = replicating_pair(LIMIT_MB);
    let mut client = Client::connect(a.addr);
    let wait_linked = |client: &mut Client| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while parse_stats(&client.step(b"stats\r\n"))["repl_peer_state"] != "up" {
            assert!(std::time::Instant::now() < deadline, "never linked");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    wait_linked(&mut client);
    // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(b.child.id() as i32, libc::SIGSTOP) }, 0);
    let mut peak = 0;
    set_and_delete(&mut client, 400_000, || peak = peak.max(resident_bytes(a.child.id())));
    peak = peak.max(resident_bytes(a.child.id()));
    let stats = parse_stats(&client.step(b"stats\r\n"));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(b.child.id() as i32, libc::SIGCONT) }, 0);
    let used: u64 = stats["memory_used"].parse().unwrap();
    let bound = LIMIT_MB * 1024 * 1024 + REPLICATING_OVERHEAD_BYTES;
    eprintln!("peak resident {peak} B (bound {bound} B), {stats:?}");
    assert!(used <= LIMIT_MB * 1024 * 1024, "accounted {used} bytes");
    assert!(peak <= bound, "resident {peak} bytes over {bound}");
    assert!(stats["repl_tombstones_shed"].parse::<u64>().unwrap() > 0, "the oldest deletes were shed");
    let kept: u64 = stats["repl_tombstones"].parse().unwrap();
    assert!(kept > 50_000, "only {kept} deletes remembered");
    // Continued, the peer links again.
    wait_linked(&mut client);
}
