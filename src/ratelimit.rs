//! Warnings that cannot flood the log: a failing backend fails every
//! request, but its warning is written at most once per interval, with the
//! number of occurrences it stood for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// One call site's limiter; meant to live in a `static`.
pub struct RateLimit {
    interval_ms: u64,
    /// Milliseconds since [`epoch`] of the last warning written (+1, so 0
    /// means never).
    last: AtomicU64,
    /// Occurrences since the last warning written.
    skipped: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl RateLimit {
    pub const fn new(interval_ms: u64) -> RateLimit {
        RateLimit {
            interval_ms,
            last: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a warning may be written now: `n` occurrences were
    /// held back since the last one. `None`: hold this one back.
    pub fn allow(&self) -> Option<u64> {
        let now = epoch().elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.interval_ms {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self
            .last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.skipped.swap(0, Ordering::Relaxed))
    }
}

/// A warning written at most once per `$limit`'s interval:
/// `warn_limited!(LIMIT, tier = "L1", "text {}", x)`; the number held back
/// is logged as `suppressed`.
#[macro_export]
macro_rules! warn_limited {
    ($limit:expr, $($rest:tt)+) => {
        if let Some(suppressed) = $limit.allow() {
            tracing::warn!(suppressed, $($rest)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_interval_counting_the_rest() {
        let l = RateLimit::new(200);
        assert_eq!(l.allow(), Some(0));
        for _ in 0..5 {
            assert_eq!(l.allow(), None);
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
        assert_eq!(l.allow(), Some(5));
        assert_eq!(l.allow(), None);
    }
}
