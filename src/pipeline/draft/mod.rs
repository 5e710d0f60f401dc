//! Drafts content for a page's top gap with the configured provider: `local` (a structured
//! outline from the gap data, no network) or `openai` (any OpenAI-compatible
//! `/v1/chat/completions`, its wire format in `openai.rs`). Both get the same `DraftRequest` and
//! give back a `Draft`.

mod local;
mod openai;

use super::openai as openai_api;
use crate::config::{self, LlmProvider, LlmTokenLimit};
use crate::queue::stage::StageError;
use std::time::Instant;

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
                api_key: openai_api::api_key(),
                token_limit: config::LLM_TOKEN_LIMIT.get(),
            },
        }
    }

    /// What decides the drafts it writes (not the API key): for input digests.
    pub fn identity(&self) -> (&'static str, &str, &str) {
        match self {
            Drafter::Local => (local::PROVIDER, local::MODEL, ""),
            Drafter::OpenAi { url, model, .. } => (openai::PROVIDER, model, url),
        }
    }

    /// Drafts `request`; rate limits and server errors are retried within the call while
    /// `deadline` allows.
    pub async fn draft(&self, request: &DraftRequest, deadline: Instant) -> Result<Draft, StageError> {
        match self {
            Drafter::Local => Ok(Draft {
                text: local::draft(request),
                provider: local::PROVIDER,
                model: local::MODEL.to_string(),
                prompt_tokens: None,
                completion_tokens: None,
            }),
            Drafter::OpenAi { url, model, api_key, token_limit } => {
                openai::draft(url, model, api_key.as_deref(), *token_limit, request, deadline).await
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
