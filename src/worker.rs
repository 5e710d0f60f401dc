//! The background-worker runtime shared by the scheduler and the pipeline workers: registration
//! in the postmaster, signal handling, the latch loop, the heartbeat row each worker keeps in
//! `pageperfect.workers`, and `in_transaction`, which runs SQL so that an error aborts the
//! transaction and is returned instead of killing the worker. Each worker has one duty: the
//! scheduler dispatches cron runs, a pipeline worker processes the job engine's stages.

use crate::config;
use crate::lifecycle::{Installed, LIBRARY_VERSION};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::pg_sys::panic::{CaughtError, ErrorReportWithLevel};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde::de::DeserializeOwned;
use std::fmt::Display;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::time::{Duration, Instant};

/// Heartbeats must land at least once a second; twice gives slack for a slow commit.
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// How soon the postmaster starts a worker again after it crashed or was terminated.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Which worker a process is. The bgworker argument encodes it: 0 is the scheduler, n > 0 is
/// pipeline worker n.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Scheduler,
    Pipeline(u32),
}

impl Role {
    pub fn from_argument(argument: u64) -> Role {
        match argument {
            0 => Role::Scheduler,
            n => Role::Pipeline(n as u32),
        }
    }

    pub fn argument(self) -> u64 {
        match self {
            Role::Scheduler => 0,
            Role::Pipeline(n) => u64::from(n),
        }
    }

    /// The worker's name in `pageperfect.workers` and in health reports.
    pub fn name(self) -> String {
        match self {
            Role::Scheduler => "scheduler".to_string(),
            Role::Pipeline(n) => format!("pipeline_worker_{n}"),
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Role::Scheduler => "scheduler",
            Role::Pipeline(_) => "pipeline",
        }
    }

    /// What `pg_stat_activity.backend_type` shows, as pg_cron shows `pg_cron launcher`.
    pub fn backend_type(self) -> String {
        match self {
            Role::Scheduler => "pageperfect scheduler".to_string(),
            Role::Pipeline(n) => format!("pageperfect pipeline worker {n}"),
        }
    }

    /// The scheduler and `count` pipeline workers.
    pub fn all(count: u32) -> impl Iterator<Item = Role> {
        std::iter::once(Role::Scheduler).chain((1..=count).map(Role::Pipeline))
    }
}

/// What a worker does between heartbeats.
pub trait Duty {
    /// Does what is due now and returns how long the worker may sleep on its latch.
    fn tick(&mut self) -> Duration;
    /// Whether work is in progress (the heartbeat row's state).
    fn busy(&self) -> bool;
}

/// Two duties in one worker, taking turns: it sleeps until either has something due.
pub struct Both<A: Duty, B: Duty>(pub A, pub B);

impl<A: Duty, B: Duty> Duty for Both<A, B> {
    fn tick(&mut self) -> Duration {
        let first = self.0.tick();
        first.min(self.1.tick())
    }

    fn busy(&self) -> bool {
        self.0.busy() || self.1.busy()
    }
}

/// Registers the scheduler and `pageperfect.pipeline_workers` pipeline workers with the postmaster.
pub fn register_workers() {
    for role in Role::all(config::PIPELINE_WORKERS.get().max(0) as u32) {
        let backend_type = role.backend_type();
        BackgroundWorkerBuilder::new(&backend_type)
            .set_type(&backend_type)
            .set_library("pageperfect")
            .set_function("pageperfect_worker_main")
            .set_argument(Some(pg_sys::Datum::from(role.argument())))
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(Some(RESTART_DELAY))
            .load();
    }
}

/// The body of every pageperfect background worker (`argument` says which): connects, then
/// heartbeats and ticks the duty `start_duty` gives for its role until SIGTERM. The runtime knows
/// nothing of what the duties do; the crate root's entry point hands them in.
pub fn run_worker(argument: pg_sys::Datum, start_duty: fn(Role) -> Box<dyn Duty>) {
    let role = Role::from_argument(argument.value() as u64);
    let name = role.name();
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = config::string(&config::DATABASE_NAME).unwrap_or_else(|| "postgres".to_string());
    // A missing database is a FATAL here; the postmaster retries after RESTART_DELAY.
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    // Only pageperfect's own short statements run here. JIT compiling one costs more than it ever
    // runs, and a plan misjudged as expensive (say, before autovacuum has analysed a bulk load)
    // would be compiled again at every execution: 10,000 queued pages slowed to a crawl so.
    unsafe {
        pg_sys::SetConfigOption(c"jit".as_ptr(), c"off".as_ptr(), pg_sys::GucContext::PGC_USERSET, pg_sys::GucSource::PGC_S_SESSION)
    };
    // The workers run as superuser: a database owner's `ALTER DATABASE … SET search_path` or a
    // planted `public.count(uuid)` must not capture their queries.
    crate::pin_search_path(pg_sys::GucAction::GUC_ACTION_SET);
    bound_waits();
    log!("pageperfect {name} started (pid {}, database \"{database}\")", std::process::id());

    let mut duty = start_duty(role);
    // What the last heartbeat found in the database: the duty runs only while it is `Current`.
    let mut installed: Option<Installed> = None;
    let mut last_heartbeat: Option<Instant> = None;
    loop {
        if last_heartbeat.is_none_or(|at| at.elapsed() >= HEARTBEAT_INTERVAL) {
            last_heartbeat = Some(Instant::now());
            match heartbeat(role, if duty.busy() { "busy" } else { "idle" }) {
                Ok(found) if installed.as_ref() != Some(&found) => {
                    match (&found, found.advice(&database)) {
                        (Installed::Missing, _) => {
                            log!("pageperfect {name}: waiting for CREATE EXTENSION pageperfect in database \"{database}\"")
                        }
                        // LOG, not WARNING: the server log ranks LOG higher, so it is written under more settings.
                        (_, Some(advice)) => log!("pageperfect {name}: {advice}"),
                        (_, None) if installed.is_some() => {
                            log!("pageperfect {name}: database \"{database}\" has pageperfect {LIBRARY_VERSION}; working")
                        }
                        (_, None) => {}
                    }
                    installed = Some(found);
                }
                Ok(_) => {}
                Err(e) => warning!("pageperfect {name}: heartbeat failed: {e}"),
            }
        }
        let until_heartbeat = HEARTBEAT_INTERVAL.saturating_sub(last_heartbeat.map_or(Duration::ZERO, |at| at.elapsed()));
        let work_wait = if installed == Some(Installed::Current) { duty.tick() } else { HEARTBEAT_INTERVAL };
        if !BackgroundWorker::wait_latch(Some(work_wait.min(until_heartbeat))) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            bound_waits();
            log!("pageperfect {name}: configuration reloaded");
        }
    }

    if let Err(e) = heartbeat(role, "stopped") {
        warning!("pageperfect {name}: could not record its stop: {e}");
    }
    log!("pageperfect {name} stopping (SIGTERM)");
    // Exit non-zero: a worker stopped with pg_terminate_backend() is then started again by the
    // postmaster (exit 0 would unregister it for good). At shutdown nothing restarts either way.
    unsafe { pg_sys::proc_exit(1) };
}

/// Sets the worker's `lock_timeout` and `statement_timeout` from its settings: a session that
/// holds a lock on a table the worker writes delays it by at most that long, and the failure
/// is logged and shown in the heartbeat row (`blocked_at`), hence in monitoring alerts.
fn bound_waits() {
    for (name, setting) in [
        (c"lock_timeout", &config::WORKER_LOCK_TIMEOUT_MS),
        (c"statement_timeout", &config::WORKER_STATEMENT_TIMEOUT_MS),
    ] {
        let value = std::ffi::CString::new(setting.get().to_string()).expect("digits have no zero byte");
        unsafe {
            pg_sys::SetConfigOption(name.as_ptr(), value.as_ptr(), pg_sys::GucContext::PGC_USERSET, pg_sys::GucSource::PGC_S_SESSION)
        };
    }
}

thread_local! {
    /// The last lock or statement timeout one of this worker's transactions hit, not yet written
    /// to its heartbeat row.
    static BLOCKED: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Remembers `report` for the heartbeat when it is a lock or statement timeout.
fn note_if_blocked(report: &ErrorReportWithLevel) {
    let code = report.sql_error_code();
    if code == PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE || code == PgSqlErrorCode::ERRCODE_QUERY_CANCELED {
        BLOCKED.with(|b| *b.borrow_mut() = Some(report.message().to_string()));
    }
}

/// Upserts this worker's heartbeat row when the database has the SQL version this library
/// serves, and says what it has. A worker that waits for `CREATE EXTENSION` or for an upgrade
/// writes nothing: its tables may not be there or may be of another shape, so health shows it
/// as stalled, and (from 0.2.0 on) `get_scheduler_health()` says what to run.
fn heartbeat(role: Role, state: &'static str) -> Result<Installed, String> {
    in_transaction(move || {
        let installed = Installed::in_database()?;
        if installed == Installed::Current {
            let blocked = BLOCKED.with(|b| b.borrow().clone());
            Spi::run_with_args(
                "INSERT INTO pageperfect.workers AS w
                        (worker_name, kind, pid, started_at, last_heartbeat, state, database, blocked_at, blocked_by)
                 SELECT $1, $2, pg_backend_pid(), a.backend_start, clock_timestamp(), $3, current_database(),
                        CASE WHEN $4::text IS NOT NULL THEN clock_timestamp() END, $4
                   FROM pg_catalog.pg_stat_activity a WHERE a.pid = pg_backend_pid()
                 ON CONFLICT (worker_name) DO UPDATE
                    SET kind = excluded.kind, pid = excluded.pid, started_at = excluded.started_at,
                        last_heartbeat = excluded.last_heartbeat, state = excluded.state,
                        database = excluded.database,
                        blocked_at = coalesce(excluded.blocked_at, w.blocked_at),
                        blocked_by = coalesce(excluded.blocked_by, w.blocked_by)",
                &[role.name().into(), role.kind().into(), state.into(), blocked.into()],
            )?;
        }
        Ok::<Installed, pgrx::spi::Error>(installed)
    })
    .inspect(|_| BLOCKED.with(|b| *b.borrow_mut() = None))
}

/// Runs `body` in its own transaction and commits it. A Postgres error or panic inside aborts
/// the transaction and comes back as `Err` with the error's message, as does an `Err` from `body`;
/// either way the worker carries on with a clean transaction state.
pub fn in_transaction<R, E: Display>(
    body: impl FnOnce() -> Result<R, E> + UnwindSafe + RefUnwindSafe,
) -> Result<R, String> {
    try_in_transaction(move || body().map_err(|e| e.to_string()))
}

/// `in_transaction` that keeps the body's own error type; a caught Postgres error or panic
/// becomes `E` from its message.
pub fn try_in_transaction<R, E: From<String>>(
    body: impl FnOnce() -> Result<R, E> + UnwindSafe + RefUnwindSafe,
) -> Result<R, E> {
    PgTryBuilder::new(move || unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        match body() {
            Ok(value) => {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
                Ok(value)
            }
            Err(e) => {
                pg_sys::AbortCurrentTransaction();
                Err(e)
            }
        }
    })
    .catch_others(|caught| abort_with(&caught))
    .catch_rust_panic(|caught| abort_with(&caught))
    .execute()
}

fn abort_with<R, E: From<String>>(caught: &CaughtError) -> Result<R, E> {
    unsafe { pg_sys::AbortCurrentTransaction() };
    let report = error_report(caught);
    note_if_blocked(report);
    Err(E::from(report.message().to_string()))
}

/// Runs one statement, with an optional jsonb argument `$1`, and decodes its jsonb result.
pub fn query_json<T: DeserializeOwned>(sql: &str, argument: Option<serde_json::Value>) -> Result<T, String> {
    let result = match argument {
        Some(argument) => Spi::get_one_with_args::<JsonB>(sql, &[JsonB(argument).into()]),
        None => Spi::get_one::<JsonB>(sql),
    };
    let value = result
        .map_err(|e| e.to_string())?
        .map(|j| j.0)
        .unwrap_or(serde_json::Value::Null);
    serde_json::from_value(value).map_err(|e| format!("unexpected query result ({e}): {}", sql.split_whitespace().take(8).collect::<Vec<_>>().join(" ")))
}


/// The error report of whatever `PgTryBuilder` caught (a Postgres error or a Rust panic).
pub fn error_report(caught: &CaughtError) -> &ErrorReportWithLevel {
    match caught {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
        CaughtError::RustPanic { ereport, .. } => ereport,
    }
}

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn role_round_trips_through_its_argument() {
        for role in Role::all(3) {
            assert_eq!(Role::from_argument(role.argument()), role);
        }
    }

    #[test]
    fn roles_are_named_as_health_and_pg_stat_activity_show_them() {
        let roles: Vec<_> = Role::all(2).collect();
        assert_eq!(roles, vec![Role::Scheduler, Role::Pipeline(1), Role::Pipeline(2)]);
        assert_eq!(Role::Scheduler.backend_type(), "pageperfect scheduler");
        assert_eq!(Role::Pipeline(2).backend_type(), "pageperfect pipeline worker 2");
        assert_eq!(Role::Pipeline(2).name(), "pipeline_worker_2");
        assert_eq!(Role::all(0).count(), 1);
    }
}
