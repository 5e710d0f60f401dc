//! The gap analysis's pure scoring: which keyword clusters a page's paragraphs do not cover, how
//! much search traffic each gap is worth, and the vector helpers it needs (cosine similarity and
//! cluster centroids). Reading clusters and embeddings from the database happens elsewhere.

/// Below this best similarity to any paragraph, a cluster counts as not covered by the page.
pub const DEFAULT_THRESHOLD: f64 = 0.7;
/// How many gaps a page's analysis reports.
pub const DEFAULT_LIMIT: usize = 10;
/// How many of the closest paragraphs a gap keeps (for the drafter to extend or avoid repeating).
pub const CLOSEST_KEPT: usize = 3;

/// A keyword cluster with its Search Console totals.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterInput {
    pub cluster_id: i64,
    pub centroid: Vec<f32>,
    pub impressions: i64,
    pub clicks: i64,
    /// Impression-weighted average position; None when unknown.
    pub position: Option<f64>,
}

/// One paragraph embedding of the page.
#[derive(Debug, Clone, PartialEq)]
pub struct ParagraphInput {
    pub embedding_id: i64,
    pub embedding: Vec<f32>,
    /// Headings count towards covering a topic but are not paragraphs to extend.
    pub is_heading: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    pub cluster_id: i64,
    /// Highest cosine similarity between the cluster centroid and a paragraph (0 without paragraphs).
    pub similarity: f64,
    /// The paragraphs (not headings) closest to the cluster, closest first, at most `CLOSEST_KEPT`.
    pub closest_embedding_ids: Vec<i64>,
    /// impressions · (1 − similarity)
    pub opportunity_score: f64,
    pub estimated_clicks_gain: f64,
}

/// The clusters whose best paragraph similarity is below `threshold`, highest opportunity first
/// (ties by ascending cluster id), at most `limit`. `expected_ctr` maps a search position to the
/// click-through rate expected there.
pub fn find_gaps(
    clusters: &[ClusterInput],
    paragraphs: &[ParagraphInput],
    threshold: f64,
    expected_ctr: impl Fn(f64) -> f64,
    limit: usize,
) -> Vec<Gap> {
    let mut gaps: Vec<Gap> = clusters
        .iter()
        .filter_map(|cluster| {
            let ranked = rank_by_similarity(&cluster.centroid, paragraphs);
            let similarity = ranked.first().map_or(0.0, |(similarity, _)| *similarity);
            if similarity >= threshold {
                return None;
            }
            let uncovered = 1.0 - similarity;
            let impressions = cluster.impressions as f64;
            // An estimate, not a forecast: the clicks the cluster's impressions would earn at
            // position 3 minus those its current position earns (10, page one's end, when
            // unknown), never negative, scaled by how uncovered the topic is because closing a
            // small gap should not be credited with the whole ranking gain.
            let current_ctr = expected_ctr(cluster.position.unwrap_or(10.0));
            let top3_gain = (impressions * (expected_ctr(3.0) - current_ctr)).max(0.0);
            Some(Gap {
                cluster_id: cluster.cluster_id,
                similarity,
                closest_embedding_ids: ranked
                    .iter()
                    .filter(|(_, p)| !p.is_heading)
                    .take(CLOSEST_KEPT)
                    .map(|(_, p)| p.embedding_id)
                    .collect(),
                opportunity_score: impressions * uncovered,
                estimated_clicks_gain: top3_gain * uncovered,
            })
        })
        .collect();
    gaps.sort_by(|a, b| {
        b.opportunity_score
            .total_cmp(&a.opportunity_score)
            .then(a.cluster_id.cmp(&b.cluster_id))
    });
    gaps.truncate(limit);
    gaps
}

/// The fragments with their similarity to `centroid`, most similar first (the lower embedding
/// id first on ties, so the answer does not depend on row order).
fn rank_by_similarity<'a>(centroid: &[f32], paragraphs: &'a [ParagraphInput]) -> Vec<(f64, &'a ParagraphInput)> {
    let mut ranked: Vec<(f64, &ParagraphInput)> = paragraphs.iter().map(|p| (cosine(centroid, &p.embedding), p)).collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.embedding_id.cmp(&b.1.embedding_id)));
    ranked
}

/// Cosine similarity computed in f64; 0 when either vector is all zeros.
///
/// Panics if the lengths differ: embeddings from different models must not be compared.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "cosine of vectors with different dimensions");
    let (mut dot, mut norm_a, mut norm_b) = (0.0_f64, 0.0_f64, 0.0_f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        norm_a += x * x;
        norm_b += y * y;
    }
    if norm_a == 0.0 || norm_b == 0.0 {
        return 0.0;
    }
    dot / (norm_a.sqrt() * norm_b.sqrt())
}

/// The mean direction of `vectors`: each is L2-normalised first so that long vectors do not
/// dominate, and the sum is normalised again (dividing by the count first would change nothing).
/// Zero vectors add nothing; when the directions cancel out the result stays all zeros. Empty
/// input gives an empty vector.
///
/// Panics if the lengths differ.
pub fn centroid(vectors: &[&[f32]]) -> Vec<f32> {
    let Some(first) = vectors.first() else {
        return Vec::new();
    };
    let mut sum = vec![0.0_f64; first.len()];
    for vector in vectors {
        assert_eq!(vector.len(), sum.len(), "centroid of vectors with different dimensions");
        let norm = vector.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
        if norm > 0.0 {
            for (s, &x) in sum.iter_mut().zip(vector.iter()) {
                *s += f64::from(x) / norm;
            }
        }
    }
    let norm = sum.iter().map(|s| s * s).sum::<f64>().sqrt();
    // Directions that cancel out leave at most the inputs' f32 rounding, which has no meaning.
    if norm <= vectors.len() as f64 * f64::from(f32::EPSILON) {
        return vec![0.0; sum.len()];
    }
    sum.iter().map(|s| (s / norm) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simple decreasing CTR curve: 30% at position 1, 10% at 3, 3% at 10.
    fn ctr(position: f64) -> f64 {
        0.3 / position
    }

    fn cluster(cluster_id: i64, centroid: &[f32], impressions: i64, position: Option<f64>) -> ClusterInput {
        ClusterInput {
            cluster_id,
            centroid: centroid.to_vec(),
            impressions,
            clicks: 0,
            position,
        }
    }

    fn paragraph(embedding_id: i64, embedding: &[f32]) -> ParagraphInput {
        ParagraphInput {
            embedding_id,
            embedding: embedding.to_vec(),
            is_heading: false,
        }
    }

    fn gaps(clusters: &[ClusterInput], paragraphs: &[ParagraphInput], limit: usize) -> Vec<Gap> {
        find_gaps(clusters, paragraphs, DEFAULT_THRESHOLD, ctr, limit)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_covered_cluster_is_not_a_gap_and_an_uncovered_one_is() {
        let paragraphs = [paragraph(7, &[1.0, 0.0, 0.0]), paragraph(8, &[0.0, 1.0, 0.0])];
        // Cluster 1 points along paragraph 7: covered. Cluster 2 has cosine 3/5 with paragraph 8
        // and 0 with paragraph 7: a gap whose closest paragraph is 8.
        let clusters = [
            cluster(1, &[2.0, 0.0, 0.0], 1_000, Some(5.0)),
            cluster(2, &[0.0, 3.0, 4.0], 1_000, Some(5.0)),
        ];
        let found = gaps(&clusters, &paragraphs, 10);
        assert_eq!(found.len(), 1);
        let gap = &found[0];
        assert_eq!((gap.cluster_id, gap.closest_embedding_ids.as_slice()), (2, [8, 7].as_slice()));
        assert!(close(gap.similarity, 0.6), "{}", gap.similarity);
        assert!(close(gap.opportunity_score, 400.0));
        // 1000 · (ctr(3) − ctr(5)) = 1000 · (0.1 − 0.06) = 40 clicks, times 1 − 0.6.
        assert!(close(gap.estimated_clicks_gain, 16.0), "{}", gap.estimated_clicks_gain);
    }

    #[test]
    fn similarity_equal_to_the_threshold_is_covered() {
        // Orthogonal vectors have similarity exactly 0: only below the threshold is a gap.
        let clusters = [cluster(1, &[1.0, 0.0], 100, None)];
        assert!(find_gaps(&clusters, &[paragraph(1, &[0.0, 1.0])], 0.0, ctr, 10).is_empty());
        assert_eq!(
            find_gaps(&clusters, &[paragraph(1, &[0.0, 1.0])], 0.01, ctr, 10).len(),
            1
        );
    }

    #[test]
    fn gaps_are_ordered_by_opportunity_and_limited() {
        // No paragraphs: similarity 0, so each score is the cluster's impressions.
        let clusters = [
            cluster(1, &[1.0, 0.0], 50, None),
            cluster(2, &[1.0, 0.0], 500, None),
            cluster(3, &[1.0, 0.0], 5, None),
            cluster(4, &[1.0, 0.0], 5_000, None),
        ];
        let ids: Vec<i64> = gaps(&clusters, &[], 3).iter().map(|g| g.cluster_id).collect();
        assert_eq!(ids, [4, 2, 1]);
    }

    #[test]
    fn equal_scores_are_ordered_by_cluster_id() {
        let clusters = [cluster(9, &[1.0, 0.0], 100, None), cluster(3, &[0.0, 1.0], 100, None)];
        let ids: Vec<i64> = gaps(&clusters, &[], 10).iter().map(|g| g.cluster_id).collect();
        assert_eq!(ids, [3, 9]);
    }

    #[test]
    fn without_paragraphs_every_cluster_is_a_gap_with_no_closest_paragraph() {
        let found = gaps(&[cluster(1, &[1.0, 0.0], 200, Some(3.0))], &[], 10);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].similarity, found[0].closest_embedding_ids.len()), (0.0, 0));
        assert_eq!(found[0].opportunity_score, 200.0);
        // Already at position 3: nothing to gain.
        assert_eq!(found[0].estimated_clicks_gain, 0.0);
    }

    #[test]
    fn clicks_gain_assumes_position_ten_when_unknown_and_is_never_negative() {
        let clusters = [
            cluster(1, &[1.0, 0.0], 1_000, None),
            cluster(2, &[1.0, 0.0], 1_000, Some(1.0)),
        ];
        let found = gaps(&clusters, &[], 10);
        // 1000 · (0.1 − 0.03) = 70 for the unknown position; position 1 beats position 3: 0.
        assert!(
            close(found[0].estimated_clicks_gain, 70.0),
            "{}",
            found[0].estimated_clicks_gain
        );
        assert_eq!(found[1].estimated_clicks_gain, 0.0);
    }

    #[test]
    fn zero_impression_clusters_score_zero() {
        let found = gaps(
            &[cluster(1, &[1.0, 0.0], 0, Some(20.0))],
            &[paragraph(1, &[0.0, 1.0])],
            10,
        );
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].opportunity_score, found[0].estimated_clicks_gain), (0.0, 0.0));
    }

    #[test]
    fn ties_between_paragraphs_pick_the_lowest_embedding_id() {
        let paragraphs = [paragraph(5, &[0.0, 1.0]), paragraph(2, &[0.0, 3.0])];
        let found = find_gaps(&[cluster(1, &[1.0, 1.0], 10, None)], &paragraphs, 0.9, ctr, 10);
        assert_eq!(found[0].closest_embedding_ids, [2, 5]);
    }

    #[test]
    fn the_closest_few_paragraphs_are_kept_most_similar_first_and_headings_only_count_for_coverage() {
        let mut paragraphs: Vec<ParagraphInput> = (1..=6).map(|i| paragraph(i, &[1.0, i as f32])).collect();
        // Against [1, 0.5] the heading is the most similar fragment: it sets the similarity, but
        // the paragraphs to extend are the flattest ones.
        paragraphs.push(ParagraphInput { is_heading: true, ..paragraph(9, &[1.0, 0.5]) });
        let found = find_gaps(&[cluster(1, &[1.0, 0.5], 10, None)], &paragraphs, 1.1, ctr, 10);
        assert!(close(found[0].similarity, 1.0), "{}", found[0].similarity);
        assert_eq!(found[0].closest_embedding_ids, [1, 2, 3]);
    }

    #[test]
    fn cosine_of_known_pairs_and_of_zero_vectors() {
        assert!(close(cosine(&[1.0, 2.0], &[2.0, 4.0]), 1.0));
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 5.0]), 0.0);
        assert!(close(cosine(&[1.0, 1.0], &[-1.0, -1.0]), -1.0));
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 0.0]), 0.0);
        assert_eq!(cosine(&[], &[]), 0.0);
    }

    #[test]
    fn centroid_weighs_directions_not_lengths() {
        // Normalised first, [10, 0] and [0, 1] count equally: the mean direction is 45°.
        let c = centroid(&[&[10.0, 0.0], &[0.0, 1.0]]);
        let half_sqrt2 = std::f32::consts::FRAC_1_SQRT_2;
        assert!(
            (c[0] - half_sqrt2).abs() < 1e-6 && (c[1] - half_sqrt2).abs() < 1e-6,
            "{c:?}"
        );
    }

    #[test]
    fn centroid_of_opposite_or_zero_vectors_stays_zero() {
        assert_eq!(centroid(&[&[1.0, 2.0, 3.0], &[-1.0, -2.0, -3.0]]), [0.0, 0.0, 0.0]);
        // Three directions 120° apart cancel only up to the rounding of sin(120°) in f32.
        let (cos, sin) = (-0.5_f32, 120_f32.to_radians().sin());
        assert_eq!(centroid(&[&[1.0, 0.0], &[cos, sin], &[cos, -sin]]), [0.0, 0.0]);
        assert_eq!(centroid(&[&[0.0, 0.0]]), [0.0, 0.0]);
        // A zero vector adds nothing to the others.
        assert_eq!(centroid(&[&[0.0, 0.0], &[0.0, 2.0]]), [0.0, 1.0]);
        assert!(centroid(&[]).is_empty());
    }
}
