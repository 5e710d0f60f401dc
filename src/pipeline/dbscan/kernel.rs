//! The dot-product kernels of the neighbourhood search: all products of two blocks of TILE rows
//! (a "tile"), an AVX2/FMA one and a portable one, and `products` for whole matrices.

/// Rows per side of a tile: two 64-row blocks of 384-d vectors (2 × 96 KiB) stay in L2.
pub(super) const TILE: usize = 64;
/// f32 lanes per accumulator; rows are zero-padded to a multiple of it.
pub(super) const LANES: usize = 8;

/// What lets a kernel give up on a product early: the two blocks' rows' coordinates in a subspace
/// (`width` floats per row) and the norm of each row's vector outside it (its tail, rounded up).
/// By Cauchy–Schwarz, a·b ≤ (coordinates of a)·(coordinates of b) + |a's tail|·|b's tail|: when
/// that bound is below `cutoff`, the product itself does not matter. Unrelated embeddings are
/// near orthogonal, so most pairs stop after the few coordinates.
pub(super) struct Pruning<'a> {
    pub coordinates_a: &'a [f32],
    pub coordinates_b: &'a [f32],
    pub width: usize,
    pub tails_a: &'a [f32],
    pub tails_b: &'a [f32],
    pub cutoff: f32,
}

impl Pruning<'_> {
    /// Every product in full.
    pub const NONE: Pruning<'static> = Pruning {
        coordinates_a: &[],
        coordinates_b: &[],
        width: 0,
        tails_a: &[0.0; TILE],
        tails_b: &[0.0; TILE],
        cutoff: f32::NEG_INFINITY,
    };
}

/// The product of each row of `block_a` with each row of `block_b` (TILE rows each, `stride`
/// floats per row) into `out[r * TILE + c]`. A product that `pruning` shows to be below its
/// cutoff may be written as −∞ instead.
pub(super) fn similarity_tile(block_a: &[f32], block_b: &[f32], stride: usize, pruning: &Pruning, out: &mut [f32]) {
    assert!(block_a.len() >= TILE * stride && block_b.len() >= TILE * stride && out.len() >= TILE * TILE);
    assert!(stride.is_multiple_of(LANES) && pruning.width.is_multiple_of(LANES));
    let coordinates = TILE * pruning.width;
    assert!(pruning.coordinates_a.len() >= coordinates && pruning.coordinates_b.len() >= coordinates);
    assert!(pruning.tails_a.len() >= TILE && pruning.tails_b.len() >= TILE);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above) and the slices are as long as
        // the kernel reads and writes (asserted above).
        return unsafe { fma::similarity_tile(block_a, block_b, stride, pruning, out) };
    }
    similarity_tile_portable(block_a, block_b, stride, out);
}

/// All products of the `rows_a` rows of `a` with the `rows_b` rows of `b` (`stride` floats each,
/// both counts multiples of TILE), as a `rows_a` × `rows_b` row-major matrix.
pub(super) fn products(a: &[f32], rows_a: usize, b: &[f32], rows_b: usize, stride: usize) -> Vec<f32> {
    assert!(rows_a.is_multiple_of(TILE) && rows_b.is_multiple_of(TILE));
    let mut out = vec![0.0_f32; rows_a * rows_b];
    let mut tile = vec![0.0_f32; TILE * TILE];
    for i0 in (0..rows_a).step_by(TILE) {
        for j0 in (0..rows_b).step_by(TILE) {
            similarity_tile(
                &a[i0 * stride..(i0 + TILE) * stride],
                &b[j0 * stride..(j0 + TILE) * stride],
                stride,
                &Pruning::NONE,
                &mut tile,
            );
            for (r, products) in tile.chunks_exact(TILE).enumerate() {
                out[(i0 + r) * rows_b + j0..][..TILE].copy_from_slice(products);
            }
        }
    }
    out
}

/// The largest value, −∞ for none. Lane by lane, so that it vectorises (a running maximum over
/// floats does not: LLVM may not reorder it, for NaN's sake).
pub(super) fn highest(values: &[f32]) -> f32 {
    let (chunks, rest) = values.as_chunks::<LANES>();
    let mut lanes = [f32::NEG_INFINITY; LANES];
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = if x > *lane { x } else { *lane };
        }
    }
    lanes.iter().chain(rest).fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// The kernel for CPUs without AVX2 and FMA (it does not prune), two rows by two so that each
/// vector load feeds two products. Kept out of line: inlined into its caller, it was vectorised
/// worse and ran 3× slower.
#[inline(never)]
fn similarity_tile_portable(block_a: &[f32], block_b: &[f32], stride: usize, out: &mut [f32]) {
    fn vector(block: &[f32], row: usize, stride: usize) -> &[f32] {
        &block[row * stride..(row + 1) * stride]
    }
    for r in (0..TILE).step_by(2) {
        let (a0, a1) = (vector(block_a, r, stride), vector(block_a, r + 1, stride));
        for c in (0..TILE).step_by(2) {
            let [s00, s01, s10, s11] = dot_2x2(a0, a1, vector(block_b, c, stride), vector(block_b, c + 1, stride));
            out[r * TILE + c] = s00;
            out[r * TILE + c + 1] = s01;
            out[(r + 1) * TILE + c] = s10;
            out[(r + 1) * TILE + c + 1] = s11;
        }
    }
}

/// [a0·b0, a0·b1, a1·b0, a1·b1] with LANES independent accumulators per product. LLVM's
/// vectorisation of this is fragile: this exact shape (fixed-size chunks, one accumulator array
/// per product, a bounds-check-free index loop, sequential lane sums) was the fastest of several
/// measured; plausible rewrites ran 2–4× slower, some vectorising across products instead of lanes.
#[inline(always)]
fn dot_2x2(a0: &[f32], a1: &[f32], b0: &[f32], b1: &[f32]) -> [f32; 4] {
    let (a0, a1) = (a0.as_chunks::<LANES>().0, a1.as_chunks::<LANES>().0);
    let (b0, b1) = (b0.as_chunks::<LANES>().0, b1.as_chunks::<LANES>().0);
    let mut s00 = [0.0_f32; LANES];
    let mut s01 = [0.0_f32; LANES];
    let mut s10 = [0.0_f32; LANES];
    let mut s11 = [0.0_f32; LANES];
    for k in 0..a0.len().min(a1.len()).min(b0.len()).min(b1.len()) {
        let (x0, x1, y0, y1) = (&a0[k], &a1[k], &b0[k], &b1[k]);
        for l in 0..LANES {
            s00[l] += x0[l] * y0[l];
            s01[l] += x0[l] * y1[l];
            s10[l] += x1[l] * y0[l];
            s11[l] += x1[l] * y1[l];
        }
    }
    [s00.iter().sum(), s01.iter().sum(), s10.iter().sum(), s11.iter().sum()]
}

/// The kernel with AVX2 and FMA intrinsics. A fused multiply-add has a latency of 4–5 cycles and
/// two can start per cycle, so the sums need 8–10 independent chains in flight to keep the units
/// busy: ROWS × COLS = 8 products at once, each row and column vector loaded once per step for
/// all of them. (The portable kernel's 4 chains, without FMA, wait on their additions: it ran at
/// two thirds of this one's speed before pruning.) FMA rounds once where mul + add round twice:
/// the error stays inside the search's rounding margin.
#[cfg(target_arch = "x86_64")]
mod fma {
    use super::{Pruning, LANES, TILE};
    use std::arch::x86_64::*;

    const ROWS: usize = 4;
    const COLS: usize = 2;
    const _: () = assert!(TILE.is_multiple_of(ROWS) && TILE.is_multiple_of(COLS) && ROWS * COLS == 8);

    type Sums = [[__m256; COLS]; ROWS];

    /// # Safety
    /// The CPU must have AVX2 and FMA; `block_a` and `block_b` must hold TILE rows of `stride`
    /// floats, the coordinates TILE rows of `pruning.width` (both multiples of LANES), the tails
    /// TILE norms each, and `out` TILE × TILE floats.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn similarity_tile(
        block_a: &[f32],
        block_b: &[f32],
        stride: usize,
        pruning: &Pruning,
        out: &mut [f32],
    ) {
        // The products of rows r.. of a with rows c.. of b, each row `len` floats.
        let sums = |a: *const f32, b: *const f32, len: usize, r: usize, c: usize| -> __m256 {
            let mut sums: Sums = [[_mm256_setzero_ps(); COLS]; ROWS];
            for k in (0..len).step_by(LANES) {
                // SAFETY (all loads): row < TILE and k + LANES <= len, per the contract.
                let columns: [__m256; COLS] =
                    std::array::from_fn(|j| unsafe { _mm256_loadu_ps(b.add((c + j) * len + k)) });
                for (i, row_sums) in sums.iter_mut().enumerate() {
                    let row = unsafe { _mm256_loadu_ps(a.add((r + i) * len + k)) };
                    for (sum, &column) in row_sums.iter_mut().zip(&columns) {
                        *sum = _mm256_fmadd_ps(row, column, *sum);
                    }
                }
            }
            horizontal_sums(&sums)
        };
        for r in (0..TILE).step_by(ROWS) {
            for c in (0..TILE).step_by(COLS) {
                let (width, coordinates_a, coordinates_b) =
                    (pruning.width, pruning.coordinates_a.as_ptr(), pruning.coordinates_b.as_ptr());
                let coordinates = sums(coordinates_a, coordinates_b, width, r, c);
                // cutoff − |a_i tail|·|b_j tail| for each pair, in the order of `horizontal_sums`.
                let bounds: [f32; ROWS * COLS] = std::array::from_fn(|p| {
                    pruning.cutoff - pruning.tails_a[r + p / COLS] * pruning.tails_b[c + p % COLS]
                });
                // SAFETY: `bounds` holds 8 floats.
                let below = _mm256_cmp_ps::<_CMP_LT_OQ>(coordinates, unsafe { _mm256_loadu_ps(bounds.as_ptr()) });
                let products = if _mm256_movemask_ps(below) == 0xff {
                    _mm256_set1_ps(f32::NEG_INFINITY)
                } else {
                    sums(block_a.as_ptr(), block_b.as_ptr(), stride, r, c)
                };
                let mut values = [0.0_f32; ROWS * COLS];
                // SAFETY: `values` holds 8 floats.
                unsafe { _mm256_storeu_ps(values.as_mut_ptr(), products) };
                for (p, &value) in values.iter().enumerate() {
                    out[(r + p / COLS) * TILE + c + p % COLS] = value;
                }
            }
        }
    }

    /// The eight sums' lane totals as one vector, sums[i][j] at lane i·COLS + j.
    #[target_feature(enable = "avx2,fma")]
    fn horizontal_sums(sums: &Sums) -> __m256 {
        let [[v0, v1], [v2, v3], [v4, v5], [v6, v7]] = *sums;
        // Per 128-bit half: [v0, v1, v2, v3] totals of that half's lanes, then of v4..v7.
        let low = _mm256_hadd_ps(_mm256_hadd_ps(v0, v1), _mm256_hadd_ps(v2, v3));
        let high = _mm256_hadd_ps(_mm256_hadd_ps(v4, v5), _mm256_hadd_ps(v6, v7));
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(low, high),
            _mm256_permute2f128_ps::<0x31>(low, high),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::Rng;
    use super::*;

    /// TILE unit rows of `dims` floats around 8 random centres (row r near centre r mod 8).
    fn grouped_rows(rng: &mut Rng, centres: &[Vec<f64>]) -> Vec<f32> {
        let mut rows = Vec::new();
        for r in 0..TILE {
            let v: Vec<f64> = centres[r % 8].iter().map(|c| c + 0.3 * rng.normal()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            rows.extend(v.iter().map(|x| (x / norm) as f32));
        }
        rows
    }

    #[test]
    fn the_kernels_agree_and_skip_only_products_below_the_cutoff() {
        let (width, dims) = (24, 48);
        let mut rng = Rng(11);
        let centres: Vec<Vec<f64>> = (0..8).map(|_| (0..dims).map(|_| rng.normal()).collect()).collect();
        let (a, b) = (grouped_rows(&mut rng, &centres), grouped_rows(&mut rng, &centres));
        // As the subspace, the first 24 dimensions: coordinates are those, tails the norm of the
        // other 24, rounded up.
        let coordinates = |rows: &[f32]| -> Vec<f32> { rows.chunks_exact(dims).flat_map(|row| row[..width].to_vec()).collect() };
        let tails = |rows: &[f32]| -> Vec<f32> {
            rows.chunks_exact(dims).map(|row| row[width..].iter().map(|x| x * x).sum::<f32>().sqrt() * 1.001).collect()
        };
        let (coordinates_a, coordinates_b, tails_a, tails_b) = (coordinates(&a), coordinates(&b), tails(&a), tails(&b));
        let pruning = Pruning {
            coordinates_a: &coordinates_a,
            coordinates_b: &coordinates_b,
            width,
            tails_a: &tails_a,
            tails_b: &tails_b,
            cutoff: 0.7,
        };
        let (mut portable, mut dispatched) = (vec![0.0; TILE * TILE], vec![0.0; TILE * TILE]);
        similarity_tile_portable(&a, &b, dims, &mut portable);
        similarity_tile(&a, &b, dims, &pruning, &mut dispatched);
        let mut skipped = 0;
        for r in 0..TILE {
            for c in 0..TILE {
                let (x, y) = (&a[r * dims..(r + 1) * dims], &b[c * dims..(c + 1) * dims]);
                let exact: f64 = x.iter().zip(y).map(|(&p, &q)| f64::from(p) * f64::from(q)).sum();
                assert!((f64::from(portable[r * TILE + c]) - exact).abs() < 1e-5, "({r}, {c})");
                let got = dispatched[r * TILE + c];
                if got == f32::NEG_INFINITY {
                    assert!(exact < 0.7, "({r}, {c}) skipped at {exact}");
                    skipped += 1;
                } else {
                    assert!((f64::from(got) - exact).abs() < 1e-5, "({r}, {c}): {got} vs {exact}");
                }
            }
        }
        // Same-group pairs (1 in 8) are near 0.9 and must be complete; where the CPU has the FMA
        // kernel, blocks of products with none of them are skipped (about 40% here).
        let complete = TILE * TILE - skipped;
        assert!(complete >= TILE * TILE / 8, "{complete} complete");
        if cfg!(target_arch = "x86_64") && std::arch::is_x86_feature_detected!("fma") {
            assert!(skipped > TILE * TILE / 4, "{skipped} skipped");
        }
    }

    #[test]
    fn products_of_whole_matrices() {
        let stride = 16;
        let mut rng = Rng(3);
        let a: Vec<f32> = (0..2 * TILE * stride).map(|_| rng.normal() as f32).collect();
        let b: Vec<f32> = (0..TILE * stride).map(|_| rng.normal() as f32).collect();
        let out = products(&a, 2 * TILE, &b, TILE, stride);
        for (i, j) in [(0, 0), (5, 63), (64, 0), (127, 31)] {
            let exact: f32 = (0..stride).map(|k| a[i * stride + k] * b[j * stride + k]).sum();
            assert!((out[i * TILE + j] - exact).abs() < 1e-4, "({i}, {j})");
        }
    }

    #[test]
    fn highest_of_any_length() {
        assert_eq!(highest(&[]), f32::NEG_INFINITY);
        let values: Vec<f32> = (0..19).map(|x| (x as f32 * 7.0) % 11.0).collect();
        assert_eq!(highest(&values), 10.0);
        assert_eq!(highest(&values[..3]), 7.0);
    }
}
