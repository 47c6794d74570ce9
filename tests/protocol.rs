//! Loopback tests with raw bytes: one table of requests and their exact replies runs
//! against a 1-thread and a 4-thread server; then the server-level behaviours
//! (connection limit, request budget, counters, shutdown).

mod common;

use common::{Client, Memcached, parse_stats, show, start_stickless};
use std::net::TcpStream;

/// (request, exact reply). Each row runs on its own connection after `flush_all`.
const TABLE: &[(&[u8], &[u8])] = &[
    (b"set k 0 0 1\r\nv\r\nget k\r\n", b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"),
    (
        b"set k 7 0 2\r\nab\r\nappend k 0 0 1\r\nc\r\nprepend k 0 0 1\r\nz\r\nget k\r\n",
        b"STORED\r\nSTORED\r\nSTORED\r\nVALUE k 7 4\r\nzabc\r\nEND\r\n",
    ),
    (
        b"add k 0 0 1\r\na\r\nadd k 0 0 1\r\nb\r\nreplace k 0 0 1\r\nc\r\nreplace x 0 0 1\r\nd\r\nget k x\r\n",
        b"STORED\r\nNOT_STORED\r\nSTORED\r\nNOT_STORED\r\nVALUE k 0 1\r\nc\r\nEND\r\n",
    ),
    (b"cas k 0 0 1 1\r\nx\r\n", b"NOT_FOUND\r\n"),
    (b"set n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 100\r\nget n\r\n", b"STORED\r\n15\r\n0\r\nVALUE n 0 2\r\n0 \r\nEND\r\n"),
    (
        b"set n 0 0 1\r\nx\r\nincr n 1\r\n",
        b"STORED\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
    ),
    (b"incr n x\r\n", b"CLIENT_ERROR invalid numeric delta argument\r\n"),
    (b"incr nope 1\r\ndecr nope 1\r\n", b"NOT_FOUND\r\nNOT_FOUND\r\n"),
    (b"set k 0 0 1\r\nv\r\ndelete k\r\ndelete k\r\n", b"STORED\r\nDELETED\r\nNOT_FOUND\r\n"),
    (b"delete k 5\r\n", b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"),
    (b"set k 0 0 1\r\nv\r\ntouch k 100\r\ntouch x 100\r\n", b"STORED\r\nTOUCHED\r\nNOT_FOUND\r\n"),
    (b"touch k x\r\n", b"CLIENT_ERROR invalid exptime argument\r\n"),
    (b"set k 2 0 1\r\nv\r\ngat 100 k x\r\n", b"STORED\r\nVALUE k 2 1\r\nv\r\nEND\r\n"),
    (b"set k 0 -1 1\r\nv\r\nget k\r\n", b"STORED\r\nEND\r\n"),
    (b"set k 0 0 1\r\nv\r\nflush_all\r\nget k\r\n", b"STORED\r\nOK\r\nEND\r\n"),
    (b"flush_all x\r\n", b"CLIENT_ERROR invalid exptime argument\r\n"),
    (
        b"set k 0 0 1 noreply\r\nv\r\nadd k 0 0 1 noreply\r\nw\r\ndelete x noreply\r\nincr k 1 noreply\r\nget k\r\n",
        b"VALUE k 0 1\r\nv\r\nEND\r\n",
    ),
    (b"set k 0 0 3\r\nabcde\r\n", b"CLIENT_ERROR bad data chunk\r\nERROR\r\n"),
    (b"set k 0 0 -1\r\n", b"CLIENT_ERROR bad command line format\r\n"),
    (b"bogus\r\n", b"ERROR\r\n"),
    (b"get\r\n", b"ERROR\r\n"),
    (b"verbosity 1\r\nverbosity x\r\n", b"OK\r\nCLIENT_ERROR bad command line format\r\n"),
    (b"shutdown\r\n", b"ERROR: shutdown not enabled\r\n"),
    (b"stats detail\r\n", b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"),
    (b"stats sizes\r\n", b"STAT sizes_status disabled\r\nEND\r\n"),
    (b"stats nonsense\r\n", b"ERROR\r\n"),
    (b"mn\r\n", b"MN\r\n"),
    // Meta flags newer than memcached 1.6.18 (so outside the differential corpus):
    // E sets the CAS a write takes, md's x empties a value, ms's N vivifies appends.
    // Like memcached, flush_all spares an item with a client's CAS written in the
    // same second, so each row with E uses keys of its own.
    (
        b"ms e1 2 E12345 c\r\nhi\r\nmg e1 c v\r\ngets e1\r\n",
        b"HD c12345\r\nVA 2 c12345\r\nhi\r\nVALUE e1 0 2 12345\r\nhi\r\nEND\r\n",
    ),
    (b"mg e2 N30 E777 c s\r\nmg e2 c\r\n", b"HD c777 s0 W\r\nHD c777 Z\r\n"),
    (b"ms e3 1 E5\r\n1\r\nma e3 E9 c v\r\nma e4 N0 J4 E8 c v\r\n", b"HD\r\nVA 1 c9\r\n2\r\nVA 1 c8\r\n4\r\n"),
    (b"ms e5 2 E5\r\nhi\r\nmd e5 I E6\r\nmg e5 c v\r\n", b"HD\r\nHD\r\nVA 2 c6 X W\r\nhi\r\n"),
    (b"ms e6 2 F5 E5\r\nhi\r\nmd e6 x\r\nmg e6 v f c\r\n", b"HD\r\nHD\r\nVA 0 f0 c5\r\n\r\n"),
    (b"ms e7 2 E5\r\nhi\r\nmd e7 x F3 T100 E7\r\nmg e7 s f t c\r\n", b"HD\r\nHD\r\nHD s0 f3 t100 c7\r\n"),
    (b"ms e8 2\r\nhi\r\nmd e8 x I E7 q\r\nmg e8 s c\r\n", b"HD\r\nHD s0 c7 X W\r\n"),
    (
        b"ms k 1 MA N30\r\n!\r\nmg k v t\r\nms k 1 MA N30\r\n?\r\nms k 1 MP N0\r\n<\r\nmg k v\r\n",
        b"HD\r\nVA 1 t30\r\n!\r\nHD\r\nHD\r\nVA 3\r\n<!?\r\n",
    ),
    (b"ms k 1 MP N0\r\n<\r\nmg k v t\r\n", b"HD\r\nVA 1 t-1\r\n<\r\n"),
    (b"ms k 2 Ex\r\nhi\r\nmg k\r\n", b"CLIENT_ERROR bad token in command line format\r\nEN\r\n"),
];

fn run_table(threads: usize) {
    let server = start_stickless(threads, |_| {});
    for (request, expected) in TABLE {
        let mut client = Client::connect(server.local_addr());
        assert_eq!(client.step(b"flush_all\r\n"), b"OK\r\n");
        let reply = client.step(request);
        assert_eq!(reply, *expected, "{threads} threads, request {}: got {}", show(request), show(&reply));
    }
    // Version and gets have run-dependent parts: check their shape.
    let mut client = Client::connect(server.local_addr());
    let version = String::from_utf8(client.step(b"version\r\n")).unwrap();
    assert!(version.starts_with("VERSION 1.6.18-stickless-") && version.ends_with("\r\n"), "{version}");
    let gets = String::from_utf8(client.step(b"set k 0 0 1\r\nv\r\ngets k\r\n")).unwrap();
    let cas: u64 = gets.split("\r\n").nth(1).unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    let reply = client.step(format!("cas k 0 0 1 {}\r\nw\r\ncas k 0 0 1 {cas}\r\nw\r\n", cas + 1).as_bytes());
    assert_eq!(reply, b"EXISTS\r\nSTORED\r\n");
    assert_eq!(client.step(b"quit\r\n"), b"<closed>");
    server.shutdown();
}

#[test]
fn table_on_one_thread() {
    run_table(1);
}

#[test]
fn table_on_four_threads() {
    run_table(4);
}

#[test]
fn connections_over_the_limit_are_told_and_closed() {
    let server = start_stickless(2, |c| c.max_connections = 2);
    let mut first = Client::connect(server.local_addr());
    let mut second = Client::connect(server.local_addr());
    assert_eq!(first.step(b"set k 0 0 1\r\nv\r\n"), b"STORED\r\n");
    let mut third = Client::connect(server.local_addr());
    assert_eq!(third.read_until(b"<never>"), b"ERROR Too many open connections\r\n<closed>");
    assert_eq!(second.step(b"get k\r\n"), b"VALUE k 0 1\r\nv\r\nEND\r\n");
    drop(first);
    // Once a slot frees, a new connection is served.
    let deadline = std::time::Instant::now() + common::EXCHANGE_DEADLINE;
    loop {
        let mut again = Client::connect(server.local_addr());
        let reply = again.step(b"get k\r\n");
        if reply == b"VALUE k 0 1\r\nv\r\nEND\r\n" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no slot freed: {}", show(&reply));
    }
    let stats = parse_stats(&second.step(b"stats\r\n"));
    assert!(stats["rejected_connections"].parse::<u64>().unwrap() >= 1);
    server.shutdown();
}

#[test]
fn a_deep_pipeline_yields_but_answers_everything_in_order() {
    let server = start_stickless(1, |c| c.reqs_per_event = 5);
    let mut client = Client::connect(server.local_addr());
    let mut request = Vec::new();
    let mut expected = Vec::new();
    for i in 0..200 {
        request.extend_from_slice(format!("set k{i} 0 0 {}\r\n{i}\r\nget k{i}\r\n", i.to_string().len()).as_bytes());
        expected
            .extend_from_slice(format!("STORED\r\nVALUE k{i} 0 {}\r\n{i}\r\nEND\r\n", i.to_string().len()).as_bytes());
    }
    assert_eq!(client.step(&request), expected);
    let stats = parse_stats(&client.step(b"stats\r\n"));
    assert!(stats["conn_yields"].parse::<u64>().unwrap() > 0, "-R 5 must make the connection yield");
    server.shutdown();
}

#[test]
fn large_values_round_trip_through_small_reads() {
    let server = start_stickless(2, |_| {});
    let mut client = Client::connect(server.local_addr());
    let value: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut request = format!("set big 9 0 {}\r\n", value.len()).into_bytes();
    request.extend_from_slice(&value);
    request.extend_from_slice(b"\r\n");
    assert_eq!(client.step(&request), b"STORED\r\n");
    let mut expected = format!("VALUE big 9 {}\r\n", value.len()).into_bytes();
    expected.extend_from_slice(&value);
    expected.extend_from_slice(b"\r\nEND\r\n");
    // Several gets pipelined: replies back up past the write high-water mark.
    let reply = client.step(b"get big\r\nget big\r\nget big\r\n");
    assert_eq!(reply.len(), expected.len() * 3);
    assert!(reply.chunks(expected.len()).all(|chunk| chunk == expected));
    server.shutdown();
}

/// The counters of `stats` move exactly as memcached's do for the same requests.
#[test]
fn stats_counters_match_memcached() {
    let workload: &[u8] = b"set a 0 0 1\r\n1\r\nset b 0 0 1\r\n2\r\nget a b c\r\ngets a\r\nadd a 0 0 1\r\nx\r\n\
        append a 0 0 1\r\nx\r\ncas a 0 0 1 1\r\nx\r\ncas zz 0 0 1 1\r\nx\r\nset n 0 0 1\r\n5\r\nincr n 1\r\n\
        decr n 1\r\nincr q 1\r\ndecr q 1\r\ntouch a 100\r\ntouch q 100\r\ngat 100 a q\r\ndelete b\r\n\
        delete b\r\nset e 0 -1 1\r\ne\r\nget e\r\nflush_all\r\nget a\r\nset big 0 0 2000000\r\n";
    let counters = [
        "cmd_get",
        "cmd_set",
        "cmd_flush",
        "cmd_touch",
        "get_hits",
        "get_misses",
        "get_expired",
        "get_flushed",
        "delete_misses",
        "delete_hits",
        "incr_misses",
        "incr_hits",
        "decr_misses",
        "decr_hits",
        "cas_misses",
        "cas_hits",
        "cas_badval",
        "touch_hits",
        "touch_misses",
        "store_too_large",
        "store_no_memory",
        "curr_items",
        "total_items",
        "evictions",
        "threads",
        "limit_maxbytes",
        "max_connections",
    ];
    let memcached = Memcached::start(&["-t", "2", "-m", "64"]);
    let stickless = start_stickless(2, |_| {});
    let mut results = Vec::new();
    for addr in [memcached.addr, stickless.local_addr()] {
        let mut client = Client::connect(addr);
        client.step(workload);
        client.send(&vec![b'z'; 2_000_002]);
        let stats = parse_stats(&client.step(b"stats\r\n"));
        let picked: Vec<(String, String)> =
            counters.iter().map(|name| (name.to_string(), stats.get(*name).cloned().unwrap_or_default())).collect();
        results.push(picked);
    }
    stickless.shutdown();
    assert_eq!(results[1], results[0], "stickless (left) against memcached (right)");
}

#[test]
fn shutdown_stops_accepting() {
    let server = start_stickless(2, |_| {});
    let addr = server.local_addr();
    let mut client = Client::connect(addr);
    assert_eq!(client.step(b"set k 0 0 1\r\nv\r\n"), b"STORED\r\n");
    server.shutdown();
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed after shutdown");
    assert_eq!(client.read_until(b"<never>"), b"<closed>");
}
