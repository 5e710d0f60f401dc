//! Retry timing shared by the scheduler (failed cron runs) and the job engine (failed stages):
//! exponential backoff, capped, with optional jitter and a server's `Retry-After` as a floor.

use std::time::Duration;

/// Longest wait before a retry, however large the base and the attempt number grow.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Most jitter added to a stage's backoff, as a fraction of it: retries of work that failed
/// together (an outage) spread out instead of arriving together again.
pub const JITTER_FRACTION: f64 = 0.25;

/// `base · 2^(attempt − 1)` for attempt ≥ 1, capped at [`MAX_RETRY_DELAY`].
pub fn exponential(base: Duration, attempt: i32) -> Duration {
    let doublings = attempt.clamp(1, 31) as u32 - 1;
    base.checked_mul(1 << doublings.min(30))
        .filter(|d| *d <= MAX_RETRY_DELAY)
        .unwrap_or(MAX_RETRY_DELAY)
}

/// How long a stage waits before attempt `attempt + 1`, after attempt `attempt` failed:
/// the exponential backoff from `base`, stretched by `jitter` (a number in [0, 1)) times
/// [`JITTER_FRACTION`], and never sooner than a `Retry-After` the failure reported.
pub fn stage_retry_delay(base: Duration, attempt: i32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    let backoff = exponential(base, attempt).mul_f64(1.0 + JITTER_FRACTION * jitter.clamp(0.0, 1.0));
    let floor = retry_after.unwrap_or(Duration::ZERO).min(MAX_RETRY_DELAY);
    backoff.min(MAX_RETRY_DELAY).max(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn backoff_doubles_per_attempt_and_stops_growing_at_a_day() {
        assert_eq!(exponential(10 * SECOND, 1), 10 * SECOND);
        assert_eq!(exponential(10 * SECOND, 2), 20 * SECOND);
        assert_eq!(exponential(10 * SECOND, 4), 80 * SECOND);
        assert_eq!(exponential(10 * SECOND, 30), MAX_RETRY_DELAY);
        assert_eq!(exponential(10 * SECOND, i32::MAX), MAX_RETRY_DELAY);
        assert_eq!(exponential(Duration::ZERO, 3), Duration::ZERO);
        // Attempt numbers below 1 are treated as the first attempt.
        assert_eq!(exponential(10 * SECOND, 0), 10 * SECOND);
    }

    #[test]
    fn jitter_only_ever_lengthens_the_wait_and_by_at_most_a_quarter() {
        assert_eq!(stage_retry_delay(4 * SECOND, 2, None, 0.0), 8 * SECOND);
        assert_eq!(stage_retry_delay(4 * SECOND, 2, None, 0.5), 9 * SECOND);
        assert_eq!(stage_retry_delay(4 * SECOND, 2, None, 1.0), 10 * SECOND);
        assert_eq!(stage_retry_delay(4 * SECOND, 2, None, 7.0), 10 * SECOND);
        assert_eq!(stage_retry_delay(4 * SECOND, 40, None, 0.9), MAX_RETRY_DELAY);
    }

    #[test]
    fn retry_after_is_a_floor_not_a_replacement() {
        // The server asks for more than the backoff: wait as asked.
        assert_eq!(stage_retry_delay(SECOND, 1, Some(3 * SECOND), 0.0), 3 * SECOND);
        // The backoff is already longer: keep it.
        assert_eq!(stage_retry_delay(SECOND, 4, Some(3 * SECOND), 0.0), 8 * SECOND);
        // A Retry-After of a week is capped like any delay.
        assert_eq!(stage_retry_delay(SECOND, 1, Some(7 * 24 * 3600 * SECOND), 0.0), MAX_RETRY_DELAY);
    }
}
