//! Google's OAuth 2.0 token endpoint and the Search Console API, on loopback for the tests.
//!
//! `POST /token` exchanges a service account's RS256-signed JWT assertion for a bearer token,
//! checking what Google checks (signature, issuer, audience, scope, lifetime) and answering
//! `invalid_grant` as Google does. `GET /webmasters/v3/sites` lists the sites the test added and
//! `POST /webmasters/v3/sites/{site}/searchAnalytics/query` pages through their rows with
//! Google's request validation, error bodies and habits (counts as floats, no `rows` key past
//! the end). The test can queue faults for the next queries (a revoked token, 429 with
//! Retry-After, 500, malformed JSON) and inspect every request afterwards. With a clock set
//! (`set_clock`), it lags as Google does: a day is final only `lag` days after it, `dataState:
//! final` serves final days only, `all` serves the fresh ones too with part of their numbers
//! (Google's still grow) and names the first incomplete day in `metadata`.
//!
//! The service account's key pair, `fixtures/gsc-test-key.pem` and `fixtures/gsc-test-key.pub.pem`,
//! was made for these tests with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`
//! and is known to no Google project: it is test-only and safe to commit.

use crate::site::{Received, Route, Site};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};
use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub const CLIENT_EMAIL: &str = "pageperfect-test@pageperfect-test.iam.gserviceaccount.com";
pub const SEARCH_CONSOLE_SCOPE: &str = "https://www.googleapis.com/auth/webmasters.readonly";
/// The largest `rowLimit` Google accepts.
pub const MAX_ROW_LIMIT: u64 = 25_000;

const PRIVATE_KEY_PEM: &str = include_str!("../fixtures/gsc-test-key.pem");
const PUBLIC_KEY_PEM: &str = include_str!("../fixtures/gsc-test-key.pub.pem");
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google refuses assertions meant to live longer than an hour.
const MAX_ASSERTION_LIFETIME_SECS: i64 = 3600;
/// Google tolerates a little clock skew on `iat`.
const CLOCK_SKEW_SECS: i64 = 60;
/// `rowLimit` when the request has none.
const DEFAULT_ROW_LIMIT: u64 = 1000;
const JSON: &str = "application/json; charset=UTF-8";
const API_PREFIX: &str = "/webmasters/v3";
const QUERY_SUFFIX: &str = "/searchAnalytics/query";
/// The fields `searchAnalytics.query` knows; Google rejects a body naming any other.
const QUERY_FIELDS: [&str; 10] = [
    "startDate",
    "endDate",
    "dimensions",
    "type",
    "searchType",
    "dimensionFilterGroups",
    "aggregationType",
    "rowLimit",
    "startRow",
    "dataState",
];

/// The JSON key file a user downloads for the test service account, naming `token_uri`.
pub fn service_account_json(token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "pageperfect-test",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": PRIVATE_KEY_PEM,
        "client_email": CLIENT_EMAIL,
        "client_id": "112233445566778899001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/pageperfect-test%40pageperfect-test.iam.gserviceaccount.com",
        "universe_domain": "googleapis.com"
    })
    .to_string()
}

/// One Search Analytics row: a (date, page, query) and its numbers; `ctr` is derived.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub page: String,
    pub query: String,
    pub clicks: u64,
    pub impressions: u64,
    pub position: f64,
}

impl Row {
    /// `{"keys": [date, page, query], "clicks": 3.0, "impressions": 120.0, "ctr": 0.025, "position": 4.2}`:
    /// counts are floats, as Google sends them. Formatted with std (optimised even in a debug
    /// build) rather than serde_json, which takes most of a second per 25,000-row page there.
    fn write_json(&self, out: &mut Vec<u8>) {
        let ctr = if self.impressions == 0 { 0.0 } else { self.clicks as f64 / self.impressions as f64 };
        out.extend_from_slice(b"{\"keys\":[");
        for (i, key) in [&self.date, &self.page, &self.query].into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_string(out, key);
        }
        out.push(b']');
        for (field, value) in [
            (&b",\"clicks\":"[..], self.clicks as f64),
            (b",\"impressions\":", self.impressions as f64),
            (b",\"ctr\":", ctr),
            (b",\"position\":", self.position),
        ] {
            out.extend_from_slice(field);
            // Debug keeps the ".0" of whole numbers; JSON has no NaN or infinity.
            if value.is_finite() {
                let _ = write!(out, "{value:?}");
            } else {
                out.extend_from_slice(b"null");
            }
        }
        out.push(b'}');
    }
}

fn write_json_string(out: &mut Vec<u8>, text: &str) {
    if text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.extend_from_slice(Value::from(text).to_string().as_bytes());
    } else {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

/// `count` distinct rows on `date` for `site`: pages `{site}page-{i % 50}` (or
/// `https://{domain}/page-{i % 50}` for an `sc-domain:` property), each with its own query, and
/// deterministic numbers with clicks ≤ impressions and positions from 1 to 50.
pub fn generated_rows(site: &str, date: &str, count: usize) -> Vec<Row> {
    let page_base = match site.strip_prefix("sc-domain:") {
        Some(domain) => format!("https://{domain}/"),
        None => site.to_string(),
    };
    (0..count as u64)
        .map(|i| {
            let impressions = 10 + (i * 37) % 990;
            Row {
                date: date.to_string(),
                page: format!("{page_base}page-{}", i % 50),
                query: format!("test query {i}"),
                clicks: (i * 13) % (impressions / 4 + 1),
                impressions,
                position: 1.0 + ((i * 7) % 490) as f64 / 10.0,
            }
        })
        .collect()
}

/// What the next query requests get instead of their answer, in order.
#[derive(Clone, Debug)]
pub enum Fault {
    /// The token presented is revoked and the request answered 401, as when a token expires:
    /// the client has to fetch a new one and retry.
    ExpireToken,
    TooManyRequests { retry_after_seconds: u64 },
    ServerError,
    MalformedJson,
}

/// A request to the API (`/webmasters/v3/...`) and the status it got.
#[derive(Clone, Debug)]
pub struct ApiRequest {
    pub at: Instant,
    pub method: String,
    /// As requested, still percent-encoded.
    pub path: String,
    /// The decoded site of a `searchAnalytics/query` request; `None` for other requests.
    pub site: Option<String>,
    /// The bearer token presented.
    pub token: Option<String>,
    pub start_row: Option<u64>,
    pub row_limit: Option<u64>,
    pub status: u16,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TokenOutcome {
    Issued { access_token: String },
    Rejected { error: String, description: String },
}

/// A request to the token endpoint and what it got.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub at: Instant,
    pub outcome: TokenOutcome,
}

#[derive(Clone, Copy, PartialEq)]
enum Permission {
    Owner,
    Unverified,
}

impl Permission {
    fn as_str(self) -> &'static str {
        match self {
            Permission::Owner => "siteOwner",
            Permission::Unverified => "siteUnverifiedUser",
        }
    }
}

struct Property {
    site_url: String,
    permission: Permission,
    /// Sorted by date, so a date range is a slice found by binary search.
    rows: Vec<Row>,
}

#[derive(Default)]
struct State {
    /// Today on the stand-in's clock, and how many days Google takes to finalise one.
    clock: Option<(chrono::NaiveDate, u64)>,
    properties: Vec<Property>,
    /// Issued and not revoked.
    live_tokens: HashSet<String>,
    tokens_issued: u64,
    faults: VecDeque<Fault>,
    api_requests: Vec<ApiRequest>,
    token_requests: Vec<TokenRequest>,
}

pub struct GoogleServer {
    pub site: Site,
    state: Arc<Mutex<State>>,
}

impl GoogleServer {
    pub fn start() -> GoogleServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // The token endpoint checks the assertion's audience against its own URL.
        let token_url = format!("http://127.0.0.1:{}/token", listener.local_addr().unwrap().port());
        let public_key = DecodingKey::from_rsa_pem(PUBLIC_KEY_PEM.as_bytes()).expect("the fixture public key");
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = Arc::clone(&state);
        let site = Site::listen(listener, move |request| {
            let at = Instant::now();
            let path = request.path.split('?').next().unwrap_or_default();
            let mut state = shared.lock().unwrap();
            if path == "/token" && request.method == "POST" {
                let outcome = exchange(&mut state, request, &public_key, &token_url);
                let route = token_route(&outcome);
                state.token_requests.push(TokenRequest { at, outcome });
                route
            } else if path.starts_with(API_PREFIX) {
                api(&mut state, request, path, at)
            } else {
                not_found()
            }
        });
        GoogleServer { site, state }
    }

    pub fn token_url(&self) -> String {
        self.site.url("/token")
    }

    /// Stands for `https://searchconsole.googleapis.com/webmasters/v3`.
    pub fn api_base(&self) -> String {
        self.site.url(API_PREFIX)
    }

    /// The test service account's key file, pointing at this server's token endpoint.
    pub fn service_account_json(&self) -> String {
        service_account_json(&self.token_url())
    }

    /// A site the service account owns, with `rows` of data (added to any it had).
    pub fn add_site(&self, site_url: &str, rows: Vec<Row>) {
        let mut state = self.state.lock().unwrap();
        let property = property(&mut state, site_url, Permission::Owner);
        property.rows.extend(rows);
        property.rows.sort_by(|a, b| a.date.cmp(&b.date));
    }

    /// A site listed with permission `siteUnverifiedUser`, whose queries get 403 as at Google.
    /// Queries for sites never added get the same 403.
    pub fn add_unverified_site(&self, site_url: &str) {
        property(&mut self.state.lock().unwrap(), site_url, Permission::Unverified);
    }

    /// Today is `today` (`YYYY-MM-DD`) for the data, and a day is final `lag_days` days after it.
    pub fn set_clock(&self, today: &str, lag_days: u64) {
        let today = chrono::NaiveDate::parse_from_str(today, "%Y-%m-%d").expect("a YYYY-MM-DD date");
        self.state.lock().unwrap().clock = Some((today, lag_days));
    }

    /// The next query requests get these faults, in order; later ones are answered.
    pub fn fail_next(&self, faults: Vec<Fault>) {
        self.state.lock().unwrap().faults.extend(faults);
    }

    /// The API requests so far, oldest first.
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.state.lock().unwrap().api_requests.clone()
    }

    /// The token requests so far, oldest first.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.state.lock().unwrap().token_requests.clone()
    }
}

/// The site's entry, added if new, now with `permission`.
fn property<'a>(state: &'a mut State, site_url: &str, permission: Permission) -> &'a mut Property {
    let index = match state.properties.iter().position(|p| p.site_url == site_url) {
        Some(index) => index,
        None => {
            state.properties.push(Property { site_url: site_url.to_string(), permission, rows: vec![] });
            state.properties.len() - 1
        }
    };
    let property = &mut state.properties[index];
    property.permission = permission;
    property
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn rejected(error: &str, description: &str) -> TokenOutcome {
    TokenOutcome::Rejected { error: error.to_string(), description: description.to_string() }
}

/// Checks the JWT-bearer grant as Google does and issues a fresh token.
fn exchange(state: &mut State, request: &Received, public_key: &DecodingKey, token_url: &str) -> TokenOutcome {
    let form: Vec<(String, String)> = form_urlencoded::parse(&request.body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
    match field("grant_type") {
        Some(JWT_BEARER_GRANT) => {}
        Some(other) => return rejected("unsupported_grant_type", &format!("Invalid grant_type: {other}")),
        None => return rejected("unsupported_grant_type", "Invalid grant_type: "),
    }
    let Some(assertion) = field("assertion") else {
        return rejected("invalid_request", "Missing required parameter: assertion");
    };
    // Claims are checked below, with Google's messages; the library checks alg and signature.
    let mut validation = Validation::new(Algorithm::RS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let claims = match jsonwebtoken::decode::<Value>(assertion, public_key, &validation) {
        Ok(token) => token.claims,
        Err(e) => {
            return match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => rejected("invalid_grant", "Invalid JWT Signature."),
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                    rejected("invalid_grant", "Invalid JWT: signing algorithm must be RS256.")
                }
                _ => rejected("invalid_grant", &format!("Invalid JWT: {e}")),
            }
        }
    };
    if claims["iss"].as_str() != Some(CLIENT_EMAIL) {
        return rejected("invalid_grant", "Invalid grant: account not found");
    }
    if claims["aud"].as_str() != Some(token_url) {
        return rejected("invalid_grant", &format!("Invalid JWT: Failed audience check. The right audience is {token_url}"));
    }
    let scopes = claims["scope"].as_str().unwrap_or_default();
    if !scopes.split(' ').any(|scope| scope == SEARCH_CONSOLE_SCOPE) {
        return rejected("invalid_scope", "Invalid OAuth scope or ID token audience provided.");
    }
    let now = now_unix();
    let short_lived = match (claims["iat"].as_i64(), claims["exp"].as_i64()) {
        (Some(iat), Some(exp)) => iat <= now + CLOCK_SKEW_SECS && exp > now && exp > iat && exp - iat <= MAX_ASSERTION_LIFETIME_SECS,
        _ => false,
    };
    if !short_lived {
        return rejected(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. \
             Check your iat and exp values in the JWT claim.",
        );
    }
    state.tokens_issued += 1;
    let access_token = format!("ya29.test-{}", state.tokens_issued);
    state.live_tokens.insert(access_token.clone());
    TokenOutcome::Issued { access_token }
}

fn token_route(outcome: &TokenOutcome) -> Route {
    match outcome {
        TokenOutcome::Issued { access_token } => json_route(
            200,
            &json!({ "access_token": access_token, "expires_in": 3599, "token_type": "Bearer" }),
        ),
        TokenOutcome::Rejected { error, description } => {
            json_route(400, &json!({ "error": error, "error_description": description }))
        }
    }
}

fn json_route(status: u16, body: &Value) -> Route {
    Route::status(status, JSON, &body.to_string())
}

/// Google's error body: `{"error": {"code", "message", "errors": [...], "status"}}`.
fn google_error(code: u16, status: &str, reason: &str, message: &str) -> Route {
    json_route(
        code,
        &json!({ "error": {
            "code": code,
            "message": message,
            "errors": [{ "message": message, "domain": "global", "reason": reason }],
            "status": status,
        }}),
    )
}

fn not_found() -> Route {
    google_error(404, "NOT_FOUND", "notFound", "Not Found")
}

fn invalid_argument(message: &str) -> Route {
    google_error(400, "INVALID_ARGUMENT", "badRequest", message)
}

fn unauthenticated(message: &str) -> Route {
    google_error(401, "UNAUTHENTICATED", "authError", message)
        .with_header("WWW-Authenticate", "Bearer realm=\"https://accounts.google.com/\"")
}

fn invalid_credentials() -> Route {
    unauthenticated(
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie \
         or other valid authentication credential.",
    )
}

/// The site of a `/webmasters/v3/sites/{site}/searchAnalytics/query` path: `{site}` is one
/// percent-encoded segment, so a site URL sent with raw slashes matches no route.
fn query_site(path: &str) -> Option<String> {
    let encoded = path.strip_prefix(API_PREFIX)?.strip_prefix("/sites/")?.strip_suffix(QUERY_SUFFIX)?;
    if encoded.is_empty() || encoded.contains('/') {
        return None;
    }
    percent_decode_str(encoded).decode_utf8().ok().map(|site| site.into_owned())
}

fn bearer_token(request: &Received) -> Option<String> {
    let value = request.headers.get("authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
}

fn api(state: &mut State, request: &Received, path: &str, at: Instant) -> Route {
    let token = bearer_token(request);
    let site = query_site(path);
    let body: Option<Value> = serde_json::from_slice(&request.body).ok();
    let number = |name: &str| body.as_ref().and_then(|b| b[name].as_u64());
    let route = match (&site, request.method.as_str()) {
        (Some(site), "POST") => {
            let fault = state.faults.pop_front();
            query(state, fault, token.as_deref(), site, body.as_ref())
        }
        (None, "GET") if path == format!("{API_PREFIX}/sites") => list_sites(state, token.as_deref()),
        _ => not_found(),
    };
    state.api_requests.push(ApiRequest {
        at,
        method: request.method.clone(),
        path: request.path.clone(),
        site,
        token,
        start_row: number("startRow"),
        row_limit: number("rowLimit"),
        status: route.status,
    });
    route
}

fn authenticate(state: &State, token: Option<&str>) -> Result<(), Route> {
    match token {
        None => Err(unauthenticated(
            "Request is missing required authentication credential. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential.",
        )),
        Some(token) if !state.live_tokens.contains(token) => Err(invalid_credentials()),
        Some(_) => Ok(()),
    }
}

fn list_sites(state: &State, token: Option<&str>) -> Route {
    if let Err(route) = authenticate(state, token) {
        return route;
    }
    let entries: Vec<Value> = state
        .properties
        .iter()
        .map(|p| json!({ "siteUrl": p.site_url, "permissionLevel": p.permission.as_str() }))
        .collect();
    // Like Google, an empty list is left out rather than sent as [].
    if entries.is_empty() {
        json_route(200, &json!({}))
    } else {
        json_route(200, &json!({ "siteEntry": entries }))
    }
}

fn query(state: &mut State, fault: Option<Fault>, token: Option<&str>, site: &str, body: Option<&Value>) -> Route {
    match fault {
        None => {}
        Some(Fault::ExpireToken) => {
            if let Some(token) = token {
                state.live_tokens.remove(token);
            }
            return invalid_credentials();
        }
        Some(Fault::TooManyRequests { retry_after_seconds }) => {
            return google_error(
                429,
                "RESOURCE_EXHAUSTED",
                "rateLimitExceeded",
                "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of service \
                 'searchconsole.googleapis.com' for consumer 'project_number:112233445566'.",
            )
            .with_header("Retry-After", &retry_after_seconds.to_string())
        }
        Some(Fault::ServerError) => return google_error(500, "INTERNAL", "backendError", "Internal error encountered."),
        Some(Fault::MalformedJson) => {
            return Route::status(200, JSON, r#"{"rows": [{"keys": ["2024-01-01", "#)
        }
    }
    if let Err(route) = authenticate(state, token) {
        return route;
    }
    let Some(property) = state.properties.iter().find(|p| p.site_url == site && p.permission == Permission::Owner) else {
        return google_error(
            403,
            "PERMISSION_DENIED",
            "forbidden",
            &format!(
                "User does not have sufficient permission for site '{site}'. \
                 See also: https://support.google.com/webmasters/answer/2451999."
            ),
        );
    };
    let request = match QueryRequest::parse(body) {
        Ok(request) => request,
        Err(message) => return invalid_argument(&message),
    };
    // With a clock: no data from today on, fresh (partial) data for the days not final yet.
    let day = |date: chrono::NaiveDate| date.format("%Y-%m-%d").to_string();
    let lagging = state.clock.map(|(today, lag)| (day(today - chrono::Days::new(lag)), day(today - chrono::Days::new(1))));
    let end_date = match &lagging {
        Some((last_final, _)) if request.data_state == "final" => last_final.clone().min(request.end_date.clone()),
        Some((_, yesterday)) => yesterday.clone().min(request.end_date.clone()),
        None => request.end_date.clone(),
    };
    let first = property.rows.partition_point(|row| row.date.as_str() < request.start_date.as_str());
    let end = property.rows.partition_point(|row| row.date.as_str() <= end_date.as_str()).max(first);
    let served: Vec<Row> = property.rows[first..end]
        .iter()
        .map(|row| match &lagging {
            Some((last_final, _)) if row.date.as_str() > last_final.as_str() => {
                Row { clicks: row.clicks / 2, impressions: row.impressions / 2, ..row.clone() }
            }
            _ => row.clone(),
        })
        .collect();
    let in_range = &served[..];
    let start = (request.start_row as usize).min(in_range.len());
    let stop = (start + request.row_limit as usize).min(in_range.len());
    // Only the slice is serialized, straight to bytes. Past the last row Google leaves `rows` out
    // rather than sending [].
    let mut body = Vec::with_capacity((stop - start) * 160 + 64);
    body.push(b'{');
    if stop > start {
        body.extend_from_slice(b"\"rows\":[");
        for (i, row) in in_range[start..stop].iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            row.write_json(&mut body);
        }
        body.extend_from_slice(b"],");
    }
    if let (Some((last_final, _)), "all") = (&lagging, request.data_state.as_str()) {
        let first_incomplete = chrono::NaiveDate::parse_from_str(last_final, "%Y-%m-%d").unwrap() + chrono::Days::new(1);
        let _ = write!(body, "\"metadata\":{{\"first_incomplete_date\":\"{}\"}},", day(first_incomplete));
    }
    body.extend_from_slice(b"\"responseAggregationType\":\"byPage\"}");
    Route { body: Arc::from(body), ..Route::status(200, JSON, "") }
}

/// The parts of a `searchAnalytics.query` body that select rows, validated as Google does.
struct QueryRequest {
    start_date: String,
    end_date: String,
    start_row: u64,
    row_limit: u64,
    /// `final` (Google's default) or `all`.
    data_state: String,
}

impl QueryRequest {
    fn parse(body: Option<&Value>) -> Result<QueryRequest, String> {
        let Some(Value::Object(fields)) = body else {
            return Err("Invalid JSON payload received.".to_string());
        };
        if let Some(unknown) = fields.keys().find(|key| !QUERY_FIELDS.contains(&key.as_str())) {
            return Err(format!("Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."));
        }
        let date = |name: &str| match fields.get(name).and_then(Value::as_str) {
            Some(date) if is_iso_date(date) => Ok(date.to_string()),
            Some(date) => Err(format!("Invalid {name}: \"{date}\" is not a date in YYYY-MM-DD format.")),
            None => Err(format!("{name} field is required.")),
        };
        let (start_date, end_date) = (date("startDate")?, date("endDate")?);
        if start_date > end_date {
            return Err("startDate must be earlier than or equal to endDate.".to_string());
        }
        let dimensions: Option<Vec<&str>> =
            fields.get("dimensions").and_then(Value::as_array).map(|d| d.iter().filter_map(Value::as_str).collect());
        if dimensions.as_deref() != Some(&["date", "page", "query"][..]) {
            return Err("This stand-in serves only dimensions [\"date\", \"page\", \"query\"].".to_string());
        }
        let data_state = match fields.get("dataState") {
            None => "final".to_string(),
            Some(state) if matches!(state.as_str(), Some("final" | "all" | "hourly_all")) => state.as_str().unwrap().to_string(),
            Some(state) => return Err(format!("Invalid value at 'data_state' ({state})")),
        };
        let count = |name: &str, default: u64| match fields.get(name) {
            None => Ok(default),
            Some(value) => value.as_u64().ok_or_else(|| format!("Invalid value at '{name}' ({value})")),
        };
        let start_row = count("startRow", 0)?;
        let row_limit = count("rowLimit", DEFAULT_ROW_LIMIT)?;
        if !(1..=MAX_ROW_LIMIT).contains(&row_limit) {
            return Err(format!("rowLimit must be between 1 and {MAX_ROW_LIMIT}, inclusive."));
        }
        Ok(QueryRequest { start_date, end_date, start_row, row_limit, data_state })
    }
}

fn is_iso_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| if i == 4 || i == 7 { *b == b'-' } else { b.is_ascii_digit() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    use std::io::{Read, Write};
    use std::net::TcpStream;

    /// What JavaScript's encodeURIComponent escapes: a site URL becomes one path segment.
    const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'!').remove(b'~')
        .remove(b'*').remove(b'\'').remove(b'(').remove(b')');

    struct Reply {
        status: u16,
        /// The status line and headers, as sent.
        head: String,
        /// `Null` when the body is not JSON.
        body: Value,
    }

    /// One HTTP/1.1 exchange with the server.
    fn send(url: &str, method: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let mut stream = TcpStream::connect(host).unwrap();
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        Reply { status, head: head.to_string(), body: serde_json::from_str(body).unwrap_or(Value::Null) }
    }

    fn assertion_for(claims: &Value) -> String {
        let key = EncodingKey::from_rsa_pem(PRIVATE_KEY_PEM.as_bytes()).unwrap();
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
    }

    fn claims(audience: &str) -> Value {
        let now = now_unix();
        json!({ "iss": CLIENT_EMAIL, "scope": SEARCH_CONSOLE_SCOPE, "aud": audience, "iat": now, "exp": now + 3600 })
    }

    fn exchange_assertion(server: &GoogleServer, assertion: &str) -> Reply {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", JWT_BEARER_GRANT)
            .append_pair("assertion", assertion)
            .finish();
        send(&server.token_url(), "POST", &[("Content-Type", "application/x-www-form-urlencoded")], &form)
    }

    fn fresh_token(server: &GoogleServer) -> String {
        let reply = exchange_assertion(server, &assertion_for(&claims(&server.token_url())));
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["access_token"].as_str().unwrap().to_string()
    }

    fn query_page(server: &GoogleServer, site: &str, token: &str, start_row: u64, row_limit: u64) -> Reply {
        let url = format!("{}/sites/{}{QUERY_SUFFIX}", server.api_base(), utf8_percent_encode(site, URI_COMPONENT));
        let body = json!({ "startDate": "2024-01-01", "endDate": "2024-01-31", "dimensions": ["date", "page", "query"],
                           "rowLimit": row_limit, "startRow": start_row, "dataState": "final" });
        send(&url, "POST", &[("Authorization", &format!("Bearer {token}"))], &body.to_string())
    }

    /// The status and, for an error, Google's `error` field (a string at the token endpoint, an
    /// object with `status` at the API).
    fn outcome(reply: &Reply) -> (u16, &str) {
        let error = &reply.body["error"];
        (reply.status, error.as_str().or(error["status"].as_str()).unwrap_or_default())
    }

    #[test]
    fn a_correctly_signed_assertion_gets_a_fresh_token_each_time() {
        let server = GoogleServer::start();
        let key_file: Value = serde_json::from_str(&server.service_account_json()).unwrap();
        assert_eq!(key_file["token_uri"], server.token_url());
        assert!(key_file["private_key"].as_str().unwrap().starts_with("-----BEGIN PRIVATE KEY-----\n"));

        let first = exchange_assertion(&server, &assertion_for(&claims(&server.token_url())));
        assert_eq!(first.status, 200, "{}", first.body);
        assert_eq!(first.body["expires_in"], 3599);
        assert_eq!(first.body["token_type"], "Bearer");
        let second = fresh_token(&server);
        assert_ne!(first.body["access_token"], second);
        assert_eq!(server.token_requests()[1].outcome, TokenOutcome::Issued { access_token: second });
    }

    #[test]
    fn a_tampered_signature_a_wrong_audience_or_a_long_life_is_an_invalid_grant() {
        let server = GoogleServer::start();
        let signed = assertion_for(&claims(&server.token_url()));
        // The claims of a longer-lived assertion under the original signature.
        let mut longer = claims(&server.token_url());
        longer["exp"] = json!(now_unix() + 7200);
        let longer_signed = assertion_for(&longer);
        let parts: Vec<&str> = signed.split('.').collect();
        let tampered = [parts[0], longer_signed.split('.').nth(1).unwrap(), parts[2]].join(".");
        let reply = exchange_assertion(&server, &tampered);
        assert_eq!(outcome(&reply), (400, "invalid_grant"));
        assert_eq!(reply.body["error_description"], "Invalid JWT Signature.");

        let reply = exchange_assertion(&server, &assertion_for(&claims("https://oauth2.googleapis.com/token")));
        assert_eq!(outcome(&reply), (400, "invalid_grant"));
        assert!(reply.body["error_description"].as_str().unwrap().contains("audience"), "{}", reply.body);

        assert_eq!(outcome(&exchange_assertion(&server, &longer_signed)), (400, "invalid_grant"));
        assert!(server.token_requests().iter().all(|r| matches!(r.outcome, TokenOutcome::Rejected { .. })));
    }

    #[test]
    fn pages_of_25000_end_with_a_body_without_rows() {
        let server = GoogleServer::start();
        let site = "https://example.com/";
        let mut rows = generated_rows(site, "2024-01-15", 60_000);
        // Outside the requested dates.
        rows.extend(generated_rows(site, "2023-12-31", 5));
        server.add_site(site, rows);
        let token = fresh_token(&server);

        let started = Instant::now();
        let mut seen = HashSet::new();
        for (start_row, expected) in [(0, 25_000), (25_000, 25_000), (50_000, 10_000)] {
            let reply = query_page(&server, site, &token, start_row, MAX_ROW_LIMIT);
            assert_eq!(reply.status, 200);
            let rows = reply.body["rows"].as_array().unwrap();
            assert_eq!(rows.len(), expected);
            assert!(rows[0]["clicks"].is_f64() && rows[0]["impressions"].is_f64());
            seen.extend(rows.iter().map(|r| r["keys"].to_string()));
        }
        assert_eq!(seen.len(), 60_000, "pages overlap");
        let past_the_end = query_page(&server, site, &token, 60_000, MAX_ROW_LIMIT);
        assert_eq!(past_the_end.status, 200);
        assert!(past_the_end.body.get("rows").is_none(), "{}", past_the_end.body);
        assert!(started.elapsed().as_secs() < 5, "paging took {:?}", started.elapsed());

        let requests = server.requests();
        let start_rows: Vec<Option<u64>> = requests.iter().map(|r| r.start_row).collect();
        assert_eq!(start_rows, [Some(0), Some(25_000), Some(50_000), Some(60_000)]);
        assert!(requests.iter().all(|r| r.site.as_deref() == Some(site) && r.path.contains("/https%3A%2F%2Fexample.com%2F/")));

        let too_many = query_page(&server, site, &token, 0, MAX_ROW_LIMIT + 1);
        assert_eq!(outcome(&too_many), (400, "INVALID_ARGUMENT"));
    }

    #[test]
    fn an_unknown_token_is_unauthenticated_and_unverified_sites_are_forbidden() {
        let server = GoogleServer::start();
        let domain = "sc-domain:example.com";
        server.add_site(domain, generated_rows(domain, "2024-01-10", 3));
        server.add_unverified_site("https://unverified.example/");
        let reply = query_page(&server, domain, "ya29.never-issued", 0, 10);
        assert_eq!(outcome(&reply), (401, "UNAUTHENTICATED"));

        let token = fresh_token(&server);
        let reply = query_page(&server, domain, &token, 0, 10);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["rows"][0]["keys"], json!(["2024-01-10", "https://example.com/page-0", "test query 0"]));
        assert_eq!(outcome(&query_page(&server, "https://unverified.example/", &token, 0, 10)), (403, "PERMISSION_DENIED"));

        let sites = send(&format!("{}/sites", server.api_base()), "GET", &[("Authorization", &format!("Bearer {token}"))], "");
        assert_eq!(sites.status, 200);
        assert_eq!(
            sites.body["siteEntry"],
            json!([{ "siteUrl": domain, "permissionLevel": "siteOwner" },
                   { "siteUrl": "https://unverified.example/", "permissionLevel": "siteUnverifiedUser" }])
        );
    }

    #[test]
    fn queued_faults_revoke_the_token_presented_and_rate_limit() {
        let server = GoogleServer::start();
        let site = "https://example.com/";
        server.add_site(site, generated_rows(site, "2024-01-10", 3));
        let token = fresh_token(&server);
        server.fail_next(vec![Fault::ExpireToken]);

        assert_eq!(outcome(&query_page(&server, site, &token, 0, 10)), (401, "UNAUTHENTICATED"));
        assert_eq!(query_page(&server, site, &token, 0, 10).status, 401, "the revoked token still worked");
        let renewed = fresh_token(&server);
        server.fail_next(vec![Fault::TooManyRequests { retry_after_seconds: 2 }]);
        let limited = query_page(&server, site, &renewed, 0, 10);
        assert_eq!(outcome(&limited), (429, "RESOURCE_EXHAUSTED"));
        assert!(limited.head.contains("\r\nRetry-After: 2"), "{}", limited.head);
        assert_eq!(query_page(&server, site, &renewed, 0, 10).status, 200);

        let tokens: Vec<(u16, Option<String>)> = server.requests().into_iter().map(|r| (r.status, r.token)).collect();
        assert_eq!(tokens, [(401, Some(token.clone())), (401, Some(token)), (429, Some(renewed.clone())), (200, Some(renewed))]);
    }
}
