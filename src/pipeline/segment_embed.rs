//! `segment_embed`: splits the page's HTML into headings, paragraphs and list items (`segment`),
//! embeds them with the configured provider, and replaces the page's rows in `page_embeddings`.
//! Fragments the page had before (same provider, model and dimensions) keep their vectors, and a page whose
//! content is unchanged since this stage last succeeded is not embedded again unless the job
//! says `force_update`. Parsing runs off the worker's main thread: a hostile page (deeply
//! nested markup parses in quadratic time) must not stall the worker. A page keeps at most
//! `pageperfect.max_fragments_per_page` fragments (the rest are dropped and the job's events say
//! so), and they are inserted in batches.

use super::embed::Embedder;
use super::segment::{self, Fragment};
use crate::config;
use crate::queue::stage::{Stage, StageError, Work};
use pgrx::prelude::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;

pub struct SegmentEmbed;

pub enum Input {
    /// Nothing changed since the last success: keep its rows.
    Reuse { page_id: i64, content_hash: String, fragments: i64 },
    Embed(Plan),
}

/// Rows per INSERT of `page_embeddings`.
const INSERT_BATCH: usize = 500;

pub struct Plan {
    page_id: i64,
    max_fragments: usize,
    content_hash: String,
    html: String,
    embedder: Embedder,
    /// The page's current vectors, by text hash.
    cached: HashMap<String, Vec<f32>>,
}

pub struct Embedded {
    page_id: i64,
    content_hash: String,
    embedder: Embedder,
    fragments: Vec<(Fragment, String)>,
    /// Fragments beyond `max_fragments`, dropped.
    dropped: usize,
    cached: HashMap<String, Vec<f32>>,
    fresh: HashMap<String, Vec<f32>>,
}

pub enum Output {
    Reused { page_id: i64, content_hash: String, fragments: i64 },
    Embedded(Embedded),
    /// The model server failed after some batches: those vectors are kept for the job's next
    /// attempt (which then sends only the rest), and the attempt fails with `error`.
    Kept { embedder: Embedder, fresh: HashMap<String, Vec<f32>>, error: StageError },
}

impl Stage for SegmentEmbed {
    const NAME: &'static str = "segment_embed";
    type Input = Input;
    type Output = Output;

    fn prepare(&self, work: &Work) -> Result<Input, StageError> {
        let page_id = work.require_page()?;
        let (html, content_hash) = Spi::get_two_with_args::<String, String>(
            "SELECT html, content_hash FROM pageperfect.pages WHERE id = $1",
            &[page_id.into()],
        )?;
        let (Some(html), Some(content_hash)) = (html, content_hash) else {
            return Err(StageError::retryable(format!("page {page_id} is not fetched yet")));
        };
        let embedder = Embedder::from_settings();
        if !work.force_update {
            // The last success of this stage for this page, if the content and embedder are the same.
            let reusable = Spi::get_one_with_args::<i64>(
                "SELECT (SELECT (p.data->>'fragments')::bigint
                   FROM pageperfect.payloads p JOIN pageperfect.jobs j ON j.id = p.job_id
                  WHERE j.page_id = $1 AND p.stage = 'segment_embed' AND p.data->>'content_hash' = $2
                    AND p.data->>'provider' = $3 AND p.data->>'model' = $4
                    AND coalesce((p.data->>'dimensions')::int, 0) = $5
                    AND EXISTS (SELECT FROM pageperfect.page_embeddings e
                                 WHERE e.page_id = $1 AND e.provider = $3 AND e.model = $4 AND e.dimensions = $5)
                  ORDER BY p.created_at DESC LIMIT 1)",
                &[
                    page_id.into(),
                    content_hash.as_str().into(),
                    embedder.provider().into(),
                    embedder.model().into(),
                    (embedder.dimensions() as i32).into(),
                ],
            );
            if let Some(fragments) = reusable? {
                return Ok(Input::Reuse { page_id, content_hash, fragments });
            }
        }
        let cached = Spi::connect(|client| {
            let mut vectors = HashMap::new();
            for row in client.select(
                "SELECT text_hash, embedding FROM pageperfect.page_embeddings
                  WHERE page_id = $1 AND provider = $2 AND model = $3 AND dimensions = $4",
                None,
                &[page_id.into(), embedder.provider().into(), embedder.model().into(), (embedder.dimensions() as i32).into()],
            )? {
                if let (Some(hash), Some(vector)) = (row.get::<String>(1)?, row.get::<Vec<f32>>(2)?) {
                    vectors.insert(hash, vector);
                }
            }
            // And what an earlier attempt of this job embedded before its model server failed.
            for row in client.select(
                "SELECT c.text_hash, c.embedding FROM pageperfect.embedding_cache c
                  WHERE c.provider = $1 AND c.model = $2 AND c.dimensions = $3
                    AND c.text_hash IN (SELECT pg_catalog.jsonb_array_elements_text(e.data -> 'text_hashes')
                                          FROM pageperfect.job_events e
                                         WHERE e.job_id = $4::uuid AND e.stage = 'segment_embed' AND e.event = 'kept')",
                None,
                &[embedder.provider().into(), embedder.model().into(), (embedder.dimensions() as i32).into(), work.job_id.as_str().into()],
            )? {
                if let (Some(hash), Some(vector)) = (row.get::<String>(1)?, row.get::<Vec<f32>>(2)?) {
                    vectors.entry(hash).or_insert(vector);
                }
            }
            Ok::<_, pgrx::spi::Error>(vectors)
        })?;
        let max_fragments = config::MAX_FRAGMENTS_PER_PAGE.get().max(1) as usize;
        Ok(Input::Embed(Plan { page_id, max_fragments, content_hash, html, embedder, cached }))
    }

    fn run(&self, work: &Work, input: Input) -> impl Future<Output = Result<Output, StageError>> + Send + 'static {
        let deadline = work.call_deadline();
        async move {
            match input {
                Input::Reuse { page_id, content_hash, fragments } => Ok(Output::Reused { page_id, content_hash, fragments }),
                Input::Embed(plan) => {
                    let Plan { page_id, max_fragments, content_hash, html, embedder, cached } = plan;
                    let (fragments, dropped) = tokio::task::spawn_blocking(move || {
                        let mut fragments = segment::segment(&html).fragments;
                        let dropped = fragments.len().saturating_sub(max_fragments);
                        fragments.truncate(max_fragments);
                        let hashed: Vec<(Fragment, String)> = fragments
                            .into_iter()
                            .map(|f| {
                                let hash = segment::text_hash(&f.text);
                                (f, hash)
                            })
                            .collect();
                        (hashed, dropped)
                    })
                    .await
                    .map_err(|e| StageError::retryable(format!("segmenting the page failed: {e}")))?;
                    let texts = fragments.iter().map(|(f, h)| (h.clone(), f.text.clone())).collect();
                    let fresh = match embedder.embed_missing(texts, &cached, deadline).await {
                        Ok(fresh) => fresh,
                        Err(partial) if !partial.embedded.is_empty() => {
                            return Ok(Output::Kept { embedder, fresh: partial.embedded, error: partial.error });
                        }
                        Err(partial) => return Err(partial.error),
                    };
                    Ok(Output::Embedded(Embedded { page_id, content_hash, embedder, fragments, dropped, cached, fresh }))
                }
            }
        }
    }

    fn store(&self, work: &Work, output: Output) -> Result<Value, StageError> {
        let plan = match output {
            Output::Reused { page_id, content_hash, fragments } => {
                Spi::run_with_args(
                    "SELECT pageperfect.log_job_event($1::uuid, 'segment_embed', 'reused',
                                                      'the page is unchanged since its last embedding')",
                    &[work.job_id.as_str().into()],
                )?;
                return Ok(json!({ "page_id": page_id, "content_hash": content_hash, "fragments": fragments, "reused": true }));
            }
            Output::Embedded(embedded) => embedded,
            Output::Kept { embedder, fresh, error } => {
                embedder.remember(&fresh)?;
                Spi::run_with_args(
                    "SELECT pageperfect.log_job_event($1::uuid, 'segment_embed', 'kept', $2, $3)",
                    &[
                        work.job_id.as_str().into(),
                        format!("{} fragments were embedded before the failure; the next attempt keeps them", fresh.len()).into(),
                        pgrx::JsonB(json!({ "text_hashes": fresh.keys().collect::<Vec<_>>() })).into(),
                    ],
                )?;
                return Err(StageError::Kept(Box::new(error)));
            }
        };
        let (provider, model) = (plan.embedder.provider(), plan.embedder.model());
        let fresh = &plan.fresh;
        Spi::run_with_args("DELETE FROM pageperfect.page_embeddings WHERE page_id = $1", &[plan.page_id.into()])?;
        for batch in plan.fragments.chunks(INSERT_BATCH) {
            let column = |f: &dyn Fn(&(Fragment, String)) -> String| batch.iter().map(f).collect::<Vec<String>>();
            let vectors: Vec<String> = batch
                .iter()
                .map(|(_, hash)| vector_literal(fresh.get(hash).or_else(|| plan.cached.get(hash)).map_or(&[][..], Vec::as_slice)))
                .collect();
            Spi::run_with_args(
                "INSERT INTO pageperfect.page_embeddings
                        (page_id, job_id, position, kind, tag, content, text_hash, embedding, provider, model, dimensions)
                 SELECT $1, $2::uuid, f.position, f.kind, f.tag, f.content, f.text_hash, f.embedding::real[], $9, $10, $11
                   FROM unnest($3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
                        AS f(position, kind, tag, content, text_hash, embedding)",
                &[
                    plan.page_id.into(),
                    work.job_id.as_str().into(),
                    batch.iter().map(|(f, _)| f.position).collect::<Vec<i32>>().into(),
                    column(&|(f, _)| f.kind.as_str().to_string()).into(),
                    column(&|(f, _)| f.tag.clone()).into(),
                    column(&|(f, _)| f.text.clone()).into(),
                    column(&|(_, hash)| hash.clone()).into(),
                    vectors.into(),
                    provider.into(),
                    model.into(),
                    (plan.embedder.dimensions() as i32).into(),
                ],
            )?;
        }
        if plan.dropped > 0 {
            Spi::run_with_args(
                "SELECT pageperfect.log_job_event($1::uuid, 'segment_embed', 'truncated', $2)",
                &[
                    work.job_id.as_str().into(),
                    format!(
                        "the page has {} fragments; the first {} were kept (pageperfect.max_fragments_per_page)",
                        plan.fragments.len() + plan.dropped,
                        plan.fragments.len()
                    )
                    .into(),
                ],
            )?;
        }
        Ok(json!({
            "page_id": plan.page_id,
            "content_hash": plan.content_hash,
            "fragments": plan.fragments.len(),
            "embedded": fresh.len(),
            "cached": plan.fragments.len() - fresh.len(),
            "dropped": plan.dropped,
            "provider": provider,
            "model": model,
            "dimensions": plan.embedder.dimensions(),
            "reused": false,
        }))
    }
}

/// A vector as a Postgres array literal (`{0.1,0.2}`): one text array carries a whole batch of
/// vectors into an INSERT, where a `real[][]` would need every vector to have the same length.
fn vector_literal(vector: &[f32]) -> String {
    let mut literal = String::with_capacity(2 + vector.len() * 12);
    literal.push('{');
    for (i, x) in vector.iter().enumerate() {
        if i > 0 {
            literal.push(',');
        }
        // `{:?}` prints the shortest text that reads back to the same f32 (NaN and inf as Postgres spells them).
        if x.is_finite() {
            literal.push_str(&format!("{x:?}"));
        } else if x.is_nan() {
            literal.push_str("NaN");
        } else {
            literal.push_str(if *x > 0.0 { "Infinity" } else { "-Infinity" });
        }
    }
    literal.push('}');
    literal
}

#[cfg(test)]
mod tests {
    use super::vector_literal;

    #[test]
    fn vectors_become_array_literals_that_read_back_exactly() {
        assert_eq!(vector_literal(&[]), "{}");
        assert_eq!(vector_literal(&[0.1, -2.5e-8, 3.0]), "{0.1,-2.5e-8,3.0}");
        assert_eq!(vector_literal(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY]), "{NaN,Infinity,-Infinity}");
        let x = 0.123_456_79_f32;
        assert_eq!(vector_literal(&[x]).trim_matches(|c| c == '{' || c == '}').parse::<f32>().unwrap(), x);
    }
}
