//! `gap_analysis`: for each keyword cluster of the page, the best cosine similarity between its
//! centroid and any of the page's embedded fragments; a cluster below `gap_similarity_threshold`
//! is a gap worth `impressions · (1 − similarity)`. The top 10 go to `rewrite_recommendations`,
//! with the clicks the CTR curve says covering them could gain.

use super::gap::{find_gaps, ClusterInput, Gap, ParagraphInput, DEFAULT_LIMIT, DEFAULT_THRESHOLD};
use crate::config::parameter;
use crate::gsc::ctr::CtrCurve;
use crate::queue::stage::{Stage, StageError, Work};
use pgrx::prelude::*;
use serde_json::{json, Value};
use std::future::Future;

pub struct GapAnalysis;

pub struct Input {
    page_id: i64,
    clusters: Vec<ClusterInput>,
    paragraphs: Vec<ParagraphInput>,
    threshold: f64,
    curve: CtrCurve,
}

impl Stage for GapAnalysis {
    const NAME: &'static str = "gap_analysis";
    type Input = Input;
    type Output = (i64, usize, f64, Vec<Gap>);

    fn prepare(&self, work: &Work) -> Result<Input, StageError> {
        let page_id = work.page_id.ok_or_else(|| StageError::retryable("the job has no page yet"))?;
        let (clusters, paragraphs) = Spi::connect(|client| {
            let mut clusters = Vec::new();
            for row in client.select(
                "SELECT id, centroid, impressions, position FROM pageperfect.keyword_clusters WHERE page_id = $1 ORDER BY id",
                None,
                &[page_id.into()],
            )? {
                clusters.push(ClusterInput {
                    cluster_id: row.get(1)?.unwrap_or_default(),
                    centroid: row.get(2)?.unwrap_or_default(),
                    impressions: row.get(3)?.unwrap_or_default(),
                    position: row.get(4)?,
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
            Ok::<_, pgrx::spi::Error>((clusters, paragraphs))
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
        Ok(Input {
            page_id,
            clusters,
            paragraphs,
            threshold: parameter("gap_similarity_threshold", DEFAULT_THRESHOLD)?,
            curve: CtrCurve::from_parameters()?,
        })
    }

    fn run(&self, _work: &Work, input: Input) -> impl Future<Output = Result<(i64, usize, f64, Vec<Gap>), StageError>> + Send + 'static {
        async move {
            let curve = input.curve;
            let gaps = find_gaps(&input.clusters, &input.paragraphs, input.threshold, |p| curve.expected_ctr(p), DEFAULT_LIMIT);
            Ok((input.page_id, input.clusters.len(), input.threshold, gaps))
        }
    }

    /// The clusters and fragments (their rows: new rows, new ids) with the threshold and the
    /// CTR curve.
    fn input_hash(&self, _work: &Work, input: &Input) -> Option<String> {
        let clusters: Vec<_> = input.clusters.iter().map(|c| (c.cluster_id, c.impressions, c.position)).collect();
        let paragraphs: Vec<i64> = input.paragraphs.iter().map(|p| p.embedding_id).collect();
        Some(super::input_digest(&(input.page_id, clusters, paragraphs, input.threshold, input.curve)))
    }

    fn store(&self, work: &Work, (page_id, clusters, threshold, gaps): (i64, usize, f64, Vec<Gap>)) -> Result<Value, StageError> {
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
        Ok(json!({
            "page_id": page_id,
            "clusters": clusters,
            "gaps": gaps.len(),
            "threshold": threshold,
            "top_opportunity": gaps.first().map(|g| g.opportunity_score),
        }))
    }
}
