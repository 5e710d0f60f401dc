//! `bench-dbscan`: the keyword-clustering stage's tiled, vectorised `dbscan_cosine` against
//! `dbscan_cosine_naive` (every pair one at a time in f64), on the same synthetic embeddings of
//! 2,000, 5,000 and 10,000 vectors × 384 dimensions, with the stage's eps 0.3 and min_points 2.
//! Exits non-zero if the two label any vector differently. Prints a table and, with `BENCH_CSV`
//! set, appends one row per size to that file (see `pageperfect_it::bench_csv`). Sizes given as
//! arguments (`bench-dbscan 5000`) run instead of the three.
//!
//! Run a release build: `cargo run --release -p pageperfect-it --bin bench-dbscan` (about a
//! minute on 2 cores, most of it the naive search at n = 10,000).
//!
//! The modules are compiled in from the extension's source: linking the pageperfect crate itself
//! would mean a second release build of it and of pgrx, with other flags than `cargo pgrx install`.

#[path = "../../../src/pipeline/dbscan/mod.rs"]
mod dbscan;
/// What dbscan's helper threads call first.
#[path = "../../../src/threads.rs"]
mod threads;

use dbscan::{dbscan_cosine, dbscan_cosine_naive, DbscanError};
use pageperfect_it::bench_csv::{self, Better, Row};
use std::time::{Duration, Instant};

const SIZES: [usize; 3] = [2_000, 5_000, 10_000];
const DIMS: usize = 384;
/// The keyword-clustering stage's parameters.
const EPS: f64 = 0.3;
const MIN_POINTS: usize = 2;
/// Topics the synthetic vectors gather around, and the share of vectors that belong to none.
const TOPICS: usize = 40;
const NOISE_SHARE: f64 = 0.1;
const SEED: u64 = 0xdb5c_a000;
/// Each implementation runs up to MAX_RUNS times and its fastest run counts; it stops early once
/// its runs have taken RUN_BUDGET, so the naive search runs once or twice at n ≥ 2,000.
const MAX_RUNS: usize = 5;
const RUN_BUDGET: Duration = Duration::from_secs(3);
const BASELINE_NAME: &str = "naive O(n^2)";

type Dbscan = fn(&[f32], usize, f64, usize) -> Result<Vec<i32>, DbscanError>;

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).map(|n| n.parse().expect("sizes are numbers of vectors")).collect();
    let sizes = if sizes.is_empty() { SIZES.to_vec() } else { sizes };
    let csv = std::env::var_os("BENCH_CSV");
    println!("DBSCAN over cosine distance, eps {EPS}, min_points {MIN_POINTS}: fastest of up to {MAX_RUNS} runs");
    println!();
    println!(
        "{:>6} | {:>4} | {:>8} | {:>6} | {:>14} | {:>15} | {:>6}",
        "n", "dims", "clusters", "noise", "pageperfect ms", "naive O(n^2) ms", "ratio"
    );
    println!("{}", "-".repeat(79));
    for n in sizes {
        let data = synthetic_embeddings(n);
        let (labels, fast) = fastest_run(dbscan_cosine, &data);
        let (naive_labels, naive) = fastest_run(dbscan_cosine_naive, &data);
        if let Some(i) = labels.iter().zip(&naive_labels).position(|(a, b)| a != b) {
            eprintln!(
                "n = {n}: dbscan_cosine and dbscan_cosine_naive disagree, first at vector {i}: label {} vs {}",
                labels[i], naive_labels[i]
            );
            std::process::exit(1);
        }
        let clusters = labels.iter().max().map_or(0, |&last| last + 1);
        let noise = labels.iter().filter(|&&label| label < 0).count();
        let row = Row::new(
            "dbscan",
            &format!("n={n} x {DIMS}"),
            "ms",
            Better::Lower,
            fast.as_secs_f64() * 1e3,
            BASELINE_NAME,
            naive.as_secs_f64() * 1e3,
        );
        println!(
            "{n:>6} | {DIMS:>4} | {clusters:>8} | {noise:>6} | {:>14.2} | {:>15.2} | {:>6.2}",
            row.pageperfect, row.baseline, row.ratio
        );
        if let Some(path) = &csv {
            if let Err(e) = bench_csv::append(path.as_ref(), &[row]) {
                eprintln!("cannot append to {}: {e}", path.to_string_lossy());
                std::process::exit(1);
            }
        }
    }
}

/// Runs `dbscan` on `data` as often as MAX_RUNS and RUN_BUDGET allow; returns its labels and its
/// fastest time.
fn fastest_run(dbscan: Dbscan, data: &[f32]) -> (Vec<i32>, Duration) {
    let started = Instant::now();
    let mut fastest = Duration::MAX;
    let mut labels = Vec::new();
    for _ in 0..MAX_RUNS {
        let run = Instant::now();
        labels = dbscan(data, DIMS, EPS, MIN_POINTS).expect("the synthetic vectors are valid input");
        fastest = fastest.min(run.elapsed());
        if started.elapsed() >= RUN_BUDGET {
            break;
        }
    }
    (labels, fastest)
}

/// fastrand's generator plus the Gaussian draws the synthetic embeddings need.
struct Rng(fastrand::Rng);

impl Rng {
    /// Standard normal (Box–Muller; 1 − u keeps the logarithm's argument in (0, 1]).
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.0.f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.0.f64()).cos()
    }

    /// A uniformly random unit vector.
    fn direction(&mut self) -> Vec<f64> {
        let v: Vec<f64> = (0..DIMS).map(|_| self.normal()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }
}

/// `n` vectors: with probability NOISE_SHARE a random direction (random directions in 384
/// dimensions are nearly orthogonal: noise), otherwise a random topic's unit centre plus Gaussian
/// noise. Two members c + σg and c + σh of a topic have a cosine similarity near 1 / (1 + dims·σ²);
/// σ is set per topic so that this typical distance runs from 0.10 to 0.35 across the topics:
/// tight topics become whole clusters, those near eps lose some members to noise. Deterministic,
/// with the same topics for every n.
fn synthetic_embeddings(n: usize) -> Vec<f32> {
    let mut rng = Rng(fastrand::Rng::with_seed(SEED));
    let topics: Vec<(Vec<f64>, f64)> = (0..TOPICS)
        .map(|k| {
            let distance = 0.10 + 0.25 * k as f64 / (TOPICS - 1) as f64;
            let sigma = (distance / (1.0 - distance) / DIMS as f64).sqrt();
            (rng.direction(), sigma)
        })
        .collect();
    let mut data = Vec::with_capacity(n * DIMS);
    for _ in 0..n {
        if rng.0.f64() < NOISE_SHARE {
            data.extend(rng.direction().into_iter().map(|x| x as f32));
        } else {
            let (centre, sigma) = &topics[rng.0.usize(..TOPICS)];
            data.extend(centre.iter().map(|c| (c + sigma * rng.normal()) as f32));
        }
    }
    data
}
