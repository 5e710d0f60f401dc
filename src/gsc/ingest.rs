//! The `ingest_gsc` stage: one day of Search Analytics rows (date, page, query) for each site,
//! paged by 25,000, upserted into `gsc_page_query_daily`, with each site's outcome in
//! `gsc_ingestions`. A site that fails is reported and the others still load; only a failure to
//! authenticate or to list the sites fails the attempt. Also `set_gsc_credentials`, which checks
//! a service-account key before storing it.

use super::auth::ServiceAccount;
use super::daily_rows::{DailyRow, DailyRows};
use super::search_analytics::{parse_response, parse_sites, query_body, query_url, sites_url, AnalyticsRow, DEFAULT_API_BASE, PAGE_ROWS};
use super::session::{CallError, Session};
use crate::config;
use crate::http::client::{HttpClient, HttpConfig, Request};
use crate::queue::stage::{Stage, StageError, Work};
use crate::invalid_parameter;
use chrono::NaiveDate;
use pgrx::prelude::*;
use serde_json::{json, Value};
use std::future::Future;
use std::time::Duration;

/// One call's limit; pages of 25,000 rows take Google a few seconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest answer read: a full page is about 5 MB.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
const CREDENTIALS_SECRET: &str = "gsc_credentials";

pub struct IngestGsc;

pub struct Input {
    account: ServiceAccount,
    token_url: String,
    api_base: String,
    for_date: NaiveDate,
    /// `None`: every property the account can read.
    sites: Option<Vec<String>>,
}

pub struct SiteOutcome {
    site: String,
    rows: Result<Vec<AnalyticsRow>, String>,
    requests: u32,
}

pub struct Output {
    for_date: NaiveDate,
    sites: Vec<SiteOutcome>,
}

impl From<CallError> for StageError {
    fn from(error: CallError) -> StageError {
        if error.retryable {
            StageError::Retryable { message: error.message, retry_after: error.retry_after }
        } else {
            StageError::Permanent(error.message)
        }
    }
}

impl Stage for IngestGsc {
    const NAME: &'static str = "ingest_gsc";
    type Input = Input;
    type Output = Output;

    fn prepare(&self, work: &Work) -> Result<Input, StageError> {
        let for_date = work.options["for_date"]
            .as_str()
            .and_then(|day| NaiveDate::parse_from_str(day, "%Y-%m-%d").ok())
            .ok_or_else(|| StageError::permanent(format!("the job's for_date is not a date: {}", work.options["for_date"])))?;
        let sites = match &work.options["sites"] {
            Value::Null => None,
            listed => Some(
                serde_json::from_value::<Vec<String>>(listed.clone())
                    .map_err(|e| StageError::permanent(format!("the job's sites are not a list of text: {e}")))?,
            ),
        };
        let key_file = Spi::get_one_with_args::<String>(
            "SELECT (SELECT s.value FROM pageperfect.secrets s WHERE s.name = $1)",
            &[CREDENTIALS_SECRET.into()],
        )?
        .ok_or_else(|| StageError::permanent("no Search Console credentials are stored (pageperfect.set_gsc_credentials)"))?;
        let account = ServiceAccount::parse(&key_file).map_err(|e| StageError::permanent(e.to_string()))?;
        Ok(Input {
            token_url: config::string(&config::GSC_TOKEN_URL).unwrap_or_else(|| account.token_uri.clone()),
            api_base: config::string(&config::GSC_API_URL).unwrap_or_else(|| DEFAULT_API_BASE.to_string()),
            account,
            for_date,
            sites,
        })
    }

    fn run(&self, _work: &Work, input: Input) -> impl Future<Output = Result<Output, StageError>> + Send + 'static {
        async move {
            // The endpoints are a superuser's settings (or Google's), not user input: no SSRF guard.
            let client = HttpClient::new(HttpConfig {
                timeout: REQUEST_TIMEOUT,
                max_bytes: MAX_RESPONSE_BYTES,
                allow_private: true,
                ..HttpConfig::default()
            })?;
            let mut session = Session::new(client, input.account, input.token_url);
            session.access_token().await?;
            let sites = match input.sites {
                Some(sites) => sites,
                None => session.call(|| Request::get(sites_url(&input.api_base)), parse_sites).await?,
            };
            let mut outcomes = Vec::with_capacity(sites.len());
            for site in sites {
                let before = session.requests;
                let rows = fetch_day(&mut session, &input.api_base, &site, input.for_date).await;
                outcomes.push(SiteOutcome { requests: session.requests - before, site, rows });
            }
            Ok(Output { for_date: input.for_date, sites: outcomes })
        }
    }

    fn store(&self, work: &Work, output: Output) -> Result<Value, StageError> {
        let mut reports = Vec::with_capacity(output.sites.len());
        let (mut total_rows, mut failed) = (0_i64, 0);
        for outcome in output.sites {
            let (status, written, error) = match outcome.rows {
                Ok(rows) => {
                    let mut daily = DailyRows::default();
                    for row in rows {
                        daily.push(DailyRow {
                            date: row.date,
                            page: row.page,
                            query: row.query,
                            clicks: row.clicks,
                            impressions: row.impressions,
                            ctr: Some(row.ctr),
                            position: Some(row.position),
                        });
                    }
                    ("succeeded", daily.upsert(&outcome.site)?, None)
                }
                Err(error) => ("failed", 0, Some(error)),
            };
            total_rows += written;
            failed += (status == "failed") as i32;
            Spi::run_with_args(
                "INSERT INTO pageperfect.gsc_ingestions (job_id, for_date, site, status, rows_upserted, requests, error)
                 VALUES ($1::uuid, $2::date, $3, $4, $5, $6, $7)",
                &[
                    work.job_id.as_str().into(),
                    output.for_date.to_string().into(),
                    outcome.site.as_str().into(),
                    status.into(),
                    written.into(),
                    (outcome.requests as i32).into(),
                    error.as_deref().into(),
                ],
            )?;
            reports.push(json!({ "site": outcome.site, "status": status, "rows": written, "requests": outcome.requests, "error": error }));
        }
        Ok(json!({ "for_date": output.for_date.to_string(), "rows_upserted": total_rows, "sites_failed": failed, "sites": reports }))
    }
}

/// Every row of `site` on `day`, page after page until one comes back short.
async fn fetch_day(session: &mut Session, api_base: &str, site: &str, day: NaiveDate) -> Result<Vec<AnalyticsRow>, String> {
    let url = query_url(api_base, site);
    let mut rows = Vec::new();
    let mut start_row = 0;
    loop {
        let page = session
            .call(|| Request::post_json(&url, &query_body(day, start_row)), parse_response)
            .await
            .map_err(|e| e.message)?;
        let full = page.len() >= PAGE_ROWS as usize;
        // Only the asked-for day: the table's key holds the row's own date, so a stray day would
        // land where ingest_gsc did not say it would write.
        rows.extend(page.into_iter().filter(|row| row.date == day));
        if !full {
            return Ok(rows);
        }
        start_row += PAGE_ROWS;
    }
}

#[pg_schema]
mod pageperfect {
    use super::*;

    /// Stores the service account's JSON key (as downloaded from Google Cloud) for `ingest_gsc`,
    /// after checking that it is one and that its private key can sign. Superusers only.
    #[pg_extern(volatile)]
    fn set_gsc_credentials(key_file: &str) -> String {
        let account = ServiceAccount::parse(key_file).unwrap_or_else(|e| invalid_parameter(e.to_string()));
        Spi::run_with_args(
            "INSERT INTO pageperfect.secrets (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = now()",
            &[CREDENTIALS_SECRET.into(), key_file.into()],
        )
        .unwrap_or_else(|e| error!("{e}"));
        account.client_email
    }
}
