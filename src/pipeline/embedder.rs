//! Turns texts into vectors with the configured provider: `local` (the built-in hashed n-gram
//! embedder, no network) or `openai` (any OpenAI-compatible `/v1/embeddings`: batched by count
//! and by a token budget, the model, `dimensions` sent only when set (vLLM, TEI and Ollama refuse
//! or ignore it for most models, which then answer with their own), the API key, rate limits and
//! server errors retried within the call). Vectors are cached and reused by provider, model and
//! dimensions setting, so a change of any of them never mixes old vectors with new.

use super::{embed_local, openai};
use crate::config::{self, EmbeddingProvider};
use crate::queue::stage::StageError;
use pgrx::prelude::*;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::time::Instant;

/// Most texts in one embeddings request (OpenAI's own limit is 2,048; TEI's default 32 is raised
/// by its operators as a rule).
const BATCH_TEXTS: usize = 96;
/// The local embedder's dimensions when `embedding_dimensions` is 0.
const LOCAL_DIMENSIONS: usize = 384;

/// Embedding that failed part way: the texts embedded before the failure, by hash, worth keeping.
pub struct PartialEmbedding {
    pub embedded: HashMap<String, Vec<f32>>,
    pub error: StageError,
}

/// Where the part done is not kept, only the failure counts.
impl From<PartialEmbedding> for StageError {
    fn from(partial: PartialEmbedding) -> StageError {
        partial.error
    }
}

/// The provider settings, read on the worker's main thread and carried to the runtime.
#[derive(Clone, Debug)]
pub enum Embedder {
    Local { dimensions: usize },
    /// `dimensions` None: the model's own.
    OpenAi { url: String, model: String, dimensions: Option<usize>, api_key: Option<String>, batch_tokens: usize },
}

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

impl Embedder {
    pub fn from_settings() -> Embedder {
        let dimensions = Some(config::EMBEDDING_DIMENSIONS.get()).filter(|d| *d > 0).map(|d| d as usize);
        match config::EMBEDDING_PROVIDER.get() {
            EmbeddingProvider::Local => Embedder::Local { dimensions: dimensions.unwrap_or(LOCAL_DIMENSIONS) },
            EmbeddingProvider::OpenAi => Embedder::OpenAi {
                url: config::string(&config::EMBEDDING_URL).unwrap_or_default(),
                model: config::string(&config::EMBEDDING_MODEL).unwrap_or_default(),
                dimensions,
                api_key: openai::api_key(),
                batch_tokens: config::EMBEDDING_BATCH_TOKENS.get().max(1) as usize,
            },
        }
    }

    pub fn provider(&self) -> &'static str {
        match self {
            Embedder::Local { .. } => embed_local::PROVIDER,
            Embedder::OpenAi { .. } => "openai",
        }
    }

    pub fn model(&self) -> &str {
        match self {
            Embedder::Local { .. } => embed_local::MODEL,
            Embedder::OpenAi { model, .. } => model,
        }
    }

    /// What decides the vectors it makes (not the API key): for input digests.
    pub fn identity(&self) -> (&'static str, &str, usize) {
        (self.provider(), self.model(), self.dimensions())
    }

    /// The dimensions setting, as caches are keyed by it: 0 for a model's own.
    pub fn dimensions(&self) -> usize {
        match self {
            Embedder::Local { dimensions } => *dimensions,
            Embedder::OpenAi { dimensions, .. } => dimensions.unwrap_or(0),
        }
    }

    /// Vectors of these text hashes embedded before with this provider, model and dimensions
    /// (SPI: main thread).
    pub fn cached(&self, hashes: Vec<String>) -> Result<HashMap<String, Vec<f32>>, StageError> {
        Spi::connect(|client| {
            let rows = client.select(
                "SELECT text_hash, embedding FROM pageperfect.embedding_cache
                  WHERE provider = $1 AND model = $2 AND dimensions = $3 AND text_hash = ANY ($4)",
                None,
                &[self.provider().into(), self.model().into(), (self.dimensions() as i32).into(), hashes.into()],
            )?;
            let mut found = HashMap::new();
            for row in rows {
                if let (Some(hash), Some(vector)) = (row.get::<String>(1)?, row.get::<Vec<f32>>(2)?) {
                    found.insert(hash, vector);
                }
            }
            Ok(found)
        })
        .map_err(|e: pgrx::spi::Error| StageError::retryable(e.to_string()))
    }

    /// Embeds the `(hash, text)` pairs whose hash is not in `cached`, once per hash; on failure,
    /// with the batches embedded before it.
    pub async fn embed_missing(
        &self,
        texts: Vec<(String, String)>,
        cached: &HashMap<String, Vec<f32>>,
        deadline: Instant,
    ) -> Result<HashMap<String, Vec<f32>>, PartialEmbedding> {
        let mut missing: Vec<(String, String)> = Vec::new();
        for (hash, text) in texts {
            if !cached.contains_key(&hash) && !missing.iter().any(|(h, _)| *h == hash) {
                missing.push((hash, text));
            }
        }
        let (hashes, texts): (Vec<String>, Vec<String>) = missing.into_iter().unzip();
        match self.embed(texts, deadline).await {
            Ok(vectors) => Ok(hashes.into_iter().zip(vectors).collect()),
            Err((done, error)) => Err(PartialEmbedding { embedded: hashes.into_iter().zip(done).collect(), error }),
        }
    }

    /// Remembers freshly embedded texts (SPI: main thread).
    pub fn remember(&self, fresh: &HashMap<String, Vec<f32>>) -> Result<(), StageError> {
        for (hash, vector) in fresh {
            Spi::run_with_args(
                "INSERT INTO pageperfect.embedding_cache (provider, model, dimensions, text_hash, embedding)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[
                    self.provider().into(),
                    self.model().into(),
                    (self.dimensions() as i32).into(),
                    hash.as_str().into(),
                    vector.clone().into(),
                ],
            )?;
        }
        Ok(())
    }

    /// One vector per text, in order, all of one length; rate limits and server errors are
    /// retried within each request while `deadline` allows. On failure, the vectors of the
    /// batches done before it (the first texts, in order) come with the error.
    pub async fn embed(&self, texts: Vec<String>, deadline: Instant) -> Result<Vec<Vec<f32>>, (Vec<Vec<f32>>, StageError)> {
        match self {
            Embedder::Local { dimensions } => {
                let dimensions = *dimensions;
                tokio::task::spawn_blocking(move || texts.iter().map(|t| embed_local::embed(t, dimensions)).collect())
                    .await
                    .map_err(|e| (Vec::new(), StageError::retryable(format!("local embedder failed: {e}"))))
            }
            Embedder::OpenAi { url, model, dimensions, api_key, batch_tokens } => {
                let client = openai::client().map_err(|e| (Vec::new(), e))?;
                let mut vectors: Vec<Vec<f32>> = Vec::with_capacity(texts.len());
                for batch in batches(&texts, *batch_tokens) {
                    let mut body = json!({ "model": model, "input": batch });
                    if let Some(dimensions) = dimensions {
                        body["dimensions"] = json!(dimensions);
                    }
                    let parsed: EmbeddingsResponse = match openai::post(&client, url, api_key.as_deref(), &body, deadline).await {
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
        }
    }
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
