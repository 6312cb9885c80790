//! memcached's rules for time, in one place: the 30-day cut-off between a
//! relative and an absolute exptime, the conversion to one absolute time,
//! what expired means, the binary protocol's form of an exptime, and "now"
//! (Unix seconds, as memcached's clock counts them).

use std::time::{SystemTime, UNIX_EPOCH};

/// memcached's cut-off (`REALTIME_MAXDELTA`): a larger exptime is an
/// absolute Unix time.
pub const THIRTY_DAYS: i64 = 60 * 60 * 24 * 30;

/// The current Unix time in seconds.
pub fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

/// A client exptime as one absolute time: 0 stays 0 (never), up to 30 days
/// is relative to `now`, above is already absolute, negative is expired
/// (returned as -1). Every tier (and every chunk of a value) is given this
/// value so they all expire the item at the same second.
pub fn absolute(exptime: i64, now: u32) -> i64 {
    if exptime < 0 {
        -1
    } else if exptime > 0 && exptime <= THIRTY_DAYS {
        i64::from(now) + exptime
    } else {
        exptime
    }
}

/// memcached's rule: an item with an expiry at or before now is gone.
pub fn is_expired(expiry: u32, now: u32) -> bool {
    expiry != 0 && expiry <= now
}

/// An exptime as the binary protocol carries it: negative means already
/// expired, which memcached's text protocol turns into an absolute time
/// just past 30 days (a time long gone).
pub fn to_wire(exptime: i64) -> u32 {
    if exptime < 0 {
        THIRTY_DAYS as u32 + 1
    } else {
        u32::try_from(exptime).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exptimes_become_one_absolute_time() {
        assert_eq!(absolute(0, 1000), 0);
        assert_eq!(absolute(10, 1000), 1010);
        assert_eq!(absolute(THIRTY_DAYS, 1000), 1000 + THIRTY_DAYS);
        assert_eq!(absolute(THIRTY_DAYS + 1, 1000), THIRTY_DAYS + 1);
        assert_eq!(absolute(-5, 1000), -1);
        assert!(is_expired(1000, 1000) && !is_expired(0, 1000) && !is_expired(1001, 1000));
        assert_eq!(to_wire(-1), 2_592_001);
        assert_eq!(to_wire(7), 7);
        assert_eq!(to_wire(i64::MAX), u32::MAX);
    }
}
