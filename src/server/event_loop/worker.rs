//! A worker thread: one mio `Poll`, the connections the acceptor handed it, and a
//! list of connections that yielded after `-R` requests (memcached `reqs_per_event`,
//! pelikan's `pending` list with a zero poll timeout). The first worker of a
//! replicating node also hosts the replication link, whose poll its own watches.

use super::conn::{Conn, Status};
use super::registry::ConnInfo;
use super::stream::{Accepted, Stream};
use crate::replication::{LinkRunner, LinkThread, Replicator};
use crate::server::frontend::Dispatch;
use crate::server::operations::watch::WatchSink;
use crate::server::{Limits, Shared};
use crossbeam_channel::Receiver;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub const WAKER: Token = Token(usize::MAX);
/// The hosted replication link's poll has events.
const LINK: Token = Token(usize::MAX - 1);

/// How long shutdown waits for replies in flight to reach slow clients.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

pub struct Worker {
    pub index: usize,
    pub poll: Poll,
    pub incoming: Receiver<Accepted>,
    pub shared: Arc<Shared>,
    /// The replication link, when this worker hosts it.
    pub link: Option<LinkRunner>,
}

impl Worker {
    /// Creates the poll and its waker; the waker goes to the acceptor.
    pub fn new(index: usize, incoming: Receiver<Accepted>, shared: Arc<Shared>) -> std::io::Result<(Worker, Waker)> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        Ok((Worker { index, poll, incoming, shared, link: None }, waker))
    }

    pub fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        let dispatch = Dispatch { shared: &shared, counters: &shared.counters[self.index] };
        let limits = shared.limits;
        let reqs_per_event = shared.config.reqs_per_event;
        let mut conns: Slab<Conn> = Slab::new();
        let mut yielded: Vec<usize> = Vec::new();
        let mut held: Vec<usize> = Vec::new();
        let mut events = Events::with_capacity(1024);
        let mut link_wakes = LinkWakes::default();
        let mut handshakes = Handshakes::default();
        let idle_timeout = shared.config.idle_timeout;
        let mut next_idle_check = Instant::now() + IDLE_CHECK;
        let settle = match self.poll.registry().try_clone() {
            Ok(registry) => Settle { registry, shared: &shared, worker: self.index },
            Err(e) => {
                log::error!("worker {}: cannot start: {e}", self.index);
                return;
            }
        };
        let turn = Turn { dispatch: &dispatch, limits, reqs_per_event, settle: &settle };
        let (mut link, link_thread) = self.host_link();
        loop {
            let mut timeout = if yielded.is_empty() { None } else { Some(Duration::ZERO) };
            let mut acks_arrived = false;
            if let Some(replicator) = shared.node.replicator() {
                if !held.is_empty() {
                    replicator.await_acks(self.index);
                    // An acknowledgement that came before the flag was set woke no one.
                    acks_arrived =
                        held.iter().any(|&key| conns.get(key).is_none_or(|conn| conn.ack_arrived(replicator)));
                    if acks_arrived {
                        timeout = Some(Duration::ZERO);
                    }
                }
                link_wakes.before_sleep(replicator, link.as_mut(), &mut timeout);
            }
            if !idle_timeout.is_zero() {
                wake_by(&mut timeout, next_idle_check);
            }
            if let Some(due) = handshakes.next_due() {
                wake_by(&mut timeout, due);
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("worker {}: poll failed: {e}", self.index);
                break;
            }
            link_wakes.after_poll(events.is_empty());
            if let Some(replicator) = shared.node.replicator()
                && !held.is_empty()
            {
                replicator.awake(self.index);
            }
            let mut link_ready = false;
            for event in events.iter() {
                if event.token() == WAKER {
                    self.adopt(&mut conns, &mut handshakes);
                    // Also rung when the peer acknowledges writes (ack mode).
                    acks_arrived = true;
                    continue;
                }
                if event.token() == LINK {
                    link_ready = true;
                    continue;
                }
                let key = event.token().0;
                let read_closed = event.is_read_closed();
                turn.drive(&mut conns, (&mut yielded, &mut held), &mut link_wakes, key, |c| c.readiness(read_closed));
                // A long turn sends what its first connections wrote without waiting
                // for its end: in ack mode their replies wait on the peer meanwhile.
                if let Some(hosted) = link.as_mut()
                    && link_wakes.pending
                    && hosted.sent.elapsed() >= LINK_WAKE_DELAY
                {
                    hosted.turn(false, &mut link_wakes);
                }
            }
            if let Some(hosted) = link.as_mut()
                && (link_ready || hosted.runner.next_timeout().is_zero())
            {
                // The changes this turn's clients made go in the same turn.
                hosted.turn(link_ready, &mut link_wakes);
                // An acknowledgement this turn read releases replies held here.
                acks_arrived |= !held.is_empty();
            }
            if acks_arrived {
                for key in std::mem::take(&mut held) {
                    turn.drive(&mut conns, (&mut yielded, &mut held), &mut link_wakes, key, |c| c.held = false);
                }
            }
            handshakes.close_overdue(&mut conns, &settle);
            if !idle_timeout.is_zero() && Instant::now() >= next_idle_check {
                next_idle_check = Instant::now() + IDLE_CHECK;
                close_idle(&mut conns, &settle, idle_timeout);
            }
            // Connections that yielded run again now, after everyone else had a turn.
            for key in std::mem::take(&mut yielded) {
                turn.drive(&mut conns, (&mut yielded, &mut held), &mut link_wakes, key, |c| c.queued = false);
            }
            if shared.shutting_down.load(Ordering::Acquire) {
                break;
            }
        }
        if let Some(mut hosted) = link {
            hosted.runner.close_all();
        }
        if let Some(thread) = link_thread {
            thread.shutdown();
        }
        self.finish(&mut conns, &dispatch);
    }

    /// Hosts the replication link this worker was given: its poll becomes one of
    /// this worker's sources. Should that fail, the link runs on a thread of its own.
    fn host_link(&mut self) -> (Option<HostedLink>, Option<LinkThread>) {
        let Some(runner) = self.link.take() else {
            return (None, None);
        };
        let fd = runner.poll_fd();
        match self.poll.registry().register(&mut SourceFd(&fd), LINK, Interest::READABLE) {
            Ok(()) => (Some(HostedLink { runner, events: Events::with_capacity(256), sent: Instant::now() }), None),
            Err(e) => {
                log::warn!("worker {}: cannot host the replication link ({e}); it runs on a thread", self.index);
                match LinkThread::spawn(runner) {
                    Ok(thread) => (None, Some(thread)),
                    Err(e) => {
                        log::error!("replication: cannot start the link thread: {e}");
                        (None, None)
                    }
                }
            }
        }
    }

    /// Registers the connections the acceptor sent.
    fn adopt(&mut self, conns: &mut Slab<Conn>, handshakes: &mut Handshakes) {
        while let Ok(accepted) = self.incoming.try_recv() {
            let entry = conns.vacant_entry();
            let token = Token(entry.key());
            let now = self.shared.node.view().clock().now_secs();
            let info = Arc::new(ConnInfo::new(accepted.stream.as_raw_fd(), accepted.peer, accepted.local, now));
            let mut conn = Conn::new(accepted.stream, Arc::clone(&info));
            if accepted.aspnet {
                conn.speak_aspnet();
            }
            match self.poll.registry().register(&mut conn.stream, token, Interest::READABLE | Interest::WRITABLE) {
                Ok(()) => {
                    if conn.handshaking() {
                        let deadline = Instant::now() + self.shared.config.tls.handshake_timeout;
                        handshakes.pending.push_back((deadline, token.0, Arc::clone(&info)));
                    }
                    self.shared.registry.add(self.index, info);
                    entry.insert(conn);
                }
                Err(e) => {
                    log::warn!("worker {}: cannot register a connection: {e}", self.index);
                    self.shared.connections.closed();
                }
            }
        }
    }

    /// Writes the replies already produced, for a bounded time, then closes everything.
    fn finish(&mut self, conns: &mut Slab<Conn>, dispatch: &Dispatch<'_>) {
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        let mut events = Events::with_capacity(256);
        loop {
            conns.retain(|_, conn| {
                let done = conn.finish(dispatch);
                if done {
                    closed(&self.shared, self.index, conn);
                }
                !done
            });
            let now = Instant::now();
            if conns.is_empty() || now >= deadline {
                break;
            }
            let _ = self.poll.poll(&mut events, Some(deadline - now));
        }
        for conn in conns.drain() {
            closed(&self.shared, self.index, &conn);
        }
    }
}

/// The replication link, hosted in this worker's event loop.
struct HostedLink {
    runner: LinkRunner,
    events: Events,
    /// When it last sent this worker's changes.
    sent: Instant,
}

impl HostedLink {
    /// One turn of the link, which sends every change recorded so far, this
    /// worker's included; with `events_ready` it first takes its poll's events. A
    /// link whose poll fails is closed (the peer sees it gone and the node serves on
    /// alone, as with the peer down). The link has then heard of every change this
    /// worker's connections recorded (`link_wakes`).
    fn turn(&mut self, events_ready: bool, link_wakes: &mut LinkWakes) {
        if self.runner.turn(&mut self.events, events_ready.then_some(Duration::ZERO)).is_err() {
            self.runner.close_all();
        }
        self.sent = Instant::now();
        link_wakes.announced();
    }
}

/// Shortens the poll's `timeout` so that it returns by `deadline`.
fn wake_by(timeout: &mut Option<Duration>, deadline: Instant) {
    wait_at_most(timeout, deadline.saturating_duration_since(Instant::now()));
}

/// Shortens the poll's `timeout` to `wait` at most.
fn wait_at_most(timeout: &mut Option<Duration>, wait: Duration) {
    *timeout = Some(timeout.map_or(wait, |timeout| timeout.min(wait)));
}

/// How often `-o idle_timeout` looks for idle connections (memcached's idle timeout
/// thread also looks once a second).
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// `-o idle_timeout`: closes the connections that have waited for a command that
/// long, and counts them (`idle_kicks`).
fn close_idle(conns: &mut Slab<Conn>, settle: &Settle<'_>, timeout: Duration) {
    let now = settle.shared.node.view().clock().now_secs();
    let limit = u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX);
    let idle: Vec<usize> = conns
        .iter()
        .filter(|(_, conn)| conn.waits_for_input() && conn.info.idle_secs(now) >= limit)
        .map(|(key, _)| key)
        .collect();
    for key in idle {
        let conn = settle.remove(conns, key);
        log::info!("closing {}: idle for {} s (-o idle_timeout)", conn.info.peer, conn.info.idle_secs(now));
        settle.shared.counters[settle.worker].idle_kicks.inc();
    }
}

/// TLS connections whose handshake must finish by a deadline
/// (`--tls-handshake-timeout`): a client that connects and never completes one, or
/// trickles it a byte at a time, is closed then. Deadlines are in adoption order,
/// which is deadline order.
#[derive(Default)]
struct Handshakes {
    pending: VecDeque<(Instant, usize, Arc<ConnInfo>)>,
}

impl Handshakes {
    fn next_due(&self) -> Option<Instant> {
        self.pending.front().map(|(due, ..)| *due)
    }

    fn close_overdue(&mut self, conns: &mut Slab<Conn>, settle: &Settle<'_>) {
        if self.pending.is_empty() {
            return;
        }
        let now = Instant::now();
        while let Some((due, key, info)) = self.pending.front() {
            if *due > now {
                break;
            }
            // The slab slot may hold another connection by now: compare identities.
            let overdue = conns.get(*key).is_some_and(|conn| Arc::ptr_eq(&conn.info, info) && conn.handshaking());
            if overdue {
                log::info!("closing {}: TLS handshake not finished in time", info.peer);
                if let Some(tls) = &settle.shared.tls {
                    tls.count_handshake_error();
                }
                settle.remove(conns, *key);
            }
            self.pending.pop_front();
        }
    }
}

/// When a worker that does not host the link wakes it for the changes its clients
/// made: once it has nothing else to do, or `LINK_WAKE_DELAY` after the first
/// change, whichever comes first. A busy worker thus wakes the link once per round
/// of connections instead of once per connection: each wake-up is a system call
/// here and a context switch on the core the two share, and in ack mode the round's
/// replies wait for the peer together. The worker hosting the link sends at the
/// end of each turn, and within a long turn every `LINK_WAKE_DELAY`.
#[derive(Default)]
struct LinkWakes {
    /// A connection driven since the last announcement recorded changes (its
    /// receipts said so) that the link has not been told of.
    pending: bool,
    /// When the first change not yet announced was made, plus the delay.
    due: Option<Instant>,
    /// This turn's poll was only a check for events (zero timeout), not a wait.
    probing: bool,
    /// The last check found no events: the worker would sleep now.
    idle: bool,
}

/// The longest a change waits for its wake-up of the link. `cargo bench --bench
/// loadgen -- --servers paired-ack,stickless --pipeline 16` measured, against
/// stickless alone: 0.85× with no delay (a wake-up every turn of the event loop),
/// 0.90× at 50 µs, 0.92× at 200 µs and at 1 ms, 0.89× at 5 ms.
const LINK_WAKE_DELAY: Duration = Duration::from_micros(200);

impl LinkWakes {
    /// Whether the link must hear of this thread's changes now; if not yet, turns a
    /// sleeping poll into a check, so that it hears of them before the worker sleeps.
    fn due(&mut self, timeout: &mut Option<Duration>) -> bool {
        self.probing = false;
        if !self.pending {
            self.due = None;
            return false;
        }
        let now = Instant::now();
        let due = *self.due.get_or_insert(now + LINK_WAKE_DELAY);
        if self.idle || now >= due {
            self.announced();
            return true;
        }
        if timeout.is_none() {
            *timeout = Some(Duration::ZERO);
            self.probing = true;
        }
        false
    }

    fn after_poll(&mut self, no_events: bool) {
        self.idle = self.probing && no_events;
    }

    /// Before the worker polls: the link hears of this turn's changes. Hosted here,
    /// they go before the worker sleeps, with no thread to wake, and the link's
    /// timers bound the sleep; elsewhere the link is woken when they are due.
    fn before_sleep(
        &mut self,
        replicator: &Replicator,
        hosted: Option<&mut HostedLink>,
        timeout: &mut Option<Duration>,
    ) {
        match hosted {
            Some(hosted) => {
                if self.pending {
                    hosted.turn(false, self);
                }
                wait_at_most(timeout, hosted.runner.next_timeout());
            }
            None => {
                if self.due(timeout) {
                    replicator.announce();
                }
            }
        }
    }

    /// Takes what a connection's receipts recorded since it was last driven.
    fn note(&mut self, conn: &mut Conn) {
        self.pending |= conn.take_unannounced();
    }

    /// The link has been told (woken, or run by this worker).
    fn announced(&mut self) {
        self.pending = false;
        self.due = None;
    }
}

/// Forgets a connection that is being dropped.
fn closed(shared: &Shared, worker: usize, conn: &Conn) {
    forget(shared, worker, conn);
    shared.connections.closed();
}

/// Takes a connection out of `stats conns` and the watchers, as it leaves the worker.
fn forget(shared: &Shared, worker: usize, conn: &Conn) {
    shared.registry.remove(worker, conn.info.fd);
    if let Some(watcher) = conn.watcher() {
        shared.watch.remove(watcher);
    }
}

/// Where a driven connection goes next, by its [`Status`]; and dropping one.
/// What driving a connection needs, for every place the loop drives one.
struct Turn<'a> {
    dispatch: &'a Dispatch<'a>,
    limits: Limits,
    reqs_per_event: usize,
    settle: &'a Settle<'a>,
}

impl Turn<'_> {
    /// Drives connection `key` (after `prepare`), tells `link_wakes` what its receipts
    /// recorded, and settles where it goes next.
    fn drive(
        &self,
        conns: &mut Slab<Conn>,
        lists: (&mut Vec<usize>, &mut Vec<usize>),
        link_wakes: &mut LinkWakes,
        key: usize,
        prepare: impl FnOnce(&mut Conn),
    ) {
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        prepare(conn);
        let status = conn.drive(self.dispatch, &self.limits, self.reqs_per_event);
        link_wakes.note(conn);
        self.settle.status(conns, lists, key, status);
    }
}

struct Settle<'a> {
    /// The worker's poll, to deregister a connection that leaves it.
    registry: mio::Registry,
    shared: &'a Shared,
    worker: usize,
}

impl Settle<'_> {
    fn status(
        &self,
        conns: &mut Slab<Conn>,
        (yielded, held): (&mut Vec<usize>, &mut Vec<usize>),
        key: usize,
        status: Status,
    ) {
        match status {
            Status::Idle => {}
            Status::Yielded => {
                let conn = &mut conns[key];
                if !conn.queued {
                    conn.queued = true;
                    yielded.push(key);
                }
            }
            Status::AwaitingAck => {
                let conn = &mut conns[key];
                if !conn.held {
                    conn.held = true;
                    held.push(key);
                }
            }
            Status::Closed => {
                self.remove(conns, key);
            }
            Status::WatchOverTls(kinds) => {
                // The connection leaves this worker: from now on the watch writer owns
                // it, seals its lines, and notices the client leaving. It stays in
                // curr_connections until then.
                let conn = conns.remove(key);
                forget(self.shared, self.worker, &conn);
                let open = self.shared.connections.handed_over();
                let mut stream = conn.into_stream();
                let _ = self.registry.deregister(&mut stream);
                if let Stream::Tls(tls) = stream
                    && let Err((refused, mut sink)) = self.shared.watch.add(kinds, WatchSink::Tls(tls, open), b"OK\r\n")
                {
                    // Said, then closed: the connection has left its worker.
                    sink.refuse(refused.line());
                }
            }
        }
    }

    /// Takes a connection out of the worker, forgotten by the registry and counts.
    fn remove(&self, conns: &mut Slab<Conn>, key: usize) -> Conn {
        let conn = conns.remove(key);
        closed(self.shared, self.worker, &conn);
        conn
    }
}
