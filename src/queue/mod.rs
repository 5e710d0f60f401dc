//! The queue owns durable work: pgmq-shaped message queues (`queues`, `queue_messages`,
//! `queue_archive`) and the pipeline job engine on top of them (`jobs`, `job_stages`,
//! `payloads`, `job_events`, `dead_letters`, `stage_config`): claiming with visibility
//! timeouts, retries with backoff, dead letters, concurrency limits and crash recovery.

// Jobs reference the pages the pipeline crawls, so the pipeline's tables come first.
pgrx::extension_sql_file!("../../sql/queue.sql", name = "queue_schema", requires = ["pipeline_schema"]);
