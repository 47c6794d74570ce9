//! The link: one mio `Poll` for the replication listener, the peer links, and the
//! waker the store's observer rings when changes are recorded. It runs on a thread
//! of its own ([`LinkThread`]) until the server's first worker takes it over
//! ([`LinkRunner`], hosted in that worker's event loop): a write recorded there
//! then reaches the peer, and the peer's acknowledgement releases the reply, with
//! no thread woken in between (on a core shared with the link thread, each such
//! wake-up was a context switch; see BENCHMARKS.md, "Where ack mode's time goes").
//!
//! What it decides (which link to keep, when to dial and to send) is
//! `links.rs`'s, which this loop feeds with sockets and the time.
//!
//! Clients never wait for this thread: it reads the backlog under its lock in
//! short batches and the store one shard slice at a time, and its output per link
//! is bounded; a peer that does not keep up falls behind the backlog and is sent a
//! full sync when it returns (finding 4: repcached froze its master instead).

use super::heartbeat::LinkTime;
use super::links::{BURST, Links, Now, Transport};
use super::replicator::Replicator;
use crate::tls::MaybeTls;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);
/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes read (and applied) from one link per turn: the peer's full sync arrives in
/// turns like those it is sent in ([`BURST`]), so that the worker hosting the link
/// answers its clients between them.
const READ_TURN: usize = BURST;
/// A link's socket and what its reads left.
struct Socket {
    /// Mutual TLS over TCP under `--repl-tls-*`.
    stream: MaybeTls,
    input: Vec<u8>,
    /// Bytes of `input` received and not yet used.
    filled: usize,
    /// The last turn stopped reading at `READ_TURN` with input left: the next turn
    /// reads on, unprompted (the poll is edge-triggered).
    unread: bool,
    /// The poll said the peer shut its side: read to the end rather than take a short
    /// read as drained, or its EOF (whose edge came with the last data) goes unheard
    /// until the heartbeat gives up.
    peer_closed: bool,
}

impl Transport for Socket {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.stream.write(bytes)
    }
    fn push(&mut self) -> io::Result<()> {
        // What the socket does not take yet goes with its writable event.
        self.stream.push().map(|_| ())
    }
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
                if runner.links.is_busy() {
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

/// The link's event loop, run one turn at a time by its thread or by the worker
/// that hosts it.
pub struct LinkRunner {
    replicator: Arc<Replicator>,
    poll: Poll,
    waker: Arc<Waker>,
    local_addr: Option<SocketAddr>,
    /// None for a node that only dials (an embedded node not given --repl-listen).
    listener: Option<TcpListener>,
    links: Links<Socket>,
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
        let links = Links::new(Arc::clone(&replicator));
        Ok(LinkRunner { replicator, poll, waker, local_addr, listener, links, keys: Vec::new() })
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
        self.links.next_timeout(self.now())
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
                            link.io.peer_closed = true;
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
        self.links.close_all();
    }

    fn now(&self) -> Now {
        let clock = self.replicator.store.clock();
        Now { link: LinkTime { wall_ms: clock.now_ms(), mono_ms: clock.mono_ms() }, micros: self.replicator.micros() }
    }

    /// Reads what the last turn left unread, sends what is due on every link,
    /// checks heartbeats when due, and dials.
    fn service(&mut self) {
        // A worker hosting the link runs this every turn: the keys' list is reused.
        let mut keys = std::mem::take(&mut self.keys);
        self.links.keys_into(&mut keys);
        let mut unread = false;
        for &key in &keys {
            if self.links.get_mut(key).is_some_and(|link| link.io.unread) {
                self.read(key);
                unread |= self.links.get_mut(key).is_some_and(|link| link.io.unread);
            }
        }
        self.keys = keys;
        // One reading of the clocks for the turn's decisions (three clock reads).
        let now = self.now();
        self.links.service(now);
        if unread {
            self.links.keep_busy();
        }
        while let Some(index) = self.links.dial_due(now) {
            self.dial(index);
        }
        self.links.publish_state();
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

    /// Takes a link just accepted, or dialed to `--peer` number `index` (`host`: the
    /// name the peer's certificate must carry, for a dial over TLS).
    fn adopt(&mut self, stream: TcpStream, peer: SocketAddr, dialed: Option<(usize, &str)>) {
        let _ = stream.set_nodelay(true);
        let mut stream = match &self.replicator.settings.tls {
            None => MaybeTls::Plain(stream),
            Some(tls) => {
                let wrapped = match dialed {
                    None => tls.accept(stream),
                    Some((_, host)) => tls.connect(stream, host),
                };
                match wrapped {
                    Ok(stream) => MaybeTls::Tls(Box::new(stream)),
                    Err(e) => {
                        log::warn!("replication: cannot start TLS with {peer}: {e}");
                        return;
                    }
                }
            }
        };
        // The link's token is the key the links will give it.
        let key = self.links.vacant_key();
        if let Err(e) =
            self.poll.registry().register(stream.socket(), Token(key), Interest::READABLE | Interest::WRITABLE)
        {
            log::warn!("replication: cannot register a link: {e}");
            return;
        }
        let socket = Socket { stream, input: Vec::new(), filled: 0, unread: false, peer_closed: false };
        let adopted = self.links.adopt(socket, peer, dialed.map(|(index, _)| index), self.now());
        debug_assert!(adopted.is_none_or(|adopted| adopted == key));
    }

    fn dial(&mut self, index: usize) {
        let Some(peer) = self.replicator.settings.peers.get(index).cloned() else {
            return;
        };
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
            Ok(stream) => self.adopt(stream, addr, Some((index, host))),
            Err(e) => log::debug!("replication: dialing {addr}: {e}"),
        }
    }

    fn read(&mut self, key: usize) {
        let now = self.now();
        let replicator = &self.replicator;
        let Some(link) = self.links.get_mut(key) else {
            return;
        };
        let peer = link.peer;
        let socket = &mut link.io;
        let mut outcome = Ok(());
        let mut taken = 0;
        socket.unread = false;
        // What the read that completed the handshake left, now that the link is kept.
        if socket.filled != 0 && link.session.is_ready() {
            match link.session.receive(replicator, &socket.input[..socket.filled], now.link) {
                Ok(used) => {
                    socket.input.copy_within(used..socket.filled, 0);
                    socket.filled -= used;
                }
                Err(reason) => outcome = Err(reason),
            }
        }
        while outcome.is_ok() {
            // `input` keeps its length (zeroed once) and `filled` marks the data, so a
            // read does not clear the buffer first.
            if socket.input.len() - socket.filled < READ_CHUNK {
                let grown = (socket.filled + READ_CHUNK).max(socket.input.len() * 2);
                socket.input.resize(grown, 0);
            }
            let space = socket.input.len() - socket.filled;
            let drained = match socket.stream.read(&mut socket.input[socket.filled..]) {
                Ok(0) => {
                    outcome = Err("the peer closed the link".to_string());
                    break;
                }
                Ok(n) => {
                    socket.filled += n;
                    taken += n;
                    // A short read took all there was; the next input brings an event
                    // (the poll is edge-triggered), so no read just to hear WouldBlock;
                    // but no event follows the peer's EOF once it has been signalled.
                    n < space && !socket.peer_closed
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::InvalidData if is_plaintext_on_tls(&e) => {
                        replicator.stats.tls_mismatches.fetch_add(1, Ordering::Relaxed);
                        outcome = Err(format!("{peer} sent plaintext, not TLS: {ONE_SIDED_TLS}"));
                        break;
                    }
                    io::ErrorKind::InvalidData => {
                        // TLS refused the peer (a certificate from another CA) or
                        // the bytes: said at the default verbosity, as a wrong secret is.
                        log::warn!("replication: TLS with {peer}: {e}");
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
            if matches!(socket.stream, MaybeTls::Plain(_))
                && !link.session.met_peer()
                && starts_like_tls(&socket.input[..socket.filled])
            {
                replicator.stats.tls_mismatches.fetch_add(1, Ordering::Relaxed);
                outcome = Err(format!("{peer} speaks TLS and this node does not: {ONE_SIDED_TLS}"));
                break;
            }
            // Apply as we go, so a long burst is not buffered whole.
            match link.session.receive(replicator, &socket.input[..socket.filled], now.link) {
                Ok(used) => {
                    socket.input.copy_within(used..socket.filled, 0);
                    socket.filled -= used;
                }
                Err(reason) => {
                    outcome = Err(reason);
                    break;
                }
            }
            if link.session.just_ready {
                // Handled once the link is kept ([`LinkSession::receive`]).
                socket.unread = true;
                break;
            }
            if drained {
                break;
            }
            if taken >= READ_TURN {
                socket.unread = true;
                break;
            }
        }
        self.links.after_read(key, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ManualClock;
    use std::io::Write;
    use std::net::Shutdown;
    use std::time::Instant;

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
