//! The queue owns durable work: pgmq-shaped message queues (`queues`, `queue_messages`,
//! `queue_archive`; API in `sql/queue_api.sql`) and the pipeline job engine on top of them
//! (`jobs`, `job_stages`, `payloads`, `job_events`, `dead_letters`, `stage_config`; state
//! transitions in `sql/engine.sql`): the stage contract (`stage`), which work a
//! worker claims under the limits (`claim`), the pipeline worker's loop (`processor`), and the
//! user functions that need to know their caller (`api`, and `gate` for the queue functions).

mod api;
mod gate;
pub mod claim;
pub mod processor;
pub mod stage;
#[cfg(feature = "test_stages")]
pub mod test_stages;

// Jobs reference the pages the pipeline crawls, so the pipeline's tables come first.
pgrx::extension_sql_file!("../../sql/queue.sql", name = "queue_schema", requires = ["pipeline_schema"]);
pgrx::extension_sql_file!("../../sql/queue_api.sql", name = "queue_api", requires = ["queue_schema"]);
pgrx::extension_sql_file!("../../sql/engine.sql", name = "engine", requires = ["queue_api"]);
