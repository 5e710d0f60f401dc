//! The contract between the job engine and the stages it runs. The engine knows no stage: the
//! crate root hands the processor the list of stages this build has (`STAGES` in `lib.rs`).
//!
//! A stage runs in three steps so that no transaction is open while it waits on the network:
//! `prepare` reads what it needs (main thread, SPI, its own transaction), `run` does the work
//! (tokio runtime, no SPI), and `store` writes the results (main thread, SPI, in the same
//! transaction that completes the stage, advances the job and acknowledges its message).

use serde_json::Value;
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// One claimed attempt of one stage of a job.
#[derive(Clone, Debug)]
pub struct Work {
    pub job_id: String,
    pub stage: String,
    /// 1 for the first attempt.
    pub attempt: i32,
    pub url: String,
    pub page_id: Option<i64>,
    pub owner: String,
    /// The job's options (`run_workflow`'s and the test stages' knobs).
    pub options: Value,
    pub force_update: bool,
    /// The stage's time limit; the engine fails the attempt when `run` takes longer.
    pub timeout: Duration,
    /// The digest of this attempt's inputs, when its stage gives one (see `Stage::input_hash`);
    /// recorded with the completed stage.
    pub input_hash: Option<String>,
}

impl Work {
    /// When calls made by this attempt should stop retrying: a little before the engine cuts the
    /// attempt at its timeout, so that the last failure is reported, not a cut.
    pub fn call_deadline(&self) -> std::time::Instant {
        std::time::Instant::now() + self.timeout.mul_f64(0.9)
    }

    /// The job's page, for stages after the crawl: retried until the crawl has recorded it.
    pub fn require_page(&self) -> Result<i64, StageError> {
        self.page_id.ok_or_else(|| StageError::retryable("the job has no page yet"))
    }
}

/// Why an attempt failed, and whether trying again can help.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StageError {
    /// Timeouts, resets, 429 and 5xx: retried with backoff, not before `retry_after`.
    #[error("{message}")]
    Retryable { message: String, retry_after: Option<Duration> },
    /// A 404, a bad URL, unusable content: straight to the dead letters.
    #[error("{0}")]
    Permanent(String),
    /// Returned by `store` that wrote what was worth keeping of a failed attempt (the batches a
    /// model server did embed before it failed): the engine commits those writes with the
    /// failure, which is the inner error.
    #[error("{0}")]
    Kept(Box<StageError>),
}

impl StageError {
    pub fn retryable(message: impl Into<String>) -> StageError {
        StageError::Retryable { message: message.into(), retry_after: None }
    }

    pub fn permanent(message: impl Into<String>) -> StageError {
        StageError::Permanent(message.into())
    }

    pub fn is_permanent(&self) -> bool {
        match self {
            StageError::Permanent(_) => true,
            StageError::Kept(inner) => inner.is_permanent(),
            StageError::Retryable { .. } => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            StageError::Retryable { retry_after, .. } => *retry_after,
            StageError::Permanent(_) => None,
            StageError::Kept(inner) => inner.retry_after(),
        }
    }
}

/// A Postgres error while a stage reads or writes is worth another attempt.
impl From<String> for StageError {
    fn from(message: String) -> StageError {
        StageError::retryable(message)
    }
}

/// One stage of the pipeline. Implement this; the engine does the rest.
pub trait Stage: Send + Sync + 'static {
    /// The name in `stage_config` and `job_stages`.
    const NAME: &'static str;
    /// What `prepare` hands to `run`: owned Rust data, never Postgres memory.
    type Input: Send + 'static;
    type Output: Send + 'static;

    /// Reads what the attempt needs. Main thread, with SPI, in a short transaction of its own.
    fn prepare(&self, work: &Work) -> Result<Self::Input, StageError>;

    /// Does the work: HTTP and CPU, no SPI. Runs on the worker's tokio runtime.
    fn run(&self, work: &Work, input: Self::Input)
        -> impl Future<Output = Result<Self::Output, StageError>> + Send + 'static;

    /// Writes the results and returns the payload kept in `payloads`. Main thread, with SPI, in
    /// the transaction that completes the stage: if it fails, nothing of the attempt is kept.
    fn store(&self, work: &Work, output: Self::Output) -> Result<Value, StageError>;

    /// A digest of everything `run` depends on, for stages whose results can be reused: when the
    /// last completed run of this stage for the same owner and URL had the same digest, the
    /// engine completes the attempt with that run's payload instead of running it (unless the
    /// job says `force_update`). The results it wrote are still the page's latest, as no run of
    /// the stage for the page came after it. `None`: always run.
    fn input_hash(&self, _work: &Work, _input: &Self::Input) -> Option<String> {
        None
    }
}

type Erased = Box<dyn Any + Send>;
pub type StageFuture = Pin<Box<dyn Future<Output = Result<Erased, StageError>> + Send>>;

/// [`Stage`] with its types erased, so that one list can hold every stage.
pub trait AnyStage: Send + Sync {
    fn name(&self) -> &'static str;
    fn prepare(&self, work: &Work) -> Result<Erased, StageError>;
    fn run(&self, work: &Work, input: Erased) -> StageFuture;
    fn store(&self, work: &Work, output: Erased) -> Result<Value, StageError>;
    fn input_hash(&self, work: &Work, input: &Erased) -> Option<String>;
}

impl<S: Stage> AnyStage for S {
    fn name(&self) -> &'static str {
        S::NAME
    }

    fn prepare(&self, work: &Work) -> Result<Erased, StageError> {
        Stage::prepare(self, work).map(|input| Box::new(input) as Erased)
    }

    fn run(&self, work: &Work, input: Erased) -> StageFuture {
        match input.downcast::<S::Input>() {
            Ok(input) => {
                let future = Stage::run(self, work, *input);
                Box::pin(async move { future.await.map(|output| Box::new(output) as Erased) })
            }
            Err(_) => Box::pin(async { Err(StageError::permanent(format!("stage {}: input of the wrong type", S::NAME))) }),
        }
    }

    fn input_hash(&self, work: &Work, input: &Erased) -> Option<String> {
        input.downcast_ref::<S::Input>().and_then(|input| Stage::input_hash(self, work, input))
    }

    fn store(&self, work: &Work, output: Erased) -> Result<Value, StageError> {
        match output.downcast::<S::Output>() {
            Ok(output) => Stage::store(self, work, *output),
            Err(_) => Err(StageError::permanent(format!("stage {}: output of the wrong type", S::NAME))),
        }
    }
}
