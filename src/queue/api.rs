//! The job engine's user-facing functions that must know their caller: `enqueue_job` (the job
//! is the caller's), `cancel_job` (only the caller's job) and `retry_dead_letter` (only a dead
//! letter the caller can see). They
//! check as the caller, then change the engine's tables as the owner (users have no write
//! privilege on them), and wake the pipeline workers when the transaction commits.

use crate::backoff::stage_retry_delay;
use crate::wakeup::{wake_at_commit, Wake};
use crate::{as_owner, current_user, invalid_parameter};
use pgrx::prelude::*;
use pgrx::{JsonB, Uuid};
use std::time::Duration;

/// Raises unless every stage in `stages` may be enqueued by roles (`stage_config.user_runnable`):
/// a system stage (`notify_alert`, `ingest_gsc`) runs with the service's credentials and reads
/// what its creator chose, so only the functions meant to create it do. Unknown stages are left
/// to `create_job`, which names them.
fn refuse_system_stages(stages: &[String]) {
    let refused = as_owner(|| {
        Spi::get_one_with_args::<String>(
            "SELECT (SELECT c.stage FROM pageperfect.stage_config c WHERE c.stage = ANY ($1) AND NOT c.user_runnable LIMIT 1)",
            &[stages.to_vec().into()],
        )
    })
    .unwrap_or_else(|e| error!("{e}"));
    if let Some(stage) = refused {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("stage \"{stage}\" cannot be enqueued by roles"),
            "Only pageperfect's own functions create jobs that run it; enqueue pipeline stages, or call run_workflow()."
        );
    }
}

/// Raises "<what> does not exist" (SQLSTATE P0002) unless `exists_sql` (an `EXISTS` over `$1`)
/// is true as the caller: row-level security shows a role only its own jobs and their dead
/// letters, so another role's look the same as none.
fn require_visible(exists_sql: &str, id: pgrx::datum::DatumWithOid, what: &str) {
    let visible = Spi::get_one_with_args::<bool>(exists_sql, &[id]).unwrap_or_else(|e| error!("{e}")).unwrap_or(false);
    if !visible {
        ereport!(ERROR, PgSqlErrorCode::ERRCODE_NO_DATA_FOUND, format!("{what} does not exist"));
    }
}

#[pg_schema]
mod pageperfect {
    use super::*;

    /// The host of `url` as the per-host crawl limits count it (lowercase, no port), or NULL.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn url_host(url: &str) -> Option<String> {
        crate::queue::claim::url_host(url)
    }

    /// Queues a job for `url` that runs `stages` in order (NULL: the default pipeline) minus
    /// `skip_steps`; it belongs to the caller. Returns its id. With `unique_key`, while a job of
    /// the caller's with that key is queued or running (or was created within `unique_window`),
    /// returns that job instead of queueing another.
    #[pg_extern(volatile)]
    #[allow(clippy::too_many_arguments)]
    fn enqueue_job(
        url: &str,
        stages: default!(Option<Vec<String>>, "NULL"),
        options: default!(JsonB, "'{}'"),
        priority: default!(i32, 0),
        skip_steps: default!(Vec<String>, "'{}'"),
        force_update: default!(bool, false),
        unique_key: default!(Option<&str>, "NULL"),
        unique_window: default!(Option<pgrx::datum::Interval>, "NULL"),
    ) -> Uuid {
        crate::refuse_if_read_only("pageperfect.enqueue_job()");
        if !options.0.is_object() {
            invalid_parameter(format!("options must be a JSON object, not {}", options.0));
        }
        let owner = current_user();
        if !unsafe { pg_sys::superuser() } {
            refuse_system_stages(stages.as_deref().unwrap_or_default());
        }
        let job = as_owner(|| {
            Spi::get_one_with_args::<Uuid>(
                "SELECT coalesce(CASE WHEN $8::text IS NOT NULL THEN pageperfect.unique_job($1, $8, $9) END,
                                 pageperfect.create_job($1, $2, $3, $4, $5, $6, $7, $8))",
                &[
                    owner.into(),
                    url.into(),
                    stages.into(),
                    options.into(),
                    priority.into(),
                    skip_steps.into(),
                    force_update.into(),
                    unique_key.into(),
                    unique_window.into(),
                ],
            )
        })
        .unwrap_or_else(|e| error!("{e}"))
        .unwrap_or_else(|| error!("create_job returned no job"));
        wake_at_commit(Wake::PipelineWorkers);
        job
    }

    /// Cancels the caller's job `id` if it is queued or running: its queued stages are dropped,
    /// and a stage attempt in progress writes nothing when it ends. False when it had ended.
    #[pg_extern(volatile, strict)]
    fn cancel_job(id: Uuid) -> bool {
        crate::refuse_if_read_only("pageperfect.cancel_job()");
        require_visible("SELECT EXISTS (SELECT FROM pageperfect.jobs WHERE id = $1)", id.into(), &format!("job {id}"));
        let cancelled = as_owner(|| Spi::get_one_with_args::<bool>("SELECT pageperfect.cancel_job_stages($1)", &[id.into()]))
            .unwrap_or_else(|e| error!("{e}"))
            .unwrap_or(false);
        wake_at_commit(Wake::PipelineWorkers);
        cancelled
    }

    /// Puts dead letter `id` back in its queue (a pipeline stage gets a fresh set of attempts).
    /// Returns the new message id.
    #[pg_extern(volatile, strict)]
    fn retry_dead_letter(id: i64) -> i64 {
        crate::refuse_if_read_only("pageperfect.retry_dead_letter()");
        require_visible("SELECT EXISTS (SELECT FROM pageperfect.dead_letters WHERE id = $1)", id.into(), &format!("dead letter {id}"));
        let msg_id = as_owner(|| Spi::get_one_with_args::<i64>("SELECT pageperfect.requeue_dead_letter($1)", &[id.into()]))
            .unwrap_or_else(|e| error!("{e}"))
            .unwrap_or_else(|| error!("requeue_dead_letter returned no message"));
        wake_at_commit(Wake::PipelineWorkers);
        msg_id
    }

    /// Seconds a stage waits before attempt `attempt + 1`: `base_seconds · 2^(attempt − 1)` with
    /// up to 25% jitter, never less than `retry_after_seconds`, at most a day.
    #[pg_extern(volatile, parallel_safe)]
    fn retry_delay_seconds(base_seconds: i32, attempt: i32, retry_after_seconds: default!(Option<f64>, "NULL")) -> f64 {
        let retry_after = retry_after_seconds.filter(|s| s.is_finite() && *s > 0.0).map(Duration::from_secs_f64);
        let base = Duration::from_secs(base_seconds.max(0) as u64);
        stage_retry_delay(base, attempt, retry_after, fastrand::f64()).as_secs_f64()
    }
}
