//! Stages for testing the engine before and beside the real ones, compiled in only with the
//! `test_stages` feature (`make test` installs with it). Each reads its knobs from the job's
//! options, so a test shapes a job's behaviour with `enqueue_job(..., options => ...)`.

use super::stage::{Stage, StageError, Work};
use serde_json::{json, Value};
use std::time::Duration;

fn option_u64(work: &Work, key: &str, default: u64) -> u64 {
    work.options.get(key).and_then(Value::as_u64).unwrap_or(default)
}

/// `test_sleep`: waits `sleep_ms` (default 50) and succeeds; with `touch_after`, then creates
/// that file (a test sees whether an attempt that timed out was really stopped).
pub struct Sleep;

impl Stage for Sleep {
    const NAME: &'static str = "test_sleep";
    type Input = (u64, Option<String>);
    type Output = u64;

    fn prepare(&self, work: &Work) -> Result<(u64, Option<String>), StageError> {
        let touch_after = work.options.get("touch_after").and_then(Value::as_str).map(str::to_string);
        Ok((option_u64(work, "sleep_ms", 50), touch_after))
    }

    fn run(&self, _work: &Work, (sleep_ms, touch_after): (u64, Option<String>)) -> impl std::future::Future<Output = Result<u64, StageError>> + Send + 'static {
        async move {
            tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
            if let Some(path) = touch_after {
                std::fs::write(&path, b"the attempt ran to its end").map_err(|e| StageError::permanent(format!("{path}: {e}")))?;
            }
            Ok(sleep_ms)
        }
    }

    fn store(&self, _work: &Work, slept_ms: u64) -> Result<Value, StageError> {
        Ok(json!({ "slept_ms": slept_ms }))
    }
}

/// `test_flaky`: attempts 1 to `fail_times` fail with a retryable error (reporting
/// `retry_after_seconds` as a Retry-After when given); later attempts succeed.
pub struct Flaky;

impl Stage for Flaky {
    const NAME: &'static str = "test_flaky";
    type Input = (u64, Option<u64>);
    type Output = i32;

    fn prepare(&self, work: &Work) -> Result<(u64, Option<u64>), StageError> {
        Ok((option_u64(work, "fail_times", 1), work.options.get("retry_after_seconds").and_then(Value::as_u64)))
    }

    fn run(
        &self,
        work: &Work,
        (fail_times, retry_after): (u64, Option<u64>),
    ) -> impl std::future::Future<Output = Result<i32, StageError>> + Send + 'static {
        let attempt = work.attempt;
        async move {
            if attempt as u64 <= fail_times {
                return Err(StageError::Retryable {
                    message: format!("test_flaky: attempt {attempt} of the {fail_times} that fail"),
                    retry_after: retry_after.map(Duration::from_secs),
                });
            }
            Ok(attempt)
        }
    }

    fn store(&self, _work: &Work, attempt: i32) -> Result<Value, StageError> {
        Ok(json!({ "succeeded_at_attempt": attempt }))
    }
}

/// `test_permanent`: fails with a permanent error (as a 404 would).
pub struct Permanent;

impl Stage for Permanent {
    const NAME: &'static str = "test_permanent";
    type Input = ();
    type Output = ();

    fn prepare(&self, _work: &Work) -> Result<(), StageError> {
        Ok(())
    }

    fn run(&self, work: &Work, _: ()) -> impl std::future::Future<Output = Result<(), StageError>> + Send + 'static {
        let url = work.url.clone();
        async move { Err(StageError::permanent(format!("test_permanent: {url} answered 404 Not Found"))) }
    }

    fn store(&self, _work: &Work, _: ()) -> Result<Value, StageError> {
        Ok(Value::Null)
    }
}

pgrx::extension_sql!(
    r#"
-- Test-only stages (built with the test_stages feature). No position: jobs name them.
INSERT INTO pageperfect.stage_config (stage, position, max_attempts, retry_delay_seconds, concurrency, timeout_seconds, user_runnable) VALUES
    ('test_sleep',     NULL, 3, 1, 8, 30, true),
    ('test_flaky',     NULL, 3, 1, 8, 30, true),
    ('test_permanent', NULL, 3, 1, 8, 30, true);
"#,
    name = "test_stages",
    requires = ["queue_schema"]
);
