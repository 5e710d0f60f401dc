//! The neighbourhood search: every pair of vectors within eps, found by comparing blocks of TILE
//! rows with the tile kernel on all cores. Exactly the naive search's result: most pairs are
//! ruled out by a bound from their coordinates in the principal subspace that holds whatever
//! the rounding, and pairs whose f32 similarity lies near the threshold are decided again in f64.

use super::kernel::{highest, products, similarity_tile, Pruning, LANES, TILE};
use super::subspace::principal_basis;
use super::{exact_similarity, within_eps, DbscanError, Neighbourhoods, MAX_NEIGHBOUR_ENTRIES};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Most threads one search uses, whatever its caller asks.
pub const MAX_THREADS: usize = 16;
/// Coordinates in the principal subspace that the kernel compares before the vectors. On
/// clustered 384-d embeddings 48 left the least work: pairs cost 48 + (share not ruled out) × 384.
const PRINCIPAL_DIMS: usize = 48;
/// Fewer vectors are searched without the subspace: the search takes a few ms, finding the
/// subspace about as long. Vectors of fewer dimensions gain too little from it.
const PROJECT_FROM_VECTORS: usize = 1024;
const PROJECT_FROM_DIMS: usize = 4 * PRINCIPAL_DIMS;

/// How to search: on how many threads, and whether through the principal subspace.
pub(super) struct Plan {
    pub threads: usize,
    pub project: bool,
}

impl Plan {
    /// Up to `threads` threads, no more than the machine's cores.
    fn for_machine(vectors: usize, dims: usize, threads: usize) -> Plan {
        let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
        Plan {
            threads: threads.min(cores).clamp(1, MAX_THREADS),
            project: vectors >= PROJECT_FROM_VECTORS && dims >= PROJECT_FROM_DIMS,
        }
    }
}

/// Bound on |f32 tile similarity − exact similarity| for unit vectors: rounding the normalised
/// components costs about 2u and a `dims`-term f32 sum at most `dims`·u (u = ε/2). Pairs closer
/// than this to the threshold are decided again in f64, so the result matches the naive search.
fn rounding_margin(dims: usize) -> f64 {
    1e-5_f64.max(2.0 * (dims + 2) as f64 * f64::from(f32::EPSILON))
}

/// The same neighbourhoods as the naive search. Memory: the vectors once more as unit f32 rows,
/// 64 coordinates per vector, and O(pairs within eps) like sklearn: 4 bytes per neighbour entry,
/// plus 8 per pair while building, at most [`MAX_NEIGHBOUR_ENTRIES`]; allocations that fail are
/// an error, not an abort.
pub(super) fn tiled_neighbourhoods(
    data: &[f32],
    dims: usize,
    inv_norms: &[f64],
    eps: f64,
    threads: usize,
    interrupt: &mut dyn FnMut(),
) -> Result<Neighbourhoods, DbscanError> {
    let plan = Plan::for_machine(inv_norms.len(), dims, threads);
    neighbourhoods_with(data, dims, inv_norms, eps, &plan, interrupt)
}

pub(super) fn neighbourhoods_with(
    data: &[f32],
    dims: usize,
    inv_norms: &[f64],
    eps: f64,
    plan: &Plan,
    interrupt: &mut dyn FnMut(),
) -> Result<Neighbourhoods, DbscanError> {
    let n = inv_norms.len();
    let margin = rounding_margin(dims);
    let rows = SearchRows::new(data, dims, inv_norms, eps, plan.project)?;
    let blocks = search_blocks(
        BlockSearch {
            // What the kernel rules out is surely below the threshold, also after the
            // coordinates' and the bound's own rounding (a further 1e-6).
            cutoff: (1.0 - eps - margin - rows.slack - 1e-6) as f32,
            rows: &rows,
            n,
            blocks: n.div_ceil(TILE),
            pair: PairTest { data, dims, inv_norms, eps, threshold: 1.0 - eps, margin },
            next_block: AtomicUsize::new(0),
            // Every point is its own neighbour.
            entries: AtomicUsize::new(n),
        stop: AtomicBool::new(false),
        },
        plan.threads,
        interrupt,
    )?;
    drop(rows);
    neighbourhoods_from_pairs(n, blocks)
}

/// Runs `search` on `threads` threads, this one among them, and gathers every block's pairs.
fn search_blocks(
    search: BlockSearch,
    threads: usize,
    interrupt: &mut dyn FnMut(),
) -> Result<Vec<BlockPairs>, DbscanError> {
    let helpers = threads.clamp(1, search.blocks.max(1)) - 1;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..helpers)
            .map(|_| {
                scope.spawn(|| {
                    crate::threads::block_signals();
                    search.run(&mut || {})
                })
            })
            .collect();
        // Should `interrupt` raise an error (a panic here), the helpers stop at their next block
        // instead of finishing the search for nobody.
        let _stop_helpers = StopOnDrop(&search.stop);
        let mut blocks = search.run(interrupt);
        for handle in handles {
            let theirs = handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            blocks = blocks.and_then(|mut mine| {
                mine.extend(theirs?);
                Ok(mine)
            });
        }
        blocks
    })
}

/// Each point's neighbourhood from the pairs within eps: the point itself and both ends of its
/// pairs, in ascending order.
fn neighbourhoods_from_pairs(n: usize, blocks: Vec<BlockPairs>) -> Result<Neighbourhoods, DbscanError> {
    let mut offsets = vec![0_usize; n + 1];
    for &(a, b) in blocks.iter().flatten() {
        offsets[a as usize + 1] += 1;
        offsets[b as usize + 1] += 1;
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i] + 1;
    }
    let mut indices = zeroed::<u32>(offsets[n], n)?;
    let mut cursor = offsets[..n].to_vec();
    for (i, at) in cursor.iter_mut().enumerate() {
        indices[*at] = i as u32;
        *at += 1;
    }
    for &(a, b) in blocks.iter().flatten() {
        indices[cursor[a as usize]] = b;
        cursor[a as usize] += 1;
        indices[cursor[b as usize]] = a;
        cursor[b as usize] += 1;
    }
    drop(blocks);
    for i in 0..n {
        indices[offsets[i]..offsets[i + 1]].sort_unstable();
    }
    Ok(Neighbourhoods { offsets, indices })
}

/// The vectors as the kernel reads them, in search order: `vectors` holds the unit vectors (rows
/// of `stride` floats, padded to whole tiles), `coordinates` each one's coordinates in the
/// principal subspace (rows of `width` floats), `tails` a bound on the norm of what the subspace
/// misses of each, and `order` each row's index in the input. Ordered so that vectors whose
/// largest coordinate is the same come together: neighbours then share tiles, and the other
/// tiles are ruled out whole. `slack` bounds the rounding error of a product of coordinates.
struct SearchRows {
    vectors: Vec<f32>,
    stride: usize,
    coordinates: Vec<f32>,
    width: usize,
    tails: Vec<f32>,
    order: Vec<u32>,
    slack: f64,
}

impl SearchRows {
    fn new(data: &[f32], dims: usize, inv_norms: &[f64], eps: f64, project: bool) -> Result<SearchRows, DbscanError> {
        let n = inv_norms.len();
        let stride = dims.next_multiple_of(LANES);
        // Zero rows pad the count to whole tiles so that the kernel never needs an edge case.
        let padded = n.next_multiple_of(TILE);
        let mut vectors = zeroed::<f32>(padded * stride, n)?;
        for ((dst, src), &inv) in vectors.chunks_exact_mut(stride).zip(data.chunks_exact(dims)).zip(inv_norms) {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = (f64::from(s) * inv) as f32;
            }
        }
        let squared_norms: Vec<f64> = vectors.chunks_exact(stride).map(|row| row.iter().map(|&x| f64::from(x).powi(2)).sum()).collect();
        let rounded_up = |norm: f64| (norm * (1.0 + 1e-6)) as f32;
        // A product can stop at the coordinates only if the tails' product leaves room below
        // the threshold: with what the subspace misses of an average vector's squared norm above
        // 80% of the threshold, few would.
        let basis = project
            .then(|| principal_basis(&vectors, n, stride, PRINCIPAL_DIMS))
            .flatten()
            .filter(|basis| 1.0 - basis.captured < 0.8 * (1.0 - eps));
        let Some(basis) = basis else {
            // No coordinates: the tails are the whole norms, and no product stops early.
            return Ok(SearchRows {
                tails: squared_norms.iter().map(|s| rounded_up(s.sqrt())).collect(),
                vectors,
                stride,
                coordinates: Vec::new(),
                width: 0,
                order: (0..n as u32).collect(),
                slack: 0.0,
            });
        };
        let (count, width) = (basis.count, basis.count.next_multiple_of(LANES));
        let mut basis_rows = vec![0.0_f32; TILE * stride];
        for (dst, src) in basis_rows.chunks_exact_mut(stride).zip(basis.rows.chunks_exact(stride)) {
            dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s as f32);
        }
        let all_coordinates = products(&vectors, padded, &basis_rows, TILE, stride);
        // Each computed coordinate is off by at most (dims + 2)·ε (the f32 sum and the f32
        // basis), the coordinates by at most √count times that (`off`), and a product of two
        // coordinate vectors of norm ≤ 1 by at most 2·off + off² plus its own f32 sum.
        let off = (count as f64).sqrt() * (dims + 2) as f64 * f64::from(f32::EPSILON);
        let slack = 2.01 * off + rounding_margin(count);
        let coordinates_of = |i: usize| &all_coordinates[i * TILE..i * TILE + count];
        let group = |i: usize| {
            let (at, value) = coordinates_of(i)
                .iter()
                .enumerate()
                .fold((0, 0.0_f32), |best, (c, &x)| if x.abs() > best.1.abs() { (c, x) } else { best });
            2 * at + usize::from(value > 0.0)
        };
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_by_cached_key(|&i| group(i as usize));

        let mut coordinates = zeroed::<f32>(padded * width, n)?;
        let mut tails = vec![0.0_f32; padded];
        for (r, &i) in order.iter().enumerate() {
            let i = i as usize;
            let mine = coordinates_of(i);
            coordinates[r * width..][..count].copy_from_slice(mine);
            // |x|² = |coordinates|² + |tail|², with the coordinates' norm at least |computed| − off.
            let inside = (mine.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt() - off).max(0.0);
            tails[r] = rounded_up((squared_norms[i] - inside * inside).max(0.0).sqrt());
        }
        permute_rows(&mut vectors, stride, &order);
        Ok(SearchRows { vectors, stride, coordinates, width, tails, order, slack })
    }
}

/// Puts row `order[r]` of `rows` at row r, in place (one row of scratch: the vectors can be a
/// large share of memory).
fn permute_rows(rows: &mut [f32], stride: usize, order: &[u32]) {
    let mut placed = vec![false; order.len()];
    let mut scratch = vec![0.0_f32; stride];
    for start in 0..order.len() {
        if placed[start] {
            continue;
        }
        // Follow the cycle through start: each row takes its source's, the last takes start's.
        scratch.copy_from_slice(&rows[start * stride..][..stride]);
        let mut at = start;
        loop {
            placed[at] = true;
            let source = order[at] as usize;
            if source == start {
                rows[at * stride..][..stride].copy_from_slice(&scratch);
                break;
            }
            rows.copy_within(source * stride..(source + 1) * stride, at * stride);
            at = source;
        }
    }
}

/// Decides whether a pair is within eps from its f32 tile similarity; pairs within the rounding
/// margin of the threshold are decided again in f64 from the original vectors.
struct PairTest<'a> {
    data: &'a [f32],
    dims: usize,
    inv_norms: &'a [f64],
    eps: f64,
    threshold: f64,
    margin: f64,
}

impl PairTest<'_> {
    fn is_neighbour(&self, i: usize, j: usize, similarity: f32) -> bool {
        let similarity = f64::from(similarity);
        if similarity >= self.threshold + self.margin {
            true
        } else if similarity <= self.threshold - self.margin {
            false
        } else {
            let dims = self.dims;
            let (a, b) = (&self.data[i * dims..(i + 1) * dims], &self.data[j * dims..(j + 1) * dims]);
            within_eps(exact_similarity(a, b, self.inv_norms[i], self.inv_norms[j]), self.eps)
        }
    }
}

/// The pairs of one block: (a, b) with a < b, input indices.
type BlockPairs = Vec<(u32, u32)>;

/// The upper-triangle search shared by the threads: each takes the next block of TILE rows and
/// compares it with itself and every later block.
struct BlockSearch<'a> {
    rows: &'a SearchRows,
    cutoff: f32,
    n: usize,
    blocks: usize,
    pair: PairTest<'a>,
    next_block: AtomicUsize,
    /// Neighbour entries found so far (each pair counts twice, mirrored), against the cap.
    entries: AtomicUsize,
    stop: AtomicBool,
}

impl BlockSearch<'_> {
    /// Searches blocks until none is left, calling `interrupt` before each; returns the pairs of
    /// each block searched. The first error stops every thread.
    fn run(&self, interrupt: &mut dyn FnMut()) -> Result<Vec<BlockPairs>, DbscanError> {
        let mut tile = vec![0.0_f32; TILE * TILE];
        let mut searched = Vec::new();
        while !self.stop.load(Ordering::Relaxed) {
            let block = self.next_block.fetch_add(1, Ordering::Relaxed);
            if block >= self.blocks {
                break;
            }
            interrupt();
            match self.search_block(block, &mut tile) {
                Ok(pairs) => searched.push(pairs),
                Err(error) => {
                    self.stop.store(true, Ordering::Relaxed);
                    return Err(error);
                }
            }
        }
        Ok(searched)
    }

    fn search_block(&self, block: usize, tile: &mut [f32]) -> Result<BlockPairs, DbscanError> {
        let SearchRows { vectors, stride, coordinates, width, tails, order, .. } = self.rows;
        let (n, stride, width) = (self.n, *stride, *width);
        let i0 = block * TILE;
        let mut pairs = Vec::new();
        for j0 in (i0..n).step_by(TILE) {
            let pruning = Pruning {
                coordinates_a: coordinates.get(i0 * width..).unwrap_or_default(),
                coordinates_b: coordinates.get(j0 * width..).unwrap_or_default(),
                width,
                tails_a: &tails[i0..],
                tails_b: &tails[j0..],
                cutoff: self.cutoff,
            };
            similarity_tile(&vectors[i0 * stride..], &vectors[j0 * stride..], stride, &pruning, tile);
            for r in 0..TILE.min(n - i0) {
                // On the diagonal tile only the rows after r; elsewhere every row is after it.
                let first = (i0 + r + 1).saturating_sub(j0);
                let similarities = &tile[r * TILE + first..r * TILE + TILE.min(n - j0)];
                // Most rows of a tile have no pair near the threshold: one vectorised maximum
                // rules them out.
                if f64::from(highest(similarities)) <= self.pair.threshold - self.pair.margin {
                    continue;
                }
                let i = order[i0 + r];
                for (c, &similarity) in (first..).zip(similarities) {
                    let j = order[j0 + c];
                    if self.pair.is_neighbour(i as usize, j as usize, similarity) {
                        pairs.push((i.min(j), i.max(j)));
                    }
                }
            }
        }
        let found = 2 * pairs.len();
        if self.entries.fetch_add(found, Ordering::Relaxed) + found > MAX_NEIGHBOUR_ENTRIES {
            return Err(DbscanError::TooManyNeighbours);
        }
        Ok(pairs)
    }
}

/// Sets the flag when dropped, also while unwinding.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `len` zeros, or `OutOfMemory` (for `n` vectors) when the allocation fails.
fn zeroed<T: Clone + Default>(len: usize, n: usize) -> Result<Vec<T>, DbscanError> {
    let mut values = Vec::new();
    values.try_reserve_exact(len).map_err(|_| DbscanError::OutOfMemory(n))?;
    values.resize(len, T::default());
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{clustered, Rng};
    use super::super::{naive_neighbourhoods, validate};
    use super::*;

    /// Every way of searching: one thread or several, with and without the subspace.
    const PLANS: [Plan; 4] = [
        Plan { threads: 1, project: false },
        Plan { threads: 1, project: true },
        Plan { threads: 2, project: true },
        Plan { threads: 3, project: false },
    ];

    fn search(data: &[f32], dims: usize, eps: f64, plan: &Plan) -> Neighbourhoods {
        let inv_norms = validate(data, dims, eps, 1).unwrap();
        neighbourhoods_with(data, dims, &inv_norms, eps, plan, &mut || {}).unwrap()
    }

    #[test]
    fn every_plan_matches_the_naive_search_on_clustered_data() {
        let (n, dims) = (600, 256);
        let data = clustered(0x5eed, n, dims);
        let inv_norms = validate(&data, dims, 0.3, 1).unwrap();
        for eps in [0.2, 0.3, 0.5] {
            let naive = naive_neighbourhoods(&data, dims, &inv_norms, eps);
            assert!(naive.indices.len() > 2 * n, "eps {eps}: some pairs");
            for plan in &PLANS {
                let (threads, project) = (plan.threads, plan.project);
                assert_eq!(search(&data, dims, eps, plan), naive, "eps {eps}, {threads} threads, project {project}");
            }
        }
    }

    #[test]
    fn the_subspace_is_used_where_it_rules_pairs_out() {
        let (n, dims) = (700, 384);
        let data = clustered(0x5eed, n, dims);
        let inv_norms = validate(&data, dims, 0.3, 1).unwrap();
        let rows = SearchRows::new(&data, dims, &inv_norms, 0.3, true).unwrap();
        assert_eq!(rows.width, PRINCIPAL_DIMS);
        let mut order = rows.order.clone();
        order.sort_unstable();
        assert_eq!(order, (0..n as u32).collect::<Vec<_>>(), "a permutation");
        assert_ne!(rows.order, order, "grouped");
        // Each row is its input vector, normalised; the tails are at most the norms.
        for (r, &i) in rows.order.iter().enumerate() {
            let i = i as usize;
            let row = &rows.vectors[r * rows.stride..][..dims];
            let expected = (f64::from(data[i * dims]) * inv_norms[i]) as f32;
            assert_eq!(row[0], expected, "row {r}");
            assert!(rows.tails[r] <= 1.0 + 1e-5);
        }
        // Random directions have no subspace worth it: the search goes without.
        let mut rng = Rng(9);
        let noise: Vec<f32> = (0..n * dims).map(|_| rng.normal() as f32).collect();
        let inv_norms = validate(&noise, dims, 0.3, 1).unwrap();
        assert_eq!(SearchRows::new(&noise, dims, &inv_norms, 0.3, true).unwrap().width, 0);
    }

    #[test]
    fn pairs_at_the_threshold_are_decided_in_f64() {
        // Odd sizes exercise the padding of rows and dimensions.
        let (n, dims) = (70, 37);
        let mut rng = Rng(7);
        let data: Vec<f32> = (0..n * dims).map(|_| rng.normal() as f32).collect();
        let inv_norms = validate(&data, dims, 1.0, 1).unwrap();
        let (a, b) = (&data[..dims], &data[dims..2 * dims]);
        let distance = (1.0 - exact_similarity(a, b, inv_norms[0], inv_norms[1])).clamp(0.0, 2.0);
        for plan in &PLANS {
            let inside = search(&data, dims, distance, plan);
            assert!(inside.of(0).contains(&1) && inside.of(1).contains(&0));
            assert_eq!(inside, naive_neighbourhoods(&data, dims, &inv_norms, distance));
            let outside = search(&data, dims, distance.next_down(), plan);
            assert!(!outside.of(0).contains(&1) && !outside.of(1).contains(&0));
            assert_eq!(outside, naive_neighbourhoods(&data, dims, &inv_norms, distance.next_down()));
        }
    }

    #[test]
    fn the_search_calls_interrupt_between_blocks_of_rows() {
        let data = clustered(0x5eed, 1_000, 8);
        let inv_norms = validate(&data, 8, 0.3, 2).unwrap();
        let mut calls = 0;
        let plan = Plan { threads: 1, project: false };
        neighbourhoods_with(&data, 8, &inv_norms, 0.3, &plan, &mut || calls += 1).unwrap();
        assert_eq!(calls, 1_000_usize.div_ceil(TILE));
    }

    #[test]
    fn an_interrupt_stops_the_helper_threads_and_propagates() {
        let data = clustered(0x5eed, 4_000, 64);
        let inv_norms = validate(&data, 64, 0.3, 2).unwrap();
        let mut calls = 0;
        let plan = Plan { threads: 2, project: false };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            neighbourhoods_with(&data, 64, &inv_norms, 0.3, &plan, &mut || {
                calls += 1;
                if calls == 2 {
                    panic!("canceling statement due to user request");
                }
            })
        }));
        let payload = outcome.expect_err("the interrupt's panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"canceling statement due to user request"));
        assert_eq!(calls, 2);
    }

    #[test]
    fn a_search_takes_the_threads_it_is_allowed_and_the_machine_has() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(Plan::for_machine(5_000, 384, 1).threads, 1);
        assert_eq!(Plan::for_machine(5_000, 384, 0).threads, 1);
        assert_eq!(Plan::for_machine(5_000, 384, 1_000).threads, cores.min(MAX_THREADS));
        assert!(Plan::for_machine(5_000, 384, 2).project && !Plan::for_machine(500, 384, 2).project);
    }

    #[test]
    fn rows_are_permuted_in_place() {
        let mut rows: Vec<f32> = (0..12).map(|x| x as f32).collect();
        // Row r takes row order[r]: a 3-cycle and a fixed point.
        permute_rows(&mut rows, 3, &[2, 0, 1, 3]);
        assert_eq!(rows, [6.0, 7.0, 8.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 9.0, 10.0, 11.0]);
    }
}
