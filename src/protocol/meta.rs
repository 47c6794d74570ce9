//! memcached's meta commands (`mg`, `ms`, `md`, `ma`, `me`; `mn` is in ascii.rs):
//! one key, then single-letter flags, some carrying a token (`T30`, `Oopaque`).
//!
//! The rules follow memcached's proto_text.c (`_meta_flag_preparse` and the
//! `process_m*_command` functions) and doc/protocol.txt "Meta Commands". Errors are
//! checked in memcached's order, because clients see which one wins; an `ms` that
//! fails after its length was read swallows its data block, as memcached does.
//!
//! Two flags postdate memcached 1.6.18 and come from later releases: `E<cas>` (the
//! CAS the write should take, for `ms`, `md`, `ma` and a vivifying `mg`) and `md`'s
//! `x` (keep the item but empty its value).

use super::command::{
    Command, KEY_MAX_LENGTH, Limits, MetaFlags, MetaRequest, ParseError, Parsed, decode_key, memcached_item_size,
};
use super::reply::ErrorReply;
use crate::number::{parse_i32, parse_u32, parse_u64};

/// memcached's `MFLAG_MAX_OPT_LENGTH`: a meta command with more tokens than this
/// (command, key, flags and the terminal token) is refused.
const MAX_TOKENS: usize = 20;

/// memcached's `MFLAG_MAX_OPAQUE_LENGTH`, counted with the leading `O`.
const MAX_OPAQUE_LEN: usize = 32;

/// memcached's `_meta_flag_preparse`; `md` and `ma` report any error as "invalid or
/// duplicate flag", `mg` and `ms` the reply returned here. Unknown and repeated flags stop the scan at
/// once; a bad token is remembered (the last one wins) and the scan goes on.
fn parse_flags<'a>(key: &[u8], tokens: &'a [u8]) -> Result<MetaFlags<'a>, ErrorReply> {
    let mut flags = MetaFlags { delta: 1, tokens, ..MetaFlags::default() };
    let mut error: Option<ErrorReply> = None;
    for token in tokens.split(|&b| b == b' ').filter(|t| !t.is_empty()) {
        let letter = token[0];
        if letter >= 127 || flags.has(letter) {
            return Err(ErrorReply::MetaDuplicateFlag);
        }
        flags.seen |= 1u128 << letter;
        let arg = &token[1..];
        let bad_token = Some(ErrorReply::MetaBadToken);
        match letter {
            b'b' => {
                let mut buf = [0; KEY_MAX_LENGTH];
                if decode_key(key, &mut buf).is_none() {
                    error = Some(ErrorReply::MetaDecodingKey);
                }
            }
            b'N' => match parse_i32(arg) {
                Some(ttl) => flags.vivify_ttl = ttl,
                None => error = bad_token,
            },
            b'T' => match parse_i32(arg) {
                Some(ttl) => flags.ttl = ttl,
                None => error = bad_token,
            },
            b'R' => match parse_i32(arg) {
                Some(ttl) => flags.recache_ttl = ttl,
                None => error = bad_token,
            },
            b'F' => match parse_u32(arg) {
                Some(f) => flags.client_flags = f,
                // memcached flags the error without a message of its own.
                None => error = error.or(Some(ErrorReply::BadCommandLineFormat)),
            },
            b'C' => match parse_u64(arg) {
                Some(cas) => flags.compare_cas = cas,
                None => error = bad_token,
            },
            b'E' => match parse_u64(arg) {
                Some(cas) => flags.explicit_cas = cas,
                None => error = bad_token,
            },
            b'M' => match arg {
                [mode] => flags.mode = *mode,
                _ => error = Some(ErrorReply::MetaModeLength),
            },
            b'J' => match parse_u64(arg) {
                Some(v) => flags.initial = v,
                None => error = Some(ErrorReply::MetaInvalidInitial),
            },
            b'D' => match parse_u64(arg) {
                Some(v) => flags.delta = v,
                None => error = Some(ErrorReply::MetaInvalidDelta),
            },
            b'O' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' | b'v' | b'h' | b'l' | b'u' | b'q' | b'I' | b'x' => {}
            _ => return Err(ErrorReply::MetaInvalidFlag),
        }
    }
    match error {
        Some(reply) => Err(reply),
        None => Ok(flags),
    }
}

/// The bytes from the start of token `first` to the end of the line.
fn rest_of_line<'a>(line: &'a [u8], token: &'a [u8]) -> &'a [u8] {
    let start = token.as_ptr() as usize - line.as_ptr() as usize;
    &line[start..]
}

/// Tokens of a meta line: the verb, the key and what follows.
pub struct MetaLine<'a> {
    /// memcached's `ntokens` (real tokens plus the terminal one, at most 24).
    pub ntokens: usize,
    pub key: &'a [u8],
    /// The third token (the data length of `ms`).
    pub third: &'a [u8],
    /// The line from the third token on (flags of mg/md/ma).
    pub from_third: &'a [u8],
    /// The line from the fourth token on (flags of ms).
    pub from_fourth: &'a [u8],
}

impl<'a> MetaLine<'a> {
    pub fn new(line: &'a [u8], ntokens: usize, token: impl Fn(usize) -> &'a [u8]) -> Self {
        let tail = |i: usize| if ntokens > i + 1 { rest_of_line(line, token(i)) } else { &[][..] };
        MetaLine { ntokens, key: token(1), third: token(2), from_third: tail(2), from_fourth: tail(3) }
    }
}

fn error(reply: ErrorReply, consumed: usize, swallow: usize) -> Result<Parsed<'static>, ParseError> {
    Ok(Parsed { cmd: Command::Error { reply, noreply: false }, consumed, swallow })
}

/// The opaque token must fit memcached's limit; memcached finds out while writing
/// the reply, we before running the command.
fn check_opaque(flags: &MetaFlags<'_>) -> Result<(), ErrorReply> {
    match flags.opaque() {
        Some(o) if o.len() > MAX_OPAQUE_LEN => Err(ErrorReply::MetaOpaqueTooLong),
        _ => Ok(()),
    }
}

/// `mg <key> <flags>*`
pub fn parse_get<'a>(m: &MetaLine<'a>, line_len: usize) -> Result<Parsed<'a>, ParseError> {
    if m.ntokens < 3 {
        return error(ErrorReply::Error, line_len, 0);
    }
    if m.key.len() > KEY_MAX_LENGTH {
        return error(ErrorReply::BadCommandLineFormat, line_len, 0);
    }
    if m.ntokens > MAX_TOKENS {
        return error(ErrorReply::MetaFlagsAreTooLong, line_len, 0);
    }
    let flags = match parse_flags(m.key, m.from_third) {
        Ok(flags) => flags,
        Err(reply) => return error(reply, line_len, 0),
    };
    if let Err(reply) = check_opaque(&flags) {
        return error(reply, line_len, 0);
    }
    Ok(Parsed { cmd: Command::MetaGet(MetaRequest { key: m.key, flags }), consumed: line_len, swallow: 0 })
}

/// `ms <key> <datalen> <flags>*` and its data block.
pub fn parse_set<'a>(
    buf: &'a [u8],
    m: &MetaLine<'a>,
    line_len: usize,
    limits: &Limits,
) -> Result<Parsed<'a>, ParseError> {
    if m.ntokens < 3 {
        return error(ErrorReply::Error, line_len, 0);
    }
    if m.key.len() > KEY_MAX_LENGTH || m.ntokens == 3 {
        return error(ErrorReply::BadCommandLineFormat, line_len, 0);
    }
    if m.ntokens > MAX_TOKENS {
        return error(ErrorReply::MetaFlagsTooLong, line_len, 0);
    }
    let vlen = match parse_i32(m.third) {
        Some(v) if (0..=i32::MAX - 2).contains(&v) => v as usize,
        _ => return error(ErrorReply::BadCommandLineFormat, line_len, 0),
    };
    let block = vlen + 2;
    let flags = match parse_flags(m.key, m.from_fourth) {
        Ok(flags) => flags,
        Err(reply) => return error(reply, line_len, block),
    };
    let opaque = check_opaque(&flags);
    if !matches!(flags.mode, 0 | b'E' | b'A' | b'P' | b'R' | b'S') {
        return error(ErrorReply::MetaSetInvalidMode, line_len, block);
    }
    if let Err(reply) = opaque {
        return error(reply, line_len, block);
    }
    let mut key_buf = [0; KEY_MAX_LENGTH];
    let key_len = if flags.binary_key() { decode_key(m.key, &mut key_buf).map_or(0, |k| k.len()) } else { m.key.len() };
    if memcached_item_size(key_len, flags.client_flags, vlen, limits.cas_enabled) > limits.item_size_max {
        let cmd = Command::MetaSetTooLarge(MetaRequest { key: m.key, flags });
        return Ok(Parsed { cmd, consumed: line_len, swallow: block });
    }
    let total = line_len + block;
    if buf.len() < total {
        return Err(ParseError::Incomplete { need: Some(total) });
    }
    if &buf[line_len + vlen..total] != b"\r\n" {
        // Reported even under `q`.
        return Ok(Parsed { cmd: Command::BadDataChunk { noreply: false }, consumed: total, swallow: 0 });
    }
    let data = &buf[line_len..line_len + vlen];
    Ok(Parsed { cmd: Command::MetaSet { req: MetaRequest { key: m.key, flags }, data }, consumed: total, swallow: 0 })
}

/// `md` and `ma`: any flag error reads "invalid or duplicate flag".
fn parse_keyed<'a>(m: &MetaLine<'a>) -> Result<MetaRequest<'a>, ErrorReply> {
    if m.ntokens < 3 {
        return Err(ErrorReply::Error);
    }
    if m.key.len() > KEY_MAX_LENGTH {
        return Err(ErrorReply::BadCommandLineFormat);
    }
    if m.ntokens > MAX_TOKENS {
        return Err(ErrorReply::MetaFlagsTooLong);
    }
    let flags = parse_flags(m.key, m.from_third).map_err(|_| ErrorReply::MetaInvalidOrDuplicateFlag)?;
    check_opaque(&flags)?;
    Ok(MetaRequest { key: m.key, flags })
}

/// `md <key> <flags>*`
pub fn parse_delete<'a>(m: &MetaLine<'a>, line_len: usize) -> Result<Parsed<'a>, ParseError> {
    match parse_keyed(m) {
        Ok(req) => Ok(Parsed { cmd: Command::MetaDelete(req), consumed: line_len, swallow: 0 }),
        Err(reply) => error(reply, line_len, 0),
    }
}

/// `ma <key> <flags>*`
pub fn parse_arithmetic<'a>(m: &MetaLine<'a>, line_len: usize) -> Result<Parsed<'a>, ParseError> {
    match parse_keyed(m) {
        Ok(req) if !matches!(req.flags.mode, 0 | b'I' | b'+' | b'D' | b'-') => {
            error(ErrorReply::MetaArithmeticInvalidMode, line_len, 0)
        }
        Ok(req) => Ok(Parsed { cmd: Command::MetaArithmetic(req), consumed: line_len, swallow: 0 }),
        Err(reply) => error(reply, line_len, 0),
    }
}

/// `me <key> [b]`: memcached's debug dump of one item.
pub fn parse_debug<'a>(m: &MetaLine<'a>, line_len: usize) -> Result<Parsed<'a>, ParseError> {
    if m.ntokens < 3 || m.key.len() > KEY_MAX_LENGTH {
        return error(ErrorReply::BadCommandLineFormat, line_len, 0);
    }
    let binary = m.ntokens >= 4 && m.third == b"b";
    if binary && decode_key(m.key, &mut [0; KEY_MAX_LENGTH]).is_none() {
        return error(ErrorReply::BadCommandLineFormat, line_len, 0);
    }
    Ok(Parsed { cmd: Command::MetaDebug { key: m.key, binary }, consumed: line_len, swallow: 0 })
}

/// True when an `ma` mode means decrement.
pub fn arithmetic_decrements(mode: u8) -> bool {
    matches!(mode, b'D' | b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::command::encode_key;
    use crate::protocol::parse;

    fn cmd(input: &[u8]) -> Command<'_> {
        parse(input, &Limits::default()).expect("complete").cmd
    }

    fn err(reply: ErrorReply) -> Command<'static> {
        Command::Error { reply, noreply: false }
    }

    #[test]
    fn flags_parse_in_order() {
        let Command::MetaGet(req) = cmd(b"mg k v c T30 Oab q\r\n") else { panic!() };
        assert_eq!(req.key, b"k");
        assert!(req.flags.has(b'v') && req.flags.has(b'c') && req.flags.quiet());
        assert!(!req.flags.has(b'f'));
        assert_eq!(req.flags.ttl, 30);
        assert_eq!(req.flags.opaque(), Some(&b"Oab"[..]));
        assert_eq!(req.flags.tokens().collect::<Vec<_>>(), vec![&b"v"[..], b"c", b"T30", b"Oab", b"q"]);
    }

    #[test]
    fn flag_errors() {
        assert_eq!(cmd(b"mg\r\n"), err(ErrorReply::Error));
        assert_eq!(cmd(b"mg k v v\r\n"), err(ErrorReply::MetaDuplicateFlag));
        assert_eq!(cmd(b"mg k !\r\n"), err(ErrorReply::MetaInvalidFlag));
        assert_eq!(cmd(b"mg k Tx\r\n"), err(ErrorReply::MetaBadToken));
        assert_eq!(cmd(b"mg ! b\r\n"), err(ErrorReply::MetaDecodingKey));
        assert_eq!(cmd(b"md k v v\r\n"), err(ErrorReply::MetaInvalidOrDuplicateFlag));
        assert_eq!(cmd(b"ma k MX\r\n"), err(ErrorReply::MetaArithmeticInvalidMode));
        let long_opaque = format!("mg k O{}\r\n", "x".repeat(32));
        assert_eq!(cmd(long_opaque.as_bytes()), err(ErrorReply::MetaOpaqueTooLong));
        let many = format!("mg k{}\r\n", " v".repeat(19));
        assert_eq!(cmd(many.as_bytes()), err(ErrorReply::MetaFlagsAreTooLong));
    }

    #[test]
    fn set_swallows_its_data_after_a_flag_error() {
        let limits = Limits::default();
        let parsed = parse(b"ms k 2 MZ\r\nhi\r\n", &limits).unwrap();
        assert_eq!(parsed.cmd, err(ErrorReply::MetaSetInvalidMode));
        assert_eq!((parsed.consumed, parsed.swallow), (11, 4));
        // A bad length cannot be swallowed.
        let parsed = parse(b"ms k x\r\n", &limits).unwrap();
        assert_eq!((parsed.cmd, parsed.swallow), (err(ErrorReply::BadCommandLineFormat), 0));
        assert_eq!(cmd(b"ms k\r\n"), err(ErrorReply::BadCommandLineFormat));
        let Command::MetaSet { req, data } = cmd(b"ms k 2 T5 F3\r\nhi\r\n") else { panic!() };
        assert_eq!((req.flags.ttl, req.flags.client_flags, data), (5, 3, &b"hi"[..]));
        assert_eq!(cmd(b"ms k 2 q\r\nhiX\r\n"), Command::BadDataChunk { noreply: false });
    }

    #[test]
    fn base64_keys() {
        let Command::MetaGet(req) = cmd(b"mg Zm9v b v\r\n") else { panic!() };
        let mut buf = [0; KEY_MAX_LENGTH];
        assert_eq!(req.key(&mut buf), b"foo");
        let mut out = Vec::new();
        encode_key(b"foo", &mut out);
        encode_key(b"fo", &mut out);
        assert_eq!(out, b"Zm9vZm8=");
    }

    #[test]
    fn debug_and_arithmetic() {
        assert_eq!(cmd(b"me\r\n"), err(ErrorReply::BadCommandLineFormat));
        assert_eq!(cmd(b"me k\r\n"), Command::MetaDebug { key: b"k", binary: false });
        let Command::MetaArithmetic(req) = cmd(b"ma k N0 J10 D5 MD\r\n") else { panic!() };
        assert_eq!((req.flags.initial, req.flags.delta), (10, 5));
        assert!(arithmetic_decrements(req.flags.mode));
        let Command::MetaArithmetic(req) = cmd(b"ma k\r\n") else { panic!() };
        assert_eq!(req.flags.delta, 1);
    }
}
