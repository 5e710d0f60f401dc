//! The scheduler owns cron: the `job` and `job_run_details` tables (and pg_cron's `cron.job`,
//! `cron.job_run_details` names for them), parsing and evaluating cron schedules (`cron`, pure
//! Rust), and the scheduler background worker that starts each due run in its own backend as
//! the job's user. As pg_cron splits `pg_cron.c` from `job_metadata.c`:
//!
//! - `dispatcher`: the worker's tick, handing due runs to runners, the runner pool;
//! - `jobs`: the active jobs it holds and their skip counters (the `job` table's side);
//! - `run_store`: every read and write of run rows, and the run's states;
//! - `recovery`: the unfinished runs found at a (re)start or after a promotion;
//! - `plan`: when a job is due, catch-up, retries (pure);
//! - `pool`, `runner`, `execute`, `slots`: who a runner connects as, the runner process and how
//!   it runs a command, and the shared memory between them;
//! - `api`: pg_cron's functions and pageperfect's own.

mod api;
pub mod cron;
pub mod dispatcher;
mod execute;
mod jobs;
mod plan;
mod pool;
mod recovery;
mod run_store;
pub mod runner;
pub mod slots;

use crate::{config, invalid_parameter};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use cron::Schedule;
use pgrx::prelude::*;

pgrx::extension_sql_file!("../../sql/scheduler.sql", name = "scheduler_schema");

pgrx::extension_sql_file!(
    "../../sql/scheduler_api.sql",
    name = "scheduler_api",
    requires = ["scheduler_schema", "monitor_schema", pageperfect::validate_schedule, pageperfect::validate_command, pageperfect::validate_timezone, pageperfect::next_runs, pageperfect::wake_scheduler, lifecycle::pageperfect::extension_version_advice]
);

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800 * 1_000_000;

/// A `TimestampTz` (microseconds since 2000-01-01) as chrono's UTC time.
fn from_pg_micros(micros: pg_sys::TimestampTz) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros + PG_EPOCH_OFFSET_MICROS).unwrap_or_default()
}

fn to_chrono(t: TimestampWithTimeZone) -> DateTime<Utc> {
    if !t.is_finite() {
        error!("timestamp {t} is out of range");
    }
    from_pg_micros(pg_sys::TimestampTz::from(t))
}

fn to_postgres(t: DateTime<Utc>) -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(t.timestamp_micros() - PG_EPOCH_OFFSET_MICROS)
        .unwrap_or_else(|_| error!("timestamp {t} is out of range"))
}

/// The IANA time zone `name`, or why it is not one (`what` names where it came from).
fn parse_zone(name: &str, what: &str) -> Result<Tz, String> {
    name.parse()
        .map_err(|_| format!("{what} \"{name}\" is not a known time zone (use an IANA name such as UTC or Europe/Berlin)"))
}

/// The zone of `pageperfect.timezone`, or why it is not one.
fn zone_from_setting() -> Result<Tz, String> {
    let name = config::string(&config::TIMEZONE).unwrap_or_else(|| "UTC".to_string());
    parse_zone(&name, "pageperfect.timezone")
}

/// A job's zone: its own `timezone`, else `pageperfect.timezone`; SQLSTATE 22023 when not one.
fn schedule_zone(timezone: Option<&str>) -> Tz {
    match timezone {
        Some(name) => parse_zone(name, "timezone"),
        None => zone_from_setting(),
    }
    .unwrap_or_else(|e| invalid_parameter(e))
}

/// Parses a schedule or raises SQLSTATE 22023 naming the bad field.
/// pg_cron's hint for a schedule it cannot read, word for word (clients match on it).
const SCHEDULE_HINT: &str = "Use cron format (e.g. 5 4 * * *), or interval format '[1-59] seconds'";

/// The schedule, or pg_cron's error (`invalid schedule: …` and its HINT, SQLSTATE 22023) with
/// what is wrong with which field as the DETAIL.
fn parse_schedule(schedule: &str) -> Schedule {
    Schedule::parse(schedule).unwrap_or_else(|e| {
        crate::raise_with(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.to_string(), Some(e.detail()), Some(SCHEDULE_HINT))
    })
}

#[pg_schema]
mod pageperfect {
    use super::*;

    /// Wakes the scheduler when the calling transaction commits (used by the job table's
    /// trigger); does nothing when pageperfect is not preloaded.
    #[pg_extern(volatile)]
    fn wake_scheduler() {
        crate::wakeup::wake_at_commit(crate::wakeup::Wake::Scheduler);
    }

    /// Raises SQLSTATE 22023 with the bad field and its text when `schedule` is not valid cron.
    #[pg_extern(immutable, parallel_safe)]
    fn validate_schedule(schedule: &str) {
        parse_schedule(schedule);
    }

    /// Raises SQLSTATE 54000 when `command` is longer than `pageperfect.max_command_bytes`: one
    /// huge command must not make every scheduler tick fail.
    #[pg_extern(stable, parallel_safe)]
    fn validate_command(command: &str) {
        let limit = config::MAX_COMMAND_BYTES.get();
        if command.len() > limit as usize {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                format!("the job's command is {} bytes long; the limit is {limit} bytes", command.len()),
                "A superuser can raise pageperfect.max_command_bytes; a long script is better kept in a procedure that the job calls."
            );
        }
    }

    /// Raises SQLSTATE 22023 when `timezone` is not an IANA time zone (NULL is: the setting's).
    #[pg_extern(immutable, parallel_safe)]
    fn validate_timezone(timezone: Option<&str>) {
        if let Some(name) = timezone {
            schedule_zone(Some(name));
        }
    }

    /// The next `count` fire times of `schedule` strictly after `after`, in `timezone` (NULL:
    /// `pageperfect.timezone`).
    #[pg_extern(stable, parallel_safe)]
    fn next_runs(
        schedule: &str,
        after: TimestampWithTimeZone,
        count: default!(i32, 1),
        timezone: default!(Option<&str>, "NULL"),
    ) -> SetOfIterator<'static, TimestampWithTimeZone> {
        if !(0..=100_000).contains(&count) {
            invalid_parameter("count must be between 0 and 100000");
        }
        let parsed = parse_schedule(schedule);
        let zone = schedule_zone(timezone);
        let mut cursor = to_chrono(after);
        let mut runs = Vec::with_capacity(count as usize);
        while runs.len() < count as usize {
            match parsed.next_after(cursor, zone) {
                Some(next) => {
                    runs.push(to_postgres(next));
                    cursor = next;
                }
                None => break,
            }
        }
        SetOfIterator::new(runs)
    }
}
