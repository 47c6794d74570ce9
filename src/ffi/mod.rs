//! The C ABI: the store embedded in a host process (`include/stickless.h`, generated
//! from this module by cbindgen). The only `extern "C"` items of the crate.
//!
//! Conventions (shared by every binding in `bindings/`):
//! - every fallible call returns an `int32_t` status from [`StickStatus`]; the numbers
//!   never change meaning, and `stickless_result_str` names them;
//! - keys and values are `(const void *, size_t)` byte ranges, never NUL-terminated;
//!   `(NULL, 0)` is an empty range;
//! - reads copy into a caller's buffer and always report the full length, so a short
//!   buffer gets `STICKLESS_BUFFER_TOO_SMALL` and the size to retry with;
//! - a handle may be used from many threads at once; nothing calls back into the host;
//! - a failed call may leave a message for `stickless_last_error`, per thread;
//! - every entry point catches panics (`STICKLESS_PANIC`), and a handle used in a
//!   child after `fork` answers `STICKLESS_FORKED` instead of touching the parent's
//!   threads.

mod embedded;

use crate::store::StoreMode;
use embedded::{Embedded, fork_generation};
use std::cell::RefCell;
use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

// The boundary toolkit. Every export is a plain `extern "C"` item (cbindgen reads
// them) whose body runs inside `guard` or `with_store`, and which reads its arguments
// with these macros: each returns `STICKLESS_INVALID_ARGUMENT` from the body for an
// argument the ABI's conventions refuse, so the checks read as one line each.

/// The bytes of a C range `(ptr, len)`: `(NULL, 0)` is empty, `(NULL, n > 0)` is
/// refused.
macro_rules! c_bytes {
    ($ptr:expr, $len:expr) => {
        // SAFETY: every export's contract says a non-NULL range pointer points to its
        // length of readable bytes, valid for the duration of the call.
        match unsafe { bytes($ptr, $len) } {
            Some(bytes) => bytes,
            None => return STICKLESS_INVALID_ARGUMENT,
        }
    };
}

/// An ABI enum from its `int32_t` code; an unknown code is refused.
macro_rules! c_enum {
    ($kind:ty, $code:expr) => {
        match <$kind>::try_from($code) {
            Ok(value) => value,
            Err(_) => return STICKLESS_INVALID_ARGUMENT,
        }
    };
}

/// Refuses the call unless `condition` holds (a required pointer is not NULL).
macro_rules! require {
    ($condition:expr) => {
        if !$condition {
            return STICKLESS_INVALID_ARGUMENT;
        }
    };
}

thread_local! {
    /// Why the last call on this thread failed, in words, for `stickless_last_error`
    /// (as libcurl's error buffer and rustls-ffi's error strings, but per thread, so
    /// a host's threads never read each other's). Every call clears it.
    static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records why the current call fails.
fn set_last_error(message: impl Into<String>) {
    LAST_ERROR.with(|last| *last.borrow_mut() = Some(message.into()));
}

#[cfg(test)]
thread_local! {
    /// Makes the next guarded call on this thread panic inside the export.
    static PANIC_IN_NEXT_CALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

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
}

use StickStatus::*;

impl StickStatus {
    /// Every status, in the order of the header.
    const ALL: [StickStatus; 15] = [
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
    ];

    /// The status's C name, NUL-terminated: the one table `stickless_result_str`
    /// reads.
    fn name(self) -> &'static str {
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

const KNOWN_OPEN_FLAGS: u32 =
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

/// An open store. Opaque; only ever used through a pointer.
pub struct Stickless {
    inner: Arc<Embedded>,
    /// The fork generation when opened: a different one means this is a child.
    generation: u64,
}

/// Runs `body` on the handle's store, mapping panics, NULL and fork.
fn with_store(handle: *const Stickless, body: impl FnOnce(&Embedded) -> StickStatus) -> i32 {
    guard(|| {
        // SAFETY: a non-NULL handle came from `stickless_open*` and has not been
        // closed (the caller's contract, as for any C handle).
        let Some(handle) = (unsafe { handle.as_ref() }) else {
            return STICKLESS_INVALID_ARGUMENT;
        };
        if handle.generation != fork_generation() {
            return STICKLESS_FORKED;
        }
        body(&handle.inner)
    })
}

/// The boundary of every export but `stickless_last_error`: clears the thread's last
/// error first, so that what `stickless_last_error` reports belongs to the last call,
/// and catches panics.
fn guard(body: impl FnOnce() -> StickStatus) -> i32 {
    LAST_ERROR.with(|last| last.take());
    catch_panics(body)
}

/// Catches a panic at the boundary: unwinding into C is undefined behaviour, and
/// aborting would take the host process down.
fn catch_panics(body: impl FnOnce() -> StickStatus) -> i32 {
    match catch_unwind(AssertUnwindSafe(|| {
        #[cfg(test)]
        if PANIC_IN_NEXT_CALL.with(|panic| panic.replace(false)) {
            panic!("forced by a test");
        }
        body()
    })) {
        Ok(status) => status as i32,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            set_last_error(format!("a bug in stickless was caught: {message}"));
            STICKLESS_PANIC as i32
        }
    }
}

/// A byte range from C: `(NULL, 0)` is empty, `(NULL, n > 0)` is an error.
///
/// # Safety
/// A non-NULL `ptr` must point to `len` readable bytes that stay valid and unchanged
/// for `'a` (the duration of the call).
unsafe fn bytes<'a>(ptr: *const core::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    if ptr.is_null() {
        return (len == 0).then_some(&[]);
    }
    // SAFETY: the caller's contract above.
    Some(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}

/// Copies `data` into the caller's buffer `(buf, buf_len)`, or answers
/// `STICKLESS_BUFFER_TOO_SMALL` and copies nothing.
///
/// # Safety
/// `buf` must hold `buf_len` writable bytes (it may be NULL when `buf_len` is 0),
/// none of them in `data`.
unsafe fn copy_out(data: &[u8], buf: *mut core::ffi::c_void, buf_len: usize) -> StickStatus {
    if data.len() > buf_len {
        return STICKLESS_BUFFER_TOO_SMALL;
    }
    if !data.is_empty() {
        // SAFETY: `buf` holds `buf_len >= data.len()` writable bytes that do not
        // overlap `data` (the caller's contract above).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf.cast::<u8>(), data.len()) };
    }
    STICKLESS_OK
}

/// Writes `value` through an optional out-pointer.
///
/// # Safety
/// A non-NULL `out` must be valid for a write of `T`.
unsafe fn put<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: the caller's contract above.
        unsafe { out.write(value) };
    }
}

/// The library's version, as a static NUL-terminated string ("0.1.0").
#[unsafe(no_mangle)]
pub extern "C" fn stickless_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// `STICKLESS_ABI_VERSION` of this library: a binding checks it when it loads.
#[unsafe(no_mangle)]
pub extern "C" fn stickless_abi_version() -> u32 {
    STICKLESS_ABI_VERSION
}

/// The name of a status ("STICKLESS_NOT_FOUND"), a static NUL-terminated string;
/// "STICKLESS_UNKNOWN" for a number that is none.
#[unsafe(no_mangle)]
pub extern "C" fn stickless_result_str(status: i32) -> *const c_char {
    let name = StickStatus::try_from(status).map_or("STICKLESS_UNKNOWN\0", StickStatus::name);
    name.as_ptr().cast()
}

/// Copies the message of why the last call on this thread failed into `buf`
/// (`buf_len` bytes, not NUL-terminated): why `stickless_serve` refused an argument,
/// why `stickless_open` could not start. `*out_len` always receives the message's
/// length; `STICKLESS_BUFFER_TOO_SMALL` when it exceeds `buf_len` (nothing copied),
/// `STICKLESS_NOT_FOUND` when the last call left no message. Reading it keeps it.
///
/// # Safety
/// `buf` points to `buf_len` writable bytes (or is NULL with `buf_len` 0); `out_len`
/// is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_last_error(buf: *mut c_char, buf_len: usize, out_len: *mut usize) -> i32 {
    // Not `guard`, which would clear the message this call reads.
    catch_panics(|| {
        require!(!out_len.is_null());
        require!(!(buf.is_null() && buf_len > 0));
        LAST_ERROR.with(|last| {
            let last = last.borrow();
            let message = last.as_deref().unwrap_or_default().as_bytes();
            // SAFETY: checked non-NULL; the caller's contract above.
            unsafe { out_len.write(message.len()) };
            if last.is_none() {
                return STICKLESS_NOT_FOUND;
            }
            // SAFETY: the caller's contract above; our string is not in their buffer.
            unsafe { copy_out(message, buf.cast(), buf_len) }
        })
    })
}

/// Sends the library's log to standard error, filtered by `filter` (`filter_len`
/// bytes, the syntax of `RUST_LOG`: "warn", "info", "stickless=debug"; NULL or empty
/// for "warn"): why `stickless_serve` refused a flag, when a peer links or drops.
/// Nothing is logged until a host calls this (or installs a Rust `log` logger of its
/// own). `STICKLESS_EXISTS` if a logger is already installed; `STICKLESS_BAD_CONFIG`
/// for a filter that is not UTF-8.
///
/// # Safety
/// `filter` points to `filter_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_log_to_stderr(filter: *const c_char, filter_len: usize) -> i32 {
    guard(|| {
        let filter = c_bytes!(filter.cast(), filter_len);
        let Ok(filter) = std::str::from_utf8(filter) else {
            return STICKLESS_BAD_CONFIG;
        };
        let filter = if filter.trim().is_empty() { "warn" } else { filter };
        let installed = env_logger::Builder::new().parse_filters(filter).format_timestamp_millis().try_init();
        match installed {
            Ok(()) => STICKLESS_OK,
            Err(_) => STICKLESS_EXISTS,
        }
    })
}

/// Opens a store of its own: `*out` receives the handle. `options` may be NULL for
/// the defaults. Starts one thread (the expiry sweeper); no listener until
/// `stickless_serve`.
///
/// # Safety
/// `options`, when not NULL, points to a `StickOptions` of at least `struct_size`
/// bytes; `out` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_open(options: *const StickOptions, out: *mut *mut Stickless) -> i32 {
    guard(|| {
        require!(!out.is_null());
        // SAFETY: the caller's contract above.
        let options = match unsafe { read_options(options) } {
            Ok(options) => options,
            Err(status) => return status,
        };
        match Embedded::open(&options) {
            Ok(inner) => {
                let handle = Box::new(Stickless { inner: Arc::new(inner), generation: fork_generation() });
                // SAFETY: checked non-NULL; the caller's contract above.
                unsafe { out.write(Box::into_raw(handle)) };
                STICKLESS_OK
            }
            Err(status) => status,
        }
    })
}

/// Opens the process-wide store called `name`, creating it with `options` on first
/// use; later opens of the same name share it (their options are ignored). The store
/// lives until the process ends, whoever closes their handles: for hosts such as PHP
/// that destroy every object at the end of each request.
///
/// # Safety
/// As `stickless_open`; `name` points to `name_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_open_shared(
    name: *const core::ffi::c_void,
    name_len: usize,
    options: *const StickOptions,
    out: *mut *mut Stickless,
) -> i32 {
    guard(|| {
        let name = c_bytes!(name, name_len);
        require!(!out.is_null());
        // SAFETY: the caller's contract above.
        let options = match unsafe { read_options(options) } {
            Ok(options) => options,
            Err(status) => return status,
        };
        match embedded::open_shared(name, &options) {
            Ok(inner) => {
                let handle = Box::new(Stickless { inner, generation: fork_generation() });
                // SAFETY: checked non-NULL; the caller's contract above.
                unsafe { out.write(Box::into_raw(handle)) };
                STICKLESS_OK
            }
            Err(status) => status,
        }
    })
}

/// Lets the process-wide store `name` go: it stops when its last open handle is
/// closed (at once if none is). A later `stickless_open_shared` of the name makes a
/// new, empty store. `STICKLESS_NOT_FOUND` if no store has that name.
///
/// # Safety
/// `name` points to `name_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_release_shared(name: *const core::ffi::c_void, name_len: usize) -> i32 {
    guard(|| {
        let name = c_bytes!(name, name_len);
        if embedded::release_shared(name) { STICKLESS_OK } else { STICKLESS_NOT_FOUND }
    })
}

/// Reads an options struct of any size this library understands.
///
/// # Safety
/// As `stickless_open`'s `options`.
unsafe fn read_options(options: *const StickOptions) -> Result<StickOptions, StickStatus> {
    // SAFETY: the caller's contract above.
    let Some(given) = (unsafe { options.as_ref() }) else {
        return Ok(StickOptions::default());
    };
    let size = given.struct_size as usize;
    // The first version's fields are the least a caller passes; fields of later
    // versions that this library does not know must be left zero.
    if size < std::mem::size_of::<StickOptions>() {
        return Err(STICKLESS_INVALID_ARGUMENT);
    }
    if size > std::mem::size_of::<StickOptions>() {
        // SAFETY: the caller says `size` bytes are readable.
        let extra = unsafe {
            std::slice::from_raw_parts(
                options.cast::<u8>().add(std::mem::size_of::<StickOptions>()),
                size - std::mem::size_of::<StickOptions>(),
            )
        };
        if extra.iter().any(|&b| b != 0) {
            return Err(STICKLESS_INVALID_ARGUMENT);
        }
    }
    if given.flags & !KNOWN_OPEN_FLAGS != 0 || given.node_id > u32::from(crate::store::version::NODE_MAX) {
        return Err(STICKLESS_INVALID_ARGUMENT);
    }
    Ok(*given)
}

/// Closes a handle; NULL is ignored. The store stops (its threads and listeners)
/// when its last handle is closed, unless it was opened with `stickless_open_shared`.
///
/// # Safety
/// `handle` is NULL or a handle not yet closed; it is invalid afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_close(handle: *mut Stickless) {
    let _ = guard(|| {
        if !handle.is_null() {
            // SAFETY: the caller's contract above: the box came from `open`.
            let handle = unsafe { Box::from_raw(handle) };
            if handle.generation != fork_generation() {
                // The parent's threads are not in this process: leak rather than join.
                std::mem::forget(handle);
            }
        }
        STICKLESS_OK
    });
}

/// Copies the value of `key` into `buf` (`buf_len` bytes). `*out_len` always receives
/// the value's length: when it exceeds `buf_len` the call returns
/// `STICKLESS_BUFFER_TOO_SMALL` and copies nothing (`buf` NULL with `buf_len` 0 asks
/// for the length alone). `out_flags`, `out_cas` and `out_ttl` (seconds left, -1 for
/// an item that never expires) may each be NULL.
///
/// # Safety
/// `handle` is open; `key` points to `key_len` bytes; `buf` to `buf_len` writable
/// bytes; each non-NULL out-pointer is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_get(
    handle: *const Stickless,
    key: *const core::ffi::c_void,
    key_len: usize,
    buf: *mut core::ffi::c_void,
    buf_len: usize,
    out_len: *mut usize,
    out_flags: *mut u32,
    out_cas: *mut u64,
    out_ttl: *mut i64,
) -> i32 {
    with_store(handle, |store| {
        let key = c_bytes!(key, key_len);
        require!(!(buf.is_null() && buf_len > 0));
        let found = store.get(key, |value, flags, cas, ttl| {
            // SAFETY: the caller's contract above.
            unsafe {
                put(out_len, value.len());
                put(out_flags, flags);
                put(out_cas, cas);
                put(out_ttl, ttl);
            }
            // SAFETY: the caller's contract above; a caller's buffer cannot overlap
            // the store's item.
            unsafe { copy_out(value, buf, buf_len) }
        });
        found.unwrap_or_else(|status| status)
    })
}

/// Stores `value` under `key` in `mode`: flags are returned by gets; `ttl` is seconds
/// to live (0: no expiry); `cas` is the unique a `STICKLESS_CAS` expects (ignored
/// otherwise); `out_cas`, when not NULL, receives the stored item's unique. Append
/// and prepend keep the item's flags and TTL.
///
/// # Safety
/// `handle` is open; `key` and `value` point to their lengths of bytes; `out_cas` is
/// NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_store(
    handle: *const Stickless,
    mode: i32,
    key: *const core::ffi::c_void,
    key_len: usize,
    value: *const core::ffi::c_void,
    value_len: usize,
    flags: u32,
    ttl: u32,
    cas: u64,
    out_cas: *mut u64,
) -> i32 {
    with_store(handle, |store| {
        let key = c_bytes!(key, key_len);
        let value = c_bytes!(value, value_len);
        let mode = StoreMode::from(c_enum!(StickStoreMode, mode));
        match store.store(mode, key, value, flags, ttl, cas) {
            Ok(stored_cas) => {
                // SAFETY: the caller's contract above.
                unsafe { put(out_cas, stored_cas) };
                STICKLESS_OK
            }
            Err(status) => status,
        }
    })
}

/// `stickless_store` with `STICKLESS_SET`.
///
/// # Safety
/// As `stickless_store`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_set(
    handle: *const Stickless,
    key: *const core::ffi::c_void,
    key_len: usize,
    value: *const core::ffi::c_void,
    value_len: usize,
    flags: u32,
    ttl: u32,
) -> i32 {
    // SAFETY: the caller's contract is stickless_store's.
    unsafe {
        stickless_store(
            handle,
            StickStoreMode::STICKLESS_SET as i32,
            key,
            key_len,
            value,
            value_len,
            flags,
            ttl,
            0,
            std::ptr::null_mut(),
        )
    }
}

/// `stickless_store` with `STICKLESS_ADD`: only if `key` holds nothing.
///
/// # Safety
/// As `stickless_store`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_add(
    handle: *const Stickless,
    key: *const core::ffi::c_void,
    key_len: usize,
    value: *const core::ffi::c_void,
    value_len: usize,
    flags: u32,
    ttl: u32,
) -> i32 {
    // SAFETY: the caller's contract is stickless_store's.
    unsafe {
        stickless_store(
            handle,
            StickStoreMode::STICKLESS_ADD as i32,
            key,
            key_len,
            value,
            value_len,
            flags,
            ttl,
            0,
            std::ptr::null_mut(),
        )
    }
}

/// `stickless_store` with `STICKLESS_REPLACE`: only if `key` holds an item.
///
/// # Safety
/// As `stickless_store`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_replace(
    handle: *const Stickless,
    key: *const core::ffi::c_void,
    key_len: usize,
    value: *const core::ffi::c_void,
    value_len: usize,
    flags: u32,
    ttl: u32,
) -> i32 {
    // SAFETY: the caller's contract is stickless_store's.
    unsafe {
        stickless_store(
            handle,
            StickStoreMode::STICKLESS_REPLACE as i32,
            key,
            key_len,
            value,
            value_len,
            flags,
            ttl,
            0,
            std::ptr::null_mut(),
        )
    }
}

/// `stickless_store` with `STICKLESS_APPEND`: `value` goes after the item's.
///
/// # Safety
/// As `stickless_store`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_append(
    handle: *const Stickless,
    key: *const core::ffi::c_void,
    key_len: usize,
    value: *const core::ffi::c_void,
    value_len: usize,
) -> i32 {
    // SAFETY: the caller's contract is stickless_store's.
    unsafe {
        stickless_store(
            handle,
            StickStoreMode::STICKLESS_APPEND as i32,
            key,
            key_len,
            value,
            value_len,
            0,
            0,
            0,
            std::ptr::null_mut(),
        )
    }
}

/// `stickless_store` with `STICKLESS_PREPEND`: `value` goes before the item's.
///
/// # Safety
/// As `stickless_store`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_prepend(
    handle: *const Stickless,
    key: *const core::ffi::c_void,
    key_len: usize,
    value: *const core::ffi::c_void,
    value_len: usize,
) -> i32 {
    // SAFETY: the caller's contract is stickless_store's.
    unsafe {
        stickless_store(
            handle,
            StickStoreMode::STICKLESS_PREPEND as i32,
            key,
            key_len,
            value,
            value_len,
            0,
            0,
            0,
            std::ptr::null_mut(),
        )
    }
}

/// `stickless_store` with `STICKLESS_CAS`: only if the item's unique is still `cas`
/// (`STICKLESS_EXISTS` if it changed, `STICKLESS_NOT_FOUND` if it is gone).
///
/// # Safety
/// As `stickless_store`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_cas(
    handle: *const Stickless,
    key: *const core::ffi::c_void,
    key_len: usize,
    value: *const core::ffi::c_void,
    value_len: usize,
    flags: u32,
    ttl: u32,
    cas: u64,
    out_cas: *mut u64,
) -> i32 {
    // SAFETY: the caller's contract is stickless_store's.
    unsafe {
        stickless_store(
            handle,
            StickStoreMode::STICKLESS_CAS as i32,
            key,
            key_len,
            value,
            value_len,
            flags,
            ttl,
            cas,
            out_cas,
        )
    }
}

/// Deletes `key`.
///
/// # Safety
/// `handle` is open; `key` points to `key_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_delete(
    handle: *const Stickless,
    key: *const core::ffi::c_void,
    key_len: usize,
) -> i32 {
    with_store(handle, |store| {
        let key = c_bytes!(key, key_len);
        store.delete(key)
    })
}

/// Takes the lease lock `key` for `lease` seconds (1 or more), with `owner` (any
/// bytes, e.g. "host:pid"; `stickless_get` reads it back) as its value. `*out_token`
/// receives the lock's token, which releases it. `STICKLESS_EXISTS` while another
/// holds it. The same lock is the meta protocol's `ms <key> <len> ME T<lease> c`
/// (the token is the `c` value), so daemons' clients and hosts contend alike. With a
/// peer linked, the two nodes never both grant one lock: an acquisition that races
/// one on the peer waits for the peer's verdict, and exactly one wins. While no
/// peer is linked a node decides alone; when the link returns, the newer of two
/// locks granted meanwhile stays on both nodes.
///
/// # Safety
/// `handle` is open; `key` and `owner` point to their lengths of bytes; `out_token`
/// is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_lock(
    handle: *const Stickless,
    key: *const core::ffi::c_void,
    key_len: usize,
    owner: *const core::ffi::c_void,
    owner_len: usize,
    lease: u32,
    out_token: *mut u64,
) -> i32 {
    with_store(handle, |store| {
        let key = c_bytes!(key, key_len);
        let owner = c_bytes!(owner, owner_len);
        match store.lock(key, owner, lease) {
            Ok(token) => {
                // SAFETY: the caller's contract above.
                unsafe { put(out_token, token) };
                STICKLESS_OK
            }
            Err(status) => status,
        }
    })
}

/// Releases the lock `key` if `token` still holds it (compare and delete; the meta
/// protocol's `md <key> C<token>`). `STICKLESS_EXISTS` if another holder has it now
/// (this one's lease ran out), `STICKLESS_NOT_FOUND` if nobody holds it.
///
/// # Safety
/// `handle` is open; `key` points to `key_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_unlock(
    handle: *const Stickless,
    key: *const core::ffi::c_void,
    key_len: usize,
    token: u64,
) -> i32 {
    with_store(handle, |store| {
        let key = c_bytes!(key, key_len);
        store.unlock(key, token)
    })
}

/// Reports on the lock `key`: its token, its age in milliseconds (since it was
/// taken, read from the token itself, so every node reports the same), and the
/// seconds of lease left. Each out-pointer may be NULL. `STICKLESS_NOT_FOUND` if
/// nobody holds it. A client of the daemon computes the same age from the token
/// (`mg <key> c t`): `now_ms - (1577836800000 + (token >> 23))`.
///
/// # Safety
/// `handle` is open; `key` points to `key_len` bytes; each non-NULL out-pointer is
/// valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_lock_info(
    handle: *const Stickless,
    key: *const core::ffi::c_void,
    key_len: usize,
    out_token: *mut u64,
    out_age_ms: *mut u64,
    out_ttl: *mut i64,
) -> i32 {
    with_store(handle, |store| {
        let key = c_bytes!(key, key_len);
        match store.lock_info(key) {
            Ok((token, age_ms, ttl)) => {
                // SAFETY: the caller's contract above.
                unsafe {
                    put(out_token, token);
                    put(out_age_ms, age_ms);
                    put(out_ttl, ttl);
                }
                STICKLESS_OK
            }
            Err(status) => status,
        }
    })
}

/// Adds `delta` to the decimal number stored at `key` (wrapping at 2^64, as
/// memcached); `out_value`, when not NULL, receives the result.
///
/// # Safety
/// `handle` is open; `key` points to `key_len` bytes; `out_value` is NULL or valid
/// for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_incr(
    handle: *const Stickless,
    key: *const core::ffi::c_void,
    key_len: usize,
    delta: u64,
    out_value: *mut u64,
) -> i32 {
    // SAFETY: the caller's contract above.
    unsafe { arithmetic(handle, key, key_len, true, delta, out_value) }
}

/// Subtracts `delta` from the number at `key`, stopping at 0 (as memcached).
///
/// # Safety
/// As `stickless_incr`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_decr(
    handle: *const Stickless,
    key: *const core::ffi::c_void,
    key_len: usize,
    delta: u64,
    out_value: *mut u64,
) -> i32 {
    // SAFETY: the caller's contract above.
    unsafe { arithmetic(handle, key, key_len, false, delta, out_value) }
}

/// # Safety
/// As `stickless_incr`.
unsafe fn arithmetic(
    handle: *const Stickless,
    key: *const core::ffi::c_void,
    key_len: usize,
    incr: bool,
    delta: u64,
    out_value: *mut u64,
) -> i32 {
    with_store(handle, |store| {
        let key = c_bytes!(key, key_len);
        match store.arithmetic(key, incr, delta) {
            Ok(value) => {
                // SAFETY: the caller's contract above.
                unsafe { put(out_value, value) };
                STICKLESS_OK
            }
            Err(status) => status,
        }
    })
}

/// Gives the item at `key` a new time to live (`ttl` seconds, 0: no expiry).
///
/// # Safety
/// `handle` is open; `key` points to `key_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_touch(
    handle: *const Stickless,
    key: *const core::ffi::c_void,
    key_len: usize,
    ttl: u32,
) -> i32 {
    with_store(handle, |store| {
        let key = c_bytes!(key, key_len);
        store.touch(key, ttl)
    })
}

/// Invalidates every item, now (`delay` 0) or in `delay` seconds (memcached's
/// `flush_all`); a replicating node flushes its peer too.
///
/// # Safety
/// `handle` is open.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_flush(handle: *const Stickless, delay: u32) -> i32 {
    with_store(handle, |store| {
        store.flush(delay);
        STICKLESS_OK
    })
}

/// Fills `*out` (whose `struct_size` the caller sets) with the store's counters.
///
/// # Safety
/// `handle` is open; `out` points to a `StickStats` of at least `struct_size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_stats(handle: *const Stickless, out: *mut StickStats) -> i32 {
    with_store(handle, |store| {
        // SAFETY: the caller's contract above.
        let Some(given) = (unsafe { out.as_mut() }) else {
            return STICKLESS_INVALID_ARGUMENT;
        };
        require!(given.struct_size as usize >= std::mem::size_of::<StickStats>());
        let stats = store.stats();
        *given = StickStats {
            struct_size: given.struct_size,
            reserved: 0,
            curr_items: stats.curr_items,
            total_items: stats.total_items,
            bytes: stats.memory_used,
            limit_maxbytes: stats.memory_limit,
            evictions: stats.evictions,
            reclaimed: stats.reclaimed,
        };
        STICKLESS_OK
    })
}

/// Serves the store to other processes and replicates it, as the daemon would with
/// the same command-line arguments (`args`: `args_len` bytes, separated by spaces),
/// e.g. `"-l 127.0.0.1 -p 0 --peer 10.0.0.2:11212"`. `-m`, `-I`, `-M`, `-C` and
/// `--node-id` are the store's own and are ignored here; `--protect-prefix` applies
/// to the store (sessions kept from eviction). Why a flag was refused is told by
/// `stickless_last_error` (and logged, see `stickless_log_to_stderr`). Stops when the
/// last handle is closed.
///
/// Unlike the daemon, the node accepts a peer only when given `--repl-listen`: with
/// `--peer` alone it dials and opens no replication port, so it never takes a local
/// daemon's. With `--peer`, the call returns once the peer has sent what it holds,
/// or after `--repl-wait-sync` seconds (10 unless given) if it cannot be reached.
///
/// With `--repl-sync ack`, every write through this handle (set and the other
/// stores, delete, incr, decr, touch, flush) returns only once the peer has applied
/// it, exactly when the daemon would reply to a client; while no link is up it
/// returns at once, as the daemon does.
///
/// # Safety
/// `handle` is open; `args` points to `args_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_serve(handle: *const Stickless, args: *const c_char, args_len: usize) -> i32 {
    with_store(handle, |store| {
        let args = c_bytes!(args.cast(), args_len);
        store.serve(args)
    })
}

/// The port a listener of `stickless_serve` is bound to (`kind`: a `StickPortKind`),
/// useful after `-p 0`. `STICKLESS_NOT_FOUND` when there is no such listener.
///
/// # Safety
/// `handle` is open; `out_port` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stickless_port(handle: *const Stickless, kind: i32, out_port: *mut u16) -> i32 {
    with_store(handle, |store| {
        require!(!out_port.is_null());
        let port = match c_enum!(StickPortKind, kind) {
            StickPortKind::STICKLESS_PORT_MEMCACHED => store.memcached_port(),
            StickPortKind::STICKLESS_PORT_REPLICATION => store.replication_port(),
        };
        match port {
            Some(port) => {
                // SAFETY: checked non-NULL; the caller's contract above.
                unsafe { out_port.write(port) };
                STICKLESS_OK
            }
            None => STICKLESS_NOT_FOUND,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> *mut Stickless {
        let mut handle = std::ptr::null_mut();
        // SAFETY: NULL options ask for the defaults; `handle` is writable.
        assert_eq!(unsafe { stickless_open(std::ptr::null(), &mut handle) }, STICKLESS_OK as i32);
        handle
    }

    fn set(handle: *mut Stickless, key: &[u8], value: &[u8]) -> i32 {
        // SAFETY: an open handle and two live slices.
        unsafe { stickless_set(handle, key.as_ptr().cast(), key.len(), value.as_ptr().cast(), value.len(), 0, 0) }
    }

    /// The status and value of a get of `key` (values of 64 bytes at most).
    fn get(handle: *mut Stickless, key: &[u8]) -> (i32, Vec<u8>) {
        let mut buf = [0u8; 64];
        let mut len = 0;
        // SAFETY: an open handle, a live key, `buf` and `len` writable; NULL outs.
        let status = unsafe {
            stickless_get(
                handle,
                key.as_ptr().cast(),
                key.len(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut len,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        (status, buf[..len.min(buf.len())].to_vec())
    }

    /// The last error of this thread, or the status that said there is none.
    fn last_error() -> Result<String, i32> {
        let mut buf = [0u8; 512];
        let mut len = 0;
        // SAFETY: `buf` holds `buf.len()` writable bytes; `len` is writable.
        let status = unsafe { stickless_last_error(buf.as_mut_ptr().cast(), buf.len(), &mut len) };
        if status != STICKLESS_OK as i32 {
            return Err(status);
        }
        Ok(String::from_utf8(buf[..len].to_vec()).unwrap())
    }

    #[test]
    fn a_panic_inside_an_export_is_caught_and_the_store_stays_usable() {
        let handle = open();
        PANIC_IN_NEXT_CALL.with(|panic| panic.set(true));
        assert_eq!(set(handle, b"k", b"v"), STICKLESS_PANIC as i32);
        let message = last_error().expect("a message");
        assert!(message.contains("forced by a test"), "{message}");
        assert_eq!(set(handle, b"k", b"v"), STICKLESS_OK as i32);
        assert_eq!(last_error(), Err(STICKLESS_NOT_FOUND as i32), "a call clears the last error");
        assert_eq!(get(handle, b"k"), (STICKLESS_OK as i32, b"v".to_vec()));
        // SAFETY: the handle is open and not used again.
        unsafe { stickless_close(handle) };
    }

    /// A panic inside replication code poisons the lock it held (the backlog's, as a
    /// panic while a change is recorded would). The store still serves: the next
    /// writes through the ABI are recorded in an emptied backlog, as a poisoned
    /// store shard is emptied and used.
    #[test]
    fn a_panic_inside_replication_leaves_the_store_usable() {
        let handle = open();
        let args = b"-l 127.0.0.1 -p 0 --repl-listen 127.0.0.1:0";
        // SAFETY: an open handle and a live argument string.
        assert_eq!(unsafe { stickless_serve(handle, args.as_ptr().cast(), args.len()) }, STICKLESS_OK as i32);
        assert_eq!(set(handle, b"before", b"1"), STICKLESS_OK as i32);
        // SAFETY: the handle is open until the end of this test.
        let embedded = unsafe { &*handle };
        let replicator = Arc::clone(embedded.inner.node().replicator().expect("serving with --repl-listen replicates"));
        let held = Arc::clone(&replicator);
        let panicked = std::thread::spawn(move || {
            let _backlog = held.backlog();
            panic!("a panic inside replication, forced by a test");
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(set(handle, b"after", b"2"), STICKLESS_OK as i32);
        assert_eq!(get(handle, b"after"), (STICKLESS_OK as i32, b"2".to_vec()));
        let backlog = replicator.backlog();
        assert_eq!((backlog.first_seq(), backlog.last_seq()), (2, 2), "emptied, its sequence going on");
        drop(backlog);
        // SAFETY: the handle is open and not used again.
        unsafe { stickless_close(handle) };
    }

    #[test]
    fn a_refused_serve_says_why() {
        let handle = open();
        let args = b"-p 0 --no-such-flag";
        // SAFETY: an open handle and a live argument string.
        let status = unsafe { stickless_serve(handle, args.as_ptr().cast(), args.len()) };
        assert_eq!(status, STICKLESS_BAD_CONFIG as i32);
        let message = last_error().expect("a message");
        assert!(message.contains("--no-such-flag"), "{message}");
        // A buffer too short gets the length, as for values.
        let mut len = 0;
        // SAFETY: NULL with length 0 asks for the length alone; `len` is writable.
        let status = unsafe { stickless_last_error(std::ptr::null_mut(), 0, &mut len) };
        assert_eq!((status, len), (STICKLESS_BUFFER_TOO_SMALL as i32, message.len()));
        // SAFETY: the handle is open and not used again.
        unsafe { stickless_close(handle) };
    }

    #[test]
    fn every_status_has_its_name_and_codes_decode_to_the_abi_enums() {
        for status in StickStatus::ALL {
            // SAFETY: stickless_result_str returns a static NUL-terminated string.
            let name = unsafe { std::ffi::CStr::from_ptr(stickless_result_str(status as i32)) };
            assert_eq!(name.to_str().unwrap(), format!("{status:?}"));
            assert_eq!(StickStatus::try_from(status as i32), Ok(status));
        }
        // SAFETY: as above.
        let unknown = unsafe { std::ffi::CStr::from_ptr(stickless_result_str(42)) };
        assert_eq!(unknown.to_str().unwrap(), "STICKLESS_UNKNOWN");
        assert_eq!(StickStoreMode::try_from(6), Ok(StickStoreMode::STICKLESS_CAS));
        assert_eq!(StickStoreMode::try_from(0), Err(0));
        assert_eq!(StickPortKind::try_from(1), Ok(StickPortKind::STICKLESS_PORT_REPLICATION));
        assert_eq!(StickPortKind::try_from(2), Err(2));
    }
}
