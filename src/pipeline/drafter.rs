//! Drafts content for a page's top gap with the configured provider: `local` (a structured
//! outline from the gap data, no network) or `openai` (any OpenAI-compatible
//! `/v1/chat/completions`). Both get the same `DraftRequest` and give back a `Draft`.

use super::{draft_local, draft_openai, openai};
use crate::config::{self, LlmProvider, LlmTokenLimit};
use crate::http::error::HttpError;
use crate::queue::stage::StageError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Set when a server refused `max_tokens` (or a temperature) and accepted
/// `max_completion_tokens`: this worker's later drafts ask that way at once.
static WANTS_COMPLETION_TOKENS: AtomicBool = AtomicBool::new(false);

/// Whether a 400 answer says the request's length limit or temperature is not supported (as
/// OpenAI's reasoning models say: "Unsupported parameter: 'max_tokens' … Use
/// 'max_completion_tokens' instead").
fn refuses_token_limit(error: &HttpError) -> bool {
    match error {
        HttpError::Status { status: 400, body_excerpt, .. } => {
            body_excerpt.contains("max_tokens") || body_excerpt.contains("max_completion_tokens") || body_excerpt.contains("temperature")
        }
        _ => false,
    }
}

/// What a drafter knows about the page and its top gap.
#[derive(Clone, Debug)]
pub struct DraftRequest {
    pub page_url: String,
    pub page_title: Option<String>,
    pub headings: Vec<String>,
    /// The gap cluster's queries, most impressions first, and each one's impressions.
    pub queries: Vec<String>,
    pub query_impressions: Vec<i64>,
    pub impressions: i64,
    pub similarity: f64,
    pub estimated_clicks_gain: Option<f64>,
    /// The page's paragraphs closest to the gap, closest first.
    pub closest_paragraphs: Vec<String>,
}

/// A draft and what produced it.
#[derive(Debug)]
pub struct Draft {
    pub text: String,
    pub provider: &'static str,
    pub model: String,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
}

/// The provider settings, read on the worker's main thread and carried to the runtime.
#[derive(Clone, Debug)]
pub enum Drafter {
    Local,
    OpenAi { url: String, model: String, api_key: Option<String>, token_limit: LlmTokenLimit },
}

impl Drafter {
    pub fn from_settings() -> Drafter {
        match config::LLM_PROVIDER.get() {
            LlmProvider::Local => Drafter::Local,
            LlmProvider::OpenAi => Drafter::OpenAi {
                url: config::string(&config::LLM_URL).unwrap_or_default(),
                model: config::string(&config::LLM_MODEL).unwrap_or_default(),
                api_key: openai::api_key(),
                token_limit: config::LLM_TOKEN_LIMIT.get(),
            },
        }
    }

    /// What decides the drafts it writes (not the API key): for input digests.
    pub fn identity(&self) -> (&'static str, &str, &str) {
        match self {
            Drafter::Local => (draft_local::PROVIDER, draft_local::MODEL, ""),
            Drafter::OpenAi { url, model, .. } => (draft_openai::PROVIDER, model, url),
        }
    }

    /// Drafts `request`; rate limits and server errors are retried within the call while
    /// `deadline` allows.
    pub async fn draft(&self, request: &DraftRequest, deadline: Instant) -> Result<Draft, StageError> {
        match self {
            Drafter::Local => Ok(Draft {
                text: draft_local::draft(request),
                provider: draft_local::PROVIDER,
                model: draft_local::MODEL.to_string(),
                prompt_tokens: None,
                completion_tokens: None,
            }),
            Drafter::OpenAi { url, model, api_key, token_limit } => {
                let client = openai::client()?;
                let completion_tokens = *token_limit == LlmTokenLimit::MaxCompletionTokens || WANTS_COMPLETION_TOKENS.load(Ordering::Relaxed);
                let body = draft_openai::chat_request(model, request, completion_tokens);
                let answer = match openai::send(&client, url, api_key.as_deref(), &body, deadline).await {
                    Err(error) if !completion_tokens && refuses_token_limit(&error) => {
                        let body = draft_openai::chat_request(model, request, true);
                        let answer = openai::send(&client, url, api_key.as_deref(), &body, deadline).await?;
                        WANTS_COMPLETION_TOKENS.store(true, Ordering::Relaxed);
                        answer
                    }
                    answer => answer?,
                };
                draft_openai::into_draft(openai::parse(url, &answer)?, model).map_err(|e| StageError::retryable(format!("{url}: {e}")))
            }
        }
    }
}

/// The request the drafters' unit tests start from.
#[cfg(test)]
pub fn sample_request() -> DraftRequest {
    DraftRequest {
        page_url: "https://example.com/sourdough".to_string(),
        page_title: Some("Sourdough basics".to_string()),
        headings: vec!["Sourdough basics".to_string(), "Baking day".to_string()],
        queries: vec!["feeding a sourdough starter".to_string(), "how often to feed starter".to_string()],
        query_impressions: vec![900, 300],
        impressions: 1200,
        similarity: 0.41,
        estimated_clicks_gain: Some(37.4),
        closest_paragraphs: vec!["Mix flour and water and wait. ".repeat(50), "Second closest.".to_string()],
    }
}
