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

//!
//! ```text
//!  types.rs     the statuses, enums and structs of the header
//!  boundary.rs  what every call crosses: the handle, the panic and fork guard, the
//!               last error, and the argument readers
//!  exports.rs   the extern "C" functions
//!  embedded.rs  the store behind a handle: its node, sweeper and served daemon
//! ```
//!
//! cbindgen reads this file and the modules it declares.

mod boundary;
mod embedded;
mod exports;
#[cfg(test)]
mod tests;
mod types;

pub use boundary::Stickless;
pub use exports::*;
pub use types::*;
