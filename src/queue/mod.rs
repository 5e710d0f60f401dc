//! The queue owns durable work: pgmq-shaped message queues (`queues`, `queue_messages`,
//! `queue_archive`; API in `sql/queue_api.sql`) and the pipeline job engine on top of them
//! (`jobs`, `job_stages`, `payloads`, `job_events`, `dead_letters`, `stage_config`; state
//! transitions in `sql/engine.sql`): the stage contract (`stage`), which work a
//! worker claims under the limits (`claim`), the pipeline worker's loop (`processor`), and the
//! user functions that need to know their caller (`api`, and `gate` for the queue functions).
//! `sql/pgmq.sql` gives pgmq's clients pgmq 1.13's schema over the same queues.

mod api;
mod gate;
mod raw;
pub mod claim;
pub mod processor;
pub mod stage;
#[cfg(feature = "test_stages")]
pub mod test_stages;

// Jobs reference the pages the pipeline crawls, so the pipeline's tables come first.
pgrx::extension_sql_file!("../../sql/queue.sql", name = "queue_schema", requires = ["pipeline_schema"]);
pgrx::extension_sql_file!("../../sql/queue_api.sql", name = "queue_api", requires = ["queue_schema"]);
pgrx::extension_sql_file!("../../sql/engine.sql", name = "engine", requires = ["queue_api"]);
// pgmq's own schema over these queues, for pgmq's clients: its wrappers call the gates.
pgrx::extension_sql_file!(
    "../../sql/pgmq.sql",
    name = "pgmq_compat",
    requires = [
        "queue_api",
        gate::pageperfect::create_queue,
        gate::pageperfect::send,
        gate::pageperfect::send_batch,
        "queue_read",
        gate::pageperfect::read_with_poll,
        gate::pageperfect::pop,
        gate::pageperfect::delete_one,
        gate::pageperfect::delete_many,
        gate::pageperfect::archive_one,
        gate::pageperfect::archive_many,
        gate::pageperfect::set_vt,
        gate::pageperfect::purge_queue,
        gate::pageperfect::drop_queue
    ]
);
