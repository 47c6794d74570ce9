//! A bounded concurrent stress: 8 client threads × 20,000 mixed operations against a
//! 4-thread server. Each thread owns its keys and predicts every reply from a model of
//! them; all threads also increment one shared counter. Afterwards the shared counter
//! and the server's counters must add up exactly.

mod common;

use common::{Client, Rng, parse_stats, show, start_stickless};
use std::collections::HashMap;

const THREADS: usize = 8;
const OPS_PER_THREAD: usize = 20_000;
const KEYS_PER_THREAD: u64 = 200;
/// Requests pipelined per round trip.
const BATCH: usize = 20;

#[derive(Default, Debug, Clone, Copy)]
struct Issued {
    gets: u64,
    sets: u64,
    deletes: u64,
    shared_incrs: u64,
}

fn client_thread(addr: std::net::SocketAddr, id: usize) -> Issued {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1));
    let mut client = Client::connect(addr);
    let mut model: HashMap<String, Vec<u8>> = HashMap::new();
    let mut issued = Issued::default();
    let mut done = 0;
    while done < OPS_PER_THREAD {
        let mut request = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..BATCH {
            let key = format!("t{id}:k{}", rng.below(KEYS_PER_THREAD));
            match rng.below(10) {
                0..=3 => {
                    issued.gets += 1;
                    request.extend_from_slice(format!("get {key}\r\n").as_bytes());
                    if let Some(v) = model.get(&key) {
                        expected.extend_from_slice(format!("VALUE {key} {id} {}\r\n", v.len()).as_bytes());
                        expected.extend_from_slice(v);
                        expected.extend_from_slice(b"\r\n");
                    }
                    expected.extend_from_slice(b"END\r\n");
                }
                4..=6 => {
                    issued.sets += 1;
                    let len = rng.below(300) as usize;
                    let value: Vec<u8> = (0..len).map(|_| b'a' + rng.below(26) as u8).collect();
                    request.extend_from_slice(format!("set {key} {id} 0 {len}\r\n").as_bytes());
                    request.extend_from_slice(&value);
                    request.extend_from_slice(b"\r\n");
                    expected.extend_from_slice(b"STORED\r\n");
                    model.insert(key, value);
                }
                7 => {
                    issued.sets += 1;
                    request.extend_from_slice(format!("append {key} 0 0 2\r\n+!\r\n").as_bytes());
                    match model.get_mut(&key) {
                        Some(v) => {
                            v.extend_from_slice(b"+!");
                            expected.extend_from_slice(b"STORED\r\n");
                        }
                        None => expected.extend_from_slice(b"NOT_STORED\r\n"),
                    }
                }
                _ => {
                    issued.deletes += 1;
                    request.extend_from_slice(format!("delete {key}\r\n").as_bytes());
                    let line: &[u8] = if model.remove(&key).is_some() { b"DELETED\r\n" } else { b"NOT_FOUND\r\n" };
                    expected.extend_from_slice(line);
                }
            }
            done += 1;
        }
        // One increment of the shared counter per batch, pipelined with the rest.
        request.extend_from_slice(b"incr shared 1\r\n");
        issued.shared_incrs += 1;
        let reply = client.step(&request);
        assert!(reply.starts_with(&expected), "thread {id}: expected {}\ngot {}", show(&expected), show(&reply));
        let counter = &reply[expected.len()..];
        assert!(
            counter.ends_with(b"\r\n") && counter[..counter.len() - 2].iter().all(u8::is_ascii_digit),
            "thread {id}: incr reply {}",
            show(counter)
        );
    }
    issued
}

#[test]
fn concurrent_clients_see_every_acknowledged_write() {
    let server = start_stickless(4, |_| {});
    let addr = server.local_addr();
    let mut setup = Client::connect(addr);
    assert_eq!(setup.step(b"set shared 0 0 1\r\n0\r\n"), b"STORED\r\n");
    let baseline = parse_stats(&setup.step(b"stats\r\n"));
    let handles: Vec<_> = (0..THREADS).map(|id| std::thread::spawn(move || client_thread(addr, id))).collect();
    let issued: Vec<Issued> = handles.into_iter().map(|h| h.join().expect("client thread")).collect();
    let total = |f: fn(&Issued) -> u64| issued.iter().map(f).sum::<u64>();

    let reply = setup.step(b"get shared\r\n");
    let expected_counter = total(|i| i.shared_incrs).to_string();
    assert!(
        reply.windows(expected_counter.len()).any(|w| w == expected_counter.as_bytes()),
        "shared counter {} after {expected_counter} increments",
        show(&reply)
    );

    let stats = parse_stats(&setup.step(b"stats\r\n"));
    let delta = |name: &str| stats[name].parse::<u64>().unwrap() - baseline[name].parse::<u64>().unwrap();
    assert_eq!(delta("cmd_get"), total(|i| i.gets) + 1);
    assert_eq!(delta("get_hits") + delta("get_misses"), delta("cmd_get"));
    assert_eq!(delta("cmd_set"), total(|i| i.sets));
    assert_eq!(delta("delete_hits") + delta("delete_misses"), total(|i| i.deletes));
    assert_eq!(delta("incr_hits"), total(|i| i.shared_incrs));
    assert_eq!(stats["evictions"], "0", "64 MB holds everything, so the model is exact");
    server.shutdown();
}
