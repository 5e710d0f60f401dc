//! The run store: every read and write of `job_run_details` rows, as pg_cron's
//! `job_metadata.c` keeps them apart from its launcher. A row is a run, and its status is a
//! state machine; each transition is written here, by one side:
//!
//! ```text
//!   run_job_now / scheduler           runner                        scheduler
//!   Starting ───────────────────────► Running ────────────────────► Succeeded | Failed | Cancelled
//!      │  queued: the scheduler's queue survives its restarts
//!      ├──► Skipped    a tick came while the job's previous run went on
//!      ├──► Cancelled  cancel_run() before a runner took it
//!      └──► Failed     a runner could not start, the role or database is gone, recovery
//!   Running ──► Failed  recovery after a restart or promotion; the sweeper while the scheduler is down
//! ```
//!
//! pg_cron's `sending` and `connecting` exist in the table's CHECK for its users' queries; the
//! scheduler never writes them (its runners need no connection) but treats them as unfinished.

use crate::worker::{in_transaction, query_json};
use chrono::{DateTime, Utc};
use pgrx::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{HashMap, HashSet};

/// A run's status, as `job_run_details.status` spells it (pg_cron's `CronStatus`).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Starting,
    Running,
    Sending,
    Connecting,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

impl RunStatus {
    /// The status a `job_run_details.status` value names (its CHECK allows no other).
    fn parse(text: &str) -> Option<RunStatus> {
        serde_json::from_value(json!(text)).ok()
    }
}

/// Why a run was started, as `job_run_details.run_reason` spells it.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum RunReason {
    /// Its job's schedule came due.
    Schedule,
    /// `run_job_now()`.
    Manual,
    /// A later attempt of a failed run.
    Retry,
    /// A tick missed while the scheduler was down (`missed` = once or all).
    CatchUp,
    /// `@reboot`/`@restart`: the scheduler (re)started.
    Restart,
}

/// A queued run: a `job_run_details` row in status `starting`.
#[derive(Deserialize, Clone, Debug)]
pub struct Run {
    pub runid: i64,
    pub jobid: i64,
    pub database: String,
    pub username: String,
    pub due_time: DateTime<Utc>,
    pub attempt: i32,
    pub run_reason: RunReason,
}

impl Run {
    /// The database and role, by name, that the run's runner connects as.
    pub fn pool_key(&self) -> (String, String) {
        (self.database.clone(), self.username.clone())
    }
}

/// A row to insert: a queued run (`Starting`) or a tick recorded `Skipped`.
#[derive(Serialize, Clone)]
pub struct NewRun {
    pub jobid: i64,
    pub status: RunStatus,
    pub message: Option<String>,
    pub due_time: DateTime<Utc>,
    pub attempt: i32,
    pub run_reason: RunReason,
    /// For retries, the run retried (its database, role and command are reused).
    pub retry_of: Option<i64>,
}

impl NewRun {
    /// Attempt 1 of `jobid`, queued for `due` for `reason`.
    pub fn queued(jobid: i64, due: DateTime<Utc>, reason: RunReason) -> NewRun {
        NewRun { jobid, status: RunStatus::Starting, message: None, due_time: due, attempt: 1, run_reason: reason, retry_of: None }
    }
}

/// A change to a run's row.
#[derive(Serialize, Clone)]
pub struct RunUpdate {
    pub runid: i64,
    pub status: RunStatus,
    pub job_pid: Option<i32>,
    pub message: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    /// Delete the row instead (`pageperfect.run_log`).
    pub forget: bool,
}

impl RunUpdate {
    /// The run's row is to say `status`; the other fields are set as the change has them.
    pub fn to(runid: i64, status: RunStatus) -> RunUpdate {
        RunUpdate { runid, status, job_pid: None, message: None, start_time: None, end_time: None, forget: false }
    }

    /// Folds a later change to the same run into this one.
    pub fn merge(&mut self, later: RunUpdate) {
        self.status = later.status;
        self.job_pid = later.job_pid.or(self.job_pid);
        self.message = later.message.or(self.message.take());
        self.start_time = later.start_time.or(self.start_time);
        self.end_time = later.end_time.or(self.end_time);
        self.forget = later.forget;
    }
}

/// Inserts `runs` (the database, role and command come from the job, or from the run a retry
/// retries) and returns those queued (`Starting`). A run whose job is gone gets no row.
pub fn insert(runs: &[NewRun]) -> Result<Vec<Run>, String> {
    query_json(
        "WITH r AS (
            SELECT r.*, j.database AS job_database, j.username AS job_username, j.command AS job_command,
                   p.database AS retry_database, p.username AS retry_username, p.command AS retry_command
              FROM jsonb_to_recordset($1) AS r(jobid bigint, status text, message text, due_time timestamptz,
                                               attempt int, run_reason text, retry_of bigint)
              LEFT JOIN pageperfect.job j ON j.jobid = r.jobid
              LEFT JOIN pageperfect.job_run_details p ON p.runid = r.retry_of),
         i AS (
            INSERT INTO pageperfect.job_run_details
                   (jobid, database, username, command, status, return_message, due_time, attempt, run_reason, end_time)
            SELECT jobid, coalesce(retry_database, job_database), coalesce(retry_username, job_username),
                   coalesce(retry_command, job_command), status, message, due_time, attempt, run_reason,
                   CASE WHEN status = 'skipped' THEN clock_timestamp() END
              FROM r WHERE coalesce(retry_command, job_command) IS NOT NULL
            RETURNING runid, jobid, database, username, due_time, attempt, run_reason, status)
         SELECT coalesce(jsonb_agg(i), '[]') FROM i WHERE status = 'starting'",
        Some(serde_json::to_value(runs).map_err(|e| e.to_string())?),
    )
}

/// Writes run updates, deleting the rows of forgotten runs, and returns the runids done. Rows
/// another session holds locked are left for the next tick instead of waited for.
pub fn write(updates: &[RunUpdate]) -> Result<HashSet<i64>, String> {
    let skipped: Vec<i64> = query_json(
        "WITH u AS (SELECT * FROM jsonb_to_recordset($1) AS u(runid bigint, status text, job_pid int, message text,
                                                          start_time timestamptz, end_time timestamptz, forget boolean)),
              locked AS (SELECT d.runid FROM pageperfect.job_run_details d JOIN u ON d.runid = u.runid
                           FOR UPDATE OF d SKIP LOCKED),
              forgotten AS (DELETE FROM pageperfect.job_run_details d USING u
                             WHERE d.runid = u.runid AND u.forget AND d.runid IN (SELECT runid FROM locked)),
              updated AS (
                UPDATE pageperfect.job_run_details d
                   SET status = u.status,
                       job_pid = coalesce(u.job_pid, d.job_pid),
                       return_message = coalesce(u.message, d.return_message),
                       start_time = coalesce(u.start_time, d.start_time),
                       end_time = coalesce(u.end_time, d.end_time),
                       backend_start = coalesce(d.backend_start,
                           (SELECT a.backend_start FROM pg_catalog.pg_stat_activity a WHERE a.pid = u.job_pid))
                  FROM u
                 WHERE d.runid = u.runid AND NOT u.forget AND d.runid IN (SELECT runid FROM locked))
         SELECT coalesce(jsonb_agg(u.runid), '[]') FROM u
          WHERE u.runid NOT IN (SELECT runid FROM locked)
            AND EXISTS (SELECT FROM pageperfect.job_run_details d WHERE d.runid = u.runid)",
        Some(serde_json::to_value(updates).map_err(|e| e.to_string())?),
    )?;
    Ok(updates.iter().map(|u| u.runid).filter(|runid| !skipped.contains(runid)).collect())
}

/// Runs queued by SQL (`run_job_now`) or by an earlier scheduler that this process does not know.
pub fn queued_except(known: &[i64]) -> Result<Vec<Run>, String> {
    query_json(
        "SELECT coalesce(jsonb_agg(d ORDER BY d.due_time, d.runid), '[]')
           FROM (SELECT runid, jobid, database, username, coalesce(due_time, now()) AS due_time, attempt, run_reason
                   FROM pageperfect.job_run_details
                  WHERE status = 'starting' AND job_pid IS NULL AND command IS NOT NULL
                    AND runid <> ALL (ARRAY(SELECT jsonb_array_elements_text($1)::bigint))) d",
        Some(json!(known)),
    )
}

/// A run that had not finished when the scheduler (re)started.
#[derive(Deserialize)]
pub struct Unfinished {
    #[serde(flatten)]
    pub run: Run,
    /// Queued and never handed to a runner.
    pub never_started: bool,
}

/// Every run not finished, in due order.
pub fn unfinished() -> Result<Vec<Unfinished>, String> {
    query_json(
        "SELECT coalesce(jsonb_agg(d ORDER BY d.due_time, d.runid), '[]')
           FROM (SELECT runid, jobid, database, username,
                        coalesce(due_time, start_time, now()) AS due_time, attempt, run_reason,
                        status = 'starting' AND job_pid IS NULL AS never_started
                   FROM pageperfect.job_run_details
                  WHERE status IN ('starting', 'running', 'sending', 'connecting')) d",
        None,
    )
}

/// Reads the commands of the runs about to be handed out, by run id, one row each.
pub fn commands(runids: &[i64]) -> Result<HashMap<i64, String>, String> {
    in_transaction(|| {
        Spi::connect(|client| {
            let mut commands = HashMap::with_capacity(runids.len());
            let rows = client.select(
                "SELECT d.runid, d.command FROM pageperfect.job_run_details d
                  WHERE d.runid = ANY ($1) AND d.command IS NOT NULL AND d.status = 'starting'",
                None,
                &[runids.to_vec().into()],
            )?;
            for row in rows {
                if let (Some(runid), Some(command)) = (row.get::<i64>(1)?, row.get::<String>(2)?) {
                    commands.insert(runid, command);
                }
            }
            Ok::<_, pgrx::spi::Error>(commands)
        })
    })
}

/// The status of run `runid` if it belongs to `caller` (any run for a superuser).
pub fn status_for(runid: i64, caller: &str, superuser: bool) -> Result<Option<RunStatus>, pgrx::spi::Error> {
    let status = Spi::get_one_with_args::<String>(
        "SELECT (SELECT status FROM pageperfect.job_run_details WHERE runid = $1 AND (username = $2 OR $3))",
        &[runid.into(), caller.into(), superuser.into()],
    )?;
    Ok(status.as_deref().and_then(RunStatus::parse))
}

/// `cancel_run()` of a queued run no runner took: whether it was still queued.
pub fn cancel_queued(runid: i64) -> Result<bool, pgrx::spi::Error> {
    let cancelled = Spi::get_one_with_args::<i64>(
        "WITH c AS (UPDATE pageperfect.job_run_details
                       SET status = 'cancelled', end_time = clock_timestamp(), return_message = 'cancelled by cancel_run()'
                     WHERE runid = $1 AND status = 'starting' RETURNING runid)
         SELECT (SELECT runid FROM c)",
        &[runid.into()],
    )?;
    Ok(cancelled.is_some())
}

/// `run_job_now()`: queues a run of `username`'s job `job_name` due now; its runid, `None` when
/// there is no such job.
pub fn queue_manual(job_name: &str, username: &str) -> Result<Option<i64>, pgrx::spi::Error> {
    Spi::get_one_with_args::<i64>(
        "WITH i AS (INSERT INTO pageperfect.job_run_details (jobid, database, username, command, status, due_time, run_reason)
                    SELECT jobid, database, username, command, 'starting', clock_timestamp(), 'manual'
                      FROM pageperfect.job WHERE jobname = $1 AND username = $2
                    RETURNING runid)
         SELECT (SELECT runid FROM i)",
        &[job_name.into(), username.into()],
    )
}

/// The sweeper's part (`trigger_sweeper()`): while the scheduler is down nobody settles its
/// runs, so a run whose process is gone is failed. Returns how many.
fn fail_runs_of_vanished_processes() -> Result<i64, pgrx::spi::Error> {
    Spi::get_one::<i64>(
        "WITH gone AS (
            UPDATE pageperfect.job_run_details d
               SET status = 'failed', end_time = pg_catalog.clock_timestamp(),
                   return_message = 'the run''s process (pid ' || d.job_pid || ') is gone and the scheduler is down'
             WHERE d.status IN ('running', 'sending', 'connecting')
               AND d.job_pid IS NOT NULL
               AND NOT EXISTS (SELECT FROM pg_catalog.pg_stat_activity a
                                WHERE a.pid = d.job_pid AND a.backend_start IS NOT DISTINCT FROM coalesce(d.backend_start, a.backend_start))
               AND EXISTS (SELECT FROM pageperfect.worker_health() h WHERE h.component = 'scheduler' AND h.status = 'down')
            RETURNING 1)
         SELECT count(*) FROM gone",
    )
    .map(|count| count.unwrap_or(0))
}

#[pg_schema]
mod pageperfect {
    use pgrx::prelude::*;

    /// `trigger_sweeper()`'s part of cron: fails the runs whose process is gone while the
    /// scheduler is down; how many. Superusers only, as the sweeper.
    #[pg_extern(volatile)]
    fn fail_runs_of_vanished_processes() -> i64 {
        super::fail_runs_of_vanished_processes().unwrap_or_else(|e| error!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_change_to_a_run_wins_and_keeps_what_it_does_not_say() {
        let started = Utc::now();
        let mut running = RunUpdate { job_pid: Some(42), start_time: Some(started), ..RunUpdate::to(7, RunStatus::Running) };
        running.merge(RunUpdate { message: Some("1 row".into()), end_time: Some(started), ..RunUpdate::to(7, RunStatus::Succeeded) });
        assert_eq!(running.status, RunStatus::Succeeded);
        assert_eq!(running.job_pid, Some(42));
        assert_eq!(running.start_time, Some(started));
        assert_eq!(running.message.as_deref(), Some("1 row"));
        assert!(!running.forget);
    }

    #[test]
    fn new_runs_and_updates_go_to_sql_in_the_tables_words() {
        let due = DateTime::from_timestamp(0, 0).unwrap();
        let run = serde_json::to_value(NewRun::queued(3, due, RunReason::CatchUp)).unwrap();
        assert_eq!(run["status"], "starting");
        assert_eq!(run["run_reason"], "catch_up");
        let update = serde_json::to_value(RunUpdate::to(3, RunStatus::Cancelled)).unwrap();
        assert_eq!(update["status"], "cancelled");
        let read: Run = serde_json::from_value(json!({"runid": 1, "jobid": 3, "database": "d", "username": "u",
                                                      "due_time": due, "attempt": 1, "run_reason": "manual"}))
        .unwrap();
        assert_eq!(read.run_reason, RunReason::Manual);
        assert_eq!(RunStatus::parse("connecting"), Some(RunStatus::Connecting));
        assert_eq!(RunStatus::parse("done"), None);
    }
}
