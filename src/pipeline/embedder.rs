//! Turns texts into vectors with the configured provider: `local` (the built-in hashed n-gram
//! embedder, no network) or `openai` (any OpenAI-compatible `/v1/embeddings`: batched by count
//! and size, the model and dimensions settings, the API key, failures classified for retry).

use super::{embed_local, openai};
use crate::config::{self, EmbeddingProvider};
use crate::queue::stage::StageError;
use pgrx::prelude::*;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;

/// Most texts in one embeddings request, and most characters (a rough stand-in for tokens).
const BATCH_TEXTS: usize = 96;
const BATCH_CHARS: usize = 120_000;

/// The provider settings, read on the worker's main thread and carried to the runtime.
#[derive(Clone, Debug)]
pub enum Embedder {
    Local { dimensions: usize },
    OpenAi { url: String, model: String, dimensions: usize, api_key: Option<String> },
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

/// Splits texts into request-sized batches (by count and total size), keeping their order.
fn batches(texts: &[String]) -> Vec<&[String]> {
    let mut result = Vec::new();
    let (mut start, mut chars) = (0, 0);
    for (i, text) in texts.iter().enumerate() {
        if i > start && (i - start >= BATCH_TEXTS || chars + text.len() > BATCH_CHARS) {
            result.push(&texts[start..i]);
            (start, chars) = (i, 0);
        }
        chars += text.len();
    }
    if start < texts.len() {
        result.push(&texts[start..]);
    }
    result
}

impl Embedder {
    pub fn from_settings() -> Embedder {
        let dimensions = config::EMBEDDING_DIMENSIONS.get().max(1) as usize;
        match config::EMBEDDING_PROVIDER.get() {
            EmbeddingProvider::Local => Embedder::Local { dimensions },
            EmbeddingProvider::OpenAi => Embedder::OpenAi {
                url: config::string(&config::EMBEDDING_URL).unwrap_or_default(),
                model: config::string(&config::EMBEDDING_MODEL).unwrap_or_default(),
                dimensions,
                api_key: openai::api_key(),
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

    pub fn dimensions(&self) -> usize {
        match self {
            Embedder::Local { dimensions } | Embedder::OpenAi { dimensions, .. } => *dimensions,
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

    /// Embeds the `(hash, text)` pairs whose hash is not in `cached`, once per hash.
    pub async fn embed_missing(
        &self,
        texts: Vec<(String, String)>,
        cached: &HashMap<String, Vec<f32>>,
    ) -> Result<HashMap<String, Vec<f32>>, StageError> {
        let mut missing: Vec<(String, String)> = Vec::new();
        for (hash, text) in texts {
            if !cached.contains_key(&hash) && !missing.iter().any(|(h, _)| *h == hash) {
                missing.push((hash, text));
            }
        }
        let (hashes, texts): (Vec<String>, Vec<String>) = missing.into_iter().unzip();
        let vectors = self.embed(texts).await?;
        Ok(hashes.into_iter().zip(vectors).collect())
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

    /// One vector per text, in order.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, StageError> {
        match self {
            Embedder::Local { dimensions } => {
                let dimensions = *dimensions;
                tokio::task::spawn_blocking(move || texts.iter().map(|t| embed_local::embed(t, dimensions)).collect())
                    .await
                    .map_err(|e| StageError::retryable(format!("local embedder failed: {e}")))
            }
            Embedder::OpenAi { url, model, dimensions, api_key } => {
                let client = openai::client()?;
                let mut vectors = Vec::with_capacity(texts.len());
                for batch in batches(&texts) {
                    let body = json!({ "model": model, "input": batch, "dimensions": dimensions });
                    let parsed: EmbeddingsResponse = openai::post(&client, url, api_key.as_deref(), &body).await?;
                    let mut items = parsed.data;
                    items.sort_by_key(|item| item.index);
                    if items.len() != batch.len() || items.iter().any(|item| item.embedding.len() != *dimensions) {
                        return Err(StageError::retryable(format!(
                            "{url} returned {} embeddings for {} texts (wanted {dimensions} dimensions each)",
                            items.len(),
                            batch.len()
                        )));
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
    fn batches_split_by_count_and_by_size_and_keep_order() {
        let many: Vec<String> = (0..200).map(|i| format!("text {i}")).collect();
        let split = batches(&many);
        assert_eq!(split.iter().map(|b| b.len()).collect::<Vec<_>>(), [96, 96, 8]);
        assert_eq!(split.concat(), many);

        let big: Vec<String> = (0..5).map(|_| "x".repeat(50_000)).collect();
        assert_eq!(batches(&big).iter().map(|b| b.len()).collect::<Vec<_>>(), [2, 2, 1]);
        // One text larger than a batch still goes, alone.
        assert_eq!(batches(&["y".repeat(500_000)]).len(), 1);
        assert!(batches(&[]).is_empty());
    }
}
