//! Number parsing as memcached does it (`safe_strtoul`, `safe_strtol`,
//! `safe_strtoull`: C's strtoul family, then a check of what follows), so
//! that rend accepts and refuses the same tokens. Where memcached silently
//! truncates (flags beyond 32 bits, exptimes and lengths beyond a signed
//! 32-bit integer) rend refuses instead (DESIGN §2).

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// strtoul/strtol's scan: leading white space, an optional sign, decimal
/// digits, then white space or the end. Returns the sign and the magnitude,
/// or `None` when there are no digits, something else follows them, or the
/// magnitude overflows a u64 (ERANGE).
fn scan(token: &[u8]) -> Option<(bool, u64)> {
    let mut i = 0;
    while i < token.len() && is_c_space(token[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < token.len() && (token[i] == b'+' || token[i] == b'-') {
        negative = token[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut value: u64 = 0;
    while i < token.len() && token[i].is_ascii_digit() {
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(token[i] - b'0'))?;
        i += 1;
    }
    if i == start {
        return None;
    }
    if i < token.len() && !is_c_space(token[i]) {
        return None;
    }
    Some((negative, value))
}

/// `safe_strtoull`: an unsigned 64-bit number. A minus sign is accepted only
/// where the negated result still looks non-negative as a signed number
/// (so `-0` is 0, `-5` is refused), as memcached does.
pub fn parse_u64(token: &[u8]) -> Option<u64> {
    let (negative, magnitude) = scan(token)?;
    let value = if negative {
        magnitude.wrapping_neg()
    } else {
        magnitude
    };
    if negative && (value as i64) < 0 {
        return None;
    }
    Some(value)
}

/// `safe_strtoul` for a 32-bit field, refusing values memcached would
/// truncate.
pub fn parse_u32(token: &[u8]) -> Option<u32> {
    parse_u64(token).and_then(|v| u32::try_from(v).ok())
}

/// `safe_strtol` into a signed 32-bit field, refusing values memcached would
/// wrap.
pub fn parse_i32(token: &[u8]) -> Option<i32> {
    let (negative, magnitude) = scan(token)?;
    let value = if negative {
        0i64.checked_sub_unsigned(magnitude)?
    } else {
        i64::try_from(magnitude).ok()?
    };
    i32::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_table() {
        let cases: &[(&[u8], Option<u64>)] = &[
            (b"0", Some(0)),
            (b"42", Some(42)),
            (b"+7", Some(7)),
            (b"-0", Some(0)),
            (b"-5", None),
            (b"", None),
            (b"abc", None),
            (b"12abc", None),
            (b"12\t", Some(12)),
            (b"\t12", Some(12)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
        ];
        for (token, want) in cases {
            assert_eq!(
                parse_u64(token),
                *want,
                "{:?}",
                String::from_utf8_lossy(token)
            );
        }
    }

    #[test]
    fn u32_edges() {
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u32(b"-1"), None);
    }

    #[test]
    fn i32_edges() {
        assert_eq!(parse_i32(b"2147483647"), Some(i32::MAX));
        assert_eq!(parse_i32(b"2147483648"), None);
        assert_eq!(parse_i32(b"-2147483648"), Some(i32::MIN));
        assert_eq!(parse_i32(b"-2147483649"), None);
        assert_eq!(parse_i32(b"-1"), Some(-1));
        assert_eq!(parse_i32(b"1x"), None);
        assert_eq!(parse_i32(b"99999999999999999999"), None);
    }
}
