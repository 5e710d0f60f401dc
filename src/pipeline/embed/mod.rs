//! Turns texts into vectors with the configured provider: `local` (the built-in hashed n-gram
//! embedder, no network) or `openai` (any OpenAI-compatible `/v1/embeddings`, its wire format in
//! `openai.rs`). Both take texts and give one vector per text, in order. Vectors are cached and
//! reused by provider, model and dimensions setting (`embedding_cache`), so a change of any of
//! them never mixes old vectors with new.

mod local;
mod openai;

use super::openai as openai_api;
use crate::config::{self, EmbeddingProvider};
use crate::queue::stage::StageError;
use pgrx::prelude::*;
use std::collections::HashMap;
use std::time::Instant;

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

impl Embedder {
    pub fn from_settings() -> Embedder {
        let dimensions = Some(config::EMBEDDING_DIMENSIONS.get()).filter(|d| *d > 0).map(|d| d as usize);
        match config::EMBEDDING_PROVIDER.get() {
            EmbeddingProvider::Local => Embedder::Local { dimensions: dimensions.unwrap_or(local::DIMENSIONS) },
            EmbeddingProvider::OpenAi => Embedder::OpenAi {
                url: config::string(&config::EMBEDDING_URL).unwrap_or_default(),
                model: config::string(&config::EMBEDDING_MODEL).unwrap_or_default(),
                dimensions,
                api_key: openai_api::api_key(),
                batch_tokens: config::EMBEDDING_BATCH_TOKENS.get().max(1) as usize,
            },
        }
    }

    pub fn provider(&self) -> &'static str {
        match self {
            Embedder::Local { .. } => local::PROVIDER,
            Embedder::OpenAi { .. } => openai::PROVIDER,
        }
    }

    pub fn model(&self) -> &str {
        match self {
            Embedder::Local { .. } => local::MODEL,
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
                tokio::task::spawn_blocking(move || texts.iter().map(|t| local::embed(t, dimensions)).collect())
                    .await
                    .map_err(|e| (Vec::new(), StageError::retryable(format!("local embedder failed: {e}"))))
            }
            Embedder::OpenAi { url, model, dimensions, api_key, batch_tokens } => {
                openai::embed(url, model, *dimensions, api_key.as_deref(), *batch_tokens, &texts, deadline).await
            }
        }
    }
}
