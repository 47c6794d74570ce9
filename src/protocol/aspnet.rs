//! The ASP.NET State Server protocol ([MS-ASP]; shared reference
//! `aspnet-state-protocol.md`): HTTP/1.1 requests whose target is a session's key,
//! and the responses System.Web's `OutOfProcSessionStateStore` expects. No I/O and
//! no store: bytes to a [`StateRequest`], and a [`StateResponse`] to bytes.
//!
//! The HTTP framing is httparse's; this module adds the protocol's rules on top:
//! which methods and headers mean what, which values are malformed (a 400, which
//! the client reports as a failed page, never a silent loss), and the bounds on
//! header lines, header count and body size that Microsoft's server leaves open.

use std::io::Write as _;

/// The port Windows' ASP.NET State Service listens on.
pub const DEFAULT_PORT: u16 = 42424;
/// Where a state server's sessions live among the store's keys: the request target
/// after this prefix, so they never collide with memcached's keys (README,
/// "ASP.NET"). The front end writes under it; `stats` and `/metrics` count it.
pub const KEY_PREFIX: &[u8] = b"aspnet:";
/// Sent on every response. The client reads it on its first response from a
/// server and refuses any major version below 2; 4.0.30319 is .NET 4's.
pub const ASPNET_VERSION: &str = "4.0.30319";
/// A PUT's sliding expiry when it carries no `Timeout` header, in minutes (the
/// `<sessionState timeout>` default).
pub const DEFAULT_TIMEOUT_MINUTES: u32 = 20;
/// The longest `Timeout` accepted: a year, in minutes ([MS-ASP] 2.2.2).
pub const MAX_TIMEOUT_MINUTES: u32 = 525_600;
/// The longest line of a request head, and the most header lines: p2pStateServer's
/// bounds (2,048 bytes and 40 lines), which the real client never comes near.
pub const MAX_LINE: usize = 2048;
pub const MAX_HEADERS: usize = 40;
/// The default largest body (`--aspnet-max-body`): above the 16 MiB the issue asks
/// for, as p2pStateServer's 20 MB cap is.
pub const DEFAULT_MAX_BODY: usize = 20 * 1024 * 1024;
/// .NET ticks (100 ns) from 0001-01-01 to the Unix epoch, for `LockDate`.
const TICKS_AT_UNIX_EPOCH: i64 = 621_355_968_000_000_000;

/// The four methods of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Delete,
    Head,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
        }
    }
}

/// A GET's `Exclusive` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exclusive {
    /// GetItemExclusive: take the item's lock.
    Acquire,
    /// ReleaseItemExclusive: give it back, with the holder's cookie.
    Release,
}

/// One request, borrowed from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateRequest<'a> {
    pub method: Method,
    /// The request target: the client's URL-encoded `appId(hash)/sessionId`, kept
    /// opaque as the specification requires.
    pub key: &'a [u8],
    /// GET only; ignored on the other methods, as the server ignores it there.
    pub exclusive: Option<Exclusive>,
    /// `LockCookie` (or the specification's `Lock-Cookie`): a non-negative Int32.
    pub lock_cookie: Option<u32>,
    /// PUT's `Timeout`, in minutes.
    pub timeout_minutes: Option<u32>,
    /// PUT's `ExtraFlags: 1`: CreateUninitializedItem.
    pub uninitialized: bool,
    pub body: &'a [u8],
    /// The connection ends after the response (`Connection: close`, or HTTP/1.0
    /// without `keep-alive`).
    pub close: bool,
}

/// What the head of the input holds.
#[derive(Debug, PartialEq, Eq)]
pub enum StateParse<'a> {
    /// A complete request, which took `consumed` bytes.
    Request { request: StateRequest<'a>, consumed: usize },
    /// Not all of it has arrived.
    Incomplete,
    /// A malformed request: answer 400. With `consumed`, its end is known and the
    /// connection goes on after it; without, the stream cannot be followed any
    /// further and the connection closes after the 400.
    Bad { reason: &'static str, consumed: Option<usize> },
}

/// Parses the request at the head of `input`.
pub fn parse(input: &[u8], max_body: usize) -> StateParse<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let head_len = match head.parse(input) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            // A line, or a head, longer than it may be is refused before it is whole.
            let open_line = input.len() - input.iter().rposition(|&b| b == b'\n').map_or(0, |at| at + 1);
            if open_line > MAX_LINE || input.len() > MAX_LINE * (MAX_HEADERS + 1) || first_line_too_long(input) {
                return StateParse::Bad { reason: "request head too long", consumed: None };
            }
            return StateParse::Incomplete;
        }
        Err(httparse::Error::TooManyHeaders) => return StateParse::Bad { reason: "too many headers", consumed: None },
        Err(_) => return StateParse::Bad { reason: "malformed request head", consumed: None },
    };
    if first_line_too_long(input) || head.headers.iter().any(|h| h.name.len() + 2 + h.value.len() > MAX_LINE) {
        return StateParse::Bad { reason: "request line or header too long", consumed: None };
    }
    let mut content_length = None;
    let mut chunked = false;
    let mut connection_close = false;
    let mut keep_alive = false;
    for header in head.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let Some(length) = decimal(header.value).and_then(|n| usize::try_from(n).ok()) else {
                return StateParse::Bad { reason: "bad Content-Length", consumed: None };
            };
            if content_length.is_some_and(|seen| seen != length) {
                return StateParse::Bad { reason: "conflicting Content-Length", consumed: None };
            }
            content_length = Some(length);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                connection_close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    if chunked {
        // The client always sends Content-Length; a chunked body cannot be followed.
        return StateParse::Bad { reason: "Transfer-Encoding is not supported", consumed: None };
    }
    let body_len = content_length.unwrap_or(0);
    if body_len > max_body {
        return StateParse::Bad { reason: "body too large", consumed: None };
    }
    let consumed = head_len + body_len;
    if input.len() < consumed {
        return StateParse::Incomplete;
    }
    let bad = |reason| StateParse::Bad { reason, consumed: Some(consumed) };
    let close = connection_close || (head.version == Some(0) && !keep_alive);
    let method = match head.method {
        Some("GET") => Method::Get,
        Some("PUT") => Method::Put,
        Some("DELETE") => Method::Delete,
        Some("HEAD") => Method::Head,
        _ => return bad("unknown method"),
    };
    let key = head.path.unwrap_or_default().as_bytes();
    if key.is_empty() || key == b"/" {
        return bad("no session key");
    }
    let mut request = StateRequest {
        method,
        key,
        exclusive: None,
        lock_cookie: None,
        timeout_minutes: None,
        uninitialized: false,
        body: &input[head_len..consumed],
        close,
    };
    for header in head.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("exclusive") {
            if method != Method::Get {
                continue;
            }
            request.exclusive = Some(match header.value.trim_ascii() {
                value if value.eq_ignore_ascii_case(b"acquire") => Exclusive::Acquire,
                value if value.eq_ignore_ascii_case(b"release") => Exclusive::Release,
                _ => return bad("bad Exclusive"),
            });
        } else if name.eq_ignore_ascii_case("lockcookie") || name.eq_ignore_ascii_case("lock-cookie") {
            // A non-negative Int32.
            let Some(cookie) =
                decimal(header.value).and_then(|n| u32::try_from(n).ok()).filter(|&n| n <= i32::MAX as u32)
            else {
                return bad("bad LockCookie");
            };
            if request.lock_cookie.is_some_and(|seen| seen != cookie) {
                return bad("conflicting LockCookie");
            }
            request.lock_cookie = Some(cookie);
        } else if name.eq_ignore_ascii_case("timeout") {
            let Some(minutes) =
                decimal(header.value).and_then(|n| u32::try_from(n).ok()).filter(|&n| n <= MAX_TIMEOUT_MINUTES)
            else {
                return bad("bad Timeout");
            };
            request.timeout_minutes = Some(minutes);
        } else if name.eq_ignore_ascii_case("extraflags") {
            let Some(flags) = decimal(header.value) else {
                return bad("bad ExtraFlags");
            };
            request.uninitialized = flags & 1 == 1;
        }
    }
    if method == Method::Get && request.exclusive == Some(Exclusive::Release) && request.lock_cookie.is_none() {
        return bad("release without LockCookie");
    }
    StateParse::Request { request, consumed }
}

/// Whether the request line, complete or not, is longer than a line may be.
fn first_line_too_long(input: &[u8]) -> bool {
    input.iter().position(|&b| b == b'\n').unwrap_or(input.len()) > MAX_LINE
}

/// A header value that is all ASCII digits (spaces around allowed), as a number;
/// a sign, a fraction or an overflow is not one.
fn decimal(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// A response to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateResponse<'a> {
    /// Status 200. A GET's carries the item: its timeout, the session's bytes, the
    /// new cookie when it acquired, and `ActionFlags: 1` when the item was
    /// uninitialized. Every other 200 is bare.
    Ok(Option<StateItem<'a>>),
    /// Status 423: the lock's holder, how long it has held it, and since when.
    Locked { lock_cookie: u32, lock_age_secs: u64, locked_at_unix_ms: u64 },
    /// Status 404: no such item.
    NotFound,
    /// Status 400: a malformed request.
    BadRequest,
    /// Status 503: the lock cannot be taken now (this node cannot reach the
    /// majority of nodes its locks need); the client may try another server.
    Unavailable,
}

/// What a GET's 200 carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateItem<'a> {
    pub timeout_minutes: u32,
    pub body: &'a [u8],
    pub lock_cookie: Option<u32>,
    pub uninitialized: bool,
}

/// .NET ticks (100 ns since 0001-01-01) of a Unix time in milliseconds: `LockDate`.
pub fn ticks_of_unix_ms(unix_ms: u64) -> i64 {
    TICKS_AT_UNIX_EPOCH.saturating_add((unix_ms as i64).saturating_mul(10_000))
}

/// Appends `response` to `out`, its headers in the order of [MS-ASP] 2.2.5's
/// grammar (`Content-Length`, `X-AspNet-Version`, then the response's own). A
/// response to HEAD has no body, and `close` adds `Connection: close` (the
/// connection ends after it).
pub fn encode(response: &StateResponse<'_>, head: bool, close: bool, out: &mut Vec<u8>) {
    let (status, body): (&[u8], &[u8]) = match response {
        StateResponse::Ok(item) => (b"HTTP/1.1 200 OK\r\n", item.map_or(&[][..], |item| item.body)),
        StateResponse::Locked { .. } => (b"HTTP/1.1 423 Locked\r\n", &[]),
        StateResponse::NotFound => (b"HTTP/1.1 404 Not Found\r\n", &[]),
        StateResponse::BadRequest => (b"HTTP/1.1 400 Bad Request\r\n", &[]),
        StateResponse::Unavailable => (b"HTTP/1.1 503 Service Unavailable\r\n", &[]),
    };
    out.extend_from_slice(status);
    // Writing into a Vec cannot fail.
    let _ = write!(out, "Content-Length: {}\r\nX-AspNet-Version: {ASPNET_VERSION}\r\n", body.len());
    match response {
        StateResponse::Ok(Some(item)) => {
            let _ = write!(out, "Timeout: {}\r\n", item.timeout_minutes);
            if item.uninitialized {
                out.extend_from_slice(b"ActionFlags: 1\r\n");
            }
            if let Some(cookie) = item.lock_cookie {
                let _ = write!(out, "LockCookie: {cookie}\r\n");
            }
        }
        // No body, ever: the original client leaks memory on a 423 that has one.
        &StateResponse::Locked { lock_cookie, lock_age_secs, locked_at_unix_ms } => {
            let date = ticks_of_unix_ms(locked_at_unix_ms);
            let _ = write!(out, "LockCookie: {lock_cookie}\r\nLockAge: {lock_age_secs}\r\nLockDate: {date}\r\n");
        }
        StateResponse::Ok(None) | StateResponse::NotFound | StateResponse::BadRequest | StateResponse::Unavailable => {}
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head {
        out.extend_from_slice(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_BODY: usize = 1 << 20;

    fn request(input: &[u8]) -> (StateRequest<'_>, usize) {
        match parse(input, MAX_BODY) {
            StateParse::Request { request, consumed } => (request, consumed),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    fn bad(input: &[u8]) -> (&'static str, Option<usize>) {
        match parse(input, MAX_BODY) {
            StateParse::Bad { reason, consumed } => (reason, consumed),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    const KEY: &str = "%2fLM%2fW3SVC%2f1%2fROOT%2fshop(q7Yx%3d)%2fk2j4mq0abcdefghijklmnopq";

    #[test]
    fn the_clients_calls_parse_as_they_are_sent() {
        let get = format!("GET /{KEY} HTTP/1.1\r\nHost: localhost:42424\r\nExclusive: acquire\r\n\r\n");
        let (req, used) = request(get.as_bytes());
        assert_eq!(used, get.len());
        assert_eq!((req.method, req.exclusive, req.lock_cookie), (Method::Get, Some(Exclusive::Acquire), None));
        assert_eq!(req.key, format!("/{KEY}").as_bytes());

        let release = "GET /k HTTP/1.1\r\nHost: h\r\nExclusive: Release\r\nLockCookie: 7\r\n\r\n";
        let (req, _) = request(release.as_bytes());
        assert_eq!((req.exclusive, req.lock_cookie), (Some(Exclusive::Release), Some(7)));

        let put = b"PUT /k HTTP/1.1\r\nHost: h\r\nTimeout: 20\r\nLockCookie: 0\r\nExtraFlags: 0\r\nContent-Length: 7\r\n\r\n\x14\0\0\0\0\0\xff";
        let (req, used) = request(put);
        assert_eq!(used, put.len());
        assert_eq!(
            (req.method, req.timeout_minutes, req.lock_cookie, req.uninitialized),
            (Method::Put, Some(20), Some(0), false)
        );
        assert_eq!(req.body, b"\x14\0\0\0\0\0\xff");

        let create =
            b"PUT /k HTTP/1.1\r\nHost: h\r\nTimeout: 20\r\nExtraFlags: 1\r\nLockCookie: 0\r\nContent-Length: 0\r\n\r\n";
        assert!(request(create).0.uninitialized);

        let (req, _) = request(b"DELETE /k HTTP/1.1\r\nHost: h\r\nLockCookie: 3\r\n\r\n");
        assert_eq!((req.method, req.lock_cookie), (Method::Delete, Some(3)));
        let (req, _) = request(b"HEAD /k HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((req.method, req.close), (Method::Head, false));
    }

    #[test]
    fn the_specifications_spellings_are_accepted() {
        let (req, _) = request(b"GET /k HTTP/1.1\r\nexclusive: ACQUIRE\r\n\r\n");
        assert_eq!(req.exclusive, Some(Exclusive::Acquire));
        let (req, _) = request(b"DELETE /k HTTP/1.1\r\nLock-Cookie: 12\r\n\r\n");
        assert_eq!(req.lock_cookie, Some(12));
        let (req, _) = request(b"GET /k HTTP/1.1\r\nLock-Cookie: 12\r\nLockCookie: 12\r\nExclusive: release\r\n\r\n");
        assert_eq!(req.lock_cookie, Some(12));
    }

    #[test]
    fn content_length_is_honoured_on_every_method_and_requests_pipeline() {
        let two = b"GET /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzHEAD /b HTTP/1.1\r\n\r\n";
        let (first, used) = request(two);
        assert_eq!((first.key, first.body), (&b"/a"[..], &b"xyz"[..]));
        let (second, rest) = request(&two[used..]);
        assert_eq!((second.method, second.key, used + rest), (Method::Head, &b"/b"[..], two.len()));
    }

    #[test]
    fn a_request_is_incomplete_until_its_head_and_body_are_in() {
        let put = b"PUT /k HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        for end in 0..put.len() {
            assert_eq!(parse(&put[..end], MAX_BODY), StateParse::Incomplete, "{end}");
        }
        assert!(matches!(parse(put, MAX_BODY), StateParse::Request { .. }));
    }

    #[test]
    fn connection_close_and_http_1_0_end_the_connection() {
        assert!(request(b"GET /k HTTP/1.1\r\nConnection: close\r\n\r\n").0.close);
        assert!(request(b"GET /k HTTP/1.0\r\n\r\n").0.close);
        assert!(!request(b"GET /k HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").0.close);
    }

    #[test]
    fn malformed_values_are_400_and_the_connection_goes_on_after_them() {
        for (input, reason) in [
            (&b"POST /k HTTP/1.1\r\n\r\n"[..], "unknown method"),
            (b"GET / HTTP/1.1\r\n\r\n", "no session key"),
            (b"GET /k HTTP/1.1\r\nExclusive: maybe\r\n\r\n", "bad Exclusive"),
            (b"GET /k HTTP/1.1\r\nExclusive: release\r\n\r\n", "release without LockCookie"),
            (b"DELETE /k HTTP/1.1\r\nLockCookie: -1\r\n\r\n", "bad LockCookie"),
            (b"DELETE /k HTTP/1.1\r\nLockCookie: 2147483648\r\n\r\n", "bad LockCookie"),
            (b"DELETE /k HTTP/1.1\r\nLockCookie: x\r\n\r\n", "bad LockCookie"),
            (b"DELETE /k HTTP/1.1\r\nLockCookie: 1\r\nLock-Cookie: 2\r\n\r\n", "conflicting LockCookie"),
            (b"PUT /k HTTP/1.1\r\nTimeout: -5\r\n\r\n", "bad Timeout"),
            (b"PUT /k HTTP/1.1\r\nTimeout: 525601\r\n\r\n", "bad Timeout"),
            (b"PUT /k HTTP/1.1\r\nTimeout: 1.5\r\n\r\n", "bad Timeout"),
            (b"PUT /k HTTP/1.1\r\nExtraFlags: yes\r\n\r\n", "bad ExtraFlags"),
        ] {
            assert_eq!(bad(input), (reason, Some(input.len())), "{:?}", String::from_utf8_lossy(input));
        }
        assert_eq!(request(b"PUT /k HTTP/1.1\r\nTimeout: 525600\r\n\r\n").0.timeout_minutes, Some(MAX_TIMEOUT_MINUTES));
        assert_eq!(
            request(b"DELETE /k HTTP/1.1\r\nLockCookie: 2147483647\r\n\r\n").0.lock_cookie,
            Some(i32::MAX as u32)
        );
    }

    #[test]
    fn broken_framing_is_400_and_closes() {
        let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "k".repeat(MAX_LINE));
        let long_header = format!("GET /k HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "v".repeat(MAX_LINE));
        let many = format!("GET /k HTTP/1.1\r\n{}\r\n", "X-A: 1\r\n".repeat(MAX_HEADERS + 1));
        let endless = format!("GET /k HTTP/1.1\r\nX-A: {}", "v".repeat(MAX_LINE));
        for (input, reason) in [
            (&b"GET /k HTTP/1.1\r\nContent-Length: ten\r\n\r\n"[..], "bad Content-Length"),
            (b"GET /k HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
            (b"PUT /k HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "conflicting Content-Length"),
            (b"PUT /k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding is not supported"),
            (b"GET /k HTTP/9.9\r\n\r\n", "malformed request head"),
            (b"\x00\x01\x02\r\n\r\n", "malformed request head"),
            (long_line.as_bytes(), "request line or header too long"),
            (long_header.as_bytes(), "request line or header too long"),
            (many.as_bytes(), "too many headers"),
            (endless.as_bytes(), "request head too long"),
        ] {
            assert_eq!(bad(input), (reason, None), "{:?}", String::from_utf8_lossy(&input[..input.len().min(60)]));
        }
        // A request line that is already too long is refused before its end arrives.
        assert_eq!(bad(format!("GET /{}", "k".repeat(MAX_LINE)).as_bytes()).0, "request head too long");
        let huge = format!("PUT /k HTTP/1.1\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
        assert_eq!(bad(huge.as_bytes()), ("body too large", None));
    }

    fn encoded(response: StateResponse<'_>, head: bool, close: bool) -> String {
        let mut out = Vec::new();
        encode(&response, head, close, &mut out);
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn responses_carry_what_the_client_reads_in_the_specifications_order() {
        let item = StateItem { timeout_minutes: 20, body: b"data", lock_cookie: Some(2), uninitialized: true };
        assert_eq!(
            encoded(StateResponse::Ok(Some(item)), false, false),
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-AspNet-Version: 4.0.30319\r\nTimeout: 20\r\n\
             ActionFlags: 1\r\nLockCookie: 2\r\n\r\ndata"
        );
        let plain = StateItem { lock_cookie: None, uninitialized: false, ..item };
        assert_eq!(
            encoded(StateResponse::Ok(Some(plain)), false, false),
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-AspNet-Version: 4.0.30319\r\nTimeout: 20\r\n\r\ndata"
        );
        // HEAD: the length of what a GET would send, and no body.
        assert_eq!(
            encoded(StateResponse::Ok(Some(plain)), true, false),
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-AspNet-Version: 4.0.30319\r\nTimeout: 20\r\n\r\n"
        );
        assert_eq!(
            encoded(StateResponse::Ok(None), false, false),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-AspNet-Version: 4.0.30319\r\n\r\n"
        );
        assert_eq!(
            encoded(StateResponse::Locked { lock_cookie: 5, lock_age_secs: 3, locked_at_unix_ms: 0 }, false, false),
            "HTTP/1.1 423 Locked\r\nContent-Length: 0\r\nX-AspNet-Version: 4.0.30319\r\nLockCookie: 5\r\n\
             LockAge: 3\r\nLockDate: 621355968000000000\r\n\r\n"
        );
        assert_eq!(
            encoded(StateResponse::NotFound, false, false),
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nX-AspNet-Version: 4.0.30319\r\n\r\n"
        );
        assert_eq!(
            encoded(StateResponse::BadRequest, false, true),
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nX-AspNet-Version: 4.0.30319\r\n\
             Connection: close\r\n\r\n"
        );
    }

    #[test]
    fn lock_dates_are_dotnet_ticks() {
        // 2026-01-01T00:00:00Z is 1,767,225,600 s after the epoch.
        assert_eq!(ticks_of_unix_ms(1_767_225_600_000), 621_355_968_000_000_000 + 17_672_256_000_000_000);
    }
}
