//! `rewrite_draft`: drafts content for the page's top recommendation with the configured drafter
//! (`local` outline or an OpenAI-compatible chat model) into `rewrite_drafts`, with the model,
//! token usage and latency, and into the job's result. The draft's paragraphs are embedded to
//! score it: the page's content score before, and the score the page would reach with them.

use super::content_score::ContentScore;
use super::draft::{Draft, DraftRequest, Drafter};
use super::embed::Embedder;
use super::gap::ParagraphInput;
use super::gap_analysis::PageInputs;
use crate::excerpt;
use crate::queue::stage::{Stage, StageError, Work};
use pgrx::prelude::*;
use serde_json::{json, Value};
use std::future::Future;
use std::time::Instant;

pub struct RewriteDraft;

/// Most paragraphs of a draft embedded to score it.
const MAX_DRAFT_PARAGRAPHS: usize = 64;
/// Longest draft paragraph embedded, in characters.
const MAX_DRAFT_PARAGRAPH_CHARS: usize = 2_000;

pub struct Input {
    page_id: i64,
    drafter: Drafter,
    embedder: Embedder,
    page: PageInputs,
    /// The top recommendation and what the drafter needs to know; None when the page has no gap.
    top: Option<(i64, DraftRequest)>,
}

pub struct Output {
    page_id: i64,
    /// (recommendation id, the draft, milliseconds the drafter took)
    draft: Option<(i64, Draft, i32)>,
    score_before: ContentScore,
    /// The score with the draft's paragraphs, or why it could not be computed.
    score_after: Option<Result<ContentScore, String>>,
}

impl Stage for RewriteDraft {
    const NAME: &'static str = "rewrite_draft";
    type Input = Input;
    type Output = Output;

    fn prepare(&self, work: &Work) -> Result<Input, StageError> {
        let page_id = work.require_page()?;
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
        Ok(Input { page_id, drafter: Drafter::from_settings(), embedder: Embedder::from_settings(), page: PageInputs::load(page_id)?, top })
    }

    fn run(&self, work: &Work, input: Input) -> impl Future<Output = Result<Output, StageError>> + Send + 'static {
        let deadline = work.call_deadline();
        async move {
            let score_before = input.page.score(&input.page.gaps(&[]), None);
            let Some((recommendation_id, request)) = input.top else {
                return Ok(Output { page_id: input.page_id, draft: None, score_before, score_after: None });
            };
            let started = Instant::now();
            let draft = input.drafter.draft(&request, deadline).await?;
            let latency_ms = started.elapsed().as_millis().min(i32::MAX as u128) as i32;
            // A draft that cannot be scored is still kept: writing it again would be paid twice.
            let score_after = Some(score_with_draft(&input.page, &input.embedder, &draft.text, deadline).await);
            Ok(Output { page_id: input.page_id, draft: Some((recommendation_id, draft, latency_ms)), score_before, score_after })
        }
    }

    /// The top recommendation (its row and everything the prompt says) and the drafter: the
    /// same again would be the same model call, paid twice.
    fn input_hash(&self, _work: &Work, input: &Input) -> Option<String> {
        Some(super::input_digest(&(input.page_id, &input.top, input.drafter.identity())))
    }

    fn store(&self, work: &Work, output: Output) -> Result<Value, StageError> {
        let Some((recommendation_id, draft, latency_ms)) = output.draft else {
            return Ok(json!({
                "page_id": output.page_id, "draft_id": null, "message": "no content gaps: nothing to draft",
                "score_before": output.score_before.score,
            }));
        };
        let score_after = match &output.score_after {
            Some(Ok(score)) => Some(score.score),
            _ => None,
        };
        let draft_id = Spi::get_one_with_args::<i64>(
            "INSERT INTO pageperfect.rewrite_drafts
                    (page_id, job_id, recommendation_id, provider, model, draft, prompt_tokens, completion_tokens, latency_ms,
                     score_before, score_after)
             VALUES ($1, $2::uuid, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
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
                output.score_before.score.into(),
                score_after.into(),
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
            "score_before": output.score_before,
            "score_after": match output.score_after {
                Some(Ok(score)) => json!(score),
                Some(Err(why)) => json!({ "error": why }),
                None => Value::Null,
            },
            "excerpt": excerpt(&draft.text, 400),
        }))
    }
}

/// The page's score with the draft's paragraphs added and its content new.
async fn score_with_draft(page: &PageInputs, embedder: &Embedder, draft: &str, deadline: std::time::Instant) -> Result<ContentScore, String> {
    let texts = draft_paragraphs(draft);
    let vectors = embedder.embed(texts, deadline).await.map_err(|(_, error)| format!("embedding the draft failed: {error}"))?;
    let dimensions = page.clusters.first().map(|c| c.centroid.len());
    if vectors.iter().any(|v| Some(v.len()) != dimensions) {
        return Err("the draft's embeddings and the page's query clusters have different dimensions (the embedding settings changed)".to_string());
    }
    let extra: Vec<ParagraphInput> = vectors
        .into_iter()
        .map(|embedding| ParagraphInput { embedding_id: 0, embedding, is_heading: false })
        .collect();
    Ok(page.score(&page.gaps(&extra), Some(0.0)))
}

/// The draft's blocks of text (Markdown paragraphs, headings and list items, one per block
/// separated by blank lines or starting a list item), their markers stripped; at most
/// `MAX_DRAFT_PARAGRAPHS`, each at most `MAX_DRAFT_PARAGRAPH_CHARS` characters.
fn draft_paragraphs(draft: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in draft.lines().map(str::trim) {
        let marker = ["#", "- ", "* ", "> "].iter().find(|m| line.starts_with(**m));
        let text = line.trim_start_matches(['#', '-', '*', '>']).trim();
        if (line.is_empty() || marker.is_some()) && !current.is_empty() {
            blocks.push(std::mem::take(&mut current));
        }
        if !text.is_empty() {
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(text);
            if line.starts_with('#') {
                blocks.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks.truncate(MAX_DRAFT_PARAGRAPHS);
    blocks.into_iter().map(|block| excerpt(&block, MAX_DRAFT_PARAGRAPH_CHARS)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_markdown_draft_splits_into_its_blocks_without_markers() {
        let draft = "## Cold Brew Ratio\n\nUse one part coffee\nto eight parts water.\n\n### Questions\n- cold brew ratio\n- how long to steep\n> quoted text\n";
        assert_eq!(
            draft_paragraphs(draft),
            ["Cold Brew Ratio", "Use one part coffee to eight parts water.", "Questions", "cold brew ratio", "how long to steep", "quoted text"]
        );
        assert!(draft_paragraphs("\n\n").is_empty());
        let long: String = (0..100).map(|i| format!("paragraph {i}\n\n")).collect();
        assert_eq!(draft_paragraphs(&long).len(), MAX_DRAFT_PARAGRAPHS);
    }
}
