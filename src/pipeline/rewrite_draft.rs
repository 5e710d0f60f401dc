//! `rewrite_draft`: drafts content for the page's top recommendation into `rewrite_drafts` (and
//! the job's result). The `local` drafter writes a structured outline from the gap data.

use super::draft_local::{self, DraftRequest};
use crate::queue::stage::{Stage, StageError, Work};
use pgrx::prelude::*;
use serde_json::{json, Value};
use std::future::Future;
use std::time::Instant;

pub struct RewriteDraft;

pub struct Input {
    page_id: i64,
    /// The top recommendation and what the drafter needs to know; None when the page has no gap.
    top: Option<(i64, DraftRequest)>,
}

pub struct Output {
    page_id: i64,
    draft: Option<(i64, String, i32)>,
}

impl Stage for RewriteDraft {
    const NAME: &'static str = "rewrite_draft";
    type Input = Input;
    type Output = Output;

    fn prepare(&self, work: &Work) -> Result<Input, StageError> {
        let page_id = work.page_id.ok_or_else(|| StageError::retryable("the job has no page yet"))?;
        let top = Spi::connect(|client| {
            let rows = client.select(
                "SELECT r.id, r.queries, r.impressions, r.similarity, r.estimated_clicks_gain, e.content, p.title,
                        ARRAY(SELECT h.content FROM pageperfect.page_embeddings h
                               WHERE h.page_id = r.page_id AND h.kind = 'heading' ORDER BY h.position)
                   FROM pageperfect.rewrite_recommendations r
                   JOIN pageperfect.pages p ON p.id = r.page_id
                   LEFT JOIN pageperfect.page_embeddings e ON e.id = r.closest_embedding_id
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
                    impressions: row.get(3)?.unwrap_or_default(),
                    similarity: row.get(4)?.unwrap_or_default(),
                    estimated_clicks_gain: row.get(5)?,
                    closest_paragraph: row.get(6)?,
                    page_title: row.get(7)?,
                    headings: row.get(8)?.unwrap_or_default(),
                },
            )))
        })?;
        Ok(Input { page_id, top })
    }

    fn run(&self, _work: &Work, input: Input) -> impl Future<Output = Result<Output, StageError>> + Send + 'static {
        async move {
            let draft = input.top.map(|(recommendation_id, request)| {
                let started = Instant::now();
                let text = draft_local::draft(&request);
                (recommendation_id, text, started.elapsed().as_millis() as i32)
            });
            Ok(Output { page_id: input.page_id, draft })
        }
    }

    fn store(&self, work: &Work, output: Output) -> Result<Value, StageError> {
        let Some((recommendation_id, text, latency_ms)) = output.draft else {
            return Ok(json!({ "page_id": output.page_id, "draft_id": null, "message": "no content gaps: nothing to draft" }));
        };
        let draft_id = Spi::get_one_with_args::<i64>(
            "INSERT INTO pageperfect.rewrite_drafts (page_id, job_id, recommendation_id, provider, model, draft, latency_ms)
             VALUES ($1, $2::uuid, $3, $4, $5, $6, $7) RETURNING id",
            &[
                output.page_id.into(),
                work.job_id.as_str().into(),
                recommendation_id.into(),
                draft_local::PROVIDER.into(),
                draft_local::MODEL.into(),
                text.as_str().into(),
                latency_ms.into(),
            ],
        )?;
        Ok(json!({
            "page_id": output.page_id,
            "draft_id": draft_id,
            "recommendation_id": recommendation_id,
            "provider": draft_local::PROVIDER,
            "model": draft_local::MODEL,
            "excerpt": text.chars().take(400).collect::<String>(),
        }))
    }
}
