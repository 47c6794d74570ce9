//! The link: one mio `Poll` for the replication listener, the peer links, and the
//! waker the store's observer rings when changes are recorded. It runs on a thread
//! of its own ([`LinkThread`]) until the server's first worker takes it over
//! ([`LinkRunner`], hosted in that worker's event loop): a write recorded there
//! then reaches the peer, and the peer's acknowledgement releases the reply, with
//! no thread woken in between (on a core shared with the link thread, each such
//! wake-up was a context switch; see BENCHMARKS.md, "Where ack mode's time goes").
//!
//! Both sides dial (with doubling backoff and jitter) whenever no link is up, so a
//! link cut for any reason comes back by itself (repcached never reconnected,
//! replication-lessons finding 1). When both dials succeed, the link dialed by the
//! lower node id stays and the other is closed, on both sides alike.
//!
//! Clients never wait for this thread: it reads the backlog under its lock in
//! short batches and the store one shard slice at a time, and its output per link
//! is bounded; a peer that does not keep up falls behind the backlog and is sent a
//! full sync when it returns (finding 4: repcached froze its master instead).

use super::heartbeat::LinkTime;
use super::replicator::{LINK_CONNECTING, LINK_DOWN, Replicator, SyncMode};
use super::session::LinkSession;
use crate::tls::MaybeTls;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);
/// Bytes of frames a link holds before it waits for the socket to drain.
const OUTPUT_HIGH_WATER: usize = 1 << 20;
/// Bytes of frames produced per turn of the loop: a full sync is sent in turns of
/// this size with a yield between them, so that a worker sharing the core waits
/// for one turn at most, never for a whole sync (`cargo bench --bench loadgen --
/// sync`: turns of 256 KiB put the sender's get p99 at 2–3 ms during a sync, turns
/// of 64 KiB at 0.15–0.25 ms, for the same 1.2 s sync).
const BURST: usize = 64 * 1024;
/// Under a steady stream of writes (async mode), changes are sent at most this
/// often, in batches, rather than on a wake-up per write or per ack: a wake-up
/// costs a worker a system call and, on a shared core, a context switch
/// (`cargo bench --bench loadgen -- r` measured 0.52× of stickless alone when every
/// write woke the link thread).
const BATCH_INTERVAL: Duration = Duration::from_millis(1);
/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes read (and applied) from one link per turn: the peer's full sync arrives in
/// turns like those it is sent in ([`BURST`]), so that the worker hosting the link
/// answers its clients between them.
const READ_TURN: usize = BURST;
/// How often heartbeats and timeouts are checked.
const TICK: Duration = Duration::from_millis(50);
/// Reconnect backoff: doubling from the first to the last, each with jitter.
const DIAL_BACKOFF_FIRST: Duration = Duration::from_millis(100);
const DIAL_BACKOFF_MAX: Duration = Duration::from_secs(2);

struct Link {
    /// Mutual TLS over TCP under `--repl-tls-*`.
    stream: MaybeTls,
    session: LinkSession,
    input: Vec<u8>,
    /// Bytes of `input` received and not yet used.
    filled: usize,
    /// Bytes of `session.out` already written.
    written: usize,
    /// The last turn stopped reading at `READ_TURN` with input left: the next turn
    /// reads on, unprompted (the poll is edge-triggered).
    unread: bool,
    /// The poll said the peer shut its side: read to the end rather than take a short
    /// read as drained, or its EOF (whose edge came with the last data) goes unheard
    /// until the heartbeat gives up.
    peer_closed: bool,
    peer: SocketAddr,
}

/// The link running on a thread of its own.
pub struct LinkThread {
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<LinkRunner>,
    local_addr: Option<SocketAddr>,
}

impl LinkThread {
    /// Binds the replication listener and starts the thread.
    pub fn start(replicator: Arc<Replicator>) -> io::Result<LinkThread> {
        LinkThread::spawn(LinkRunner::new(replicator)?)
    }

    /// Runs `runner` on a thread of its own.
    pub fn spawn(mut runner: LinkRunner) -> io::Result<LinkThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let (waker, local_addr) = (Arc::clone(&runner.waker), runner.local_addr);
        let stopped = Arc::clone(&stop);
        let handle = std::thread::Builder::new().name("replication".into()).spawn(move || {
            let mut events = Events::with_capacity(EVENTS);
            while !stopped.load(Ordering::Acquire) {
                if runner.turn(&mut events, Some(runner.next_timeout())).is_err() {
                    break;
                }
                if runner.busy {
                    // Let the workers on this core answer their clients before the next burst.
                    std::thread::yield_now();
                }
            }
            runner
        })?;
        Ok(LinkThread { waker, stop, handle, local_addr })
    }

    /// Where the peer can reach this node (useful with port 0); none for a node
    /// that only dials.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Stops the thread and hands back its runner, links and all, for a worker to host.
    pub fn into_runner(self) -> LinkRunner {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        self.handle.join().expect("the replication thread does not panic")
    }

    pub fn shutdown(self) {
        self.into_runner().close_all();
    }
}

fn link_has_room(link: &Link) -> bool {
    link.session.out.len() - link.written < OUTPUT_HIGH_WATER
}

fn resolve(addr: &str) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: no address")))
}

/// What to do when only one node of a pair runs its link over TLS.
const ONE_SIDED_TLS: &str = "give both nodes --repl-tls-cert, --repl-tls-key and --repl-tls-ca, or neither";

/// Whether bytes open with a TLS record header: a handshake (22) or an alert (21),
/// then major version 3 (RFC 8446, section 5.1). No replication frame starts so.
fn starts_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [21 | 22, 3, ..])
}

/// Whether rustls refused the peer's bytes for not being TLS records at all: a
/// peer that sends its plaintext hello.
fn is_plaintext_on_tls(error: &io::Error) -> bool {
    matches!(
        error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType))
    )
}

/// Events taken per poll of the link.
const EVENTS: usize = 256;

/// The link's state and event loop, run one turn at a time by its thread or by the
/// worker that hosts it.
pub struct LinkRunner {
    replicator: Arc<Replicator>,
    poll: Poll,
    waker: Arc<Waker>,
    local_addr: Option<SocketAddr>,
    /// None for a node that only dials (an embedded node not given --repl-listen).
    listener: Option<TcpListener>,
    links: Slab<Link>,
    /// The link in use, once its handshake is done.
    active: Option<usize>,
    /// Our dial in progress.
    outgoing: Option<usize>,
    next_dial: Instant,
    backoff: Duration,
    /// xorshift state for the dial jitter.
    jitter: u64,
    /// A link had more to send after its last burst.
    busy: bool,
    /// Changes are being sent on the batch timer.
    batching: bool,
    /// Async mode: when the next batch may be sent.
    next_send: Instant,
    next_tick: Instant,
    keys: Vec<usize>,
}

impl LinkRunner {
    /// Binds the replication listener, if the node accepts its peer; nothing runs
    /// until a turn is taken.
    pub fn new(replicator: Arc<Replicator>) -> io::Result<LinkRunner> {
        let poll = Poll::new()?;
        let mut listener = None;
        let mut local_addr = None;
        if let Some(listen) = &replicator.settings.listen {
            // The error names the address: "Address already in use" alone does not
            // say which of a node's ports is taken.
            let mut bound = resolve(listen).and_then(TcpListener::bind).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot listen for the peer on {listen} (--repl-listen): {e}"))
            })?;
            let addr = bound.local_addr()?;
            let _ = replicator.listen_addr.set(addr);
            poll.registry().register(&mut bound, LISTENER, Interest::READABLE)?;
            (listener, local_addr) = (Some(bound), Some(addr));
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        replicator.set_link_waker(Arc::clone(&waker));
        let jitter = replicator.history | 1;
        Ok(LinkRunner {
            replicator,
            poll,
            waker,
            local_addr,
            listener,
            links: Slab::new(),
            active: None,
            outgoing: None,
            next_dial: Instant::now(),
            backoff: DIAL_BACKOFF_FIRST,
            jitter,
            busy: false,
            batching: false,
            next_send: Instant::now(),
            next_tick: Instant::now(),
            keys: Vec::new(),
        })
    }

    /// Where the peer can reach this node (useful with port 0); none for a node
    /// that only dials.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The link's own poll, which a host's poll watches: it turns readable when any
    /// of the link's sockets or its waker has an event.
    pub fn poll_fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }

    /// How long the link may sleep before its next turn: zero while it has more to
    /// send, else until its next heartbeat check, batch or dial.
    pub fn next_timeout(&self) -> Duration {
        if self.busy {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let mut timeout = self.next_tick.saturating_duration_since(now);
        if self.batching {
            timeout = timeout.min(self.next_send.saturating_duration_since(now));
        }
        if self.wants_dial() {
            timeout = timeout.min(self.next_dial.saturating_duration_since(now));
        }
        timeout
    }

    /// One turn: waits up to `wait` for the link's events (none: takes no events,
    /// for a host that knows there are none), handles them, and sends what is due.
    pub fn turn(&mut self, events: &mut Events, wait: Option<Duration>) -> io::Result<()> {
        if let Some(wait) = wait {
            if let Err(e) = self.poll.poll(events, Some(wait)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    return Ok(());
                }
                log::error!("replication: poll failed: {e}");
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(key) => {
                        if event.is_read_closed()
                            && let Some(link) = self.links.get_mut(key)
                        {
                            link.peer_closed = true;
                        }
                        self.read(key)
                    }
                }
            }
        }
        self.service();
        Ok(())
    }

    /// Closes every link (the node is shutting down).
    pub fn close_all(&mut self) {
        let keys: Vec<usize> = self.links.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.close(key, "shutting down");
        }
    }

    fn now(&self) -> LinkTime {
        let clock = self.replicator.store.clock();
        LinkTime { wall_ms: clock.now_ms(), mono_ms: clock.mono_ms() }
    }

    /// Sends what is due on every link, checks heartbeats when due, and dials.
    fn service(&mut self) {
        let sent_before = self.replicator.stats.sent_seq.load(Ordering::Relaxed);
        // A worker hosting the link runs this every turn: the keys' list is reused.
        let mut keys = std::mem::take(&mut self.keys);
        keys.clear();
        keys.extend(self.links.iter().map(|(key, _)| key));
        let mut unread = false;
        for &key in &keys {
            if self.links.get(key).is_some_and(|link| link.unread) {
                self.read(key);
                unread |= self.links.get(key).is_some_and(|link| link.unread);
            }
        }
        // Async mode sends at most once per BATCH_INTERVAL (a full sync's bursts
        // aside): otherwise every ack from the peer would wake a send of the few
        // changes made since, and the two would ping-pong at the round-trip rate.
        let is_async = self.replicator.settings.mode == SyncMode::Async;
        // A claim (or a refusal of the peer's) goes at once: a client waits on it.
        let urgent = self.replicator.take_urgent();
        let throttled = is_async && !self.busy && !urgent && Instant::now() < self.next_send;
        let mut more = false;
        for &key in &keys {
            more |= self.pump(key, !throttled);
        }
        self.keys = keys;
        let sent = self.replicator.stats.sent_seq.load(Ordering::Relaxed);
        if sent != sent_before {
            self.next_send = Instant::now() + BATCH_INTERVAL;
        }
        // Async mode under load: send again after BATCH_INTERVAL, unwoken. Otherwise
        // sleep until a record wakes us (ack mode: at once, clients are waiting).
        self.batching = is_async && (sent != sent_before || throttled);
        if self.batching {
            self.replicator.link_batches();
        } else {
            self.replicator.link_sleeps();
            // A change recorded before we said so rang no waker.
            let sending = self.active.is_some_and(|key| self.links[key].session.is_sending());
            more |= sending && sent < self.replicator.last_seq();
        }
        self.busy = more || unread;
        if Instant::now() >= self.next_tick {
            self.next_tick = Instant::now() + TICK;
            self.tick();
        }
        if self.wants_dial() && Instant::now() >= self.next_dial {
            self.dial();
        }
        self.publish_state();
    }

    fn wants_dial(&self) -> bool {
        self.replicator.settings.peer.is_some() && self.active.is_none() && self.outgoing.is_none()
    }

    fn publish_state(&self) {
        let state = match self.active {
            Some(key) => self.links[key].session.link_state(),
            None if self.outgoing.is_some() => LINK_CONNECTING,
            None => LINK_DOWN,
        };
        self.replicator.stats.state.store(state, Ordering::Relaxed);
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    self.adopt(stream, peer, None);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("replication: accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Takes a link just accepted or dialed (`host`: the name the peer's certificate
    /// must carry, for a dial over TLS).
    fn adopt(&mut self, stream: TcpStream, peer: SocketAddr, dialed: Option<&str>) -> Option<usize> {
        let _ = stream.set_nodelay(true);
        let mut stream = match &self.replicator.settings.tls {
            None => MaybeTls::Plain(stream),
            Some(tls) => {
                let wrapped = match dialed {
                    None => tls.accept(stream),
                    Some(host) => tls.connect(stream, host),
                };
                match wrapped {
                    Ok(stream) => MaybeTls::Tls(Box::new(stream)),
                    Err(e) => {
                        log::warn!("replication: cannot start TLS with {peer}: {e}");
                        return None;
                    }
                }
            }
        };
        let dialed = dialed.is_some();
        let session = match LinkSession::start(&self.replicator, dialed, self.now()) {
            Ok(session) => session,
            Err(e) => {
                log::error!("replication: no random challenge: {e}");
                return None;
            }
        };
        let entry = self.links.vacant_entry();
        let key = entry.key();
        if let Err(e) =
            self.poll.registry().register(stream.socket(), Token(key), Interest::READABLE | Interest::WRITABLE)
        {
            log::warn!("replication: cannot register a link: {e}");
            return None;
        }
        entry.insert(Link {
            stream,
            session,
            input: Vec::new(),
            filled: 0,
            written: 0,
            unread: false,
            peer_closed: false,
            peer,
        });
        Some(key)
    }

    fn dial(&mut self) {
        let Some(peer) = self.replicator.settings.peer.clone() else {
            return;
        };
        self.schedule_dial();
        let addr = match resolve(&peer) {
            Ok(addr) => addr,
            Err(e) => {
                log::warn!("replication: cannot resolve peer {peer}: {e}");
                return;
            }
        };
        // The name the peer's certificate must carry: the host of --peer.
        let host = peer.rsplit_once(':').map_or(peer.as_str(), |(host, _)| host);
        match TcpStream::connect(addr) {
            Ok(stream) => self.outgoing = self.adopt(stream, addr, Some(host)),
            Err(e) => log::debug!("replication: dialing {addr}: {e}"),
        }
    }

    /// The next dial: the backoff with up to half of it taken off at random, so two
    /// nodes that lost each other at once do not dial in lockstep.
    fn schedule_dial(&mut self) {
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let backoff_ms = self.backoff.as_millis() as u64;
        let delay = backoff_ms - self.jitter % (backoff_ms / 2 + 1);
        self.next_dial = Instant::now() + Duration::from_millis(delay);
        self.backoff = (self.backoff * 2).min(DIAL_BACKOFF_MAX);
    }

    fn read(&mut self, key: usize) {
        let now = self.now();
        let Some(link) = self.links.get_mut(key) else {
            return;
        };
        let mut outcome = Ok(());
        let mut taken = 0;
        link.unread = false;
        loop {
            // `input` keeps its length (zeroed once) and `filled` marks the data, so a
            // read does not clear the buffer first.
            if link.input.len() - link.filled < READ_CHUNK {
                let grown = (link.filled + READ_CHUNK).max(link.input.len() * 2);
                link.input.resize(grown, 0);
            }
            let space = link.input.len() - link.filled;
            let drained = match link.stream.read(&mut link.input[link.filled..]) {
                Ok(0) => {
                    outcome = Err("the peer closed the link".to_string());
                    break;
                }
                Ok(n) => {
                    link.filled += n;
                    taken += n;
                    // A short read took all there was; the next input brings an event
                    // (the poll is edge-triggered), so no read just to hear WouldBlock;
                    // but no event follows the peer's EOF once it has been signalled.
                    n < space && !link.peer_closed
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::InvalidData if is_plaintext_on_tls(&e) => {
                        self.replicator.stats.tls_mismatches.fetch_add(1, Ordering::Relaxed);
                        outcome = Err(format!("{} sent plaintext, not TLS: {ONE_SIDED_TLS}", link.peer));
                        break;
                    }
                    io::ErrorKind::InvalidData => {
                        // TLS refused the peer (a certificate from another CA) or
                        // the bytes: said at the default verbosity, as a wrong secret is.
                        log::warn!("replication: TLS with {}: {e}", link.peer);
                        outcome = Err(format!("TLS failed: {e}"));
                        break;
                    }
                    _ => {
                        outcome = Err(format!("read failed: {e}"));
                        break;
                    }
                },
            };
            // A plaintext link whose peer opens with a TLS record: say so, rather
            // than "unknown frame type 22".
            if matches!(link.stream, MaybeTls::Plain(_))
                && !link.session.met_peer()
                && starts_like_tls(&link.input[..link.filled])
            {
                self.replicator.stats.tls_mismatches.fetch_add(1, Ordering::Relaxed);
                outcome = Err(format!("{} speaks TLS and this node does not: {ONE_SIDED_TLS}", link.peer));
                break;
            }
            // Apply as we go, so a long burst is not buffered whole.
            match link.session.receive(&self.replicator, &link.input[..link.filled], now) {
                Ok(used) => {
                    link.input.copy_within(used..link.filled, 0);
                    link.filled -= used;
                }
                Err(reason) => {
                    outcome = Err(reason);
                    break;
                }
            }
            if drained {
                break;
            }
            if taken >= READ_TURN {
                link.unread = true;
                break;
            }
        }
        if link.session.just_ready {
            link.session.just_ready = false;
            self.handshake_done(key);
        }
        if let Err(reason) = outcome {
            self.close(key, &reason);
        }
    }

    /// A link proved itself: keep it unless another is up and preferred.
    fn handshake_done(&mut self, key: usize) {
        let stats = &self.replicator.stats;
        let link = &self.links[key];
        let peer_node = link.session.peer_node().expect("ready");
        stats.links.fetch_add(1, Ordering::Relaxed);
        stats.peer_node.store(u64::from(peer_node), Ordering::Relaxed);
        if self.outgoing == Some(key) {
            self.outgoing = None;
        }
        self.backoff = DIAL_BACKOFF_FIRST;
        // The link both sides keep: the one the lower node id dialed.
        let preferred = |link: &Link| link.session.dialed == (self.replicator.settings.identity.node < peer_node);
        match self.active {
            Some(other) if other != key && self.links.contains(other) => {
                if preferred(link) {
                    self.close(other, "replaced by the link the lower node id dialed");
                    self.active = Some(key);
                    // Closing the old link stopped the waits on the peer; the new one
                    // restarts them when the peer asks for our changes, which it may
                    // have done already, in the read that completed the handshake.
                    if self.links[key].session.is_sending() {
                        self.replicator.set_acking(true);
                    }
                } else {
                    self.close(key, "a link to this peer is already up");
                    return;
                }
            }
            _ => self.active = Some(key),
        }
        let link = &self.links[key];
        log::warn!("replication: linked to node {peer_node} at {}", link.peer);
    }

    /// Produces one burst of frames and writes what the socket takes; true when
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
                if let Err(e) = link.stream.push() {
                    failure = Some(format!("write failed: {e}"));
                }
                break;
            }
            match link.stream.write(&link.session.out[link.written..]) {
                Ok(n) => {
                    link.written += n;
                    replicator.stats.sent_bytes.fetch_add(n as u64, Ordering::Relaxed);
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
        // More waits for the socket when it is full (the writable event).
        more && link_has_room(&self.links[key])
    }

    fn tick(&mut self) {
        let now = self.now();
        let keys: Vec<usize> = self.links.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Err(reason) = self.links[key].session.tick(&self.replicator, now) {
                self.close(key, &reason);
            } else {
                self.busy |= self.pump(key, true);
            }
        }
    }

    fn close(&mut self, key: usize, reason: &str) {
        let Some(mut link) = self.links.try_remove(key) else {
            return;
        };
        let _ = self.poll.registry().deregister(link.stream.socket());
        if self.outgoing == Some(key) {
            self.outgoing = None;
        }
        if self.active == Some(key) {
            self.active = None;
            self.replicator.set_acking(false);
            self.replicator.stats.receiving_sync.store(false, Ordering::Relaxed);
            log::warn!("replication: link to {} down: {reason}", link.peer);
            // Reconnect promptly; the backoff grows only while dials fail.
            self.backoff = DIAL_BACKOFF_FIRST;
            self.next_dial = Instant::now();
        } else if link.session.is_ready() {
            log::info!("replication: spare link to {} closed: {reason}", link.peer);
        } else if link.session.dialed && !link.session.met_peer() {
            log::debug!("replication: dial to {} failed: {reason}", link.peer);
        } else {
            self.replicator.stats.refused.fetch_add(1, Ordering::Relaxed);
            log::warn!("replication: refused a connection from {}: {reason}", link.peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ManualClock;
    use std::io::Write;
    use std::net::Shutdown;

    /// A peer that sends its last bytes and shuts its side at once: both reach the
    /// link in one edge-triggered event, and the link must hear the EOF behind the
    /// bytes. The manual clock never moves, so no handshake or heartbeat timeout
    /// can be what closes it.
    #[test]
    fn a_peer_closing_right_after_its_last_bytes_is_heard_at_once() {
        let clock = ManualClock::new(1_800_000_000_000);
        let replicator = crate::replication::tests::replicator_listening(1, &clock, 1, "127.0.0.1:0");
        let mut runner = LinkRunner::new(replicator).unwrap();
        let mut peer = std::net::TcpStream::connect(runner.local_addr().unwrap()).unwrap();
        // The first byte of a frame whose rest never comes, then the EOF.
        peer.write_all(&[0]).unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        let mut events = Events::with_capacity(EVENTS);
        let mut accepted = false;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            runner.turn(&mut events, Some(Duration::from_millis(100))).unwrap();
            accepted |= !runner.links.is_empty();
            if accepted && runner.links.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "the link never heard the peer's EOF (accepted: {accepted})");
        }
    }
}
