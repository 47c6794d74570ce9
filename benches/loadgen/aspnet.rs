//! Row (aspnet)'s load: connections to the ASP.NET State Server port, each playing
//! one web server's session traffic as System.Web sends it (shared reference
//! `aspnet-state-protocol.md`, "The client's calls, on the wire"), one request at a
//! time, every response's status checked.

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The two cycles the row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cycle {
    /// A request of a page that uses its session: `GET` with `Exclusive: acquire`,
    /// then the `PUT` that saves it and releases the lock with the cookie.
    Page,
    /// A new session: `GET` acquire → 404, `PUT` with `ExtraFlags: 1`, `GET` acquire
    /// → 200 with `ActionFlags: 1`, `PUT` with the cookie.
    NewSession,
}

impl Cycle {
    pub fn name(self) -> &'static str {
        match self {
            Cycle::Page => "page (acquire, save)",
            Cycle::NewSession => "new session (acquire, create, acquire, save)",
        }
    }

    /// The status each step's response must have.
    fn expected(self) -> &'static [u16] {
        match self {
            Cycle::Page => &[200, 200],
            Cycle::NewSession => &[404, 200, 200, 200],
        }
    }
}

/// What one run produced.
pub struct Outcome {
    pub requests: u64,
    pub cycles: u64,
    /// Responses whose status was not the one the cycle expects.
    pub errors: u64,
    /// The first few of them: the step, the status and the session.
    pub first_errors: Vec<String>,
    /// Locks found held by a cycle an earlier run cut short, and stolen as
    /// `SessionStateModule` steals them: a release with the cookie of the 423.
    pub stolen: u64,
    pub latency: Histogram<u64>,
}

struct Conn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    step: usize,
    session: u64,
    cookie: u32,
    sent: Instant,
    /// New sessions: this connection's next one.
    next_new: u64,
    /// The request in flight is a release stealing a lock.
    stealing: bool,
}

/// Writes the request of `conn`'s current step.
fn queue(conn: &mut Conn, cycle: Cycle, body: &[u8], now: Instant) {
    let key = conn.session;
    let prefix = if cycle == Cycle::NewSession { "new" } else { "s" };
    if conn.stealing {
        let cookie = conn.cookie;
        let release =
            format!("GET /{prefix}{key} HTTP/1.1\r\nHost: h\r\nExclusive: release\r\nLockCookie: {cookie}\r\n\r\n");
        conn.wbuf.extend_from_slice(release.as_bytes());
        conn.sent = now;
        return;
    }
    let request = match (cycle, conn.step) {
        (_, 0) | (Cycle::NewSession, 2) => {
            format!("GET /{prefix}{key} HTTP/1.1\r\nHost: h\r\nExclusive: acquire\r\n\r\n").into_bytes()
        }
        (Cycle::NewSession, 1) => format!(
            "PUT /{prefix}{key} HTTP/1.1\r\nHost: h\r\nTimeout: 20\r\nExtraFlags: 1\r\nLockCookie: 0\r\n\
             Content-Length: 7\r\n\r\n\x14\0\0\0\0\0\u{7f}"
        )
        .into_bytes(),
        _ => {
            let mut put = format!(
                "PUT /{prefix}{key} HTTP/1.1\r\nHost: h\r\nTimeout: 20\r\nLockCookie: {}\r\nExtraFlags: 0\r\n\
                 Content-Length: {}\r\n\r\n",
                conn.cookie,
                body.len()
            )
            .into_bytes();
            put.extend_from_slice(body);
            put
        }
    };
    conn.wbuf.extend_from_slice(&request);
    conn.sent = now;
}

/// The status and `LockCookie` of the response at the head of `buf`, and its length.
fn response(buf: &[u8]) -> io::Result<Option<(u16, Option<u32>, usize)>> {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| io::Error::other("a response head that is not text"))?;
    let status = head.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| io::Error::other("no status"))?;
    let header = |name: &str| head.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    let length: usize = header("Content-Length:").and_then(|v| v.parse().ok()).unwrap_or(0);
    let cookie = header("LockCookie:").and_then(|v| v.parse().ok());
    let total = end + 4 + length;
    Ok((buf.len() >= total).then_some((status, cookie, total)))
}

/// Puts every session `1..=sessions` of the page cycle in place, unlocked.
pub fn load(addr: SocketAddr, sessions: u64, body_len: usize) -> io::Result<()> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let body = vec![b's'; body_len];
    let mut buf = Vec::new();
    for key in 1..=sessions {
        let mut put = format!("PUT /s{key} HTTP/1.1\r\nHost: h\r\nTimeout: 20\r\nContent-Length: {body_len}\r\n\r\n")
            .into_bytes();
        put.extend_from_slice(&body);
        stream.write_all(&put)?;
        loop {
            if let Some((status, _, used)) = response(&buf)? {
                if status != 200 {
                    return Err(io::Error::other(format!("loading /s{key}: {status}")));
                }
                buf.drain(..used);
                break;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::other("the server closed while loading"));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    Ok(())
}

/// One run's shape.
pub struct Load {
    pub cycle: Cycle,
    pub connections: usize,
    pub sessions: u64,
    pub body_len: usize,
    pub seed: u64,
}

/// Runs `cycle` on `connections` until `until`, counting what completes after
/// `measure_from`. The page cycle draws each connection's sessions from its own
/// share of `1..=sessions`, so no two connections contend for a lock.
pub fn run(addr: SocketAddr, load: &Load, measure_from: Instant, until: Instant) -> io::Result<Outcome> {
    let Load { cycle, connections, sessions, body_len, seed } = *load;
    let body = vec![b'p'; body_len];
    let mut poll = Poll::new()?;
    let mut rng = SmallRng::seed_from_u64(seed);
    let stride = connections as u64;
    let now = Instant::now();
    let mut conns = Vec::with_capacity(connections);
    for index in 0..connections {
        let stream = std::net::TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        let mut conn = Conn {
            stream: TcpStream::from_std(stream),
            rbuf: Vec::with_capacity(body_len + 512),
            wbuf: Vec::with_capacity(body_len + 512),
            wpos: 0,
            step: 0,
            session: 0,
            cookie: 0,
            sent: now,
            // New sessions: a name space per run (the seed) and per connection.
            next_new: seed * 1_000_000_000 + index as u64,
            stealing: false,
        };
        conn.session = pick(&mut rng, cycle, &mut conn, index as u64, stride, sessions);
        poll.registry().register(&mut conn.stream, Token(index), Interest::READABLE | Interest::WRITABLE)?;
        queue(&mut conn, cycle, &body, now);
        conns.push(conn);
    }
    let mut outcome = Outcome {
        requests: 0,
        cycles: 0,
        errors: 0,
        first_errors: Vec::new(),
        stolen: 0,
        latency: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds"),
    };
    let mut events = Events::with_capacity(1024);
    let steps = cycle.expected();
    loop {
        let now = Instant::now();
        if now >= until {
            break;
        }
        poll.poll(&mut events, Some(until - now)).or_else(|e| match e.kind() {
            io::ErrorKind::Interrupted => Ok(()),
            _ => Err(e),
        })?;
        let now = Instant::now();
        for event in events.iter() {
            let index = event.token().0;
            let conn = &mut conns[index];
            if event.is_readable() {
                loop {
                    let mut chunk = [0u8; 64 * 1024];
                    match conn.stream.read(&mut chunk) {
                        Ok(0) => return Err(io::Error::other("the server closed a connection")),
                        Ok(n) => conn.rbuf.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                if let Some((status, cookie, used)) = response(&conn.rbuf)? {
                    conn.rbuf.drain(..used);
                    let counting = now >= measure_from;
                    // A lock left by a cycle that the end of an earlier run cut short.
                    let held = cycle == Cycle::Page && conn.step == 0 && status == 423 && !conn.stealing;
                    let expected = if conn.stealing { 200 } else { steps[conn.step] };
                    if status != expected && !held && outcome.first_errors.len() < 5 {
                        let session = conn.session;
                        let step = if conn.stealing { "release".to_string() } else { conn.step.to_string() };
                        outcome.first_errors.push(format!("step {step}: {status} for session {session}"));
                    }
                    if counting {
                        outcome.requests += 1;
                        outcome.errors += u64::from(status != expected && !held);
                        outcome.latency.saturating_record(now.duration_since(conn.sent).as_nanos().max(1) as u64);
                    }
                    if let Some(cookie) = cookie {
                        conn.cookie = cookie;
                    }
                    if held || conn.stealing {
                        outcome.stolen += u64::from(held);
                        conn.stealing = held;
                        queue(conn, cycle, &body, now);
                        continue_writing(conn)?;
                        continue;
                    }
                    conn.step += 1;
                    if conn.step == steps.len() {
                        conn.step = 0;
                        outcome.cycles += u64::from(counting);
                        conn.session = pick(&mut rng, cycle, conn, index as u64, stride, sessions);
                    }
                    queue(conn, cycle, &body, now);
                }
            }
            continue_writing(conn)?;
        }
    }
    Ok(outcome)
}

/// Writes what the socket takes of `conn`'s queued request.
fn continue_writing(conn: &mut Conn) -> io::Result<()> {
    while conn.wpos < conn.wbuf.len() {
        match conn.stream.write(&conn.wbuf[conn.wpos..]) {
            Ok(n) => conn.wpos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if conn.wpos == conn.wbuf.len() {
        conn.wbuf.clear();
        conn.wpos = 0;
    }
    Ok(())
}

/// The session of a connection's next cycle.
fn pick(rng: &mut SmallRng, cycle: Cycle, conn: &mut Conn, index: u64, stride: u64, sessions: u64) -> u64 {
    match cycle {
        Cycle::Page => index + 1 + stride * rng.random_range(0..(sessions / stride).max(1)),
        Cycle::NewSession => {
            conn.next_new += stride;
            conn.next_new
        }
    }
}

/// A quantile of the latencies, in milliseconds.
pub fn ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    Duration::from_nanos(histogram.value_at_quantile(quantile)).as_secs_f64() * 1e3
}
