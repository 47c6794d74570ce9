//! Number parsing with exactly the acceptance rules of memcached's `util.c`
//! (`safe_strtoull`, `safe_strtoul`, `safe_strtol`), which wrap C's `strtoull` and
//! `strtol` on a 64-bit Linux host.
//!
//! The rules matter on the wire: clients and tests rely on which odd inputs are
//! accepted. In short:
//! - leading white space and one `+` or `-` sign are skipped (C `strtoull`);
//! - at least one digit is required;
//! - the digits may be followed by white space (anything after it is ignored) or
//!   by the end of the token, and by nothing else;
//! - an overflow of 64 bits is an error (`ERANGE`);
//! - an unsigned parse rejects a value that looks negative as `i64` when the token
//!   contains a `-`, so `-1` fails but `-0` is 0;
//! - the 32-bit variants truncate the 64-bit result, as the C code's assignment
//!   `*out = l` does (so `4294967296` becomes 0 for `safe_strtoul`).

/// C's `isspace` in the "C" locale.
#[inline]
pub fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// The core of `strtoull`/`strtoll`: returns the magnitude, whether a minus sign was
/// seen, and the index just past the last digit, or `None` when there are no digits
/// or the magnitude overflows `u64`.
fn scan(token: &[u8]) -> Option<(u64, bool, usize)> {
    let mut i = 0;
    while i < token.len() && is_c_space(token[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < token.len() && (token[i] == b'+' || token[i] == b'-') {
        negative = token[i] == b'-';
        i += 1;
    }
    let digits_start = i;
    let mut value: u64 = 0;
    while i < token.len() && token[i].is_ascii_digit() {
        value = value.checked_mul(10)?.checked_add(u64::from(token[i] - b'0'))?;
        i += 1;
    }
    if i == digits_start {
        return None;
    }
    Some((value, negative, i))
}

/// True when the byte after the digits is acceptable: end of token or white space.
#[inline]
fn ends_cleanly(token: &[u8], end: usize) -> bool {
    end == token.len() || is_c_space(token[end])
}

/// memcached `safe_strtoull`.
pub fn parse_u64(token: &[u8]) -> Option<u64> {
    let (magnitude, negative, end) = scan(token)?;
    if !ends_cleanly(token, end) {
        return None;
    }
    let value = if negative { magnitude.wrapping_neg() } else { magnitude };
    if (value as i64) < 0 && token.contains(&b'-') {
        return None;
    }
    Some(value)
}

/// memcached `safe_strtoul` on LP64: parses as 64-bit, then truncates to 32 bits.
pub fn parse_u32(token: &[u8]) -> Option<u32> {
    parse_u64(token).map(|v| v as u32)
}

/// memcached `safe_strtol` on LP64: `strtol` into a 64-bit `long`, then truncated to
/// `int32_t`.
pub fn parse_i32(token: &[u8]) -> Option<i32> {
    let (magnitude, negative, end) = scan(token)?;
    // strtol reports ERANGE outside [i64::MIN, i64::MAX].
    let value: i64 = if negative {
        if magnitude > 1u64 << 63 {
            return None;
        }
        (magnitude as i64).wrapping_neg()
    } else {
        i64::try_from(magnitude).ok()?
    };
    if !ends_cleanly(token, end) {
        return None;
    }
    Some(value as i32)
}

/// Formats `value` in decimal into `buf` and returns the digits (no allocation).
#[inline]
pub fn format_u64(buf: &mut [u8; 20], value: u64) -> &[u8] {
    let mut i = buf.len();
    let mut v = value;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Appends `value` in decimal to `out`.
#[inline]
pub fn write_u64(out: &mut Vec<u8>, value: u64) {
    let mut buf = [0u8; 20];
    out.extend_from_slice(format_u64(&mut buf, value));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_64() {
        let table: &[(&[u8], Option<u64>)] = &[
            (b"0", Some(0)),
            (b"42", Some(42)),
            (b"+7", Some(7)),
            (b"-0", Some(0)),
            (b"-1", None),
            (b" 12", Some(12)),
            (b"\t12", Some(12)),
            (b"12\r", Some(12)),
            (b"12\tjunk", Some(12)),
            (b"12a", None),
            (b"", None),
            (b"-", None),
            (b"abc", None),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            // Negative values that stay positive as i64 are accepted by strtoull.
            (b"-9223372036854775809", Some(9223372036854775807)),
        ];
        for (input, expected) in table {
            assert_eq!(parse_u64(input), *expected, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn unsigned_32_truncates_like_c() {
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), Some(0));
        assert_eq!(parse_u32(b"-1"), None);
    }

    #[test]
    fn signed_32_truncates_like_c() {
        let table: &[(&[u8], Option<i32>)] = &[
            (b"0", Some(0)),
            (b"-1", Some(-1)),
            (b"2592000", Some(2592000)),
            (b"2147483648", Some(i32::MIN)),
            (b"4294967297", Some(1)),
            (b"9223372036854775807", Some(-1)),
            (b"9223372036854775808", None),
            (b"-9223372036854775808", Some(0)),
            (b"-9223372036854775809", None),
            (b"1x", None),
            (b"x", None),
        ];
        for (input, expected) in table {
            assert_eq!(parse_i32(input), *expected, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn writes_decimal() {
        for v in [0u64, 7, 10, 99, 12345, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
    }
}
