//! What the scheduler worker does each time it wakes (`Dispatcher::tick`): record the runs
//! that runners finished or started, cancel runs past their timeout, queue the runs that are
//! due (or record them `skipped` when the job's previous run is still going), and hand queued
//! runs to idle runners of the right role and database, starting runners as needed.
//!
//! All bookkeeping SQL of one tick is one short transaction; no transaction is open while
//! runs execute. What that transaction changes in the dispatcher's memory (runs queued, updates
//! written) is applied only after it commits, so a failed tick starts no run without a row and
//! forgets no update. A row another session has locked is skipped and its update kept for the
//! next tick; the workers' lock_timeout bounds every other wait. Commands never travel in the
//! tick's jsonb: runs are handed out by id and their commands read just before. `job_run_details` rows in status `starting` are the queue, so runs queued by
//! `run_job_now()` or retries survive a scheduler restart. On start the scheduler fails every
//! run it finds unfinished and not held by a live runner, as pg_cron does ("server restarted").

use super::cron::Schedule;
use super::plan::{missed_ticks, retry_due};
use super::runner;
use super::slots::{self, Shared, SlotState};
use super::from_pg_micros;
use crate::config::{self, RunLog};
use crate::worker::{in_transaction, query_json, Duty};
use chrono::{DateTime, Duration as Span, Utc};
use chrono_tz::Tz;
use pgrx::bgworkers::{BackgroundWorkerStatus, DynamicBackgroundWorker};
use pgrx::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The job list is re-read at least this often, besides at once when SQL changes it.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// After cancelling a run past its timeout, how long before its runner is terminated instead.
const CANCEL_GRACE: Duration = Duration::from_secs(5);
/// How often to look at runners that are still starting (their failure sends no wake-up).
const LAUNCH_POLL: Duration = Duration::from_millis(100);
/// How often runs with a timeout are checked against it.
const TIMEOUT_POLL: Duration = Duration::from_millis(100);

/// A job as the scheduler holds it between reloads.
struct Job {
    schedule_text: String,
    schedule: Schedule,
    timeout: Option<(Duration, String)>,
    max_attempts: i32,
    retry_backoff: Span,
    next_due: Option<DateTime<Utc>>,
    /// The job's own time zone (`None`: `pageperfect.timezone`), and the zone in effect.
    zone_name: Option<String>,
    zone: Tz,
    overlap: Overlap,
    /// A tick that came while the previous run went on, to run when it ends (`queue_one`,
    /// `cancel_previous`).
    queued_tick: Option<DateTime<Utc>>,
    /// The run whose overrun was last logged: later skipped ticks of it are only counted.
    skip_logged_for: Option<i64>,
}

/// What a tick does while the job's previous run goes on (`job.overlap`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Overlap {
    Skip,
    QueueOne,
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

/// A queued run: a `job_run_details` row in status `starting`.
#[derive(Deserialize, Clone, Debug)]
struct Run {
    runid: i64,
    jobid: i64,
    database: String,
    username: String,
    due_time: DateTime<Utc>,
    attempt: i32,
    run_reason: String,
}

impl Run {
    /// The database and role, by name, that the run's runner connects as.
    fn pool_key(&self) -> (String, String) {
        (self.database.clone(), self.username.clone())
    }
}

/// A run a runner holds.
struct InFlight {
    run: Run,
    segment: *mut pg_sys::dsm_segment,
    timeout: Option<(Duration, String)>,
    reported_running: bool,
    /// When the run was cancelled, and the status and message to record for it.
    cancelled: Option<(Instant, &'static str, String)>,
    interrupted: bool,
    terminated: bool,
}

/// A row to insert into `job_run_details`.
#[derive(Serialize, Clone)]
struct NewRun {
    jobid: i64,
    status: &'static str,
    message: Option<String>,
    due_time: DateTime<Utc>,
    attempt: i32,
    run_reason: &'static str,
    /// For retries, the run retried (its database, role and command are reused).
    retry_of: Option<i64>,
}

/// A change to a `job_run_details` row.
#[derive(Serialize, Clone, Default)]
struct RunUpdate {
    runid: i64,
    status: &'static str,
    job_pid: Option<i32>,
    message: Option<String>,
    start_time: Option<DateTime<Utc>>,
    end_time: Option<DateTime<Utc>>,
    /// Delete the row instead (`pageperfect.run_log`).
    forget: bool,
}

impl RunUpdate {
    /// Folds a later change to the same run into this one.
    fn merge(&mut self, later: RunUpdate) {
        self.status = later.status;
        self.job_pid = later.job_pid.or(self.job_pid);
        self.message = later.message.or(self.message.take());
        self.start_time = later.start_time.or(self.start_time);
        self.end_time = later.end_time.or(self.end_time);
        self.forget = later.forget;
    }
}

/// Ticks of a job skipped because its previous run was still going, not yet written to the job.
#[derive(Serialize, Clone, Copy)]
struct Skips {
    count: i64,
    last_at: DateTime<Utc>,
}

/// What was recovered after a (re)start.
enum Recovered {
    /// A live runner still holds the run (slot index).
    Held(usize, Run),
    /// Queued since the server started and never handed out: it waits again.
    Queued(Run),
    /// Recorded failed (the server restarted, or the primary changed): retried if its job allows.
    Failed(Run),
}

/// What a tick's transaction read and wrote, applied to the dispatcher once it has committed.
#[derive(Default)]
struct Synced {
    jobs: Option<(Tz, HashMap<i64, Job>)>,
    recovered: Option<Vec<Recovered>>,
    /// Runids whose update was written (others were locked by another session).
    written: HashSet<i64>,
    /// Jobs whose skip count was written.
    skips_written: Vec<i64>,
    /// The new runs tried (with the catch-up runs of a first load), and those inserted as queued.
    tried: Vec<NewRun>,
    inserted: Vec<Run>,
    queued: Vec<Run>,
    pools: HashMap<(String, String), Result<Pool, String>>,
}

/// A database and role, by OID, as runners connect.
type Pool = (pg_sys::Oid, pg_sys::Oid);

#[derive(Default)]
pub struct Dispatcher {
    recovered: bool,
    zone: Option<Tz>,
    jobs: HashMap<i64, Job>,
    loaded_generation: u64,
    loaded_at: Option<Instant>,
    /// Queued runs, in due order.
    pending: Vec<Run>,
    in_flight: HashMap<usize, InFlight>,
    /// The run (queued or in flight) that holds each job; a tick of a held job is skipped.
    /// 0 stands for a run not yet inserted.
    busy: HashMap<i64, i64>,
    launched: HashMap<usize, (Pool, DynamicBackgroundWorker)>,
    pools: HashMap<(String, String), Result<Pool, String>>,
    new_runs: Vec<NewRun>,
    updates: Vec<RunUpdate>,
    skips: HashMap<i64, Skips>,
    /// How many updates the last tick transaction left for later (their rows were locked).
    held_back: usize,
    warned_out_of_workers: bool,
    /// The last tick error logged and when: the same error repeats at most once a minute.
    last_warning: Option<(String, Instant)>,
}

impl Duty for Dispatcher {
    /// Does everything that is due and returns how long the scheduler may sleep.
    fn tick(&mut self) -> Duration {
        let Some(shared) = slots::shared() else {
            return RELOAD_INTERVAL;
        };
        let now = Utc::now();
        self.collect_slots(shared, now);
        self.enforce_timeouts(shared);
        self.queue_due_ticks(now);
        // Runners that just finished take queued runs before the bookkeeping transaction.
        self.dispatch(shared, now);

        let generation = shared.generation.load(Ordering::Acquire);
        let reload = !self.recovered
            || generation != self.loaded_generation
            || self.loaded_at.is_none_or(|at| at.elapsed() >= RELOAD_INTERVAL);
        let unresolved = self.pending.iter().any(|r| !self.pools.contains_key(&r.pool_key()));
        if reload || unresolved || !self.new_runs.is_empty() || !self.updates.is_empty() || !self.skips.is_empty() {
            let this = AssertUnwindSafe(&*self);
            let shared = AssertUnwindSafe(shared);
            match in_transaction(move || this.sync(&shared, reload, now)) {
                Ok(synced) => self.apply(synced, reload, generation),
                Err(e) => {
                    self.warn(format!("could not update its tables (will retry): {e}"));
                    return RELOAD_INTERVAL;
                }
            }
        }
        self.dispatch(shared, Utc::now());
        self.sleep_time(Utc::now())
    }

    fn busy(&self) -> bool {
        !self.in_flight.is_empty()
    }
}

impl Dispatcher {
    /// The scheduler process's dispatcher; from now on SQL and runners can wake this process.
    pub fn start() -> Dispatcher {
        if let Some(shared) = slots::shared() {
            shared.register_scheduler();
        }
        // Bookkeeping commits need not wait for the WAL flush: a crash can lose only the last
        // few status changes, and recovery then fails those runs ("server restarted") anyway.
        unsafe {
            pg_sys::SetConfigOption(
                c"synchronous_commit".as_ptr(),
                c"off".as_ptr(),
                pg_sys::GucContext::PGC_SUSET,
                pg_sys::GucSource::PGC_S_OVERRIDE,
            );
        }
        Dispatcher::default()
    }

    /// Logs a tick's problem, the same one at most once a minute (a lock held for long would
    /// otherwise log every second).
    fn warn(&mut self, message: String) {
        let repeated = self.last_warning.as_ref().is_some_and(|(last, at)| *last == message && at.elapsed() < Duration::from_secs(60));
        if !repeated {
            warning!("pageperfect scheduler: {message}");
            self.last_warning = Some((message, Instant::now()));
        }
    }

    /// Queues a change to a run's row, folded into one already queued for the same run.
    fn push_update(&mut self, update: RunUpdate) {
        match self.updates.iter_mut().find(|u| u.runid == update.runid) {
            Some(queued) => queued.merge(update),
            None => self.updates.push(update),
        }
    }

    /// Reads what runners did since the last tick.
    fn collect_slots(&mut self, shared: &Shared, now: DateTime<Utc>) {
        let indexes: Vec<usize> = self.in_flight.keys().copied().collect();
        for index in indexes {
            let slot = shared.slot(index);
            let state = slot.state();
            let flight = self.in_flight.get_mut(&index).expect("listed above");
            match state {
                SlotState::Assigned => {}
                SlotState::Running => {
                    if !flight.reported_running {
                        flight.reported_running = true;
                        let update = RunUpdate {
                            runid: flight.run.runid,
                            status: "running",
                            job_pid: Some(slot.pid.load(Ordering::Acquire)),
                            start_time: Some(from_pg_micros(slot.started_at.load(Ordering::Acquire))),
                            ..Default::default()
                        };
                        self.push_update(update);
                    }
                }
                SlotState::Done | SlotState::DoneExited => {
                    let flight = self.in_flight.remove(&index).expect("listed above");
                    let (status, message) = match flight.cancelled {
                        Some((_, status, message)) => (status, message),
                        None if slot.succeeded.load(Ordering::Acquire) => ("succeeded", slot.result_message()),
                        None => ("failed", slot.result_message()),
                    };
                    let started = slot.started_at.load(Ordering::Acquire);
                    self.finish(
                        &flight.run,
                        status,
                        message,
                        (started != 0).then(|| (slot.pid.load(Ordering::Acquire), from_pg_micros(started))),
                        from_pg_micros(slot.finished_at.load(Ordering::Acquire)),
                    );
                    if !flight.segment.is_null() {
                        unsafe { pg_sys::dsm_detach(flight.segment) };
                    }
                    let next = if state == SlotState::Done { SlotState::Idle } else { SlotState::Free };
                    slot.transition(state, next);
                }
                _ => {
                    let flight = self.in_flight.remove(&index).expect("listed above");
                    self.finish(&flight.run, "failed", "ERROR: the job's runner disappeared".into(), None, now);
                }
            }
        }

        let launched: Vec<usize> = self.launched.keys().copied().collect();
        for index in launched {
            let slot = shared.slot(index);
            let state = slot.state();
            let failed = match state {
                SlotState::Starting => {
                    let stopped = matches!(self.launched[&index].1.pid(), Err(BackgroundWorkerStatus::Stopped));
                    if !(stopped && slot.transition(SlotState::Starting, SlotState::Free)) {
                        continue;
                    }
                    true
                }
                SlotState::Free => true,
                _ => false,
            };
            let (pool, _) = self.launched.remove(&index).expect("listed above");
            if failed {
                self.fail_first_pending_of(pool, now);
            }
        }
    }

    /// A runner could not start (its role or database went away, or it hit an error while
    /// connecting): the oldest run waiting for that pool fails instead of waiting forever.
    fn fail_first_pending_of(&mut self, pool: Pool, now: DateTime<Utc>) {
        let position = self.pending.iter().position(|r| {
            matches!(self.pools.get(&r.pool_key()), Some(Ok(p)) if *p == pool)
        });
        if let Some(position) = position {
            let run = self.pending.remove(position);
            let message = format!(
                "ERROR: could not start a job runner as role \"{}\" in database \"{}\" (see the server log)",
                run.username, run.database
            );
            self.finish(&run, "failed", message, None, now);
        }
    }

    /// Records a run's end (`status`: succeeded, failed or cancelled), queues its retry when it
    /// failed and attempts remain, and otherwise the tick that waited for it (overlap policy).
    fn finish(&mut self, run: &Run, status: &'static str, message: String, started: Option<(i32, DateTime<Utc>)>, ended: DateTime<Utc>) {
        let forget = match config::RUN_LOG.get() {
            RunLog::All => false,
            RunLog::Failures => status == "succeeded",
            RunLog::Off => true,
        };
        self.push_update(RunUpdate {
            runid: run.runid,
            status,
            job_pid: started.map(|(pid, _)| pid),
            message: Some(message),
            start_time: started.map(|(_, at)| at),
            end_time: Some(ended),
            forget,
        });
        if self.busy.get(&run.jobid) == Some(&run.runid) {
            self.busy.remove(&run.jobid);
        }
        if status == "failed" {
            self.retry_if_allowed(run, ended);
        }
        if !self.busy.contains_key(&run.jobid) {
            if let Some(tick) = self.jobs.get_mut(&run.jobid).and_then(|job| job.queued_tick.take()) {
                self.queue_tick(run.jobid, tick);
            }
        }
    }

    /// Queues a scheduled run of `jobid` for `due`; the job is busy until its row exists.
    fn queue_tick(&mut self, jobid: i64, due: DateTime<Utc>) {
        self.busy.insert(jobid, 0);
        self.new_runs.push(NewRun {
            jobid,
            status: "starting",
            message: None,
            due_time: due,
            attempt: 1,
            run_reason: "schedule",
            retry_of: None,
        });
    }

    /// Queues the next attempt of a failed run when its job allows more.
    fn retry_if_allowed(&mut self, run: &Run, ended: DateTime<Utc>) {
        let Some(job) = self.jobs.get(&run.jobid) else { return };
        if run.attempt < job.max_attempts {
            self.new_runs.push(NewRun {
                jobid: run.jobid,
                status: "starting",
                message: None,
                due_time: retry_due(ended, job.retry_backoff, run.attempt),
                attempt: run.attempt + 1,
                run_reason: "retry",
                retry_of: Some(run.runid),
            });
            self.busy.insert(run.jobid, 0);
        }
    }

    /// Cancels runs past their job's timeout or marked cancelled (SIGINT, as pg_cancel_backend),
    /// and terminates the runner when the command ignores the cancel for `CANCEL_GRACE`.
    fn enforce_timeouts(&mut self, shared: &Shared) {
        let now_pg = unsafe { pg_sys::GetCurrentTimestamp() };
        for (index, flight) in self.in_flight.iter_mut() {
            let slot = shared.slot(*index);
            if slot.state() != SlotState::Running {
                continue;
            }
            let pid = slot.pid.load(Ordering::Acquire);
            let elapsed = Duration::from_micros((now_pg - slot.started_at.load(Ordering::Acquire)).max(0) as u64);
            if flight.cancelled.is_none() && slot.cancel_requested.load(Ordering::Acquire) {
                flight.cancelled = Some((Instant::now(), "cancelled", "cancelled by cancel_run()".to_string()));
            }
            if let (None, Some((limit, text))) = (&flight.cancelled, &flight.timeout) {
                if elapsed >= *limit {
                    flight.cancelled = Some((Instant::now(), "failed", format!("ERROR: job cancelled: it ran longer than its timeout of {text}")));
                }
            }
            match &flight.cancelled {
                Some(_) if !flight.interrupted => {
                    signal_runner(pid, libc::SIGINT);
                    flight.interrupted = true;
                }
                Some((at, _, _)) if !flight.terminated && at.elapsed() >= CANCEL_GRACE => {
                    signal_runner(pid, libc::SIGTERM);
                    flight.terminated = true;
                }
                _ => {}
            }
        }
    }

    /// Queues a run for every job whose next tick has come. A tick that comes while the job's
    /// previous run goes on follows the job's overlap policy: counted as skipped (logged once
    /// per such run), kept to run when that run ends, or that run is cancelled first.
    fn queue_due_ticks(&mut self, now: DateTime<Utc>) {
        // pageperfect.launch_active_jobs = off pauses the scheduler: ticks pass without runs.
        let launching = config::LAUNCH_ACTIVE_JOBS.get();
        let due_jobs: Vec<(i64, DateTime<Utc>)> = self
            .jobs
            .iter_mut()
            .filter_map(|(jobid, job)| {
                let due = job.next_due.filter(|due| *due <= now)?;
                job.next_due = job.schedule.next_after(now, job.zone);
                launching.then_some((*jobid, due))
            })
            .collect();
        for (jobid, due) in due_jobs {
            let Some(&holder) = self.busy.get(&jobid) else {
                self.queue_tick(jobid, due);
                continue;
            };
            let job = self.jobs.get_mut(&jobid).expect("listed above");
            if job.overlap != Overlap::Skip && job.queued_tick.is_none() {
                job.queued_tick = Some(due);
                if job.overlap == Overlap::CancelPrevious {
                    self.cancel_in_flight(holder, "cancelled: a newer tick of this job came (overlap = cancel_previous)");
                }
                continue;
            }
            let skips = self.skips.entry(jobid).or_insert(Skips { count: 0, last_at: due });
            skips.count += 1;
            skips.last_at = due;
            if job.skip_logged_for != Some(holder) {
                job.skip_logged_for = Some(holder);
                let holder = if holder > 0 { format!("run {holder}") } else { "a retry".to_string() };
                log!("pageperfect scheduler: job {jobid}'s tick at {due} skipped: {holder} of it is still in progress; further skips while it runs are only counted (job.skipped_runs)");
            }
        }
    }

    /// Marks run `runid` cancelled if a runner has it; `enforce_timeouts` interrupts it (and
    /// terminates its runner after `CANCEL_GRACE` if it ignores that). It is recorded
    /// `cancelled` with `message`.
    fn cancel_in_flight(&mut self, runid: i64, message: &str) {
        if let Some(flight) = self.in_flight.values_mut().find(|f| f.run.runid == runid && f.cancelled.is_none()) {
            flight.cancelled = Some((Instant::now(), "cancelled", message.to_string()));
        }
    }

    /// The tick's transaction: recover after a (re)start, write what happened, insert the new
    /// runs, reload jobs and queued runs, and resolve the pools queued runs need. It changes
    /// nothing in memory: `apply` does, once it has committed.
    /// (The worker ticks only while its heartbeat finds the extension installed.)
    fn sync(&self, shared: &Shared, reload: bool, now: DateTime<Utc>) -> Result<Synced, String> {
        let mut synced = Synced { tried: self.new_runs.clone(), ..Default::default() };
        if reload {
            let (zone, jobs, catch_ups) = self.load_jobs(now)?;
            synced.jobs = Some((zone, jobs));
            synced.tried.extend(catch_ups);
        }
        if !self.recovered {
            synced.recovered = Some(self.recover(shared)?);
        }
        if !self.updates.is_empty() {
            synced.written = write_updates(&self.updates)?;
        }
        if !self.skips.is_empty() {
            synced.skips_written = query_json(
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
                Some(serde_json::to_value(&self.skips).map_err(|e| e.to_string())?),
            )?;
        }
        if !synced.tried.is_empty() {
            synced.inserted = query_json(
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
                Some(serde_json::to_value(&synced.tried).map_err(|e| e.to_string())?),
            )?;
        }
        if reload {
            let mut known: Vec<i64> = self.pending.iter().map(|r| r.runid).chain(self.in_flight.values().map(|f| f.run.runid)).collect();
            known.extend(synced.inserted.iter().map(|r| r.runid));
            known.extend(synced.recovered.iter().flatten().map(|r| match r {
                Recovered::Held(_, run) | Recovered::Queued(run) | Recovered::Failed(run) => run.runid,
            }));
            synced.queued = load_queued_runs(&known)?;
        }
        // The pools every queued run needs that are not resolved (all of them after a reload).
        let mut wanted: HashSet<(String, String)> = HashSet::new();
        let recovered_queued = synced.recovered.iter().flatten().filter_map(|r| match r {
            Recovered::Queued(run) => Some(run),
            Recovered::Held(..) | Recovered::Failed(_) => None,
        });
        for run in self.pending.iter().chain(&synced.inserted).chain(&synced.queued).chain(recovered_queued) {
            let key = run.pool_key();
            if reload || !self.pools.contains_key(&key) {
                wanted.insert(key);
            }
        }
        for (database, username) in wanted {
            let pool = resolve_pool(&database, &username)?;
            synced.pools.insert((database, username), pool);
        }
        Ok(synced)
    }

    /// Takes in what a committed tick transaction did.
    fn apply(&mut self, synced: Synced, reload: bool, generation: u64) {
        let Synced { jobs, recovered, written, skips_written, tried, inserted, queued, pools } = synced;
        if let Some((zone, jobs)) = jobs {
            self.zone = Some(zone);
            self.jobs = jobs;
        }
        self.updates.retain(|u| !written.contains(&u.runid));
        self.held_back = self.updates.len();
        for jobid in skips_written {
            self.skips.remove(&jobid);
        }
        // Every new run was tried; jobs whose placeholder got no row (the job was dropped
        // meanwhile) are free again.
        self.new_runs.clear();
        for new_run in tried {
            if new_run.status == "starting" && self.busy.get(&new_run.jobid) == Some(&0) {
                self.busy.remove(&new_run.jobid);
            }
        }
        // A job's runs go one at a time: the first new run holds the job (catch-up runs of
        // `missed = all` wait for it in turn, see `dispatch`).
        for run in inserted {
            if matches!(self.busy.get(&run.jobid), None | Some(0)) {
                self.busy.insert(run.jobid, run.runid);
            }
            self.enqueue(run);
        }
        // After the new runs: a recovered run's retry is a new run of the next tick.
        for recovered in recovered.into_iter().flatten() {
            match recovered {
                Recovered::Held(index, run) => self.hold(index, run, std::ptr::null_mut()),
                Recovered::Queued(run) => {
                    self.busy.insert(run.jobid, run.runid);
                    self.enqueue(run);
                }
                Recovered::Failed(run) => self.retry_if_allowed(&run, Utc::now()),
            }
        }
        self.recovered = true;
        for run in queued {
            self.busy.entry(run.jobid).or_insert(run.runid);
            self.enqueue(run);
        }
        if reload {
            self.pools = pools;
            self.loaded_generation = generation;
            self.loaded_at = Some(Instant::now());
        } else {
            self.pools.extend(pools);
        }
    }

    fn enqueue(&mut self, run: Run) {
        let position = self.pending.partition_point(|r| (r.due_time, r.runid) <= (run.due_time, run.runid));
        self.pending.insert(position, run);
    }

    /// Re-reads active jobs, with the catch-up runs of a first load. A job keeps its next tick
    /// unless its schedule or time zone changed; a job seen for the first time is due from its
    /// creation (so a job created just before a tick gets it), or from now when the scheduler
    /// starts, where its `missed` policy decides about ticks missed while it was down.
    fn load_jobs(&self, now: DateTime<Utc>) -> Result<(Tz, HashMap<i64, Job>, Vec<NewRun>), String> {
        let default_zone = super::zone_from_setting()?;
        let default_changed = self.zone != Some(default_zone);
        let first_load = !self.recovered;
        // The last due tick is read only when a first load needs it, by one index probe (the
        // newest non-manual run), whatever the length of the job's history.
        #[derive(Deserialize)]
        struct Loaded {
            jobs: Vec<JobRow>,
            max_missed: Option<usize>,
            /// Active jobs of superusers, left out while `enable_superuser_jobs` is off.
            superusers_jobs: Vec<i64>,
        }
        let loaded: Loaded = query_json(
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
        for jobid in &loaded.superusers_jobs {
            warning!("skipping job {jobid} since superuser jobs are currently disallowed (pageperfect.enable_superuser_jobs is off)");
        }
        let max_missed = loaded.max_missed.unwrap_or(60);
        let mut jobs = HashMap::with_capacity(loaded.jobs.len());
        let mut catch_ups = Vec::new();
        for row in loaded.jobs {
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
            let previous = self.jobs.get(&row.jobid);
            let unchanged = previous.is_some_and(|p| {
                p.schedule_text == row.schedule && p.zone_name == row.timezone && !(row.timezone.is_none() && default_changed)
            });
            let next_due = match previous {
                Some(p) if unchanged => p.next_due,
                Some(_) => schedule.next_after(now, zone),
                // @reboot and @restart: one run each time the scheduler starts (and when a
                // promoted standby's starts acting), as pg_cron's launcher runs them.
                None if first_load && schedule == Schedule::AtStart => {
                    catch_ups.push(NewRun {
                        jobid: row.jobid,
                        status: "starting",
                        message: None,
                        due_time: now,
                        attempt: 1,
                        run_reason: "restart",
                        retry_of: None,
                    });
                    None
                }
                None if first_load => {
                    let cap = match row.missed.as_str() {
                        "once" => 1,
                        "all" => max_missed,
                        _ => 0,
                    };
                    let last = row.last_due.unwrap_or(row.created_at);
                    let (ticks, missed) = if cap > 0 { missed_ticks(&schedule, last, now, zone, cap) } else { (vec![], 0) };
                    if row.missed == "all" && missed > ticks.len() {
                        warning!(
                            "pageperfect scheduler: job {} missed {missed}{} ticks while the scheduler was down; only the latest {} run (parameter max_missed_runs)",
                            row.jobid,
                            if missed >= 86_400 { " or more" } else { "" },
                            ticks.len()
                        );
                    }
                    catch_ups.extend(ticks.into_iter().map(|tick| NewRun {
                        jobid: row.jobid,
                        status: "starting",
                        message: None,
                        due_time: tick,
                        attempt: 1,
                        run_reason: "catch_up",
                        retry_of: None,
                    }));
                    schedule.next_after(now, zone)
                }
                None => schedule.next_after(row.created_at.min(now), zone),
            };
            jobs.insert(
                row.jobid,
                Job {
                    schedule_text: row.schedule,
                    schedule,
                    timeout: row.timeout_us.zip(row.timeout_text).map(|(us, text)| (Duration::from_micros(us.max(0) as u64), text)),
                    max_attempts: row.max_attempts,
                    retry_backoff: Span::microseconds(row.retry_backoff_us),
                    next_due,
                    zone_name: row.timezone,
                    zone,
                    overlap: Overlap::parse(&row.overlap),
                    queued_tick: previous.and_then(|p| p.queued_tick),
                    skip_logged_for: previous.and_then(|p| p.skip_logged_for),
                },
            );
        }
        Ok((default_zone, jobs, catch_ups))
    }

    /// After a (re)start: adopt runs that live runners still hold, keep runs that were queued
    /// since the server (re)started and never reached a runner, and fail every other
    /// unfinished run, as pg_cron does.
    fn recover(&self, shared: &Shared) -> Result<Vec<Recovered>, String> {
        let born = from_pg_micros(shared.initialized_at.load(Ordering::Acquire));
        #[derive(Deserialize)]
        struct Unfinished {
            #[serde(flatten)]
            run: Run,
            never_started: bool,
        }
        let unfinished: Vec<Unfinished> = query_json(
            "SELECT coalesce(jsonb_agg(d ORDER BY d.due_time, d.runid), '[]')
               FROM (SELECT runid, jobid, database, username,
                            coalesce(due_time, start_time, now()) AS due_time, attempt, run_reason,
                            status = 'starting' AND job_pid IS NULL AS never_started
                       FROM pageperfect.job_run_details
                      WHERE status IN ('starting', 'running', 'sending', 'connecting')) d",
            None,
        )?;
        // A standby promoted since the runs were started runs on a new WAL timeline.
        #[derive(Deserialize)]
        struct Timeline {
            current: i32,
            recorded: Option<i32>,
        }
        let timeline: Timeline = query_json(
            "WITH t AS (SELECT ('x' || substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::int AS current),
                  previous AS (SELECT s.timeline FROM pageperfect.scheduler_state s),
                  kept AS (INSERT INTO pageperfect.scheduler_state (timeline) SELECT current FROM t
                           ON CONFLICT (singleton) DO UPDATE SET timeline = excluded.timeline)
             SELECT jsonb_build_object('current', t.current, 'recorded', (SELECT timeline FROM previous)) FROM t",
            None,
        )?;
        let promoted = timeline.recorded.is_some_and(|recorded| recorded != timeline.current);
        let reason = match timeline.recorded {
            Some(recorded) if promoted => {
                format!("the primary changed (this server was promoted: timeline {recorded} to {}); the run was in progress on the old primary", timeline.current)
            }
            _ => "server restarted".to_string(),
        };
        let mut recovered = Vec::new();
        let mut failed = Vec::new();
        for Unfinished { run, never_started } in unfinished {
            let held = shared.slots().iter().position(|slot| {
                matches!(slot.state(), SlotState::Assigned | SlotState::Running | SlotState::Done | SlotState::DoneExited)
                    && slot.runid.load(Ordering::Acquire) == run.runid
            });
            if let Some(index) = held {
                recovered.push(Recovered::Held(index, run));
            } else if never_started && run.due_time >= born && !promoted || run.due_time > Utc::now() {
                // A run queued on the old primary may have started there after the last WAL
                // this server received: only one due in the future surely has not.
                recovered.push(Recovered::Queued(run));
            } else {
                failed.push(RunUpdate {
                    runid: run.runid,
                    status: "failed",
                    message: Some(reason.clone()),
                    end_time: Some(Utc::now()),
                    ..Default::default()
                });
                recovered.push(Recovered::Failed(run));
            }
        }
        let written = write_updates(&failed)?;
        if written.len() < failed.len() {
            return Err("a run to recover is locked by another session".to_string());
        }
        Ok(recovered)
    }

    /// Hands due queued runs to runners, in due order (none while `launch_active_jobs` is off).
    fn dispatch(&mut self, shared: &Shared, now: DateTime<Utc>) {
        if !config::LAUNCH_ACTIVE_JOBS.get() {
            return;
        }
        let mut waiting: HashMap<Pool, usize> = HashMap::new();
        let mut chosen: Vec<(usize, Run)> = Vec::new();
        let mut index = 0;
        while index < self.pending.len() {
            if self.pending[index].due_time > now {
                break;
            }
            let run = &self.pending[index];
            let holder = self.busy.get(&run.jobid).copied();
            if holder.is_some_and(|h| h != run.runid && h != 0) && run.run_reason == "catch_up" {
                // Missed ticks (`missed = all`) run one after another.
                index += 1;
                continue;
            }
            if holder.is_none() && run.run_reason == "catch_up" {
                self.busy.insert(run.jobid, run.runid);
            }
            let holder = self.busy.get(&run.jobid).copied();
            if holder.is_some_and(|h| h != run.runid && h != 0) {
                let run = self.pending.remove(index);
                self.push_update(RunUpdate {
                    runid: run.runid,
                    status: "skipped",
                    message: Some(format!("skipped: run {} of this job was still in progress", holder.unwrap_or(0))),
                    end_time: Some(now),
                    ..Default::default()
                });
                continue;
            }
            let pool = match self.pools.get(&run.pool_key()) {
                Some(Ok(pool)) => *pool,
                Some(Err(message)) => {
                    let message = message.clone();
                    let run = self.pending.remove(index);
                    self.finish(&run, "failed", message, None, now);
                    continue;
                }
                None => {
                    index += 1;
                    continue;
                }
            };
            let idle = shared.slots().iter().enumerate().position(|(i, s)| {
                s.state() == SlotState::Idle && pool_of(s) == pool && !chosen.iter().any(|(taken, _)| *taken == i)
            });
            if let Some(slot_index) = idle {
                chosen.push((slot_index, self.pending.remove(index)));
                continue;
            }
            *waiting.entry(pool).or_default() += 1;
            self.provide_runner(shared, pool, waiting[&pool]);
            index += 1;
        }
        if chosen.is_empty() {
            return;
        }
        let runids: Vec<i64> = chosen.iter().map(|(_, run)| run.runid).collect();
        let commands = match read_commands(&runids) {
            Ok(commands) => commands,
            Err(e) => {
                self.warn(format!("could not read the commands of due runs (will retry): {e}"));
                chosen.into_iter().for_each(|(_, run)| self.enqueue(run));
                return;
            }
        };
        for (slot_index, run) in chosen {
            match commands.get(&run.runid) {
                Some(command) => {
                    if let Err(run) = self.assign(shared, slot_index, run, command) {
                        self.enqueue(run);
                    }
                }
                // The row went away or was cancelled (`cancel_run`): nothing is left to run or record.
                None => {
                    if self.busy.get(&run.jobid) == Some(&run.runid) {
                        self.busy.remove(&run.jobid);
                    }
                }
            }
        }
    }

    /// Starts another runner for `pool` when fewer are starting than runs wait for it, taking a
    /// free slot or, when none is left, retiring an idle runner of another pool.
    fn provide_runner(&mut self, shared: &Shared, pool: Pool, waiting: usize) {
        let starting = shared.slots().iter().filter(|s| s.state() == SlotState::Starting && pool_of(s) == pool).count();
        if starting >= waiting {
            return;
        }
        if let Some(index) = shared.slots().iter().position(|s| s.state() == SlotState::Free) {
            let slot = shared.slot(index);
            slot.clear_runner();
            slot.database.store(pool.0.to_u32(), Ordering::Release);
            slot.role.store(pool.1.to_u32(), Ordering::Release);
            if !slot.transition(SlotState::Free, SlotState::Starting) {
                return;
            }
            match runner::launch(index) {
                Some(worker) => {
                    self.launched.insert(index, (pool, worker));
                    self.warned_out_of_workers = false;
                }
                None => {
                    slot.transition(SlotState::Starting, SlotState::Free);
                    if !self.warned_out_of_workers {
                        warning!(
                            "pageperfect scheduler: out of background worker slots, job runs wait; raise max_worker_processes (it must cover pageperfect.max_running_jobs plus the pageperfect workers)"
                        );
                        self.warned_out_of_workers = true;
                    }
                }
            }
        } else if let Some(victim) = shared.slots().iter().find(|s| s.state() == SlotState::Idle && pool_of(s) != pool) {
            if victim.transition(SlotState::Idle, SlotState::Exiting) {
                victim.wake_runner();
            }
        }
    }

    /// Gives `run` and its `command` to the idle runner in slot `index`; hands the run back when
    /// the command cannot be shared yet.
    fn assign(&mut self, shared: &Shared, index: usize, run: Run, command: &str) -> Result<(), Run> {
        let Some(segment) = runner::share_command(command) else {
            return Err(run);
        };
        let slot = shared.slot(index);
        slot.runid.store(run.runid, Ordering::Release);
        slot.jobid.store(run.jobid, Ordering::Release);
        slot.command.store(unsafe { pg_sys::dsm_segment_handle(segment) }, Ordering::Release);
        slot.started_at.store(0, Ordering::Release);
        slot.cancel_requested.store(false, Ordering::Release);
        if !slot.transition(SlotState::Idle, SlotState::Assigned) {
            // The runner retired in between; the run waits for another one.
            unsafe { pg_sys::dsm_detach(segment) };
            return Err(run);
        }
        slot.wake_runner();
        self.hold(index, run, segment);
        Ok(())
    }

    /// Records that the runner in slot `index` holds `run` (whose command is in `segment`,
    /// null for a run adopted after a restart): the job is busy until the run is collected.
    fn hold(&mut self, index: usize, run: Run, segment: *mut pg_sys::dsm_segment) {
        self.busy.insert(run.jobid, run.runid);
        let timeout = self.jobs.get(&run.jobid).and_then(|j| j.timeout.clone());
        self.in_flight.insert(
            index,
            InFlight { run, segment, timeout, reported_running: false, cancelled: None, interrupted: false, terminated: false },
        );
    }

    /// Until the next tick, queued run, timeout or launch check, at most `RELOAD_INTERVAL`.
    fn sleep_time(&self, now: DateTime<Utc>) -> Duration {
        // Updates held back by another session's row lock wait for the next tick, not spin.
        if self.updates.len() > self.held_back || !self.new_runs.is_empty() {
            return Duration::ZERO;
        }
        let mut wake = now + Span::from_std(RELOAD_INTERVAL).unwrap_or_default();
        let ticks = self.jobs.values().filter_map(|j| j.next_due);
        let queued = self.pending.iter().map(|r| r.due_time).filter(|due| *due > now);
        for at in ticks.chain(queued) {
            wake = wake.min(at);
        }
        let mut sleep = (wake - now).to_std().unwrap_or(Duration::ZERO);
        if !self.launched.is_empty() {
            sleep = sleep.min(LAUNCH_POLL);
        }
        if self.in_flight.values().any(|f| f.timeout.is_some() || f.cancelled.is_some()) {
            sleep = sleep.min(TIMEOUT_POLL);
        }
        // Latch waits count whole milliseconds: round up, to wake on the due millisecond, not before.
        Duration::from_millis(sleep.as_micros().div_ceil(1000) as u64)
    }
}

/// Writes run updates, deleting the rows of forgotten runs, and returns the runids done. Rows
/// another session holds locked are left for the next tick instead of waited for.
fn write_updates(updates: &[RunUpdate]) -> Result<HashSet<i64>, String> {
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
fn load_queued_runs(known: &[i64]) -> Result<Vec<Run>, String> {
    query_json(
        "SELECT coalesce(jsonb_agg(d ORDER BY d.due_time, d.runid), '[]')
           FROM (SELECT runid, jobid, database, username, coalesce(due_time, now()) AS due_time, attempt, run_reason
                   FROM pageperfect.job_run_details
                  WHERE status = 'starting' AND job_pid IS NULL AND command IS NOT NULL
                    AND runid <> ALL (ARRAY(SELECT jsonb_array_elements_text($1)::bigint))) d",
        Some(json!(known)),
    )
}

/// The OIDs a runner for `database` and `username` connects with, or the error to record when
/// the role could not do that by logging in.
fn resolve_pool(database: &str, username: &str) -> Result<Result<Pool, String>, String> {
    #[derive(Deserialize)]
    struct Check {
        database_oid: Option<u32>,
        allows_connections: Option<bool>,
        role_oid: Option<u32>,
        can_login: Option<bool>,
        can_connect: Option<bool>,
    }
    let check: Check = query_json(
        "SELECT jsonb_build_object(
                'database_oid', d.oid::bigint, 'allows_connections', d.datallowconn,
                'role_oid', r.oid::bigint, 'can_login', r.rolcanlogin,
                'can_connect', CASE WHEN d.oid IS NOT NULL AND r.oid IS NOT NULL
                                    THEN r.rolsuper OR pg_catalog.has_database_privilege(r.oid, d.oid, 'CONNECT') END)
           FROM (SELECT $1 ->> 'database' AS datname, $1 ->> 'username' AS rolname) k
           LEFT JOIN pg_catalog.pg_database d ON d.datname = k.datname
           LEFT JOIN pg_catalog.pg_roles r ON r.rolname = k.rolname",
        Some(json!({"database": database, "username": username})),
    )?;
    Ok(match check {
        Check { database_oid: None, .. } => Err(format!("ERROR: database \"{database}\" does not exist")),
        Check { role_oid: None, .. } => Err(format!("ERROR: role \"{username}\" does not exist")),
        Check { can_login: Some(false), .. } => Err(format!(
            "ERROR: role \"{username}\" can not log in\nDETAIL: Jobs may only be run by roles that have the LOGIN attribute."
        )),
        Check { allows_connections: Some(false), .. } => {
            Err(format!("ERROR: database \"{database}\" is not currently accepting connections"))
        }
        Check { can_connect: Some(false), .. } => Err(format!("ERROR: User {username} does not have CONNECT privilege on {database}")),
        Check { database_oid: Some(d), role_oid: Some(r), .. } => Ok((pg_sys::Oid::from(d), pg_sys::Oid::from(r))),
    })
}

/// Reads the commands of the runs about to be handed out, by run id, one row each.
fn read_commands(runids: &[i64]) -> Result<HashMap<i64, String>, String> {
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

fn pool_of(slot: &slots::Slot) -> Pool {
    (
        pg_sys::Oid::from(slot.database.load(Ordering::Acquire)),
        pg_sys::Oid::from(slot.role.load(Ordering::Acquire)),
    )
}

/// Signals a runner (its pid comes from its slot, so it is one of ours).
fn signal_runner(pid: i32, signal: i32) {
    if pid > 0 {
        unsafe { libc::kill(pid, signal) };
    }
}
