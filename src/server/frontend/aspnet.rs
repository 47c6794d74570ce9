//! What an ASP.NET State Server does with each request (System.Web's
//! `StateRuntime`; shared reference `aspnet-state-protocol.md`, "What the server
//! does"), over the node facade, so that every write replicates like any other.
//!
//! A session is one item: the key is `aspnet:` and the request target, and the
//! value a fixed header (lock state, the uninitialized flag, the sliding timeout)
//! before the client's opaque bytes. The lock therefore travels to the peer with
//! the data, in the same change. Every change of an existing item is a compare-and-
//! swap on the CAS just read, which the store records as a claim: while a peer is
//! linked, of two acquires made at once on the two nodes, the peer refuses one, and
//! its request runs again (the caller's part) to find the item locked.

use super::output::Output;
use super::{Dispatch, Flow, Session};
use crate::node::Node;
use crate::protocol::ParseError;
use crate::protocol::WatchKinds;
use crate::protocol::aspnet::{
    self, DEFAULT_TIMEOUT_MINUTES, Exclusive, KEY_PREFIX, Method, StateItem, StateParse, StateRequest, StateResponse,
};
use crate::server::operations::watch::AspNetEvent;
use crate::store::{DeleteOutcome, DeleteRequest, Found, Receipt, StoreMode, StoreOutcome, StoreRequest};

/// The memcached client flags of a state item, "ASPS", which tell a memcached
/// client that reads one what it is.
pub const ITEM_FLAGS: u32 = u32::from_be_bytes(*b"ASPS");
/// A state item's value starts with this (the format's version in its last byte).
const MAGIC: &[u8; 4] = b"ASP\x01";
const HEADER_LEN: usize = MAGIC.len() + 1 + 4 + 4 + 8;
const FLAG_LOCKED: u8 = 1;
const FLAG_UNINITIALIZED: u8 = 2;
/// A new item's lock cookie: its first acquire makes it 2, as `StateRuntime` does.
const FIRST_COOKIE: u32 = 1;
/// A release of a lock held this long is counted as stolen: System.Web's
/// `SessionStateModule` steals a lock once it is `executionTimeout` old, 110 s by
/// default; the page that holds it releases it sooner.
const STEAL_AGE_MS: u64 = 110_000;
/// Compare-and-swap attempts before a request gives up: each failure is another
/// local write to the same session that landed between the read and the write.
const ATTEMPTS: usize = 1000;

/// A state item's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct State {
    locked: bool,
    uninitialized: bool,
    timeout_minutes: u32,
    /// The last cookie handed out (the holder's, while locked).
    cookie: u32,
    /// When the lock was taken, Unix milliseconds.
    locked_at_ms: u64,
}

impl State {
    fn decode(value: &[u8]) -> (State, &[u8]) {
        if value.len() >= HEADER_LEN && value.starts_with(MAGIC) {
            let flags = value[4];
            let number =
                |at: usize, len: usize| value[at..at + len].iter().rev().fold(0u64, |n, &b| n << 8 | u64::from(b));
            let state = State {
                locked: flags & FLAG_LOCKED != 0,
                uninitialized: flags & FLAG_UNINITIALIZED != 0,
                timeout_minutes: number(5, 4) as u32,
                cookie: number(9, 4) as u32,
                locked_at_ms: number(13, 8),
            };
            return (state, &value[HEADER_LEN..]);
        }
        // Something a memcached client stored under a state key: an unlocked
        // session whose bytes are that value.
        let state = State {
            locked: false,
            uninitialized: false,
            timeout_minutes: DEFAULT_TIMEOUT_MINUTES,
            cookie: FIRST_COOKIE,
            locked_at_ms: 0,
        };
        (state, value)
    }

    fn encode(&self, body: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(HEADER_LEN + body.len());
        out.extend_from_slice(MAGIC);
        let mut flags = 0;
        if self.locked {
            flags |= FLAG_LOCKED;
        }
        if self.uninitialized {
            flags |= FLAG_UNINITIALIZED;
        }
        out.push(flags);
        out.extend_from_slice(&self.timeout_minutes.to_le_bytes());
        out.extend_from_slice(&self.cookie.to_le_bytes());
        out.extend_from_slice(&self.locked_at_ms.to_le_bytes());
        out.extend_from_slice(body);
    }

    /// The next cookie: per item, never 0 (a PUT of a new item sends 0), and within
    /// the non-negative Int32 the client parses.
    fn next_cookie(&self) -> u32 {
        if self.cookie >= i32::MAX as u32 { FIRST_COOKIE + 1 } else { self.cookie + 1 }
    }
}

/// What a request's response says; a 200 to a GET has its body in the caller's
/// [`Scratch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200 with the item (GET): its timeout, the cookie if it acquired, and whether
    /// it was uninitialized. The body is [`Scratch::body`].
    Item {
        timeout_minutes: u32,
        lock_cookie: Option<u32>,
        uninitialized: bool,
    },
    /// A bare 200.
    Done,
    /// 423: the holder's cookie, the lock's age in seconds, and when it was taken.
    Locked {
        lock_cookie: u32,
        lock_age_secs: u64,
        locked_at_ms: u64,
    },
    NotFound,
    /// Too many writes to this session at once to settle this one (400).
    Contended,
    /// A lock (or a write on a lock's cookie) this node cannot grant: it cannot
    /// reach the majority of nodes its claims need (503).
    NoMajority,
}

/// A request's answer, and what its writes recorded (the caller waits on the
/// receipt in ack mode, and runs the request again if the peer refuses its claim).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Executed {
    pub answer: Answer,
    pub receipt: Receipt,
    /// A release freed a lock this old (milliseconds).
    pub released_after_ms: Option<u64>,
}

/// Buffers a connection keeps, so a request allocates nothing once they have grown.
#[derive(Debug, Default)]
pub struct Scratch {
    key: Vec<u8>,
    /// The item as read.
    read: Vec<u8>,
    /// Where the session's bytes begin in `read`, after the state header.
    body_at: usize,
    /// The item to write.
    write: Vec<u8>,
}

impl Scratch {
    /// The session a GET answered with: the bytes of the item read, past its header.
    pub fn body(&self) -> &[u8] {
        &self.read[self.body_at..]
    }
}

/// Serves the request at the head of `input` for a connection: its response goes to
/// `output` and what its writes recorded to `session` (the connection holds the
/// response for the peer's acknowledgement or verdict as for any other write).
/// Returns the bytes the request took, none to swallow, and whether the connection
/// goes on.
pub fn serve(
    dispatch: &Dispatch<'_>,
    input: &[u8],
    output: &mut Output,
    session: &mut Session,
    scratch: &mut Scratch,
) -> Result<(usize, usize, Flow), ParseError> {
    let max_body = dispatch.shared.config.aspnet.max_body;
    match aspnet::parse(input, max_body) {
        StateParse::Incomplete => Err(ParseError::Incomplete { need: None }),
        StateParse::Bad { reason, consumed } => {
            dispatch.counters.aspnet_bad_requests.inc();
            if dispatch.shared.verbosity.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                log::warn!("aspnet: fd {}: 400 Bad Request: {reason}", session.fd);
            }
            let close = consumed.is_none();
            aspnet::encode(&StateResponse::BadRequest, false, close, output.bytes());
            let flow = if close { Flow::Close } else { Flow::Continue };
            Ok((consumed.unwrap_or(input.len()), 0, flow))
        }
        StateParse::Request { request, consumed } => {
            let executed = execute(&dispatch.shared.node, &request, scratch);
            session.written.merge(executed.receipt);
            count(dispatch, &request, &executed);
            let body = scratch.body();
            watch(dispatch, &request, &executed, body.len(), session.fd);
            let response = match executed.answer {
                Answer::Item { timeout_minutes, lock_cookie, uninitialized } => {
                    StateResponse::Ok(Some(StateItem { timeout_minutes, body, lock_cookie, uninitialized }))
                }
                Answer::Done => StateResponse::Ok(None),
                Answer::Locked { lock_cookie, lock_age_secs, locked_at_ms } => {
                    StateResponse::Locked { lock_cookie, lock_age_secs, locked_at_unix_ms: locked_at_ms }
                }
                Answer::NotFound => StateResponse::NotFound,
                Answer::Contended => StateResponse::BadRequest,
                Answer::NoMajority => StateResponse::Unavailable,
            };
            aspnet::encode(&response, request.method == Method::Head, request.close, output.bytes());
            let flow = if request.close { Flow::Close } else { Flow::Continue };
            Ok((consumed, 0, flow))
        }
    }
}

/// Tells `watch` of a request: under `mutations` when it may write, else under
/// `fetchers`. A single relaxed load while nobody watches.
fn watch(dispatch: &Dispatch<'_>, request: &StateRequest<'_>, executed: &Executed, body_len: usize, cfd: i32) {
    let writes = matches!(request.method, Method::Put | Method::Delete) || request.exclusive.is_some();
    let kind = if writes { WatchKinds::MUTATIONS } else { WatchKinds::FETCHERS };
    let watch = &dispatch.shared.watch;
    if !watch.wants(kind) {
        return;
    }
    let (status, size) = match executed.answer {
        Answer::Item { .. } => (200, body_len),
        Answer::Done => (200, request.body.len()),
        Answer::Locked { .. } => (423, 0),
        Answer::NotFound => (404, 0),
        Answer::Contended => (400, 0),
        Answer::NoMajority => (503, 0),
    };
    let exclusive = match request.exclusive {
        Some(Exclusive::Acquire) => "acquire",
        Some(Exclusive::Release) => "release",
        None => "none",
    };
    let event = AspNetEvent { method: request.method.name(), exclusive, key: request.key, status, cfd, size };
    watch.aspnet_request(kind, &event);
}

/// Counts a request in `stats` by its kind and what it did to the lock.
fn count(dispatch: &Dispatch<'_>, request: &StateRequest<'_>, executed: &Executed) {
    let counters = dispatch.counters;
    match (request.method, request.exclusive) {
        (Method::Get, Some(Exclusive::Acquire)) => {
            counters.aspnet_acquire.inc();
            match executed.answer {
                Answer::Item { .. } => counters.aspnet_locks_granted.inc(),
                Answer::Locked { .. } => counters.aspnet_locks_contended.inc(),
                _ => {}
            }
        }
        (Method::Get, Some(Exclusive::Release)) => {
            counters.aspnet_release.inc();
            if executed.released_after_ms.is_some_and(|held| held >= STEAL_AGE_MS) {
                counters.aspnet_locks_stolen.inc();
            }
        }
        (Method::Get, None) => counters.aspnet_get.inc(),
        (Method::Put, _) => counters.aspnet_put.inc(),
        (Method::Delete, _) => counters.aspnet_delete.inc(),
        (Method::Head, _) => counters.aspnet_head.inc(),
    }
    if executed.answer == Answer::Contended {
        counters.aspnet_bad_requests.inc();
    }
}

/// Runs `req` on `node`, at the store's wall clock.
pub fn execute(node: &Node, req: &StateRequest<'_>, scratch: &mut Scratch) -> Executed {
    let mut receipt = Receipt::default();
    scratch.key.clear();
    scratch.key.extend_from_slice(KEY_PREFIX);
    scratch.key.extend_from_slice(req.key);
    for _ in 0..ATTEMPTS {
        let mut released_after_ms = None;
        if let Some(answer) = attempt(node, req, scratch, &mut receipt, &mut released_after_ms) {
            return Executed { answer, receipt, released_after_ms };
        }
    }
    Executed { answer: Answer::Contended, receipt, released_after_ms: None }
}

/// One read and, if the request changes the item, one compare-and-swap; `None`
/// when the item changed in between and the request must run again.
fn attempt(
    node: &Node,
    req: &StateRequest<'_>,
    scratch: &mut Scratch,
    receipt: &mut Receipt,
    released_after_ms: &mut Option<u64>,
) -> Option<Answer> {
    let Scratch { key, read, body_at, write } = scratch;
    let now_ms = node.view().clock().now_ms();
    let mut cas = 0;
    read.clear();
    *body_at = 0;
    let found = node.get(key, None, |item| {
        cas = item.cas();
        read.extend_from_slice(item.value());
    });
    receipt.merge(found.receipt);
    if found.outcome == Found::Miss {
        return match req.method {
            Method::Put => insert(node, req, key, write, now_ms, receipt),
            _ => Some(Answer::NotFound),
        };
    }
    let (state, data) = State::decode(read);
    let holder = |state: &State| req.lock_cookie == Some(state.cookie);
    let locked = |state: &State| Answer::Locked {
        lock_cookie: state.cookie,
        lock_age_secs: now_ms.saturating_sub(state.locked_at_ms) / 1000,
        locked_at_ms: state.locked_at_ms,
    };
    // The new state, and the answer once it is written; `None`: nothing to write.
    let (next, answer) = match req.method {
        Method::Head => (None, Answer::Done),
        Method::Get => {
            // The uninitialized flag is cleared by any GET, before the lock check.
            let mut next = State { uninitialized: false, ..state };
            let answer = match req.exclusive {
                Some(Exclusive::Release) if !state.locked => Answer::Done,
                Some(Exclusive::Release) if holder(&state) => {
                    next.locked = false;
                    *released_after_ms = Some(now_ms.saturating_sub(state.locked_at_ms));
                    Answer::Done
                }
                Some(Exclusive::Release) => locked(&state),
                _ if state.locked => locked(&state),
                Some(Exclusive::Acquire) => {
                    next.locked = true;
                    next.cookie = state.next_cookie();
                    next.locked_at_ms = now_ms;
                    Answer::Item {
                        timeout_minutes: state.timeout_minutes,
                        lock_cookie: Some(next.cookie),
                        uninitialized: state.uninitialized,
                    }
                }
                None => Answer::Item {
                    timeout_minutes: state.timeout_minutes,
                    lock_cookie: None,
                    uninitialized: state.uninitialized,
                },
            };
            if matches!(answer, Answer::Item { .. }) {
                *body_at = read.len() - data.len();
            }
            (Some(next).filter(|next| *next != state), answer)
        }
        // CreateUninitializedItem on an existing item leaves it be.
        Method::Put if req.uninitialized => (None, Answer::Done),
        Method::Put if state.locked && !holder(&state) => (None, locked(&state)),
        Method::Put => {
            let timeout_minutes = req.timeout_minutes.unwrap_or(DEFAULT_TIMEOUT_MINUTES);
            let next = State { locked: false, uninitialized: false, timeout_minutes, ..state };
            next.encode(req.body, write);
            let stored =
                node.store_item(&store_request(StoreMode::Cas, key, write, cas, expiry(now_ms, timeout_minutes)));
            receipt.merge(stored.receipt);
            return stored_answer(stored.outcome, Answer::Done);
        }
        Method::Delete if state.locked && !holder(&state) => (None, locked(&state)),
        Method::Delete => {
            let request = DeleteRequest {
                key,
                compare_cas: Some(cas),
                invalidate: false,
                ttl: None,
                new_cas: None,
                empty_value: None,
            };
            let deleted = node.delete(&request);
            receipt.merge(deleted.receipt);
            return match deleted.outcome {
                DeleteOutcome::Deleted { .. } | DeleteOutcome::Kept => Some(Answer::Done),
                DeleteOutcome::NotFound => Some(Answer::NotFound),
                DeleteOutcome::NoMemory => Some(Answer::Contended),
                DeleteOutcome::Exists => None,
            };
        }
    };
    let exptime = expiry(now_ms, state.timeout_minutes);
    match next {
        Some(next) => {
            next.encode(data, write);
            let stored = node.store_item(&store_request(StoreMode::Cas, key, write, cas, exptime));
            receipt.merge(stored.receipt);
            stored_answer(stored.outcome, answer)
        }
        None => {
            // Every access slides the expiry (a touch, which replicates).
            let touched = node.get(key, Some(exptime), |_| {});
            receipt.merge(touched.receipt);
            Some(answer)
        }
    }
}

/// PUT of a missing item: inserted unlocked (uninitialized with `ExtraFlags: 1`).
fn insert(
    node: &Node,
    req: &StateRequest<'_>,
    key: &[u8],
    write: &mut Vec<u8>,
    now_ms: u64,
    receipt: &mut Receipt,
) -> Option<Answer> {
    let timeout_minutes = req.timeout_minutes.unwrap_or(DEFAULT_TIMEOUT_MINUTES);
    let state = State {
        locked: false,
        uninitialized: req.uninitialized,
        timeout_minutes,
        cookie: FIRST_COOKIE,
        locked_at_ms: 0,
    };
    state.encode(req.body, write);
    let stored = node.store_item(&store_request(StoreMode::Add, key, write, 0, expiry(now_ms, timeout_minutes)));
    receipt.merge(stored.receipt);
    stored_answer(stored.outcome, Answer::Done)
}

fn store_request<'a>(
    mode: StoreMode,
    key: &'a [u8],
    data: &'a [u8],
    cas_unique: u64,
    exptime: i32,
) -> StoreRequest<'a> {
    StoreRequest { flags: ITEM_FLAGS, exptime, cas_unique, ..StoreRequest::new(mode, key, data) }
}

/// The answer once a write is in; `None` to run again when another write came
/// first (the key changed, appeared or went since it was read).
fn stored_answer(outcome: StoreOutcome, answer: Answer) -> Option<Answer> {
    match outcome {
        StoreOutcome::Stored { .. } => Some(answer),
        StoreOutcome::NoMemory => Some(Answer::Contended),
        StoreOutcome::NoMajority => Some(Answer::NoMajority),
        StoreOutcome::Exists | StoreOutcome::NotFound | StoreOutcome::NotStored => None,
    }
}

/// A sliding expiry `timeout_minutes` from now, as an absolute Unix time: a year
/// of minutes is past memcached's 30-day limit for relative times.
fn expiry(now_ms: u64, timeout_minutes: u32) -> i32 {
    let at = now_ms / 1000 + u64::from(timeout_minutes) * 60;
    // Zero minutes: expired at once (1 is the earliest absolute time there is).
    i32::try_from(at.max(1)).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::aspnet::{StateParse, parse};
    use crate::store::{Clock, ManualClock, Store, StoreConfig};
    use std::sync::Arc;

    struct Fixture {
        node: Node,
        clock: ManualClock,
        scratch: Scratch,
    }

    impl Fixture {
        fn new() -> Fixture {
            let clock = ManualClock::new(1_767_225_600_000);
            let store = Store::new(StoreConfig::default(), Clock::Manual(clock.clone()));
            Fixture { node: Node::new(Arc::new(store)), clock, scratch: Scratch::default() }
        }

        /// Sends one request, as the client writes it, and returns the answer and,
        /// for an item, its body.
        fn send(&mut self, request: &str) -> (Answer, Vec<u8>) {
            let StateParse::Request { request, .. } = parse(request.as_bytes(), 1 << 20) else {
                panic!("not a request: {request:?}");
            };
            let executed = execute(&self.node, &request, &mut self.scratch);
            let body = match executed.answer {
                Answer::Item { .. } => self.scratch.body().to_vec(),
                _ => Vec::new(),
            };
            (executed.answer, body)
        }
    }

    fn item(timeout_minutes: u32, lock_cookie: Option<u32>, uninitialized: bool) -> Answer {
        Answer::Item { timeout_minutes, lock_cookie, uninitialized }
    }

    #[test]
    fn a_new_session_goes_as_the_client_sends_it() {
        let mut f = Fixture::new();
        let acquire = "GET /s HTTP/1.1\r\nExclusive: acquire\r\n\r\n";
        assert_eq!(f.send(acquire).0, Answer::NotFound);
        let create = "PUT /s HTTP/1.1\r\nTimeout: 20\r\nExtraFlags: 1\r\nLockCookie: 0\r\nContent-Length: 7\r\n\r\n\x14\0\0\0\0\0\u{7f}";
        assert_eq!(f.send(create).0, Answer::Done);
        // The first acquire of a new item hands out cookie 2, and says it was uninitialized.
        assert_eq!(f.send(acquire), (item(20, Some(2), true), b"\x14\0\0\0\0\0\x7f".to_vec()));
        let save = "PUT /s HTTP/1.1\r\nTimeout: 30\r\nLockCookie: 2\r\nExtraFlags: 0\r\nContent-Length: 4\r\n\r\ncart";
        assert_eq!(f.send(save).0, Answer::Done);
        // Saved, unlocked, initialized: a plain GET reads it, and ActionFlags is gone.
        assert_eq!(f.send("GET /s HTTP/1.1\r\n\r\n"), (item(30, None, false), b"cart".to_vec()));
        assert_eq!(f.send(acquire).0, item(30, Some(3), false));
    }

    #[test]
    fn a_locked_session_answers_423_with_the_holder_cookie_and_age() {
        let mut f = Fixture::new();
        f.send("PUT /s HTTP/1.1\r\nContent-Length: 1\r\n\r\nx");
        assert_eq!(f.send("GET /s HTTP/1.1\r\nExclusive: acquire\r\n\r\n").0, item(20, Some(2), false));
        let locked_at = f.clock.now_ms();
        f.clock.advance_secs(7);
        let held = Answer::Locked { lock_cookie: 2, lock_age_secs: 7, locked_at_ms: locked_at };
        assert_eq!(f.send("GET /s HTTP/1.1\r\nExclusive: acquire\r\n\r\n").0, held);
        assert_eq!(f.send("GET /s HTTP/1.1\r\n\r\n").0, held);
        // PUT and DELETE without the holder's cookie are refused: no silent overwrite.
        assert_eq!(f.send("PUT /s HTTP/1.1\r\nLockCookie: 9\r\nContent-Length: 1\r\n\r\ny").0, held);
        assert_eq!(f.send("PUT /s HTTP/1.1\r\nContent-Length: 1\r\n\r\ny").0, held);
        assert_eq!(f.send("DELETE /s HTTP/1.1\r\nLockCookie: 1\r\n\r\n").0, held);
        assert_eq!(f.send("GET /s HTTP/1.1\r\nExclusive: release\r\nLockCookie: 3\r\n\r\n").0, held);
        // HEAD only says it is there.
        assert_eq!(f.send("HEAD /s HTTP/1.1\r\n\r\n").0, Answer::Done);
    }

    #[test]
    fn the_client_steals_a_lock_by_releasing_with_the_cookie_of_the_423() {
        let mut f = Fixture::new();
        f.send("PUT /s HTTP/1.1\r\nContent-Length: 1\r\n\r\nx");
        f.send("GET /s HTTP/1.1\r\nExclusive: acquire\r\n\r\n");
        let Answer::Locked { lock_cookie, .. } = f.send("GET /s HTTP/1.1\r\n\r\n").0 else { panic!("not locked") };
        let release = format!("GET /s HTTP/1.1\r\nExclusive: release\r\nLockCookie: {lock_cookie}\r\n\r\n");
        assert_eq!(f.send(&release).0, Answer::Done);
        assert_eq!(f.send("GET /s HTTP/1.1\r\nExclusive: acquire\r\n\r\n").0, item(20, Some(3), false));
        // Releasing an unlocked item is a 200 too.
        f.send("GET /s HTTP/1.1\r\nExclusive: release\r\nLockCookie: 3\r\n\r\n");
        assert_eq!(f.send("GET /s HTTP/1.1\r\nExclusive: release\r\nLockCookie: 3\r\n\r\n").0, Answer::Done);
    }

    #[test]
    fn put_and_delete_with_the_holder_cookie_unlock_and_remove() {
        let mut f = Fixture::new();
        f.send("PUT /s HTTP/1.1\r\nContent-Length: 1\r\n\r\nx");
        f.send("GET /s HTTP/1.1\r\nExclusive: acquire\r\n\r\n");
        assert_eq!(f.send("PUT /s HTTP/1.1\r\nLockCookie: 2\r\nContent-Length: 1\r\n\r\ny").0, Answer::Done);
        assert_eq!(f.send("GET /s HTTP/1.1\r\n\r\n"), (item(20, None, false), b"y".to_vec()));
        // An existing item ignores CreateUninitializedItem.
        assert_eq!(f.send("PUT /s HTTP/1.1\r\nExtraFlags: 1\r\nContent-Length: 1\r\n\r\nz").0, Answer::Done);
        assert_eq!(f.send("GET /s HTTP/1.1\r\n\r\n").1, b"y");
        // An unlocked item is deleted with any cookie; then it is gone.
        assert_eq!(f.send("DELETE /s HTTP/1.1\r\nLockCookie: 77\r\n\r\n").0, Answer::Done);
        assert_eq!(f.send("DELETE /s HTTP/1.1\r\n\r\n").0, Answer::NotFound);
        assert_eq!(f.send("HEAD /s HTTP/1.1\r\n\r\n").0, Answer::NotFound);
        f.send("PUT /s HTTP/1.1\r\nContent-Length: 1\r\n\r\nx");
        f.send("GET /s HTTP/1.1\r\nExclusive: acquire\r\n\r\n");
        assert_eq!(f.send("DELETE /s HTTP/1.1\r\nLockCookie: 2\r\n\r\n").0, Answer::Done);
        assert_eq!(f.send("GET /s HTTP/1.1\r\n\r\n").0, Answer::NotFound);
    }

    #[test]
    fn expiry_slides_with_every_access_by_the_items_own_timeout() {
        let mut f = Fixture::new();
        f.send("PUT /s HTTP/1.1\r\nTimeout: 2\r\nContent-Length: 1\r\n\r\nx");
        for _ in 0..5 {
            f.clock.advance_secs(100);
            assert_eq!(f.send("HEAD /s HTTP/1.1\r\n\r\n").0, Answer::Done, "HEAD keeps it alive");
        }
        f.clock.advance_secs(100);
        assert_eq!(f.send("GET /s HTTP/1.1\r\n\r\n").0, item(2, None, false));
        f.clock.advance_secs(121);
        assert_eq!(f.send("GET /s HTTP/1.1\r\n\r\n").0, Answer::NotFound);
    }

    #[test]
    fn a_value_a_memcached_client_stored_reads_as_an_unlocked_session() {
        let mut f = Fixture::new();
        let stored = f.node.store_item(&store_request(StoreMode::Set, b"aspnet:/s", b"raw", 0, 0));
        assert!(matches!(stored.outcome, StoreOutcome::Stored { .. }));
        assert_eq!(f.send("GET /s HTTP/1.1\r\n\r\n"), (item(20, None, false), b"raw".to_vec()));
        assert_eq!(f.send("GET /s HTTP/1.1\r\nExclusive: acquire\r\n\r\n").0, item(20, Some(2), false));
    }

    #[test]
    fn the_state_header_round_trips() {
        let state =
            State { locked: true, uninitialized: true, timeout_minutes: 525_600, cookie: 77, locked_at_ms: 1 << 40 };
        let mut value = Vec::new();
        state.encode(b"body", &mut value);
        assert_eq!(value.len(), HEADER_LEN + 4);
        assert_eq!(State::decode(&value), (state, &b"body"[..]));
        let wrapped = State { cookie: i32::MAX as u32, ..state };
        assert_eq!(wrapped.next_cookie(), FIRST_COOKIE + 1);
    }
}
