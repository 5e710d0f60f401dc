//! `rewrite_draft`: drafts content for the page's top recommendation with the configured drafter
//! (`local` outline or an OpenAI-compatible chat model) into `rewrite_drafts`, with the model,
//! token usage and latency, and into the job's result.

use super::drafter::{Draft, DraftRequest, Drafter};
use crate::excerpt;
use crate::queue::stage::{Stage, StageError, Work};
use pgrx::prelude::*;
use serde_json::{json, Value};
use std::future::Future;
use std::time::Instant;

pub struct RewriteDraft;

pub struct Input {
    page_id: i64,
    drafter: Drafter,
    /// The top recommendation and what the drafter needs to know; None when the page has no gap.
    top: Option<(i64, DraftRequest)>,
}

pub struct Output {
    page_id: i64,
    /// (recommendation id, the draft, milliseconds the drafter took)
    draft: Option<(i64, Draft, i32)>,
}

impl Stage for RewriteDraft {
    const NAME: &'static str = "rewrite_draft";
    type Input = Input;
    type Output = Output;

    fn prepare(&self, work: &Work) -> Result<Input, StageError> {
        let page_id = work.page_id.ok_or_else(|| StageError::retryable("the job has no page yet"))?;
        let top = Spi::connect(|client| {
            let rows = client.select(
                "SELECT r.id, r.queries, c.query_impressions, r.impressions, r.similarity, r.estimated_clicks_gain,
                        coalesce(p.final_url, p.url), p.title,
                        ARRAY(SELECT h.content FROM pageperfect.page_embeddings h
                               WHERE h.page_id = r.page_id AND h.kind = 'heading' ORDER BY h.position),
                        ARRAY(SELECT e.content FROM unnest(r.closest_embedding_ids) WITH ORDINALITY AS closest (id, rank)
                                JOIN pageperfect.page_embeddings e ON e.id = closest.id ORDER BY closest.rank)
                   FROM pageperfect.rewrite_recommendations r
                   JOIN pageperfect.pages p ON p.id = r.page_id
                   JOIN pageperfect.keyword_clusters c ON c.id = r.cluster_id
                  WHERE r.page_id = $1 ORDER BY r.rank LIMIT 1",
                None,
                &[page_id.into()],
            )?;
            if rows.is_empty() {
                return Ok::<_, pgrx::spi::Error>(None);
            }
            let row = rows.first();
            Ok(Some((
                row.get::<i64>(1)?.unwrap_or_default(),
                DraftRequest {
                    queries: row.get(2)?.unwrap_or_default(),
                    query_impressions: row.get(3)?.unwrap_or_default(),
                    impressions: row.get(4)?.unwrap_or_default(),
                    similarity: row.get(5)?.unwrap_or_default(),
                    estimated_clicks_gain: row.get(6)?,
                    page_url: row.get(7)?.unwrap_or_default(),
                    page_title: row.get(8)?,
                    headings: row.get(9)?.unwrap_or_default(),
                    closest_paragraphs: row.get(10)?.unwrap_or_default(),
                },
            )))
        })?;
        Ok(Input { page_id, drafter: Drafter::from_settings(), top })
    }

    fn run(&self, work: &Work, input: Input) -> impl Future<Output = Result<Output, StageError>> + Send + 'static {
        let deadline = work.call_deadline();
        async move {
            let draft = match input.top {
                Some((recommendation_id, request)) => {
                    let started = Instant::now();
                    let draft = input.drafter.draft(&request, deadline).await?;
                    Some((recommendation_id, draft, started.elapsed().as_millis().min(i32::MAX as u128) as i32))
                }
                None => None,
            };
            Ok(Output { page_id: input.page_id, draft })
        }
    }

    /// The top recommendation (its row and everything the prompt says) and the drafter: the
    /// same again would be the same model call, paid twice.
    fn input_hash(&self, _work: &Work, input: &Input) -> Option<String> {
        Some(super::input_digest(&(input.page_id, &input.top, input.drafter.identity())))
    }

    fn store(&self, work: &Work, output: Output) -> Result<Value, StageError> {
        let Some((recommendation_id, draft, latency_ms)) = output.draft else {
            return Ok(json!({ "page_id": output.page_id, "draft_id": null, "message": "no content gaps: nothing to draft" }));
        };
        let draft_id = Spi::get_one_with_args::<i64>(
            "INSERT INTO pageperfect.rewrite_drafts
                    (page_id, job_id, recommendation_id, provider, model, draft, prompt_tokens, completion_tokens, latency_ms)
             VALUES ($1, $2::uuid, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            &[
                output.page_id.into(),
                work.job_id.as_str().into(),
                recommendation_id.into(),
                draft.provider.into(),
                draft.model.as_str().into(),
                draft.text.as_str().into(),
                draft.prompt_tokens.into(),
                draft.completion_tokens.into(),
                latency_ms.into(),
            ],
        )?;
        Ok(json!({
            "page_id": output.page_id,
            "draft_id": draft_id,
            "recommendation_id": recommendation_id,
            "provider": draft.provider,
            "model": draft.model,
            "prompt_tokens": draft.prompt_tokens,
            "completion_tokens": draft.completion_tokens,
            "latency_ms": latency_ms,
            "excerpt": excerpt(&draft.text, 400),
        }))
    }
}
