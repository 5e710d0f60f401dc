//! Monitoring owns what operators look at: worker heartbeats (`workers`) and health
//! (`worker_health`, `get_scheduler_health`), `health_checks`, `metrics_data`,
//! `monitoring_alerts` with their webhook (`notify_alert`), the sweeper and cleanup logs, and the
//! `trigger_*` functions and `initialize_scheduler()` of the default cron jobs (sql/monitor_api.sql);
//! and the scheduler's fallback delivery of alerts while no pipeline worker runs (`fallback`).

pub mod fallback;
pub mod notify_alert;
#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

pgrx::extension_sql_file!("../../sql/monitor.sql", name = "monitor_schema");
pgrx::extension_sql_file!(
    "../../sql/monitor_api.sql",
    name = "monitor_api",
    requires = ["monitor_schema", "engine", "scheduler_api", "pipeline_api", "gsc_api", "http_schema", run_store::pageperfect::fail_runs_of_vanished_processes]
);
