//! Time for the store: a coarse system clock in production, a manual one in tests
//! (memcached keeps `current_time` the same way, ticking once a second).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Unix time in milliseconds, from the system or from a test's hand.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    #[default]
    System,
    Manual(ManualClock),
}

impl Clock {
    #[inline]
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => system_now_ms(),
            Clock::Manual(manual) => manual.now_ms(),
        }
    }

    /// Milliseconds on a clock that never steps (CLOCK_MONOTONIC_COARSE), for timing
    /// silences and intervals whatever the wall clock does; a manual clock's time.
    pub fn mono_ms(&self) -> u64 {
        match self {
            Clock::System => read_ms(libc::CLOCK_MONOTONIC_COARSE),
            Clock::Manual(manual) => manual.now_ms(),
        }
    }

    /// Unix time in whole seconds, the resolution of memcached's expiry.
    #[inline]
    pub fn now_secs(&self) -> u32 {
        (self.now_ms() / 1000) as u32
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// Starts at `unix_ms`.
    pub fn new(unix_ms: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(unix_ms)))
    }
    pub fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
    pub fn advance_ms(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::AcqRel);
    }
    /// Steps the clock to `unix_ms`, back as well as forward (a clock step).
    pub fn set_ms(&self, unix_ms: u64) {
        self.0.store(unix_ms, Ordering::Release);
    }
    pub fn advance_secs(&self, secs: u64) {
        self.advance_ms(secs * 1000);
    }
}

/// `CLOCK_REALTIME_COARSE` costs a few nanoseconds through the vDSO, against tens for
/// the precise clock; its resolution (one scheduler tick, 1-4 ms) is far finer than
/// the one-second resolution of memcached's exptimes.
fn system_now_ms() -> u64 {
    read_ms(libc::CLOCK_REALTIME_COARSE)
}

fn read_ms(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes to it.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    debug_assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let manual = ManualClock::new(5_000);
        let clock = Clock::Manual(manual.clone());
        assert_eq!((clock.now_ms(), clock.now_secs()), (5_000, 5));
        manual.advance_secs(2);
        assert_eq!(clock.now_secs(), 7);
    }

    #[test]
    fn system_clock_is_near_real_time() {
        let real = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        assert!(Clock::System.now_ms().abs_diff(real) < 1_000);
    }
}
