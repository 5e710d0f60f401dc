//! DBSCAN over cosine distance for keyword clustering, labelling exactly like scikit-learn's
//! `DBSCAN(eps, min_samples, metric="cosine").fit(X).labels_`. This file owns the input checks,
//! the naive f64 neighbourhood search (benchmark baseline and test oracle) and the sklearn
//! labelling loop; `search.rs` the fast search (parallel, on the kernels of `kernel.rs`, through
//! the principal subspace of `subspace.rs`) that production uses.

mod kernel;
mod search;
mod subspace;

use search::tiled_neighbourhoods;
use thiserror::Error;

/// Label of points that belong to no cluster, as in sklearn.
const NOISE: i32 = -1;

#[derive(Debug, PartialEq, Error)]
pub enum DbscanError {
    #[error("dims must be at least 1")]
    ZeroDims,
    #[error("{len} values do not split into vectors of {dims} dimensions")]
    RaggedData { len: usize, dims: usize },
    #[error("eps must be in (0, 2] for cosine distance, got {0}")]
    InvalidEps(f64),
    #[error("min_points must be at least 1")]
    ZeroMinPoints,
    #[error("vector {index} has a non-finite value at dimension {dim}")]
    NonFinite { index: usize, dim: usize },
    #[error("vector {0} is all zeros: cosine distance is undefined")]
    ZeroVector(usize),
    #[error("{0} vectors exceed the limit of {MAX_POINTS} that one DBSCAN call clusters")]
    TooManyVectors(usize),
    #[error("more than {MAX_NEIGHBOUR_ENTRIES} neighbour entries (pairs within eps, counted both ways): use a smaller eps or fewer vectors")]
    TooManyNeighbours,
    #[error("not enough memory for {0} vectors")]
    OutOfMemory(usize),
}

/// Most vectors one call clusters: the similarity search is O(n²) (10,000 take about a second).
pub const MAX_POINTS: usize = 50_000;
/// Most neighbour entries kept (about 12 bytes each while building): bounds memory at a few
/// hundred MB however dense the data, where sklearn would take O(pairs) without limit.
pub const MAX_NEIGHBOUR_ENTRIES: usize = 20_000_000;

/// Clusters `data` (row-major, `dims` floats per vector) and returns one label per vector: clusters
/// numbered from 0 in order of discovery, −1 for noise. A vector is core when at least
/// `min_points` vectors (itself included) lie within cosine distance `eps`. The search uses up to
/// `threads` of the machine's cores.
pub fn dbscan_cosine(data: &[f32], dims: usize, eps: f64, min_points: usize, threads: usize) -> Result<Vec<i32>, DbscanError> {
    dbscan_cosine_interruptible(data, dims, eps, min_points, threads, &mut || {})
}

/// [`dbscan_cosine`] that calls `interrupt` between blocks of rows of the similarity search (a
/// few milliseconds apart at the largest sizes), so that a caller can cancel it from there.
pub fn dbscan_cosine_interruptible(
    data: &[f32],
    dims: usize,
    eps: f64,
    min_points: usize,
    threads: usize,
    interrupt: &mut dyn FnMut(),
) -> Result<Vec<i32>, DbscanError> {
    let inv_norms = validate(data, dims, eps, min_points)?;
    Ok(label_clusters(&tiled_neighbourhoods(data, dims, &inv_norms, eps, threads, interrupt)?, min_points))
}

/// Same result as [`dbscan_cosine`], computing every pair one at a time in f64: the benchmark
/// baseline and the test oracle.
pub fn dbscan_cosine_naive(data: &[f32], dims: usize, eps: f64, min_points: usize) -> Result<Vec<i32>, DbscanError> {
    let inv_norms = validate(data, dims, eps, min_points)?;
    Ok(label_clusters(
        &naive_neighbourhoods(data, dims, &inv_norms, eps),
        min_points,
    ))
}

/// Checks the arguments and returns each vector's inverse L2 norm (computed in f64).
fn validate(data: &[f32], dims: usize, eps: f64, min_points: usize) -> Result<Vec<f64>, DbscanError> {
    if dims == 0 {
        return Err(DbscanError::ZeroDims);
    }
    if !data.len().is_multiple_of(dims) {
        return Err(DbscanError::RaggedData { len: data.len(), dims });
    }
    // Cosine distance lies in [0, 2]; sklearn also rejects eps <= 0. NaN fails the range test.
    if !(eps > 0.0 && eps <= 2.0) {
        return Err(DbscanError::InvalidEps(eps));
    }
    if min_points < 1 {
        return Err(DbscanError::ZeroMinPoints);
    }
    let n = data.len() / dims;
    if n > MAX_POINTS {
        return Err(DbscanError::TooManyVectors(n));
    }
    data.chunks_exact(dims)
        .enumerate()
        .map(|(index, row)| {
            if let Some(dim) = row.iter().position(|x| !x.is_finite()) {
                return Err(DbscanError::NonFinite { index, dim });
            }
            let norm = row.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
            if norm == 0.0 {
                return Err(DbscanError::ZeroVector(index));
            }
            Ok(1.0 / norm)
        })
        .collect()
}

/// Each point's eps-neighbourhood (itself included) as ascending indices, in CSR form.
#[derive(Debug, PartialEq)]
struct Neighbourhoods {
    offsets: Vec<usize>,
    indices: Vec<u32>,
}

impl Neighbourhoods {
    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn of(&self, point: usize) -> &[u32] {
        &self.indices[self.offsets[point]..self.offsets[point + 1]]
    }
}

/// sklearn's test `dist <= eps` on its `cosine_distances`, which clips 1 − similarity to [0, 2].
fn within_eps(similarity: f64, eps: f64) -> bool {
    (1.0 - similarity).clamp(0.0, 2.0) <= eps
}

/// The reference cosine similarity. `inv_a * inv_b` is grouped so that (a, b) and (b, a) round
/// identically, which the tiled search relies on to agree with the naive one bit for bit.
fn exact_similarity(a: &[f32], b: &[f32], inv_a: f64, inv_b: f64) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
    dot * (inv_a * inv_b)
}

fn naive_neighbourhoods(data: &[f32], dims: usize, inv_norms: &[f64], eps: f64) -> Neighbourhoods {
    let rows: Vec<&[f32]> = data.chunks_exact(dims).collect();
    let mut offsets = vec![0];
    let mut indices = Vec::new();
    for (i, a) in rows.iter().enumerate() {
        for (j, b) in rows.iter().enumerate() {
            // sklearn zeroes the diagonal of its distance matrix: a point is always its own neighbour.
            if i == j || within_eps(exact_similarity(a, b, inv_norms[i], inv_norms[j]), eps) {
                indices.push(j as u32);
            }
        }
        offsets.push(indices.len());
    }
    Neighbourhoods { offsets, indices }
}

/// sklearn's `dbscan_inner`: scan points in index order, start a new cluster at each unlabelled
/// core point and expand it depth-first through core points' neighbourhoods; border points take
/// the first cluster that reaches them. Unlike sklearn, a point is labelled when pushed rather
/// than when popped, so it enters the stack once (sklearn's stack can grow to O(n²)). Labels are
/// the same: a cluster's DFS labels every still-unlabelled point reachable from its seed before
/// the next cluster starts, whatever the visiting order.
fn label_clusters(neighbourhoods: &Neighbourhoods, min_points: usize) -> Vec<i32> {
    let n = neighbourhoods.len();
    let is_core: Vec<bool> = (0..n).map(|i| neighbourhoods.of(i).len() >= min_points).collect();
    let mut labels = vec![NOISE; n];
    let mut stack = Vec::new();
    let mut cluster = 0;
    for seed in 0..n {
        if labels[seed] != NOISE || !is_core[seed] {
            continue;
        }
        labels[seed] = cluster;
        stack.push(seed);
        while let Some(point) = stack.pop() {
            for &v in neighbourhoods.of(point) {
                let v = v as usize;
                if labels[v] == NOISE {
                    labels[v] = cluster;
                    // Border points join the cluster but do not extend it.
                    if is_core[v] {
                        stack.push(v);
                    }
                }
            }
        }
        cluster += 1;
    }
    labels
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::time::Instant;

    /// Cosine distance of 1 − cos(10.5°): points at most 10° apart are neighbours, 11° apart are not.
    const EPS: f64 = 0.0167;

    /// Unit vectors on the circle at the given angles in degrees, flattened.
    fn at(degrees: &[f64]) -> Vec<f32> {
        degrees
            .iter()
            .flat_map(|d| [d.to_radians().cos() as f32, d.to_radians().sin() as f32])
            .collect()
    }

    /// Both implementations, checked to agree.
    fn labels(data: &[f32], dims: usize, eps: f64, min_points: usize) -> Vec<i32> {
        let fast = dbscan_cosine(data, dims, eps, min_points, 2).unwrap();
        assert_eq!(fast, dbscan_cosine_naive(data, dims, eps, min_points).unwrap());
        fast
    }

    #[test]
    fn two_groups_and_an_outlier() {
        // Groups at 0–10° and 90–100°, each point within 10° of the others in its group, so with
        // min_points 2 all six are core. Index 0 seeds cluster 0, index 3 seeds cluster 1; 45° has
        // no neighbour but itself and stays noise.
        let data = at(&[0.0, 5.0, 10.0, 90.0, 95.0, 100.0, 45.0]);
        assert_eq!(labels(&data, 2, EPS, 2), [0, 0, 0, 1, 1, 1, -1]);
    }

    #[test]
    fn all_noise_when_min_points_exceeds_every_neighbourhood() {
        // The largest neighbourhood has 3 points (a group with itself), fewer than 4: no core point.
        let data = at(&[0.0, 5.0, 10.0, 90.0, 95.0, 100.0, 45.0]);
        assert_eq!(labels(&data, 2, EPS, 4), [-1; 7]);
    }

    #[test]
    fn a_chain_of_core_points_is_one_cluster() {
        // 0° and 20° are not neighbours, but every step of 5° is and every point is core, so the
        // depth-first expansion from index 0 reaches all of them.
        let data = at(&[0.0, 5.0, 10.0, 15.0, 20.0]);
        assert_eq!(labels(&data, 2, EPS, 2), [0; 5]);
    }

    #[test]
    fn duplicates_and_scaled_copies_are_at_distance_zero() {
        // Three copies of one direction (one scaled by 2) give each other 3 neighbours: core with
        // min_points 3. The orthogonal vector has only itself: noise.
        let data = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 2.0, 0.0];
        assert_eq!(labels(&data, 2, EPS, 3), [0, 0, -1, 0]);
    }

    #[test]
    fn min_points_one_makes_every_point_core() {
        // Each point is its own neighbour, so nothing is noise: the outlier is a singleton cluster.
        let data = at(&[0.0, 5.0, 10.0, 90.0, 95.0, 100.0, 45.0]);
        assert_eq!(labels(&data, 2, EPS, 1), [0, 0, 0, 1, 1, 1, 2]);
    }

    #[test]
    fn a_border_point_takes_the_first_cluster_that_reaches_it() {
        // Min_points 4. {23, 24, 25, 26}° and {0, 1, 2, 3}° are core (4+ neighbours each); 13° is
        // 10° from both 3° and 23° but has only 3 neighbours (3°, itself, 23°): a border point of
        // both clusters. The 23° group has the lowest indices, so it is cluster 0 and claims 13°.
        let data = at(&[23.0, 24.0, 25.0, 26.0, 13.0, 0.0, 1.0, 2.0, 3.0]);
        assert_eq!(labels(&data, 2, EPS, 4), [0, 0, 0, 0, 0, 1, 1, 1, 1]);
    }

    #[test]
    fn clusters_are_numbered_by_their_lowest_index_core_point() {
        // Min_points 3. Index 0 (18°) has only 8° as a neighbour: a border point, so it does not
        // seed a cluster. Index 1 (90°) is the first core point: its 3-point group is cluster 0
        // although the 5-point group at 0–8° is bigger; that group is cluster 1 and claims 18°.
        let data = at(&[18.0, 90.0, 0.0, 2.0, 4.0, 92.0, 6.0, 8.0, 94.0]);
        assert_eq!(labels(&data, 2, EPS, 3), [1, 0, 1, 1, 1, 0, 1, 1, 0]);
    }

    #[test]
    fn eps_two_makes_opposite_vectors_neighbours() {
        // sklearn clips distances to [0, 2], so even if rounding puts 1 − similarity just above 2,
        // opposite vectors are within eps = 2.
        let data = [1.0, 1.0, 1.0, -1.0, -1.0, -1.0];
        assert_eq!(labels(&data, 3, 2.0, 2), [0, 0]);
    }

    #[test]
    fn empty_input_has_no_labels() {
        assert_eq!(labels(&[], 384, 0.3, 5), Vec::<i32>::new());
    }

    #[test]
    fn invalid_arguments_are_rejected() {
        let ok = [1.0, 0.0, 0.0, 1.0];
        let both = |data: &[f32], dims, eps, min_points| {
            let err = dbscan_cosine(data, dims, eps, min_points, 2).unwrap_err();
            // Compared as text because InvalidEps(NaN) is not equal to itself.
            assert_eq!(
                err.to_string(),
                dbscan_cosine_naive(data, dims, eps, min_points)
                    .unwrap_err()
                    .to_string()
            );
            err
        };
        assert_eq!(both(&ok, 0, 0.3, 2), DbscanError::ZeroDims);
        assert_eq!(both(&ok, 3, 0.3, 2), DbscanError::RaggedData { len: 4, dims: 3 });
        for eps in [0.0, -0.1, 2.0001, f64::INFINITY] {
            assert_eq!(both(&ok, 2, eps, 2), DbscanError::InvalidEps(eps));
        }
        assert!(matches!(both(&ok, 2, f64::NAN, 2), DbscanError::InvalidEps(e) if e.is_nan()));
        assert_eq!(both(&ok, 2, 0.3, 0), DbscanError::ZeroMinPoints);
        assert_eq!(
            both(&[1.0, 0.0, 0.0, f32::NAN], 2, 0.3, 2),
            DbscanError::NonFinite { index: 1, dim: 1 }
        );
        assert_eq!(
            both(&[f32::INFINITY, 0.0], 2, 0.3, 2),
            DbscanError::NonFinite { index: 0, dim: 0 }
        );
        let err = both(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0], 2, 0.3, 2);
        assert_eq!(err, DbscanError::ZeroVector(3));
        assert_eq!(err.to_string(), "vector 3 is all zeros: cosine distance is undefined");
    }

    /// xorshift64*: deterministic test data without a dependency.
    pub(super) struct Rng(pub u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Standard normal (Box–Muller).
        pub(super) fn normal(&mut self) -> f64 {
            let u = 1.0 - self.unit();
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()
        }
    }

    /// `n` vectors around 12 random centres with spreads chosen so that same-centre pairs sit at
    /// cosine distances of roughly 0.1–0.6 (around the tested eps values), plus 10% uniform noise.
    pub(super) fn clustered(seed: u64, n: usize, dims: usize) -> Vec<f32> {
        let mut rng = Rng(seed);
        let centres: Vec<Vec<f64>> = (0..12).map(|_| (0..dims).map(|_| rng.normal()).collect()).collect();
        let spreads: Vec<f64> = (0..centres.len()).map(|k| 0.25 + 0.07 * k as f64).collect();
        let mut data = Vec::with_capacity(n * dims);
        for _ in 0..n {
            if rng.unit() < 0.1 {
                data.extend((0..dims).map(|_| rng.normal() as f32));
            } else {
                let k = (rng.next_u64() % centres.len() as u64) as usize;
                data.extend(centres[k].iter().map(|c| (c + spreads[k] * rng.normal()) as f32));
            }
        }
        data
    }

    #[test]
    fn labels_clustered_data_as_the_naive_search_does() {
        let (n, dims) = (700, 384);
        let data = clustered(0x5eed, n, dims);
        let inv_norms = validate(&data, dims, 0.3, 1).unwrap();
        let naive = naive_neighbourhoods(&data, dims, &inv_norms, 0.3);
        for min_points in [5, 20] {
            let labels = label_clusters(&naive, min_points);
            assert_eq!(dbscan_cosine(&data, dims, 0.3, min_points, 2).unwrap(), labels);
            let clusters = labels.iter().max().unwrap() + 1;
            assert!(clusters >= 2 && labels.contains(&NOISE), "{clusters} clusters");
        }
    }

    #[test]
    fn too_many_vectors_or_neighbours_are_refused_with_the_limit() {
        let too_many = vec![1.0_f32; MAX_POINTS + 1];
        let error = dbscan_cosine(&too_many, 1, 2.0, 2, 2).unwrap_err();
        assert_eq!(error, DbscanError::TooManyVectors(MAX_POINTS + 1));
        assert!(error.to_string().contains("50000"), "{error}");
        // Identical vectors are all neighbours of each other: n² entries, past the cap at n = 5,000.
        let dense = vec![1.0_f32; 5_000];
        assert_eq!(dbscan_cosine(&dense, 1, 0.3, 2, 2).unwrap_err(), DbscanError::TooManyNeighbours);
        let fits = vec![1.0_f32; 4_000];
        assert!(dbscan_cosine(&fits, 1, 0.3, 2, 2).unwrap().iter().all(|&label| label == 0));
    }

    /// Prints timings; run with `cargo test --release -- --ignored --nocapture timing`.
    #[test]
    #[ignore]
    fn timing() {
        let dims = 384;
        for n in [2_000, 5_000, 10_000] {
            let data = clustered(n as u64, n, dims);
            let start = Instant::now();
            let fast = dbscan_cosine(&data, dims, 0.3, 5, 2).unwrap();
            let fast_time = start.elapsed();
            let naive_time = if n <= 5_000 {
                let start = Instant::now();
                assert_eq!(dbscan_cosine_naive(&data, dims, 0.3, 5).unwrap(), fast);
                format!("{:?}", start.elapsed())
            } else {
                "skipped".to_string()
            };
            println!("n={n} dims={dims} eps=0.3: fast {fast_time:?}, naive {naive_time}");
        }
    }
}
