//! The Search Console API: the sites a service account may read (`sites.list`) and the Search
//! Analytics query (`searchAnalytics.query`) for a range of days of date/page/query rows, final
//! or with the fresh (still-changing) days too: request URLs and bodies, and reading the
//! responses, with the first day Google says is incomplete. No I/O happens here.

use chrono::NaiveDate;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::{json, Value};
use thiserror::Error;

/// The most rows the API returns per request; page with `startRow` beyond it.
pub const PAGE_ROWS: u32 = 25_000;
/// The default of the `pageperfect.gsc_api_url` setting.
pub const DEFAULT_API_BASE: &str = "https://searchconsole.googleapis.com/webmasters/v3";
/// How much of an unreadable body to quote in an error.
const EXCERPT_CHARS: usize = 200;

/// Everything but RFC 3986 unreserved characters, so a site URL such as
/// `https://example.com/` stays one path segment.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsRow {
    pub date: NaiveDate,
    pub page: String,
    pub query: String,
    pub clicks: i64,
    pub impressions: i64,
    pub ctr: f64,
    pub position: f64,
}

#[derive(Debug, Clone, Error, PartialEq)]
pub enum AnalyticsError {
    #[error("malformed Search Analytics response ({reason}): {excerpt}")]
    Malformed { reason: String, excerpt: String },
    #[error(
        "the Search Console API returned an error{}: {message}",
        code.map(|c| format!(" {c}")).unwrap_or_default()
    )]
    Api { code: Option<i64>, message: String },
    #[error("row {row} of the Search Analytics response is unusable: {problem}")]
    BadRow { row: usize, problem: String },
}

/// `api_base` is the API's versioned root, such as [`DEFAULT_API_BASE`].
pub fn query_url(api_base: &str, site: &str) -> String {
    format!(
        "{}/sites/{}/searchAnalytics/query",
        api_base.trim_end_matches('/'),
        utf8_percent_encode(site, PATH_SEGMENT)
    )
}

/// One page of the days `from` to `to`: `data_state` `final` (finished days only) or `all` (the
/// fresh days too, which Google still changes for two or three days).
pub fn query_body(from: NaiveDate, to: NaiveDate, start_row: u32, data_state: &str) -> Value {
    json!({
        "startDate": from.format("%Y-%m-%d").to_string(),
        "endDate": to.format("%Y-%m-%d").to_string(),
        "dimensions": ["date", "page", "query"],
        "rowLimit": PAGE_ROWS,
        "startRow": start_row,
        "dataState": data_state,
    })
}

/// One page of rows, and the first day whose data is not final yet (Google says it with
/// `dataState: all`).
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsPage {
    pub rows: Vec<AnalyticsRow>,
    pub first_incomplete_date: Option<NaiveDate>,
}

#[derive(Deserialize)]
struct Response {
    // Google leaves `rows` out entirely when there is no data.
    #[serde(default)]
    rows: Vec<RawRow>,
    #[serde(default)]
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct Metadata {
    first_incomplete_date: Option<String>,
}

#[derive(Deserialize)]
struct ApiError {
    code: Option<i64>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct RawRow {
    keys: Vec<String>,
    clicks: f64,
    impressions: f64,
    ctr: f64,
    position: f64,
}

/// A JSON answer of the API: `T`, unless it is malformed or an error object.
impl AnalyticsError {
    /// A garbled answer (a proxy's error page, a cut connection) may come out whole next time;
    /// an error the API states, or rows it sends that cannot be read, will not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, AnalyticsError::Malformed { .. })
    }
}

fn parse_answer<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AnalyticsError> {
    #[derive(Deserialize)]
    struct MaybeError {
        error: Option<ApiError>,
    }
    let malformed = |e: serde_json::Error| AnalyticsError::Malformed {
        reason: e.to_string(),
        excerpt: excerpt(body),
    };
    if let Some(error) = serde_json::from_slice::<MaybeError>(body).map_err(malformed)?.error {
        return Err(AnalyticsError::Api {
            code: error.code,
            message: error.message.unwrap_or_else(|| excerpt(body)),
        });
    }
    serde_json::from_slice(body).map_err(malformed)
}

/// The `sites.list` URL under `api_base`.
pub fn sites_url(api_base: &str) -> String {
    format!("{}/sites", api_base.trim_end_matches('/'))
}

/// The properties a `sites.list` answer names that the account may read: every permission
/// level but `siteUnverifiedUser`, which Search Analytics refuses.
pub fn parse_sites(body: &[u8]) -> Result<Vec<String>, AnalyticsError> {
    #[derive(Deserialize)]
    struct Sites {
        // Left out when the account sees no property.
        #[serde(default, rename = "siteEntry")]
        site_entry: Vec<SiteEntry>,
    }
    #[derive(Deserialize)]
    struct SiteEntry {
        #[serde(rename = "siteUrl")]
        site_url: String,
        #[serde(rename = "permissionLevel")]
        permission_level: Option<String>,
    }
    let sites: Sites = parse_answer(body)?;
    Ok(sites
        .site_entry
        .into_iter()
        .filter(|entry| entry.permission_level.as_deref() != Some("siteUnverifiedUser"))
        .map(|entry| entry.site_url)
        .collect())
}

pub fn parse_response(body: &[u8]) -> Result<AnalyticsPage, AnalyticsError> {
    let response: Response = parse_answer(body)?;
    let first_incomplete_date = response
        .metadata
        .and_then(|m| m.first_incomplete_date)
        .and_then(|day| NaiveDate::parse_from_str(&day, "%Y-%m-%d").ok());
    let rows = response
        .rows
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            convert_row(raw).map_err(|problem| AnalyticsError::BadRow {
                row: index + 1,
                problem,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(AnalyticsPage { rows, first_incomplete_date })
}

fn convert_row(raw: RawRow) -> Result<AnalyticsRow, String> {
    let [date, page, query]: [String; 3] = raw.keys.try_into().map_err(|keys: Vec<String>| {
        format!("{} keys, expected 3 (date, page, query)", keys.len())
    })?;
    let date = NaiveDate::parse_from_str(&date, "%Y-%m-%d")
        .map_err(|_| format!("date key {date:?} is not YYYY-MM-DD"))?;
    Ok(AnalyticsRow {
        date,
        page,
        query,
        clicks: count("clicks", raw.clicks)?,
        impressions: count("impressions", raw.impressions)?,
        ctr: raw.ctr,
        position: raw.position,
    })
}

/// Counts arrive as JSON doubles (`12.0`) but must hold whole, non-negative values.
fn count(name: &str, value: f64) -> Result<i64, String> {
    const EXACT_LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer exact below it
    if value >= 0.0 && value.fract() == 0.0 && value < EXACT_LIMIT {
        Ok(value as i64)
    } else {
        Err(format!("{name} {value} is not a whole, non-negative count"))
    }
}

fn excerpt(body: &[u8]) -> String {
    crate::excerpt(&String::from_utf8_lossy(body), EXCERPT_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    #[test]
    fn encodes_the_site_as_one_path_segment() {
        assert_eq!(
            query_url(DEFAULT_API_BASE, "sc-domain:example.com"),
            "https://searchconsole.googleapis.com/webmasters/v3/sites/sc-domain%3Aexample.com\
             /searchAnalytics/query"
        );
        assert_eq!(
            query_url(
                "http://127.0.0.1:8080/webmasters/v3/",
                "https://example.com/blog?x=1&y=ü ~_"
            ),
            "http://127.0.0.1:8080/webmasters/v3/sites/\
             https%3A%2F%2Fexample.com%2Fblog%3Fx%3D1%26y%3D%C3%BC%20~_/searchAnalytics/query"
        );
    }

    #[test]
    fn builds_a_page_of_a_range_of_days() {
        assert_eq!(
            query_body(day(1), day(3), 50_000, "all"),
            json!({
                "startDate": "2026-11-01",
                "endDate": "2026-11-03",
                "dimensions": ["date", "page", "query"],
                "rowLimit": 25_000,
                "startRow": 50_000,
                "dataState": "all",
            })
        );
    }

    #[test]
    fn reads_the_first_incomplete_day() {
        let page = parse_response(br#"{"responseAggregationType": "byPage", "metadata": {"first_incomplete_date": "2026-11-02"}}"#).unwrap();
        assert_eq!((page.rows.len(), page.first_incomplete_date), (0, Some(day(2))));
        assert_eq!(parse_response(br#"{"rows": []}"#).unwrap().first_incomplete_date, None);
    }

    #[test]
    fn parses_rows_with_float_counts() {
        let body = br#"{
            "rows": [
                {"keys": ["2026-11-03", "https://example.com/", "red shoes"],
                 "clicks": 12.0, "impressions": 340, "ctr": 0.0352941, "position": 3.25},
                {"keys": ["2026-11-03", "https://example.com/b", "\"quoted\" \u00fc"],
                 "clicks": 0, "impressions": 1.0, "ctr": 0, "position": 71}
            ],
            "responseAggregationType": "byPage"
        }"#;
        let rows = parse_response(body).unwrap().rows;
        assert_eq!(
            rows[0],
            AnalyticsRow {
                date: day(3),
                page: "https://example.com/".into(),
                query: "red shoes".into(),
                clicks: 12,
                impressions: 340,
                ctr: 0.0352941,
                position: 3.25,
            }
        );
        assert_eq!(rows[1].query, "\"quoted\" ü");
        assert_eq!(
            (rows[1].clicks, rows[1].impressions, rows[1].position),
            (0, 1, 71.0)
        );
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn missing_rows_mean_no_data() {
        let body = br#"{"responseAggregationType": "byProperty"}"#;
        assert_eq!(parse_response(body).map(|p| p.rows), Ok(vec![]));
        assert_eq!(parse_response(br#"{"rows": []}"#).map(|p| p.rows), Ok(vec![]));
    }

    #[test]
    fn rejects_rows_of_the_wrong_shape() {
        let row = |keys: &str, clicks: &str| {
            let good = r#"{"keys": ["2026-11-03", "/", "q"], "clicks": 1, "impressions": 2,
                           "ctr": 0.5, "position": 1}"#;
            let bad = format!(
                r#"{{"keys": {keys}, "clicks": {clicks}, "impressions": 2, "ctr": 0.5,
                    "position": 1}}"#
            );
            let body = format!(r#"{{"rows": [{good}, {bad}]}}"#);
            parse_response(body.as_bytes()).unwrap_err().to_string()
        };
        assert_eq!(
            row(r#"["2026-11-03", "/"]"#, "1"),
            "row 2 of the Search Analytics response is unusable: \
             2 keys, expected 3 (date, page, query)"
        );
        assert!(row(r#"["03/11/2026", "/", "q"]"#, "1").contains("date key \"03/11/2026\""));
        assert!(row(r#"["2026-11-03", "/", "q"]"#, "1.5").contains("clicks 1.5 is not a whole"));
        assert!(row(r#"["2026-11-03", "/", "q"]"#, "-1").contains("clicks -1 is not"));
    }

    #[test]
    fn malformed_json_quotes_an_excerpt() {
        let body = format!("<!DOCTYPE html><p>{}</p>", "proxy error ".repeat(40));
        match parse_response(body.as_bytes()).unwrap_err() {
            AnalyticsError::Malformed { reason, excerpt } => {
                assert!(reason.contains("line 1"), "{reason}");
                assert!(excerpt.starts_with("<!DOCTYPE html><p>proxy error"));
                assert_eq!(excerpt.chars().count(), EXCERPT_CHARS + 1);
            }
            other => panic!("{other:?}"),
        }
        let err = parse_response(br#"{"rows": [{"keys": ["a"]}]}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `clicks`"), "{err}");
    }

    #[test]
    fn lists_the_sites_the_account_may_read() {
        let body = br#"{"siteEntry": [
            {"siteUrl": "https://example.com/", "permissionLevel": "siteOwner"},
            {"siteUrl": "sc-domain:example.org", "permissionLevel": "siteRestrictedUser"},
            {"siteUrl": "https://pending.example/", "permissionLevel": "siteUnverifiedUser"}
        ]}"#;
        assert_eq!(
            parse_sites(body).unwrap(),
            vec!["https://example.com/", "sc-domain:example.org"]
        );
        assert_eq!(parse_sites(b"{}").unwrap(), Vec::<String>::new());
        assert_eq!(sites_url("http://127.0.0.1:9/webmasters/v3/"), "http://127.0.0.1:9/webmasters/v3/sites");
        let denied = br#"{"error": {"code": 401, "message": "Request had invalid authentication credentials."}}"#;
        assert!(matches!(parse_sites(denied), Err(AnalyticsError::Api { code: Some(401), .. })));
    }

    #[test]
    fn surfaces_api_errors() {
        let body = br#"{"error": {"code": 403, "status": "PERMISSION_DENIED", "message":
            "User does not have sufficient permission for site 'sc-domain:example.com'."}}"#;
        assert_eq!(
            parse_response(body).unwrap_err().to_string(),
            "the Search Console API returned an error 403: User does not have sufficient \
             permission for site 'sc-domain:example.com'."
        );
    }
}
