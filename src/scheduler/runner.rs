//! Job runners: dynamic background workers, each connected as one role to one database, that
//! run the commands the scheduler hands them through their slot (see `slots`). A runner stays
//! connected between runs, so the next run of the same role and database starts at once; it
//! exits after idling for `RUNNER_IDLE_EXIT` or when the scheduler needs its slot elsewhere.

use super::execute::run_command;
use crate::config;
use super::slots::{self, Slot, SlotState};
use crate::wakeup;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, DynamicBackgroundWorker};
use pgrx::prelude::*;
use std::ffi::CString;
use std::time::{Duration, Instant};

/// How long an idle runner waits for another run before giving its slot back: longer than a
/// minute, cron's most common period, so that every-minute jobs find their runner still
/// connected (a cold start, a process and its connection, costs 30-40 ms of lag).
const RUNNER_IDLE_EXIT: Duration = Duration::from_secs(300);
/// What `pg_stat_activity.backend_type` shows for runners.
pub const RUNNER_BACKEND_TYPE: &str = "pageperfect job runner";

/// Starts a runner for slot `index`, whose database and role the caller has set.
pub fn launch(index: usize) -> Option<DynamicBackgroundWorker> {
    BackgroundWorkerBuilder::new(RUNNER_BACKEND_TYPE)
        .set_type(RUNNER_BACKEND_TYPE)
        .set_library("pageperfect")
        .set_function("pageperfect_job_runner_main")
        .set_argument(Some(pg_sys::Datum::from(index)))
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
        .load_dynamic()
        .ok()
}

/// Writes `command` into a new dynamic shared memory segment for a runner to read; `None` when
/// the server is out of segments (the run waits for the next try).
pub fn share_command(command: &str) -> Option<*mut pg_sys::dsm_segment> {
    unsafe {
        let segment = pg_sys::dsm_create(4 + command.len(), pg_sys::DSM_CREATE_NULL_IF_MAXSEGMENTS as i32);
        if segment.is_null() {
            return None;
        }
        // Keep the mapping past any resource owner: it lives until the run is collected.
        pg_sys::dsm_pin_mapping(segment);
        let base = pg_sys::dsm_segment_address(segment) as *mut u8;
        std::ptr::copy_nonoverlapping((command.len() as u32).to_ne_bytes().as_ptr(), base, 4);
        std::ptr::copy_nonoverlapping(command.as_ptr(), base.add(4), command.len());
        Some(segment)
    }
}

fn read_command(handle: u32) -> Option<String> {
    unsafe {
        let segment = pg_sys::dsm_attach(handle);
        if segment.is_null() {
            return None;
        }
        let base = pg_sys::dsm_segment_address(segment) as *const u8;
        let mut len = [0u8; 4];
        std::ptr::copy_nonoverlapping(base, len.as_mut_ptr(), 4);
        let bytes = std::slice::from_raw_parts(base.add(4), u32::from_ne_bytes(len) as usize);
        let command = String::from_utf8_lossy(bytes).into_owned();
        pg_sys::dsm_detach(segment);
        Some(command)
    }
}

unsafe extern "C-unwind" {
    /// Postgres's own SIGTERM handler for backends (`die` in postgres.c), called directly: a
    /// signal handler must not go through pgrx's error-catching wrappers.
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pageperfect_job_runner_main(argument: pg_sys::Datum) {
    let index = argument.value();
    let shared = slots::shared().expect("job runners exist only when pageperfect is preloaded");
    let slot = shared.slot(index);
    unsafe {
        // SIGTERM ends a running command at its next interrupt check, as in a normal backend;
        // SIGINT (pg_cancel_backend) cancels it (set up by Postgres for database workers).
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(postgres_die));
        pg_sys::BackgroundWorkerUnblockSignals();
        pg_sys::before_shmem_exit(Some(on_runner_exit), argument);
    }
    let database = pg_sys::Oid::from(slot.database.load(std::sync::atomic::Ordering::Acquire));
    let role = pg_sys::Oid::from(slot.role.load(std::sync::atomic::Ordering::Acquire));
    // A role that cannot log in or a dropped database is a FATAL here; the exit hook frees the slot.
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), Some(role));
    slot.register_runner();
    if !slot.transition(SlotState::Starting, SlotState::Idle) {
        unsafe { pg_sys::proc_exit(0) };
    }
    wakeup::wake_scheduler();

    let mut idle_since = Instant::now();
    loop {
        match slot.state() {
            SlotState::Assigned => {
                run_assigned(slot);
                wakeup::wake_scheduler();
                idle_since = Instant::now();
            }
            SlotState::Exiting => break,
            SlotState::Idle if idle_since.elapsed() >= RUNNER_IDLE_EXIT && slot.transition(SlotState::Idle, SlotState::Exiting) => break,
            _ => {}
        }
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                1000,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        pgrx::check_for_interrupts!();
    }
    unsafe { pg_sys::proc_exit(0) };
}

fn run_assigned(slot: &Slot) {
    use std::sync::atomic::Ordering;
    let Some(command) = read_command(slot.command.load(Ordering::Acquire)) else {
        slot.set_result(false, "ERROR: the run's command was lost because the scheduler restarted", now());
        slot.transition(SlotState::Assigned, SlotState::Done);
        return;
    };
    slot.started_at.store(now(), Ordering::Release);
    slot.transition(SlotState::Assigned, SlotState::Running);
    wakeup::wake_scheduler();

    let application_name = format!(
        "pageperfect job {} run {}",
        slot.jobid.load(Ordering::Acquire),
        slot.runid.load(Ordering::Acquire)
    );
    let command_c = CString::new(command.replace('\0', " ")).unwrap_or_default();
    unsafe {
        let name = CString::new(application_name).unwrap_or_default();
        pg_sys::SetConfigOption(
            c"application_name".as_ptr(),
            name.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
        );
        pg_sys::debug_query_string = command_c.as_ptr();
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, command_c.as_ptr());
    }
    let jobid = slot.jobid.load(Ordering::Acquire);
    if config::LOG_STATEMENT.get() {
        log!("cron job {jobid} starting: {command}");
    }
    let outcome = run_command(&command);
    unsafe {
        pg_sys::debug_query_string = std::ptr::null();
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null());
    }
    // Each run starts from a clean session, as under pg_cron, where each run has a fresh one:
    // settings, SET ROLE, temporary tables, prepared statements, cursors, LISTEN channels and
    // session advisory locks of this run do not reach the next.
    let reset = run_command("DISCARD ALL");
    if let Err(error) = &reset {
        warning!("pageperfect job runner: could not reset its session after a run, so it exits: {error}");
    }
    match &outcome {
        Ok(tag) => {
            if config::LOG_STATEMENT.get() {
                log!("cron job {jobid} COMMAND completed: {tag}");
            }
            slot.set_result(true, tag, now())
        }
        Err(error) => {
            log!("pageperfect job {jobid} run {} failed: {error}", slot.runid.load(Ordering::Acquire));
            slot.set_result(false, error, now())
        }
    }
    slot.transition(SlotState::Running, SlotState::Done);
    if reset.is_err() {
        // A fresh runner takes the next run; the exit hook hands the slot back.
        unsafe { pg_sys::proc_exit(0) };
    }
}

fn now() -> i64 {
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// Runs however the runner exits (FATAL, terminate, idle exit): gives the slot back, or leaves
/// the failed run in it for the scheduler to record.
#[pg_guard]
unsafe extern "C-unwind" fn on_runner_exit(_code: i32, argument: pg_sys::Datum) {
    let Some(shared) = slots::shared() else { return };
    let slot = shared.slot(argument.value());
    loop {
        let from = slot.state();
        let to = match from {
            SlotState::Starting | SlotState::Idle | SlotState::Exiting => SlotState::Free,
            SlotState::Assigned | SlotState::Running => {
                slot.set_result(false, "ERROR: the job's process exited before the run finished (terminated, or the server is shutting down)", now());
                SlotState::DoneExited
            }
            SlotState::Done => SlotState::DoneExited,
            SlotState::Free | SlotState::DoneExited => break,
        };
        if slot.transition(from, to) {
            break;
        }
    }
    wakeup::wake_scheduler();
}
