//! Monitoring owns what operators look at: worker heartbeats (`workers`) and health
//! (`worker_health`, `get_scheduler_health`), `health_checks`, `metrics_data`,
//! `monitoring_alerts` with their webhook, and the sweeper and cleanup logs.

pgrx::extension_sql_file!("../../sql/monitor.sql", name = "monitor_schema");
