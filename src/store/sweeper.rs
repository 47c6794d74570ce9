//! The background sweeper: a thread that reclaims a slice of expired items per tick
//! ([`Store::sweep_step`]), for the daemon and for a store embedded in a host. The
//! handle stops and joins the thread when dropped, so no sweeper outlives its owner.

use super::Store;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The daemon's tick: 100 slices of 1024 buckets a second sweep a million items
/// (about two million buckets) in 20 s while holding each lock for microseconds.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(10);
pub const DEFAULT_BUCKETS: usize = 1024;

/// A running sweeper; dropping it stops and joins the thread.
pub struct Sweeper {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sweeper {
    /// Starts a thread named `name` that sweeps `buckets` buckets of `store` every
    /// `interval`.
    pub fn start(name: &str, store: Arc<Store>, interval: Duration, buckets: usize) -> io::Result<Sweeper> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        // The thread sleeps with park_timeout, which costs one futex wait per tick (a
        // channel's timed receive spins and yields first, stealing a worker's core).
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
            let mut next = Instant::now() + interval;
            while !stopped.load(Ordering::Acquire) {
                let now = Instant::now();
                if now < next {
                    std::thread::park_timeout(next - now);
                    continue;
                }
                store.sweep_step(buckets);
                next = now + interval;
            }
        })?;
        Ok(Sweeper { stop, thread: Some(thread) })
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
