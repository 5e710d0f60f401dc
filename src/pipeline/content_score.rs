//! The content score: one number from 0 to 100 for how well a page serves the searches it is
//! shown for, made of four parts that each lie between 0 and 1:
//!
//! - coverage: the share of its query clusters' impressions whose topic the page covers (a
//!   cluster at or above the gap threshold counts whole, a gap by `similarity / threshold`);
//! - opportunity: `clicks / (clicks + clicks the gaps could still gain)`, 1 without gaps;
//! - CTR: the clicks it gets over the clicks the CTR curve expects at its positions, at most 1;
//! - freshness: `0.5^(age in days / 365)`, the age since the content last changed.
//!
//! The score is the weighted mean of the parts that are known, times 100. Pure: the gap stage
//! and the rewrite draft compute it from what they read and the gaps `find_gaps` found in it.

use super::gap::{ClusterInput, Gap};
use serde::Serialize;

/// Weights of coverage, opportunity, CTR and freshness (they sum to 100).
const WEIGHTS: [f64; 4] = [40.0, 25.0, 20.0, 15.0];
/// Content this many days old counts half as fresh as new content.
pub const FRESHNESS_HALF_LIFE_DAYS: f64 = 365.0;

/// A page's content score, its parts (None: no data to judge that part by) and the figures behind them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContentScore {
    pub score: i32,
    pub coverage: Option<f64>,
    pub opportunity: Option<f64>,
    pub ctr: Option<f64>,
    pub freshness: Option<f64>,
    pub clusters: usize,
    pub covered_clusters: usize,
    pub impressions: i64,
    pub clicks: i64,
    /// The clicks the CTR curve expects at the clusters' positions.
    pub expected_clicks: f64,
    /// The clicks the page's gaps could still gain (the gap analysis's estimate, summed).
    pub clicks_gain_left: f64,
    pub content_age_days: Option<f64>,
}

/// The score of a page with these keyword `clusters` and their `gaps` (all of them, as
/// `find_gaps` finds them with the gap analysis's `threshold` and CTR curve);
/// `content_age_days` is None when unknown.
pub fn content_score(
    clusters: &[ClusterInput],
    gaps: &[Gap],
    threshold: f64,
    expected_ctr: impl Fn(f64) -> f64,
    content_age_days: Option<f64>,
) -> ContentScore {
    let impressions: i64 = clusters.iter().map(|c| c.impressions).sum();
    let clicks: i64 = clusters.iter().map(|c| c.clicks).sum();

    let covered_impressions = clusters
        .iter()
        .map(|cluster| match gaps.iter().find(|gap| gap.cluster_id == cluster.cluster_id) {
            Some(gap) if threshold > 0.0 => cluster.impressions as f64 * (gap.similarity.max(0.0) / threshold).min(1.0),
            Some(_) => 0.0,
            None => cluster.impressions as f64,
        })
        .sum::<f64>();
    let coverage = (impressions > 0).then(|| covered_impressions / impressions as f64);

    let clicks_gain_left: f64 = gaps.iter().map(|gap| gap.estimated_clicks_gain).sum();
    let opportunity = (impressions > 0).then(|| {
        if clicks_gain_left <= 0.0 {
            1.0
        } else {
            clicks as f64 / (clicks as f64 + clicks_gain_left)
        }
    });

    let positioned = clusters.iter().filter_map(|c| Some((c, c.position?)));
    let (expected_clicks, clicks_at_known_positions) = positioned.fold((0.0, 0.0), |(expected, actual), (c, position)| {
        (expected + c.impressions as f64 * expected_ctr(position), actual + c.clicks as f64)
    });
    let ctr = (expected_clicks > 0.0).then(|| (clicks_at_known_positions / expected_clicks).min(1.0));

    let content_age_days = content_age_days.map(|age| age.max(0.0));
    let freshness = content_age_days.map(|age| 0.5_f64.powf(age / FRESHNESS_HALF_LIFE_DAYS));

    let known: Vec<(f64, f64)> =
        [coverage, opportunity, ctr, freshness].iter().zip(WEIGHTS).filter_map(|(part, weight)| Some((part.as_ref()?.clamp(0.0, 1.0), weight))).collect();
    let weight: f64 = known.iter().map(|(_, w)| w).sum();
    let score = if weight > 0.0 { (100.0 * known.iter().map(|(p, w)| p * w).sum::<f64>() / weight).round() as i32 } else { 0 };

    ContentScore {
        score,
        coverage,
        opportunity,
        ctr,
        freshness,
        clusters: clusters.len(),
        covered_clusters: clusters.len() - gaps.len(),
        impressions,
        clicks,
        expected_clicks,
        clicks_gain_left,
        content_age_days,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::gap::{find_gaps, ParagraphInput};

    /// 30% at position 1, 10% at 3, 5% at 6.
    fn ctr(position: f64) -> f64 {
        0.3 / position
    }

    fn cluster(cluster_id: i64, centroid: &[f32], impressions: i64, clicks: i64, position: Option<f64>) -> ClusterInput {
        ClusterInput { cluster_id, centroid: centroid.to_vec(), impressions, clicks, position }
    }

    fn paragraph(embedding_id: i64, embedding: &[f32]) -> ParagraphInput {
        ParagraphInput { embedding_id, embedding: embedding.to_vec(), is_heading: false }
    }

    /// Equal up to the f32 rounding of the vectors.
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    /// The score with the gaps of these paragraphs at threshold 0.7.
    fn score_of(clusters: &[ClusterInput], paragraphs: &[ParagraphInput], content_age_days: Option<f64>) -> ContentScore {
        content_score(clusters, &find_gaps(clusters, paragraphs, 0.7, ctr, usize::MAX), 0.7, ctr, content_age_days)
    }

    #[test]
    fn a_page_covering_its_topics_at_expected_ctr_and_new_scores_100() {
        let clusters = [cluster(1, &[1.0, 0.0], 1_000, 100, Some(3.0))];
        let score = score_of(&clusters, &[paragraph(1, &[1.0, 0.0])], Some(0.0));
        assert_eq!((score.coverage, score.opportunity, score.ctr, score.freshness), (Some(1.0), Some(1.0), Some(1.0), Some(1.0)));
        assert_eq!((score.score, score.covered_clusters), (100, 1));
    }

    #[test]
    fn each_part_has_its_known_value() {
        // Cluster 1 (600 impressions, position 3) is covered. Cluster 2 (400 impressions at
        // position 6) has similarity 0.35 = half the threshold: a gap worth
        // 400 · (ctr(3) − ctr(6)) · (1 − 0.35) = 400 · 0.05 · 0.65 = 13 clicks.
        let clusters = [cluster(1, &[1.0, 0.0], 600, 30, Some(3.0)), cluster(2, &[0.35, 0.936_749_7], 400, 13, Some(6.0))];
        let score = score_of(&clusters, &[paragraph(1, &[1.0, 0.0])], Some(365.0));
        // coverage (600 + 400 · 0.5) / 1000; opportunity 43 / (43 + 13); CTR 43 / (60 + 20); freshness one half-life.
        assert!(close(score.coverage.unwrap(), 0.8), "{:?}", score.coverage);
        assert!(close(score.clicks_gain_left, 13.0), "{}", score.clicks_gain_left);
        assert!(close(score.opportunity.unwrap(), 43.0 / 56.0));
        assert!(close(score.expected_clicks, 80.0) && close(score.ctr.unwrap(), 43.0 / 80.0));
        assert!(close(score.freshness.unwrap(), 0.5));
        let expected: f64 = 40.0 * 0.8 + 25.0 * 43.0 / 56.0 + 20.0 * 43.0 / 80.0 + 15.0 * 0.5;
        assert_eq!(score.score, expected.round() as i32);
        assert_eq!((score.clusters, score.covered_clusters, score.impressions, score.clicks), (2, 1, 1000, 43));
    }

    #[test]
    fn ctr_above_the_curve_counts_as_full_and_unknown_positions_are_left_out() {
        let clusters = [cluster(1, &[1.0, 0.0], 100, 50, Some(3.0)), cluster(2, &[1.0, 0.0], 100, 90, None)];
        let score = score_of(&clusters, &[paragraph(1, &[1.0, 0.0])], None);
        assert_eq!(score.ctr, Some(1.0));
        assert!(close(score.expected_clicks, 10.0));
    }

    #[test]
    fn parts_without_data_are_left_out_of_the_mean() {
        // No search data at all: only freshness is known, so it alone decides.
        let score = score_of(&[], &[paragraph(1, &[1.0])], Some(730.0));
        assert_eq!((score.coverage, score.opportunity, score.ctr), (None, None, None));
        assert_eq!(score.score, 25);
        assert_eq!(score_of(&[], &[], None).score, 0);
        // Content dated in the future counts as new.
        assert_eq!(score_of(&[], &[], Some(-3.0)).freshness, Some(1.0));
    }

    #[test]
    fn adding_a_paragraph_on_the_gap_raises_the_score() {
        let clusters = [cluster(1, &[1.0, 0.0], 500, 10, Some(8.0)), cluster(2, &[0.0, 1.0], 500, 10, Some(8.0))];
        let page = [paragraph(1, &[1.0, 0.0])];
        let before = score_of(&clusters, &page, Some(100.0));
        let after = score_of(&clusters, &[page[0].clone(), paragraph(2, &[0.1, 1.0])], Some(0.0));
        assert!(close(before.coverage.unwrap(), 0.5) && close(after.coverage.unwrap(), 1.0));
        assert!(after.score > before.score, "{} then {}", before.score, after.score);
    }
}
