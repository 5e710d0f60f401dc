//! The `openai` drafter: the chat completions API (`/v1/chat/completions`) as OpenAI-compatible
//! servers speak it. The prompt (the page's outline, the gap's queries with their impressions,
//! the closest existing paragraphs), the request (with `max_tokens`, or `max_completion_tokens`
//! for servers that want it) and the reading of the answer (the text, the model that wrote it,
//! token usage).

use super::request::{Draft, DraftRequest};
use crate::config::LlmTokenLimit;
use crate::excerpt;
use crate::http::error::HttpError;
use crate::pipeline::openai as openai_api;
use crate::queue::stage::StageError;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub const PROVIDER: &str = "openai";
/// Bounds on what goes into the prompt, to keep it well inside any model's context.
const MAX_HEADINGS: usize = 40;
const MAX_QUERIES: usize = 25;
const MAX_PARAGRAPH_CHARS: usize = 800;
const MAX_TOKENS: u32 = 1_200;

const SYSTEM_PROMPT: &str = "You are an SEO content editor. You write one new section for an existing web page so \
that it answers what its searchers ask, in the page's own voice, without repeating what the page already says. \
Answer in Markdown: a `##` heading, then the section (300 to 500 words). Use the searchers' own words where they \
read naturally; do not invent facts, prices or statistics.";

#[derive(Deserialize)]
pub struct ChatCompletion {
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<i32>,
    completion_tokens: Option<i32>,
}

/// The user message: what the page is, what it lacks, and what it already says nearby.
pub fn user_prompt(request: &DraftRequest) -> String {
    let mut prompt = format!("Page: {}\n", request.page_url);
    if let Some(title) = &request.page_title {
        prompt.push_str(&format!("Title: {title}\n"));
    }
    if !request.headings.is_empty() {
        prompt.push_str("\nThe page's current headings:\n");
        for heading in request.headings.iter().take(MAX_HEADINGS) {
            prompt.push_str(&format!("- {heading}\n"));
        }
    }
    prompt.push_str(&format!(
        "\nSearchers reach the page with these queries, which it does not answer well (best similarity {:.2}; impressions in the last 28 days):\n",
        request.similarity
    ));
    for (i, query) in request.queries.iter().enumerate().take(MAX_QUERIES) {
        match request.query_impressions.get(i) {
            Some(impressions) => prompt.push_str(&format!("- \"{query}\" ({impressions} impressions)\n")),
            None => prompt.push_str(&format!("- \"{query}\"\n")),
        }
    }
    prompt.push_str(&format!("In all {} impressions", request.impressions));
    match request.estimated_clicks_gain.filter(|gain| *gain >= 1.0) {
        Some(gain) => prompt.push_str(&format!("; covering them well could bring about {gain:.0} more clicks.\n")),
        None => prompt.push_str(".\n"),
    }
    if !request.closest_paragraphs.is_empty() {
        prompt.push_str("\nThe page's closest existing paragraphs (build on them, do not repeat them):\n");
        for (i, paragraph) in request.closest_paragraphs.iter().enumerate() {
            prompt.push_str(&format!("{}. {}\n", i + 1, excerpt(paragraph, MAX_PARAGRAPH_CHARS)));
        }
    }
    prompt.push_str("\nWrite the missing section.");
    prompt
}

/// The `/v1/chat/completions` request body: the length limit as `max_tokens` with a temperature,
/// or, for servers that refuse those (reasoning models), as `max_completion_tokens` alone.
pub fn chat_request(model: &str, request: &DraftRequest, completion_tokens: bool) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [
            { "role": "system", "content": SYSTEM_PROMPT },
            { "role": "user", "content": user_prompt(request) },
        ],
    });
    if completion_tokens {
        body["max_completion_tokens"] = json!(MAX_TOKENS);
    } else {
        body["temperature"] = json!(0.4);
        body["max_tokens"] = json!(MAX_TOKENS);
    }
    body
}

/// The draft in a chat completion; an answer without text is an error (to be retried).
pub fn into_draft(answer: ChatCompletion, requested_model: &str) -> Result<Draft, String> {
    let text = answer
        .choices
        .into_iter()
        .next()
        .and_then(|choice| choice.message.content)
        .map(|content| content.trim().to_string())
        .filter(|content| !content.is_empty())
        .ok_or("the chat completion has no text in its first choice")?;
    Ok(Draft {
        text,
        provider: PROVIDER,
        model: answer.model.filter(|m| !m.is_empty()).unwrap_or_else(|| requested_model.to_string()),
        prompt_tokens: answer.usage.as_ref().and_then(|u| u.prompt_tokens),
        completion_tokens: answer.usage.as_ref().and_then(|u| u.completion_tokens),
    })
}

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

/// Drafts `request` with the chat completions API at `url`; rate limits and server errors are
/// retried within the call while `deadline` allows. A server that refuses `max_tokens` (OpenAI's
/// reasoning models) is asked again with `max_completion_tokens`, and so at once from then on.
pub async fn draft(
    url: &str,
    model: &str,
    api_key: Option<&str>,
    token_limit: LlmTokenLimit,
    request: &DraftRequest,
    deadline: Instant,
) -> Result<Draft, StageError> {
    let client = openai_api::client()?;
    let completion_tokens = token_limit == LlmTokenLimit::MaxCompletionTokens || WANTS_COMPLETION_TOKENS.load(Ordering::Relaxed);
    let body = chat_request(model, request, completion_tokens);
    let answer = match openai_api::send(&client, url, api_key, &body, deadline).await {
        Err(error) if !completion_tokens && refuses_token_limit(&error) => {
            let body = chat_request(model, request, true);
            let answer = openai_api::send(&client, url, api_key, &body, deadline).await?;
            WANTS_COMPLETION_TOKENS.store(true, Ordering::Relaxed);
            answer
        }
        answer => answer?,
    };
    into_draft(openai_api::parse(url, &answer)?, model).map_err(|e| StageError::retryable(format!("{url}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::super::request::sample_request;

    fn request() -> DraftRequest {
        DraftRequest { closest_paragraphs: vec!["x".repeat(2000), "Mix flour and water.".to_string()], ..sample_request() }
    }

    fn answer(json: &str) -> ChatCompletion {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_prompt_carries_the_outline_the_queries_with_impressions_and_the_closest_paragraphs() {
        let prompt = user_prompt(&request());
        assert!(prompt.starts_with("Page: https://example.com/sourdough\nTitle: Sourdough basics\n"), "{prompt}");
        assert!(prompt.contains("- Sourdough basics\n- Baking day\n"));
        assert!(prompt.contains("- \"feeding a sourdough starter\" (900 impressions)\n- \"how often to feed starter\" (300 impressions)\n"));
        assert!(prompt.contains("best similarity 0.41"));
        assert!(prompt.contains("In all 1200 impressions; covering them well could bring about 37 more clicks."));
        assert!(prompt.contains("\n2. Mix flour and water.\n"));
        // Long paragraphs are cut, not sent whole.
        let first = prompt.lines().find(|l| l.starts_with("1. ")).unwrap();
        assert_eq!(first.chars().count(), 3 + MAX_PARAGRAPH_CHARS + 1);
    }

    #[test]
    fn missing_parts_are_left_out_of_the_prompt() {
        let prompt = user_prompt(&DraftRequest {
            page_title: None,
            headings: vec![],
            closest_paragraphs: vec![],
            estimated_clicks_gain: None,
            query_impressions: vec![],
            ..request()
        });
        assert!(!prompt.contains("Title:") && !prompt.contains("headings") && !prompt.contains("closest existing"));
        assert!(prompt.contains("- \"feeding a sourdough starter\"\n"));
        assert!(prompt.contains("In all 1200 impressions.\n"));
    }

    #[test]
    fn the_request_names_the_model_and_sends_system_and_user_messages() {
        let body = chat_request("gpt-test", &request(), false);
        assert_eq!(body["model"], "gpt-test");
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(body["messages"][1]["content"], user_prompt(&request()));
        assert_eq!((body["max_tokens"].as_u64(), body["temperature"].as_f64()), (Some(u64::from(MAX_TOKENS)), Some(0.4)));
        let reasoning = chat_request("o3-mini", &request(), true);
        assert_eq!(reasoning["max_completion_tokens"], MAX_TOKENS);
        assert!(reasoning.get("max_tokens").is_none() && reasoning.get("temperature").is_none());
    }

    #[test]
    fn an_answer_gives_the_text_the_model_and_the_token_usage() {
        let draft = into_draft(
            answer(r###"{"model":"gpt-4o-mini-2024","choices":[{"index":0,"message":{"role":"assistant","content":"  ## Feeding\nText.\n"},"finish_reason":"stop"}],"usage":{"prompt_tokens":321,"completion_tokens":45,"total_tokens":366}}"###),
            "gpt-4o-mini",
        )
        .unwrap();
        assert_eq!(draft.text, "## Feeding\nText.");
        assert_eq!((draft.provider, draft.model.as_str()), ("openai", "gpt-4o-mini-2024"));
        assert_eq!((draft.prompt_tokens, draft.completion_tokens), (Some(321), Some(45)));
        // Servers that leave out the model and usage (some local ones do) still give a draft.
        let bare = into_draft(answer(r#"{"choices":[{"message":{"content":"text"}}]}"#), "llama3").unwrap();
        assert_eq!((bare.model.as_str(), bare.prompt_tokens), ("llama3", None));
    }

    #[test]
    fn an_answer_without_text_is_an_error() {
        for json in [r#"{"choices":[]}"#, r#"{"choices":[{"message":{"content":null}}]}"#, r#"{"choices":[{"message":{"content":"  "}}]}"#, "{}"] {
            assert!(into_draft(answer(json), "m").is_err(), "{json}");
        }
    }
}
