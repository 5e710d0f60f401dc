//! The OpenAI embeddings API (`/v1/embeddings`) as OpenAI-compatible servers speak it: texts
//! batched by count and by a token budget, the model, `dimensions` sent only when set (vLLM, TEI
//! and Ollama refuse or ignore it for most models, which then answer with their own), the API
//! key; rate limits and server errors are retried within the call (`pipeline::openai`).

use crate::pipeline::openai as openai_api;
use crate::queue::stage::StageError;
use serde::Deserialize;
use serde_json::json;
use std::time::Instant;

pub const PROVIDER: &str = "openai";

/// Most texts in one embeddings request (OpenAI's own limit is 2,048; TEI's default 32 is raised
/// by its operators as a rule).
const BATCH_TEXTS: usize = 96;
/// Tokens of `text` as a model server counts them, estimated: about four characters each (plus
/// one, so that many tiny texts still count).
fn estimated_tokens(text: &str) -> usize {
    text.len() / 4 + 1
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

/// Splits texts into request-sized batches (at most `BATCH_TEXTS` texts and `budget` estimated
/// tokens; a text over the budget goes alone), keeping their order.
fn batches(texts: &[String], budget: usize) -> Vec<&[String]> {
    let mut result = Vec::new();
    let (mut start, mut tokens) = (0, 0);
    for (i, text) in texts.iter().enumerate() {
        let cost = estimated_tokens(text);
        if i > start && (i - start >= BATCH_TEXTS || tokens + cost > budget) {
            result.push(&texts[start..i]);
            (start, tokens) = (i, 0);
        }
        tokens += cost;
    }
    if start < texts.len() {
        result.push(&texts[start..]);
    }
    result
}

/// One vector per text, in order, all of one length; rate limits and server errors are retried
/// within each request while `deadline` allows. On failure, the vectors of the batches done
/// before it (the first texts, in order) come with the error.
pub async fn embed(
    url: &str,
    model: &str,
    dimensions: Option<usize>,
    api_key: Option<&str>,
    batch_tokens: usize,
    texts: &[String],
    deadline: Instant,
) -> Result<Vec<Vec<f32>>, (Vec<Vec<f32>>, StageError)> {
        let client = openai_api::client().map_err(|e| (Vec::new(), e))?;
        let mut vectors: Vec<Vec<f32>> = Vec::with_capacity(texts.len());
        for batch in batches(texts, batch_tokens) {
            let mut body = json!({ "model": model, "input": batch });
            if let Some(dimensions) = dimensions {
                body["dimensions"] = json!(dimensions);
            }
            let parsed: EmbeddingsResponse = match openai_api::post(&client, url, api_key, &body, deadline).await {
                Ok(parsed) => parsed,
                Err(error) => return Err((vectors, error)),
            };
            let mut items = parsed.data;
            items.sort_by_key(|item| item.index);
            // The length asked for, else the model's own: the first vector's.
            let wanted = dimensions.or_else(|| vectors.first().or(items.first().map(|i| &i.embedding)).map(Vec::len));
            let uneven = items.iter().any(|item| Some(item.embedding.len()) != wanted || item.embedding.is_empty());
            if items.len() != batch.len() || uneven {
                return Err((vectors, StageError::retryable(format!(
                    "{url} returned {} embeddings for {} texts (wanted {} dimensions each)",
                    items.len(),
                    batch.len(),
                    wanted.map_or("the same number of".to_string(), |d| d.to_string())
                ))));
            }
            vectors.extend(items.into_iter().map(|item| item.embedding));
        }
        Ok(vectors)
}

#[cfg(test)]
mod tests {
    use super::batches;

    #[test]
    fn batches_split_by_count_and_by_token_budget_and_keep_order() {
        let many: Vec<String> = (0..200).map(|i| format!("text {i}")).collect();
        let split = batches(&many, 8192);
        assert_eq!(split.iter().map(|b| b.len()).collect::<Vec<_>>(), [96, 96, 8]);
        assert_eq!(split.concat(), many);

        // 4,000 characters are about 1,001 tokens: three fit a budget of 3,500.
        let big: Vec<String> = (0..7).map(|_| "x".repeat(4_000)).collect();
        assert_eq!(batches(&big, 3_500).iter().map(|b| b.len()).collect::<Vec<_>>(), [3, 3, 1]);
        // One text larger than a batch still goes, alone.
        assert_eq!(batches(&["y".repeat(500_000)], 8192).len(), 1);
        assert!(batches(&[], 8192).is_empty());
    }
}
