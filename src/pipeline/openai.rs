//! The OpenAI-compatible HTTP API that both `openai` providers call (`/v1/embeddings` and
//! `/v1/chat/completions` of OpenAI, vLLM, Ollama, TEI …): the API key, the request, and the
//! classification of what comes back. 429, 5xx, timeouts and resets are retried within the call
//! (after the server's `retry-after-ms` or `Retry-After`, else with backoff) for as long as the
//! stage's deadline allows, so that one rate-limited request does not fail the whole attempt;
//! other 4xx are permanent, malformed JSON is retried with a clear message.

use crate::backoff;
use crate::config;
use crate::http::client::{check_status, HttpClient, HttpConfig, Request};
use crate::http::error::HttpError;
use crate::queue::stage::StageError;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::{Duration, Instant};

/// A model server's answer takes longer than a page; the stage's own timeout still bounds it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest response read (a full batch of 3,072-dimension embeddings fits easily).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// The API key: the setting, else the postmaster's `OPENAI_API_KEY`.
pub fn api_key() -> Option<String> {
    config::string(&config::API_KEY).or_else(|| std::env::var("OPENAI_API_KEY").ok().filter(|k| !k.is_empty()))
}

/// A client for model servers; one serves all the requests of a stage attempt, so that batches
/// share its connections.
pub fn client() -> Result<HttpClient, StageError> {
    // The URL is a superuser's setting, not user input, and often a server on this host or
    // network (vLLM, Ollama, TEI): the crawler's SSRF guard does not apply.
    Ok(HttpClient::new(HttpConfig {
        timeout: REQUEST_TIMEOUT,
        max_bytes: MAX_RESPONSE_BYTES,
        allow_private: true,
        ..HttpConfig::default()
    })?)
}

/// The first wait between tries of one call when the server names none; it doubles.
const FIRST_CALL_RETRY: Duration = Duration::from_millis(500);

/// POSTs `body` to `url` and returns the successful (2xx) response, trying again within the call
/// on 429, 5xx, timeouts and resets while the next try can start before `deadline`.
pub async fn send(
    client: &HttpClient,
    url: &str,
    api_key: Option<&str>,
    body: &Value,
    deadline: Instant,
) -> Result<Vec<u8>, HttpError> {
    let mut attempt = 1;
    loop {
        let mut request = Request::post_json(url, body);
        if let Some(key) = api_key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let error = match client.send(request).await.and_then(check_status) {
            Ok(response) => return Ok(response.body),
            Err(error) if error.is_retryable() => error,
            Err(error) => return Err(error),
        };
        // The server's own wait when it names one (`retry-after-ms: 300` means 300 ms), else backoff.
        let wait = error.retry_after().unwrap_or_else(|| backoff::stage_retry_delay(FIRST_CALL_RETRY, attempt, None, fastrand::f64()));
        if Instant::now() + wait >= deadline {
            return Err(error);
        }
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// Parses a model server's answer as `T`.
pub fn parse<T: DeserializeOwned>(url: &str, body: &[u8]) -> Result<T, StageError> {
    serde_json::from_slice(body).map_err(|e| {
        let excerpt: String = String::from_utf8_lossy(body).chars().take(120).collect();
        StageError::retryable(format!("{url} answered with malformed JSON ({e}): {excerpt:?}"))
    })
}

/// [`send`] and [`parse`].
pub async fn post<T: DeserializeOwned>(
    client: &HttpClient,
    url: &str,
    api_key: Option<&str>,
    body: &Value,
    deadline: Instant,
) -> Result<T, StageError> {
    parse(url, &send(client, url, api_key, body, deadline).await?)
}
