//! The exported functions: every `extern "C"` item of the crate, each a guarded
//! body over the embedded store (see `boundary.rs` for what each call crosses).

use super::boundary::*;
use super::embedded::{self, Embedded, fork_generation};
use super::types::StickStatus::{self, *};
use super::types::*;
use crate::store::StoreMode;
use StickStoreMode::*;
use std::ffi::c_char;
use std::ptr::null_mut;
use std::sync::Arc;

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
    unsafe { stickless_store(handle, STICKLESS_SET as i32, key, key_len, value, value_len, flags, ttl, 0, null_mut()) }
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
    unsafe { stickless_store(handle, STICKLESS_ADD as i32, key, key_len, value, value_len, flags, ttl, 0, null_mut()) }
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
        stickless_store(handle, STICKLESS_REPLACE as i32, key, key_len, value, value_len, flags, ttl, 0, null_mut())
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
    unsafe { stickless_store(handle, STICKLESS_APPEND as i32, key, key_len, value, value_len, 0, 0, 0, null_mut()) }
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
    unsafe { stickless_store(handle, STICKLESS_PREPEND as i32, key, key_len, value, value_len, 0, 0, 0, null_mut()) }
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
    unsafe { stickless_store(handle, STICKLESS_CAS as i32, key, key_len, value, value_len, flags, ttl, cas, out_cas) }
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
