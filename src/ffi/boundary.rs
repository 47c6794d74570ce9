//! The boundary every export crosses: the handle, the guard that catches panics and
//! checks the handle (NULL, closed by fork), the per-thread last error, and the
//! macros and helpers that read C's arguments and write its out-parameters.
//!
//! Every export is a plain `extern "C"` item (cbindgen reads them) whose body runs
//! inside [`guard`] or [`with_store`], and which reads its arguments with these
//! macros: each returns `STICKLESS_INVALID_ARGUMENT` from the body for an argument
//! the ABI's conventions refuse, so the checks read as one line each.

use super::embedded::{Embedded, fork_generation};
use super::types::StickStatus::{self, *};
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

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
pub(super) use c_bytes;

/// An ABI enum from its `int32_t` code; an unknown code is refused.
macro_rules! c_enum {
    ($kind:ty, $code:expr) => {
        match <$kind>::try_from($code) {
            Ok(value) => value,
            Err(_) => return STICKLESS_INVALID_ARGUMENT,
        }
    };
}
pub(super) use c_enum;

/// Refuses the call unless `condition` holds (a required pointer is not NULL).
macro_rules! require {
    ($condition:expr) => {
        if !$condition {
            return STICKLESS_INVALID_ARGUMENT;
        }
    };
}
pub(super) use require;

thread_local! {
    /// Why the last call on this thread failed, in words, for `stickless_last_error`
    /// (as libcurl's error buffer and rustls-ffi's error strings, but per thread, so
    /// a host's threads never read each other's). Every call clears it.
    pub(super) static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records why the current call fails.
pub(super) fn set_last_error(message: impl Into<String>) {
    LAST_ERROR.with(|last| *last.borrow_mut() = Some(message.into()));
}

#[cfg(test)]
thread_local! {
    /// Makes the next guarded call on this thread panic inside the export.
    pub(super) static PANIC_IN_NEXT_CALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// An open store. Opaque; only ever used through a pointer.
pub struct Stickless {
    pub(super) inner: Arc<Embedded>,
    /// The fork generation when opened: a different one means this is a child.
    pub(super) generation: u64,
}

/// Runs `body` on the handle's store, mapping panics, NULL and fork.
pub(super) fn with_store(handle: *const Stickless, body: impl FnOnce(&Embedded) -> StickStatus) -> i32 {
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
pub(super) fn guard(body: impl FnOnce() -> StickStatus) -> i32 {
    LAST_ERROR.with(|last| last.take());
    catch_panics(body)
}

/// Catches a panic at the boundary: unwinding into C is undefined behaviour, and
/// aborting would take the host process down.
pub(super) fn catch_panics(body: impl FnOnce() -> StickStatus) -> i32 {
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
pub(super) unsafe fn bytes<'a>(ptr: *const core::ffi::c_void, len: usize) -> Option<&'a [u8]> {
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
pub(super) unsafe fn copy_out(data: &[u8], buf: *mut core::ffi::c_void, buf_len: usize) -> StickStatus {
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
pub(super) unsafe fn put<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: the caller's contract above.
        unsafe { out.write(value) };
    }
}
