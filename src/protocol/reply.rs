//! Reply lines of the text protocol, byte for byte as memcached writes them
//! (proto_text.c and memcached.c; doc/protocol.txt "Error strings").

use crate::number::write_u64;

/// Error replies. Each renders to exactly the line memcached sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorReply {
    /// Unknown command or wrong number of tokens.
    Error,
    BadCommandLineFormat,
    InvalidExptime,
    InvalidDelta,
    NonNumeric,
    BadDataChunk,
    /// `delete` with an extra token other than `0`/`noreply`.
    DeleteUsage,
    TooLarge,
    OutOfMemoryStoring,
    OutOfMemory,
    /// A claim this node cannot grant: it cannot reach the majority of nodes that
    /// `--repl-claims majority` needs (stickless's own).
    NoMajority,
    DetailUsage,
    ShutdownNotEnabled,
    // Meta commands (proto_text.c `_meta_flag_preparse` and `process_m*_command`).
    MetaInvalidFlag,
    MetaDuplicateFlag,
    MetaInvalidOrDuplicateFlag,
    MetaBadToken,
    MetaDecodingKey,
    MetaOpaqueTooLong,
    /// `mg` says "are too long", `ms`, `md` and `ma` "too long".
    MetaFlagsAreTooLong,
    MetaFlagsTooLong,
    MetaModeLength,
    MetaSetInvalidMode,
    MetaArithmeticInvalidMode,
    MetaInvalidInitial,
    MetaInvalidDelta,
    InvalidShutdownMode,
    FlushAllNotAllowed,
    MemlimitTooSmall,
    MemlimitInMegabytes,
    // Text authentication, `-Y` (proto_text.c `try_read_command_asciiauth`).
    Unauthenticated,
    AuthBadTermination,
    AuthBadTokenFormat,
    AuthTokenTooLong,
    AuthFailure,
}

impl ErrorReply {
    /// The reply line, with its `\r\n`.
    pub fn line(self) -> &'static [u8] {
        match self {
            ErrorReply::Error => b"ERROR\r\n",
            ErrorReply::BadCommandLineFormat => b"CLIENT_ERROR bad command line format\r\n",
            ErrorReply::InvalidExptime => b"CLIENT_ERROR invalid exptime argument\r\n",
            ErrorReply::InvalidDelta => b"CLIENT_ERROR invalid numeric delta argument\r\n",
            ErrorReply::NonNumeric => b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
            ErrorReply::BadDataChunk => b"CLIENT_ERROR bad data chunk\r\n",
            ErrorReply::DeleteUsage => b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
            ErrorReply::TooLarge => b"SERVER_ERROR object too large for cache\r\n",
            ErrorReply::OutOfMemoryStoring => b"SERVER_ERROR out of memory storing object\r\n",
            ErrorReply::NoMajority => b"SERVER_ERROR no majority of nodes reachable\r\n",
            ErrorReply::OutOfMemory => b"SERVER_ERROR out of memory\r\n",
            ErrorReply::DetailUsage => b"CLIENT_ERROR usage: stats detail on|off|dump\r\n",
            ErrorReply::ShutdownNotEnabled => b"ERROR: shutdown not enabled\r\n",
            ErrorReply::MetaInvalidFlag => b"CLIENT_ERROR invalid flag\r\n",
            ErrorReply::MetaDuplicateFlag => b"CLIENT_ERROR duplicate flag\r\n",
            ErrorReply::MetaInvalidOrDuplicateFlag => b"CLIENT_ERROR invalid or duplicate flag\r\n",
            ErrorReply::MetaBadToken => b"CLIENT_ERROR bad token in command line format\r\n",
            ErrorReply::MetaDecodingKey => b"CLIENT_ERROR error decoding key\r\n",
            ErrorReply::MetaOpaqueTooLong => b"CLIENT_ERROR opaque token too long\r\n",
            ErrorReply::MetaFlagsAreTooLong => b"CLIENT_ERROR options flags are too long\r\n",
            ErrorReply::MetaFlagsTooLong => b"CLIENT_ERROR options flags too long\r\n",
            ErrorReply::MetaModeLength => b"CLIENT_ERROR incorrect length for M token\r\n",
            ErrorReply::MetaSetInvalidMode => b"CLIENT_ERROR invalid mode for ms M token\r\n",
            ErrorReply::MetaArithmeticInvalidMode => b"CLIENT_ERROR invalid mode for ma M token\r\n",
            ErrorReply::MetaInvalidInitial => b"CLIENT_ERROR invalid numeric initial value\r\n",
            ErrorReply::MetaInvalidDelta => b"CLIENT_ERROR invalid numeric delta value\r\n",
            ErrorReply::InvalidShutdownMode => b"CLIENT_ERROR invalid shutdown mode\r\n",
            ErrorReply::FlushAllNotAllowed => b"CLIENT_ERROR flush_all not allowed\r\n",
            ErrorReply::MemlimitTooSmall => b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n",
            ErrorReply::MemlimitInMegabytes => b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n",
            ErrorReply::Unauthenticated => b"CLIENT_ERROR unauthenticated\r\n",
            ErrorReply::AuthBadTermination => b"CLIENT_ERROR bad command line termination\r\n",
            ErrorReply::AuthBadTokenFormat => b"CLIENT_ERROR bad authentication token format\r\n",
            ErrorReply::AuthTokenTooLong => b"CLIENT_ERROR auth token too long\r\n",
            ErrorReply::AuthFailure => b"CLIENT_ERROR authentication failure\r\n",
        }
    }
}

pub const STORED: &[u8] = b"STORED\r\n";
pub const NOT_STORED: &[u8] = b"NOT_STORED\r\n";
pub const EXISTS: &[u8] = b"EXISTS\r\n";
pub const NOT_FOUND: &[u8] = b"NOT_FOUND\r\n";
pub const DELETED: &[u8] = b"DELETED\r\n";
pub const TOUCHED: &[u8] = b"TOUCHED\r\n";
pub const END: &[u8] = b"END\r\n";
pub const OK: &[u8] = b"OK\r\n";
pub const RESET: &[u8] = b"RESET\r\n";
pub const MN: &[u8] = b"MN\r\n";

/// `VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n`.
#[inline]
pub fn write_value(out: &mut Vec<u8>, key: &[u8], flags: u32, data: &[u8], cas: Option<u64>) {
    out.reserve(key.len() + data.len() + 48);
    write_value_line(out, key, flags, data.len(), cas);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// `VALUE <key> <flags> <bytes>[ <cas>]\r\n`: what precedes a value sent separately;
/// the value and its `\r\n` follow.
pub fn write_value_line(out: &mut Vec<u8>, key: &[u8], flags: u32, len: usize, cas: Option<u64>) {
    out.extend_from_slice(b"VALUE ");
    out.extend_from_slice(key);
    out.push(b' ');
    write_u64(out, u64::from(flags));
    out.push(b' ');
    write_u64(out, len as u64);
    if let Some(cas) = cas {
        out.push(b' ');
        write_u64(out, cas);
    }
    out.extend_from_slice(b"\r\n");
}

/// A decimal number on its own line (incr/decr).
pub fn write_number_line(out: &mut Vec<u8>, value: u64) {
    write_u64(out, value);
    out.extend_from_slice(b"\r\n");
}

/// `STAT <name> <value>\r\n`.
pub fn write_stat(out: &mut Vec<u8>, name: &str, value: std::fmt::Arguments<'_>) {
    use std::io::Write;
    out.extend_from_slice(b"STAT ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    let _ = out.write_fmt(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_lines() {
        let mut out = Vec::new();
        write_value(&mut out, b"k", 5, b"abc", None);
        write_value(&mut out, b"k", 0, b"", Some(9));
        assert_eq!(out, b"VALUE k 5 3\r\nabc\r\nVALUE k 0 0 9\r\n\r\n");
    }
}
