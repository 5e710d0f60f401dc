//! pageperfect: an SEO content pipeline that runs inside PostgreSQL.
//!
//! One module per concern; each owns its hand-written SQL under `sql/` and its Rust code:
//! `scheduler` (pg_cron-compatible cron), `queue` (pgmq-shaped queues and the job engine),
//! `pipeline` (the PagePerfect stages), `http` (outgoing HTTP), `gsc` (Search Console and the
//! CTR curve), `monitor` (health, metrics, alerts), `insights` (content decay, cannibalization, link
//! suggestions and the content score, read from what the others keep). `lifecycle` says which
//! SQL version the library serves (upgrades, and what the workers do meanwhile), `config`
//! defines the settings, `worker` the background-worker runtime that the scheduler and pipeline
//! workers share, and `threads`
//! what threads of their own (tokio's, DBSCAN's) must do.
//!
//! Dependencies run one way: the runtime (`worker`) knows only the `Duty` it is given, the job
//! engine (`queue`) only the stages it is handed; this root puts them together (the workers'
//! entry point and `STAGES`).

use pgrx::prelude::*;

pub mod backoff;
pub mod config;
pub mod gsc;
pub mod http;
pub mod insights;
pub mod lifecycle;
pub mod monitor;
pub mod pipeline;
pub mod queue;
pub mod scheduler;
pub mod secrets;
pub mod shmem;
pub mod threads;
pub mod wakeup;
pub mod worker;

::pgrx::pg_module_magic!(name, version);

pgrx::extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
// What pg_dump keeps of every module's tables: after all of them exist and are seeded.
pgrx::extension_sql_file!(
    "../sql/backup.sql",
    name = "backup",
    requires = ["scheduler_api", "engine", "pipeline_api", "gsc_api", "http_api", "monitor_api", "pgmq_compat"]
);
pgrx::extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

/// `text` cut to at most `max_chars` characters, with an ellipsis when cut: prompts, job
/// results and error messages quote long texts this way.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", text[..cut].trim_end()),
        None => text.to_string(),
    }
}

/// Raises SQLSTATE 22023 (invalid_parameter_value): the error for bad user input.
pub(crate) fn invalid_parameter(message: impl Into<String>) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message)
}

/// Raises an ERROR with this SQLSTATE.
pub(crate) fn raise(code: PgSqlErrorCode, message: impl Into<String>) -> ! {
    ereport!(ERROR, code, message.into());
}

/// Raises an ERROR with this SQLSTATE and, when given, a DETAIL and a HINT line.
#[track_caller]
pub(crate) fn raise_with(code: PgSqlErrorCode, message: impl Into<String>, detail: Option<String>, hint: Option<&str>) -> ! {
    let mut report = pgrx::pg_sys::panic::ErrorReport::new(code, message.into(), "pageperfect");
    if let Some(detail) = detail {
        report = report.set_detail(detail);
    }
    if let Some(hint) = hint {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("an ERROR does not return")
}

/// The only search_path under which SQL runs with raised rights (`as_owner`, the workers,
/// `SECURITY DEFINER` and every function the extension creates): the caller's schemas could
/// otherwise plant operators, functions or types that the raised code would run. `pg_temp` is
/// named last so that temporary objects never shadow catalog ones.
pub const SAFE_SEARCH_PATH: &std::ffi::CStr = c"pg_catalog, pg_temp";

/// Runs `body` as the bootstrap superuser (RLS and table privileges then allow the write the
/// caller's checks permitted), with `search_path` pinned to [`SAFE_SEARCH_PATH`], as a
/// `SECURITY DEFINER ... SET search_path` function would. Both are restored on return; an
/// error restores them with the (sub)transaction it aborts.
pub(crate) fn as_owner<R>(body: impl FnOnce() -> R) -> R {
    let mut user = pg_sys::Oid::INVALID;
    let mut context = 0;
    let guc_level = unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        let level = pg_sys::NewGUCNestLevel();
        pin_search_path(pg_sys::GucAction::GUC_ACTION_SAVE);
        pg_sys::SetUserIdAndSecContext(
            pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
            context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
        level
    };
    let result = body();
    unsafe {
        pg_sys::AtEOXact_GUC(true, guc_level);
        pg_sys::SetUserIdAndSecContext(user, context);
    }
    result
}

/// Sets `search_path` to [`SAFE_SEARCH_PATH`]: for the session (`GUC_ACTION_SET`, the workers
/// right after connecting) or until the current GUC nest level ends (`GUC_ACTION_SAVE`).
pub(crate) fn pin_search_path(action: pg_sys::GucAction::Type) {
    unsafe {
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            SAFE_SEARCH_PATH.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            PgLogLevel::ERROR as i32,
            false,
        );
    }
}

/// Refuses `function` in a read-only transaction, and so on a hot standby, where every
/// transaction is: Postgres's own error (SQLSTATE 25006, "cannot execute cron.schedule() in a
/// read-only transaction") before anything else is tried.
pub(crate) fn refuse_if_read_only(function: impl std::fmt::Display) {
    // The flag alone on the common path: every queue send and read passes here, and the name
    // is only needed for the error.
    if unsafe { !pg_sys::XactReadOnly } {
        return;
    }
    let name = std::ffi::CString::new(function.to_string()).unwrap_or_default();
    unsafe { pg_sys::PreventCommandIfReadOnly(name.as_ptr()) }
}

/// The role the calling SQL runs as (`CURRENT_USER`): the caller of a function that runs as
/// its caller, before `as_owner` changes it.
pub(crate) fn current_user() -> String {
    unsafe { std::ffi::CStr::from_ptr(pg_sys::GetUserNameFromId(pg_sys::GetUserId(), false)) }
        .to_string_lossy()
        .into_owned()
}

/// Entry point of every pageperfect background worker: the runtime (`worker`) with its duty, the
/// scheduler's dispatcher or a pipeline worker's processor of the job engine's stages.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pageperfect_worker_main(argument: pg_sys::Datum) {
    worker::run_worker(argument, |role| match role {
        // Beside its own duty, the scheduler posts alerts while no pipeline worker runs.
        worker::Role::Scheduler => Box::new(worker::Both(scheduler::dispatcher::Dispatcher::start(), monitor::fallback::AlertFallback::default())),
        worker::Role::Pipeline(number) => Box::new(queue::processor::Processor::start(number, STAGES)),
    });
}

/// Every stage this build can run: the pipeline's, Search Console ingestion, the alert webhook,
/// and with feature `test_stages` the engine's test stages. The job engine is handed this list;
/// it knows no stage by name.
static STAGES: &[&dyn queue::stage::AnyStage] = &[
    &pipeline::submit_crawl::SubmitCrawl,
    &pipeline::wait_crawl::WaitCrawl,
    &pipeline::segment_embed::SegmentEmbed,
    &pipeline::keyword_clustering::KeywordClustering,
    &pipeline::gap_analysis::GapAnalysis,
    &pipeline::rewrite_draft::RewriteDraft,
    &gsc::ingest::IngestGsc,
    &monitor::notify_alert::NotifyAlert,
    #[cfg(feature = "test_stages")]
    &queue::test_stages::Sleep,
    #[cfg(feature = "test_stages")]
    &queue::test_stages::Flaky,
    #[cfg(feature = "test_stages")]
    &queue::test_stages::Permanent,
];

#[allow(non_snake_case)]
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // Static workers can only be registered while the postmaster loads shared_preload_libraries;
    // a backend that loads the library later (CREATE EXTENSION, a function call) skips them.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    config::define_gucs(preloading);
    if preloading {
        shmem::request(&[scheduler::slots::SEGMENT, wakeup::SEGMENT]);
        worker::register_workers();
    }
}

#[cfg(any(test, feature = "pg_test"))]
mod install_tests;

/// Required by `cargo pgrx test`: the throw-away test cluster preloads the extension and points
/// its workers at the test database.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pageperfect'", "pageperfect.database_name = 'pgrx_tests'"]
    }
}

#[cfg(test)]
mod tests {
    use super::excerpt;

    #[test]
    fn excerpts_cut_on_characters_and_mark_the_cut() {
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt("crème brûlée", 5), "crème…");
        assert_eq!(excerpt("two words", 4), "two…");
    }
}
