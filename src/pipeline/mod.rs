//! The PagePerfect pipeline: the stages a workflow runs on a page, the pure logic they are thin
//! around, and the providers they call. A map:
//!
//! ```text
//!   stage (job order)     reads                                writes
//!   1 submit_crawl        the URL, robots.txt (robots_cache)    pages (html)
//!   2 wait_crawl          pages (or the scraping API's job)     pages (title, stated time), page_links
//!   3 segment_embed       pages.html                            page_embeddings, embedding_cache
//!   4 keyword_clustering  gsc_page_query_daily (owner's sites)  keyword_clusters, embedding_cache
//!   5 gap_analysis        clusters against paragraphs           rewrite_recommendations, content_scores
//!   6 rewrite_draft       the top gap                           rewrite_drafts (score before and after)
//! ```
//!
//! Each stage is one file with a `Stage` implementation (`queue::stage`): load its input over SPI
//! on the worker's main thread, `run` it on the tokio runtime (network, CPU), store the output
//! over SPI. The engine's `host_politeness` spaces the crawls of each host.
//!
//! To add a stage: a file here implementing `Stage`, a row in `stage_config` (sql/queue.sql and
//! an upgrade script), and an entry in `STAGES` (src/lib.rs), which is the job order's source.

// The stages, in job order.
pub mod submit_crawl;
pub mod wait_crawl;
pub mod segment_embed;
pub mod keyword_clustering;
pub mod gap_analysis;
pub mod rewrite_draft;

// Pure logic, with unit tests: HTML segmentation, links and stated times, robots.txt's
// Crawl-delay, DBSCAN, gap scoring, the content score.
pub mod segment;
pub mod links;
pub mod robots;
pub mod dbscan;
pub mod gap;
pub mod content_score;

// Providers: embeddings (`embed/`: local, openai), drafts (`draft/`: local, openai), the
// OpenAI-compatible API both use (`openai`), and the scraping API the crawl may use.
pub mod embed;
pub mod draft;
pub mod openai;
pub mod scraper_api;

use crate::http::client::HttpConfig;
use crate::{config, invalid_parameter};
use pgrx::prelude::*;
use crate::http::error::HttpError;
use crate::queue::stage::StageError;
use sha2::{Digest, Sha256};
use std::time::Duration;

pgrx::extension_sql_file!("../../sql/pipeline.sql", name = "pipeline_schema");
pgrx::extension_sql_file!(
    "../../sql/pipeline_api.sql",
    name = "pipeline_api",
    requires = ["engine", "gsc_schema", queue::api::pageperfect::enqueue_job]
);

/// Most redirects the crawler follows for one page.
const CRAWL_MAX_REDIRECTS: usize = 5;

/// The crawler's HTTP settings, read from the GUCs (on the worker's main thread).
pub fn crawl_http_config() -> HttpConfig {
    HttpConfig {
        user_agent: config::string(&config::CRAWL_USER_AGENT).unwrap_or_else(|| HttpConfig::default().user_agent),
        timeout: Duration::from_millis(config::CRAWL_TIMEOUT_MS.get().max(1) as u64),
        max_bytes: config::CRAWL_MAX_BYTES.get().max(1) as usize,
        max_redirects: CRAWL_MAX_REDIRECTS,
        allow_private: config::CRAWL_ALLOW_PRIVATE.get(),
    }
}

/// Lowercase hex SHA-256: page content hashes, so that unchanged inputs are recognised.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A digest of a stage's inputs for `Stage::input_hash`: of their `Debug` form, which names
/// every field and value (vectors included, to the last bit of each float).
pub fn input_digest(parts: &impl std::fmt::Debug) -> String {
    sha256_hex(format!("{parts:?}").as_bytes())
}

/// HTTP failures keep their classification: timeouts, resets, 429 and 5xx are retried (not
/// before a Retry-After), everything else is permanent.
impl From<HttpError> for StageError {
    fn from(error: HttpError) -> StageError {
        if error.is_retryable() {
            StageError::Retryable { retry_after: error.retry_after(), message: error.to_string() }
        } else {
            StageError::Permanent(error.to_string())
        }
    }
}

/// Postgres errors in a stage's SPI calls are worth another attempt.
impl From<pgrx::spi::Error> for StageError {
    fn from(error: pgrx::spi::Error) -> StageError {
        StageError::retryable(error.to_string())
    }
}

#[pg_schema]
mod pageperfect {
    use super::*;

    /// DBSCAN with cosine distance over `vectors` (n vectors of `dims` values, flattened): one
    /// label per vector, numbered as scikit-learn's DBSCAN numbers them (noise −1, clusters from 0
    /// in order of discovery). At most `dbscan::MAX_POINTS` vectors and
    /// `dbscan::MAX_NEIGHBOUR_ENTRIES` neighbours; a cancel or `statement_timeout` stops it.
    #[pg_extern(immutable, parallel_safe)]
    fn dbscan_cosine(vectors: Vec<f32>, dims: i32, eps: default!(f64, 0.3), min_points: default!(i32, 2)) -> Vec<i32> {
        if dims < 1 || min_points < 1 {
            invalid_parameter("dims and min_points must be at least 1");
        }
        let threads = config::DBSCAN_THREADS.get() as usize;
        dbscan::dbscan_cosine_interruptible(&vectors, dims as usize, eps, min_points as usize, threads, &mut || {
            pgrx::check_for_interrupts!()
        })
        .unwrap_or_else(|e| {
            let code = match e {
                dbscan::DbscanError::TooManyVectors(_) | dbscan::DbscanError::TooManyNeighbours => {
                    PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED
                }
                dbscan::DbscanError::OutOfMemory(_) => PgSqlErrorCode::ERRCODE_OUT_OF_MEMORY,
                _ => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            };
            crate::raise(code, e.to_string())
        })
    }
}
