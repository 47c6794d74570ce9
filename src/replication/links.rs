//! The links' decisions without their I/O: which connections a node holds to its
//! peers, which one it uses for each, when it dials again, when it sends, and what
//! a link coming up or going down changes in the replicator. The event loop
//! ([`super::link`]) gives it sockets and the time; a test can give it byte pipes
//! and a virtual clock, and runs the same decisions.
//!
//! A node dials each `--peer` (with doubling backoff and jitter) whenever no link
//! to the node there is up, so a link cut for any reason comes back by itself
//! (repcached never reconnected, replication-lessons finding 1). When two links to
//! one peer come up (both dialed), the one dialed by the lower node id stays and
//! the other is closed, on both sides alike.

use super::heartbeat::LinkTime;
use super::replicator::{LINK_CONNECTING, LINK_DOWN, LinkEvent, Replicator, SyncMode};
use super::session::LinkSession;
use slab::Slab;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Bytes of frames a link holds before it waits for the socket to drain.
const OUTPUT_HIGH_WATER: usize = 1 << 20;
/// Bytes of frames produced per turn of the loop: a full sync is sent in turns of
/// this size with a yield between them, so that a worker sharing the core waits
/// for one turn at most, never for a whole sync (`cargo bench --bench loadgen --
/// sync`: turns of 256 KiB put the sender's get p99 at 2–3 ms during a sync, turns
/// of 64 KiB at 0.15–0.25 ms, for the same 1.2 s sync).
pub(super) const BURST: usize = 64 * 1024;
/// Under a steady stream of writes (async mode), changes are sent at most this
/// often, in batches, rather than on a wake-up per write or per ack: a wake-up
/// costs a worker a system call and, on a shared core, a context switch
/// (`cargo bench --bench loadgen -- r` measured 0.52× of stickless alone when every
/// write woke the link thread).
const BATCH_INTERVAL: Duration = Duration::from_millis(1);
/// How often heartbeats and timeouts are checked.
const TICK: Duration = Duration::from_millis(50);
/// Reconnect backoff: doubling from the first to the last, each with jitter.
const DIAL_BACKOFF_FIRST: Duration = Duration::from_millis(100);
const DIAL_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Where a link's bytes go: a socket (TLS or not) in the daemon, a pipe in tests.
pub(super) trait Transport {
    /// Writes what the transport takes now; `WouldBlock` when it takes nothing.
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize>;
    /// Sends what an encrypting layer still holds once every byte was written.
    fn push(&mut self) -> io::Result<()>;
}

/// The time a decision is made at: the session's clocks, and microseconds on a
/// monotonic clock for the batch and dial timers.
#[derive(Clone, Copy, Debug)]
pub(super) struct Now {
    pub link: LinkTime,
    pub micros: u64,
}

impl Now {
    fn after(self, wait: Duration) -> u64 {
        self.micros.saturating_add(wait.as_micros() as u64)
    }
}

/// One connection to a peer, before or after its handshake.
pub(super) struct Link<T> {
    pub io: T,
    pub session: LinkSession,
    /// Bytes of `session.out` already written.
    written: usize,
    pub peer: SocketAddr,
    /// The `--peer` it was dialed to (its index), or none for a link accepted.
    dialer: Option<usize>,
}

/// The runs of one peer's node id seen on its links in use.
struct Runs {
    node: u16,
    /// The run on the link in use (or last in use).
    current: u64,
    /// The run `current` replaced; 0 for none.
    replaced: u64,
    /// Links from another run refused while the link in use (its key) stayed up,
    /// since when (monotonic ms).
    refused_since: Option<(usize, u64)>,
}

/// One `--peer` this node dials.
struct Dialer {
    /// Our dial in progress.
    outgoing: Option<usize>,
    next_dial: u64,
    backoff: Duration,
    /// The node that answered there, once one has.
    node: Option<u16>,
}

/// A node's connections to its peers and the timers that drive them.
pub(super) struct Links<T> {
    replicator: Arc<Replicator>,
    links: Slab<Link<T>>,
    /// The link in use to each peer (by node id), once its handshake is done.
    active: Vec<(u16, usize)>,
    /// One for each `--peer`, in order.
    dialers: Vec<Dialer>,
    /// Each peer's runs, as its links in use have shown them.
    runs: Vec<Runs>,
    /// xorshift state for the dial jitter.
    jitter: u64,
    /// A link had more to send after its last burst.
    busy: bool,
    /// Changes are being sent on the batch timer.
    batching: bool,
    /// Async mode: when the next batch may be sent.
    next_send: u64,
    next_tick: u64,
    /// The links' keys, reused by every turn (a worker hosting the link runs one
    /// per event loop turn).
    keys: Vec<usize>,
}

impl<T: Transport> Links<T> {
    pub fn new(replicator: Arc<Replicator>) -> Links<T> {
        let jitter = replicator.history | 1;
        let dialer = |_| Dialer { outgoing: None, next_dial: 0, backoff: DIAL_BACKOFF_FIRST, node: None };
        let dialers = replicator.settings.peers.iter().map(dialer).collect();
        Links {
            replicator,
            links: Slab::new(),
            active: Vec::new(),
            dialers,
            runs: Vec::new(),
            jitter,
            busy: false,
            batching: false,
            next_send: 0,
            next_tick: 0,
            keys: Vec::new(),
        }
    }

    /// A link had more to send after its last burst: the loop should turn again
    /// at once (after letting others on its core run).
    pub fn is_busy(&self) -> bool {
        self.busy
    }

    /// Marks the loop busy: a link has input left to read.
    pub fn keep_busy(&mut self) {
        self.busy = true;
    }

    pub fn get_mut(&mut self, key: usize) -> Option<&mut Link<T>> {
        self.links.get_mut(key)
    }

    /// The key the next adopted link will get (the event loop registers its
    /// socket under it first).
    pub fn vacant_key(&self) -> usize {
        self.links.vacant_key()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Puts the links' keys in `keys` (a list the caller reuses), for a caller
    /// that visits each: the event loop reads what the last turn left unread.
    pub fn keys_into(&self, keys: &mut Vec<usize>) {
        keys.clear();
        keys.extend(self.links.iter().map(|(key, _)| key));
    }

    /// How long the loop may sleep before its next turn: zero while it has more to
    /// send, else until its next heartbeat check, batch or dial.
    pub fn next_timeout(&self, now: Now) -> Duration {
        if self.busy {
            return Duration::ZERO;
        }
        let mut until = self.next_tick;
        if self.batching {
            until = until.min(self.next_send);
        }
        for (index, dialer) in self.dialers.iter().enumerate() {
            if self.wants_dial(index) {
                until = until.min(dialer.next_dial);
            }
        }
        Duration::from_micros(until.saturating_sub(now.micros))
    }

    /// Takes a connection just accepted, or dialed to `--peer` number `dialer`;
    /// `None` when no session can start (no random challenge).
    pub fn adopt(&mut self, io: T, peer: SocketAddr, dialer: Option<usize>, now: Now) -> Option<usize> {
        let session = match LinkSession::start(&self.replicator, dialer.is_some(), now.link) {
            Ok(session) => session,
            Err(e) => {
                log::error!("replication: no random challenge: {e}");
                return None;
            }
        };
        let key = self.links.insert(Link { io, session, written: 0, peer, dialer });
        if let Some(dialer) = dialer.and_then(|index| self.dialers.get_mut(index)) {
            dialer.outgoing = Some(key);
        }
        Some(key)
    }

    /// The next `--peer` (its index) it is time to dial; the caller dials (and
    /// adopts the connection) or fails, and either way the next dial is scheduled.
    pub fn dial_due(&mut self, now: Now) -> Option<usize> {
        let index = (0..self.dialers.len())
            .find(|&index| self.wants_dial(index) && now.micros >= self.dialers[index].next_dial)?;
        self.schedule_dial(index, now);
        Some(index)
    }

    /// Whether a dial of ours on its way may reach node `node`: one to the
    /// address it answered at, or to an address no node has answered at yet (a
    /// node just started knows no peer's id).
    fn dialing(&self, node: u16) -> bool {
        self.dialers.iter().any(|dialer| dialer.outgoing.is_some() && dialer.node.is_none_or(|at| at == node))
    }

    /// Links standing by for a dial of ours ([`LinkSession::stand_by`]) go ahead
    /// once no dial on its way may replace them.
    fn end_stand_bys(&mut self) {
        for at in 0..self.active.len() {
            let (node, key) = self.active[at];
            if self.links[key].session.stands_by() && !self.dialing(node) {
                self.links[key].session.go_ahead(&self.replicator);
                self.busy = true;
            }
        }
    }

    /// The link in use to node `node`.
    fn active_to(&self, node: u16) -> Option<usize> {
        self.active.iter().find(|&&(to, _)| to == node).map(|&(_, key)| key)
    }

    fn wants_dial(&self, index: usize) -> bool {
        let dialer = &self.dialers[index];
        dialer.outgoing.is_none() && dialer.node.is_none_or(|node| self.active_to(node).is_none())
    }

    /// The next dial: the backoff with up to half of it taken off at random, so two
    /// nodes that lost each other at once do not dial in lockstep.
    fn schedule_dial(&mut self, index: usize, now: Now) {
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let dialer = &mut self.dialers[index];
        let backoff_ms = dialer.backoff.as_millis() as u64;
        let delay = backoff_ms - self.jitter % (backoff_ms / 2 + 1);
        dialer.next_dial = now.after(Duration::from_millis(delay));
        dialer.backoff = (dialer.backoff * 2).min(DIAL_BACKOFF_MAX);
    }

    /// After a read of link `key`: a handshake it completed is taken up, and a
    /// failure closes the link.
    pub fn after_read(&mut self, key: usize, outcome: Result<(), String>) {
        if let Some(link) = self.links.get_mut(key)
            && link.session.just_ready
        {
            link.session.just_ready = false;
            self.handshake_done(key);
            // A dial that reached another peer held back no link to this one.
            self.end_stand_bys();
        }
        if let Err(reason) = outcome {
            self.close(key, &reason);
        }
    }

    /// A link proved itself: keep it unless another to the same peer is up and
    /// preferred.
    fn handshake_done(&mut self, key: usize) {
        let link = &self.links[key];
        let (peer_node, slot) = (link.session.peer_node().expect("ready"), link.session.slot().expect("ready"));
        let peer = self.replicator.peer(slot);
        peer.stats.links.fetch_add(1, Ordering::Relaxed);
        if let Some(dialer) = link.dialer.and_then(|index| self.dialers.get_mut(index)) {
            if dialer.outgoing == Some(key) {
                dialer.outgoing = None;
            }
            dialer.node = Some(peer_node);
            dialer.backoff = DIAL_BACKOFF_FIRST;
            peer.set_address(link.peer);
        } else if peer.address().is_none() {
            peer.set_address(link.peer);
        }
        let (history, address) = (link.session.peer_history().unwrap_or_default(), link.peer);
        if self.returning_run(peer_node, history) {
            log::error!(
                "replication: two nodes claim node id {peer_node} (a run that another run of that id replaced came \
                 back, from {address}): give each node its own --node-id"
            );
            self.replicator.stats.refused.fetch_add(1, Ordering::Relaxed);
            self.close(key, &format!("another node links as node id {peer_node}"));
            return;
        }
        let link = &self.links[key];
        // The link both sides keep: the one the lower node id dialed.
        let preferred = |link: &Link<T>| link.session.dialed == (self.replicator.settings.identity.node < peer_node);
        match self.active_to(peer_node) {
            Some(other) if other != key && self.links.contains(other) => {
                if preferred(link) {
                    self.close(other, "replaced by the link the lower node id dialed");
                    self.active.push((peer_node, key));
                    // Closing the old link stopped the waits on the peer; the new one
                    // restarts them when the peer asks for our changes, which it may
                    // have done already, in the read that completed the handshake.
                    if self.links[key].session.peer_judges() {
                        self.replicator.set_acking(slot, true);
                    }
                } else {
                    let (other_history, heard) =
                        (self.links[other].session.peer_history(), link.session.clock.last_heard_ms);
                    if other_history != Some(history) && self.refused_too_long(peer_node, other, heard) {
                        log::error!(
                            "replication: two nodes claim node id {peer_node} (one linked, another at {address} \
                             refused for longer than the first could be a dead run): give each node its own \
                             --node-id"
                        );
                        self.replicator.stats.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    self.close(key, "a link to this peer is already up");
                    return;
                }
            }
            _ => {
                // Our own dial to this peer, still on its way, would replace this
                // link: no resume goes either way until it is up or has failed.
                if !preferred(link) && self.dialing(peer_node) {
                    self.links[key].session.stand_by();
                }
                self.active.push((peer_node, key));
            }
        }
        self.note_run(peer_node, history);
        let link = &self.links[key];
        log::warn!("replication: linked to node {peer_node} at {}", link.peer);
        let up = LinkEvent { peer: peer_node, address: Some(link.peer), event: "up", detail: "" };
        self.replicator.link_event(&up);
    }

    /// Whether `history` is a run of node `node` that another run of the same id
    /// already replaced on a link in use: a node's runs follow each other (a restart
    /// starts a new one, and the old never comes back), so a replaced run that links
    /// again is a second node using the same id.
    fn returning_run(&self, node: u16, history: u64) -> bool {
        self.runs.iter().any(|runs| runs.node == node && runs.current != history && runs.replaced == history)
    }

    /// Notes that node `node`'s link in use now comes from its run `history`.
    fn note_run(&mut self, node: u16, history: u64) {
        match self.runs.iter_mut().find(|runs| runs.node == node) {
            Some(runs) if runs.current == history => runs.refused_since = None,
            Some(runs) => *runs = Runs { node, current: history, replaced: runs.current, refused_since: None },
            None => self.runs.push(Runs { node, current: history, replaced: 0, refused_since: None }),
        }
    }

    /// A link from another run of node `node` than the one on link `active` was
    /// refused at `now_ms`: says whether such refusals, with `active` in use
    /// throughout, have gone on longer than a dead run's link lingers (two
    /// `--repl-timeout`s: a restarted node's old link is declared down within one).
    fn refused_too_long(&mut self, node: u16, active: usize, now_ms: u64) -> bool {
        let lingering = 2 * self.replicator.settings.timeout.as_millis() as u64;
        let Some(runs) = self.runs.iter_mut().find(|runs| runs.node == node) else {
            return false;
        };
        match runs.refused_since {
            Some((key, since)) if key == active => now_ms.saturating_sub(since) > lingering,
            _ => {
                runs.refused_since = Some((active, now_ms));
                false
            }
        }
    }

    /// Our sequence numbers sent so far, summed over the peers (it moves when a
    /// turn sent anything).
    fn sent_total(&self) -> u64 {
        self.replicator.known_peers().iter().map(|peer| peer.stats.sent_seq.load(Ordering::Relaxed)).sum()
    }

    /// Sends what is due on every link and checks heartbeats when due. The caller
    /// has read what was left unread, dials after when [`Links::dial_due`] says,
    /// then publishes the state.
    pub fn service(&mut self, now: Now) {
        // Proposals the acknowledgements just read settled: installed or dropped,
        // and resolved, before this turn sends.
        if self.replicator.decide_claims() {
            self.replicator.wake_ack_waiters();
        }
        let sent_before = self.sent_total();
        let mut keys = std::mem::take(&mut self.keys);
        self.keys_into(&mut keys);
        // Async mode sends at most once per BATCH_INTERVAL (a full sync's bursts
        // aside): otherwise every ack from the peer would wake a send of the few
        // changes made since, and the two would ping-pong at the round-trip rate.
        let is_async = self.replicator.settings.mode == SyncMode::Async;
        // A claim (or a refusal of the peer's) goes at once: a client waits on it.
        let urgent = self.replicator.take_urgent();
        let throttled = is_async && !self.busy && !urgent && now.micros < self.next_send;
        let mut more = false;
        for &key in &keys {
            more |= self.pump(key, !throttled);
        }
        self.keys = keys;
        let sent = self.sent_total();
        if sent != sent_before {
            self.next_send = now.after(BATCH_INTERVAL);
        }
        // Async mode under load: send again after BATCH_INTERVAL, unwoken. Otherwise
        // sleep until a record wakes us (ack mode: at once, clients are waiting).
        self.batching = is_async && (sent != sent_before || throttled);
        if self.batching {
            self.replicator.link_batches();
        } else {
            self.replicator.link_sleeps();
            // A change recorded before we said so rang no waker.
            let last_seq = self.replicator.last_seq();
            more |= self.active.iter().any(|&(_, key)| {
                let session = &self.links[key].session;
                let slot = session.slot().expect("an active link is ready");
                session.is_sending() && self.replicator.peer(slot).stats.sent_seq.load(Ordering::Relaxed) < last_seq
            });
        }
        self.busy = more;
        if now.micros >= self.next_tick {
            self.next_tick = now.after(TICK);
            self.tick(now);
        }
    }

    /// Tells `stats` each link's state, and the worst of them as the node's;
    /// after a turn's service and dial.
    pub fn publish_state(&self) {
        let dialing = |node: Option<u16>| self.dialers.iter().any(|d| d.node == node && d.outgoing.is_some());
        let idle = |node: Option<u16>| if dialing(node) { LINK_CONNECTING } else { LINK_DOWN };
        let mut worst = None::<u8>;
        for peer in self.replicator.known_peers() {
            let Some(node) = peer.node() else { continue };
            let state = match self.active_to(node) {
                Some(key) => self.links[key].session.link_state(),
                None => idle(Some(node)),
            };
            peer.stats.state.store(state, Ordering::Relaxed);
            worst = Some(worst.map_or(state, |worst| worst.min(state)));
        }
        // A listed peer that has never answered counts as down (or being dialed).
        if self.dialers.iter().any(|dialer| dialer.node.is_none()) {
            worst = Some(worst.map_or(idle(None), |worst| worst.min(idle(None))));
        }
        self.replicator.stats.state.store(worst.unwrap_or(LINK_DOWN), Ordering::Relaxed);
    }

    /// Produces one burst of frames and writes what the transport takes; true when
    /// the session has more to send right away.
    fn pump(&mut self, key: usize, produce: bool) -> bool {
        let replicator = Arc::clone(&self.replicator);
        let Some(link) = self.links.get_mut(key) else {
            return false;
        };
        let mut failure = None;
        let mut more = false;
        if produce && link.session.out.len() - link.written < OUTPUT_HIGH_WATER {
            match link.session.produce(&replicator, link.session.out.len() + BURST) {
                Ok(left) => more = left,
                Err(reason) => failure = Some(reason),
            }
        }
        while failure.is_none() {
            if link.written == link.session.out.len() {
                link.session.out.clear();
                link.written = 0;
                // TLS may still hold records the socket has not taken.
                if let Err(e) = link.io.push() {
                    failure = Some(format!("write failed: {e}"));
                }
                break;
            }
            match link.io.write(&link.session.out[link.written..]) {
                Ok(n) => {
                    link.written += n;
                    let stats = link.session.slot().map_or(&replicator.stats, |slot| &replicator.peer(slot).stats);
                    stats.sent_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    if link.written == link.session.out.len() {
                        link.session.out.clear();
                        link.written = 0;
                    } else if link.written > OUTPUT_HIGH_WATER {
                        link.session.out.drain(..link.written);
                        link.written = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Not yet connected: the writable event comes when it is.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                Err(e) => {
                    failure = Some(format!("write failed: {e}"));
                    break;
                }
            }
        }
        if let Some(reason) = failure {
            self.close(key, &reason);
            return false;
        }
        // More waits for the transport when it is full (the writable event).
        let link = &self.links[key];
        more && link.session.out.len() - link.written < OUTPUT_HIGH_WATER
    }

    fn tick(&mut self, now: Now) {
        self.end_stand_bys();
        // A vote may lapse with nothing arriving: claims waiting for one look again.
        if self.replicator.claims_wait_for_votes() {
            self.replicator.wake_ack_waiters();
        }
        let keys: Vec<usize> = self.links.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Err(reason) = self.links[key].session.tick(&self.replicator, now.link) {
                self.close(key, &reason);
            } else {
                self.busy |= self.pump(key, true);
            }
        }
    }

    /// Closes link `key`, saying why, and hands back its transport (dropping it
    /// closes the socket).
    pub fn close(&mut self, key: usize, reason: &str) -> Option<T> {
        let link = self.links.try_remove(key)?;
        if let Some(dialer) = link.dialer.and_then(|index| self.dialers.get_mut(index))
            && dialer.outgoing == Some(key)
        {
            dialer.outgoing = None;
            // The dial failed: a link the peer dialed may go ahead.
            self.end_stand_bys();
        }
        if let Some(at) = self.active.iter().position(|&(_, active)| active == key) {
            let (node, _) = self.active.swap_remove(at);
            let slot = link.session.slot().expect("an active link is ready");
            self.replicator.set_acking(slot, false);
            self.recount_sync_on_its_way(slot);
            log::warn!("replication: link to node {node} at {} down: {reason}", link.peer);
            let down = LinkEvent { peer: node, address: Some(link.peer), event: "down", detail: reason };
            self.replicator.link_event(&down);
            // Reconnect promptly; the backoff grows only while dials fail.
            for dialer in self.dialers.iter_mut().filter(|dialer| dialer.node == Some(node)) {
                dialer.backoff = DIAL_BACKOFF_FIRST;
                dialer.next_dial = 0;
            }
        } else if link.session.is_ready() {
            if let Some(slot) = link.session.slot() {
                self.recount_sync_on_its_way(slot);
            }
            log::info!("replication: spare link to {} closed: {reason}", link.peer);
        } else if link.session.dialed && !link.session.met_peer() {
            log::debug!("replication: dial to {} failed: {reason}", link.peer);
        } else {
            self.replicator.stats.refused.fetch_add(1, Ordering::Relaxed);
            log::warn!("replication: refused a connection from {}: {reason}", link.peer);
        }
        Some(link.io)
    }

    /// A link to the peer in `slot` closed: a full sync it asked for no longer
    /// holds back the others' resumes, but one that another link to the same
    /// peer asked for still does. Both sides dial, so a link that asked may be
    /// replaced by one that asked too, in the read that completed its handshake:
    /// clearing the mark then let a third peer's link ask for a full sync of its
    /// own.
    fn recount_sync_on_its_way(&self, slot: usize) {
        let asked =
            self.links.iter().any(|(_, link)| link.session.slot() == Some(slot) && link.session.asked_full_sync());
        self.replicator.peer(slot).stats.receiving_sync.store(asked, Ordering::Relaxed);
    }

    /// Closes every link (the node is shutting down).
    pub fn close_all(&mut self) {
        let keys: Vec<usize> = self.links.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.close(key, "shutting down");
        }
    }
}
