//! Delivery of the durable requests that `http_get`, `http_post` and `http_delete` queue: a
//! pipeline worker claims due requests (`in_flight`, with its backend recorded), sends them on
//! its tokio runtime with no transaction open, and records each outcome in its own
//! transaction: the response (`done`, whatever its status), or a transport failure with
//! pg_net's (libcurl's) words for it (`failed`). A request that may take more than one attempt
//! (`max_attempts`) is retried with backoff on timeouts, resets, 408, 429 (not before its
//! Retry-After) and 5xx until its last attempt. A request is only marked done together with its
//! stored response, so a crash loses none and never resends one that has its response.

use super::client::{HttpClient, HttpConfig, Method, Request, Response};
use super::error::HttpError;
use crate::backoff;
use crate::worker::{in_transaction, query_json};
use pgrx::prelude::*;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::time::Duration;

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
    /// Attempts before the outcome is final (1: the first is).
    pub max_attempts: i32,
    /// Sent through the SSRF guard (see `queue_http_request`).
    guarded: bool,
}

/// What became of one attempt.
#[derive(Debug)]
pub struct Delivered {
    pub id: i64,
    pub attempt: i32,
    pub max_attempts: i32,
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

/// The verdict on `attempt` (1 for the first) of a request that may take `max_attempts`: a
/// response is its answer, and so is a 408, 429 or 5xx on the last attempt; before that those
/// and network failures are retried. A failure on the last attempt is final, in libcurl's words
/// (see [`curl_message`]). `jitter` is a number in [0, 1).
pub fn judge(result: &Result<Response, HttpError>, attempt: i32, max_attempts: i32, jitter: f64) -> Verdict {
    let last = attempt >= max_attempts;
    let retry_after = match result {
        Ok(response) if last || !matches!(response.status, 408 | 429 | 500..=599) => return Verdict::Answered,
        Ok(response) => response.retry_after,
        Err(error) if !last && error.is_retryable() => error.retry_after(),
        Err(error) if attempt > 1 => return Verdict::GaveUp(format!("{} (gave up after {attempt} attempts)", curl_message(error))),
        Err(error) => return Verdict::GaveUp(curl_message(error)),
    };
    Verdict::Retry(backoff::stage_retry_delay(FIRST_RETRY_DELAY, attempt, retry_after, jitter))
}

/// A failure as pg_net stores it (libcurl's messages, and pg_net's own for a timeout), so that
/// code written against pg_net's `error_msg` reads ours alike. Failures libcurl has no words for
/// (the SSRF guard, the size cap) keep pageperfect's.
pub fn curl_message(error: &HttpError) -> String {
    match error {
        HttpError::Timeout(limit) => {
            let ms = limit.as_secs_f64() * 1000.0;
            format!(
                "Timeout of {} ms reached. Total time: {ms:.6} ms (DNS time: 0.000000 ms, TCP/SSL handshake time: 0.000000 ms, HTTP Request/Response time: {ms:.6} ms)",
                limit.as_millis()
            )
        }
        HttpError::Dns(_) => "Couldn't resolve host name".into(),
        HttpError::TooManyRedirects(_) => "Number of redirects hit maximum amount".into(),
        HttpError::InvalidUrl(url) if url.contains("only http and https") => "Unsupported protocol".into(),
        HttpError::Connect(cause) => {
            let cause = cause.to_ascii_lowercase();
            if cause.contains("connection refused") || cause.contains("error trying to connect") {
                "Couldn't connect to server".into()
            } else if cause.contains("closed before message completed") || cause.contains("incomplete message") {
                "Server returned nothing (no headers, no data)".into()
            } else if cause.contains("invalid") || cause.contains("parse") {
                "Weird server reply".into()
            } else if cause.contains("reset") {
                "Recv failure: Connection reset by peer".into()
            } else {
                "Failure when receiving data from the peer".into()
            }
        }
        other => other.to_string(),
    }
}

/// The clients a worker's requests share (a connection pool each): superusers' requests (and
/// everyone's when `http_allow_private` is on) may reach loopback and private addresses, as
/// with pg_net; the others go through the SSRF guard. Redirects are followed (up to libcurl's
/// 30), as pg_net has libcurl do.
#[derive(Clone)]
pub struct Clients {
    open: HttpClient,
    guarded: HttpClient,
}

impl Clients {
    pub fn new() -> Result<Clients, HttpError> {
        let config = |allow_private| HttpConfig { max_bytes: MAX_RESPONSE_BYTES, max_redirects: 30, allow_private, ..HttpConfig::default() };
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
        let params: Vec<(&String, String)> = self.params.iter().filter_map(|(name, value)| Some((name, as_text(value)?))).collect();
        if !params.is_empty() {
            let mut query = url.query_pairs_mut();
            for (name, value) in params {
                query.append_pair(name, &value);
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
            if let Some(value) = as_text(value) {
                request = request.header(name.as_str(), &value);
            }
        }
        Ok(request)
    }
}

/// A param or header value as pg_net sends it (`jsonb_each_text`): strings as they are, other
/// values as their JSON text, nulls not at all.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
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
    // pg_net.batch_size: how many requests one claim takes at most.
    let limit = limit.min(crate::config::PG_NET_BATCH_SIZE.get().max(0) as usize);
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
                 RETURNING r.id, r.method, r.url, r.params, r.headers, r.body, r.timeout_milliseconds, r.attempts, r.guarded,
                           r.max_attempts
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
        // Postgres text cannot hold NUL; a binary body is otherwise kept as text, as pg_net keeps
        // it, and an empty one is NULL, as there.
        self.content.push(response.filter(|r| !r.body.is_empty()).map(|r| r.text().replace('\0', "")));
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
            let verdict = judge(&delivered.result, delivered.attempt, delivered.max_attempts, fastrand::f64());
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
        let unstored = Delivered { result: Err(HttpError::Other(String::new())), ..*delivered };
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
    fn with_one_attempt_every_answer_is_the_response_and_failures_are_said_as_libcurl_says_them() {
        for status in [200, 201, 204, 301, 400, 404, 422, 429, 500, 503] {
            assert_eq!(judge(&response(status, None), 1, 1, 0.0), Verdict::Answered, "{status}");
        }
        let timeout = Err(HttpError::Timeout(Duration::from_millis(5000)));
        let Verdict::GaveUp(message) = judge(&timeout, 1, 1, 0.0) else { panic!("a timeout is final") };
        assert!(message.starts_with("Timeout of 5000 ms reached. Total time: 5000.000000 ms (DNS time: "), "{message}");
        let refused = Err(HttpError::Connect("error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)".into()));
        assert_eq!(judge(&refused, 1, 1, 0.0), Verdict::GaveUp("Couldn't connect to server".into()));
        let nothing = Err(HttpError::Connect("error sending request: connection closed before message completed".into()));
        assert_eq!(judge(&nothing, 1, 1, 0.0), Verdict::GaveUp("Server returned nothing (no headers, no data)".into()));
        assert_eq!(judge(&Err(HttpError::Dns("x: no such host".into())), 1, 1, 0.0), Verdict::GaveUp("Couldn't resolve host name".into()));
        assert_eq!(judge(&Err(HttpError::TooManyRedirects(30)), 1, 1, 0.0), Verdict::GaveUp("Number of redirects hit maximum amount".into()));
    }

    #[test]
    fn with_retries_408_429_5xx_and_network_failures_are_tried_again_until_the_last_attempt() {
        assert_eq!(judge(&response(500, None), 1, 5, 0.0), Verdict::Retry(Duration::from_secs(1)));
        assert_eq!(judge(&response(503, None), 3, 5, 0.0), Verdict::Retry(Duration::from_secs(4)));
        assert_eq!(judge(&response(429, Some(7)), 1, 5, 0.0), Verdict::Retry(Duration::from_secs(7)), "Retry-After is a floor");
        assert_eq!(judge(&response(502, None), 5, 5, 0.0), Verdict::Answered, "the last attempt's 502 is the answer");
        assert_eq!(judge(&response(404, None), 1, 5, 0.0), Verdict::Answered);
        let timeout = Err(HttpError::Timeout(Duration::from_millis(500)));
        assert_eq!(judge(&timeout, 2, 5, 0.0), Verdict::Retry(Duration::from_secs(2)));
        let Verdict::GaveUp(message) = judge(&timeout, 5, 5, 0.0) else { panic!("the last attempt is final") };
        assert!(message.starts_with("Timeout of 500 ms reached") && message.ends_with("(gave up after 5 attempts)"), "{message}");
        assert!(matches!(judge(&Err(HttpError::Connect("reset".into())), 1, 5, 0.5), Verdict::Retry(_)));
        assert_eq!(judge(&Err(HttpError::InvalidUrl("x".into())), 1, 5, 0.0), Verdict::GaveUp("invalid URL x".into()));
    }

    #[test]
    fn the_request_carries_params_headers_body_and_timeout() {
        let claimed: Claimed = serde_json::from_value(json!({
            "id": 1, "method": "POST", "url": "https://example.com/hook?a=1",
            "params": {"b": "two words", "n": 3, "gone": null}, "headers": {"Content-Type": "application/json", "X-Key": "k", "X-N": 1},
            "body": "\\x7b7d", "timeout_milliseconds": 2500, "attempts": 1, "guarded": true, "max_attempts": 1
        }))
        .unwrap();
        let request = claimed.request().unwrap();
        assert_eq!(request.method, Method::Post);
        assert_eq!(request.url, "https://example.com/hook?a=1&b=two+words&n=3");
        assert_eq!(request.body.as_deref(), Some(&b"{}"[..]));
        assert_eq!(request.timeout, Some(Duration::from_millis(2500)));
        assert!(request.headers.contains(&("X-Key".to_string(), "k".to_string())));
        assert!(request.headers.contains(&("X-N".to_string(), "1".to_string())));
        assert!(decode_bytea_hex("\\x7").is_err());
    }
}
