//! An OpenAI-compatible model server on loopback for the tests: `/v1/embeddings` (deterministic
//! bag-of-words vectors of the requested dimensions, or of the model's own) and
//! `/v1/chat/completions` (a short Markdown draft naming the first query of the prompt, with
//! token usage). The test can queue faults for the next requests to an endpoint: 429 with
//! Retry-After or OpenAI's retry-after-ms, 500, 401, a slow answer, malformed JSON. And it can
//! behave as real servers do ([`Quirks`]): refuse `dimensions` (vLLM, TEI and Ollama for most
//! models), refuse `max_tokens` and a temperature (OpenAI's reasoning models). Every request is
//! kept for the test to inspect.

use crate::site::{Received, Route, Site};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const EMBEDDINGS: &str = "/v1/embeddings";
pub const CHAT: &str = "/v1/chat/completions";
/// The model name the chat endpoint says answered.
pub const CHAT_MODEL: &str = "test-chat-1";

/// How a real server differs from the plain OpenAI API.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quirks {
    /// 400 when a request names `dimensions`; embeddings have the model's own length.
    pub refuses_dimensions: bool,
    /// 400 when a chat request has `max_tokens` or a temperature (reasoning models).
    pub refuses_max_tokens: bool,
}

/// The embedding length of a model that picks its own.
pub const NATIVE_DIMENSIONS: usize = 48;

#[derive(Clone, Debug)]
pub enum Fault {
    /// No fault: the normal answer (to fail a later request of a sequence).
    Answer,
    TooManyRequests { retry_after_seconds: u64 },
    /// 429 with OpenAI's `retry-after-ms` (and no Retry-After).
    RateLimitedMs { retry_after_ms: u64 },
    ServerError,
    Unauthorized,
    /// The normal answer, after this long.
    Slow(Duration),
    MalformedJson,
}

pub struct ModelServer {
    pub site: Site,
    faults: Arc<Mutex<HashMap<String, VecDeque<Fault>>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

/// Words hashed into `dimensions` buckets, L2-normalised: texts sharing words point alike.
fn embed(text: &str, dimensions: usize) -> Vec<f32> {
    let mut vector = vec![0.0_f32; dimensions];
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let hash = word.to_lowercase().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        vector[(hash % dimensions as u64) as usize] += 1.0;
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    vector
}

fn json_route(body: &Value) -> Route {
    Route::status(200, "application/json", &body.to_string())
}

fn bad_request(message: &str) -> Route {
    Route::status(400, "application/json", &json!({ "error": { "message": message, "type": "invalid_request_error" } }).to_string())
}

fn embeddings(request: &Value, quirks: Quirks) -> Route {
    if quirks.refuses_dimensions && request.get("dimensions").is_some() {
        return bad_request("This model does not support 'dimensions'.");
    }
    let dimensions = request["dimensions"].as_u64().map_or(NATIVE_DIMENSIONS, |d| d as usize);
    let inputs: Vec<&str> = match &request["input"] {
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        Value::String(one) => vec![one.as_str()],
        _ => return Route::status(400, "application/json", r#"{"error":{"message":"input must be a string or an array"}}"#),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| json!({ "object": "embedding", "index": index, "embedding": embed(text, dimensions) }))
        .collect();
    json_route(&json!({ "object": "list", "model": request["model"], "data": data,
                        "usage": { "prompt_tokens": inputs.len(), "total_tokens": inputs.len() } }))
}

fn chat(request: &Value, quirks: Quirks) -> Route {
    if quirks.refuses_max_tokens && request.get("max_tokens").is_some() {
        return bad_request("Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.");
    }
    if quirks.refuses_max_tokens && request.get("temperature").is_some_and(|t| t.as_f64() != Some(1.0)) {
        return bad_request("Unsupported value: 'temperature' does not support 0.4 with this model. Only the default (1) value is supported.");
    }
    let prompt = request["messages"].as_array().and_then(|m| m.last()).and_then(|m| m["content"].as_str()).unwrap_or("");
    let first_query = prompt.split('"').nth(1).unwrap_or("the topic");
    let content = format!("## {first_query}\n\nA section written by the test model about {first_query}.");
    json_route(&json!({
        "id": "chatcmpl-test", "object": "chat.completion", "model": CHAT_MODEL,
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": content }, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": prompt.split_whitespace().count(), "completion_tokens": content.split_whitespace().count() }
    }))
}

impl ModelServer {
    pub fn start() -> ModelServer {
        ModelServer::with_latency(Duration::ZERO)
    }

    /// A server that takes `latency` over every answer, as a remote model does.
    pub fn with_latency(latency: Duration) -> ModelServer {
        ModelServer::serving(latency, Quirks::default())
    }

    /// A server with a real server's quirks.
    pub fn with_quirks(quirks: Quirks) -> ModelServer {
        ModelServer::serving(Duration::ZERO, quirks)
    }

    fn serving(latency: Duration, quirks: Quirks) -> ModelServer {
        let faults: Arc<Mutex<HashMap<String, VecDeque<Fault>>>> = Arc::default();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let (queued, log) = (Arc::clone(&faults), Arc::clone(&received));
        let site = Site::with_handler(move |request| {
            log.lock().unwrap().push(request.clone());
            let fault = queued.lock().unwrap().get_mut(&request.path).and_then(VecDeque::pop_front);
            let respond = |request: &Received| match serde_json::from_slice::<Value>(&request.body) {
                Err(e) => Route::status(400, "application/json", &json!({ "error": { "message": e.to_string() } }).to_string()),
                Ok(body) if request.path == EMBEDDINGS => embeddings(&body, quirks),
                Ok(body) if request.path == CHAT => chat(&body, quirks),
                Ok(_) => Route::status(404, "application/json", r#"{"error":{"message":"no such endpoint"}}"#),
            };
            let answer = |request: &Received| respond(request).delayed(latency);
            match fault {
                None | Some(Fault::Answer) => answer(request),
                Some(Fault::TooManyRequests { retry_after_seconds }) => {
                    Route::status(429, "application/json", r#"{"error":{"message":"rate limited"}}"#)
                        .with_header("Retry-After", &retry_after_seconds.to_string())
                }
                Some(Fault::RateLimitedMs { retry_after_ms }) => {
                    Route::status(429, "application/json", r#"{"error":{"message":"Rate limit reached"}}"#)
                        .with_header("retry-after-ms", &retry_after_ms.to_string())
                }
                Some(Fault::ServerError) => Route::status(500, "application/json", r#"{"error":{"message":"overloaded"}}"#),
                Some(Fault::Unauthorized) => Route::status(401, "application/json", r#"{"error":{"message":"invalid api key"}}"#),
                Some(Fault::Slow(delay)) => answer(request).delayed(latency + delay),
                Some(Fault::MalformedJson) => Route::status(200, "application/json", r#"{"data": [{"index": 0, "embedding": [0.1,"#),
            }
        });
        ModelServer { site, faults, received }
    }

    pub fn url(&self, endpoint: &str) -> String {
        self.site.url(endpoint)
    }

    /// The next requests to `endpoint` get these faults, in order; later ones are answered.
    pub fn fail_next(&self, endpoint: &str, faults: Vec<Fault>) {
        self.faults.lock().unwrap().entry(endpoint.to_string()).or_default().extend(faults);
    }

    /// The requests received at `endpoint` so far, oldest first.
    pub fn requests(&self, endpoint: &str) -> Vec<Received> {
        self.received.lock().unwrap().iter().filter(|r| r.path == endpoint).cloned().collect()
    }

    /// The JSON bodies received at `endpoint` so far.
    pub fn bodies(&self, endpoint: &str) -> Vec<Value> {
        self.requests(endpoint).iter().filter_map(|r| serde_json::from_slice(&r.body).ok()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::embed;

    #[test]
    fn shared_words_point_alike_and_vectors_are_unit_length() {
        let cosine = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let (a, b, c) = (embed("feed the starter", 64), embed("Starter feed", 64), embed("gluten pancakes", 64));
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-6);
        assert!(cosine(&a, &b) > cosine(&a, &c));
        assert_eq!(embed("", 8), vec![0.0; 8]);
    }
}
