//! memcached's classic text protocol: a tokenised line in, a [`Command`] out, with
//! no I/O; [`ascii`](super::ascii) hands it the lines whose verb is not a meta one.
//!
//! The parser borrows from the caller's read buffer and reports how many bytes a
//! command used; "not enough bytes yet" is a normal outcome ([`ParseError::Incomplete`]).
//! Tokenising follows memcached's `tokenize_command` (proto_text.c) exactly, because
//! clients can observe its quirks: only the space character separates tokens, a line
//! is cut at its first NUL byte, at most 23 tokens count towards a command's arity (a
//! multi-get takes its keys from the whole line), and `noreply` is recognised only as
//! the last token.

use super::command::{
    Command, KEY_MAX_LENGTH, Keys, Limits, ParseError, Parsed, ShutdownMode, StatsGroup, StoreMode, WatchKinds,
    memcached_item_size,
};
use super::reply::ErrorReply;
use super::tokens::{LINE_LIMIT, Tokens, memchr};
use crate::number::{parse_i32, parse_u32, parse_u64};

/// Parses a classic command from its tokenised `line`, the first `line_len` bytes of
/// `buf` (which holds the data block of a storage command after it). Each verb's
/// arity and arguments are checked as memcached's `process_*_command` checks them
/// (proto_text.c), with its error replies.
pub(super) fn parse_classic<'a>(
    buf: &'a [u8],
    line: &'a [u8],
    line_len: usize,
    toks: &Tokens<'a>,
    limits: &Limits,
) -> Result<Parsed<'a>, ParseError> {
    let classic = Classic { buf, line, line_len, toks, limits };
    let verb = toks.get(0);
    match verb {
        b"get" | b"bget" => classic.get(false, false),
        b"gets" => classic.get(true, false),
        b"gat" => classic.get(false, true),
        b"gats" => classic.get(true, true),
        b"set" => classic.storage(StoreMode::Set),
        b"add" => classic.storage(StoreMode::Add),
        b"replace" => classic.storage(StoreMode::Replace),
        b"append" => classic.storage(StoreMode::Append),
        b"prepend" => classic.storage(StoreMode::Prepend),
        b"cas" => classic.storage(StoreMode::Cas),
        b"delete" => classic.delete(),
        b"incr" => classic.arithmetic(true),
        b"decr" => classic.arithmetic(false),
        b"touch" => classic.touch(),
        b"flush_all" => classic.flush_all(),
        b"verbosity" => classic.verbosity(),
        b"version" => classic.done(Command::Version),
        b"quit" => classic.done(Command::Quit),
        b"stats" => classic.done(Command::Stats(stats_group(toks))),
        b"shutdown" => classic.done(Command::Shutdown(match (toks.ntokens(), toks.get(1)) {
            (2, _) => ShutdownMode::Now,
            (3, b"graceful") => ShutdownMode::Graceful,
            _ => ShutdownMode::Invalid,
        })),
        // Arguments other than noreply are ignored, as memcached ignores them.
        b"refresh_certs" => classic.done(Command::RefreshCerts { noreply: toks.noreply() }),
        b"watch" => classic.watch(),
        b"cache_memlimit" => classic.cache_memlimit(),
        // memcached closes connections that look like HTTP requests.
        _ if toks.get(toks.ntokens() - 2).starts_with(b"HTTP/") => Err(ParseError::Close),
        _ => classic.error(ErrorReply::Error, false),
    }
}

/// A classic command line being parsed: what each verb's parser reads.
struct Classic<'a, 't> {
    buf: &'a [u8],
    line: &'a [u8],
    line_len: usize,
    toks: &'t Tokens<'a>,
    limits: &'t Limits,
}

impl<'a> Classic<'a, '_> {
    /// The line parsed as `cmd`.
    #[inline]
    fn done(&self, cmd: Command<'a>) -> Result<Parsed<'a>, ParseError> {
        Ok(Parsed { cmd, consumed: self.line_len, swallow: 0 })
    }

    /// The line answered with an error reply (none under `noreply`).
    fn error(&self, reply: ErrorReply, noreply: bool) -> Result<Parsed<'a>, ParseError> {
        self.done(Command::Error { reply, noreply })
    }

    /// Whether the line has from `min` to `max` tokens, counting memcached's empty
    /// last one (`get k` has 3).
    #[inline]
    fn arity(&self, min: usize, max: usize) -> bool {
        (min..=max).contains(&self.toks.ntokens())
    }

    /// The key at token 1, unless it is longer than memcached allows.
    fn key(&self) -> Option<&'a [u8]> {
        let key = self.toks.get(1);
        (key.len() <= KEY_MAX_LENGTH).then_some(key)
    }

    /// `get`, `gets`, `gat` and `gats`: keys to the end of the line; `gat`'s first
    /// argument is the new exptime.
    #[inline]
    fn get(&self, with_cas: bool, touch: bool) -> Result<Parsed<'a>, ParseError> {
        if self.toks.ntokens() < 3 {
            return self.error(ErrorReply::Error, false);
        }
        let exptime = match touch {
            false => None,
            true => match parse_i32(self.toks.get(1)) {
                Some(exptime) => Some(exptime),
                None => return self.error(ErrorReply::InvalidExptime, false),
            },
        };
        self.done(get_command(self.line, self.toks, with_cas, exptime))
    }

    /// `set`, `add`, `replace`, `append`, `prepend` (key flags exptime bytes
    /// [noreply]) and `cas` (one more: the unique).
    #[inline]
    fn storage(&self, mode: StoreMode) -> Result<Parsed<'a>, ParseError> {
        let arguments = if mode == StoreMode::Cas { 7 } else { 6 };
        if !self.arity(arguments, arguments + 1) {
            return self.error(ErrorReply::Error, false);
        }
        storage_command(self.buf, self.line_len, self.toks, mode, self.limits)
    }

    /// `delete <key> [0] [noreply]`: a hold time other than 0 is refused, as
    /// memcached 1.4+ refuses it.
    fn delete(&self) -> Result<Parsed<'a>, ParseError> {
        let nt = self.toks.ntokens();
        if !self.arity(3, 5) {
            return self.error(ErrorReply::Error, false);
        }
        let mut noreply = false;
        if nt > 3 {
            let hold_is_zero = self.toks.get(2) == b"0";
            noreply = self.toks.noreply();
            let valid = (nt == 4 && (hold_is_zero || noreply)) || (nt == 5 && hold_is_zero && noreply);
            if !valid {
                return self.error(ErrorReply::DeleteUsage, noreply);
            }
        }
        match self.key() {
            Some(key) => self.done(Command::Delete { key, noreply }),
            None => self.error(ErrorReply::BadCommandLineFormat, noreply),
        }
    }

    /// `incr` and `decr <key> <delta> [noreply]`.
    fn arithmetic(&self, incr: bool) -> Result<Parsed<'a>, ParseError> {
        self.key_and_number(parse_u64, ErrorReply::InvalidDelta, |key, delta, noreply| Command::Arithmetic {
            incr,
            key,
            delta,
            noreply,
        })
    }

    /// `touch <key> <exptime> [noreply]`.
    fn touch(&self) -> Result<Parsed<'a>, ParseError> {
        self.key_and_number(parse_i32, ErrorReply::InvalidExptime, |key, exptime, noreply| Command::Touch {
            key,
            exptime,
            noreply,
        })
    }

    /// `<verb> <key> <number> [noreply]`; a number `parse` refuses is answered with
    /// `refusal`.
    fn key_and_number<T>(
        &self,
        parse: fn(&[u8]) -> Option<T>,
        refusal: ErrorReply,
        command: impl FnOnce(&'a [u8], T, bool) -> Command<'a>,
    ) -> Result<Parsed<'a>, ParseError> {
        if !self.arity(4, 5) {
            return self.error(ErrorReply::Error, false);
        }
        let noreply = self.toks.noreply();
        let Some(key) = self.key() else {
            return self.error(ErrorReply::BadCommandLineFormat, noreply);
        };
        match parse(self.toks.get(2)) {
            Some(number) => self.done(command(key, number, noreply)),
            None => self.error(refusal, noreply),
        }
    }

    /// `flush_all [delay] [noreply]`.
    fn flush_all(&self) -> Result<Parsed<'a>, ParseError> {
        if !self.arity(2, 4) {
            return self.error(ErrorReply::Error, false);
        }
        let noreply = self.toks.noreply();
        let mut delay = 0;
        if self.toks.ntokens() != if noreply { 3 } else { 2 } {
            match parse_i32(self.toks.get(1)) {
                Some(d) => delay = d,
                None => return self.error(ErrorReply::InvalidExptime, noreply),
            }
        }
        self.done(Command::FlushAll { delay, noreply })
    }

    /// `verbosity <level> [noreply]`.
    fn verbosity(&self) -> Result<Parsed<'a>, ParseError> {
        self.number(ErrorReply::BadCommandLineFormat, |level, noreply| Command::Verbosity { level, noreply })
    }

    /// `cache_memlimit <megabytes> [noreply]`.
    fn cache_memlimit(&self) -> Result<Parsed<'a>, ParseError> {
        self.number(ErrorReply::Error, |megabytes, noreply| Command::CacheMemlimit { megabytes, noreply })
    }

    /// `<verb> <number> [noreply]`; a number that is not a u32 is answered with
    /// `refusal`.
    fn number(
        &self,
        refusal: ErrorReply,
        command: impl FnOnce(u32, bool) -> Command<'a>,
    ) -> Result<Parsed<'a>, ParseError> {
        if !self.arity(3, 4) {
            return self.error(ErrorReply::Error, false);
        }
        let noreply = self.toks.noreply();
        match parse_u32(self.toks.get(1)) {
            Some(number) => self.done(command(number, noreply)),
            None => self.error(refusal, noreply),
        }
    }

    /// `watch [fetchers|mutations|evictions|deletions|...]`: each argument names a
    /// stream; anything else is refused with `ERROR`, as memcached refuses it
    /// (proto_text.c `process_watch_command`).
    fn watch(&self) -> Result<Parsed<'a>, ParseError> {
        let nt = self.toks.ntokens();
        let mut kinds = if nt == 2 { WatchKinds::FETCHERS } else { 0 };
        for i in 1..nt - 1 {
            match WatchKinds::from_name(self.toks.get(i)) {
                Some(kind) => kinds |= kind,
                // A trailing noreply is itself an unknown stream, refused silently.
                None => return self.error(ErrorReply::Error, self.toks.noreply()),
            }
        }
        self.done(Command::Watch(WatchKinds(kinds)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::command::memcached_slab_class;
    use crate::protocol::parse;

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
        assert_eq!(cmd(b"refresh_certs\r\n"), Command::RefreshCerts { noreply: false });
        assert_eq!(cmd(b"refresh_certs noreply\r\n"), Command::RefreshCerts { noreply: true });
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
