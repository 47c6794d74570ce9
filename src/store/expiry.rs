//! memcached's exptime rules, in one place (memcached.c `realtime` and
//! `EXPTIME_TO_POSITIVE_TIME`; doc/protocol.txt "Storage commands"):
//! - 0 means never;
//! - up to 30 days (2,592,000 s, `REALTIME_MAXDELTA`) is relative to now;
//! - anything larger is an absolute Unix time, which may already be past;
//! - a negative value means already expired.
//!
//! The same rule serves set, touch, gat and the delay of `flush_all`.

/// memcached.h `REALTIME_MAXDELTA`: 30 days in seconds.
pub const MAX_RELATIVE_EXPTIME: i64 = 60 * 60 * 24 * 30;

/// A deadline of this value is before any real clock reading, so it reads as expired.
pub const ALREADY_EXPIRED: u32 = 1;

/// Converts a client exptime into an absolute deadline in Unix seconds (0 = never).
pub fn deadline(exptime: i32, now_secs: u32) -> u32 {
    let exptime = i64::from(exptime);
    if exptime == 0 {
        0
    } else if exptime < 0 {
        ALREADY_EXPIRED
    } else if exptime <= MAX_RELATIVE_EXPTIME {
        (i64::from(now_secs) + exptime).min(i64::from(u32::MAX)) as u32
    } else {
        exptime as u32
    }
}

/// True when an item with this deadline is gone at `now_secs`.
#[inline]
pub fn is_expired(expires_at: u32, now_secs: u32) -> bool {
    expires_at != 0 && expires_at <= now_secs
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u32 = 1_800_000_000;

    #[test]
    fn the_rules_of_exptime() {
        let table: &[(i32, u32, bool)] = &[
            (0, 0, false),
            (-1, ALREADY_EXPIRED, true),
            (i32::MIN, ALREADY_EXPIRED, true),
            (1, NOW + 1, false),
            (2_592_000, NOW + 2_592_000, false),
            (2_592_001, 2_592_001, true),
            ((NOW - 1) as i32, NOW - 1, true),
            (NOW as i32, NOW, true),
            ((NOW + 100) as i32, NOW + 100, false),
        ];
        for &(exptime, expected, expired_now) in table {
            let d = deadline(exptime, NOW);
            assert_eq!(d, expected, "exptime {exptime}");
            assert_eq!(is_expired(d, NOW), expired_now, "exptime {exptime}");
        }
    }

    #[test]
    fn relative_ttl_expires_when_its_second_comes() {
        let d = deadline(10, NOW);
        assert!(!is_expired(d, NOW + 9));
        assert!(is_expired(d, NOW + 10));
    }
}
