//! `wait_crawl`: waits until the job's page is fetched and readable, and records its title. With
//! the direct crawler the page is there once `submit_crawl` completed; a scraping API that
//! renders asynchronously is awaited here.

use super::segment;
use crate::queue::stage::{Stage, StageError, Work};
use pgrx::prelude::*;
use serde_json::{json, Value};
use std::future::Future;

pub struct WaitCrawl;

pub struct Fetched {
    page_id: i64,
    html: String,
    content_hash: String,
}

impl Stage for WaitCrawl {
    const NAME: &'static str = "wait_crawl";
    type Input = Fetched;
    type Output = (i64, Option<String>, String);

    fn prepare(&self, work: &Work) -> Result<Fetched, StageError> {
        let page_id = work.page_id.ok_or_else(|| StageError::retryable("the job has no page yet"))?;
        let (html, content_hash) = Spi::get_two_with_args::<String, String>(
            "SELECT html, content_hash FROM pageperfect.pages WHERE id = $1",
            &[page_id.into()],
        )?;
        match (html, content_hash) {
            (Some(html), Some(content_hash)) => Ok(Fetched { page_id, html, content_hash }),
            _ => Err(StageError::retryable(format!("page {page_id} is not fetched yet"))),
        }
    }

    fn run(&self, _work: &Work, page: Fetched) -> impl Future<Output = Result<(i64, Option<String>, String), StageError>> + Send + 'static {
        async move {
            let title = tokio::task::spawn_blocking(move || segment::segment(&page.html).title)
                .await
                .map_err(|e| StageError::retryable(format!("reading the page failed: {e}")))?;
            Ok((page.page_id, title, page.content_hash))
        }
    }

    fn store(&self, _work: &Work, (page_id, title, content_hash): (i64, Option<String>, String)) -> Result<Value, StageError> {
        Spi::run_with_args("UPDATE pageperfect.pages SET title = $2 WHERE id = $1", &[page_id.into(), title.clone().into()])?;
        Ok(json!({ "page_id": page_id, "title": title, "content_hash": content_hash }))
    }
}
