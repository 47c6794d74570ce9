//! The deterministic simulator: nodes' real stores, replicators, link sessions and
//! link decisions ([`Links`]) in one thread, on virtual time and a virtual network,
//! every run decided by its seed. Only the sockets are replaced: a connection is a
//! pair of byte pipes that deliver in order after a random latency, and that
//! faults cut (losing what is in flight), stall one way, or hold apart for long
//! stretches; nodes crash and come back empty, or stop and come back from a warm
//! restart file (the daemon's own `-e` save and load), and their clocks step. A
//! link's thread can be late to read what arrived, and a client's write can be
//! descheduled between becoming visible and its record while every link runs
//! (where the daemon holds no lock), as threads interleave in the daemon.
//!
//! After the faults, the network heals and the simulator checks the oracle:
//! - every node holds the same state for every key;
//! - that state is the last write's, deletes included, unless that write was
//!   answered by a node that crashed before any other node applied it;
//! - the stores stay within their memory limit;
//!
//! and, all along, that two nodes never both grant one lock through `add` while
//! linked (a locker on each node takes it, holds it a moment and deletes it, as a
//! session handler's connection does), and that between two moments when every
//! node is linked and quiet a counter (a client on each node running `incr`, again
//! when told its increment lost) went up by exactly the increments answered, on
//! linked nodes and on cut-off ones alike: none lost, and in a pair none counted
//! twice (meshes report those: a known defect). Only a crash, which loses what its
//! node had not passed on, and a claim granted because its link went down before
//! the verdict (a rival on the other side may replace it) loosen the count; and
//! in a pair no two increments answered while linked get one value.
//!
//! Pairs, meshes of three and meshes of five run alike: every node lists every
//! other, and a partition holds one node apart from the rest.
//!
//! `cargo test --lib simulator` runs the fixed seeds; `scripts/simulate --seeds N`
//! runs a campaign from a random first seed (`STICKLESS_SIM_SEEDS`,
//! `STICKLESS_SIM_FIRST_SEED`), and a failure names its seed.

use super::claims::FIRST_WAIT;
use super::handshake::Identity;
use super::heartbeat::LinkTime;
use super::links::{Links, Now, Transport};
use super::replicator::{Replicator, Settings, SyncMode};
use crate::node::Node;
use crate::store::{Clock, DeleteRequest, ManualClock, Store, StoreConfig, StoreMode, StoreOutcome, StoreRequest};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

const START_MS: u64 = 1_800_000_000_000;
const KEYS: usize = 8;
/// Each node's memory limit: small enough that eviction and tombstone shedding can
/// run in a long campaign.
const MEMORY_LIMIT: usize = 4 << 20;

/// splitmix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", 2014): one seed gives one sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True `per_mille` times in a thousand.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// One direction of a connection: chunks of bytes with the virtual time they arrive.
#[derive(Default)]
struct Direction {
    in_flight: VecDeque<(u64, Vec<u8>)>,
    /// Nothing arrives before this time (a one-way stall).
    stalled_until: u64,
}

/// A connection between two nodes: `ends[0]` dialed, `ends[1]` accepted.
struct Wire {
    nodes: [usize; 2],
    /// The key each end has in its node's `Links`, once adopted.
    keys: [Option<usize>; 2],
    /// Toward `ends[i]`.
    toward: [Direction; 2],
    /// An end was closed (by its node's decisions, or by a crash).
    closed: bool,
    /// The virtual time, for the latency of what is written now.
    now_us: u64,
    latency: Rc<RefCell<Rng>>,
}

/// One end of a wire, as a node's [`Links`] holds it.
struct PipeEnd {
    wire: Rc<RefCell<Wire>>,
    side: usize,
    /// Bytes that arrived and the session has not used yet.
    inbox: Vec<u8>,
}

impl Transport for PipeEnd {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut wire = self.wire.borrow_mut();
        if wire.closed {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the wire was cut"));
        }
        // Up to 3 ms on the way; chunks stay in order (a TCP stream).
        let earliest = wire.now_us + wire.latency.borrow_mut().below(3_000);
        let toward = &mut wire.toward[1 - self.side];
        let arrives = toward.in_flight.back().map_or(0, |&(at, _)| at).max(earliest);
        toward.in_flight.push_back((arrives, bytes.to_vec()));
        Ok(bytes.len())
    }
    fn push(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        self.wire.borrow_mut().closed = true;
    }
}

struct SimNode {
    clock: ManualClock,
    replicator: Arc<Replicator>,
    node: Node,
    /// Shared with the client's record window ([`RECORD_WINDOW`]).
    links: Rc<RefCell<Links<PipeEnd>>>,
}

thread_local! {
    /// The link's turn run by the change observer of the node a client writes
    /// through, between the write becoming visible and its record: in the daemon
    /// the link runs on a thread of its own, and can read (and send, as the winner
    /// of a refusal) a client's write that the client has not recorded yet.
    static RECORD_WINDOW: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
    /// The node whose link code runs now, and the virtual time, for the log
    /// ([`log_by_node`]).
    static ACTING_NODE: std::cell::Cell<u16> = const { std::cell::Cell::new(0) };
    static VIRTUAL_MS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Logs each line with the virtual time and the node that wrote it
/// (`RUST_LOG=info` to see them): every node of a simulation logs from one thread.
fn log_by_node() {
    use std::io::Write;
    let _ = env_logger::builder()
        .is_test(true)
        .format(|out, record| writeln!(out, "{} ms, node {}: {}", VIRTUAL_MS.get(), ACTING_NODE.get(), record.args()))
        .try_init();
}

/// The link code of `replicator`'s node runs now.
fn acting(replicator: &Replicator) {
    ACTING_NODE.set(replicator.store.node_id());
}

/// Installs `replicator` as its store's change observer, as
/// [`Replicator::observe`] does, with the record window ([`RECORD_WINDOW`]) run
/// before each record.
fn observe(replicator: &Arc<Replicator>) -> bool {
    let weak = Arc::downgrade(replicator);
    let observer = move |change: crate::store::Change<'_>| {
        let Some(replicator) = weak.upgrade() else { return 0 };
        // A change recorded under its shard's lock (a claim) has no window: no
        // other thread reads the key before the record.
        let key = match change {
            crate::store::Change::Key(key)
            | crate::store::Change::Claim { key, .. }
            | crate::store::Change::Propose(crate::store::Proposal { key, .. }) => Some(key),
            crate::store::Change::Flush { .. } => None,
        };
        if !key.is_some_and(|key| replicator.store.key_locked(key))
            && let Some(window) = RECORD_WINDOW.with(|window| window.borrow_mut().take())
        {
            window();
        }
        replicator.record(change)
    };
    replicator.store.observe_changes(Box::new(observer), replicator.settings.tombstone_secs)
}

/// Lets link `key` handle what has arrived for it and it has not read yet.
fn read_pending(links: &mut Links<PipeEnd>, replicator: &Replicator, key: usize, now: Now) {
    acting(replicator);
    loop {
        let (outcome, handshake_done) = match links.get_mut(key) {
            Some(link) if !link.io.inbox.is_empty() => {
                let outcome = link.session.receive(replicator, &link.io.inbox, now.link).map(|used| {
                    link.io.inbox.drain(..used);
                });
                (outcome, link.session.just_ready)
            }
            _ => return,
        };
        links.after_read(key, outcome);
        // Reading stops after the handshake, until the link is kept or closed.
        if !handshake_done {
            return;
        }
    }
}

/// Where one node's lock holder stands, as a connection running `add` then
/// `delete` through the server moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Locker {
    Idle,
    /// Its `add` stored the lock as claim `seq`; the verdict decides. `judged`:
    /// every peer was on an acknowledging link, so each judges the claim (a peer
    /// that has not yet asked for the node's changes, or is still taking its full
    /// sync, does not: the node decides without it, by design).
    Claiming {
        seq: u64,
        generation: u64,
        judged: bool,
        /// The lock's CAS as its `add` answered it: its fencing token.
        token: u64,
    },
    /// It holds the lock, granted in `generation` of the links, until `until` (µs).
    Holding {
        generation: u64,
        until: u64,
    },
    /// Its `delete` is change `seq`; in ack mode the reply waits for the peer.
    Releasing(u64),
}

const LOCK: &[u8] = b"lock:session";

/// Where one node's counting client stands: it runs `ma counter N0` (an `incr`
/// that makes the key at 0 when it is missing), and runs it again when the node
/// reports its claim lost, as the server does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Counting {
    Idle,
    /// Its increment is change `seq`, made in `generation` of the links: a claim
    /// linked peers judge (`judged`), or not; `apart` when its node was not linked
    /// with every peer as it counted (the oracle's own reading, which decides
    /// that the increment must count once healed); `made` when it only made the key.
    Waiting {
        seq: u64,
        generation: u64,
        judged: bool,
        apart: bool,
        made: bool,
    },
}

const COUNTER: &[u8] = b"counter:hits";

/// Increments counted between two quiet moments (every node linked, idle and
/// agreeing): the counter's value at the first, the increments answered since,
/// linked or cut off, the values answered while every node stayed linked, and
/// whether a crash lost what its node had not yet passed on.
#[derive(Debug, Default)]
struct Tally {
    base: Option<u64>,
    won: u64,
    /// Claims granted because a link went down before their verdict: each counts
    /// unless a rival granted alike on the other side of the cut replaced it.
    unsure: u64,
    linked_answers: Vec<u64>,
    spoiled: bool,
}

/// One answered write in the oracle's log.
struct Logged {
    key: usize,
    history: u64,
    seq: u64,
    /// The version the write gave the key (last writer wins on versions).
    version: u64,
    /// What the key holds after it on its node: value, flags and expiry, or nothing.
    state: Option<(Vec<u8>, u32, u32)>,
}

/// What a run went through, so that the tests can show the faults happened.
#[derive(Debug, Default)]
struct Report {
    writes: u64,
    /// Locks granted, and those granted without the nodes linked throughout
    /// (allowed: a partition's grants are each side's alone).
    grants: u64,
    cut_off_grants: u64,
    cuts: u64,
    stalls: u64,
    partitions: u64,
    crashes: u64,
    warm_restarts: u64,
    /// Increments answered (linked or cut off), those answered while every node
    /// stayed linked, those that counted twice, and the values two increments
    /// answered while linked were both answered.
    increments: u64,
    linked_increments: u64,
    counted_twice: u64,
    answered_twice: u64,
    clock_steps: u64,
    full_syncs: u64,
    partial_syncs: u64,
}

impl Report {
    fn add(&mut self, other: &Report) {
        self.writes += other.writes;
        self.grants += other.grants;
        self.cut_off_grants += other.cut_off_grants;
        self.cuts += other.cuts;
        self.stalls += other.stalls;
        self.partitions += other.partitions;
        self.crashes += other.crashes;
        self.warm_restarts += other.warm_restarts;
        self.increments += other.increments;
        self.linked_increments += other.linked_increments;
        self.counted_twice += other.counted_twice;
        self.answered_twice += other.answered_twice;
        self.clock_steps += other.clock_steps;
        self.full_syncs += other.full_syncs;
        self.partial_syncs += other.partial_syncs;
    }
}

struct Simulation {
    seed: u64,
    report: Report,
    rng: Rng,
    lockers: Vec<Locker>,
    counters: Vec<Counting>,
    /// The value each counting client's last run was answered.
    answers: Vec<u64>,
    tally: Tally,
    /// A grant was not decided by linked nodes (no acknowledging link was up at
    /// the `add`, or a link went down before its verdict): two holders may each
    /// delete the lock as their own, and a delete can remove the other's later
    /// grant (`delete` does not know who holds a lock). Exclusion is checked again
    /// once every locker is idle and every node's changes, its deletes among them,
    /// have reached the others.
    lock_split: bool,
    /// The token of the last lock granted.
    last_token: u64,
    latency: Rc<RefCell<Rng>>,
    mode: SyncMode,
    now_us: u64,
    nodes: Vec<SimNode>,
    histories: u64,
    wires: Vec<Rc<RefCell<Wire>>>,
    /// Nodes a partition holds apart: no wire between them until it heals.
    apart: Vec<bool>,
    log: Vec<Logged>,
    /// A crashed run and what the others had applied of it: its writes past that
    /// are lost.
    crashed: Vec<(u64, u64)>,
}

fn key(index: usize) -> Vec<u8> {
    format!("session:{index}").into_bytes()
}

fn address(node: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, node as u8 + 1], 11212))
}

impl Simulation {
    fn new(seed: u64, mode: SyncMode, nodes: usize) -> Simulation {
        let mut rng = Rng(seed);
        let latency = Rc::new(RefCell::new(Rng(rng.next())));
        let mut sim = Simulation {
            seed,
            report: Report::default(),
            rng,
            lockers: vec![Locker::Idle; nodes],
            counters: vec![Counting::Idle; nodes],
            answers: vec![0; nodes],
            tally: Tally::default(),
            lock_split: false,
            last_token: 0,
            latency,
            mode,
            now_us: 0,
            nodes: Vec::new(),
            histories: 0,
            wires: Vec::new(),
            apart: vec![false; nodes],
            log: Vec::new(),
            crashed: Vec::new(),
        };
        for index in 0..nodes {
            let node = sim.boot(index, ManualClock::new(START_MS));
            sim.nodes.push(node);
        }
        sim
    }

    /// A node's new run: an empty store and a new history.
    fn boot(&mut self, index: usize, clock: ManualClock) -> SimNode {
        self.boot_from(index, clock, None)
    }

    /// Boots node `index`, empty, or from a warm restart file as the daemon does:
    /// the items and tombstones loaded before replication starts, then its run
    /// resumed where the file says.
    fn boot_from(&mut self, index: usize, clock: ManualClock, warm: Option<&std::path::Path>) -> SimNode {
        self.histories += 1;
        let id = index as u16 + 1;
        let config = StoreConfig {
            node_id: id,
            memory_limit: MEMORY_LIMIT,
            hash_seed: Some(self.seed ^ self.histories),
            ..StoreConfig::default()
        };
        let store = Arc::new(Store::new(config, Clock::Manual(clock.clone())));
        let resumed = warm.map(|path| {
            let report = crate::server::operations::warm::load(&store, path).expect("a file").expect("usable");
            std::fs::remove_file(path).ok();
            report.replication.expect("a replication position")
        });
        // A full mesh: each node dials every other.
        let peers = (0..self.apart.len()).filter(|&other| other != index).map(|other| address(other).to_string());
        let peers: Vec<String> = peers.collect();
        let settings = Settings {
            claims: None,
            peers,
            listen: None,
            identity: Identity::new(id, b"sim", b"0123456789abcdef"),
            backlog: 1 << 20,
            timeout: Duration::from_secs(3),
            heartbeat: Duration::from_millis(500),
            mode: self.mode,
            tombstone_secs: 3600,
            tls: None,
        };
        let history = resumed.as_ref().map_or(self.histories, |position| position.history);
        let replicator = Arc::new(Replicator::new(Arc::clone(&store), settings, history));
        if let Some(position) = &resumed {
            replicator.resume(position.last_seq, &position.progress);
        }
        assert!(observe(&replicator));
        let node = Node::new(store);
        assert!(node.replicate(Arc::clone(&replicator)));
        let links = Rc::new(RefCell::new(Links::new(Arc::clone(&replicator))));
        SimNode { clock, replicator, node, links }
    }

    fn now(&self, node: usize) -> Now {
        let wall_ms = self.nodes[node].clock.now_ms();
        Now { link: LinkTime { wall_ms, mono_ms: self.now_us / 1000 }, micros: self.now_us }
    }

    /// One virtual millisecond: clocks, a client's write now and then, faults now
    /// and then (while `faulty`), deliveries and every node's link decisions.
    fn step(&mut self, faulty: bool) {
        self.now_us += 1000;
        VIRTUAL_MS.set(self.now_us / 1000);
        for node in &self.nodes {
            node.clock.advance_ms(1);
        }
        if faulty && self.rng.chance(300) {
            self.client_write();
        }
        if faulty {
            self.fault();
            if self.rng.chance(200) {
                let index = self.rng.below(self.nodes.len() as u64) as usize;
                self.lock_step(index);
            }
            if self.rng.chance(200) {
                let index = self.rng.below(self.nodes.len() as u64) as usize;
                self.count_step(index);
            }
        }
        self.deliver();
        for index in 0..self.nodes.len() {
            self.service(index);
        }
    }

    fn client_write(&mut self) {
        let index = self.rng.below(self.nodes.len() as u64) as usize;
        let k = self.rng.below(KEYS as u64) as usize;
        let name = key(k);
        let node = &self.nodes[index];
        let before = node.replicator.last_seq();
        let state = match self.rng.below(10) {
            0..=5 => {
                let value = self.rng.next().to_le_bytes();
                let flags = self.rng.below(3) as u32;
                // TTLs of none, 1 and 2 seconds, so that some expire on the way.
                let exptime = self.rng.below(3) as i32;
                let req = StoreRequest { flags, exptime, ..StoreRequest::new(StoreMode::Set, &name, &value) };
                let outcome = node.node.store_item(&req).outcome;
                assert!(matches!(outcome, StoreOutcome::Stored { .. }), "seed {}: a set is stored", self.seed);
                let now = node.clock.now_ms() / 1000;
                Some((value.to_vec(), flags, crate::store::expiry::deadline(exptime, now as u32)))
            }
            6..=8 => {
                let _ = node.node.delete(&DeleteRequest { key: &name, ..Default::default() });
                None
            }
            _ => {
                // A set refused as too large: the old value must not stay.
                let _ = node.node.refuse_store(&name, true);
                None
            }
        };
        let seq = node.replicator.last_seq();
        assert!(seq > before, "seed {}: every write is recorded", self.seed);
        let version = node.replicator.store.key_state(&name, |change| change.version).unwrap_or(0);
        self.log.push(Logged { key: k, history: node.replicator.history, seq, version, state });
        self.report.writes += 1;
    }

    /// Which links have come up so far: a grant decided by both nodes was made
    /// and checked within one generation, with every link up.
    fn generation(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        let peers = self.nodes.iter().flat_map(|node| node.replicator.known_peers());
        let ups = peers.map(|peer| peer.stats.links.load(Relaxed)).sum::<u64>();
        // A restarted node's links count from 0 again: restarts keep it rising.
        ups + ((self.report.crashes + self.report.warm_restarts) << 32)
    }

    /// Every link up and past its resume (each side has asked for the other's
    /// changes, so an acknowledgement counts for the run linked now, not one that
    /// restarted), every node synced, and everything recorded acknowledged.
    fn quiet(&self) -> bool {
        self.all_linked()
            && self.nodes.iter().all(|node| {
                let replicator = &node.replicator;
                replicator.known_peers().iter().all(|peer| peer.is_acking())
                    && replicator.wait_synced(Duration::ZERO)
                    && replicator.acked() >= replicator.last_seq()
            })
    }

    fn all_linked(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.nodes.iter().all(|node| node.replicator.stats.state.load(Relaxed) == super::replicator::LINK_UP)
    }

    /// Whether node `index` serves clients: not while it is still taking its
    /// first sync from a linked peer, as the daemon waits for it before it
    /// listens (`--repl-wait-sync`); with every peer out of reach it serves.
    fn serves(&self, index: usize) -> bool {
        let replicator = &self.nodes[index].replicator;
        !replicator.is_acking() || replicator.wait_synced(Duration::ZERO)
    }

    /// Moves node `index`'s locker one step, as its connection would, while the
    /// node serves; with its peers out of reach it decides its claims alone.
    fn lock_step(&mut self, index: usize) {
        if !self.serves(index) {
            return;
        }
        if matches!(self.lockers[index], Locker::Idle | Locker::Holding { .. }) {
            self.open_record_window();
        }
        let node = &self.nodes[index];
        let replicator = &node.replicator;
        // A wait for the node's vote on the key is no change: nothing to acknowledge.
        let answered =
            |seq| replicator.settings.mode == SyncMode::Async || seq >= FIRST_WAIT || replicator.acknowledged(seq);
        let generation = self.generation();
        self.lockers[index] = match self.lockers[index] {
            Locker::Idle => {
                let add = StoreRequest { exptime: 30, ..StoreRequest::new(StoreMode::Add, LOCK, b"me") };
                let written = node.node.store_item(&add);
                match written.outcome {
                    StoreOutcome::Stored { cas: token, .. } => {
                        let judged = replicator.linked_with_all();
                        Locker::Claiming { seq: written.receipt.claim, generation, judged, token }
                    }
                    _ => Locker::Idle,
                }
            }
            Locker::Claiming { seq, generation: made_in, judged, token } if answered(seq) => {
                match replicator.take_claim_verdict(seq) {
                    Some(true) => {
                        self.report.grants += 1;
                        // Under claims by majority every grant is ordered after the
                        // last one, and its token is larger: a fencing token.
                        if replicator.proposes() {
                            assert!(
                                token > self.last_token,
                                "seed {}: a grant's token {token} is not above the last one's, {}",
                                self.seed,
                                self.last_token
                            );
                            self.last_token = token;
                        }
                        // A grant not decided by linked nodes may leave the lock's
                        // item to the other node's write: the lock is split.
                        if !judged || made_in != generation || !self.all_linked() {
                            self.lock_split = true;
                            self.report.cut_off_grants += 1;
                        }
                        let until = self.now_us + self.rng.below(20_000);
                        Locker::Holding { generation: made_in, until }
                    }
                    // Refused: the connection runs its `add` again, which finds the
                    // winner's lock.
                    Some(false) => Locker::Idle,
                    None => self.lockers[index],
                }
            }
            Locker::Holding { until, .. } if self.now_us >= until => {
                let written = node.node.delete(&DeleteRequest { key: LOCK, ..Default::default() });
                Locker::Releasing(written.receipt.recorded)
            }
            Locker::Releasing(seq) if answered(seq) => Locker::Idle,
            waiting => waiting,
        };
        Self::close_record_window();
        self.check_lock();
    }

    /// Moves node `index`'s counting client one step (as [`Simulation::lock_step`]).
    fn count_step(&mut self, index: usize) {
        if !self.serves(index) {
            return;
        }
        if self.counters[index] == Counting::Idle {
            self.open_record_window();
        }
        let node = &self.nodes[index];
        let replicator = &node.replicator;
        // A wait for the node's vote on the key is no change: nothing to acknowledge.
        let answered =
            |seq| replicator.settings.mode == SyncMode::Async || seq >= FIRST_WAIT || replicator.acknowledged(seq);
        let generation = self.generation();
        self.counters[index] = match self.counters[index] {
            Counting::Idle => {
                let incr =
                    crate::store::DeltaRequest { vivify: Some(0), ..crate::store::DeltaRequest::new(COUNTER, true, 1) };
                let apart = replicator.counts_apart();
                let written = node.node.arithmetic(&incr, |_, _, _| {});
                let receipt = written.receipt;
                let judged = receipt.claim != 0;
                let seq = if judged { receipt.claim } else { receipt.recorded };
                match written.outcome {
                    crate::store::DeltaOutcome::Value(value) => {
                        self.answers[index] = value;
                        Counting::Waiting { seq, generation, judged, apart, made: false }
                    }
                    crate::store::DeltaOutcome::Created(_) => {
                        Counting::Waiting { seq, generation, judged, apart, made: true }
                    }
                    _ => Counting::Idle,
                }
            }
            Counting::Waiting { seq, judged: false, made, .. } if answered(seq) => {
                // No claim: it adds to the others' counts once they meet.
                if !made {
                    self.tally.won += 1;
                }
                Counting::Idle
            }
            Counting::Waiting { seq, generation: made_in, judged: true, apart, made } if answered(seq) => {
                match replicator.take_claim_verdict(seq) {
                    // Answered by a node short of a peer: it must count once healed.
                    Some(true) if apart => {
                        self.tally.won += u64::from(!made);
                        Counting::Idle
                    }
                    Some(true) => {
                        // The node's own view first: it may have seen the link go
                        // (a write that failed) before the harness counts the cut.
                        if made_in != generation || !self.all_linked() || !replicator.linked_with_all() {
                            // Granted because a link went down before its verdict:
                            // a rival granted alike on the other side may replace it.
                            self.tally.unsure += u64::from(!made);
                        } else if !made {
                            self.tally.won += 1;
                            self.tally.linked_answers.push(self.answers[index]);
                        }
                        Counting::Idle
                    }
                    // Lost: the client's increment runs again on the winner's value.
                    Some(false) => Counting::Idle,
                    None => self.counters[index],
                }
            }
            waiting => waiting,
        };
        Self::close_record_window();
        self.check_count();
    }

    /// Once every node is linked, quiet and idle, the counter holds the same value
    /// everywhere, and it went up by exactly the increments answered since the
    /// last such moment, on linked nodes or cut-off ones: none lost, none counted
    /// twice (only a crash may lose what its node had not passed on). And no two
    /// increments answered while every node stayed linked got one value.
    fn check_count(&mut self) {
        let quiet = self.quiet();
        if !quiet || self.counters.iter().any(|counting| *counting != Counting::Idle) {
            return;
        }
        let read = |node: &SimNode| {
            visible(&node.node, COUNTER).and_then(|(value, _)| std::str::from_utf8(&value).ok()?.parse::<u64>().ok())
        };
        let values: Vec<Option<u64>> = self.nodes.iter().map(read).collect();
        assert!(
            values.windows(2).all(|pair| pair[0] == pair[1]),
            "seed {}: the counter differs: {values:?}",
            self.seed
        );
        if let (Some(base), false) = (self.tally.base, self.tally.spoiled) {
            let (seed, won, value) = (self.seed, self.tally.won, values[0].unwrap_or(0));
            let unsure = self.tally.unsure;
            let (least, most) = (base + won, base + won + unsure);
            assert!(
                value >= least,
                "seed {seed}: {won} increments answered (and {unsure} unsure) from {base}, {value} counted"
            );
            // With three nodes or more, a claim reported lost can still have been
            // built on by a third node before the race was decided: its client
            // runs it again, and it counts twice (a known defect, gone once
            // claims are invisible until granted). A pair never does.
            assert!(
                value <= most || self.nodes.len() > 2,
                "seed {seed}: {won} increments answered (and {unsure} unsure) from {base}, {value} counted"
            );
            self.report.counted_twice += value.saturating_sub(most);
            self.report.increments += won;
            let answers = &mut self.tally.linked_answers;
            self.report.linked_increments += answers.len() as u64;
            answers.sort_unstable();
            let twice = answers.windows(2).filter(|pair| pair[0] == pair[1]).count() as u64;
            assert!(
                twice == 0 || self.nodes.len() > 2,
                "seed {seed}: increments answered while linked got one value twice: {answers:?}"
            );
            self.report.answered_twice += twice;
        }
        self.tally = Tally { base: values[0], ..Tally::default() };
    }

    /// Two holders at once are allowed only when their grants were not decided by
    /// linked nodes (a link went down, or a node crashed, since one of the `add`s),
    /// or while the lock is still split by such a grant.
    fn check_lock(&mut self) {
        let quiet = self.quiet();
        if self.lock_split && quiet && self.lockers.iter().all(|locker| *locker == Locker::Idle) {
            self.lock_split = false;
        }
        let holders: Vec<u64> = (self.lockers.iter())
            .filter_map(|locker| match *locker {
                Locker::Holding { generation, .. } => Some(generation),
                _ => None,
            })
            .collect();
        if holders.len() < 2 {
            return;
        }
        // Under claims by majority, no fault lets two clients hold the lock at once.
        let majority = self.nodes.iter().all(|node| node.replicator.proposes());
        assert!(
            !majority,
            "seed {}: two nodes granted the lock under claims by majority: {:?}",
            self.seed, self.lockers
        );
        let linked_throughout = self.all_linked() && holders.iter().all(|&made_in| made_in == self.generation());
        assert!(
            !linked_throughout || self.lock_split,
            "seed {}: two linked nodes both granted the lock: {:?}",
            self.seed,
            self.lockers
        );
    }

    fn fault(&mut self) {
        match self.rng.below(4000) {
            // Cut a connection: what is in flight is lost.
            0..=3 => {
                if let Some(wire) = self.pick_wire() {
                    wire.borrow_mut().closed = true;
                    self.report.cuts += 1;
                }
            }
            // Stall one direction for up to 5 s: the heartbeat declares the peer down.
            4..=5 => {
                let until = self.now_us + self.rng.below(5_000_000);
                if let Some(wire) = self.pick_wire() {
                    let side = self.rng.below(2) as usize;
                    wire.borrow_mut().toward[side].stalled_until = until;
                    self.report.stalls += 1;
                }
            }
            // Partition one node away, or heal.
            6 => {
                let index = self.rng.below(self.nodes.len() as u64) as usize;
                self.apart[index] = !self.apart[index];
                if self.apart[index] {
                    self.cut_node(index);
                    self.report.partitions += 1;
                }
            }
            // A node crashes and comes back empty, if the others hold a full copy
            // (two nodes that both lose what they held lose it for good).
            7 => {
                let index = self.rng.below(self.nodes.len() as u64) as usize;
                let others_synced = (0..self.nodes.len())
                    .filter(|&other| other != index)
                    .all(|other| self.nodes[other].replicator.wait_synced(Duration::ZERO));
                if others_synced {
                    self.crash(index);
                    self.report.crashes += 1;
                }
            }
            // A node stops gracefully and starts again from its warm restart file:
            // nothing it answered is lost, and its links resume where they were.
            9 => {
                let index = self.rng.below(self.nodes.len() as u64) as usize;
                self.warm_restart(index);
                self.report.warm_restarts += 1;
            }
            // A node's wall clock steps by up to 2 s either way.
            8 => {
                let index = self.rng.below(self.nodes.len() as u64) as usize;
                let step = self.rng.below(2000);
                let clock = &self.nodes[index].clock;
                self.report.clock_steps += 1;
                if self.rng.below(2) == 0 {
                    clock.advance_ms(step);
                } else {
                    clock.set_ms(clock.now_ms().saturating_sub(step));
                }
            }
            _ => {}
        }
    }

    fn pick_wire(&mut self) -> Option<Rc<RefCell<Wire>>> {
        self.wires.retain(|wire| !wire.borrow().closed);
        if self.wires.is_empty() {
            return None;
        }
        let index = self.rng.below(self.wires.len() as u64) as usize;
        Some(Rc::clone(&self.wires[index]))
    }

    fn cut_node(&mut self, index: usize) {
        for wire in &self.wires {
            let mut wire = wire.borrow_mut();
            if wire.nodes.contains(&index) {
                wire.closed = true;
            }
        }
    }

    /// Stops node `index` as `SIGTERM` does with `-e`: its links close, its items,
    /// tombstones and position go to a file, and it starts again from it.
    fn warm_restart(&mut self, index: usize) {
        self.count_syncs(index);
        self.cut_node(index);
        let replicator = &self.nodes[index].replicator;
        let (history, last_seq, progress) = replicator.position();
        let position = crate::server::operations::warm::ReplicationPosition { history, last_seq, progress };
        let path = std::env::temp_dir().join(format!("stickless-sim-{}-{}-{index}", std::process::id(), self.seed));
        crate::server::operations::warm::save(&replicator.store, Some(position), &path).expect("save");
        let clock = self.nodes[index].clock.clone();
        clock.advance_ms(1);
        self.nodes[index] = self.boot_from(index, clock, Some(&path));
        self.lockers[index] = Locker::Idle;
        // An increment counted apart is in the file: it counts, unanswered. One
        // waiting for its verdict may still lose.
        match self.counters[index] {
            Counting::Waiting { judged: false, made: false, .. } => self.tally.won += 1,
            Counting::Waiting { judged: true, made: false, .. } => self.tally.unsure += 1,
            _ => {}
        }
        self.counters[index] = Counting::Idle;
    }

    fn crash(&mut self, index: usize) {
        let history = self.nodes[index].replicator.history;
        let applied = (0..self.nodes.len())
            .filter(|&other| other != index)
            .flat_map(|other| self.nodes[other].replicator.known_peers().iter().map(|peer| *peer.progress()))
            .filter(|progress| progress.history == history)
            .map(|progress| progress.applied)
            .max()
            .unwrap_or(0);
        self.crashed.push((history, applied));
        self.count_syncs(index);
        self.cut_node(index);
        // A restart takes time: versions stay unique across runs because the
        // physical clock has moved on (the hybrid clock's assumption).
        let clock = self.nodes[index].clock.clone();
        clock.advance_ms(1);
        self.nodes[index] = self.boot(index, clock);
        // Its clients' connections died with it.
        self.lockers[index] = Locker::Idle;
        self.counters[index] = Counting::Idle;
        self.tally.spoiled = true;
    }

    /// Adds a node's syncs to the report (before its run ends).
    fn count_syncs(&mut self, index: usize) {
        for peer in self.nodes[index].replicator.known_peers() {
            self.report.full_syncs += peer.stats.full_syncs.load(std::sync::atomic::Ordering::Relaxed);
            self.report.partial_syncs += peer.stats.partial_syncs.load(std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Moves what has arrived, in order, and ends connections that were closed.
    fn deliver(&mut self) {
        let wires = self.wires.clone();
        for wire in wires {
            wire.borrow_mut().now_us = self.now_us;
            for side in 0..2 {
                loop {
                    let chunk = {
                        let mut wire = wire.borrow_mut();
                        let toward = &mut wire.toward[side];
                        match toward.in_flight.front() {
                            Some(&(at, _)) if at <= self.now_us && toward.stalled_until <= self.now_us => {
                                toward.in_flight.pop_front().map(|(_, bytes)| bytes)
                            }
                            _ => None,
                        }
                    };
                    let Some(chunk) = chunk else { break };
                    let (node, key) = {
                        let wire = wire.borrow();
                        (wire.nodes[side], wire.keys[side])
                    };
                    let Some(key) = key else { break };
                    let now = self.now(node);
                    // Mostly read at once; now and then the link's thread is late,
                    // and a client's write may run first ([`RECORD_WINDOW`]).
                    let late = self.rng.chance(200);
                    let sim_node = &self.nodes[node];
                    let mut links = sim_node.links.borrow_mut();
                    if let Some(link) = links.get_mut(key) {
                        link.io.inbox.extend_from_slice(&chunk);
                    }
                    if !late {
                        read_pending(&mut links, &sim_node.replicator, key, now);
                    }
                }
            }
            // A closed wire: each end still held hears the close, after what had
            // arrived by now (a cut loses what was still on the way; a close by
            // one end is the peer's EOF).
            let (closed, nodes, keys) = {
                let wire = wire.borrow();
                (wire.closed, wire.nodes, wire.keys)
            };
            if closed {
                for side in 0..2 {
                    if let Some(key) = keys[side] {
                        let now = self.now(nodes[side]);
                        let sim_node = &self.nodes[nodes[side]];
                        let mut links = sim_node.links.borrow_mut();
                        if links.get_mut(key).is_some_and(|link| Rc::ptr_eq(&link.io.wire, &wire)) {
                            read_pending(&mut links, &sim_node.replicator, key, now);
                            if links.get_mut(key).is_some() {
                                links.close(key, "the wire closed");
                            }
                        }
                    }
                }
            }
        }
        self.wires.retain(|wire| !wire.borrow().closed);
    }

    /// A node's turn of link decisions, and its dial when one is due.
    fn service(&mut self, index: usize) {
        let now = self.now(index);
        let links = Rc::clone(&self.nodes[index].links);
        acting(&self.nodes[index].replicator);
        let mut keys = Vec::new();
        links.borrow().keys_into(&mut keys);
        for key in keys {
            // A late link's thread reads what it left within a few turns.
            if self.rng.chance(500) {
                read_pending(&mut links.borrow_mut(), &self.nodes[index].replicator, key, now);
            }
        }
        links.borrow_mut().service(now);
        loop {
            let Some(dialer) = links.borrow_mut().dial_due(now) else { break };
            self.dial(index, dialer);
        }
        links.borrow().publish_state();
    }

    /// Opens the record window ([`RECORD_WINDOW`]) for the next client write, now
    /// and then: the writing thread is descheduled between its
    /// write and its record, for up to a few round trips, while every node's link
    /// runs (the writer's reads what has arrived and sends what it has, its
    /// refusals among them, which may name the unrecorded write as the winner).
    fn open_record_window(&mut self) {
        if !self.rng.chance(300) {
            return;
        }
        let round_trips = 1 + self.rng.below(4);
        let wires = self.wires.clone();
        let nodes: Vec<_> = (0..self.nodes.len())
            .map(|at| (Rc::clone(&self.nodes[at].links), Arc::clone(&self.nodes[at].replicator), self.now(at)))
            .collect();
        let window = move || {
            for _ in 0..2 * round_trips {
                for wire in &wires {
                    for side in 0..2 {
                        let (node, key, chunks) = {
                            let mut wire = wire.borrow_mut();
                            let (node, key, closed) = (wire.nodes[side], wire.keys[side], wire.closed);
                            let toward = &mut wire.toward[side];
                            // Everything on the way arrives, but not through a stall.
                            let stalled = toward.stalled_until > nodes[node].2.micros;
                            let chunks: Vec<Vec<u8>> = match stalled || closed {
                                true => Vec::new(),
                                false => toward.in_flight.drain(..).map(|(_, bytes)| bytes).collect(),
                            };
                            (node, key, chunks)
                        };
                        let (Some(key), false) = (key, chunks.is_empty()) else { continue };
                        let (links, replicator, now) = &nodes[node];
                        let mut links = links.borrow_mut();
                        if let Some(link) = links.get_mut(key) {
                            chunks.iter().for_each(|chunk| link.io.inbox.extend_from_slice(chunk));
                        }
                        read_pending(&mut links, replicator, key, *now);
                    }
                }
                for (links, replicator, now) in &nodes {
                    let mut links = links.borrow_mut();
                    let mut keys = Vec::new();
                    links.keys_into(&mut keys);
                    for key in keys {
                        read_pending(&mut links, replicator, key, *now);
                    }
                    acting(replicator);
                    links.service(*now);
                }
            }
        };
        RECORD_WINDOW.with(|slot| *slot.borrow_mut() = Some(Box::new(window)));
    }

    /// Closes the record window if the write recorded nothing.
    fn close_record_window() {
        RECORD_WINDOW.with(|slot| slot.borrow_mut().take());
    }

    /// Node `from` dials its peer number `dialer` (the others, in order).
    fn dial(&mut self, from: usize, dialer: usize) {
        let to = (0..self.nodes.len()).filter(|&other| other != from).nth(dialer).expect("a listed peer");
        if self.apart[from] || self.apart[to] {
            // The dial fails; the next is scheduled.
            return;
        }
        let wire = Rc::new(RefCell::new(Wire {
            nodes: [from, to],
            keys: [None, None],
            toward: [Direction::default(), Direction::default()],
            closed: false,
            now_us: self.now_us,
            latency: Rc::clone(&self.latency),
        }));
        for side in 0..2 {
            let index = wire.borrow().nodes[side];
            let now = self.now(index);
            let end = PipeEnd { wire: Rc::clone(&wire), side, inbox: Vec::new() };
            let dialed = (side == 0).then_some(dialer);
            acting(&self.nodes[index].replicator);
            let key =
                self.nodes[index].links.borrow_mut().adopt(end, address(wire.borrow().nodes[1 - side]), dialed, now);
            wire.borrow_mut().keys[side] = key;
        }
        self.wires.push(wire);
    }

    /// Ends the faults and the writes: partitions heal, stalls end, and the nodes
    /// run until every link is up and has been quiet for a while.
    fn heal(&mut self) {
        self.apart.iter_mut().for_each(|apart| *apart = false);
        for wire in &self.wires {
            for toward in &mut wire.borrow_mut().toward {
                toward.stalled_until = 0;
            }
        }
        // Long enough for a heartbeat timeout, a dial backoff and a full sync.
        for _ in 0..20_000 {
            self.step(false);
        }
    }

    /// Checks the oracle on the healed network, once every item given a TTL has
    /// expired on every node: each node corrects a peer's deadlines by the clock
    /// skew it measures, so under clock steps the nodes' deadlines for one item
    /// differ by up to the skew (which deadline wins is for the merge rules).
    fn check(&mut self) {
        let seed = self.seed;
        for node in &self.nodes {
            node.clock.advance_secs(60);
        }
        for _ in 0..100 {
            self.step(false);
        }
        for node in &self.nodes {
            let stats = node.node.view().stats();
            assert!(stats.memory_used <= stats.memory_limit, "seed {seed}: {} bytes over the limit", stats.memory_used);
        }
        let lost = |entry: &Logged| {
            self.crashed.iter().any(|&(history, applied)| history == entry.history && entry.seq > applied)
        };
        let visible_state = |entry: &Logged| {
            entry.state.clone().and_then(|(value, flags, expires_at)| (expires_at == 0).then_some((value, flags)))
        };
        for k in 0..KEYS {
            let seen: Vec<_> = self.nodes.iter().map(|node| visible(&node.node, &key(k))).collect();
            let same = seen.windows(2).all(|pair| pair[0] == pair[1]);
            assert!(same, "seed {seed}: key {k} diverged: {seen:?}; its last writes:\n{}", self.last_writes(k));
            // What the key may hold: the state of the last write that survived, or
            // of an earlier one with a newer version (concurrent writes, or a clock
            // ahead: the last writer wins on versions), or of one that a crashed node
            // answered and may have lost. Never an older state: that is a delete
            // undone or a value brought back.
            let writes: Vec<&Logged> = self.log.iter().filter(|entry| entry.key == k).collect();
            let last = writes.iter().rev().find(|entry| !lost(entry));
            let floor = last.map_or(0, |entry| entry.version);
            let mut allowed = vec![last.and_then(|entry| visible_state(entry))];
            allowed.extend(
                writes.iter().filter(|entry| entry.version > floor || lost(entry)).map(|entry| visible_state(entry)),
            );
            assert!(
                allowed.contains(&seen[0]),
                "seed {seed}: key {k} holds {:?}, the oracle allows {allowed:?}; its last writes:\n{}",
                seen[0],
                self.last_writes(k)
            );
        }
    }
}

impl Simulation {
    /// A key's last writes and each node's state of it, for a failure's message.
    fn last_writes(&self, k: usize) -> String {
        let mut lines: Vec<String> = (self.log.iter().filter(|entry| entry.key == k).rev().take(8))
            .map(|entry| {
                let state = entry.state.as_ref().map(|(value, flags, expires_at)| (value[0], *flags, *expires_at));
                format!("  run {} change {} version {:x}: {state:?}", entry.history, entry.seq, entry.version)
            })
            .collect();
        lines.reverse();
        for node in &self.nodes {
            let state =
                node.replicator.store.key_state(&key(k), |change| format!("{:x} {:?}", change.version, change.state));
            lines.push(format!("  node of run {} holds {state:?}", node.replicator.history));
        }
        lines.push(format!("  crashed runs and what the others had applied of them: {:?}", self.crashed));
        lines.join("\n")
    }
}

/// What a client sees of a key: value and flags.
fn visible(node: &Node, key: &[u8]) -> Option<(Vec<u8>, u32)> {
    let mut seen = None;
    let _ = node.get(key, None, |item| seen = Some((item.value().to_vec(), item.flags())));
    seen
}

/// Runs one seed: faults for `steps` virtual milliseconds, then heals and checks.
fn run(seed: u64, mode: SyncMode, nodes: usize, steps: u64) -> Report {
    simulate(seed, mode, nodes, steps).report
}

fn simulate(seed: u64, mode: SyncMode, nodes: usize, steps: u64) -> Simulation {
    let mut sim = Simulation::new(seed, mode, nodes);
    for _ in 0..steps {
        sim.step(true);
    }
    sim.heal();
    sim.check();
    for index in 0..sim.nodes.len() {
        sim.count_syncs(index);
    }
    sim
}

/// A seed is a run: the same seed twice goes through the same faults and writes,
/// with the same syncs, to the same versions of every key on every node.
#[test]
fn a_seed_repeats_its_run() {
    let fingerprint = |sim: &Simulation| {
        let versions: Vec<Vec<Option<u64>>> = (sim.nodes.iter())
            .map(|node| (0..KEYS).map(|k| node.replicator.store.key_state(&key(k), |c| c.version)).collect())
            .collect();
        format!("{:?} {versions:?} {:?}", sim.report, sim.lockers)
    };
    for (seed, mode, nodes) in [(7, SyncMode::Async, 2), (8, SyncMode::Ack, 3)] {
        let (first, again) = (simulate(seed, mode, nodes, 3_000), simulate(seed, mode, nodes, 3_000));
        assert_eq!(fingerprint(&first), fingerprint(&again), "seed {seed}");
    }
}

/// The seeds to run: `STICKLESS_SIM_FIRST_SEED` and `STICKLESS_SIM_SEEDS` (for
/// `scripts/simulate`), or the fixed ones CI runs.
fn seeds() -> std::ops::Range<u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    let first = var("STICKLESS_SIM_FIRST_SEED").unwrap_or(1);
    first..first + var("STICKLESS_SIM_SEEDS").unwrap_or(100)
}

/// Runs every seed in `mode` with `nodes` nodes and checks that the faults
/// happened. Each mode and size has its own seeds (offset), so that they see
/// different runs.
fn campaign(mode: SyncMode, nodes: usize) {
    log_by_node();
    let offset = (if mode == SyncMode::Ack { 1 << 32 } else { 0 }) + ((nodes as u64 - 2) << 40);
    let mut total = Report::default();
    // Five nodes cost twice what three do per seed: every fourth seed, so that CI's
    // whole campaign stays within a minute.
    let every = if nodes > 3 { 4 } else { 1 };
    for seed in seeds().step_by(every) {
        total.add(&run(seed + offset, mode, nodes, 10_000));
    }
    eprintln!("simulator, {mode:?}, {nodes} nodes, every {every} of seeds {:?}: {total:?}", seeds());
    if seeds().step_by(every).count() >= 25 {
        let happened = [
            total.grants,
            total.cuts,
            total.stalls,
            total.partitions,
            total.crashes,
            total.warm_restarts,
            // Five nodes are rarely all linked and quiet at once: a stretch of
            // counted increments is not sure to end within CI's seeds.
            if nodes > 3 { 1 } else { total.increments },
            total.clock_steps,
            total.full_syncs,
            total.partial_syncs,
        ];
        assert!(happened.iter().all(|&n| n > 0), "some fault never happened: {total:?}");
    }
}

#[test]
fn a_pair_converges_from_every_seed_async() {
    campaign(SyncMode::Async, 2);
}

#[test]
fn a_pair_converges_from_every_seed_ack() {
    campaign(SyncMode::Ack, 2);
}

#[test]
fn three_nodes_converge_from_every_seed_async() {
    campaign(SyncMode::Async, 3);
}

#[test]
fn three_nodes_converge_from_every_seed_ack() {
    campaign(SyncMode::Ack, 3);
}

#[test]
fn five_nodes_converge_from_every_seed_async() {
    campaign(SyncMode::Async, 5);
}

#[test]
fn five_nodes_converge_from_every_seed_ack() {
    campaign(SyncMode::Ack, 5);
}

/// What a node passes on is not sent back over the link it came from, to the run
/// that sent it: writes on one node of three reach each other node twice
/// (directly, and passed on by the third), and here, where every write reaches both
/// directly first, none comes back to the writer. (One that reaches a node through
/// the third first is passed back to its writer, which finds it older.)
#[test]
fn a_change_passed_on_never_returns_to_its_run() {
    use std::sync::atomic::Ordering::Relaxed;
    let mut sim = Simulation::new(11, SyncMode::Async, 3);
    sim.heal();
    for k in 0..KEYS {
        let value = [k as u8; 8];
        let outcome = sim.nodes[0].node.store_item(&StoreRequest::new(StoreMode::Set, &key(k), &value)).outcome;
        assert!(matches!(outcome, StoreOutcome::Stored { .. }));
    }
    for _ in 0..1000 {
        sim.step(false);
    }
    let received = |node: &SimNode| {
        let peers = node.replicator.known_peers();
        peers
            .iter()
            .map(|peer| peer.stats.changes_applied.load(Relaxed) + peer.stats.conflicts.load(Relaxed))
            .sum::<u64>()
    };
    assert_eq!(received(&sim.nodes[0]), 0, "nothing came back to the writer");
    assert_eq!((received(&sim.nodes[1]), received(&sim.nodes[2])), (2 * KEYS as u64, 2 * KEYS as u64));
}

/// A node that comes back empty takes one full sync, from the first peer it
/// links with, and resumes from the other where that sync's sender stood in its
/// run: the mesh sends its data once, not once per peer. Each node in turn, over
/// a few seeds: both sides dial, and the link the lower id dialed replaces the
/// other, which must not have started a sync either way (a link standing by) nor
/// let a third peer's link ask for one (the mark of a sync on its way).
#[test]
fn a_node_back_empty_takes_one_full_sync_and_resumes_from_the_rest() {
    for seed in 0..10 {
        for back in 0..3 {
            a_node_back_empty_takes_one_full_sync(seed, back);
        }
    }
}

fn a_node_back_empty_takes_one_full_sync(seed: u64, back: usize) {
    log_by_node();
    use std::sync::atomic::Ordering::Relaxed;
    let mut sim = Simulation::new(seed, SyncMode::Async, 3);
    sim.heal();
    for k in 0..KEYS {
        let value = [k as u8; 8];
        let writer = &sim.nodes[k % 3].node;
        let outcome = writer.store_item(&StoreRequest::new(StoreMode::Set, &key(k), &value)).outcome;
        assert!(matches!(outcome, StoreOutcome::Stored { .. }));
    }
    for _ in 0..1000 {
        sim.step(false);
    }
    // What the other nodes have sent node `back` so far: (full, partial).
    let back_id = sim.nodes[back].replicator.store.node_id();
    let sent_to_back = |sim: &Simulation| {
        let mut sent = (0, 0);
        for (_, node) in sim.nodes.iter().enumerate().filter(|&(index, _)| index != back) {
            let replicator = &node.replicator;
            let peer = replicator.known_peers().iter().find(|peer| peer.node() == Some(back_id)).expect("linked");
            sent.0 += peer.stats.full_syncs.load(Relaxed);
            sent.1 += peer.stats.partial_syncs.load(Relaxed);
        }
        sent
    };
    let before = sent_to_back(&sim);
    sim.crash(back);
    sim.heal();
    let after = sent_to_back(&sim);
    let (full, partial) = (after.0 - before.0, after.1 - before.1);
    assert!(full == 1 && partial == 1, "seed {seed}, node {back}: {full} full syncs, {partial} partial");
    for k in 0..KEYS {
        let seen: Vec<_> = sim.nodes.iter().map(|node| visible(&node.node, &key(k))).collect();
        assert_eq!(seen, vec![Some((vec![k as u8; 8], 0)); 3], "key {k}");
    }
}
