//! Bytes to commands and back; no I/O and no store.

pub mod binary;
pub mod meta;
pub mod reply;
pub mod text;

pub use reply::ErrorReply;
pub use text::{Command, Keys, Limits, ParseError, Parsed, ShutdownMode, StatsGroup, StoreMode, WatchKinds};
