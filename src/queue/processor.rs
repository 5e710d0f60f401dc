//! A pipeline worker's duty: claim due stage work under the limits, run each attempt on the
//! worker's tokio runtime with no transaction open, and record its outcome in one transaction;
//! and the same for the durable HTTP requests queued from SQL (`http::delivery`). Pipeline
//! worker 1 also applies the retention settings every minute (`trigger_cleanup`), in batches,
//! and ages priorities (`age_priorities`).
//!
//! SPI stays on the worker's main thread. Attempts run as tokio tasks on two runtime threads
//! and hand their outcome back over a channel; the main thread waits on that channel in short
//! slices while work is in flight, so it still notices SIGTERM and new work on its latch.

use super::claim::{choose, Candidate};
use super::stage::{AnyStage, StageError, Work};
use crate::config;
use crate::http::delivery::{self, Delivered};
use crate::wakeup::{self, wake_at_commit, Wake};
use crate::worker::{in_transaction, query_json, try_in_transaction, Duty};
use pgrx::prelude::*;
use serde::Deserialize;
use serde_json::json;
use crate::http::error::HttpError;
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How many ready messages of each stage a claim looks at (see claim_candidates).
const LOOKAHEAD: i64 = 64;
/// Claims also happen without a wake-up this often: work another worker freed, clock drift.
const CLAIM_POLL: Duration = Duration::from_secs(1);
/// How often the worker returns work of dead backends to the queue (and fails overdue work).
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Pipeline worker 1 deletes what outlived its retention every `cleanup_interval_seconds`
/// (parameter; this until it is read), at most this many rows of each table per pass (a pass
/// that hits the limit is followed by another at once).
const CLEANUP_INTERVAL: Duration = Duration::from_secs(60);
const CLEANUP_BATCH: i64 = 10_000;
/// The first pass, soon after the worker starts.
const FIRST_CLEANUP: Duration = Duration::from_secs(5);
/// Longest the main thread waits for finished attempts before it looks at its latch again.
const FINISHED_WAIT: Duration = Duration::from_millis(20);

/// An attempt that ended: the stage's output, or why it failed.
struct Finished {
    work: Work,
    outcome: Result<(&'static dyn AnyStage, Box<dyn Any + Send>), StageError>,
}

/// What the runtime hands back to the main thread.
enum Done {
    Stage(Finished),
    Http(Delivered),
}

/// A claimed stage as `claim_stages` returns it.
#[derive(Deserialize)]
struct ClaimedRow {
    job_id: String,
    stage: String,
    attempt: i32,
    url: String,
    page_id: Option<i64>,
    owner: String,
    options: serde_json::Value,
    force_update: bool,
    timeout_seconds: u64,
}

impl From<ClaimedRow> for Work {
    fn from(row: ClaimedRow) -> Work {
        Work {
            job_id: row.job_id,
            stage: row.stage,
            attempt: row.attempt,
            url: row.url,
            page_id: row.page_id,
            owner: row.owner,
            options: row.options,
            force_update: row.force_update,
            timeout: Duration::from_secs(row.timeout_seconds),
            input_hash: None,
        }
    }
}

#[derive(Deserialize)]
struct Claimed {
    works: Vec<ClaimedRow>,
    /// Seconds until the next delayed message becomes visible, if one waits.
    next_visible_in: Option<f64>,
}

pub struct Processor {
    /// The stages this worker can run, as the crate root hands them in.
    stages: &'static [&'static dyn AnyStage],
    runtime: tokio::runtime::Runtime,
    finished_tx: mpsc::UnboundedSender<Done>,
    finished_rx: mpsc::UnboundedReceiver<Done>,
    in_flight: usize,
    seen_generation: u64,
    next_claim: Instant,
    next_sweep: Instant,
    /// Durable HTTP requests: the shared client, how many are in flight, when to look again.
    http: delivery::Clients,
    http_in_flight: usize,
    next_http_claim: Instant,
    /// Finished attempts not recorded yet (a row was locked): when to try again, tries so far.
    unrecorded: Vec<(Instant, u32, Finished)>,
    /// When to apply retention and priority aging next; only pipeline worker 1 does.
    next_cleanup: Option<Instant>,
    next_aging: Option<Instant>,
}

/// How soon, and how many times at most, to try again to record an attempt whose rows another
/// session held locked.
const RECORD_RETRY: Duration = Duration::from_secs(1);
const RECORD_TRIES: u32 = 600;

/// Runs one of pipeline worker 1's maintenance passes: `sql` returns a jsonb report with
/// `interval_seconds`, when to run it again. Returns the report and that interval, or logs why
/// the pass failed and returns `CLEANUP_INTERVAL`.
fn maintenance_pass(what: &str, sql: &str, argument: Option<serde_json::Value>) -> (Option<serde_json::Value>, Duration) {
    match in_transaction(|| query_json::<serde_json::Value>(sql, argument)) {
        Ok(report) => {
            let interval = report["interval_seconds"]
                .as_f64()
                .filter(|s| s.is_finite() && *s >= 1.0)
                .map_or(CLEANUP_INTERVAL, Duration::from_secs_f64);
            (Some(report), interval)
        }
        Err(e) => {
            warning!("pageperfect pipeline: {what} failed (will retry): {e}");
            (None, CLEANUP_INTERVAL)
        }
    }
}

/// An attempt completed with the payload of an earlier run whose inputs were the same.
struct Reused(serde_json::Value);

/// The payload of the last completed run of `work`'s stage for the same owner and URL, if its
/// inputs had this digest (main thread, SPI).
fn reusable_payload(work: &Work, hash: &str) -> Result<Option<serde_json::Value>, StageError> {
    Spi::get_one_with_args::<pgrx::JsonB>(
        "SELECT CASE WHEN last.input_hash = $4
                     THEN last.data || jsonb_build_object('reused', true, 'reused_from', last.job_id) END
           FROM (SELECT s.input_hash, s.job_id, p.data
                   FROM pageperfect.jobs j
                   JOIN pageperfect.job_stages s ON s.job_id = j.id AND s.stage = $3 AND s.status = 'completed'
                   JOIN pageperfect.payloads p ON p.job_id = s.job_id AND p.stage = s.stage
                  WHERE j.owner = (SELECT o.owner FROM pageperfect.jobs o WHERE o.id = $1::uuid) AND j.url = $2
                    AND j.id <> $1::uuid
                  ORDER BY s.completed_at DESC LIMIT 1) last",
        &[work.job_id.as_str().into(), work.url.as_str().into(), work.stage.as_str().into(), hash.into()],
    )
    .map(|payload| payload.map(|p| p.0))
    .map_err(|e| StageError::retryable(e.to_string()))
}

/// Records a failed attempt (retry or dead letter, as the stage's policy and `error` say) in the
/// current transaction: `stale` when the attempt is no longer this backend's.
fn fail_stage(work: &Work, error: &StageError) -> Result<Option<String>, pgrx::spi::Error> {
    Spi::get_one_with_args::<String>(
        "SELECT pageperfect.fail_stage($1::uuid, $2, $3, $4, $5, $6)",
        &[
            work.job_id.as_str().into(),
            work.stage.as_str().into(),
            work.attempt.into(),
            error.to_string().into(),
            error.is_permanent().into(),
            error.retry_after().map(|d| d.as_secs_f64()).into(),
        ],
    )
}

/// Logs that an attempt's result was discarded because the attempt was taken back meanwhile.
fn note_stale(work: &Work, result: &str) {
    if result == "stale" {
        log!(
            "pageperfect pipeline: result of job {} stage {} attempt {} discarded: the attempt was taken back",
            work.job_id,
            work.stage,
            work.attempt
        );
    }
}

/// How much longer than its own timeout a durable HTTP request may run before it is cut off.
const HTTP_BOUND_SLACK: Duration = Duration::from_secs(5);

/// Why `bounded` cut a task short.
enum Cut {
    Panicked(String),
    TimedOut,
}

/// Runs `work` as a task of its own, so that a panic in it ends only that task, and aborts the
/// task when it is not done within `limit` (a timed-out attempt must not run on beside its retry).
async fn bounded<T: Send + 'static>(limit: Duration, work: impl Future<Output = T> + Send + 'static) -> Result<T, Cut> {
    let mut task = tokio::spawn(work);
    match tokio::time::timeout(limit, &mut task).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(join_error)) => Err(Cut::Panicked(join_error.to_string())),
        Err(_) => {
            task.abort();
            Err(Cut::TimedOut)
        }
    }
}

impl Processor {
    /// Pipeline worker `number`'s processor of `stages`; from now on enqueuing sessions can wake it.
    pub fn start(number: u32, stages: &'static [&'static dyn AnyStage]) -> Processor {
        if let Some(latches) = wakeup::latches() {
            latches.register_pipeline_worker(number);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("pageperfect-pipeline-{number}"))
            .on_thread_start(crate::threads::block_signals)
            .enable_all()
            .build()
            .unwrap_or_else(|e| error!("pageperfect pipeline worker {number}: cannot start its tokio runtime: {e}"));
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        let http = delivery::Clients::new().unwrap_or_else(|e| error!("pageperfect pipeline worker {number}: cannot build its HTTP client: {e}"));
        let now = Instant::now();
        Processor {
            stages,
            runtime,
            finished_tx,
            finished_rx,
            in_flight: 0,
            seen_generation: 0,
            next_claim: now,
            next_sweep: now,
            http,
            http_in_flight: 0,
            next_http_claim: now,
            unrecorded: Vec::new(),
            next_cleanup: (number == 1).then_some(now + FIRST_CLEANUP),
            next_aging: (number == 1).then_some(now + FIRST_CLEANUP),
        }
    }

    /// Returns work and requests of dead backends to the queue and fails work past its time limit.
    fn sweep(&mut self) {
        self.next_sweep = Instant::now() + SWEEP_INTERVAL;
        let sql = "SELECT pageperfect.sweep_stages() || jsonb_build_object('requeued_http_requests', pageperfect.requeue_orphaned_http_requests())";
        let swept = in_transaction(|| {
            query_json::<serde_json::Value>(sql, None)
        });
        match swept {
            Ok(swept) if swept.as_object().is_some_and(|o| o.values().any(|n| n.as_i64() != Some(0))) => {
                log!("pageperfect pipeline: swept stuck work: {swept}");
                self.next_claim = Instant::now();
                self.next_http_claim = Instant::now();
            }
            Ok(_) => {}
            Err(e) => warning!("pageperfect pipeline: sweep failed (will retry): {e}"),
        }
    }

    /// Deletes a batch of what outlived its retention in every table that grows.
    fn clean_up(&mut self) {
        let (summary, interval) = maintenance_pass(
            "retention cleanup",
            "SELECT pageperfect.trigger_cleanup($1::int) || jsonb_build_object('interval_seconds',
                    (SELECT (p.value #>> '{}')::float8 FROM pageperfect.parameters p WHERE p.name = 'cleanup_interval_seconds'))",
            Some(json!(CLEANUP_BATCH)),
        );
        let deleted = summary.and_then(|s| s["deleted"].as_object().cloned()).unwrap_or_default();
        if deleted.values().any(|n| n.as_i64() != Some(0)) {
            log!("pageperfect pipeline: retention deleted {}", serde_json::Value::Object(deleted.clone()));
        }
        let more = deleted.values().any(|n| n.as_i64() == Some(CLEANUP_BATCH));
        self.next_cleanup = Some(Instant::now() + if more { Duration::from_secs(1) } else { interval });
    }

    /// Raises the priority of what has waited long (`age_priorities`).
    fn age_priorities(&mut self) {
        let (aged, interval) = maintenance_pass("priority aging", "SELECT pageperfect.age_priorities()", None);
        if let Some(aged) = aged.filter(|a| a["messages"].as_i64().unwrap_or(0) + a["stages"].as_i64().unwrap_or(0) > 0) {
            log!("pageperfect pipeline: priority aging raised {aged}");
        }
        self.next_aging = Some(Instant::now() + interval);
    }

    /// Claims up to `free` stages and returns them with the time the next delayed one is due.
    fn claim(&self, free: usize) -> Result<Claimed, String> {
        in_transaction(|| {
            Spi::run("SELECT pageperfect.lock_claims()").map_err(|e| e.to_string())?;
            let candidates: Vec<Candidate> = query_json(
                "SELECT coalesce(jsonb_agg(c), '[]') FROM pageperfect.claim_candidates($1::int) c",
                Some(json!(LOOKAHEAD)),
            )?;
            let chosen = choose(&candidates, free);
            query_json::<Claimed>(
                "SELECT jsonb_build_object(
                     'works', (SELECT coalesce(jsonb_agg(w), '[]') FROM pageperfect.claim_stages(
                                   ARRAY(SELECT jsonb_array_elements_text($1)::bigint)) w),
                     'next_visible_in', extract(epoch FROM pageperfect.next_pipeline_wakeup() - clock_timestamp()))",
                Some(json!(chosen)),
            )
        })
    }

    /// Prepares a claimed attempt and hands it to the runtime; an attempt that cannot even be
    /// prepared is recorded as failed at once.
    fn launch(&mut self, work: Work) {
        let Some(stage) = self.stages.iter().copied().find(|stage| stage.name() == work.stage) else {
            let error = StageError::permanent(format!("this build of pageperfect has no code for stage \"{}\"", work.stage));
            return self.record_or_keep(Finished { work, outcome: Err(error) }, 0);
        };
        let prepared = {
            let work = AssertUnwindSafe(&work);
            try_in_transaction(AssertUnwindSafe(|| stage.prepare(&work)))
        };
        let input = match prepared {
            Ok(input) => input,
            Err(error) => return self.record_or_keep(Finished { work, outcome: Err(error) }, 0),
        };
        let mut work = work;
        if let Some(hash) = stage.input_hash(&work, &input) {
            if !work.force_update {
                let found = {
                    let work = AssertUnwindSafe(&work);
                    try_in_transaction(AssertUnwindSafe(|| reusable_payload(&work, &hash)))
                };
                if let Ok(Some(payload)) = found {
                    work.input_hash = Some(hash);
                    return self.record_or_keep(Finished { work, outcome: Ok((stage, Box::new(Reused(payload)))) }, 0);
                }
            }
            work.input_hash = Some(hash);
        }
        let attempt = stage.run(&work, input);
        let finished_tx = self.finished_tx.clone();
        let timeout = work.timeout;
        self.in_flight += 1;
        self.runtime.spawn(async move {
            let outcome = match bounded(timeout, attempt).await {
                Ok(outcome) => outcome,
                Err(Cut::Panicked(message)) => Err(StageError::retryable(format!("stage {} panicked: {message}", work.stage))),
                Err(Cut::TimedOut) => Err(StageError::retryable(format!(
                    "stage {} timed out after {} s (its timeout_seconds); the attempt was stopped",
                    work.stage,
                    timeout.as_secs()
                ))),
            };
            // The receiver only goes away with the worker, and then nobody records anything.
            let _ = finished_tx.send(Done::Stage(Finished { work, outcome: outcome.map(|output| (stage, output)) }));
        });
    }

    /// Claims due HTTP requests up to the free capacity and sends each on the runtime.
    fn launch_http(&mut self, capacity: usize) {
        match delivery::claim(capacity - self.http_in_flight) {
            Ok((claimed, next_due_in)) => {
                let due_in = next_due_in.map_or(CLAIM_POLL, |s| Duration::from_secs_f64(s.clamp(0.0, 1.0)));
                self.next_http_claim = Instant::now() + due_in.min(CLAIM_POLL);
                for request in claimed {
                    let (id, attempt, max_attempts) = (request.id, request.attempts, request.max_attempts);
                    let (client, finished_tx) = (self.http.for_request(&request), self.finished_tx.clone());
                    self.http_in_flight += 1;
                    // The client's own timeout ends the request first; the bound is for a
                    // request that hangs anyway, or panics: its slot and row must come back.
                    let limit = request.timeout() + HTTP_BOUND_SLACK;
                    self.runtime.spawn(async move {
                        let send = async move {
                            match request.request() {
                                Ok(built) => client.send(built).await,
                                Err(error) => Err(error),
                            }
                        };
                        let result = match bounded(limit, send).await {
                            Ok(result) => result,
                            Err(Cut::TimedOut) => Err(HttpError::Timeout(limit)),
                            Err(Cut::Panicked(message)) => Err(HttpError::Other(format!("sending the request panicked: {message}"))),
                        };
                        let _ = finished_tx.send(Done::Http(Delivered { id, attempt, max_attempts, result }));
                    });
                }
            }
            Err(e) => {
                warning!("pageperfect pipeline: claiming HTTP requests failed (will retry): {e}");
                self.next_http_claim = Instant::now() + CLAIM_POLL;
            }
        }
    }

    /// Records a finished attempt: its results, the stage completed and the job advanced in one
    /// transaction, or the failure with its retry or dead letter. Gives the attempt back, output
    /// intact, when another session holds a row it must write past the worker's lock_timeout:
    /// the caller tries again later instead of losing work already paid for.
    fn record(&mut self, finished: Finished) -> Option<Finished> {
        self.next_claim = Instant::now();
        let Finished { work, outcome } = finished;
        let (stage, output) = match outcome {
            Ok(done) => done,
            Err(error) => return self.record_failure(work, error),
        };
        let mut output = Some(output);
        let completed = {
            let (work, output) = (AssertUnwindSafe(&work), AssertUnwindSafe(&mut output));
            try_in_transaction(AssertUnwindSafe(move || {
                // Locked first, so that a busy row fails this before the output is taken. An
                // attempt taken back meanwhile (swept, or its job cancelled) writes nothing.
                let held = Spi::get_one_with_args::<bool>(
                    "SELECT pageperfect.lock_held_attempt($1::uuid, $2, $3)",
                    &[work.job_id.as_str().into(), work.stage.as_str().into(), work.attempt.into()],
                )
                .map_err(|e| StageError::retryable(e.to_string()))?;
                let output = output.0.take().expect("an output is stored once");
                if held != Some(true) {
                    return Ok("stale".to_string());
                }
                // A reused result was stored by the run it comes from.
                let payload = match output.downcast::<Reused>() {
                    Ok(reused) => reused.0,
                    Err(output) => match stage.store(&work, output) {
                        // What it kept is committed with the failure.
                        Err(StageError::Kept(error)) => {
                            wake_at_commit(Wake::PipelineWorkers);
                            return fail_stage(&work, &error).map(Option::unwrap_or_default).map_err(|e| StageError::retryable(e.to_string()));
                        }
                        stored => stored?,
                    },
                };
                let result = Spi::get_one_with_args::<String>(
                    "SELECT pageperfect.complete_stage($1::uuid, $2, $3, $4, $5)",
                    &[
                        work.job_id.as_str().into(),
                        work.stage.as_str().into(),
                        work.attempt.into(),
                        pgrx::JsonB(payload).into(),
                        work.input_hash.clone().into(),
                    ],
                )
                .map_err(|e| StageError::retryable(e.to_string()))?;
                // A stage slot is free and the next stage may be queued: every worker looks
                // (a failure frees a slot too).
                wake_at_commit(Wake::PipelineWorkers);
                Ok(result.unwrap_or_default())
            }))
        };
        match (completed, output) {
            (Ok(result), _) => {
                note_stale(&work, &result);
                None
            }
            (Err(error), Some(output)) => {
                log!("pageperfect pipeline: job {} stage {} cannot be recorded yet (will retry): {error}", work.job_id, work.stage);
                Some(Finished { work, outcome: Ok((stage, output)) })
            }
            (Err(error), None) => self.record_failure(work, error),
        }
    }

    /// Records a failed attempt (its retry or dead letter); gives it back when that could not be
    /// written (a row locked by another session), to be tried again.
    fn record_failure(&mut self, work: Work, error: StageError) -> Option<Finished> {
        let result = in_transaction(|| {
            wake_at_commit(Wake::PipelineWorkers);
            fail_stage(&work, &error).map(Option::unwrap_or_default)
        });
        match result {
            Ok(result) => {
                note_stale(&work, &result);
                None
            }
            Err(e) => {
                warning!("pageperfect pipeline: could not record job {} stage {} (will retry): {e}", work.job_id, work.stage);
                Some(Finished { work, outcome: Err(error) })
            }
        }
    }

    /// Records `finished`, or keeps it to try again in `RECORD_RETRY`; after `RECORD_TRIES`
    /// the claim is left to the sweeper, which retries the stage once its time is up.
    fn record_or_keep(&mut self, finished: Finished, tries: u32) {
        if let Some(back) = self.record(finished) {
            if tries + 1 < RECORD_TRIES {
                self.unrecorded.push((Instant::now() + RECORD_RETRY, tries + 1, back));
            } else {
                warning!(
                    "pageperfect pipeline: gave up recording job {} stage {} after {RECORD_TRIES} tries; the sweeper will retry the stage",
                    back.work.job_id,
                    back.work.stage
                );
            }
        }
    }

    /// Tries again to record the attempts whose rows were locked.
    fn record_kept(&mut self) {
        let now = Instant::now();
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unrecorded).into_iter().partition(|(at, _, _)| *at <= now);
        self.unrecorded = waiting;
        for (_, tries, finished) in due {
            self.record_or_keep(finished, tries);
        }
    }

    /// Records every attempt and request that has finished, waiting up to `wait` for the first one.
    fn collect_finished(&mut self, wait: Duration) {
        let (runtime, receiver) = (&self.runtime, &mut self.finished_rx);
        let first = runtime.block_on(async { tokio::time::timeout(wait, receiver.recv()).await.ok().flatten() });
        let mut batch: Vec<Done> = first.into_iter().collect();
        while let Ok(more) = self.finished_rx.try_recv() {
            batch.push(more);
        }
        let mut delivered = Vec::new();
        for done in batch {
            match done {
                Done::Stage(finished) => {
                    self.in_flight -= 1;
                    self.record_or_keep(finished, 0);
                }
                Done::Http(outcome) => delivered.push(outcome),
            }
        }
        if !delivered.is_empty() {
            self.http_in_flight -= delivered.len();
            delivery::record(delivered);
            self.next_http_claim = Instant::now();
        }
    }
}

impl Duty for Processor {
    fn tick(&mut self) -> Duration {
        self.collect_finished(Duration::ZERO);
        self.record_kept();
        let now = Instant::now();
        if now >= self.next_sweep {
            self.sweep();
        }
        if self.next_cleanup.is_some_and(|at| now >= at) {
            self.clean_up();
        }
        if self.next_aging.is_some_and(|at| now >= at) {
            self.age_priorities();
        }
        let capacity = config::HTTP_CONCURRENCY.get().max(1) as usize;
        let generation = wakeup::latches().map_or(0, |l| l.pipeline_generation.load(Ordering::Acquire));
        let woken = generation != self.seen_generation;
        self.seen_generation = generation;
        if self.http_in_flight < capacity && (woken || Instant::now() >= self.next_http_claim) {
            self.launch_http(capacity);
        }
        if self.in_flight < capacity && (woken || Instant::now() >= self.next_claim) {
            match self.claim(capacity - self.in_flight) {
                Ok(claimed) => {
                    let due_in = claimed.next_visible_in.map_or(CLAIM_POLL, |s| Duration::from_secs_f64(s.clamp(0.0, 1.0)));
                    self.next_claim = Instant::now() + due_in.min(CLAIM_POLL);
                    for row in claimed.works {
                        self.launch(row.into());
                    }
                }
                Err(e) => {
                    warning!("pageperfect pipeline: claiming work failed (will retry): {e}");
                    self.next_claim = Instant::now() + CLAIM_POLL;
                }
            }
        }
        if self.busy() {
            self.collect_finished(FINISHED_WAIT);
            return Duration::ZERO;
        }
        let now = Instant::now();
        let next_record = self.unrecorded.iter().map(|(at, _, _)| *at).min();
        [Some(self.next_claim), Some(self.next_sweep), Some(self.next_http_claim), self.next_cleanup, self.next_aging, next_record]
            .iter()
            .flatten()
            .map(|at| at.saturating_duration_since(now))
            .min()
            .unwrap_or(CLAIM_POLL)
    }

    fn busy(&self) -> bool {
        self.in_flight > 0 || self.http_in_flight > 0 || !self.unrecorded.is_empty()
    }
}
