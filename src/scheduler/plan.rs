//! The scheduler's timing decisions as plain functions: whether a run was missed while the
//! scheduler was down, and when a failed run is retried.

use super::cron::Schedule;
use crate::backoff::exponential;
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

/// The ticks the scheduler missed while it was down: those after `last_due` (the last tick that
/// got a run, or the job's creation) and before `now`. At most `cap`, the latest ones, with how
/// many were missed in all (counting stops at `MAX_COUNTED`).
pub fn missed_ticks(schedule: &Schedule, last_due: DateTime<Utc>, now: DateTime<Utc>, zone: Tz, cap: usize) -> (Vec<DateTime<Utc>>, usize) {
    let mut kept = std::collections::VecDeque::with_capacity(cap.min(1024));
    let mut missed = 0;
    let mut cursor = last_due;
    while let Some(tick) = schedule.next_after(cursor, zone).filter(|tick| *tick < now) {
        missed += 1;
        if kept.len() == cap {
            kept.pop_front();
        }
        if cap > 0 {
            kept.push_back(tick);
        }
        if missed == MAX_COUNTED {
            break;
        }
        cursor = tick;
    }
    (kept.into(), missed)
}

/// How many missed ticks `missed_ticks` counts at most (a day of a one-second job).
const MAX_COUNTED: usize = 86_400;

/// When attempt `attempt + 1` of a run that failed at `failed_at` is due:
/// `backoff · 2^(attempt − 1)` later, capped at a day.
pub fn retry_due(failed_at: DateTime<Utc>, backoff: Duration, attempt: i32) -> DateTime<Utc> {
    let delay = exponential(backoff.to_std().unwrap_or_default(), attempt);
    failed_at + Duration::from_std(delay).unwrap_or(Duration::days(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, h, m, s).unwrap()
    }

    #[test]
    fn retries_double_from_the_backoff_and_stop_growing_at_a_day() {
        let backoff = Duration::seconds(10);
        assert_eq!(retry_due(at(12, 0, 0), backoff, 1), at(12, 0, 10));
        assert_eq!(retry_due(at(12, 0, 0), backoff, 2), at(12, 0, 20));
        assert_eq!(retry_due(at(12, 0, 0), backoff, 4), at(12, 1, 20));
        assert_eq!(retry_due(at(12, 0, 0), backoff, 30), at(12, 0, 0) + Duration::days(1));
        assert_eq!(retry_due(at(12, 0, 0), Duration::zero(), 3), at(12, 0, 0));
    }

    #[test]
    fn a_tick_missed_during_downtime_is_found_once() {
        let hourly = Schedule::parse("0 * * * *").unwrap();
        // Last run at 09:00, scheduler back at 12:30: 10:00 is the (single) catch-up tick.
        assert_eq!(missed_ticks(&hourly, at(9, 0, 0), at(12, 30, 0), Tz::UTC, 1), (vec![at(12, 0, 0)], 3));
        assert_eq!(missed_ticks(&hourly, at(9, 0, 0), at(12, 30, 0), Tz::UTC, 10), (vec![at(10, 0, 0), at(11, 0, 0), at(12, 0, 0)], 3));
        // Nothing missed: the next tick is still ahead.
        assert_eq!(missed_ticks(&hourly, at(12, 0, 0), at(12, 30, 0), Tz::UTC, 10), (vec![], 0));
        let never = Schedule::parse("0 0 30 2 *").unwrap();
        assert_eq!(missed_ticks(&never, at(9, 0, 0), at(12, 30, 0), Tz::UTC, 10), (vec![], 0));
    }
}
