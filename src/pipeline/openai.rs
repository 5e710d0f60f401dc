//! The OpenAI-compatible HTTP API that both `openai` providers call (`/v1/embeddings` and
//! `/v1/chat/completions` of OpenAI, vLLM, Ollama, TEI …): the API key, the request, and the
//! classification of what comes back (429 and 5xx retried after any Retry-After, other 4xx
//! permanent, malformed JSON retried with a clear message).

use crate::config;
use crate::http::client::{check_status, HttpClient, HttpConfig, Request};
use crate::queue::stage::StageError;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

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

/// POSTs `body` to `url` and parses the JSON answer as `T`.
pub async fn post<T: DeserializeOwned>(
    client: &HttpClient,
    url: &str,
    api_key: Option<&str>,
    body: &Value,
) -> Result<T, StageError> {
    let mut request = Request::post_json(url, body);
    if let Some(key) = api_key {
        request = request.header("Authorization", format!("Bearer {key}"));
    }
    let response = check_status(client.send(request).await?)?;
    serde_json::from_slice(&response.body).map_err(|e| {
        let excerpt: String = String::from_utf8_lossy(&response.body).chars().take(120).collect();
        StageError::retryable(format!("{url} answered with malformed JSON ({e}): {excerpt:?}"))
    })
}
