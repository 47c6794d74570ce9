//! What operators see and do beside the commands' data: counters and `stats`,
//! Prometheus metrics, `watch` lines and warm restart.
//!
//! ```text
//!  stats.rs    per-worker counters and the `stats` replies (text and binary)
//!  metrics.rs  GET /metrics on --metrics-listen, from the same counters
//!  watch.rs    `watch` connections and the thread that writes their lines
//!  warm.rs     -e FILE: the items saved at a graceful stop, loaded at the next start
//! ```

pub mod metrics;
pub mod stats;
pub mod warm;
pub mod watch;
