//! The load engine: connections driven from one thread, each keeping `pipeline`
//! requests in flight the way memtier_benchmark's clients do, every reply checked
//! against the request it answers, and latencies recorded in an HDR histogram.

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Normal};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stickless::tls::{MaybeTls, TlsStream};

/// memtier_benchmark's default `--key-prefix`.
pub const KEY_PREFIX: &[u8] = b"memtier-";

/// The longest a load may take: a million 4 KiB sessions (row warm) take about a
/// minute here.
const LOAD_DEADLINE: Duration = Duration::from_secs(300);

/// Pipeline depth used to load the key space (memtier's load runs use deep pipelines too).
const LOAD_PIPELINE: usize = 64;

/// Latencies above this are clamped; a minute is far past any sane reply.
const HISTOGRAM_MAX_NS: u64 = 60_000_000_000;

/// How keys are drawn, as memtier's `--key-pattern`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPattern {
    /// `R`: uniform over `1..=key_maximum`.
    Uniform,
    /// `G`: normal around the middle of the key space with a sixth of the range as
    /// standard deviation (memtier's defaults for `--key-median`/`--key-stddev`).
    Gaussian,
}

/// Which memcached protocol the requests use, as memtier's `--protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `memcache_text`: `get` and `set` lines.
    Text,
    /// `memcache_binary`: GET and SET packets (memcached's protocol_binary.h).
    Binary,
}

impl Protocol {
    pub fn memtier_name(self) -> &'static str {
        match self {
            Protocol::Text => "memcache_text",
            Protocol::Binary => "memcache_binary",
        }
    }
}

/// Binary protocol constants (memcached's protocol_binary.h).
mod binary {
    pub const REQUEST_MAGIC: u8 = 0x80;
    pub const RESPONSE_MAGIC: u8 = 0x81;
    pub const OPCODE_GET: u8 = 0x00;
    pub const OPCODE_SET: u8 = 0x01;
    pub const HEADER_LEN: usize = 24;
    pub const STATUS_SUCCESS: u16 = 0x0000;
    pub const STATUS_KEY_ENOENT: u16 = 0x0001;
    /// SET's extras: flags and exptime, four bytes each.
    pub const SET_EXTRAS_LEN: u8 = 8;
}

/// A PHP session handler's lock cycle, as its extension puts it on the wire
/// (shared reference `session-semantics.md`, table 3.1). Each connection is one
/// user's browser: it locks a session, reads it, writes it back and unlocks it,
/// over sessions of its own, so locks are never contended between connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionLock {
    /// php-memcached 3.x: `add <sid>.lock` → `get <sid>` → `set <sid>` → `delete
    /// <sid>.lock`, one request per round trip.
    PhpMemcached,
    /// pecl memcache 3/4: `incr <sid>.lock 1`, `add <sid>.lock 0 15 "1"` and `get
    /// <sid>` pipelined; then `set <sid>`; then `set <sid>.lock "0"`.
    PeclMemcache,
}

impl SessionLock {
    pub fn name(self) -> &'static str {
        match self {
            SessionLock::PhpMemcached => "php-memcached",
            SessionLock::PeclMemcache => "pecl memcache",
        }
    }

    /// The requests of each round trip of one cycle; the last of each is marked.
    fn steps(self) -> &'static [(Op, bool)] {
        match self {
            SessionLock::PhpMemcached => {
                &[(Op::LockAdd, true), (Op::Get, true), (Op::Set, true), (Op::LockDelete, true)]
            }
            SessionLock::PeclMemcache => &[
                (Op::LockIncr, false),
                (Op::LockAdd, false),
                (Op::Get, true),
                (Op::Set, true),
                (Op::LockRelease, true),
            ],
        }
    }

    /// The lock's exptime: php-memcached's `sess_lock_expire` falls back to
    /// `max_execution_time` (30 s by default), pecl memcache's `lock_timeout` is 15 s.
    fn lock_exptime(self) -> &'static [u8] {
        match self {
            SessionLock::PhpMemcached => b"30",
            SessionLock::PeclMemcache => b"15",
        }
    }
}

/// The lock key of session `key`.
const LOCK_SUFFIX: &[u8] = b".lock";

/// One workload, with memtier_benchmark's knobs.
#[derive(Clone, Debug)]
pub struct Workload {
    pub protocol: Protocol,
    pub connections: usize,
    pub pipeline: usize,
    /// `--ratio SETS:GETS`.
    pub sets: u32,
    pub gets: u32,
    pub key_pattern: KeyPattern,
    pub key_maximum: u64,
    pub data_size: usize,
    /// Session lock cycles instead of the set:get ratio (text protocol only).
    pub session_lock: Option<SessionLock>,
}

/// What one thread's share of a run produced.
pub struct Outcome {
    pub sets: u64,
    pub gets: u64,
    pub hits: u64,
    pub misses: u64,
    /// Lock requests (`add`, `incr`, `delete` or `set` of a lock key) that locked or
    /// unlocked as a lone client expects.
    pub locks: u64,
    /// Lock requests that found the lock already held: a cycle of an earlier run
    /// that the end of its run cut short.
    pub contended: u64,
    /// Session lock cycles completed.
    pub cycles: u64,
    /// Error replies (`SERVER_ERROR ...`, `ERROR`) and values that were not the ones stored.
    pub errors: u64,
    /// Latency of every completed request, in nanoseconds.
    pub latency: Histogram<u64>,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            sets: 0,
            gets: 0,
            hits: 0,
            misses: 0,
            locks: 0,
            contended: 0,
            cycles: 0,
            errors: 0,
            latency: Histogram::new_with_bounds(1, HISTOGRAM_MAX_NS, 3).expect("valid histogram bounds"),
        }
    }

    pub fn ops(&self) -> u64 {
        self.sets + self.gets + self.locks + self.contended
    }

    pub fn merge(&mut self, other: &Outcome) {
        self.sets += other.sets;
        self.gets += other.gets;
        self.hits += other.hits;
        self.misses += other.misses;
        self.locks += other.locks;
        self.contended += other.contended;
        self.cycles += other.cycles;
        self.errors += other.errors;
        self.latency.add(&other.latency).expect("histograms with the same bounds");
    }

    fn count(&mut self, reply: Reply, latency_ns: u64) {
        match reply {
            Reply::Stored => self.sets += 1,
            Reply::Hit => {
                self.gets += 1;
                self.hits += 1;
            }
            Reply::Miss => {
                self.gets += 1;
                self.misses += 1;
            }
            Reply::Locked => self.locks += 1,
            Reply::Contended => self.contended += 1,
            Reply::Error => self.errors += 1,
        }
        self.latency.saturating_record(latency_ns.max(1));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Set,
    Get,
    /// `add <sid>.lock`.
    LockAdd,
    /// `incr <sid>.lock 1`.
    LockIncr,
    /// `delete <sid>.lock`.
    LockDelete,
    /// `set <sid>.lock "0"`.
    LockRelease,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    Stored,
    Hit,
    Miss,
    Locked,
    Contended,
    Error,
}

struct Pending {
    op: Op,
    key: u64,
    sent: Instant,
    /// The last reply of a session lock cycle.
    ends_cycle: bool,
}

/// Writes `memtier-<key>` into `buf` and returns it.
fn key_bytes(key: u64, buf: &mut [u8; 32]) -> &[u8] {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(key).as_bytes();
    let len = KEY_PREFIX.len() + digits.len();
    buf[..KEY_PREFIX.len()].copy_from_slice(KEY_PREFIX);
    buf[KEY_PREFIX.len()..len].copy_from_slice(digits);
    &buf[..len]
}

/// Where the next request's key and kind come from.
enum Source {
    /// The load phase: every key once, in order, spread over the connections.
    Sequential { next: u64, step: u64, last: u64 },
    /// The measured workload.
    Random { rng: SmallRng, normal: Option<Normal<f64>>, issued: u64 },
    /// Session lock cycles over the sessions `first + k * stride` (this connection's).
    Sessions { rng: SmallRng, style: SessionLock, first: u64, stride: u64, key: u64, step: usize },
}

impl Source {
    /// The next request, and whether its reply must come before the next is sent (the
    /// end of a session cycle's round trip; the pipeline depth governs the others).
    fn next(&mut self, workload: &Workload) -> Option<(Op, u64, bool)> {
        match self {
            Source::Sequential { next, step, last } => {
                if *next > *last {
                    return None;
                }
                let key = *next;
                *next += *step;
                Some((Op::Set, key, false))
            }
            Source::Sessions { rng, style, first, stride, key, step } => {
                let steps = style.steps();
                if *step == 0 {
                    let sessions = ((workload.key_maximum - *first) / *stride).max(1);
                    *key = *first + *stride * rng.random_range(0..sessions);
                }
                let (op, ends_round) = steps[*step];
                *step = (*step + 1) % steps.len();
                Some((op, *key, ends_round))
            }
            Source::Random { rng, normal, issued } => {
                let cycle = u64::from(workload.sets + workload.gets);
                let op = if *issued % cycle < u64::from(workload.sets) { Op::Set } else { Op::Get };
                *issued += 1;
                let key = match normal {
                    None => rng.random_range(1..=workload.key_maximum),
                    Some(normal) => (normal.sample(rng).round() as i64).clamp(1, workload.key_maximum as i64) as u64,
                };
                Some((op, key, false))
            }
        }
    }
}

/// Parses the reply at the head of `buf` for `pending`; `None` until it is complete.
fn parse_reply(buf: &[u8], pending: &Pending, workload: &Workload) -> io::Result<Option<(usize, Reply)>> {
    let Some(eol) = memchr::memmem::find(buf, b"\r\n") else {
        return Ok(None);
    };
    let line = &buf[..eol];
    let line_len = eol + 2;
    let lone = Some((line_len, Reply::Locked));
    let contended = Some((line_len, Reply::Contended));
    match pending.op {
        Op::Set if line == b"STORED" => Ok(Some((line_len, Reply::Stored))),
        Op::Get if line == b"END" => Ok(Some((line_len, Reply::Miss))),
        Op::LockAdd if line == b"STORED" => Ok(lone),
        // pecl memcache's add follows its incr, and is refused whenever the lock key
        // exists (the incr then took the lock); php-memcached's add is the lock.
        Op::LockAdd if line == b"NOT_STORED" => match workload.session_lock {
            Some(SessionLock::PeclMemcache) => Ok(lone),
            _ => Ok(contended),
        },
        // Unlocked is "0", so the incr that takes it makes 1; no key yet, the add takes it.
        Op::LockIncr if line == b"1" || line == b"NOT_FOUND" => Ok(lone),
        Op::LockIncr if !line.is_empty() && line.iter().all(u8::is_ascii_digit) => Ok(contended),
        Op::LockDelete if line == b"DELETED" => Ok(lone),
        Op::LockRelease if line == b"STORED" => Ok(lone),
        Op::Get if line.starts_with(b"VALUE ") => {
            let mut fields = line[6..].split(|&b| b == b' ');
            let (Some(key), Some(_flags), Some(bytes)) = (fields.next(), fields.next(), fields.next()) else {
                return Err(desync("a VALUE line without its fields", line));
            };
            let mut expected = [0u8; 32];
            if key != key_bytes(pending.key, &mut expected) {
                return Err(desync("a value for another key", line));
            }
            let bytes: usize = std::str::from_utf8(bytes)
                .ok()
                .and_then(|b| b.parse().ok())
                .ok_or_else(|| desync("a VALUE line with a bad length", line))?;
            let total = line_len + bytes + b"\r\nEND\r\n".len();
            if buf.len() < total {
                return Ok(None);
            }
            if &buf[line_len + bytes..total] != b"\r\nEND\r\n" {
                return Err(desync("a value not followed by END", line));
            }
            let reply = if bytes == workload.data_size { Reply::Hit } else { Reply::Error };
            Ok(Some((total, reply)))
        }
        // An error line answers the request and keeps the stream in step.
        _ if line.starts_with(b"SERVER_ERROR") || line.starts_with(b"CLIENT_ERROR") || line == b"ERROR" => {
            Ok(Some((line_len, Reply::Error)))
        }
        _ => Err(desync("an unexpected reply", line)),
    }
}

/// The binary-protocol counterpart of [`parse_reply`]: the response's opcode and
/// opaque (the low half of the key number) must match the request's.
fn parse_binary_reply(buf: &[u8], pending: &Pending, workload: &Workload) -> io::Result<Option<(usize, Reply)>> {
    use binary::*;
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let header = &buf[..HEADER_LEN];
    if header[0] != RESPONSE_MAGIC {
        return Err(desync("a response without the response magic", header));
    }
    let opcode = header[1];
    let key_len = u16::from_be_bytes([header[2], header[3]]) as usize;
    let extras_len = header[4] as usize;
    let status = u16::from_be_bytes([header[6], header[7]]);
    let body_len = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
    let opaque = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
    let total = HEADER_LEN + body_len;
    if buf.len() < total {
        return Ok(None);
    }
    let expected_opcode = match pending.op {
        Op::Get => OPCODE_GET,
        Op::Set => OPCODE_SET,
        _ => return Err(desync("a session lock over the binary protocol", header)),
    };
    if opcode != expected_opcode || opaque != pending.key as u32 {
        return Err(desync("a response to another request", header));
    }
    let reply = match (pending.op, status) {
        (Op::Set, STATUS_SUCCESS) => Reply::Stored,
        (Op::Get, STATUS_SUCCESS) => {
            let value_len = body_len.saturating_sub(extras_len + key_len);
            if value_len == workload.data_size { Reply::Hit } else { Reply::Error }
        }
        (Op::Get, STATUS_KEY_ENOENT) => Reply::Miss,
        _ => Reply::Error,
    };
    Ok(Some((total, reply)))
}

/// Appends a binary request; the opaque carries the key number for checking.
fn write_binary_request(out: &mut Vec<u8>, opcode: u8, key: &[u8], key_number: u64, value: &[u8]) {
    use binary::*;
    let extras_len = if opcode == OPCODE_SET { SET_EXTRAS_LEN } else { 0 };
    let body_len = extras_len as usize + key.len() + value.len();
    out.extend_from_slice(&[REQUEST_MAGIC, opcode]);
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(&[extras_len, 0, 0, 0]);
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    out.extend_from_slice(&(key_number as u32).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    // Flags and exptime are zero, as in the text `set <key> 0 0 <bytes>`.
    out.extend(std::iter::repeat_n(0, extras_len as usize));
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

fn desync(what: &str, line: &[u8]) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {:?}", String::from_utf8_lossy(line)))
}

/// Set by `--tls`: every connection speaks TLS, as memtier_benchmark's `--tls`
/// (a rustls client), trusting this configuration's CA.
pub static CLIENT_TLS: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();

/// Connects to `addr`, over TLS under [`CLIENT_TLS`].
fn connect(addr: SocketAddr) -> io::Result<MaybeTls> {
    let stream = std::net::TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    let stream = TcpStream::from_std(stream);
    Ok(match CLIENT_TLS.get() {
        None => MaybeTls::Plain(stream),
        Some(config) => MaybeTls::Tls(Box::new(TlsStream::client(stream, Arc::clone(config), "localhost")?)),
    })
}

struct Connection {
    stream: MaybeTls,
    source: Source,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    in_flight: VecDeque<Pending>,
    /// The source is spent and every reply is in.
    done: bool,
}

impl Connection {
    fn new(addr: SocketAddr, source: Source, workload: &Workload) -> io::Result<Connection> {
        // Room for a full pipeline of replies, so a read rarely stops short.
        let reply_size = workload.data_size + 64;
        Ok(Connection {
            stream: connect(addr)?,
            source,
            rbuf: vec![0; (reply_size * workload.pipeline).max(64 * 1024)],
            rstart: 0,
            rend: 0,
            wbuf: Vec::with_capacity(64 * 1024),
            wpos: 0,
            in_flight: VecDeque::with_capacity(workload.pipeline),
            done: false,
        })
    }

    /// Queues requests until `pipeline` are in flight, a session cycle's round trip
    /// is complete, or the source runs dry.
    fn refill(&mut self, workload: &Workload, pipeline: usize, value: &[u8], now: Instant) {
        let mut key_buf = [0u8; 32];
        // A session cycle's next round trip waits for the replies of the last.
        let scripted = matches!(self.source, Source::Sessions { .. });
        if scripted && !self.in_flight.is_empty() {
            return;
        }
        while scripted || self.in_flight.len() < pipeline {
            let Some((op, key, ends_round)) = self.source.next(workload) else {
                break;
            };
            let key_text = key_bytes(key, &mut key_buf);
            let lock = |wbuf: &mut Vec<u8>, verb: &[u8]| {
                wbuf.extend_from_slice(verb);
                wbuf.extend_from_slice(key_text);
                wbuf.extend_from_slice(LOCK_SUFFIX);
            };
            match (workload.protocol, op) {
                (Protocol::Binary, Op::Get) => {
                    write_binary_request(&mut self.wbuf, binary::OPCODE_GET, key_text, key, &[])
                }
                (Protocol::Binary, Op::Set) => {
                    write_binary_request(&mut self.wbuf, binary::OPCODE_SET, key_text, key, value)
                }
                (Protocol::Text, Op::Get) => {
                    self.wbuf.extend_from_slice(b"get ");
                    self.wbuf.extend_from_slice(key_text);
                    self.wbuf.extend_from_slice(b"\r\n");
                }
                (Protocol::Text, Op::Set) => {
                    self.wbuf.extend_from_slice(b"set ");
                    self.wbuf.extend_from_slice(key_text);
                    self.wbuf.extend_from_slice(b" 0 0 ");
                    self.wbuf.extend_from_slice(itoa::Buffer::new().format(value.len()).as_bytes());
                    self.wbuf.extend_from_slice(b"\r\n");
                    self.wbuf.extend_from_slice(value);
                    self.wbuf.extend_from_slice(b"\r\n");
                }
                (Protocol::Text, Op::LockAdd) => {
                    let exptime = workload.session_lock.map_or(&b"0"[..], SessionLock::lock_exptime);
                    lock(&mut self.wbuf, b"add ");
                    self.wbuf.extend_from_slice(b" 0 ");
                    self.wbuf.extend_from_slice(exptime);
                    self.wbuf.extend_from_slice(b" 1\r\n1\r\n");
                }
                (Protocol::Text, Op::LockIncr) => {
                    lock(&mut self.wbuf, b"incr ");
                    self.wbuf.extend_from_slice(b" 1\r\n");
                }
                (Protocol::Text, Op::LockDelete) => {
                    lock(&mut self.wbuf, b"delete ");
                    self.wbuf.extend_from_slice(b"\r\n");
                }
                (Protocol::Text, Op::LockRelease) => {
                    lock(&mut self.wbuf, b"set ");
                    self.wbuf.extend_from_slice(b" 0 0 1\r\n0\r\n");
                }
                (Protocol::Binary, _) => panic!("session lock cycles are text requests"),
            }
            let ends_cycle = scripted && ends_round && matches!(op, Op::LockDelete | Op::LockRelease);
            self.in_flight.push_back(Pending { op, key, sent: now, ends_cycle });
            if scripted && ends_round {
                break;
            }
        }
        if self.in_flight.is_empty() {
            self.done = true;
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.wpos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        self.stream.push().map(drop)
    }

    /// Reads what the socket holds and settles every complete reply.
    fn receive(&mut self, workload: &Workload, outcome: Option<&mut Outcome>, now: Instant) -> io::Result<()> {
        let mut outcome = outcome;
        loop {
            if self.rend == self.rbuf.len() {
                self.rbuf.copy_within(self.rstart..self.rend, 0);
                self.rend -= self.rstart;
                self.rstart = 0;
                if self.rend == self.rbuf.len() {
                    let grown = self.rbuf.len() * 2;
                    self.rbuf.resize(grown, 0);
                }
            }
            let space = self.rbuf.len() - self.rend;
            let n = match self.stream.read(&mut self.rbuf[self.rend..]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection")),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.rend += n;
            while let Some(pending) = self.in_flight.front() {
                let parse = match workload.protocol {
                    Protocol::Text => parse_reply,
                    Protocol::Binary => parse_binary_reply,
                };
                let Some((consumed, reply)) = parse(&self.rbuf[self.rstart..self.rend], pending, workload)? else {
                    break;
                };
                if let Some(outcome) = outcome.as_deref_mut() {
                    outcome.count(reply, now.saturating_duration_since(pending.sent).as_nanos() as u64);
                    if pending.ends_cycle {
                        outcome.cycles += 1;
                    }
                }
                self.rstart += consumed;
                self.in_flight.pop_front();
            }
            if self.rstart == self.rend {
                self.rstart = 0;
                self.rend = 0;
            }
            // A read that did not fill the space drained the socket (edge-triggered
            // epoll raises a new event for anything that arrives later).
            if n < space {
                break;
            }
        }
        Ok(())
    }
}

/// A value of `size` bytes, as memtier sends by default (not random data).
fn value_of(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Runs connections until each is done or `until` passes, counting replies settled
/// between `count_from` and `until`.
fn drive(
    conns: &mut [Connection],
    workload: &Workload,
    pipeline: usize,
    count_from: Instant,
    until: Option<Instant>,
) -> io::Result<Outcome> {
    let value = value_of(workload.data_size);
    let mut poll = Poll::new()?;
    let now = Instant::now();
    for (index, conn) in conns.iter_mut().enumerate() {
        poll.registry().register(conn.stream.socket(), Token(index), Interest::READABLE | Interest::WRITABLE)?;
        conn.refill(workload, pipeline, &value, now);
        conn.flush()?;
    }
    let mut outcome = Outcome::new();
    let mut events = Events::with_capacity(1024);
    let mut open = conns.iter().filter(|c| !c.done).count();
    while open > 0 {
        let timeout = until.map(|until| until.saturating_duration_since(Instant::now()));
        if timeout == Some(Duration::ZERO) {
            break;
        }
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        if until.is_some_and(|until| now >= until) {
            break;
        }
        let counting = now >= count_from;
        for event in events.iter() {
            let conn = &mut conns[event.token().0];
            if conn.done {
                continue;
            }
            if event.is_readable() {
                conn.receive(workload, counting.then_some(&mut outcome), now)?;
                conn.refill(workload, pipeline, &value, now);
                if conn.done {
                    open -= 1;
                    continue;
                }
            }
            conn.flush()?;
        }
    }
    Ok(outcome)
}

/// Stores every key `1..=key_maximum` once, as memtier's `--ratio=1:0
/// --key-pattern=P:P --requests=allkeys` does, and checks each was stored.
pub fn load(addr: SocketAddr, workload: &Workload) -> io::Result<Outcome> {
    let connections = workload.connections.max(1) as u64;
    let mut conns = (0..connections)
        .map(|index| {
            let source = Source::Sequential { next: index + 1, step: connections, last: workload.key_maximum };
            Connection::new(addr, source, workload)
        })
        .collect::<io::Result<Vec<_>>>()?;
    // Bounded, so that a server that stops answering fails the run instead of
    // hanging it.
    let outcome = drive(&mut conns, workload, LOAD_PIPELINE, Instant::now(), Some(Instant::now() + LOAD_DEADLINE))?;
    if outcome.sets != workload.key_maximum || outcome.errors != 0 {
        return Err(io::Error::other(format!(
            "load stored {} of {} keys ({} errors) within {} s",
            outcome.sets,
            workload.key_maximum,
            outcome.errors,
            LOAD_DEADLINE.as_secs()
        )));
    }
    Ok(outcome)
}

/// Runs the workload on `connections` from this thread; replies settled between
/// `measure_from` and `until` are counted.
pub fn run(
    addr: SocketAddr,
    workload: &Workload,
    connections: usize,
    seed: u64,
    measure_from: Instant,
    until: Instant,
) -> io::Result<Outcome> {
    let mut conns = (0..connections as u64)
        .map(|index| {
            let rng = SmallRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(index));
            let normal = match workload.key_pattern {
                KeyPattern::Uniform => None,
                KeyPattern::Gaussian => {
                    let range = workload.key_maximum as f64;
                    Some(Normal::new(range / 2.0, range / 6.0).expect("a finite, positive deviation"))
                }
            };
            let source = match workload.session_lock {
                Some(style) => {
                    // Session ids first + k * stride are this connection's alone.
                    let stride = connections as u64;
                    Source::Sessions { rng, style, first: index + 1, stride, key: 0, step: 0 }
                }
                // Stagger the set:get cycle so connections do not set in lockstep.
                None => Source::Random { rng, normal, issued: index },
            };
            Connection::new(addr, source, workload)
        })
        .collect::<io::Result<Vec<_>>>()?;
    drive(&mut conns, workload, workload.pipeline, measure_from, Some(until))
}
