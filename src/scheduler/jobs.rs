//! The scheduler's side of the `job` table: the active jobs it holds between reloads (each with
//! its next tick, `plan::plan_load` deciding it), and the counters of ticks skipped while a
//! job's previous run went on.

use super::cron::Schedule;
use super::plan::{plan_load, Known, Loaded, Missed};
use super::run_store::{NewRun, RunReason};
use crate::config;
use crate::worker::query_json;
use chrono::{DateTime, Duration as Span, Utc};
use chrono_tz::Tz;
use pgrx::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

/// A job as the scheduler holds it between reloads.
pub struct Job {
    schedule_text: String,
    pub schedule: Schedule,
    /// The job's timeout, and how the table spells it (for the run's message).
    pub timeout: Option<(Duration, String)>,
    pub max_attempts: i32,
    pub retry_backoff: Span,
    pub next_due: Option<DateTime<Utc>>,
    /// The job's own time zone (`None`: `pageperfect.timezone`), and the zone in effect.
    zone_name: Option<String>,
    pub zone: Tz,
    pub overlap: Overlap,
    /// A tick that came while the previous run went on, to run when it ends (`queue_one`,
    /// `cancel_previous`).
    pub queued_tick: Option<DateTime<Utc>>,
    /// The holder whose overrun was last logged: later skipped ticks of it are only counted.
    pub skip_logged_for: Option<Holder>,
}

/// What holds a job: while it is held, a tick of it is skipped (or waits, by its overlap policy).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Holder {
    /// A run queued in memory whose row is not inserted yet (a tick or a retry).
    Unrecorded,
    /// Run `runid`, queued or in flight.
    Run(i64),
}

/// As the scheduler's log names it.
impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Unrecorded => f.write_str("a queued run"),
            Holder::Run(runid) => write!(f, "run {runid}"),
        }
    }
}

/// What a tick does while the job's previous run goes on (`job.overlap`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Overlap {
    /// Counted and dropped.
    Skip,
    /// Run once when that run ends (pg_cron's way).
    QueueOne,
    /// That run is cancelled, then this one runs.
    CancelPrevious,
}

impl Overlap {
    fn parse(text: &str) -> Overlap {
        match text {
            "queue_one" => Overlap::QueueOne,
            "cancel_previous" => Overlap::CancelPrevious,
            _ => Overlap::Skip,
        }
    }
}

#[derive(Deserialize)]
struct JobRow {
    jobid: i64,
    schedule: String,
    timeout_us: Option<i64>,
    timeout_text: Option<String>,
    max_attempts: i32,
    retry_backoff_us: i64,
    missed: String,
    overlap: String,
    timezone: Option<String>,
    created_at: DateTime<Utc>,
    last_due: Option<DateTime<Utc>>,
}

/// The active jobs as the scheduler holds them, in the zone `pageperfect.timezone` names.
pub struct JobList {
    pub zone: Tz,
    pub jobs: HashMap<i64, Job>,
    /// The runs the load queues: catch-up and restart runs of a first load.
    pub runs: Vec<NewRun>,
}

/// Re-reads the active jobs. `previous` is what the scheduler held (in `previous_zone`);
/// `first_load` is true once after each (re)start of the scheduler.
pub fn load(previous: &HashMap<i64, Job>, previous_zone: Option<Tz>, first_load: bool, now: DateTime<Utc>) -> Result<JobList, String> {
    let default_zone = super::zone_from_setting()?;
    let default_changed = previous_zone != Some(default_zone);
    // The last due tick is read only when a first load needs it, by one index probe (the
    // newest non-manual run), whatever the length of the job's history.
    #[derive(Deserialize)]
    struct Rows {
        jobs: Vec<JobRow>,
        max_missed: Option<usize>,
        /// Active jobs of superusers, left out while `enable_superuser_jobs` is off.
        superusers_jobs: Vec<i64>,
    }
    let rows: Rows = query_json(
        "SELECT jsonb_build_object(
             'max_missed', (SELECT (p.value #>> '{}')::int FROM pageperfect.parameters p WHERE p.name = 'max_missed_runs'),
             'jobs', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                    'jobid', j.jobid, 'schedule', j.schedule,
                    'timeout_us', (extract(epoch FROM j.timeout) * 1000000)::bigint,
                    'timeout_text', j.timeout::text, 'max_attempts', j.max_attempts,
                    'retry_backoff_us', (extract(epoch FROM j.retry_backoff) * 1000000)::bigint,
                    'missed', j.missed, 'overlap', j.overlap, 'timezone', j.timezone, 'created_at', j.created_at,
                    'last_due', CASE WHEN ($1 ->> 'first_load')::boolean AND j.missed <> 'skip' THEN
                                    (SELECT d.due_time FROM pageperfect.job_run_details d
                                      WHERE d.jobid = j.jobid AND d.run_reason <> 'manual'
                                      ORDER BY d.runid DESC LIMIT 1) END)), '[]')
                        FROM pageperfect.job j
                       WHERE j.active AND (($1 ->> 'superuser_jobs')::boolean OR NOT pageperfect.runs_as_superuser(j))),
             'superusers_jobs', (SELECT coalesce(jsonb_agg(j.jobid), '[]') FROM pageperfect.job j
                                  WHERE NOT ($1 ->> 'superuser_jobs')::boolean AND j.active AND pageperfect.runs_as_superuser(j)))",
        Some(json!({ "first_load": first_load, "superuser_jobs": config::ENABLE_SUPERUSER_JOBS.get() })),
    )?;
    for jobid in &rows.superusers_jobs {
        warning!("skipping job {jobid} since superuser jobs are currently disallowed (pageperfect.enable_superuser_jobs is off)");
    }
    let max_missed = rows.max_missed.unwrap_or(60);
    let mut list = JobList { zone: default_zone, jobs: HashMap::with_capacity(rows.jobs.len()), runs: Vec::new() };
    for row in rows.jobs {
        let Ok(schedule) = Schedule::parse(&row.schedule) else {
            // The table refuses bad schedules; one could only come from an older engine.
            warning!("pageperfect scheduler: job {} has an invalid schedule \"{}\"; skipping it", row.jobid, row.schedule);
            continue;
        };
        let zone = match row.timezone.as_deref().map(|name| super::parse_zone(name, "timezone")) {
            Some(Ok(zone)) => zone,
            Some(Err(e)) => {
                // The table refuses unknown zones; the zone database may have lost one.
                warning!("pageperfect scheduler: job {}: {e}; using pageperfect.timezone", row.jobid);
                default_zone
            }
            None => default_zone,
        };
        let before = previous.get(&row.jobid);
        let known = match before {
            None => Known::New,
            Some(p) if p.schedule_text == row.schedule && p.zone_name == row.timezone && !(row.timezone.is_none() && default_changed) => {
                Known::Unchanged { next_due: p.next_due }
            }
            Some(_) => Known::Changed,
        };
        let missed = Missed::parse(&row.missed);
        let loaded = Loaded { schedule: &schedule, zone, created_at: row.created_at, last_due: row.last_due, missed };
        let plan = plan_load(known, first_load, &loaded, max_missed, now);
        if missed == Missed::All && plan.missed > plan.catch_up.len() {
            warning!(
                "pageperfect scheduler: job {} missed {}{} ticks while the scheduler was down; only the latest {} run (parameter max_missed_runs)",
                row.jobid,
                plan.missed,
                if plan.missed >= 86_400 { " or more" } else { "" },
                plan.catch_up.len()
            );
        }
        if plan.restart_run {
            list.runs.push(NewRun::queued(row.jobid, now, RunReason::Restart));
        }
        list.runs.extend(plan.catch_up.iter().map(|tick| NewRun::queued(row.jobid, *tick, RunReason::CatchUp)));
        list.jobs.insert(
            row.jobid,
            Job {
                schedule_text: row.schedule,
                schedule,
                timeout: row.timeout_us.zip(row.timeout_text).map(|(us, text)| (Duration::from_micros(us.max(0) as u64), text)),
                max_attempts: row.max_attempts,
                retry_backoff: Span::microseconds(row.retry_backoff_us),
                next_due: plan.next_due,
                zone_name: row.timezone,
                zone,
                overlap: Overlap::parse(&row.overlap),
                queued_tick: before.and_then(|p| p.queued_tick),
                skip_logged_for: before.and_then(|p| p.skip_logged_for),
            },
        );
    }
    Ok(list)
}

/// Ticks of a job skipped because its previous run was still going, not yet written to the job.
#[derive(Serialize, Clone, Copy)]
pub struct Skips {
    pub count: i64,
    pub last_at: DateTime<Utc>,
}

/// Adds the skipped ticks to their jobs' counters and returns the jobs done (a job another
/// session holds locked waits for the next tick; a job that is gone counts as done).
pub fn write_skips(skips: &HashMap<i64, Skips>) -> Result<Vec<i64>, String> {
    query_json(
        "WITH s AS (SELECT * FROM jsonb_each($1) AS e(jobid, skips)),
              locked AS (SELECT j.jobid FROM pageperfect.job j JOIN s ON j.jobid = s.jobid::bigint
                           FOR UPDATE OF j SKIP LOCKED),
              u AS (UPDATE pageperfect.job j
                       SET skipped_runs = j.skipped_runs + (s.skips ->> 'count')::bigint,
                           last_skipped_at = greatest(j.last_skipped_at, (s.skips ->> 'last_at')::timestamptz)
                      FROM s WHERE j.jobid = s.jobid::bigint AND j.jobid IN (SELECT jobid FROM locked)
                     RETURNING j.jobid)
         SELECT coalesce(jsonb_agg(s.jobid::bigint), '[]') FROM s
          WHERE s.jobid::bigint NOT IN (SELECT jobid FROM pageperfect.job) OR s.jobid::bigint IN (SELECT jobid FROM u)",
        Some(serde_json::to_value(skips).map_err(|e| e.to_string())?),
    )
}
