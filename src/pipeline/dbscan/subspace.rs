//! The principal subspace of a set of vectors: the few directions that carry most of their
//! weight. The search compares the vectors' short coordinates in it first (see `search.rs`), so
//! it only needs to be a good subspace, not the exact principal components: found by a few
//! rounds of subspace iteration on a sample's Gram matrix, then made orthonormal in f64, which
//! is what the search's error bounds rely on.

use super::kernel::{products, LANES, TILE};

/// Vectors sampled to find the subspace.
const SAMPLE: usize = 512;
/// Rounds of subspace iteration: on clustered embeddings the subspace had settled after two.
const ROUNDS: usize = 3;

/// An orthonormal basis of a subspace, `count` rows of `stride` f64s, and the share of the
/// sample's squared norm that lies in it.
pub(super) struct Basis {
    pub rows: Vec<f64>,
    pub count: usize,
    pub captured: f64,
}

/// Up to `wanted` (at most TILE) orthonormal directions that capture as much of the squared norm
/// of `unit`'s first `n` rows (`stride` floats each, zero-padded to a multiple of TILE rows) as
/// subspace iteration on a sample finds; `None` when the vectors are all zero.
pub(super) fn principal_basis(unit: &[f32], n: usize, stride: usize, wanted: usize) -> Option<Basis> {
    assert!(wanted <= TILE && n > 0);
    let samples = n.min(SAMPLE);
    let step = n / samples;
    // The sample transposed: a row per dimension, so that `products` gives its Gram matrix.
    let sample_stride = samples.next_multiple_of(LANES);
    let dim_rows = stride.next_multiple_of(TILE);
    let mut transposed = vec![0.0_f32; dim_rows * sample_stride];
    for s in 0..samples {
        for (d, &x) in unit[s * step * stride..][..stride].iter().enumerate() {
            transposed[d * sample_stride + s] = x;
        }
    }
    let gram = products(&transposed, dim_rows, &transposed, dim_rows, sample_stride);
    let trace: f64 = (0..stride).map(|d| f64::from(gram[d * dim_rows + d])).sum();
    if trace <= 0.0 {
        return None;
    }
    // TILE directions, started from spread-out samples, each a row of dim_rows values.
    let mut directions = vec![0.0_f64; TILE * dim_rows];
    for (c, row) in directions.chunks_exact_mut(dim_rows).enumerate() {
        let s = (c * samples / TILE) * step;
        for (d, &x) in unit[s * stride..][..stride].iter().enumerate() {
            row[d] = f64::from(x);
        }
    }
    let gram_times = |directions: &[f64]| -> Vec<f64> {
        let as_f32: Vec<f32> = directions.iter().map(|&x| x as f32).collect();
        let product = products(&gram, dim_rows, &as_f32, TILE, dim_rows);
        // product[d][c] = (G q_c)[d]: transpose back into a row per direction.
        let mut next = vec![0.0_f64; TILE * dim_rows];
        for (d, row) in product.chunks_exact(TILE).enumerate() {
            for (c, &x) in row.iter().enumerate() {
                next[c * dim_rows + d] = f64::from(x);
            }
        }
        next
    };
    for _ in 0..ROUNDS {
        orthonormalize(&mut directions, dim_rows, 1);
        directions = gram_times(&directions);
    }
    // Twice, so that the basis is orthonormal to f64 precision, whatever the rounds left.
    let kept = orthonormalize(&mut directions, dim_rows, 2);
    // Rank the directions by the squared norm they capture (their Rayleigh quotients).
    let images = gram_times(&directions);
    let mut ranked: Vec<(usize, f64)> = (0..TILE)
        .filter(|&c| kept[c])
        .map(|c| (c, dot(&directions[c * dim_rows..][..dim_rows], &images[c * dim_rows..][..dim_rows])))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(wanted);
    let mut rows = Vec::with_capacity(ranked.len() * stride);
    for &(c, _) in &ranked {
        rows.extend_from_slice(&directions[c * dim_rows..][..stride]);
    }
    let captured = ranked.iter().map(|&(_, weight)| weight).sum::<f64>() / trace;
    Some(Basis { rows, count: ranked.len(), captured })
}

/// Modified Gram–Schmidt over the rows (`len` values each), `passes` times per row; rows that
/// lie in the span of the earlier ones become zero. Returns which rows are kept.
fn orthonormalize(rows: &mut [f64], len: usize, passes: usize) -> Vec<bool> {
    let count = rows.len() / len;
    let mut kept = vec![false; count];
    for c in 0..count {
        let (done, rest) = rows.split_at_mut(c * len);
        let row = &mut rest[..len];
        let before = dot(row, row).sqrt();
        for _ in 0..passes {
            for p in (0..c).filter(|&p| kept[p]) {
                let earlier = &done[p * len..][..len];
                let along = dot(row, earlier);
                row.iter_mut().zip(earlier).for_each(|(x, &e)| *x -= along * e);
            }
        }
        let norm = dot(row, row).sqrt();
        // What is left of a row in the span of the others is rounding.
        if norm > 1e-9 * before.max(f64::MIN_POSITIVE) && norm > 0.0 {
            row.iter_mut().for_each(|x| *x /= norm);
            kept[c] = true;
        } else {
            row.fill(0.0);
        }
    }
    kept
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::super::tests::Rng;
    use super::*;

    #[test]
    fn finds_the_subspace_that_vectors_lie_in() {
        // 2,000 vectors in the span of 3 random directions of 96 dimensions, plus a little noise.
        let (n, stride): (usize, usize) = (2_000, 96);
        let mut rng = Rng(5);
        let spanning: Vec<Vec<f64>> = (0..3).map(|_| (0..stride).map(|_| rng.normal()).collect()).collect();
        let mut unit = vec![0.0_f32; n.next_multiple_of(TILE) * stride];
        for row in unit.chunks_exact_mut(stride).take(n) {
            let weights: Vec<f64> = (0..3).map(|_| rng.normal()).collect();
            let v: Vec<f64> = (0..stride)
                .map(|d| (0..3).map(|k| weights[k] * spanning[k][d]).sum::<f64>() + 0.001 * rng.normal())
                .collect();
            let norm = dot(&v, &v).sqrt();
            row.iter_mut().zip(&v).for_each(|(x, &y)| *x = (y / norm) as f32);
        }
        let basis = principal_basis(&unit, n, stride, 8).unwrap();
        assert_eq!(basis.count, 8);
        assert!(basis.captured > 0.999, "captured {}", basis.captured);
        // Orthonormal to f64 precision.
        for i in 0..basis.count {
            for j in 0..basis.count {
                let product = dot(&basis.rows[i * stride..][..stride], &basis.rows[j * stride..][..stride]);
                let expected = if i == j { 1.0 } else { 0.0 };
                assert!((product - expected).abs() < 1e-12, "({i}, {j}): {product}");
            }
        }
        // The first three directions hold the spanning vectors: what is left of each is noise.
        for v in &spanning {
            let norm = dot(v, v).sqrt();
            let inside: f64 = (0..3).map(|i| dot(&basis.rows[i * stride..][..stride], v).powi(2)).sum();
            assert!(inside.sqrt() / norm > 0.999, "{}", inside.sqrt() / norm);
        }
    }

    #[test]
    fn duplicates_leave_fewer_directions_and_zeros_none() {
        let stride = 16;
        let mut unit = vec![0.0_f32; TILE * stride];
        for row in unit.chunks_exact_mut(stride).take(40) {
            row[0] = 0.6;
            row[1] = 0.8;
        }
        let basis = principal_basis(&unit, 40, stride, 8).unwrap();
        assert_eq!(basis.count, 1);
        assert!((basis.rows[0].abs() - 0.6).abs() < 1e-6 && (basis.rows[1].abs() - 0.8).abs() < 1e-6);
        assert!(principal_basis(&vec![0.0; TILE * stride], 10, stride, 8).is_none());
    }
}
