//! `wait_crawl`: waits until the job's page is fetched and readable, and records what the page
//! says about itself: its title, its links (`page_links`) and the modification time it states.
//! With the direct crawler the page is there once `submit_crawl` completed; a scraping API that
//! renders asynchronously is awaited here.

use super::links::{self, Link};
use super::segment;
use crate::queue::stage::{Stage, StageError, Work};
use chrono::{DateTime, Utc};
use pgrx::prelude::*;
use serde_json::{json, Value};
use std::future::Future;

pub struct WaitCrawl;

pub struct Fetched {
    page_id: i64,
    /// The URL the page was fetched from, after redirects: its links are relative to it.
    url: String,
    html: String,
    content_hash: String,
}

pub struct Read {
    page_id: i64,
    title: Option<String>,
    links: Vec<Link>,
    stated_modified: Option<DateTime<Utc>>,
    content_hash: String,
}

impl Stage for WaitCrawl {
    const NAME: &'static str = "wait_crawl";
    type Input = Fetched;
    type Output = Read;

    fn prepare(&self, work: &Work) -> Result<Fetched, StageError> {
        let page_id = work.require_page()?;
        let (url, html, content_hash) = Spi::get_three_with_args::<String, String, String>(
            "SELECT coalesce(final_url, url), html, content_hash FROM pageperfect.pages WHERE id = $1",
            &[page_id.into()],
        )?;
        match (url, html, content_hash) {
            (Some(url), Some(html), Some(content_hash)) => Ok(Fetched { page_id, url, html, content_hash }),
            _ => Err(StageError::retryable(format!("page {page_id} is not fetched yet"))),
        }
    }

    fn run(&self, _work: &Work, page: Fetched) -> impl Future<Output = Result<Read, StageError>> + Send + 'static {
        async move {
            // Parsing off the worker's main thread: hostile markup parses slowly.
            tokio::task::spawn_blocking(move || {
                let document = scraper::Html::parse_document(&page.html);
                Read {
                    page_id: page.page_id,
                    title: segment::segment_document(&document).title,
                    links: links::page_links(&document, &page.url),
                    stated_modified: links::stated_modified(&document),
                    content_hash: page.content_hash,
                }
            })
            .await
            .map_err(|e| StageError::retryable(format!("reading the page failed: {e}")))
        }
    }

    fn store(&self, _work: &Work, read: Read) -> Result<Value, StageError> {
        Spi::run_with_args(
            "UPDATE pageperfect.pages SET title = $2, stated_modified_at = $3::timestamptz WHERE id = $1",
            &[read.page_id.into(), read.title.clone().into(), read.stated_modified.map(|t| t.to_rfc3339()).into()],
        )?;
        let (targets, anchors): (Vec<&str>, Vec<&str>) = read.links.iter().map(|l| (l.target.as_str(), l.anchor.as_str())).unzip();
        Spi::run_with_args("DELETE FROM pageperfect.page_links WHERE page_id = $1", &[read.page_id.into()])?;
        Spi::run_with_args(
            "INSERT INTO pageperfect.page_links (page_id, target_url, anchor_text)
             SELECT $1, l.target, l.anchor FROM ROWS FROM (pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::text[])) AS l (target, anchor)",
            &[read.page_id.into(), targets.into(), anchors.into()],
        )?;
        Ok(json!({
            "page_id": read.page_id,
            "title": read.title,
            "links": read.links.len(),
            "stated_modified_at": read.stated_modified,
            "content_hash": read.content_hash,
        }))
    }
}
