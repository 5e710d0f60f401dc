//! `gap_analysis`: for each keyword cluster of the page, the best cosine similarity between its
//! centroid and any of the page's embedded fragments; a cluster below `gap_similarity_threshold`
//! is a gap worth `impressions · (1 − similarity)`. The top 10 go to `rewrite_recommendations`,
//! with the clicks the CTR curve says covering them could gain, and the page's content score
//! (`content_score`) to `content_scores`.

use super::content_score::{content_score, ContentScore};
use super::gap::{find_gaps, ClusterInput, Gap, ParagraphInput, DEFAULT_LIMIT, DEFAULT_THRESHOLD};
use crate::config::parameter;
use crate::gsc::ctr::CtrCurve;
use crate::queue::stage::{Stage, StageError, Work};
use pgrx::prelude::*;
use serde_json::{json, Value};
use std::future::Future;

pub struct GapAnalysis;

/// What the gap analysis and the content score read about a page.
pub struct PageInputs {
    pub page_id: i64,
    pub clusters: Vec<ClusterInput>,
    pub paragraphs: Vec<ParagraphInput>,
    pub threshold: f64,
    pub curve: CtrCurve,
    /// Days since the content last changed (as the page states it, else as the crawler saw it).
    pub content_age_days: Option<f64>,
}

impl PageInputs {
    /// Reads the page's clusters, fragments and settings (SPI, as the calling role).
    pub fn load(page_id: i64) -> Result<PageInputs, StageError> {
        let (clusters, paragraphs, content_age_days) = Spi::connect(|client| {
            let mut clusters = Vec::new();
            for row in client.select(
                "SELECT id, centroid, impressions, clicks, position FROM pageperfect.keyword_clusters WHERE page_id = $1 ORDER BY id",
                None,
                &[page_id.into()],
            )? {
                clusters.push(ClusterInput {
                    cluster_id: row.get(1)?.unwrap_or_default(),
                    centroid: row.get(2)?.unwrap_or_default(),
                    impressions: row.get(3)?.unwrap_or_default(),
                    clicks: row.get(4)?.unwrap_or_default(),
                    position: row.get(5)?,
                });
            }
            let mut paragraphs = Vec::new();
            for row in client.select(
                "SELECT id, embedding, kind = 'heading' FROM pageperfect.page_embeddings WHERE page_id = $1 ORDER BY position",
                None,
                &[page_id.into()],
            )? {
                paragraphs.push(ParagraphInput {
                    embedding_id: row.get(1)?.unwrap_or_default(),
                    embedding: row.get(2)?.unwrap_or_default(),
                    is_heading: row.get(3)?.unwrap_or_default(),
                });
            }
            let age = client
                .select(
                    "SELECT extract(epoch FROM now() - coalesce(stated_modified_at, content_changed_at, fetched_at))::float8 / 86400
                       FROM pageperfect.pages WHERE id = $1",
                    None,
                    &[page_id.into()],
                )?
                .first()
                .get::<f64>(1)
                .ok()
                .flatten();
            Ok::<_, pgrx::spi::Error>((clusters, paragraphs, age))
        })?;
        // Vectors of different lengths come from different embedders: never compare them.
        let lengths: std::collections::BTreeSet<usize> =
            clusters.iter().map(|c| c.centroid.len()).chain(paragraphs.iter().map(|p| p.embedding.len())).collect();
        if lengths.len() > 1 {
            return Err(StageError::permanent(format!(
                "page {page_id}'s fragments and its query clusters were embedded with different dimensions ({lengths:?}); \
                 the embedding settings changed between stages: run the workflow again"
            )));
        }
        Ok(PageInputs {
            page_id,
            clusters,
            paragraphs,
            threshold: parameter("gap_similarity_threshold", DEFAULT_THRESHOLD)?,
            curve: CtrCurve::from_parameters()?,
            content_age_days,
        })
    }

    /// Every gap of the page, highest opportunity first; `extra` paragraphs (a draft's) count
    /// as the page's.
    pub fn gaps(&self, extra: &[ParagraphInput]) -> Vec<Gap> {
        let curve = self.curve;
        let expected_ctr = |p| curve.expected_ctr(p);
        if extra.is_empty() {
            return find_gaps(&self.clusters, &self.paragraphs, self.threshold, expected_ctr, usize::MAX);
        }
        let paragraphs: Vec<ParagraphInput> = self.paragraphs.iter().chain(extra).cloned().collect();
        find_gaps(&self.clusters, &paragraphs, self.threshold, expected_ctr, usize::MAX)
    }

    /// The page's content score with these `gaps` (all of them: see [`PageInputs::gaps`]);
    /// `content_age_days` replaces the page's own when given.
    pub fn score(&self, gaps: &[Gap], content_age_days: Option<f64>) -> ContentScore {
        let curve = self.curve;
        content_score(&self.clusters, gaps, self.threshold, |p| curve.expected_ctr(p), content_age_days.or(self.content_age_days))
    }
}

pub struct Output {
    page_id: i64,
    clusters: usize,
    threshold: f64,
    gaps: Vec<Gap>,
    score: ContentScore,
}

impl Stage for GapAnalysis {
    const NAME: &'static str = "gap_analysis";
    type Input = PageInputs;
    type Output = Output;

    fn prepare(&self, work: &Work) -> Result<PageInputs, StageError> {
        let page_id = work.require_page()?;
        PageInputs::load(page_id)
    }

    fn run(&self, _work: &Work, input: PageInputs) -> impl Future<Output = Result<Output, StageError>> + Send + 'static {
        async move {
            // The score needs every gap, the recommendations only the best few.
            let mut gaps = input.gaps(&[]);
            let score = input.score(&gaps, None);
            gaps.truncate(DEFAULT_LIMIT);
            Ok(Output { page_id: input.page_id, clusters: input.clusters.len(), threshold: input.threshold, gaps, score })
        }
    }

    /// The clusters and fragments (their rows: new rows, new ids) with the threshold, the CTR
    /// curve and the content's age in whole days (freshness changes by the day).
    fn input_hash(&self, _work: &Work, input: &PageInputs) -> Option<String> {
        let clusters: Vec<_> = input.clusters.iter().map(|c| (c.cluster_id, c.impressions, c.clicks, c.position)).collect();
        let paragraphs: Vec<i64> = input.paragraphs.iter().map(|p| p.embedding_id).collect();
        let age_days = input.content_age_days.map(|age| age.floor() as i64);
        Some(super::input_digest(&(input.page_id, clusters, paragraphs, input.threshold, input.curve, age_days)))
    }

    fn store(&self, work: &Work, output: Output) -> Result<Value, StageError> {
        let Output { page_id, clusters, threshold, gaps, score } = output;
        Spi::run_with_args("DELETE FROM pageperfect.rewrite_recommendations WHERE page_id = $1", &[page_id.into()])?;
        for (rank, gap) in gaps.iter().enumerate() {
            Spi::run_with_args(
                "INSERT INTO pageperfect.rewrite_recommendations
                        (page_id, job_id, cluster_id, rank, queries, impressions, similarity, opportunity_score,
                         estimated_clicks_gain, closest_embedding_ids)
                 SELECT $1, $2::uuid, c.id, $3, c.queries, c.impressions, $4, $5, $6, $7
                   FROM pageperfect.keyword_clusters c WHERE c.id = $8",
                &[
                    page_id.into(),
                    work.job_id.as_str().into(),
                    (rank as i32 + 1).into(),
                    gap.similarity.into(),
                    gap.opportunity_score.into(),
                    gap.estimated_clicks_gain.into(),
                    gap.closest_embedding_ids.clone().into(),
                    gap.cluster_id.into(),
                ],
            )?;
        }
        let score_json = serde_json::to_value(&score).unwrap_or_default();
        Spi::run_with_args(
            "INSERT INTO pageperfect.content_scores (page_id, job_id, score, coverage, opportunity, freshness, ctr, details)
             VALUES ($1, $2::uuid, $3, $4, $5, $6, $7, $8::text::jsonb)",
            &[
                page_id.into(),
                work.job_id.as_str().into(),
                score.score.into(),
                score.coverage.into(),
                score.opportunity.into(),
                score.freshness.into(),
                score.ctr.into(),
                score_json.to_string().into(),
            ],
        )?;
        Ok(json!({
            "page_id": page_id,
            "clusters": clusters,
            "gaps": gaps.len(),
            "threshold": threshold,
            "top_opportunity": gaps.first().map(|g| g.opportunity_score),
            "content_score": score_json,
        }))
    }
}
