//! The HTTP layer owns every outgoing request: the client shared by the stages (`client`:
//! timeouts, size caps, redirects), the SSRF guard it and the gate apply (`guard`), what fails and
//! whether a retry helps (`error`), and the durable,
//! pg_net-compatible request queue (`http_requests`, `http_responses`; `http_get`, `http_post`,
//! `http_delete`, `http_collect_response` in schemas `pageperfect` and `net`), whose requests
//! enter through one gate (`api`: owner, SSRF guard, time limit) and that the pipeline workers
//! deliver (`delivery`).

pgrx::extension_sql_file!("../../sql/http.sql", name = "http_schema");
pgrx::extension_sql_file!(
    "../../sql/http_api.sql",
    name = "http_api",
    requires = ["http_schema", "engine", pageperfect::wake_pipeline_workers, api::pageperfect::queue_http_request]
);

mod api;
pub mod client;
pub mod delivery;
pub mod error;
mod guard;

#[pgrx::pg_schema]
mod pageperfect {
    use pgrx::prelude::*;

    /// Wakes the pipeline workers when the calling transaction commits (requests and jobs
    /// queued from SQL); does nothing when pageperfect is not preloaded.
    #[pg_extern(volatile)]
    fn wake_pipeline_workers() {
        crate::wakeup::wake_at_commit(crate::wakeup::Wake::PipelineWorkers);
    }
}
