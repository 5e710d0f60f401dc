//! `bench-dbscan`: the keyword-clustering stage's `dbscan_cosine` against scikit-learn's
//! `DBSCAN(eps, min_samples, metric="cosine", algorithm="brute", n_jobs=1)`, the baseline a user
//! would pick, on the same synthetic embeddings of 2,000, 5,000 and 10,000 vectors × 384
//! dimensions, with the stage's eps 0.3 and min_points 2. Both sides are timed the same way: the
//! fastest of up to MAX_RUNS runs, stopping once RUN_BUDGET has passed; scikit-learn on one
//! thread (`n_jobs=1`, BLAS pinned to one), pageperfect on all of the machine's cores.
//!
//! scikit-learn runs in `bench/python/dbscan_sklearn.py`, under the Python of `BENCH_PYTHON` (a
//! virtual environment with `bench/python/requirements.txt`; scripts/bench.sh makes it). The
//! vectors go to it as a float32 `.npy` file, as embeddings come; it answers with JSON: its
//! versions, the dtype it computed the distances in, its fastest fit and its labels. The labels
//! must be identical to ours, or this exits non-zero. OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and
//! MKL_NUM_THREADS are 1 for it, and it checks with threadpoolctl that BLAS runs one thread.
//! Without `BENCH_PYTHON` the baseline is skipped (a table without it, no CSV rows).
//!
//! `dbscan_cosine_naive` (every pair one at a time in f64, ~45 s at n = 10,000) is no timing
//! baseline any more, no user would run it: it stays as the oracle of the labels at n ≤
//! NAIVE_MAX_N, run once, where it costs a second or two.
//!
//! Prints a table and, with `BENCH_CSV` set, appends one row per size to that file (see
//! `pageperfect_it::bench_csv`). Sizes given as arguments (`bench-dbscan 5000`) run instead of
//! the three.
//!
//! Run a release build: `BENCH_PYTHON=$WORK/bench/venv/bin/python cargo run --release -p
//! pageperfect-it --bin bench-dbscan` (well under a minute on 2 cores).
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
use std::path::{Path, PathBuf};
use std::process::Command;
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
/// its runs have taken RUN_BUDGET (dbscan_sklearn.py keeps the same two numbers).
const MAX_RUNS: usize = 5;
const RUN_BUDGET: Duration = Duration::from_secs(3);
/// Largest n whose labels the naive search checks.
const NAIVE_MAX_N: usize = 2_000;
/// The script, relative to the repository (this file is tests/src/bin/bench_dbscan.rs).
const SKLEARN_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/python/dbscan_sklearn.py");

type Dbscan = fn(&[f32], usize, f64, usize) -> Result<Vec<i32>, DbscanError>;

/// What dbscan_sklearn.py answered.
struct Sklearn {
    version: String,
    best_ms: f64,
    labels: Vec<i32>,
}

fn fail(message: String) -> ! {
    eprintln!("{message}");
    std::process::exit(1);
}

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).map(|n| n.parse().expect("sizes are numbers of vectors")).collect();
    let sizes = if sizes.is_empty() { SIZES.to_vec() } else { sizes };
    let csv = std::env::var_os("BENCH_CSV");
    let python = std::env::var_os("BENCH_PYTHON").map(PathBuf::from);
    if python.is_none() {
        eprintln!("BENCH_PYTHON is not set: no scikit-learn baseline (scripts/bench.sh sets it to its virtual environment)");
    }
    println!("DBSCAN over cosine distance, eps {EPS}, min_points {MIN_POINTS}: fastest of up to {MAX_RUNS} runs; scikit-learn on one thread, pageperfect on {} cores", std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!();
    println!("{:>6} | {:>4} | {:>8} | {:>6} | {:>14} | {:>13} | {:>6}", "n", "dims", "clusters", "noise", "pageperfect ms", "sklearn ms", "ratio");
    println!("{}", "-".repeat(77));
    let mut notes = Vec::new();
    for n in sizes {
        let data = synthetic_embeddings(n);
        let (labels, fast) = fastest_run(on_every_core, &data);
        if n <= NAIVE_MAX_N {
            let naive = dbscan_cosine_naive(&data, DIMS, EPS, MIN_POINTS).expect("the synthetic vectors are valid input");
            if let Some(message) = disagreement(&labels, &naive) {
                fail(format!("n = {n}: dbscan_cosine and dbscan_cosine_naive disagree, {message}"));
            }
        }
        let clusters = labels.iter().max().map_or(0, |&last| last + 1);
        let noise = labels.iter().filter(|&&label| label < 0).count();
        let fast_ms = fast.as_secs_f64() * 1e3;
        let Some(python) = &python else {
            println!("{n:>6} | {DIMS:>4} | {clusters:>8} | {noise:>6} | {fast_ms:>14.2} | {:>13} | {:>6}", "-", "-");
            continue;
        };
        let sklearn = run_sklearn(python, &data, n, &mut notes);
        if let Some(message) = disagreement(&labels, &sklearn.labels) {
            fail(format!("n = {n}: dbscan_cosine and scikit-learn {} disagree, {message}", sklearn.version));
        }
        let row = Row::new(
            "dbscan",
            &format!("n={n} x {DIMS}"),
            "ms",
            Better::Lower,
            fast_ms,
            &format!("scikit-learn {} (brute; 1 thread)", sklearn.version),
            sklearn.best_ms,
        );
        println!(
            "{n:>6} | {DIMS:>4} | {clusters:>8} | {noise:>6} | {:>14.2} | {:>13.2} | {:>6.2}",
            row.pageperfect, row.baseline, row.ratio
        );
        if let Some(path) = &csv {
            if let Err(e) = bench_csv::append(path.as_ref(), &[row]) {
                fail(format!("cannot append to {}: {e}", path.to_string_lossy()));
            }
        }
    }
    notes.dedup();
    for note in notes {
        println!("{note}");
    }
}

/// None when the two labellings are identical, else where they first differ.
fn disagreement(ours: &[i32], theirs: &[i32]) -> Option<String> {
    if ours.len() != theirs.len() {
        return Some(format!("{} labels against {}", ours.len(), theirs.len()));
    }
    let i = ours.iter().zip(theirs).position(|(a, b)| a != b)?;
    let differing = ours.iter().zip(theirs).filter(|(a, b)| a != b).count();
    Some(format!("{differing} labels differ, the first at vector {i}: {} vs {}", ours[i], theirs[i]))
}

/// Writes `data` (n × DIMS) to a float32 .npy file, runs dbscan_sklearn.py on it with one BLAS
/// thread and reads its answer; adds a line on what it ran to `notes`.
fn run_sklearn(python: &Path, data: &[f32], n: usize, notes: &mut Vec<String>) -> Sklearn {
    let path = std::env::temp_dir().join(format!("bench-dbscan-{}-{n}.npy", std::process::id()));
    std::fs::write(&path, npy_f32(data, n, DIMS)).unwrap_or_else(|e| fail(format!("{}: {e}", path.display())));
    let output = Command::new(python)
        .arg(SKLEARN_SCRIPT)
        .arg(&path)
        .arg(EPS.to_string())
        .arg(MIN_POINTS.to_string())
        .env("OMP_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .output();
    let _ = std::fs::remove_file(&path);
    let output = output.unwrap_or_else(|e| fail(format!("{}: {e}", python.display())));
    if !output.status.success() {
        fail(format!("{SKLEARN_SCRIPT} failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr)));
    }
    let answer: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| fail(format!("{SKLEARN_SCRIPT} did not answer JSON: {e}")));
    let text = |key: &str| answer[key].as_str().unwrap_or_else(|| fail(format!("{SKLEARN_SCRIPT}: no {key}"))).to_string();
    let pools: Vec<String> = answer["thread_pools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("{} {} x{}", p["api"].as_str().unwrap_or("?"), p["version"].as_str().unwrap_or(""), p["num_threads"]).replace("  ", " "))
        .collect();
    notes.push(format!(
        "scikit-learn {} (numpy {}): {} input, distances in {} ({}); thread pools: {}",
        text("sklearn"),
        text("numpy"),
        text("input_dtype"),
        text("distance_dtype"),
        text("distance_path"),
        pools.join(", ")
    ));
    let labels = answer["labels"]
        .as_array()
        .unwrap_or_else(|| fail(format!("{SKLEARN_SCRIPT}: no labels")))
        .iter()
        .map(|l| l.as_i64().map(|l| l as i32).unwrap_or_else(|| fail(format!("{SKLEARN_SCRIPT}: label {l} is not an integer"))))
        .collect();
    Sklearn {
        version: text("sklearn"),
        best_ms: answer["best_ms"].as_f64().unwrap_or_else(|| fail(format!("{SKLEARN_SCRIPT}: no best_ms"))),
        labels,
    }
}

/// `data` (`n` rows of `dims` f32) as a version 1.0 .npy file: magic, header length, a Python
/// dict literal padded with spaces to a 64-byte boundary, then the little-endian values.
fn npy_f32(data: &[f32], n: usize, dims: usize) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {dims}), }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + 4 * data.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for value in data {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes
}

/// Runs `dbscan` on `data` as often as MAX_RUNS and RUN_BUDGET allow; returns its labels and its
/// fastest time.
/// `dbscan_cosine` on all of the machine's cores, as `pageperfect.dbscan_threads` may allow (its
/// default, 2, is all of this machine's).
fn on_every_core(data: &[f32], dims: usize, eps: f64, min_points: usize) -> Result<Vec<i32>, DbscanError> {
    dbscan_cosine(data, dims, eps, min_points, std::thread::available_parallelism().map_or(1, |n| n.get()))
}

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
