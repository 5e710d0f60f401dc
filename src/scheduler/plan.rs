//! The scheduler's timing decisions as plain functions: when a job it loads is next due and
//! which runs the load itself queues (catch-up and restart runs), which ticks were missed while
//! it was down, and when a failed run is retried.

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

/// What a job's `missed` column asks for the ticks missed while the scheduler was down.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Missed {
    /// None run.
    Skip,
    /// The latest runs once.
    Once,
    /// Each runs in turn, at most the parameter `max_missed_runs` (the latest ones).
    All,
}

impl Missed {
    /// From `job.missed` (its CHECK allows only these).
    pub fn parse(text: &str) -> Missed {
        match text {
            "once" => Missed::Once,
            "all" => Missed::All,
            _ => Missed::Skip,
        }
    }
}

/// What the scheduler knew of a job before it loaded the job list again.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Known {
    /// Not seen before: just created, or the scheduler has just started.
    New,
    /// Seen, with the same schedule and time zone: it keeps its next tick.
    Unchanged { next_due: Option<DateTime<Utc>> },
    /// Seen, with another schedule or time zone.
    Changed,
}

/// A job as it was loaded.
pub struct Loaded<'a> {
    pub schedule: &'a Schedule,
    pub zone: Tz,
    pub created_at: DateTime<Utc>,
    /// The due time of its newest scheduled (not manual) run, if any.
    pub last_due: Option<DateTime<Utc>>,
    pub missed: Missed,
}

/// When a loaded job is next due, and which runs the load queues for it.
#[derive(Debug, PartialEq, Eq)]
pub struct LoadPlan {
    pub next_due: Option<DateTime<Utc>>,
    /// `@reboot`/`@restart`: one run now.
    pub restart_run: bool,
    /// Missed ticks to run now, oldest first.
    pub catch_up: Vec<DateTime<Utc>>,
    /// How many ticks were missed in all (more than `catch_up` when the cap cut them).
    pub missed: usize,
}

/// Decides a loaded job's next tick. A known job keeps its next tick unless its schedule or
/// time zone changed. A new job is due from its creation (so a job created just before a tick
/// gets it), except on the scheduler's first load after a (re)start: then it is due from now,
/// `@reboot`/`@restart` runs once, as pg_cron's launcher runs them, and its `missed` policy
/// decides about the ticks missed while the scheduler was down (at most `max_missed` of them).
pub fn plan_load(known: Known, first_load: bool, job: &Loaded, max_missed: usize, now: DateTime<Utc>) -> LoadPlan {
    let mut plan = LoadPlan { next_due: None, restart_run: false, catch_up: Vec::new(), missed: 0 };
    match known {
        Known::Unchanged { next_due } => plan.next_due = next_due,
        Known::Changed => plan.next_due = job.schedule.next_after(now, job.zone),
        Known::New if first_load && *job.schedule == Schedule::AtStart => plan.restart_run = true,
        Known::New if first_load => {
            let cap = match job.missed {
                Missed::Skip => 0,
                Missed::Once => 1,
                Missed::All => max_missed,
            };
            if cap > 0 {
                (plan.catch_up, plan.missed) = missed_ticks(job.schedule, job.last_due.unwrap_or(job.created_at), now, job.zone, cap);
            }
            plan.next_due = job.schedule.next_after(now, job.zone);
        }
        Known::New => plan.next_due = job.schedule.next_after(job.created_at.min(now), job.zone),
    }
    plan
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
        assert_eq!(missed_ticks(&hourly, at(9, 0, 0), at(12, 30, 0), Tz::UTC, 1), (vec![at(12, 0, 0)], 3));
        assert_eq!(missed_ticks(&hourly, at(9, 0, 0), at(12, 30, 0), Tz::UTC, 10), (vec![at(10, 0, 0), at(11, 0, 0), at(12, 0, 0)], 3));
        // Nothing missed: the next tick is still ahead.
        assert_eq!(missed_ticks(&hourly, at(12, 0, 0), at(12, 30, 0), Tz::UTC, 10), (vec![], 0));
        let never = Schedule::parse("0 0 30 2 *").unwrap();
        assert_eq!(missed_ticks(&never, at(9, 0, 0), at(12, 30, 0), Tz::UTC, 10), (vec![], 0));
    }

    fn loaded(schedule: &Schedule, missed: Missed, last_due: Option<DateTime<Utc>>) -> Loaded<'_> {
        Loaded { schedule, zone: Tz::UTC, created_at: at(8, 0, 0), last_due, missed }
    }

    #[test]
    fn a_known_job_keeps_its_next_tick_unless_its_schedule_changed() {
        let hourly = Schedule::parse("0 * * * *").unwrap();
        let job = loaded(&hourly, Missed::All, None);
        let kept = plan_load(Known::Unchanged { next_due: Some(at(13, 0, 0)) }, false, &job, 60, at(12, 30, 0));
        assert_eq!(kept, LoadPlan { next_due: Some(at(13, 0, 0)), restart_run: false, catch_up: vec![], missed: 0 });
        let changed = plan_load(Known::Changed, true, &job, 60, at(12, 30, 0));
        assert_eq!(changed.next_due, Some(at(13, 0, 0)));
        assert!(changed.catch_up.is_empty(), "a known job has no catch-up runs");
    }

    #[test]
    fn a_job_created_while_the_scheduler_runs_is_due_from_its_creation() {
        let every_minute = Schedule::parse("* * * * *").unwrap();
        let job = Loaded { created_at: at(12, 29, 59), ..loaded(&every_minute, Missed::All, None) };
        // Loaded a second after the 12:30 tick it was created for: it still gets that tick.
        let plan = plan_load(Known::New, false, &job, 60, at(12, 30, 1));
        assert_eq!(plan, LoadPlan { next_due: Some(at(12, 30, 0)), restart_run: false, catch_up: vec![], missed: 0 });
    }

    #[test]
    fn at_start_each_missed_policy_decides_about_the_downtime() {
        let hourly = Schedule::parse("0 * * * *").unwrap();
        let now = at(12, 30, 0);
        let plan = |missed| plan_load(Known::New, true, &loaded(&hourly, missed, Some(at(9, 0, 0))), 2, now);
        assert_eq!(plan(Missed::Skip), LoadPlan { next_due: Some(at(13, 0, 0)), restart_run: false, catch_up: vec![], missed: 0 });
        assert_eq!(plan(Missed::Once).catch_up, vec![at(12, 0, 0)]);
        // At most max_missed (2) of the three missed ticks, the latest, and the count of all.
        let all = plan(Missed::All);
        assert_eq!((all.catch_up, all.missed), (vec![at(11, 0, 0), at(12, 0, 0)], 3));
        // Never run before: missed since its creation.
        let fresh = plan_load(Known::New, true, &loaded(&hourly, Missed::Once, None), 60, now);
        assert_eq!((fresh.catch_up, fresh.missed), (vec![at(12, 0, 0)], 4));
        assert_eq!(Missed::parse("all"), Missed::All);
        assert_eq!(Missed::parse("skip"), Missed::Skip);
    }

    #[test]
    fn reboot_jobs_run_once_when_the_scheduler_starts_and_never_by_the_clock() {
        let reboot = Schedule::parse("@reboot").unwrap();
        let job = loaded(&reboot, Missed::Skip, None);
        assert_eq!(plan_load(Known::New, true, &job, 60, at(12, 30, 0)), LoadPlan { next_due: None, restart_run: true, catch_up: vec![], missed: 0 });
        assert!(!plan_load(Known::New, false, &job, 60, at(12, 30, 0)).restart_run);
    }
}
