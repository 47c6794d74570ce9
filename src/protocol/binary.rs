//! memcached's binary protocol: 24-byte headers in network byte order, then extras,
//! key and value. Deprecated by memcached, but PHP's session handler speaks it by
//! default and it is the only protocol with SASL.
//!
//! Framing and validation follow memcached's proto_bin.c (`try_read_command_binary`
//! and `dispatch_bin_command`): a request is judged from its header, extras and key,
//! so a value that will be refused is skipped as it arrives instead of buffered.
//! One place differs on purpose: memcached skips `bodylen` bytes after an unknown
//! opcode although it has already consumed the key and extras, which loses the
//! framing of the next request; we skip exactly the rest of the body.

use super::command::{KEY_MAX_LENGTH, Limits, ParseError, memcached_item_size};

pub const REQUEST_MAGIC: u8 = 0x80;
pub const RESPONSE_MAGIC: u8 = 0x81;
pub const HEADER_LEN: usize = 24;

/// Opcodes (protocol_binary.h).
pub mod opcode {
    pub const GET: u8 = 0x00;
    pub const SET: u8 = 0x01;
    pub const ADD: u8 = 0x02;
    pub const REPLACE: u8 = 0x03;
    pub const DELETE: u8 = 0x04;
    pub const INCREMENT: u8 = 0x05;
    pub const DECREMENT: u8 = 0x06;
    pub const QUIT: u8 = 0x07;
    pub const FLUSH: u8 = 0x08;
    pub const GETQ: u8 = 0x09;
    pub const NOOP: u8 = 0x0a;
    pub const VERSION: u8 = 0x0b;
    pub const GETK: u8 = 0x0c;
    pub const GETKQ: u8 = 0x0d;
    pub const APPEND: u8 = 0x0e;
    pub const PREPEND: u8 = 0x0f;
    pub const STAT: u8 = 0x10;
    pub const SETQ: u8 = 0x11;
    pub const ADDQ: u8 = 0x12;
    pub const REPLACEQ: u8 = 0x13;
    pub const DELETEQ: u8 = 0x14;
    pub const INCREMENTQ: u8 = 0x15;
    pub const DECREMENTQ: u8 = 0x16;
    pub const QUITQ: u8 = 0x17;
    pub const FLUSHQ: u8 = 0x18;
    pub const APPENDQ: u8 = 0x19;
    pub const PREPENDQ: u8 = 0x1a;
    pub const TOUCH: u8 = 0x1c;
    pub const GAT: u8 = 0x1d;
    pub const GATQ: u8 = 0x1e;
    pub const SASL_LIST_MECHS: u8 = 0x20;
    pub const SASL_AUTH: u8 = 0x21;
    pub const SASL_STEP: u8 = 0x22;
    pub const GATK: u8 = 0x23;
    pub const GATKQ: u8 = 0x24;
}

/// Response statuses (protocol_binary.h).
pub mod status {
    pub const SUCCESS: u16 = 0x00;
    pub const KEY_ENOENT: u16 = 0x01;
    pub const KEY_EEXISTS: u16 = 0x02;
    pub const E2BIG: u16 = 0x03;
    pub const EINVAL: u16 = 0x04;
    pub const NOT_STORED: u16 = 0x05;
    pub const DELTA_BADVAL: u16 = 0x06;
    pub const AUTH_ERROR: u16 = 0x20;
    pub const AUTH_CONTINUE: u16 = 0x21;
    pub const UNKNOWN_COMMAND: u16 = 0x81;
    pub const ENOMEM: u16 = 0x82;
    /// "Temporary failure" (protocol_binary.h `PROTOCOL_BINARY_RESPONSE_ETMPFAIL`):
    /// a claim this node cannot grant now, for lack of a majority of its nodes.
    pub const ETMPFAIL: u16 = 0x86;

    /// The text memcached puts in the body of an error (proto_bin.c `write_bin_error`).
    pub fn message(status: u16) -> &'static [u8] {
        match status {
            ENOMEM => b"Out of memory",
            ETMPFAIL => b"No majority of nodes reachable",
            UNKNOWN_COMMAND => b"Unknown command",
            KEY_ENOENT => b"Not found",
            EINVAL => b"Invalid arguments",
            KEY_EEXISTS => b"Data exists for key.",
            E2BIG => b"Too large.",
            DELTA_BADVAL => b"Non-numeric server-side value for incr or decr",
            NOT_STORED => b"Not stored.",
            AUTH_ERROR => b"Auth failure.",
            _ => b"",
        }
    }
}

/// memcached's `MAX_SASL_MECH_LEN`.
const MAX_SASL_MECH_LEN: usize = 32;
/// The largest item memcached holds unchunked: its default `slab_chunk_max`.
const SASL_MESSAGE_ITEM_MAX: usize = 512 * 1024;

/// The fields of a request header that replies need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub opcode: u8,
    /// Echoed unchanged (it is the client's, in whatever byte order it chose).
    pub opaque: [u8; 4],
    pub cas: u64,
}

/// A binary request, borrowing from the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryCommand<'a> {
    /// GET, GETQ, GETK, GETKQ.
    Get {
        key: &'a [u8],
        with_key: bool,
    },
    /// TOUCH (no value returned), GAT, GATQ, GATK, GATKQ.
    Touch {
        key: &'a [u8],
        exptime: i32,
        with_value: bool,
        with_key: bool,
    },
    /// SET, ADD, REPLACE and their quiet forms; a non-zero CAS makes any of them a cas.
    Store {
        mode: StoreOp,
        key: &'a [u8],
        flags: u32,
        exptime: i32,
        data: &'a [u8],
    },
    /// APPEND, PREPEND and their quiet forms.
    Concat {
        append: bool,
        key: &'a [u8],
        data: &'a [u8],
    },
    /// A store whose value is over the item size limit (the value is skipped).
    TooLarge {
        set: bool,
        key: &'a [u8],
    },
    Delete {
        key: &'a [u8],
    },
    /// INCREMENT, DECREMENT; an expiration of 0xffffffff means "do not create".
    Arithmetic {
        incr: bool,
        key: &'a [u8],
        delta: u64,
        initial: u64,
        exptime: u32,
    },
    Quit,
    Flush {
        delay: i32,
    },
    Noop,
    Version,
    /// STAT with the group name as its key (empty for the general stats).
    Stat {
        group: &'a [u8],
    },
    SaslListMechs,
    SaslAuth {
        mech: &'a [u8],
        data: &'a [u8],
    },
    SaslStep {
        mech: &'a [u8],
        data: &'a [u8],
    },
    /// An opcode memcached does not serve (the body is skipped).
    Unknown,
    /// Lengths that do not fit the opcode, or a key over 250 bytes: `EINVAL`, then
    /// the connection closes.
    Invalid,
    /// Key and extras longer than the body: `UNKNOWN_COMMAND`, then close.
    BadFraming,
    /// A SASL mechanism name over 32 bytes (the body is skipped).
    SaslInvalid,
    /// A SASL message that memcached could not hold in one slab chunk: `ENOMEM`
    /// (the body is skipped).
    SaslTooLarge,
}

/// Which storage command; `cas` in the header turns each into a compare-and-swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    Set,
    Add,
    Replace,
}

/// A parsed request and how much of the buffer it used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BinaryParsed<'a> {
    pub header: Header,
    pub cmd: BinaryCommand<'a>,
    /// A quiet opcode: successes (and GET misses) are not answered.
    pub quiet: bool,
    pub consumed: usize,
    /// Bytes after `consumed` to discard as they arrive.
    pub swallow: usize,
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().expect("4 bytes"))
}

fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}

/// An expiration field: unsigned on the wire. Values past `i32::MAX` (absolute times
/// after 2038) are held at `i32::MAX`, still an absolute time far ahead.
fn exptime(raw: u32) -> i32 {
    i32::try_from(raw).unwrap_or(i32::MAX)
}

/// The opcode a quiet opcode stands for, or `None` when it is not quiet.
fn loud(op: u8) -> Option<u8> {
    use opcode::*;
    Some(match op {
        SETQ => SET,
        ADDQ => ADD,
        REPLACEQ => REPLACE,
        DELETEQ => DELETE,
        INCREMENTQ => INCREMENT,
        DECREMENTQ => DECREMENT,
        QUITQ => QUIT,
        FLUSHQ => FLUSH,
        APPENDQ => APPEND,
        PREPENDQ => PREPEND,
        GETQ => GET,
        GETKQ => GETK,
        GATQ => GAT,
        GATKQ => GATK,
        _ => return None,
    })
}

/// Parses one request from the front of `buf`. A header whose first byte is not
/// [`REQUEST_MAGIC`] is [`ParseError::Close`], as in memcached.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Result<BinaryParsed<'a>, ParseError> {
    // memcached reads a whole header before it judges the magic
    // (proto_bin.c `try_read_command_binary`): a short text line on a binary-only
    // port is waited on, not answered by a close.
    if buf.len() < HEADER_LEN {
        return Err(ParseError::Incomplete { need: Some(HEADER_LEN) });
    }
    if buf[0] != REQUEST_MAGIC {
        return Err(ParseError::Close);
    }
    let raw_opcode = buf[1];
    let keylen = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let extlen = buf[4] as usize;
    let bodylen = be_u32(&buf[8..12]) as usize;
    let header =
        Header { opcode: raw_opcode, opaque: buf[12..16].try_into().expect("4 bytes"), cas: be_u64(&buf[16..24]) };
    let quiet = loud(raw_opcode).is_some();
    let op = loud(raw_opcode).unwrap_or(raw_opcode);
    let reply = |cmd, consumed, swallow| Ok(BinaryParsed { header, cmd, quiet, consumed, swallow });

    // memcached waits for the header, extras and key before judging a request.
    let head_len = HEADER_LEN + extlen + keylen;
    if buf.len() < head_len {
        return Err(ParseError::Incomplete { need: Some(head_len) });
    }
    let extras = &buf[HEADER_LEN..HEADER_LEN + extlen];
    let key = &buf[HEADER_LEN + extlen..head_len];
    if keylen + extlen > bodylen {
        return reply(BinaryCommand::BadFraming, head_len, 0);
    }
    // The value: what the body holds after extras and key.
    let vlen = bodylen - keylen - extlen;
    if keylen > KEY_MAX_LENGTH {
        return reply(BinaryCommand::Invalid, head_len, 0);
    }
    // A request whose value is needed waits for all of it.
    let value = || {
        let total = head_len + vlen;
        if buf.len() < total { Err(ParseError::Incomplete { need: Some(total) }) } else { Ok(&buf[head_len..total]) }
    };
    let total = head_len + vlen;
    let invalid = reply(BinaryCommand::Invalid, head_len, 0);
    use opcode::*;
    match op {
        VERSION if extlen == 0 && keylen == 0 && bodylen == 0 => reply(BinaryCommand::Version, head_len, 0),
        NOOP if extlen == 0 && keylen == 0 && bodylen == 0 => reply(BinaryCommand::Noop, head_len, 0),
        QUIT if extlen == 0 && keylen == 0 && bodylen == 0 => reply(BinaryCommand::Quit, head_len, 0),
        SASL_LIST_MECHS if extlen == 0 && keylen == 0 && bodylen == 0 => {
            reply(BinaryCommand::SaslListMechs, head_len, 0)
        }
        FLUSH if keylen == 0 && bodylen == extlen && (extlen == 0 || extlen == 4) => {
            let delay = if extlen == 4 { exptime(be_u32(extras)) } else { 0 };
            reply(BinaryCommand::Flush { delay }, head_len, 0)
        }
        SET | ADD | REPLACE if extlen == 8 && keylen != 0 => {
            let flags = be_u32(&extras[0..4]);
            let exptime = exptime(be_u32(&extras[4..8]));
            if memcached_item_size(keylen, flags, vlen, limits.cas_enabled) > limits.item_size_max {
                return reply(BinaryCommand::TooLarge { set: op == SET, key }, head_len, vlen);
            }
            let mode = match op {
                SET => StoreOp::Set,
                ADD => StoreOp::Add,
                _ => StoreOp::Replace,
            };
            reply(BinaryCommand::Store { mode, key, flags, exptime, data: value()? }, total, 0)
        }
        APPEND | PREPEND if keylen > 0 && extlen == 0 => {
            if memcached_item_size(keylen, 0, vlen, limits.cas_enabled) > limits.item_size_max {
                return reply(BinaryCommand::TooLarge { set: false, key }, head_len, vlen);
            }
            reply(BinaryCommand::Concat { append: op == APPEND, key, data: value()? }, total, 0)
        }
        GET | GETK if extlen == 0 && bodylen == keylen && keylen > 0 => {
            reply(BinaryCommand::Get { key, with_key: op == GETK }, head_len, 0)
        }
        DELETE if keylen > 0 && extlen == 0 && bodylen == keylen => reply(BinaryCommand::Delete { key }, head_len, 0),
        INCREMENT | DECREMENT if keylen > 0 && extlen == 20 && bodylen == keylen + extlen => {
            let cmd = BinaryCommand::Arithmetic {
                incr: op == INCREMENT,
                key,
                delta: be_u64(&extras[0..8]),
                initial: be_u64(&extras[8..16]),
                exptime: be_u32(&extras[16..20]),
            };
            reply(cmd, head_len, 0)
        }
        STAT if extlen == 0 => {
            // The group is the key; a value, which memcached would not expect, is skipped.
            reply(BinaryCommand::Stat { group: key }, head_len, vlen)
        }
        SASL_AUTH | SASL_STEP if extlen == 0 && keylen != 0 => {
            let (cmd, consumed, swallow) = sasl(op == SASL_AUTH, key, head_len, vlen, limits, value)?;
            reply(cmd, consumed, swallow)
        }
        TOUCH | GAT | GATK if extlen == 4 && keylen != 0 => {
            let cmd = BinaryCommand::Touch {
                key,
                exptime: exptime(be_u32(extras)),
                with_value: op != TOUCH,
                with_key: op == GATK,
            };
            reply(cmd, head_len, vlen)
        }
        VERSION | NOOP | QUIT | SASL_LIST_MECHS | FLUSH | SET | ADD | REPLACE | APPEND | PREPEND | GET | GETK
        | DELETE | INCREMENT | DECREMENT | STAT | SASL_AUTH | SASL_STEP | TOUCH | GAT | GATK => invalid,
        _ => reply(BinaryCommand::Unknown, head_len, vlen),
    }
}

/// SASL_AUTH or SASL_STEP naming mechanism `mech`, its message the value of
/// `vlen` bytes after the head: the command, the bytes it takes, and the bytes of
/// a refused message still to skip.
fn sasl<'a>(
    auth: bool,
    mech: &'a [u8],
    head_len: usize,
    vlen: usize,
    limits: &Limits,
    value: impl FnOnce() -> Result<&'a [u8], ParseError>,
) -> Result<(BinaryCommand<'a>, usize, usize), ParseError> {
    if mech.len() > MAX_SASL_MECH_LEN {
        return Ok((BinaryCommand::SaslInvalid, head_len, vlen));
    }
    // memcached reads the message into an item and refuses one that would be
    // chunked (proto_bin.c `process_bin_sasl_auth`): larger than the largest slab
    // chunk, 512 KiB by default (memcached.c `slab_chunk_size_max`).
    if memcached_item_size(mech.len(), 0, vlen, limits.cas_enabled) > SASL_MESSAGE_ITEM_MAX {
        return Ok((BinaryCommand::SaslTooLarge, head_len, vlen));
    }
    let data = value()?;
    let cmd = if auth { BinaryCommand::SaslAuth { mech, data } } else { BinaryCommand::SaslStep { mech, data } };
    Ok((cmd, head_len + vlen, 0))
}

/// Appends a response header.
pub fn write_header(out: &mut Vec<u8>, header: &Header, status: u16, extlen: u8, keylen: u16, bodylen: u32, cas: u64) {
    out.reserve(HEADER_LEN + bodylen as usize);
    out.push(RESPONSE_MAGIC);
    out.push(header.opcode);
    out.extend_from_slice(&keylen.to_be_bytes());
    out.push(extlen);
    out.push(0); // datatype: raw bytes
    out.extend_from_slice(&status.to_be_bytes());
    out.extend_from_slice(&bodylen.to_be_bytes());
    out.extend_from_slice(&header.opaque);
    out.extend_from_slice(&cas.to_be_bytes());
}

/// Appends an error response with memcached's text for the status.
pub fn write_error(out: &mut Vec<u8>, header: &Header, status: u16) {
    let message = status::message(status);
    write_header(out, header, status, 0, 0, message.len() as u32, 0);
    out.extend_from_slice(message);
}

/// Appends a request (for clients and tests).
pub fn write_request(out: &mut Vec<u8>, opcode: u8, key: &[u8], extras: &[u8], value: &[u8], opaque: u32, cas: u64) {
    out.push(REQUEST_MAGIC);
    out.push(opcode);
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.push(extras.len() as u8);
    out.push(0);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    out.extend_from_slice(&opaque.to_be_bytes());
    out.extend_from_slice(&cas.to_be_bytes());
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(op: u8, key: &[u8], extras: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_request(&mut out, op, key, extras, value, 7, 0);
        out
    }

    #[test]
    fn set_waits_for_its_value_then_parses() {
        let limits = Limits::default();
        let extras = [0, 0, 0, 5, 0, 0, 0, 100];
        let req = request(opcode::SETQ, b"k", &extras, b"abc");
        assert_eq!(parse(&req[..10], &limits), Err(ParseError::Incomplete { need: Some(HEADER_LEN) }));
        assert_eq!(parse(&req[..30], &limits), Err(ParseError::Incomplete { need: Some(33) }));
        assert_eq!(parse(&req[..34], &limits), Err(ParseError::Incomplete { need: Some(36) }));
        let parsed = parse(&req, &limits).unwrap();
        assert!(parsed.quiet);
        assert_eq!(parsed.header.opaque, 7u32.to_be_bytes());
        assert_eq!(
            parsed.cmd,
            BinaryCommand::Store { mode: StoreOp::Set, key: b"k", flags: 5, exptime: 100, data: b"abc" }
        );
        assert_eq!((parsed.consumed, parsed.swallow), (req.len(), 0));
    }

    #[test]
    fn malformed_requests() {
        let limits = Limits::default();
        let get_with_extras = request(opcode::GET, b"k", &[0; 4], b"");
        assert_eq!(parse(&get_with_extras, &limits).unwrap().cmd, BinaryCommand::Invalid);
        let long_key = request(opcode::GET, &[b'k'; 251], b"", b"");
        assert_eq!(parse(&long_key, &limits).unwrap().cmd, BinaryCommand::Invalid);
        let mut lying = request(opcode::GET, b"key", b"", b"");
        lying[11] = 1; // bodylen 1 < keylen 3
        assert_eq!(parse(&lying, &limits).unwrap().cmd, BinaryCommand::BadFraming);
        let unknown = request(0x1b, b"", &[0; 4], b"");
        let parsed = parse(&unknown, &limits).unwrap();
        assert_eq!((parsed.cmd, parsed.consumed, parsed.swallow), (BinaryCommand::Unknown, 28, 0));
        let big = request(opcode::SET, b"k", &[0; 8], &vec![0; 2 << 20]);
        let parsed = parse(&big[..40], &limits).unwrap();
        assert_eq!((parsed.cmd, parsed.swallow), (BinaryCommand::TooLarge { set: true, key: b"k" }, 2 << 20));
        assert_eq!(parse(b"\x81xxxxxxxxxxxxxxxxxxxxxxxx", &limits), Err(ParseError::Close));
    }

    #[test]
    fn error_bodies_carry_memcached_text() {
        let header = Header { opcode: opcode::GET, opaque: [1, 2, 3, 4], cas: 0 };
        let mut out = Vec::new();
        write_error(&mut out, &header, status::KEY_ENOENT);
        assert_eq!(&out[..8], &[0x81, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&out[8..16], &[0, 0, 0, 9, 1, 2, 3, 4]);
        assert_eq!(&out[24..], b"Not found");
    }
}
