//! The commands every protocol parses into: [`Command`] and the meta requests it
//! carries, how a parse ends ([`Parsed`], [`ParseError`]), the limits a parser
//! checks ([`Limits`], [`KEY_MAX_LENGTH`]) and memcached's item-size arithmetic.
//!
//! The text, meta and binary parsers each depend on this module and on none of the
//! others; the server's dispatch runs what they produce.

use super::reply::ErrorReply;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

pub use crate::store_mode::StoreMode;

/// Longest key, in bytes (memcached.h `KEY_MAX_LENGTH`).
pub const KEY_MAX_LENGTH: usize = 250;

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

/// memcached's `-I 1m` (memcached.c `settings_init`): the largest item unless one
/// is named, for the daemon and an embedded store alike.
pub const DEFAULT_ITEM_SIZE_MAX: usize = 1024 * 1024;

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
        Limits { item_size_max: DEFAULT_ITEM_SIZE_MAX, cas_enabled: true }
    }
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
    /// Replication links coming up, going down and syncing: `type=repl_link`
    /// (stickless's own; memcached has no replication).
    pub const REPLICATION: u8 = 1 << 4;

    /// The stream a `watch` argument names.
    pub fn from_name(name: &[u8]) -> Option<u8> {
        Some(match name {
            b"fetchers" => Self::FETCHERS,
            b"mutations" => Self::MUTATIONS,
            b"evictions" => Self::EVICTIONS,
            b"deletions" => Self::DELETIONS,
            b"replication" => Self::REPLICATION,
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
    /// `refresh_certs`: load the TLS certificates again.
    RefreshCerts {
        noreply: bool,
    },
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

/// The flags of one meta request, parsed once; the tokens stay available in request
/// order, which is the order return flags are written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetaFlags<'a> {
    /// One bit per flag letter present (ASCII code below 128).
    pub(super) seen: u128,
    /// `T`: new exptime.
    pub ttl: i32,
    /// `N`: exptime of an item created on a miss.
    pub vivify_ttl: i32,
    /// `R`: win the recache token when the remaining TTL is below this.
    pub recache_ttl: i32,
    /// `F`: client flags of an `ms`.
    pub client_flags: u32,
    /// `C`: compare-and-swap against this CAS.
    pub compare_cas: u64,
    /// `E`: the CAS the write takes instead of a fresh one.
    pub explicit_cas: u64,
    /// `J`: initial value of an `ma` that creates its item.
    pub initial: u64,
    /// `D`: delta of an `ma` (default 1).
    pub delta: u64,
    /// `M`: mode switch of `ms` and `ma` (0 = none).
    pub mode: u8,
    /// The flag tokens as sent, separated by spaces.
    pub(super) tokens: &'a [u8],
}

impl<'a> MetaFlags<'a> {
    /// Whether flag `letter` was sent.
    #[inline]
    pub fn has(&self, letter: u8) -> bool {
        letter < 128 && self.seen & (1u128 << letter) != 0
    }

    /// The flag tokens in request order.
    pub fn tokens(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.tokens.split(|&b| b == b' ').filter(|t| !t.is_empty())
    }

    /// The opaque token (`O...`, as sent) if any.
    pub fn opaque(&self) -> Option<&'a [u8]> {
        if !self.has(b'O') {
            return None;
        }
        self.tokens().find(|t| t[0] == b'O')
    }

    pub fn quiet(&self) -> bool {
        self.has(b'q')
    }

    pub fn binary_key(&self) -> bool {
        self.has(b'b')
    }

    /// `C`, when sent.
    pub fn compare_cas(&self) -> Option<u64> {
        self.has(b'C').then_some(self.compare_cas)
    }

    /// `E`, when sent.
    pub fn explicit_cas(&self) -> Option<u64> {
        self.has(b'E').then_some(self.explicit_cas)
    }
}

/// A meta request: its key as sent (base64 when `flags.binary_key()`) and flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaRequest<'a> {
    pub key: &'a [u8],
    pub flags: MetaFlags<'a>,
}

impl MetaRequest<'_> {
    /// The key as stored: decoded into `buf` when it was sent in base64.
    pub fn key<'b>(&'b self, buf: &'b mut [u8; KEY_MAX_LENGTH]) -> &'b [u8] {
        if self.flags.binary_key() {
            decode_key(self.key, buf).expect("the parser checked the key decodes")
        } else {
            self.key
        }
    }
}

/// Decodes a base64 key (the `b` flag). memcached's decoder skips characters outside
/// the alphabet; ours refuses them, so one key has one spelling.
pub fn decode_key<'b>(encoded: &[u8], buf: &'b mut [u8; KEY_MAX_LENGTH]) -> Option<&'b [u8]> {
    match BASE64.decode_slice(encoded, buf) {
        Ok(len) if len > 0 => Some(&buf[..len]),
        _ => None,
    }
}

/// Appends `key` in base64 (for the `k` return flag of a binary key).
pub fn encode_key(key: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + key.len().div_ceil(3) * 4, 0);
    let written = BASE64.encode_slice(key, &mut out[start..]).expect("buffer sized for the encoding");
    out.truncate(start + written);
}
