//! Drafts content for a page's top gap with the configured provider: `local` (a structured
//! outline from the gap data, no network) or `openai` (any OpenAI-compatible
//! `/v1/chat/completions`, its wire format in `openai.rs`). Both get the same `DraftRequest` and
//! give back a `Draft`.

mod local;
mod openai;
mod request;

pub use request::{Draft, DraftRequest};

use super::openai as openai_api;
use crate::config::{self, LlmProvider, LlmTokenLimit};
use crate::queue::stage::StageError;
use std::time::Instant;

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
