//! What the heartbeat tells about a peer: whether it is alive, the round trip, and
//! how far its clock is from ours. Pure arithmetic on timestamps, driven by the link
//! with its clock (a manual one in tests).
//!
//! Every `Ping` carries the sender's clock; the `Pong` echoes it with the peer's own
//! clock. With the round trip `rtt = now - echo`, the peer's clock read `sent` about
//! `rtt / 2` ago, so its offset from ours is `sent - (echo + rtt / 2)` (NTP's
//! estimate, RFC 5905 §8, with one sample per exchange). Samples are smoothed so that
//! one delayed packet does not swing the estimate.

use std::time::Duration;

/// Default interval between pings (the 500 ms).
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(500);
/// Skew above this is warned about in the log: TTLs of a few seconds would be bent.
pub const SKEW_WARNING_MS: i64 = 1_000;
/// Weight of a new sample in the smoothed estimates (1/8, TCP's SRTT gain, RFC 6298).
const SMOOTHING_DIVISOR: i64 = 8;

/// The two clocks a link reads at one moment: the wall clock (Unix ms), which the
/// peer's clock is compared with, and a monotonic one (ms), which times silences and
/// heartbeats, so that a wall clock stepped back does not hide a dead peer for as
/// long as the step, nor one stepped forward drop a live one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkTime {
    pub wall_ms: u64,
    pub mono_ms: u64,
}

impl LinkTime {
    /// Both clocks at `ms`: a manual clock's time in tests.
    pub fn both(ms: u64) -> LinkTime {
        LinkTime { wall_ms: ms, mono_ms: ms }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerClock {
    /// Our monotonic clock when we last heard anything from the peer (ms), 0 = never.
    pub last_heard_ms: u64,
    /// Smoothed round trip, ms; `None` before the first pong.
    pub rtt_ms: Option<u64>,
    /// Smoothed offset of the peer's clock from ours, ms (positive: the peer is
    /// ahead); `None` before the first pong.
    pub skew_ms: Option<i64>,
}

impl PeerClock {
    /// Any frame from the peer shows it is alive.
    pub fn heard(&mut self, now_ms: u64) {
        self.last_heard_ms = self.last_heard_ms.max(now_ms);
    }

    /// A pong for a ping we sent at `echo_ms`, which the peer answered at its
    /// `sent_ms`, all on wall clocks. Returns the new smoothed skew.
    pub fn pong(&mut self, now_ms: u64, echo_ms: u64, sent_ms: u64) -> i64 {
        let rtt = now_ms.saturating_sub(echo_ms);
        let sample = sent_ms as i64 - (echo_ms + rtt / 2) as i64;
        self.rtt_ms = Some(match self.rtt_ms {
            None => rtt,
            Some(old) => (old as i64 + (rtt as i64 - old as i64) / SMOOTHING_DIVISOR) as u64,
        });
        let skew = match self.skew_ms {
            None => sample,
            // A sample is off by at most half its round trip (RFC 5905 §8). One further
            // from the estimate than a whole round trip and the warning threshold is
            // no delayed packet: a clock stepped (NTP, an operator), and expiry times
            // corrected by the old estimate would be off by the step for the dozens
            // of pongs smoothing takes to follow it.
            Some(old) if (sample - old).unsigned_abs() > rtt.max(SKEW_WARNING_MS as u64) => sample,
            Some(old) => old + (sample - old) / SMOOTHING_DIVISOR,
        };
        self.skew_ms = Some(skew);
        skew
    }

    /// Whether the peer has been silent for longer than `timeout` (a frozen or cut
    /// peer; repcached never noticed one, finding 2).
    pub fn is_down(&self, now_ms: u64, timeout: Duration) -> bool {
        now_ms.saturating_sub(self.last_heard_ms) > timeout.as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000_000;

    #[test]
    fn the_first_pong_measures_round_trip_and_skew() {
        let mut peer = PeerClock::default();
        // Ping sent at T, answered by a peer 30 s ahead 2 ms later, back at T + 4.
        let skew = peer.pong(T + 4, T, T + 30_000 + 2);
        assert_eq!((peer.rtt_ms, skew), (Some(4), 30_000));
    }

    #[test]
    fn one_slow_packet_moves_the_estimates_by_an_eighth() {
        let mut peer = PeerClock::default();
        peer.pong(T + 2, T, T + 1);
        assert_eq!((peer.rtt_ms, peer.skew_ms), (Some(2), Some(0)));
        // A pong delayed 82 ms on its way back: rtt sample 82, skew sample -40.
        let skew = peer.pong(T + 1_082, T + 1_000, T + 1_001);
        assert_eq!((peer.rtt_ms, skew), (Some(12), -5));
    }

    #[test]
    fn a_stepped_clock_is_followed_at_once() {
        let mut peer = PeerClock::default();
        peer.pong(T + 2, T, T + 1);
        // The peer's clock steps 30 s ahead: the next sample says so with a 2 ms round trip.
        let skew = peer.pong(T + 1_002, T + 1_000, T + 31_001);
        assert_eq!(skew, 30_000);
        // And back: followed at once too, not over the 25 pongs smoothing would take.
        let skew = peer.pong(T + 2_002, T + 2_000, T + 2_001);
        assert_eq!(skew, 0);
        // A sample 1.5 s off that took 4 s to come back may be a delayed packet: smoothed.
        let skew = peer.pong(T + 7_000, T + 3_000, T + 6_500);
        assert_eq!(skew, 1_500 / 8);
    }

    #[test]
    fn a_silent_peer_is_down_after_the_timeout() {
        let mut peer = PeerClock::default();
        peer.heard(T);
        let timeout = Duration::from_secs(3);
        assert!(!peer.is_down(T + 3_000, timeout));
        assert!(peer.is_down(T + 3_001, timeout));
        peer.heard(T + 3_001);
        assert!(!peer.is_down(T + 3_001, timeout));
        peer.heard(T);
        assert_eq!(peer.last_heard_ms, T + 3_001, "a late-processed frame never moves the mark back");
    }
}
