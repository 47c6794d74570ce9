//! `watch`: connections that receive a line for each fetch, store, deletion or
//! eviction, in memcached's log format (logger.c), for instance
//! `ts=1700000000.123456 gid=7 type=item_store key=foo status=stored cmd=set ttl=0
//! clsid=1 cfd=12 size=3`.
//!
//! While nobody watches, a command pays one relaxed load of [`Watch::wants`]. With
//! watchers, a line is formatted once and appended to each interested watcher's
//! bounded buffer under a short lock; a writer thread sends the buffers, so no
//! command ever waits on a watcher's socket. A watcher that cannot keep up loses
//! lines, and is told how many with a `[skipped: N]` line, as memcached does.

use crate::protocol::WatchKinds;
use crate::server::OpenConnection;
use crate::store::Evicted;
use crate::tls::TlsStream;
use socket2::Socket;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// memcached's limit on simultaneous watchers (logger.h `WATCHER_LIMIT`).
pub const WATCHER_LIMIT: usize = 20;
/// Bytes a watcher may have waiting before lines are skipped (memcached's
/// `LOGGER_WATCHER_BUF_SIZE`).
const WATCHER_BUFFER: usize = 256 * 1024;
/// How often the writer looks at watchers when no line has woken it: often enough to
/// notice a watcher that went away.
const WRITER_IDLE_TICK: Duration = Duration::from_millis(100);

/// Why a `watch` was refused, with memcached's replies (proto_text.c).
#[derive(Debug, PartialEq, Eq)]
pub enum WatchRefused {
    TooMany,
    Failed,
}

impl WatchRefused {
    pub fn line(&self) -> &'static [u8] {
        match self {
            WatchRefused::TooMany => b"WATCHER_TOO_MANY log watcher limit reached\r\n",
            WatchRefused::Failed => b"WATCHER_FAILED failed to add log watcher\r\n",
        }
    }
}

/// Lines waiting for a watcher's socket.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Lines dropped because `bytes` was full.
    skipped: u64,
}

/// Where a watcher's lines go.
pub enum WatchSink {
    /// A duplicate of the connection's socket (the connection stays with its
    /// worker, which reads it only to notice the client leaving).
    Socket(Socket),
    /// A TLS connection, handed over whole: the lines must be sealed, and the writer
    /// reads it to notice the client leaving. Counted as open while it is kept.
    Tls(Box<TlsStream>, OpenConnection),
}

impl WatchSink {
    /// Writes what the connection takes now, without blocking.
    fn send(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            // MSG_NOSIGNAL: a watcher that hung up must not raise SIGPIPE in a host
            // process that embeds the server.
            WatchSink::Socket(socket) => socket.send_with_flags(bytes, libc::MSG_NOSIGNAL),
            WatchSink::Tls(tls, _) => tls.write(bytes),
        }
    }

    /// Says why a watch was refused, as far as the connection takes it at once.
    pub fn refuse(&mut self, line: &[u8]) {
        let _ = self.send(line);
        let _ = self.settle();
    }

    /// After a round of writes: TLS sends what it sealed, and says whether the
    /// client is still there (its input is read and dropped, as memcached drops a
    /// watcher's).
    fn settle(&mut self) -> io::Result<()> {
        let WatchSink::Tls(tls, _) = self else {
            return Ok(());
        };
        tls.push()?;
        let mut discard = [0u8; 1024];
        loop {
            match tls.read(&mut discard) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// One watching connection.
pub struct Watcher {
    kinds: u8,
    /// Written by the writer thread only.
    sink: Mutex<WatchSink>,
    pending: Mutex<Pending>,
    /// Bytes the writer took from `pending` and the socket has not yet accepted.
    outbox: Mutex<Vec<u8>>,
}

/// Every watcher, and the writer thread that feeds them.
#[derive(Default)]
pub struct Watch {
    /// The union of the watchers' kinds: zero while nobody watches.
    wanted: AtomicU8,
    watchers: Mutex<Vec<Arc<Watcher>>>,
    /// memcached's `gid`: one number per logged event, across all watchers.
    gid: AtomicU64,
    writer: OnceLock<Thread>,
    stopping: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Watch {
    /// Whether anyone watches this kind of event; the only cost when nobody does.
    #[inline]
    pub fn wants(&self, kind: u8) -> bool {
        self.wanted.load(Ordering::Relaxed) & kind != 0
    }

    /// Starts the writer thread (once).
    pub fn start_writer(self: &Arc<Self>) -> io::Result<std::thread::JoinHandle<()>> {
        let watch = Arc::clone(self);
        let handle = std::thread::Builder::new().name("watch".into()).spawn(move || watch.write_loop())?;
        let _ = self.writer.set(handle.thread().clone());
        Ok(handle)
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.wake_writer();
    }

    fn wake_writer(&self) {
        if let Some(writer) = self.writer.get() {
            writer.unpark();
        }
    }

    /// Adds a watcher writing to `sink` (non-blocking). `greeting` (the `OK`) is
    /// sent first, before any log line.
    /// A refused sink comes back, to say why on it.
    pub fn add(
        &self,
        kinds: WatchKinds,
        sink: WatchSink,
        greeting: &[u8],
    ) -> Result<Arc<Watcher>, (WatchRefused, WatchSink)> {
        let mut watchers = lock(&self.watchers);
        if watchers.len() >= WATCHER_LIMIT {
            return Err((WatchRefused::TooMany, sink));
        }
        if self.writer.get().is_none() {
            return Err((WatchRefused::Failed, sink));
        }
        let pending = Pending { bytes: greeting.to_vec(), skipped: 0 };
        let watcher = Arc::new(Watcher {
            kinds: kinds.0,
            sink: Mutex::new(sink),
            pending: Mutex::new(pending),
            outbox: Mutex::default(),
        });
        watchers.push(Arc::clone(&watcher));
        self.wanted.fetch_or(kinds.0, Ordering::Relaxed);
        drop(watchers);
        self.wake_writer();
        Ok(watcher)
    }

    /// Forgets a watcher (its connection closed, or its socket failed).
    pub fn remove(&self, watcher: &Arc<Watcher>) {
        let mut watchers = lock(&self.watchers);
        watchers.retain(|w| !Arc::ptr_eq(w, watcher));
        let wanted = watchers.iter().fold(0, |acc, w| acc | w.kinds);
        self.wanted.store(wanted, Ordering::Relaxed);
    }

    /// Formats one event (after `ts=… gid=…`) and queues it for every watcher of `kind`.
    fn emit(&self, kind: u8, body: std::fmt::Arguments<'_>) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let gid = self.gid.fetch_add(1, Ordering::Relaxed) + 1;
        let mut line = Vec::with_capacity(160);
        let _ = write!(line, "ts={}.{:06} gid={gid} ", now.as_secs(), now.subsec_micros());
        let _ = line.write_fmt(body);
        line.push(b'\n');
        let mut wake = false;
        for watcher in lock(&self.watchers).iter().filter(|w| w.kinds & kind != 0) {
            let mut pending = lock(&watcher.pending);
            if pending.bytes.len() + line.len() > WATCHER_BUFFER {
                pending.skipped += 1;
                continue;
            }
            wake |= pending.bytes.is_empty();
            pending.bytes.extend_from_slice(&line);
        }
        if wake {
            self.wake_writer();
        }
    }

    /// A storage command's outcome (memcached's `LOGGER_ITEM_STORE`).
    pub fn item_store(&self, event: &StoreEvent<'_>) {
        let StoreEvent { key, status, cmd, ttl, cfd, size } = *event;
        let key = EscapedKey(key);
        self.emit(
            WatchKinds::MUTATIONS,
            format_args!("type=item_store key={key} status={status} cmd={cmd} ttl={ttl} clsid=1 cfd={cfd} size={size}"),
        );
    }

    /// A read (memcached's `LOGGER_ITEM_GET`); `size` is the value's length on a hit.
    pub fn item_get(&self, key: &[u8], size: Option<usize>, cfd: i32) {
        let key = EscapedKey(key);
        let (status, clsid, size) = match size {
            Some(size) => ("found", 1, size),
            None => ("not_found", 0, 0),
        };
        self.emit(
            WatchKinds::FETCHERS,
            format_args!("type=item_get key={key} status={status} clsid={clsid} cfd={cfd} size={size}"),
        );
    }

    /// An ASP.NET State Server request: its method (with `Exclusive`, if any), its
    /// key, the status it was answered with, and the session's size. `kind` is
    /// `mutations` for a request that may write, `fetchers` for one that reads.
    pub fn aspnet_request(&self, kind: u8, request: &AspNetEvent<'_>) {
        let AspNetEvent { method, exclusive, key, status, cfd, size } = *request;
        let key = EscapedKey(key);
        self.emit(
            kind,
            format_args!(
                "type=aspnet method={method} exclusive={exclusive} key={key} status={status} cfd={cfd} size={size}"
            ),
        );
    }

    /// A deletion by `delete`, `md` or the binary DELETE (memcached's `LOGGER_DELETIONS`).
    pub fn deleted(&self, key: &[u8], cmd: &str, size: usize) {
        let key = EscapedKey(key);
        self.emit(WatchKinds::DELETIONS, format_args!("type=deleted key={key} cmd={cmd} clsid=1 size={size}"));
    }

    /// A replication link's event: up, down (with the reason), or a resync it
    /// starts sending (with where from).
    pub fn link(&self, event: &crate::replication::replicator::LinkEvent<'_>) {
        let address = event.address.map(|address| address.to_string()).unwrap_or_default();
        let detail = EscapedKey(event.detail.as_bytes());
        self.emit(
            WatchKinds::REPLICATION,
            format_args!("type=repl_link peer={} addr={address} event={} detail={detail}", event.peer, event.event),
        );
    }

    /// An eviction (memcached's `LOGGER_EVICTION`); `ttl=-1` means no expiry.
    pub fn evicted(&self, item: &Evicted<'_>) {
        let key = EscapedKey(item.key);
        let fetch = if item.fetched { "yes" } else { "no" };
        let ttl = item.ttl.map_or(-1, i64::from);
        let (idle, size) = (item.idle, item.value_len);
        self.emit(
            WatchKinds::EVICTIONS,
            format_args!("type=eviction key={key} fetch={fetch} ttl={ttl} la={idle} clsid=1 size={size}"),
        );
    }

    /// The writer thread: moves each watcher's lines to its socket, without ever
    /// blocking on one, until the server stops.
    fn write_loop(&self) {
        while !self.stopping.load(Ordering::Acquire) {
            let watchers: Vec<Arc<Watcher>> = lock(&self.watchers).clone();
            if watchers.is_empty() {
                std::thread::park();
                continue;
            }
            for watcher in &watchers {
                if let Err(e) = watcher.send() {
                    log::info!("watcher gone: {e}");
                    self.remove(watcher);
                }
            }
            std::thread::park_timeout(WRITER_IDLE_TICK);
        }
    }
}

impl Watcher {
    /// Writes what the socket takes now; the rest waits for the next round.
    fn send(&self) -> io::Result<()> {
        let mut outbox = lock(&self.outbox);
        {
            let mut pending = lock(&self.pending);
            if pending.skipped > 0 {
                let _ = writeln!(outbox, "[skipped: {}]", pending.skipped);
                pending.skipped = 0;
            }
            if outbox.is_empty() {
                std::mem::swap(&mut *outbox, &mut pending.bytes);
            } else {
                outbox.extend_from_slice(&pending.bytes);
                pending.bytes.clear();
            }
        }
        let mut sink = lock(&self.sink);
        let mut written = 0;
        let result = loop {
            if written == outbox.len() {
                break sink.settle();
            }
            match sink.send(&outbox[written..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        outbox.drain(..written);
        result
    }
}

/// What [`Watch::aspnet_request`] logs.
#[derive(Clone, Copy, Debug)]
pub struct AspNetEvent<'a> {
    pub method: &'static str,
    /// `acquire`, `release` or `none`.
    pub exclusive: &'static str,
    pub key: &'a [u8],
    pub status: u16,
    pub cfd: i32,
    /// The session's bytes sent or received.
    pub size: usize,
}

/// What [`Watch::item_store`] logs.
#[derive(Clone, Copy, Debug)]
pub struct StoreEvent<'a> {
    pub key: &'a [u8],
    /// memcached's status words: `stored`, `exists`, `not_found`, `not_stored`,
    /// `too_large`, `no_memory`.
    pub status: &'static str,
    pub cmd: &'static str,
    /// Seconds the stored item has to live; 0 when it never expires.
    pub ttl: u32,
    pub cfd: i32,
    pub size: usize,
}

/// A key as it appears in a log line: printable bytes as they are, and anything that
/// would break the line (spaces, control bytes, which binary-protocol keys may hold)
/// as `%XX`.
struct EscapedKey<'a>(&'a [u8]);

impl std::fmt::Display for EscapedKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for &byte in self.0 {
            if byte.is_ascii_graphic() && byte != b'%' {
                write!(f, "{}", byte as char)?;
            } else {
                write!(f, "%{byte:02X}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    fn watcher_pair(watch: &Watch, kinds: u8) -> (Arc<Watcher>, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let added = watch.add(WatchKinds(kinds), WatchSink::Socket(Socket::from(ours)), b"");
        (added.ok().expect("room for a watcher"), theirs)
    }

    #[test]
    fn lines_reach_only_the_watchers_of_their_kind() {
        let watch = Watch::default();
        let _ = watch.writer.set(std::thread::current());
        assert!(!watch.wants(WatchKinds::MUTATIONS));
        let (muts, mut mut_peer) = watcher_pair(&watch, WatchKinds::MUTATIONS);
        let (dels, _del_peer) = watcher_pair(&watch, WatchKinds::DELETIONS);
        assert!(watch.wants(WatchKinds::MUTATIONS) && watch.wants(WatchKinds::DELETIONS));
        assert!(!watch.wants(WatchKinds::EVICTIONS));
        let event = StoreEvent { key: b"a b", status: "stored", cmd: "set", ttl: 0, cfd: 9, size: 3 };
        watch.item_store(&event);
        muts.send().unwrap();
        dels.send().unwrap();
        let mut got = vec![0; 512];
        let n = mut_peer.read(&mut got).unwrap();
        let line = String::from_utf8(got[..n].to_vec()).unwrap();
        let body = line.split_once(" gid=1 ").expect("first event").1;
        assert!(line.starts_with("ts="), "{line}");
        assert_eq!(body, "type=item_store key=a%20b status=stored cmd=set ttl=0 clsid=1 cfd=9 size=3\n");
        assert!(lock(&dels.outbox).is_empty() && lock(&dels.pending).bytes.is_empty());
        watch.remove(&muts);
        assert!(!watch.wants(WatchKinds::MUTATIONS) && watch.wants(WatchKinds::DELETIONS));
    }

    #[test]
    fn a_full_buffer_skips_lines_and_says_how_many() {
        let watch = Watch::default();
        let _ = watch.writer.set(std::thread::current());
        let (watcher, mut peer) = watcher_pair(&watch, WatchKinds::DELETIONS);
        let key = [b'k'; 200];
        let mut lines = 0;
        while lock(&watcher.pending).skipped < 3 {
            watch.deleted(&key, "delete", 1);
            lines += 1;
        }
        assert!(lines > WATCHER_BUFFER / 300);
        watcher.send().unwrap();
        let mut got = vec![0; 64];
        let n = peer.read(&mut got).unwrap();
        assert!(got[..n].starts_with(b"[skipped: 3]\n"), "{:?}", String::from_utf8_lossy(&got[..n]));
    }

    #[test]
    fn refuses_past_the_limit() {
        let watch = Watch::default();
        let _ = watch.writer.set(std::thread::current());
        let peers: Vec<_> = (0..WATCHER_LIMIT).map(|_| watcher_pair(&watch, WatchKinds::FETCHERS)).collect();
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let refused = watch.add(WatchKinds(WatchKinds::FETCHERS), WatchSink::Socket(Socket::from(ours)), b"OK\r\n");
        assert_eq!(refused.err().map(|(why, _)| why), Some(WatchRefused::TooMany));
        drop(peers);
    }
}
