//! The scheduler's timing decisions as plain functions: whether a run was missed while the
//! scheduler was down, and when a failed run is retried.

use super::cron::Schedule;
use crate::backoff::exponential;
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

/// The tick a catch-up run stands for: the first one after `last_due` (the last tick that got
/// a run, or the job's creation) that is before `now`, if the scheduler missed any.
pub fn missed_tick(schedule: &Schedule, last_due: DateTime<Utc>, now: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
    schedule.next_after(last_due, zone).filter(|tick| *tick < now)
}

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
        assert_eq!(missed_tick(&hourly, at(9, 0, 0), at(12, 30, 0), Tz::UTC), Some(at(10, 0, 0)));
        // Nothing missed: the next tick is still ahead.
        assert_eq!(missed_tick(&hourly, at(12, 0, 0), at(12, 30, 0), Tz::UTC), None);
        let never = Schedule::parse("0 0 30 2 *").unwrap();
        assert_eq!(missed_tick(&never, at(9, 0, 0), at(12, 30, 0), Tz::UTC), None);
    }
}
