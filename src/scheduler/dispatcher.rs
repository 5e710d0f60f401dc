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
//! tick's jsonb: runs are handed out by id and their commands read just before.
//! `job_run_details` rows in status `starting` are the queue, so runs queued by `run_job_now()`
//! or retries survive a scheduler restart; what the scheduler does with unfinished runs when it
//! starts is `recovery`'s. Every run row it reads or writes goes through `run_store`, every job
//! through `jobs`.

use super::from_pg_micros;
use super::jobs::{self, Holder, Job, Overlap, Skips};
use super::plan::retry_due;
use super::pool::{self, pool_of, Pool};
use super::recovery::{self, Recovered};
use super::run_store::{self, NewRun, Run, RunReason, RunStatus, RunUpdate};
use super::runner;
use super::slots::{self, Shared, SlotState};
use crate::config::{self, RunLog};
use crate::wakeup;
use crate::worker::{in_transaction, Duty};
use chrono::{DateTime, Duration as Span, Utc};
use chrono_tz::Tz;
use pgrx::bgworkers::{BackgroundWorkerStatus, DynamicBackgroundWorker};
use pgrx::prelude::*;
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

/// A run a runner holds.
struct InFlight {
    run: Run,
    segment: *mut pg_sys::dsm_segment,
    timeout: Option<(Duration, String)>,
    reported_running: bool,
    /// When the run was cancelled, and the status and message to record for it.
    cancelled: Option<(Instant, RunStatus, String)>,
    interrupted: bool,
    terminated: bool,
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
    /// What holds each busy job.
    busy: HashMap<i64, Holder>,
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

        let generation = wakeup::latches().map_or(0, |l| l.generation.load(Ordering::Acquire));
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
        if let Some(latches) = wakeup::latches() {
            latches.register_scheduler();
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
                            job_pid: Some(slot.pid.load(Ordering::Acquire)),
                            start_time: Some(from_pg_micros(slot.started_at.load(Ordering::Acquire))),
                            ..RunUpdate::to(flight.run.runid, RunStatus::Running)
                        };
                        self.push_update(update);
                    }
                }
                SlotState::Done | SlotState::DoneExited => {
                    let flight = self.in_flight.remove(&index).expect("listed above");
                    let (status, message) = match flight.cancelled {
                        Some((_, status, message)) => (status, message),
                        None if slot.succeeded.load(Ordering::Acquire) => (RunStatus::Succeeded, slot.result_message()),
                        None => (RunStatus::Failed, slot.result_message()),
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
                    self.finish(&flight.run, RunStatus::Failed, "ERROR: the job's runner disappeared".into(), None, now);
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
            self.finish(&run, RunStatus::Failed, message, None, now);
        }
    }

    /// Records a run's end (`status`: succeeded, failed or cancelled), queues its retry when it
    /// failed and attempts remain, and otherwise the tick that waited for it (overlap policy).
    fn finish(&mut self, run: &Run, status: RunStatus, message: String, started: Option<(i32, DateTime<Utc>)>, ended: DateTime<Utc>) {
        let forget = match config::RUN_LOG.get() {
            RunLog::All => false,
            RunLog::Failures => status == RunStatus::Succeeded,
            RunLog::Off => true,
        };
        self.push_update(RunUpdate {
            job_pid: started.map(|(pid, _)| pid),
            message: Some(message),
            start_time: started.map(|(_, at)| at),
            end_time: Some(ended),
            forget,
            ..RunUpdate::to(run.runid, status)
        });
        self.release(run);
        if status == RunStatus::Failed {
            self.retry_if_allowed(run, ended);
        }
        if !self.busy.contains_key(&run.jobid) {
            if let Some(tick) = self.jobs.get_mut(&run.jobid).and_then(|job| job.queued_tick.take()) {
                self.queue_tick(run.jobid, tick);
            }
        }
    }

    /// The job of `run` is free again, if `run` held it.
    fn release(&mut self, run: &Run) {
        if self.busy.get(&run.jobid) == Some(&Holder::Run(run.runid)) {
            self.busy.remove(&run.jobid);
        }
    }

    /// Queues a scheduled run of `jobid` for `due`; the job is busy until its row exists.
    fn queue_tick(&mut self, jobid: i64, due: DateTime<Utc>) {
        self.busy.insert(jobid, Holder::Unrecorded);
        self.new_runs.push(NewRun::queued(jobid, due, RunReason::Schedule));
    }

    /// Queues the next attempt of a failed run when its job allows more.
    fn retry_if_allowed(&mut self, run: &Run, ended: DateTime<Utc>) {
        let Some(job) = self.jobs.get(&run.jobid) else { return };
        if run.attempt < job.max_attempts {
            self.new_runs.push(NewRun {
                attempt: run.attempt + 1,
                retry_of: Some(run.runid),
                ..NewRun::queued(run.jobid, retry_due(ended, job.retry_backoff, run.attempt), RunReason::Retry)
            });
            self.busy.insert(run.jobid, Holder::Unrecorded);
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
                flight.cancelled = Some((Instant::now(), RunStatus::Cancelled, "cancelled by cancel_run()".to_string()));
            }
            if let (None, Some((limit, text))) = (&flight.cancelled, &flight.timeout) {
                if elapsed >= *limit {
                    flight.cancelled = Some((Instant::now(), RunStatus::Failed, format!("ERROR: job cancelled: it ran longer than its timeout of {text}")));
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
                if let (Overlap::CancelPrevious, Holder::Run(runid)) = (job.overlap, holder) {
                    self.cancel_in_flight(runid, "cancelled: a newer tick of this job came (overlap = cancel_previous)");
                }
                continue;
            }
            let skips = self.skips.entry(jobid).or_insert(Skips { count: 0, last_at: due });
            skips.count += 1;
            skips.last_at = due;
            if job.skip_logged_for != Some(holder) {
                job.skip_logged_for = Some(holder);
                log!("pageperfect scheduler: job {jobid}'s tick at {due} skipped: {holder} of it is still in progress; further skips while it runs are only counted (job.skipped_runs)");
            }
        }
    }

    /// Marks run `runid` cancelled if a runner has it; `enforce_timeouts` interrupts it (and
    /// terminates its runner after `CANCEL_GRACE` if it ignores that). It is recorded
    /// `cancelled` with `message`.
    fn cancel_in_flight(&mut self, runid: i64, message: &str) {
        if let Some(flight) = self.in_flight.values_mut().find(|f| f.run.runid == runid && f.cancelled.is_none()) {
            flight.cancelled = Some((Instant::now(), RunStatus::Cancelled, message.to_string()));
        }
    }

    /// The tick's transaction: recover after a (re)start, write what happened, insert the new
    /// runs, reload jobs and queued runs, and resolve the pools queued runs need. It changes
    /// nothing in memory: `apply` does, once it has committed.
    /// (The worker ticks only while its heartbeat finds the extension installed.)
    fn sync(&self, shared: &Shared, reload: bool, now: DateTime<Utc>) -> Result<Synced, String> {
        let mut synced = Synced { tried: self.new_runs.clone(), ..Default::default() };
        if reload {
            let list = jobs::load(&self.jobs, self.zone, !self.recovered, now)?;
            synced.jobs = Some((list.zone, list.jobs));
            synced.tried.extend(list.runs);
        }
        if !self.recovered {
            synced.recovered = Some(recovery::recover(shared)?);
        }
        if !self.updates.is_empty() {
            synced.written = run_store::write(&self.updates)?;
        }
        if !self.skips.is_empty() {
            synced.skips_written = jobs::write_skips(&self.skips)?;
        }
        if !synced.tried.is_empty() {
            synced.inserted = run_store::insert(&synced.tried)?;
        }
        if reload {
            let mut known: Vec<i64> = self.pending.iter().map(|r| r.runid).chain(self.in_flight.values().map(|f| f.run.runid)).collect();
            known.extend(synced.inserted.iter().map(|r| r.runid));
            known.extend(synced.recovered.iter().flatten().map(|r| r.run().runid));
            synced.queued = run_store::queued_except(&known)?;
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
            let pool = pool::resolve(&database, &username)?;
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
            if new_run.status == RunStatus::Starting && self.busy.get(&new_run.jobid) == Some(&Holder::Unrecorded) {
                self.busy.remove(&new_run.jobid);
            }
        }
        // A job's runs go one at a time: the first new run holds the job (catch-up runs of
        // `missed = all` wait for it in turn, see `dispatch`).
        for run in inserted {
            if matches!(self.busy.get(&run.jobid), None | Some(Holder::Unrecorded)) {
                self.busy.insert(run.jobid, Holder::Run(run.runid));
            }
            self.enqueue(run);
        }
        // After the new runs: a recovered run's retry is a new run of the next tick.
        for recovered in recovered.into_iter().flatten() {
            match recovered {
                Recovered::Held(index, run) => self.hold(index, run, std::ptr::null_mut()),
                Recovered::Queued(run) => {
                    self.busy.insert(run.jobid, Holder::Run(run.runid));
                    self.enqueue(run);
                }
                Recovered::Failed(run) => self.retry_if_allowed(&run, Utc::now()),
            }
        }
        self.recovered = true;
        for run in queued {
            self.busy.entry(run.jobid).or_insert(Holder::Run(run.runid));
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
            let held_by_another = |holder: Option<Holder>| match holder {
                Some(Holder::Run(runid)) if runid != run.runid => Some(runid),
                _ => None,
            };
            let holder = self.busy.get(&run.jobid).copied();
            if run.run_reason == RunReason::CatchUp {
                if held_by_another(holder).is_some() {
                    // Missed ticks (`missed = all`) run one after another.
                    index += 1;
                    continue;
                }
                if holder.is_none() {
                    self.busy.insert(run.jobid, Holder::Run(run.runid));
                }
            }
            if let Some(other) = held_by_another(self.busy.get(&run.jobid).copied()) {
                let run = self.pending.remove(index);
                self.push_update(RunUpdate {
                    message: Some(format!("skipped: run {other} of this job was still in progress")),
                    end_time: Some(now),
                    ..RunUpdate::to(run.runid, RunStatus::Skipped)
                });
                continue;
            }
            let pool = match self.pools.get(&run.pool_key()) {
                Some(Ok(pool)) => *pool,
                Some(Err(message)) => {
                    let message = message.clone();
                    let run = self.pending.remove(index);
                    self.finish(&run, RunStatus::Failed, message, None, now);
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
        let commands = match run_store::commands(&runids) {
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
                None => self.release(&run),
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
        self.busy.insert(run.jobid, Holder::Run(run.runid));
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

/// Signals a runner (its pid comes from its slot, so it is one of ours).
fn signal_runner(pid: i32, signal: i32) {
    if pid > 0 {
        unsafe { libc::kill(pid, signal) };
    }
}
