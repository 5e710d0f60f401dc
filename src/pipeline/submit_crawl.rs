//! `submit_crawl`: fetches the job's page (robots.txt first, cached a day per origin) through the
//! shared HTTP client, with the crawler's timeout, size cap, redirect limit and SSRF guard, and
//! stores the HTML in `pages`. With `crawl_provider = scraper_api` both go through the scraping
//! API instead. Only HTML is accepted; a 404, a non-HTML answer or a robots.txt disallow is
//! permanent, timeouts, 429 and 5xx are retried. The site's `Crawl-delay` goes to the engine's
//! per-host politeness (`note_crawl_delay`), which spaces the next crawls of the host.

use super::robots::crawl_delay;
use super::scraper_api::ScraperApi;
use super::{crawl_http_config, sha256_hex};
use crate::config::{self, CrawlProvider};
use crate::http::client::{check_status, HttpClient, HttpConfig, Request, Response};
use crate::http::error::HttpError;
use crate::queue::claim::url_host;
use crate::queue::stage::{Stage, StageError, Work};
use pgrx::prelude::*;
use serde_json::{json, Value};
use std::future::Future;
use url::Url;

pub struct SubmitCrawl;

pub struct Input {
    http: HttpConfig,
    /// The scraping API to fetch through, or none to fetch directly.
    via: Option<ScraperApi>,
    url: String,
    page_id: i64,
    previous_hash: Option<String>,
    /// The cached robots.txt of the page's origin: `Some(None)` means it has none (allow all).
    cached_robots: Option<Option<String>>,
}

pub struct Output {
    page_id: i64,
    status: u16,
    final_url: String,
    content_type: Option<String>,
    html: String,
    content_hash: String,
    changed: bool,
    /// robots.txt fetched this time, to cache: (origin, status, body when it has rules).
    robots: Option<(String, u16, Option<String>)>,
    /// The page's host and the Crawl-delay its robots.txt sets for us.
    host: Option<String>,
    crawl_delay: Option<f64>,
}

fn origin(url: &str) -> Result<String, StageError> {
    let parsed = Url::parse(url).map_err(|e| StageError::permanent(format!("invalid URL \"{url}\": {e}")))?;
    match parsed.origin() {
        url::Origin::Tuple(..) => Ok(parsed.origin().ascii_serialization()),
        url::Origin::Opaque(_) => Err(StageError::permanent(format!("invalid URL \"{url}\": no host to crawl"))),
    }
}

/// A failure fetching `url`, said as the scraping API's (and scrubbed of its key) when it went through one.
fn failure(via: Option<&ScraperApi>, url: &str, error: HttpError) -> StageError {
    match via {
        Some(api) => api.failure(url, error),
        None => error.into(),
    }
}

/// Fetches `url` directly or through the scraping API; the response is `url`'s either way.
async fn fetch(client: &HttpClient, via: Option<&ScraperApi>, url: &str) -> Result<Response, StageError> {
    let request = via.map_or_else(|| Request::get(url), |api| api.request(url));
    let response = client.send(request).await.map_err(|error| failure(via, url, error))?;
    // The API answers for the page (and follows its redirects itself); its own URL has the key.
    Ok(if via.is_some() { Response { final_url: url.to_string(), ..response } } else { response })
}

/// `response` to `url` if it is a success (2xx), else why not.
fn successful(via: Option<&ScraperApi>, url: &str, response: Response) -> Result<Response, StageError> {
    check_status(response).map_err(|error| failure(via, url, error))
}

/// Fetches `origin`'s robots.txt: `None` when it has none (4xx), its text otherwise. A server
/// error or timeout fails the attempt (to be retried), as crawlers must not guess.
async fn fetch_robots(client: &HttpClient, via: Option<&ScraperApi>, origin: &str) -> Result<(u16, Option<String>), StageError> {
    let url = format!("{origin}/robots.txt");
    let response = fetch(client, via, &url).await?;
    if (400..500).contains(&response.status) {
        return Ok((response.status, None));
    }
    let response = successful(via, &url, response)?;
    Ok((response.status, Some(response.text())))
}

fn is_html(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|t| {
        let essence = t.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        essence == "text/html" || essence == "application/xhtml+xml"
    })
}

impl Stage for SubmitCrawl {
    const NAME: &'static str = "submit_crawl";
    type Input = Input;
    type Output = Output;

    fn prepare(&self, work: &Work) -> Result<Input, StageError> {
        let origin = origin(&work.url)?;
        // The job's page: one row per (owner, URL), kept across jobs.
        let (page_id, previous_hash) = Spi::get_two_with_args::<i64, String>(
            "WITH page AS (
                 INSERT INTO pageperfect.pages AS p (url, owner) VALUES ($1, $2)
                 ON CONFLICT (owner, url) DO UPDATE SET updated_at = p.updated_at
                 RETURNING id, content_hash
             ), job AS (
                 UPDATE pageperfect.jobs j SET page_id = page.id FROM page WHERE j.id = $3::uuid
             )
             SELECT id, content_hash FROM page",
            &[work.url.as_str().into(), work.owner.as_str().into(), work.job_id.as_str().into()],
        )?;
        let page_id = page_id.ok_or_else(|| StageError::retryable("no page row"))?;
        let cached_robots = Spi::connect(|client| {
            let rows = client.select(
                "SELECT body FROM pageperfect.robots_cache WHERE origin = $1 AND fetched_at > now() - interval '1 day'",
                None,
                &[origin.as_str().into()],
            )?;
            if rows.is_empty() {
                Ok::<_, pgrx::spi::Error>(None)
            } else {
                Ok(Some(rows.first().get_one::<String>()?))
            }
        })?;
        let (http, via) = match config::CRAWL_PROVIDER.get() {
            CrawlProvider::Direct => (crawl_http_config(), None),
            CrawlProvider::ScraperApi => (ScraperApi::http_config(), Some(ScraperApi::configured(&work.options)?)),
        };
        Ok(Input { http, via, url: work.url.clone(), page_id, previous_hash, cached_robots })
    }

    fn run(&self, _work: &Work, input: Input) -> impl Future<Output = Result<Output, StageError>> + Send + 'static {
        async move {
            let client = HttpClient::new(input.http.clone())?;
            let origin = origin(&input.url)?;
            let (robots_body, robots) = match input.cached_robots {
                Some(body) => (body, None),
                None => {
                    let (status, body) = fetch_robots(&client, input.via.as_ref(), &origin).await?;
                    (body.clone(), Some((origin, status, body)))
                }
            };
            let crawl_delay = robots_body.as_deref().and_then(|rules| crawl_delay(rules, &input.http.user_agent));
            if let Some(rules) = &robots_body {
                let mut matcher = robotstxt::DefaultMatcher::default();
                if !matcher.one_agent_allowed_by_robots(rules, &input.http.user_agent, &input.url) {
                    return Err(StageError::permanent(format!("{} is disallowed by its site's robots.txt", input.url)));
                }
            }
            let via = input.via.as_ref();
            let response = successful(via, &input.url, fetch(&client, via, &input.url).await?)?;
            if !is_html(response.content_type.as_deref()) {
                return Err(StageError::permanent(format!(
                    "{} is not an HTML page (Content-Type: {})",
                    response.final_url,
                    response.content_type.as_deref().unwrap_or("none")
                )));
            }
            let content_hash = sha256_hex(&response.body);
            Ok(Output {
                page_id: input.page_id,
                status: response.status,
                changed: input.previous_hash.as_deref() != Some(content_hash.as_str()),
                html: response.text(),
                final_url: response.final_url,
                content_type: response.content_type,
                content_hash,
                robots,
                host: url_host(&input.url),
                crawl_delay,
            })
        }
    }

    fn store(&self, _work: &Work, output: Output) -> Result<Value, StageError> {
        if let Some((origin, status, body)) = &output.robots {
            Spi::run_with_args(
                "INSERT INTO pageperfect.robots_cache (origin, status_code, body, fetched_at) VALUES ($1, $2, $3, now())
                 ON CONFLICT (origin) DO UPDATE SET status_code = excluded.status_code, body = excluded.body,
                                                    fetched_at = excluded.fetched_at",
                &[origin.as_str().into(), i32::from(*status).into(), body.clone().into()],
            )?;
        }
        if let Some(host) = &output.host {
            Spi::run_with_args(
                "SELECT pageperfect.note_crawl_delay($1, $2)",
                &[host.as_str().into(), output.crawl_delay.into()],
            )?;
        }
        Spi::run_with_args(
            "UPDATE pageperfect.pages
                SET status_code = $2, final_url = $3, content_type = $4, html = $5, content_hash = $6,
                    content_changed_at = CASE WHEN content_hash IS DISTINCT FROM $6 THEN now() ELSE content_changed_at END,
                    fetched_at = now(), last_error = NULL, updated_at = now()
              WHERE id = $1",
            &[
                output.page_id.into(),
                i32::from(output.status).into(),
                output.final_url.as_str().into(),
                output.content_type.clone().into(),
                output.html.as_str().into(),
                output.content_hash.as_str().into(),
            ],
        )?;
        Ok(json!({
            "page_id": output.page_id,
            "status_code": output.status,
            "final_url": output.final_url,
            "content_hash": output.content_hash,
            "bytes": output.html.len(),
            "changed": output.changed,
        }))
    }
}
