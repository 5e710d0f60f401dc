//! The `ingest_gsc` stage: Search Analytics rows (date, page, query) for each site over a window
//! of days, paged by 25,000, into `gsc_page_query_daily`, with each site's outcome in
//! `gsc_ingestions` and each day's state in `gsc_days`. Google finalises a day only two or three
//! days after it ends, so a run asks for the last `gsc_window_days` days (with `dataState: all`,
//! the fresh ones too) and for every earlier day still not final; a day's rows are replaced
//! whenever it is fetched, so fresh data gives way to final. A site's first run backfills
//! `gsc_backfill_days` (16 months, what Google keeps). A site that fails is reported and the
//! others still load; only a failure to authenticate or to list the sites fails the attempt.
//! Also `set_gsc_credentials`, which checks a service-account key before storing it.

use super::auth::ServiceAccount;
use super::daily_rows::{DailyRow, DailyRows};
use super::search_analytics::{parse_response, parse_sites, query_body, query_url, sites_url, AnalyticsPage, AnalyticsRow, DEFAULT_API_BASE, PAGE_ROWS};
use super::session::{CallError, Session};
use crate::config;
use crate::http::client::{HttpClient, HttpConfig, Request};
use crate::queue::stage::{Stage, StageError, Work};
use crate::invalid_parameter;
use chrono::{Days, NaiveDate};
use pgrx::prelude::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// One call's limit; pages of 25,000 rows take Google a few seconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest answer read: a full page is about 5 MB.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
const CREDENTIALS_SECRET: &str = "gsc_credentials";

pub struct IngestGsc;

/// Which days a run asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// The last day.
    pub to: NaiveDate,
    /// The first day, for a site seen before.
    pub from: NaiveDate,
    /// The first day for a site's first run (`from` when there is no backfill).
    pub backfill_from: NaiveDate,
    /// `all` (fresh days too) or `final`.
    pub data_state: String,
}

impl Window {
    /// The first day to fetch for a site: its backfill when it was never fetched, else the
    /// window's first day or its earliest day still not final, whichever is earlier.
    pub fn start_for(&self, history: Option<&Option<NaiveDate>>) -> NaiveDate {
        match history {
            None => self.backfill_from,
            Some(earliest_not_final) => earliest_not_final.map_or(self.from, |day| day.max(self.backfill_from).min(self.from)),
        }
    }
}

/// Which days of `from..=to` are final after a fetch: before the first incomplete day Google
/// named; with `final` data (no such day named), every day up to the last that had rows.
pub fn final_days(from: NaiveDate, to: NaiveDate, first_incomplete: Option<NaiveDate>, last_with_rows: Option<NaiveDate>, data_state: &str) -> Vec<(NaiveDate, bool)> {
    from.iter_days()
        .take_while(|day| *day <= to)
        .map(|day| {
            let done = match first_incomplete {
                Some(first) => day < first,
                None => data_state == "final" && last_with_rows.is_some_and(|last| day <= last),
            };
            (day, done)
        })
        .collect()
}

pub struct Input {
    account: ServiceAccount,
    token_url: String,
    api_base: String,
    window: Window,
    /// `None`: every property the account can read.
    sites: Option<Vec<String>>,
    /// Sites fetched before, with their earliest day (in the backfill range) not final yet.
    history: HashMap<String, Option<NaiveDate>>,
}

pub struct SiteOutcome {
    site: String,
    from: NaiveDate,
    rows: Result<AnalyticsPage, String>,
    requests: u32,
}

pub struct Output {
    window: Window,
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
        let date = |name: &str| {
            work.options[name]
                .as_str()
                .and_then(|day| NaiveDate::parse_from_str(day, "%Y-%m-%d").ok())
                .ok_or_else(|| StageError::permanent(format!("the job's {name} is not a date: {}", work.options[name])))
        };
        let days = |name: &str| work.options[name].as_u64().unwrap_or(1).max(1);
        let window = if work.options["for_date"].is_null() {
            let to = date("until")?;
            let back = |n: u64| to.checked_sub_days(Days::new(n - 1)).unwrap_or(to);
            Window {
                to,
                from: back(days("window_days")),
                backfill_from: back(days("backfill_days").max(days("window_days"))),
                data_state: work.options["data_state"].as_str().unwrap_or("all").to_string(),
            }
        } else {
            // One day, as asked: no window, no backfill.
            let day = date("for_date")?;
            Window { to: day, from: day, backfill_from: day, data_state: work.options["data_state"].as_str().unwrap_or("all").to_string() }
        };
        let history = Spi::connect(|client| {
            let mut history = HashMap::new();
            for row in client.select(
                "SELECT site, min(date) FILTER (WHERE NOT final AND date >= $1::date)::text FROM pageperfect.gsc_days GROUP BY site",
                None,
                &[window.backfill_from.to_string().into()],
            )? {
                if let Some(site) = row.get::<String>(1)? {
                    let earliest = row.get::<String>(2)?.and_then(|day| NaiveDate::parse_from_str(&day, "%Y-%m-%d").ok());
                    history.insert(site, earliest);
                }
            }
            Ok::<_, pgrx::spi::Error>(history)
        })?;
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
            window,
            sites,
            history,
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
                let from = input.window.start_for(input.history.get(&site));
                let rows = fetch_days(&mut session, &input.api_base, &site, from, &input.window).await;
                outcomes.push(SiteOutcome { requests: session.requests - before, site, from, rows });
            }
            Ok(Output { window: input.window, sites: outcomes })
        }
    }

    fn store(&self, work: &Work, output: Output) -> Result<Value, StageError> {
        let mut reports = Vec::with_capacity(output.sites.len());
        let (mut total_rows, mut failed) = (0_i64, 0);
        let to = output.window.to;
        for outcome in output.sites {
            let (status, written, error) = match outcome.rows {
                Ok(page) => {
                    let last_with_rows = page.rows.iter().map(|row| row.date).max();
                    let days = final_days(outcome.from, to, page.first_incomplete_date, last_with_rows, &output.window.data_state);
                    let mut rows_per_day: HashMap<NaiveDate, i64> = HashMap::new();
                    for row in &page.rows {
                        *rows_per_day.entry(row.date).or_default() += 1;
                    }
                    // A day fetched again is replaced whole (fresh rows give way to final ones);
                    // a day that came back empty keeps what it had.
                    let replaced: Vec<String> = rows_per_day.keys().map(ToString::to_string).collect();
                    Spi::run_with_args(
                        "DELETE FROM pageperfect.gsc_page_query_daily WHERE site = $1 AND date = ANY ($2::date[])",
                        &[outcome.site.as_str().into(), replaced.into()],
                    )?;
                    Spi::run_with_args(
                        "INSERT INTO pageperfect.gsc_days AS d (site, date, final, rows, fetched_at)
                         SELECT $1, day::date, done, n, now() FROM unnest($2::text[], $3::boolean[], $4::bigint[]) AS u (day, done, n)
                         ON CONFLICT (site, date) DO UPDATE
                            SET final = excluded.final, rows = CASE WHEN excluded.rows = 0 THEN d.rows ELSE excluded.rows END,
                                fetched_at = excluded.fetched_at",
                        &[
                            outcome.site.as_str().into(),
                            days.iter().map(|(day, _)| day.to_string()).collect::<Vec<_>>().into(),
                            days.iter().map(|(_, done)| *done).collect::<Vec<_>>().into(),
                            days.iter().map(|(day, _)| rows_per_day.get(day).copied().unwrap_or(0)).collect::<Vec<_>>().into(),
                        ],
                    )?;
                    let mut daily = DailyRows::default();
                    for row in page.rows {
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
                "INSERT INTO pageperfect.gsc_ingestions (job_id, for_date, from_date, site, status, rows_upserted, requests, error)
                 VALUES ($1::uuid, $2::date, $8::date, $3, $4, $5, $6, $7)",
                &[
                    work.job_id.as_str().into(),
                    to.to_string().into(),
                    outcome.site.as_str().into(),
                    status.into(),
                    written.into(),
                    (outcome.requests as i32).into(),
                    error.as_deref().into(),
                    outcome.from.to_string().into(),
                ],
            )?;
            reports.push(json!({ "site": outcome.site, "from": outcome.from.to_string(), "status": status, "rows": written,
                                 "requests": outcome.requests, "error": error }));
        }
        Ok(json!({ "for_date": to.to_string(), "rows_upserted": total_rows, "sites_failed": failed, "sites": reports }))
    }
}

/// Every row of `site` from `from` to the window's last day, page after page until one comes
/// back short, and the first incomplete day Google named.
async fn fetch_days(session: &mut Session, api_base: &str, site: &str, from: NaiveDate, window: &Window) -> Result<AnalyticsPage, String> {
    let url = query_url(api_base, site);
    let mut all = AnalyticsPage { rows: Vec::new(), first_incomplete_date: None };
    let mut start_row = 0;
    loop {
        let page = session
            .call(|| Request::post_json(&url, &query_body(from, window.to, start_row, &window.data_state)), parse_response)
            .await
            .map_err(|e| e.message)?;
        let full = page.rows.len() >= PAGE_ROWS as usize;
        // Only the asked-for days: the table's key holds the row's own date, so a stray day would
        // land where ingest_gsc did not say it would write.
        let asked = |row: &AnalyticsRow| (from..=window.to).contains(&row.date);
        all.rows.extend(page.rows.into_iter().filter(asked));
        all.first_incomplete_date = all.first_incomplete_date.or(page.first_incomplete_date);
        if !full {
            return Ok(all);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    fn window() -> Window {
        Window { to: day(20), from: day(17), backfill_from: day(1), data_state: "all".into() }
    }

    #[test]
    fn a_new_site_is_backfilled_and_a_known_one_goes_back_to_its_first_day_not_final() {
        assert_eq!(window().start_for(None), day(1));
        assert_eq!(window().start_for(Some(&None)), day(17));
        assert_eq!(window().start_for(Some(&Some(day(12)))), day(12));
        assert_eq!(window().start_for(Some(&Some(day(19)))), day(17));
    }

    #[test]
    fn days_before_the_first_incomplete_one_are_final() {
        let days = final_days(day(17), day(20), Some(day(19)), Some(day(20)), "all");
        assert_eq!(days, vec![(day(17), true), (day(18), true), (day(19), false), (day(20), false)]);
        // Final data names no incomplete day: up to the last day with rows.
        let days = final_days(day(17), day(20), None, Some(day(18)), "final");
        assert_eq!(days, vec![(day(17), true), (day(18), true), (day(19), false), (day(20), false)]);
        assert!(final_days(day(17), day(18), None, None, "all").iter().all(|(_, done)| !done));
    }
}
