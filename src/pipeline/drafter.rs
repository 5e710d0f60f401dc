//! Drafts content for a page's top gap with the configured provider: `local` (a structured
//! outline from the gap data, no network) or `openai` (any OpenAI-compatible
//! `/v1/chat/completions`). Both get the same `DraftRequest` and give back a `Draft`.

use super::{draft_local, draft_openai, openai};
use crate::config::{self, LlmProvider};
use crate::queue::stage::StageError;

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
    OpenAi { url: String, model: String, api_key: Option<String> },
}

impl Drafter {
    pub fn from_settings() -> Drafter {
        match config::LLM_PROVIDER.get() {
            LlmProvider::Local => Drafter::Local,
            LlmProvider::OpenAi => Drafter::OpenAi {
                url: config::string(&config::LLM_URL).unwrap_or_default(),
                model: config::string(&config::LLM_MODEL).unwrap_or_default(),
                api_key: openai::api_key(),
            },
        }
    }

    pub async fn draft(&self, request: &DraftRequest) -> Result<Draft, StageError> {
        match self {
            Drafter::Local => Ok(Draft {
                text: draft_local::draft(request),
                provider: draft_local::PROVIDER,
                model: draft_local::MODEL.to_string(),
                prompt_tokens: None,
                completion_tokens: None,
            }),
            Drafter::OpenAi { url, model, api_key } => {
                let body = draft_openai::chat_request(model, request);
                let answer = openai::post(&openai::client()?, url, api_key.as_deref(), &body).await?;
                draft_openai::into_draft(answer, model).map_err(|e| StageError::retryable(format!("{url}: {e}")))
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
