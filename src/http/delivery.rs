//! Delivery of the durable requests that `http_get`, `http_post` and `http_delete` queue: a
//! pipeline worker claims due requests (`in_flight`, with its backend recorded), sends them on
//! its tokio runtime with no transaction open, and records each outcome in its own
//! transaction: the response (`done`), a retry with backoff (`pending` again) on timeouts,
//! resets, 408, 429 (not before its Retry-After) and 5xx, or, after the last attempt, the final
//! failure with its reason (`failed`). A request is only marked done together with its stored
//! response, so a crash loses none and never resends one that has its response.

use super::client::{HttpClient, HttpConfig, HttpError, Method, Request, Response};
use crate::backoff;
use crate::worker::{in_transaction, query_json};
use pgrx::prelude::*;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Attempts of one request before its failure is final.
pub const MAX_ATTEMPTS: i32 = 5;
/// Wait before the second attempt; it doubles for each further one (1, 2, 4, 8 s, with jitter).
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Largest response body kept.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// A claimed request as the claim query returns it.
#[derive(Deserialize, Debug)]
pub struct Claimed {
    pub id: i64,
    method: String,
    url: String,
    params: Map<String, Value>,
    headers: Map<String, Value>,
    /// Hex of the bytea, as to_jsonb gives it (`\x…`).
    body: Option<String>,
    timeout_milliseconds: u64,
    pub attempts: i32,
    /// Sent through the SSRF guard (see `queue_http_request`).
    guarded: bool,
}

/// What became of one attempt.
#[derive(Debug)]
pub struct Delivered {
    pub id: i64,
    pub attempt: i32,
    pub result: Result<Response, HttpError>,
}

/// What to record for an attempt.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// The response is the answer (whatever its status, as pg_net stores it).
    Answered,
    /// Try again after this long.
    Retry(Duration),
    /// No more attempts: stored as the final failure with this reason.
    GaveUp(String),
}

/// The verdict on `attempt` (1 for the first) of a request: a response is its answer unless
/// its status asks for a retry (408, 429, 5xx); network failures are retried; either becomes
/// final after [`MAX_ATTEMPTS`]. `jitter` is a number in [0, 1).
pub fn judge(result: &Result<Response, HttpError>, attempt: i32, jitter: f64) -> Verdict {
    let (reason, retry_after) = match result {
        Ok(response) if !matches!(response.status, 408 | 429 | 500..=599) => return Verdict::Answered,
        Ok(response) => (format!("HTTP {}", response.status), response.retry_after),
        Err(error) if error.is_retryable() => (error.to_string(), error.retry_after()),
        Err(error) => return Verdict::GaveUp(error.to_string()),
    };
    if attempt >= MAX_ATTEMPTS {
        return Verdict::GaveUp(format!("{reason} (gave up after {attempt} attempts)"));
    }
    Verdict::Retry(backoff::stage_retry_delay(FIRST_RETRY_DELAY, attempt, retry_after, jitter))
}

/// The clients a worker's requests share (a connection pool each): superusers' requests (and
/// everyone's when `http_allow_private` is on) may reach loopback and private addresses, as
/// with pg_net; the others go through the SSRF guard. Redirects are returned as responses, as
/// libcurl does by default.
#[derive(Clone)]
pub struct Clients {
    open: HttpClient,
    guarded: HttpClient,
}

impl Clients {
    pub fn new() -> Result<Clients, HttpError> {
        let config = |allow_private| HttpConfig { max_bytes: MAX_RESPONSE_BYTES, max_redirects: 0, allow_private, ..HttpConfig::default() };
        Ok(Clients { open: HttpClient::new(config(true))?, guarded: HttpClient::new(config(false))? })
    }

    /// The client that sends `request`.
    pub fn for_request(&self, request: &Claimed) -> HttpClient {
        if request.guarded { self.guarded.clone() } else { self.open.clone() }
    }
}

impl Claimed {
    /// The request to send: the URL with `params` added to its query, the headers, the body.
    /// How long the request may take (its `timeout_milliseconds`).
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_milliseconds)
    }

    pub fn request(&self) -> Result<Request, HttpError> {
        let mut url = url::Url::parse(&self.url).map_err(|e| HttpError::InvalidUrl(format!("{}: {e}", self.url)))?;
        if !self.params.is_empty() {
            let mut query = url.query_pairs_mut();
            for (name, value) in &self.params {
                query.append_pair(name, value.as_str().unwrap_or_default());
            }
        }
        let method = match self.method.as_str() {
            "POST" => Method::Post,
            "DELETE" => Method::Delete,
            _ => Method::Get,
        };
        let body = self.body.as_deref().map(decode_bytea_hex).transpose()?;
        let mut request = Request { method, body, timeout: Some(self.timeout()), ..Request::get(url.to_string()) };
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str().unwrap_or_default());
        }
        Ok(request)
    }
}

fn decode_bytea_hex(text: &str) -> Result<Vec<u8>, HttpError> {
    let hex = text.strip_prefix("\\x").unwrap_or(text);
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<_, _>>()
        .map_err(|_| HttpError::Other("the stored request body is not valid hex".to_string()))
}

/// Claims up to `limit` due requests for this backend (main thread, its own transaction), and
/// returns them with the seconds until the next later one is due. An owner gets at most
/// `http_max_in_flight_per_owner` requests in flight across all workers, so that one role's
/// burst cannot hold every delivery slot (the oldest 1,000 due requests are considered).
pub fn claim(limit: usize) -> Result<(Vec<Claimed>, Option<f64>), String> {
    #[derive(Deserialize)]
    struct Claim {
        requests: Vec<Claimed>,
        next_due_in: Option<f64>,
    }
    let claim: Claim = in_transaction(|| {
        query_json(
            "WITH per_owner AS (
                 SELECT coalesce((SELECT (p.value #>> '{}')::int FROM pageperfect.parameters p
                                   WHERE p.name = 'http_max_in_flight_per_owner'), 24) AS max_in_flight
             ), busy AS (
                 SELECT r.owner, count(*) AS n FROM pageperfect.http_requests r WHERE r.status = 'in_flight' GROUP BY r.owner
             ), candidates AS (
                 SELECT oldest.id, oldest.owner,
                        row_number() OVER (PARTITION BY oldest.owner ORDER BY oldest.next_attempt_at, oldest.id) AS n
                   FROM (SELECT r.id, r.owner, r.next_attempt_at FROM pageperfect.http_requests r
                          WHERE r.status = 'pending' AND r.next_attempt_at <= clock_timestamp()
                          ORDER BY r.next_attempt_at, r.id LIMIT 1000) oldest
             ), due AS (
                 -- Locking rechecks these conditions on the newest version of each row: another
                 -- worker may have claimed, sent and put back a candidate for its retry since
                 -- this statement's snapshot, and a request whose retry is not due yet must not
                 -- be sent (the burst test saw 429s resent at once before the due time was here).
                 SELECT r.id FROM pageperfect.http_requests r
                  WHERE r.id = ANY (ARRAY(
                            SELECT c.id FROM candidates c LEFT JOIN busy b ON b.owner = c.owner CROSS JOIN per_owner
                             WHERE c.n + coalesce(b.n, 0) <= per_owner.max_in_flight))
                    AND r.status = 'pending' AND r.next_attempt_at <= clock_timestamp()
                  ORDER BY r.next_attempt_at, r.id LIMIT ($1 #>> '{}')::int FOR UPDATE SKIP LOCKED
             ), claimed AS (
                 UPDATE pageperfect.http_requests r
                    SET status = 'in_flight', attempts = r.attempts + 1, claimed_pid = pg_backend_pid(),
                        claimed_backend_start = (SELECT a.backend_start FROM pg_stat_activity a WHERE a.pid = pg_backend_pid())
                   FROM due WHERE r.id = due.id
                 RETURNING r.id, r.method, r.url, r.params, r.headers, r.body, r.timeout_milliseconds, r.attempts, r.guarded
             )
             SELECT jsonb_build_object(
                 'requests', (SELECT coalesce(jsonb_agg(c ORDER BY c.id), '[]') FROM claimed c),
                 'next_due_in', (SELECT extract(epoch FROM min(r.next_attempt_at) - clock_timestamp())
                                   FROM pageperfect.http_requests r WHERE r.status = 'pending'))",
            Some(json!(limit)),
        )
    })?;
    Ok((claim.requests, claim.next_due_in))
}

/// The outcomes of a batch of attempts, column by column, as the recording statement takes them.
#[derive(Default)]
struct Outcomes {
    id: Vec<i64>,
    /// `done`, `failed`, or `pending` for a retry.
    status: Vec<&'static str>,
    retry_in_seconds: Vec<Option<f64>>,
    status_code: Vec<Option<i32>>,
    content_type: Vec<Option<String>>,
    headers: Vec<Option<pgrx::JsonB>>,
    content: Vec<Option<String>>,
    timed_out: Vec<bool>,
    error_msg: Vec<Option<String>>,
    attempts: Vec<i32>,
}

impl Outcomes {
    fn push(&mut self, delivered: &Delivered, verdict: &Verdict) {
        let response = delivered.result.as_ref().ok();
        let (status, retry_in, error) = match verdict {
            Verdict::Answered => ("done", None, None),
            Verdict::Retry(after) => ("pending", Some(after.as_secs_f64()), None),
            Verdict::GaveUp(reason) => ("failed", None, Some(reason.clone())),
        };
        self.id.push(delivered.id);
        self.status.push(status);
        self.retry_in_seconds.push(retry_in);
        self.status_code.push(response.map(|r| i32::from(r.status)));
        self.content_type.push(response.and_then(|r| r.content_type.clone()));
        self.headers.push(response.map(|r| {
            pgrx::JsonB(Value::Object(r.headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect()))
        }));
        // Postgres text cannot hold NUL; a binary body is otherwise kept as text, as pg_net keeps it.
        self.content.push(response.map(|r| r.text().replace('\0', "")));
        self.timed_out.push(matches!(delivered.result, Err(HttpError::Timeout(_))));
        self.error_msg.push(error);
        self.attempts.push(delivered.attempt);
    }

    /// Stores the batch in one transaction: each request back to `pending` for its retry, or
    /// `done`/`failed` together with its response row. Only requests still claimed by this
    /// backend are touched (a sweep may have taken one back).
    fn store(self) -> Result<(), String> {
        in_transaction(move || {
            Spi::run_with_args(
                "WITH outcome AS (
                     SELECT * FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::int[], $5::text[], $6::jsonb[],
                                          $7::text[], $8::boolean[], $9::text[], $10::int[])
                              AS o(id, status, retry_in_seconds, status_code, content_type, headers, content, timed_out, error_msg, attempts)
                 ), recorded AS (
                     UPDATE pageperfect.http_requests r
                        SET status = o.status, claimed_pid = NULL, claimed_backend_start = NULL,
                            next_attempt_at = CASE WHEN o.status = 'pending'
                                                   THEN clock_timestamp() + make_interval(secs => o.retry_in_seconds)
                                                   ELSE r.next_attempt_at END
                       FROM outcome o
                      WHERE r.id = o.id AND r.status = 'in_flight' AND r.claimed_pid = pg_backend_pid()
                     RETURNING r.id, r.status
                 )
                 INSERT INTO pageperfect.http_responses (id, status_code, content_type, headers, content, timed_out, error_msg, attempts)
                 SELECT o.id, o.status_code, o.content_type, o.headers, o.content, o.timed_out, o.error_msg, o.attempts
                   FROM recorded JOIN outcome o USING (id)
                  WHERE recorded.status <> 'pending'
                 ON CONFLICT (id) DO NOTHING",
                &[
                    self.id.into(),
                    self.status.into(),
                    self.retry_in_seconds.into(),
                    self.status_code.into(),
                    self.content_type.into(),
                    self.headers.into(),
                    self.content.into(),
                    self.timed_out.into(),
                    self.error_msg.into(),
                    self.attempts.into(),
                ],
            )
        })
    }
}

/// Records the outcomes of finished attempts (main thread), all in one transaction. Should that
/// fail, each is recorded on its own, and one that still cannot be stored is recorded as a final
/// failure saying why, so that no request stays claimed by a live worker for good.
pub fn record(batch: Vec<Delivered>) {
    let judged: Vec<(Delivered, Verdict)> = batch
        .into_iter()
        .map(|delivered| {
            let verdict = judge(&delivered.result, delivered.attempt, fastrand::f64());
            (delivered, verdict)
        })
        .collect();
    let mut outcomes = Outcomes::default();
    for (delivered, verdict) in &judged {
        outcomes.push(delivered, verdict);
    }
    let Err(error) = outcomes.store() else { return };
    warning!("pageperfect pipeline: could not record {} HTTP outcomes together, recording one by one: {error}", judged.len());
    for (delivered, verdict) in &judged {
        let mut single = Outcomes::default();
        single.push(delivered, verdict);
        let Err(error) = single.store() else { continue };
        let mut failure = Outcomes::default();
        let unstored = Delivered { id: delivered.id, attempt: delivered.attempt, result: Err(HttpError::Other(String::new())) };
        failure.push(&unstored, &Verdict::GaveUp(format!("the response could not be stored: {error}")));
        if let Err(error) = failure.store() {
            warning!("pageperfect pipeline: could not record HTTP request {}: {error}", delivered.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, retry_after: Option<u64>) -> Result<Response, HttpError> {
        Ok(Response {
            status,
            final_url: "http://x/".into(),
            headers: vec![],
            content_type: None,
            body: vec![],
            retry_after: retry_after.map(Duration::from_secs),
            elapsed: Duration::ZERO,
        })
    }

    #[test]
    fn a_response_is_the_answer_unless_its_status_asks_for_a_retry() {
        for status in [200, 201, 204, 301, 400, 404, 422] {
            assert_eq!(judge(&response(status, None), 1, 0.0), Verdict::Answered, "{status}");
        }
        assert_eq!(judge(&response(500, None), 1, 0.0), Verdict::Retry(Duration::from_secs(1)));
        assert_eq!(judge(&response(503, None), 3, 0.0), Verdict::Retry(Duration::from_secs(4)));
        assert_eq!(judge(&response(429, Some(7)), 1, 0.0), Verdict::Retry(Duration::from_secs(7)), "Retry-After is a floor");
        assert_eq!(judge(&response(502, None), MAX_ATTEMPTS, 0.0), Verdict::GaveUp("HTTP 502 (gave up after 5 attempts)".into()));
    }

    #[test]
    fn timeouts_and_resets_are_retried_and_bad_requests_are_not() {
        let timeout = Err(HttpError::Timeout(Duration::from_millis(500)));
        assert_eq!(judge(&timeout, 2, 0.0), Verdict::Retry(Duration::from_secs(2)));
        assert_eq!(
            judge(&timeout, MAX_ATTEMPTS, 0.0),
            Verdict::GaveUp("no complete response within 500ms (gave up after 5 attempts)".into())
        );
        assert!(matches!(judge(&Err(HttpError::Connect("reset".into())), 1, 0.5), Verdict::Retry(_)));
        assert_eq!(judge(&Err(HttpError::InvalidUrl("x".into())), 1, 0.0), Verdict::GaveUp("invalid URL x".into()));
    }

    #[test]
    fn the_request_carries_params_headers_body_and_timeout() {
        let claimed: Claimed = serde_json::from_value(json!({
            "id": 1, "method": "POST", "url": "https://example.com/hook?a=1",
            "params": {"b": "two words"}, "headers": {"Content-Type": "application/json", "X-Key": "k"},
            "body": "\\x7b7d", "timeout_milliseconds": 2500, "attempts": 1, "guarded": true
        }))
        .unwrap();
        let request = claimed.request().unwrap();
        assert_eq!(request.method, Method::Post);
        assert_eq!(request.url, "https://example.com/hook?a=1&b=two+words");
        assert_eq!(request.body.as_deref(), Some(&b"{}"[..]));
        assert_eq!(request.timeout, Some(Duration::from_millis(2500)));
        assert!(request.headers.contains(&("X-Key".to_string(), "k".to_string())));
        assert!(decode_bytea_hex("\\x7").is_err());
    }
}
