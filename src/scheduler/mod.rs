//! The scheduler owns cron: the `job` and `job_run_details` tables (and pg_cron's `cron.job`,
//! `cron.job_run_details` names for them), parsing and evaluating cron schedules, and the
//! scheduler background worker that starts each due run in its own backend as the job's user.

pgrx::extension_sql_file!("../../sql/scheduler.sql", name = "scheduler_schema");
