//! memcached's classic text protocol: bytes in, [`Command`]s out, with no I/O.
//!
//! The parser borrows from the caller's read buffer and reports how many bytes a
//! command used; "not enough bytes yet" is a normal outcome ([`ParseError::Incomplete`]).
//! Tokenising follows memcached's `tokenize_command` (proto_text.c) exactly, because
//! clients can observe its quirks: only the space character separates tokens, a line
//! is cut at its first NUL byte, at most 23 tokens count towards a command's arity (a
//! multi-get takes its keys from the whole line), and `noreply` is recognised only as
//! the last token.

use super::meta::{self, MetaLine, MetaRequest};
use super::reply::ErrorReply;
use crate::number::{parse_i32, parse_u32, parse_u64};

/// Longest key, in bytes (memcached.h `KEY_MAX_LENGTH`).
pub const KEY_MAX_LENGTH: usize = 250;

/// A line without a newline after this many bytes closes the connection, unless it
/// is a multi-get, which may keep growing (proto_text.c `try_read_command_ascii`).
pub const LINE_LIMIT: usize = 2048;

/// How far a multi-get line may grow before we give up on it. memcached lets it grow
/// without bound; we cap it so one client cannot take all memory.
pub const MULTIGET_LINE_LIMIT: usize = 16 * 1024 * 1024;

/// memcached's `MAX_TOKENS`: the tokenizer fills at most 23 tokens plus a terminal.
const MAX_TOKENS: usize = 24;

/// Byte size memcached charges for an item, used to decide "object too large" at the
/// same boundary as memcached does (items.c `item_make_header` + `item_size_ok`):
/// the 48-byte `struct _stritem` on 64-bit, the key and its NUL, 4 bytes of client
/// flags when they are non-zero, the value with its `\r\n`, and 8 bytes of CAS.
pub fn memcached_item_size(key_len: usize, flags: u32, value_len: usize, cas_enabled: bool) -> usize {
    const ITEM_HEADER: usize = 48;
    let flags_len = if flags != 0 { 4 } else { 0 };
    let cas_len = if cas_enabled { 8 } else { 0 };
    ITEM_HEADER + key_len + 1 + flags_len + value_len + 2 + cas_len
}

/// The slab class memcached would store an item of `size` bytes in, with its default
/// settings (`-n 48 -f 1.25`, 512 KiB largest chunk): slabs.c `slabs_init` starts at
/// the 48-byte item header plus 48, grows by 1.25 aligned to 8 bytes, and stops
/// where the next size would pass the largest chunk, which becomes the last class.
/// Reported by `me` as `cls=`.
pub fn memcached_slab_class(size: usize) -> u32 {
    const SLAB_CHUNK_MAX: usize = 512 * 1024;
    const FACTOR: f64 = 1.25;
    let mut chunk = 96usize;
    let mut class = 1;
    while (chunk as f64) < SLAB_CHUNK_MAX as f64 / FACTOR {
        chunk = chunk.next_multiple_of(8);
        if size <= chunk {
            return class;
        }
        chunk = (chunk as f64 * FACTOR) as usize;
        class += 1;
    }
    class
}

/// What the parser needs to know about the server's settings.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `-I`: largest item, counted as memcached counts it ([`memcached_item_size`]).
    pub item_size_max: usize,
    /// `-C` turns CAS off, which changes the item size accounting.
    pub cas_enabled: bool,
}

impl Default for Limits {
    fn default() -> Self {
        // memcached's defaults: -I 1m, CAS on.
        Limits { item_size_max: 1024 * 1024, cas_enabled: true }
    }
}

/// The storage commands; `Cas` carries its unique in [`Command::Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

/// The `stats` sub-commands we answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsGroup {
    General,
    Settings,
    Items,
    Slabs,
    Sizes,
    Conns,
    /// `stats replication` (stickless).
    Replication,
    Reset,
    DetailOn,
    DetailOff,
    DetailDump,
    DetailUsage,
    Unknown,
}

/// How `shutdown` was asked to stop the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownMode {
    Now,
    Graceful,
    /// An argument other than `graceful` (refused only when shutdown is enabled).
    Invalid,
}

/// The log streams a `watch` connection asks for (memcached's `LOG_*` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchKinds(pub u8);

impl WatchKinds {
    /// Reads: `type=item_get`. What a bare `watch` shows, as in memcached.
    pub const FETCHERS: u8 = 1 << 0;
    /// Storage commands: `type=item_store`.
    pub const MUTATIONS: u8 = 1 << 1;
    /// `type=eviction`.
    pub const EVICTIONS: u8 = 1 << 2;
    /// `delete` and `md`: `type=deleted`.
    pub const DELETIONS: u8 = 1 << 3;

    fn from_name(name: &[u8]) -> Option<u8> {
        Some(match name {
            b"fetchers" => Self::FETCHERS,
            b"mutations" => Self::MUTATIONS,
            b"evictions" => Self::EVICTIONS,
            b"deletions" => Self::DELETIONS,
            _ => return None,
        })
    }
}

/// The keys of a multi-key get, split lazily on spaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keys<'a>(pub &'a [u8]);

impl<'a> Keys<'a> {
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0.split(|&b| b == b' ').filter(|k| !k.is_empty())
    }
}

/// One request, borrowing its key and data from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `get`/`gets`/`bget`, and `gat`/`gats` when `touch` holds the exptime.
    Get {
        keys: Keys<'a>,
        with_cas: bool,
        touch: Option<i32>,
    },
    /// A storage command with its complete, well-terminated data block.
    Store {
        mode: StoreMode,
        key: &'a [u8],
        flags: u32,
        exptime: i32,
        data: &'a [u8],
        cas_unique: u64,
        noreply: bool,
    },
    /// A storage command whose value exceeds `-I`; the data is swallowed
    /// ([`Parsed::swallow`]) and a `set` removes the old item (memcached F6).
    StoreTooLarge {
        mode: StoreMode,
        key: &'a [u8],
        noreply: bool,
    },
    /// A data block that does not end in `\r\n`.
    BadDataChunk {
        noreply: bool,
    },
    Delete {
        key: &'a [u8],
        noreply: bool,
    },
    Arithmetic {
        incr: bool,
        key: &'a [u8],
        delta: u64,
        noreply: bool,
    },
    Touch {
        key: &'a [u8],
        exptime: i32,
        noreply: bool,
    },
    /// `flush_all [delay]`; a delay of 0 or less means now.
    FlushAll {
        delay: i32,
        noreply: bool,
    },
    Version,
    Verbosity {
        level: u32,
        noreply: bool,
    },
    Quit,
    Stats(StatsGroup),
    /// `shutdown [graceful]`.
    Shutdown(ShutdownMode),
    /// `watch [fetchers|mutations|evictions|deletions ...]`.
    Watch(WatchKinds),
    /// `cache_memlimit <megabytes>`.
    CacheMemlimit {
        megabytes: u32,
        noreply: bool,
    },
    /// `mn`: the meta no-op, answered `MN`.
    MetaNoop,
    MetaGet(MetaRequest<'a>),
    /// `ms` with its complete, well-terminated data block.
    MetaSet {
        req: MetaRequest<'a>,
        data: &'a [u8],
    },
    /// `ms` whose value exceeds `-I`; the data is swallowed and the key removed.
    MetaSetTooLarge(MetaRequest<'a>),
    MetaDelete(MetaRequest<'a>),
    MetaArithmetic(MetaRequest<'a>),
    /// `me <key> [b]`.
    MetaDebug {
        key: &'a [u8],
        binary: bool,
    },
    /// Credentials sent as the value of a `set` before a `-Y` connection may do
    /// anything else.
    Authenticate {
        user: &'a [u8],
        password: &'a [u8],
    },
    /// A line that earns an error reply (or silence, with `noreply`).
    Error {
        reply: ErrorReply,
        noreply: bool,
    },
}

/// A parsed command and how many bytes of the buffer it used.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub cmd: Command<'a>,
    pub consumed: usize,
    /// Bytes after `consumed` to discard as they arrive (a rejected data block).
    pub swallow: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// More bytes are needed. `need` is the total buffer length that will complete
    /// the command, when known (a storage command waiting for its data).
    Incomplete { need: Option<usize> },
    /// The line is too long to be a command: close the connection, as memcached does.
    Close,
}

/// Tokens of one line, as `tokenize_command` makes them.
struct Tokens<'a> {
    tokens: [&'a [u8]; MAX_TOKENS - 1],
    /// Real tokens seen (at most 23).
    count: usize,
}

impl<'a> Tokens<'a> {
    fn new(line: &'a [u8]) -> Self {
        let mut tokens: [&'a [u8]; MAX_TOKENS - 1] = [&[]; MAX_TOKENS - 1];
        let mut count = 0;
        let mut start = 0;
        let mut i = 0;
        while i < line.len() {
            if line[i] == b' ' {
                if start != i {
                    tokens[count] = &line[start..i];
                    count += 1;
                    if count == MAX_TOKENS - 1 {
                        return Tokens { tokens, count };
                    }
                }
                start = i + 1;
            }
            i += 1;
        }
        if start != i {
            tokens[count] = &line[start..i];
            count += 1;
        }
        Tokens { tokens, count }
    }

    /// memcached's `ntokens`: real tokens plus the terminal one.
    fn ntokens(&self) -> usize {
        self.count + 1
    }

    /// Token `i`, or the empty terminal token past the end.
    fn get(&self, i: usize) -> &'a [u8] {
        if i < self.count { self.tokens[i] } else { &[] }
    }

    /// memcached `set_noreply_maybe`: the last real token is exactly `noreply`.
    fn noreply(&self) -> bool {
        self.count >= 1 && self.tokens[self.count - 1] == b"noreply"
    }
}

/// Parses one command from the front of `buf`.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parsed<'a>, ParseError> {
    let Some(newline) = memchr(b'\n', buf) else {
        return Err(incomplete_line(buf));
    };
    let mut line = &buf[..newline];
    // memcached strips a '\r' before the '\n' only when the line has another byte.
    if line.len() > 1 && line[line.len() - 1] == b'\r' {
        line = &line[..line.len() - 1];
    }
    // The C code treats the line as a string: it ends at the first NUL.
    if let Some(nul) = memchr(0, line) {
        line = &line[..nul];
    }
    let line_len = newline + 1;
    let toks = Tokens::new(line);
    let simple = |cmd| Ok(Parsed { cmd, consumed: line_len, swallow: 0 });
    let error = |reply, noreply| simple(Command::Error { reply, noreply });

    let nt = toks.ntokens();
    let verb = toks.get(0);
    if nt < 2 || verb.len() < 2 {
        return error(ErrorReply::Error, false);
    }
    let want = |ok: bool, cmd: Command<'a>| {
        if ok { simple(cmd) } else { error(ErrorReply::Error, false) }
    };

    match verb {
        b"get" | b"bget" => want(nt >= 3, get_command(line, &toks, false, None)),
        b"gets" => want(nt >= 3, get_command(line, &toks, true, None)),
        b"gat" | b"gats" => {
            if nt < 3 {
                return error(ErrorReply::Error, false);
            }
            match parse_i32(toks.get(1)) {
                Some(exptime) => simple(get_command(line, &toks, verb == b"gats", Some(exptime))),
                None => error(ErrorReply::InvalidExptime, false),
            }
        }
        b"set" | b"add" | b"replace" | b"append" | b"prepend" => {
            if nt != 6 && nt != 7 {
                return error(ErrorReply::Error, false);
            }
            let mode = match verb {
                b"set" => StoreMode::Set,
                b"add" => StoreMode::Add,
                b"replace" => StoreMode::Replace,
                b"append" => StoreMode::Append,
                _ => StoreMode::Prepend,
            };
            storage_command(buf, line_len, &toks, mode, limits)
        }
        b"cas" => {
            if nt != 7 && nt != 8 {
                return error(ErrorReply::Error, false);
            }
            storage_command(buf, line_len, &toks, StoreMode::Cas, limits)
        }
        b"delete" => {
            if !(3..=5).contains(&nt) {
                return error(ErrorReply::Error, false);
            }
            let mut noreply = false;
            if nt > 3 {
                let hold_is_zero = toks.get(2) == b"0";
                noreply = toks.noreply();
                let valid = (nt == 4 && (hold_is_zero || noreply)) || (nt == 5 && hold_is_zero && noreply);
                if !valid {
                    return error(ErrorReply::DeleteUsage, noreply);
                }
            }
            let key = toks.get(1);
            if key.len() > KEY_MAX_LENGTH {
                return error(ErrorReply::BadCommandLineFormat, noreply);
            }
            simple(Command::Delete { key, noreply })
        }
        b"incr" | b"decr" => {
            if nt != 4 && nt != 5 {
                return error(ErrorReply::Error, false);
            }
            let noreply = toks.noreply();
            let key = toks.get(1);
            if key.len() > KEY_MAX_LENGTH {
                return error(ErrorReply::BadCommandLineFormat, noreply);
            }
            match parse_u64(toks.get(2)) {
                Some(delta) => simple(Command::Arithmetic { incr: verb == b"incr", key, delta, noreply }),
                None => error(ErrorReply::InvalidDelta, noreply),
            }
        }
        b"touch" => {
            if nt != 4 && nt != 5 {
                return error(ErrorReply::Error, false);
            }
            let noreply = toks.noreply();
            let key = toks.get(1);
            if key.len() > KEY_MAX_LENGTH {
                return error(ErrorReply::BadCommandLineFormat, noreply);
            }
            match parse_i32(toks.get(2)) {
                Some(exptime) => simple(Command::Touch { key, exptime, noreply }),
                None => error(ErrorReply::InvalidExptime, noreply),
            }
        }
        b"flush_all" => {
            if !(2..=4).contains(&nt) {
                return error(ErrorReply::Error, false);
            }
            let noreply = toks.noreply();
            let mut delay = 0;
            if nt != if noreply { 3 } else { 2 } {
                match parse_i32(toks.get(1)) {
                    Some(d) => delay = d,
                    None => return error(ErrorReply::InvalidExptime, noreply),
                }
            }
            simple(Command::FlushAll { delay, noreply })
        }
        b"verbosity" => {
            if nt != 3 && nt != 4 {
                return error(ErrorReply::Error, false);
            }
            let noreply = toks.noreply();
            match parse_u32(toks.get(1)) {
                Some(level) => simple(Command::Verbosity { level, noreply }),
                None => error(ErrorReply::BadCommandLineFormat, noreply),
            }
        }
        b"version" => simple(Command::Version),
        b"quit" => simple(Command::Quit),
        b"stats" => simple(Command::Stats(stats_group(&toks))),
        b"shutdown" => simple(Command::Shutdown(match (nt, toks.get(1)) {
            (2, _) => ShutdownMode::Now,
            (3, b"graceful") => ShutdownMode::Graceful,
            _ => ShutdownMode::Invalid,
        })),
        b"watch" => {
            // Each argument names a stream; anything else is refused with `ERROR`, as
            // memcached refuses it (proto_text.c `process_watch_command`).
            let mut kinds = if nt == 2 { WatchKinds::FETCHERS } else { 0 };
            for i in 1..nt - 1 {
                match WatchKinds::from_name(toks.get(i)) {
                    Some(kind) => kinds |= kind,
                    // A trailing noreply is itself an unknown stream, refused silently.
                    None => return error(ErrorReply::Error, toks.noreply()),
                }
            }
            simple(Command::Watch(WatchKinds(kinds)))
        }
        b"cache_memlimit" => {
            if nt != 3 && nt != 4 {
                return error(ErrorReply::Error, false);
            }
            let noreply = toks.noreply();
            match parse_u32(toks.get(1)) {
                Some(megabytes) => simple(Command::CacheMemlimit { megabytes, noreply }),
                None => error(ErrorReply::Error, noreply),
            }
        }
        b"mn" => simple(Command::MetaNoop),
        b"mg" | b"ms" | b"md" | b"ma" | b"me" => {
            let m = MetaLine::new(line, nt, |i| toks.get(i));
            match verb {
                b"mg" => meta::parse_get(&m, line_len),
                b"ms" => meta::parse_set(buf, &m, line_len, limits),
                b"md" => meta::parse_delete(&m, line_len),
                b"ma" => meta::parse_arithmetic(&m, line_len),
                _ => meta::parse_debug(&m, line_len),
            }
        }
        _ => {
            // memcached closes connections that look like HTTP requests.
            if toks.get(nt - 2).starts_with(b"HTTP/") {
                return Err(ParseError::Close);
            }
            error(ErrorReply::Error, false)
        }
    }
}

/// The longest `user password` token `-Y` reads (memcached's MAX_AUTH_REQ_LEN).
pub const AUTH_TOKEN_MAX: u32 = 16 * 1024;

/// Parses what an unauthenticated connection sends under `-Y`: only
/// `set <any> <any> <any> <bytes>` with `<user> <password>` as its value counts
/// (proto_text.c `try_read_command_asciiauth`); anything else is refused.
pub fn parse_auth(buf: &[u8]) -> Result<Parsed<'_>, ParseError> {
    let Some(newline) = memchr(b'\n', buf) else {
        return Err(if buf.len() > LINE_LIMIT { ParseError::Close } else { ParseError::Incomplete { need: None } });
    };
    let line_len = newline + 1;
    let error = |reply, consumed| Ok(Parsed { cmd: Command::Error { reply, noreply: false }, consumed, swallow: 0 });
    // memcached leaves the '\r' in place; its number parser stops at it.
    let mut line = &buf[..newline];
    if let Some(nul) = memchr(0, line) {
        line = &line[..nul];
    }
    let toks = Tokens::new(line);
    let size = toks.get(4);
    let size = parse_u32(size.strip_suffix(b"\r").unwrap_or(size));
    let (true, Some(size)) = (toks.ntokens() >= 6 && toks.get(0) == b"set", size) else {
        return error(ErrorReply::Unauthenticated, line_len);
    };
    // An unauthenticated client must not make the connection buffer what it likes:
    // memcached refuses a token over 16 KiB after its line and reads what follows as
    // new lines (proto_text.c MAX_AUTH_REQ_LEN, "auth: fix crash when given huge
    // token", in 1.6.42). Debian's 1.6.18 waits for any size: up to 4 GiB buffered
    // per unauthenticated connection.
    if size > AUTH_TOKEN_MAX {
        return error(ErrorReply::AuthTokenTooLong, line_len);
    }
    let total = line_len + size as usize + 2;
    if buf.len() < total {
        return Err(ParseError::Incomplete { need: Some(total) });
    }
    let payload = &buf[line_len..total];
    let Some(credentials) = payload.strip_suffix(b"\r\n") else {
        return error(ErrorReply::AuthBadTermination, total);
    };
    let creds = Tokens::new(credentials);
    if creds.ntokens() < 3 {
        return error(ErrorReply::AuthBadTokenFormat, total);
    }
    Ok(Parsed {
        cmd: Command::Authenticate { user: creds.get(0), password: creds.get(1) },
        consumed: total,
        swallow: 0,
    })
}

/// No newline yet: wait, or close when the line is too long to be a command.
fn incomplete_line(buf: &[u8]) -> ParseError {
    if buf.len() <= LINE_LIMIT {
        return ParseError::Incomplete { need: None };
    }
    let spaces = buf.iter().take_while(|&&b| b == b' ').count();
    let rest = &buf[spaces..];
    let is_multiget = rest.starts_with(b"get ") || rest.starts_with(b"gets ");
    if spaces > 100 || !is_multiget || buf.len() > MULTIGET_LINE_LIMIT {
        ParseError::Close
    } else {
        ParseError::Incomplete { need: None }
    }
}

fn get_command<'a>(line: &'a [u8], toks: &Tokens<'a>, with_cas: bool, touch: Option<i32>) -> Command<'a> {
    let first_key = if touch.is_some() { 2 } else { 1 };
    // Keys run from the first key token to the end of the line.
    let keys = match toks.count > first_key {
        true => {
            let start = toks.get(first_key).as_ptr() as usize - line.as_ptr() as usize;
            &line[start..]
        }
        false => &[][..],
    };
    Command::Get { keys: Keys(keys), with_cas, touch }
}

fn storage_command<'a>(
    buf: &'a [u8],
    line_len: usize,
    toks: &Tokens<'a>,
    mode: StoreMode,
    limits: &Limits,
) -> Result<Parsed<'a>, ParseError> {
    let noreply = toks.noreply();
    let error = |reply| Ok(Parsed { cmd: Command::Error { reply, noreply }, consumed: line_len, swallow: 0 });
    let key = toks.get(1);
    if key.len() > KEY_MAX_LENGTH {
        return error(ErrorReply::BadCommandLineFormat);
    }
    let (Some(flags), Some(exptime), Some(vlen)) =
        (parse_u32(toks.get(2)), parse_i32(toks.get(3)), parse_i32(toks.get(4)))
    else {
        return error(ErrorReply::BadCommandLineFormat);
    };
    let mut cas_unique = 0;
    if mode == StoreMode::Cas {
        match parse_u64(toks.get(5)) {
            Some(c) => cas_unique = c,
            None => return error(ErrorReply::BadCommandLineFormat),
        }
    }
    // memcached rejects lengths that would overflow once the "\r\n" is added.
    if !(0..=i32::MAX - 2).contains(&vlen) {
        return error(ErrorReply::BadCommandLineFormat);
    }
    let vlen = vlen as usize;
    let block = vlen + 2;
    if memcached_item_size(key.len(), flags, vlen, limits.cas_enabled) > limits.item_size_max {
        return Ok(Parsed { cmd: Command::StoreTooLarge { mode, key, noreply }, consumed: line_len, swallow: block });
    }
    let total = line_len + block;
    if buf.len() < total {
        return Err(ParseError::Incomplete { need: Some(total) });
    }
    let consumed = total;
    if &buf[line_len + vlen..total] != b"\r\n" {
        return Ok(Parsed { cmd: Command::BadDataChunk { noreply }, consumed, swallow: 0 });
    }
    let data = &buf[line_len..line_len + vlen];
    Ok(Parsed { cmd: Command::Store { mode, key, flags, exptime, data, cas_unique, noreply }, consumed, swallow: 0 })
}

fn stats_group(toks: &Tokens<'_>) -> StatsGroup {
    if toks.ntokens() == 2 {
        return StatsGroup::General;
    }
    match toks.get(1) {
        b"reset" => StatsGroup::Reset,
        b"settings" => StatsGroup::Settings,
        b"items" => StatsGroup::Items,
        b"slabs" => StatsGroup::Slabs,
        b"sizes" => StatsGroup::Sizes,
        b"conns" => StatsGroup::Conns,
        b"replication" => StatsGroup::Replication,
        b"detail" => match toks.get(2) {
            b"on" => StatsGroup::DetailOn,
            b"off" => StatsGroup::DetailOff,
            b"dump" => StatsGroup::DetailDump,
            _ => StatsGroup::DetailUsage,
        },
        _ => StatsGroup::Unknown,
    }
}

#[inline]
fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(input: &[u8]) -> Result<Parsed<'_>, ParseError> {
        parse(input, &Limits::default())
    }

    fn cmd(input: &[u8]) -> Command<'_> {
        p(input).expect("complete").cmd
    }

    fn err(reply: ErrorReply, noreply: bool) -> Command<'static> {
        Command::Error { reply, noreply }
    }

    #[test]
    fn storage_commands() {
        let parsed = p(b"set k 5 100 3\r\nabc\r\nget k\r\n").unwrap();
        assert_eq!(parsed.consumed, 20);
        assert_eq!(
            parsed.cmd,
            Command::Store {
                mode: StoreMode::Set,
                key: b"k",
                flags: 5,
                exptime: 100,
                data: b"abc",
                cas_unique: 0,
                noreply: false
            }
        );
        assert!(matches!(
            cmd(b"cas k 0 0 1 77 noreply\r\nx\r\n"),
            Command::Store { mode: StoreMode::Cas, cas_unique: 77, noreply: true, .. }
        ));
        assert!(matches!(cmd(b"append k 0 0 1\r\nx\r\n"), Command::Store { mode: StoreMode::Append, .. }));
        assert!(matches!(cmd(b"prepend k 0 0 1\r\nx\r\n"), Command::Store { mode: StoreMode::Prepend, .. }));
        assert!(matches!(cmd(b"add k 0 0 1\r\nx\r\n"), Command::Store { mode: StoreMode::Add, .. }));
        assert!(matches!(cmd(b"replace k 0 0 1\r\nx\r\n"), Command::Store { mode: StoreMode::Replace, .. }));
        // A trailing token that is not noreply is ignored, as in memcached.
        assert!(matches!(cmd(b"set k 0 0 1 junk\r\nx\r\n"), Command::Store { noreply: false, .. }));
    }

    #[test]
    fn storage_errors() {
        assert_eq!(cmd(b"set k 0 0\r\n"), err(ErrorReply::Error, false));
        assert_eq!(cmd(b"set k x 0 1\r\n"), err(ErrorReply::BadCommandLineFormat, false));
        assert_eq!(cmd(b"set k 0 0 -1\r\n"), err(ErrorReply::BadCommandLineFormat, false));
        assert_eq!(cmd(b"set k 0 0 -1 noreply\r\n"), err(ErrorReply::BadCommandLineFormat, true));
        let long_key = [b'a'; 251];
        let line = [b"set ".as_slice(), &long_key, b" 0 0 1\r\n"].concat();
        assert_eq!(cmd(&line), err(ErrorReply::BadCommandLineFormat, false));
        assert_eq!(cmd(b"set k 0 0 3\r\nabcde\r\n"), Command::BadDataChunk { noreply: false });
        let too_big = p(b"set k 0 0 2000000\r\n").unwrap();
        assert_eq!(too_big.cmd, Command::StoreTooLarge { mode: StoreMode::Set, key: b"k", noreply: false });
        assert_eq!((too_big.consumed, too_big.swallow), (19, 2000002));
    }

    #[test]
    fn too_large_boundary_matches_memcached_accounting() {
        let limits = Limits::default();
        // 1 MiB minus header (48), key "k" + NUL (2), "\r\n" (2) and CAS (8).
        let max = 1024 * 1024 - 60;
        let ok = format!("set k 0 0 {max}\r\n");
        assert_eq!(parse(ok.as_bytes(), &limits), Err(ParseError::Incomplete { need: Some(ok.len() + max + 2) }));
        let over = format!("set k 0 0 {}\r\n", max + 1);
        assert!(matches!(parse(over.as_bytes(), &limits).unwrap().cmd, Command::StoreTooLarge { .. }));
    }

    #[test]
    fn slab_classes_match_memcached() {
        // `memcached -vv` prints: class 1 chunk 96, 2: 120, 3: 152, ... 39: 524288.
        assert_eq!(memcached_slab_class(62), 1);
        assert_eq!(memcached_slab_class(96), 1);
        assert_eq!(memcached_slab_class(97), 2);
        assert_eq!(memcached_slab_class(152), 3);
        assert_eq!(memcached_slab_class(153), 4);
        assert_eq!(memcached_slab_class(400_000), 39);
        assert_eq!(memcached_slab_class(524_288), 39);
    }

    #[test]
    fn retrieval() {
        assert_eq!(cmd(b"get a b  c\r\n"), Command::Get { keys: Keys(b"a b  c"), with_cas: false, touch: None });
        assert_eq!(Keys(b"a b  c").iter().collect::<Vec<_>>(), vec![&b"a"[..], b"b", b"c"]);
        assert!(matches!(cmd(b"gets a\r\n"), Command::Get { with_cas: true, .. }));
        assert!(matches!(cmd(b"gats 10 a\r\n"), Command::Get { with_cas: true, touch: Some(10), .. }));
        assert_eq!(cmd(b"gat x a\r\n"), err(ErrorReply::InvalidExptime, false));
        assert_eq!(cmd(b"get\r\n"), err(ErrorReply::Error, false));
        assert_eq!(cmd(b"gat 10\r\n"), Command::Get { keys: Keys(b""), with_cas: false, touch: Some(10) });
    }

    #[test]
    fn line_endings_and_junk() {
        assert_eq!(cmd(b"version\n"), Command::Version);
        assert_eq!(cmd(b"\r\n"), err(ErrorReply::Error, false));
        assert_eq!(cmd(b"\n"), err(ErrorReply::Error, false));
        assert_eq!(cmd(b"GET a\r\n"), err(ErrorReply::Error, false));
        assert_eq!(cmd(b"version\0junk\r\n"), Command::Version);
        assert_eq!(p(b"GET / HTTP/1.1\r\n"), Err(ParseError::Close));
        assert_eq!(p(b"get a"), Err(ParseError::Incomplete { need: None }));
        assert_eq!(p(&[b'x'; 2049]), Err(ParseError::Close));
        let mut multiget = b"get ".to_vec();
        multiget.extend(std::iter::repeat_n(b'k', 3000));
        assert_eq!(p(&multiget), Err(ParseError::Incomplete { need: None }));
    }

    #[test]
    fn other_commands() {
        assert_eq!(cmd(b"delete k\r\n"), Command::Delete { key: b"k", noreply: false });
        assert_eq!(cmd(b"delete k 0\r\n"), Command::Delete { key: b"k", noreply: false });
        assert_eq!(cmd(b"delete k 0 noreply\r\n"), Command::Delete { key: b"k", noreply: true });
        assert_eq!(cmd(b"delete k 1\r\n"), err(ErrorReply::DeleteUsage, false));
        assert_eq!(cmd(b"incr k 5\r\n"), Command::Arithmetic { incr: true, key: b"k", delta: 5, noreply: false });
        assert_eq!(cmd(b"decr k -1\r\n"), err(ErrorReply::InvalidDelta, false));
        assert_eq!(cmd(b"touch k 10 noreply\r\n"), Command::Touch { key: b"k", exptime: 10, noreply: true });
        assert_eq!(cmd(b"flush_all\r\n"), Command::FlushAll { delay: 0, noreply: false });
        assert_eq!(cmd(b"flush_all 5 noreply\r\n"), Command::FlushAll { delay: 5, noreply: true });
        assert_eq!(cmd(b"flush_all noreply\r\n"), Command::FlushAll { delay: 0, noreply: true });
        assert_eq!(cmd(b"flush_all x\r\n"), err(ErrorReply::InvalidExptime, false));
        assert_eq!(cmd(b"verbosity 1\r\n"), Command::Verbosity { level: 1, noreply: false });
        assert_eq!(cmd(b"verbosity\r\n"), err(ErrorReply::Error, false));
        assert_eq!(cmd(b"stats\r\n"), Command::Stats(StatsGroup::General));
        assert_eq!(cmd(b"stats items\r\n"), Command::Stats(StatsGroup::Items));
        assert_eq!(cmd(b"stats bogus\r\n"), Command::Stats(StatsGroup::Unknown));
        assert_eq!(cmd(b"quit\r\n"), Command::Quit);
        assert_eq!(cmd(b"mn\r\n"), Command::MetaNoop);
        assert_eq!(cmd(b"shutdown graceful\r\n"), Command::Shutdown(ShutdownMode::Graceful));
        assert_eq!(cmd(b"shutdown now\r\n"), Command::Shutdown(ShutdownMode::Invalid));
        assert_eq!(cmd(b"watch\r\n"), Command::Watch(WatchKinds(WatchKinds::FETCHERS)));
        let both = WatchKinds::MUTATIONS | WatchKinds::DELETIONS;
        assert_eq!(cmd(b"watch mutations deletions mutations\r\n"), Command::Watch(WatchKinds(both)));
        assert_eq!(cmd(b"watch mutations rawcmds\r\n"), err(ErrorReply::Error, false));
        assert_eq!(cmd(b"cache_memlimit 100 noreply\r\n"), Command::CacheMemlimit { megabytes: 100, noreply: true });
    }

    #[test]
    fn authentication_before_anything_else() {
        let auth = |input| parse_auth(input).map(|p| (p.cmd, p.consumed));
        assert_eq!(
            auth(b"set a 0 0 6\r\nu pass\r\n"),
            Ok((Command::Authenticate { user: b"u", password: b"pass" }, 21))
        );
        assert_eq!(auth(b"get a\r\n"), Ok((err(ErrorReply::Unauthenticated, false), 7)));
        assert_eq!(auth(b"set a 0 0 x\r\n"), Ok((err(ErrorReply::Unauthenticated, false), 13)));
        assert_eq!(auth(b"set a 0 0 2\r\nuu\r\n"), Ok((err(ErrorReply::AuthBadTokenFormat, false), 17)));
        assert_eq!(auth(b"set a 0 0 2\r\nuuXX"), Ok((err(ErrorReply::AuthBadTermination, false), 17)));
        assert_eq!(parse_auth(b"set a 0 0 10\r\nu"), Err(ParseError::Incomplete { need: Some(26) }));
        // Partial: the line, then the token, arrive in pieces; nothing is judged early.
        let whole = b"set a 0 0 6\r\nu pass\r\n";
        for cut in 0..whole.len() {
            assert!(matches!(parse_auth(&whole[..cut]), Err(ParseError::Incomplete { .. })), "cut at {cut}");
        }
        // Oversized: refused after its line, without waiting for (or buffering) it.
        assert_eq!(auth(b"set a 0 0 16384\r\n"), Err(ParseError::Incomplete { need: Some(16384 + 19) }));
        assert_eq!(auth(b"set a 0 0 16385\r\n"), Ok((err(ErrorReply::AuthTokenTooLong, false), 17)));
        assert_eq!(auth(b"set a 0 0 4294967295\r\n"), Ok((err(ErrorReply::AuthTokenTooLong, false), 22)));
        // A line with no end is closed once longer than any command could be.
        assert_eq!(parse_auth(&[b'x'; 4096]), Err(ParseError::Close));
    }

    #[test]
    fn incomplete_data_reports_needed_length() {
        assert_eq!(p(b"set k 0 0 10\r\nabc"), Err(ParseError::Incomplete { need: Some(26) }));
    }
}
