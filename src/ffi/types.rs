//! The ABI's types, as the header spells them: the statuses every call returns, the
//! enums passed as `int32_t` codes, and the structs a host fills or reads.

use crate::store::StoreMode;

/// The version of this ABI: bumped only when a function's meaning changes or one is
/// removed, so a binding built against version N works with any library of version N.
pub const STICKLESS_ABI_VERSION: u32 = 1;

/// What a call did. Positive numbers are answers a caller acts on, negative ones are
/// errors; the numbers are fixed forever.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)] // the C names, as the header spells them
pub enum StickStatus {
    /// Done.
    STICKLESS_OK = 0,
    /// The key holds no live item.
    STICKLESS_NOT_FOUND = 1,
    /// `cas`: the item changed since its CAS unique was read.
    STICKLESS_EXISTS = 2,
    /// `add` on a present key, `replace`/`append`/`prepend` on a missing one, or an
    /// append that would pass the item size limit.
    STICKLESS_NOT_STORED = 3,
    /// The value did not fit the buffer; `*out_len` holds its length.
    STICKLESS_BUFFER_TOO_SMALL = 4,
    /// `incr`/`decr` on a value that is not a decimal number below 2^64.
    STICKLESS_NON_NUMERIC = 5,
    /// A NULL pointer where one is required, a NULL range with a length, or an
    /// options struct this library does not know.
    STICKLESS_INVALID_ARGUMENT = -1,
    /// A key that is empty or longer than 250 bytes (memcached's `KEY_MAX_LENGTH`).
    STICKLESS_BAD_KEY = -2,
    /// An item larger than the item size limit (1 MiB unless set).
    STICKLESS_VALUE_TOO_LARGE = -3,
    /// No memory for the item, and eviction was turned off or could not free enough.
    STICKLESS_OUT_OF_MEMORY = -4,
    /// The handle was opened in a parent process; a child of `fork` must open its own.
    STICKLESS_FORKED = -5,
    /// A bug in stickless: it was caught, and the store is still usable.
    STICKLESS_PANIC = -6,
    /// A system call failed (a listener that cannot bind, a thread that cannot start).
    STICKLESS_IO_ERROR = -7,
    /// A `stickless_serve` argument that the daemon would refuse;
    /// `stickless_last_error` says which.
    STICKLESS_BAD_CONFIG = -8,
    /// `stickless_serve` on a handle that already serves.
    STICKLESS_ALREADY_SERVING = -9,
    /// A claim (`add`, `cas`, `append`, `prepend`, `incr`, `decr`) refused: claims need a majority of
    /// the nodes (`--repl-claims majority`) and this node cannot reach one. Nothing
    /// was written; try again later or on another node.
    STICKLESS_NO_MAJORITY = -10,
}

use StickStatus::*;

impl StickStatus {
    /// Every status, in the order of the header.
    pub(super) const ALL: [StickStatus; 16] = [
        STICKLESS_OK,
        STICKLESS_NOT_FOUND,
        STICKLESS_EXISTS,
        STICKLESS_NOT_STORED,
        STICKLESS_BUFFER_TOO_SMALL,
        STICKLESS_NON_NUMERIC,
        STICKLESS_INVALID_ARGUMENT,
        STICKLESS_BAD_KEY,
        STICKLESS_VALUE_TOO_LARGE,
        STICKLESS_OUT_OF_MEMORY,
        STICKLESS_FORKED,
        STICKLESS_PANIC,
        STICKLESS_IO_ERROR,
        STICKLESS_BAD_CONFIG,
        STICKLESS_ALREADY_SERVING,
        STICKLESS_NO_MAJORITY,
    ];

    /// The status's C name, NUL-terminated: the one table `stickless_result_str`
    /// reads.
    pub(super) fn name(self) -> &'static str {
        match self {
            STICKLESS_OK => "STICKLESS_OK\0",
            STICKLESS_NOT_FOUND => "STICKLESS_NOT_FOUND\0",
            STICKLESS_EXISTS => "STICKLESS_EXISTS\0",
            STICKLESS_NOT_STORED => "STICKLESS_NOT_STORED\0",
            STICKLESS_BUFFER_TOO_SMALL => "STICKLESS_BUFFER_TOO_SMALL\0",
            STICKLESS_NON_NUMERIC => "STICKLESS_NON_NUMERIC\0",
            STICKLESS_INVALID_ARGUMENT => "STICKLESS_INVALID_ARGUMENT\0",
            STICKLESS_BAD_KEY => "STICKLESS_BAD_KEY\0",
            STICKLESS_VALUE_TOO_LARGE => "STICKLESS_VALUE_TOO_LARGE\0",
            STICKLESS_OUT_OF_MEMORY => "STICKLESS_OUT_OF_MEMORY\0",
            STICKLESS_FORKED => "STICKLESS_FORKED\0",
            STICKLESS_PANIC => "STICKLESS_PANIC\0",
            STICKLESS_IO_ERROR => "STICKLESS_IO_ERROR\0",
            STICKLESS_BAD_CONFIG => "STICKLESS_BAD_CONFIG\0",
            STICKLESS_ALREADY_SERVING => "STICKLESS_ALREADY_SERVING\0",
            STICKLESS_NO_MAJORITY => "STICKLESS_NO_MAJORITY\0",
        }
    }
}

impl TryFrom<i32> for StickStatus {
    type Error = i32;

    fn try_from(code: i32) -> Result<Self, i32> {
        StickStatus::ALL.into_iter().find(|status| *status as i32 == code).ok_or(code)
    }
}

/// Bits of [`StickOptions::flags`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)] // the C names, as the header spells them
pub enum StickOpenFlags {
    /// Refuse stores when memory is full instead of evicting (the daemon's `-M`).
    STICKLESS_OPEN_NO_EVICT = 1,
    /// Every CAS unique is 0 (the daemon's `-C`).
    STICKLESS_OPEN_NO_CAS = 2,
}

pub(super) const KNOWN_OPEN_FLAGS: u32 =
    StickOpenFlags::STICKLESS_OPEN_NO_EVICT as u32 | StickOpenFlags::STICKLESS_OPEN_NO_CAS as u32;

/// Settings for `stickless_open`. Set `struct_size` to `sizeof(StickOptions)`; a zero
/// field means the default. Later versions only add fields at the end.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct StickOptions {
    pub struct_size: u32,
    /// `StickOpenFlags` bits.
    pub flags: u32,
    /// Bytes the items may use (the daemon's `-m`); default 64 MiB.
    pub memory_limit: u64,
    /// The largest item in bytes (the daemon's `-I`); default 1 MiB.
    pub item_size_max: u32,
    /// This node's id in versions, 1 to 4095, different from every peer's; default:
    /// a random one.
    pub node_id: u32,
}

/// What `stickless_stats` reports. Set `struct_size` to `sizeof(StickStats)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct StickStats {
    pub struct_size: u32,
    pub reserved: u32,
    /// Live items now.
    pub curr_items: u64,
    /// Items stored since the store opened.
    pub total_items: u64,
    /// Bytes used by items and tables, against `limit_maxbytes`.
    pub bytes: u64,
    pub limit_maxbytes: u64,
    pub evictions: u64,
    /// Expired items reclaimed.
    pub reclaimed: u64,
}

/// The modes of `stickless_store`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)] // the C names, as the header spells them
pub enum StickStoreMode {
    STICKLESS_SET = 1,
    STICKLESS_ADD = 2,
    STICKLESS_REPLACE = 3,
    STICKLESS_APPEND = 4,
    STICKLESS_PREPEND = 5,
    STICKLESS_CAS = 6,
}

impl TryFrom<i32> for StickStoreMode {
    type Error = i32;

    fn try_from(code: i32) -> Result<Self, i32> {
        use StickStoreMode::*;
        [STICKLESS_SET, STICKLESS_ADD, STICKLESS_REPLACE, STICKLESS_APPEND, STICKLESS_PREPEND, STICKLESS_CAS]
            .into_iter()
            .find(|mode| *mode as i32 == code)
            .ok_or(code)
    }
}

impl From<StickStoreMode> for StoreMode {
    fn from(mode: StickStoreMode) -> StoreMode {
        match mode {
            StickStoreMode::STICKLESS_SET => StoreMode::Set,
            StickStoreMode::STICKLESS_ADD => StoreMode::Add,
            StickStoreMode::STICKLESS_REPLACE => StoreMode::Replace,
            StickStoreMode::STICKLESS_APPEND => StoreMode::Append,
            StickStoreMode::STICKLESS_PREPEND => StoreMode::Prepend,
            StickStoreMode::STICKLESS_CAS => StoreMode::Cas,
        }
    }
}

/// Which listener `stickless_port` reports.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)] // the C names, as the header spells them
pub enum StickPortKind {
    /// The memcached protocol listener of `stickless_serve`.
    STICKLESS_PORT_MEMCACHED = 0,
    /// The replication listener (`--repl-listen`).
    STICKLESS_PORT_REPLICATION = 1,
}

impl TryFrom<i32> for StickPortKind {
    type Error = i32;

    fn try_from(code: i32) -> Result<Self, i32> {
        match code {
            0 => Ok(StickPortKind::STICKLESS_PORT_MEMCACHED),
            1 => Ok(StickPortKind::STICKLESS_PORT_REPLICATION),
            _ => Err(code),
        }
    }
}
