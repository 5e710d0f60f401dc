//! The HTTP layer owns every outgoing request: the client shared by the stages (timeouts, size
//! caps, redirects, the SSRF guard, retryable vs permanent failures) and the durable,
//! pg_net-compatible request queue (`http_requests`, `http_responses`) delivered by the workers.

pgrx::extension_sql_file!("../../sql/http.sql", name = "http_schema");

pub mod client;
