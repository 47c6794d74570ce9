//! Bytes to commands and back; no I/O and no store.
//!
//! ```text
//!   command.rs  the vocabulary every parser produces: Command, Parsed, Limits
//!   tokens.rs   lines and tokens of the ASCII protocols
//!   ascii.rs    one ASCII line to text.rs (classic) or meta.rs, by its verb
//!   binary.rs   the binary protocol, header and body
//!   aspnet.rs   the ASP.NET State Server protocol: HTTP/1.1 requests and responses
//!   reply.rs    the replies and memcached's error lines
//! ```

pub mod ascii;
pub mod aspnet;
pub mod binary;
pub mod command;
pub mod meta;
pub mod reply;
pub mod text;
pub mod tokens;

pub use ascii::parse;
pub use command::{Command, Keys, Limits, ParseError, Parsed, ShutdownMode, StatsGroup, StoreMode, WatchKinds};
pub use reply::ErrorReply;
pub use text::parse_auth;
