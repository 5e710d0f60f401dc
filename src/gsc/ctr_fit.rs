//! Maximum-likelihood fit of the CTR-by-position curve
//! `ctr(p) = 1 / (1 + exp(-(alpha + beta * p)))` to Search Console rows, treating
//! each row's clicks as binomial successes out of its impressions.

use thiserror::Error;

/// Fewest usable rows (rows with impressions) a fit is attempted on.
const MIN_ROWS: usize = 2;
const MAX_ITERATIONS: u32 = 100;
/// Newton stops once both parameters move less than this, relative to their size.
const STEP_TOLERANCE: f64 = 1e-12;
/// ... or once the score is this small relative to the sums it is made of; below
/// that, floating-point noise in the sums decides the direction, not the data.
const SCORE_TOLERANCE: f64 = 1e-12;
/// Step halvings tried along one Newton direction before giving up.
const MAX_HALVINGS: u32 = 60;

/// A fitted curve plus what it was fitted on.
#[derive(Debug, Clone, PartialEq)]
pub struct CtrFit {
    pub alpha: f64,
    pub beta: f64,
    pub rows_used: usize,
    pub impressions: f64,
    pub clicks: f64,
    /// Newton steps taken.
    pub iterations: u32,
    /// Binomial log-likelihood at the fit, without the constant `ln C(n, k)` terms.
    pub log_likelihood: f64,
}

#[derive(Debug, Clone, Error, PartialEq)]
pub enum CtrFitError {
    #[error("row {row} is invalid: {reason}")]
    InvalidRow { row: usize, reason: String },
    #[error("too little data: {usable} row(s) with impressions, at least {MIN_ROWS} needed")]
    TooFewRows { usable: usize },
    #[error("too little data: every row with impressions is at position {position}")]
    SinglePosition { position: f64 },
    #[error("no row has clicks, so the maximum-likelihood CTR curve does not exist")]
    NoClicks,
    #[error("every impression was clicked, so the maximum-likelihood CTR curve does not exist")]
    AllImpressionsClicked,
    #[error(
        "clicks and unclicked impressions do not overlap in position, so the \
         maximum-likelihood CTR curve does not exist (it would be a vertical step)"
    )]
    Separated,
    #[error("the CTR curve fit did not converge after {iterations} iterations")]
    NoConvergence { iterations: u32 },
}

#[cfg(test)]
pub fn fit_ctr_curve(
    rows: impl IntoIterator<Item = (f64, f64, f64)>,
) -> Result<CtrFit, CtrFitError> {
    fit_ctr_curve_interruptible(rows, &mut || {})
}

/// Fits the CTR curve to `(clicks, impressions, position)` rows; rows with zero impressions
/// carry no evidence and are skipped. `check_interrupts` is called before each Newton
/// iteration (a pass over every row), so that a cancel stops a fit over many rows.
pub fn fit_ctr_curve_interruptible(
    rows: impl IntoIterator<Item = (f64, f64, f64)>,
    check_interrupts: &mut dyn FnMut(),
) -> Result<CtrFit, CtrFitError> {
    let mut observations = usable_observations(rows)?;
    let summary = Summary::of(&observations);
    summary.check_estimate_exists(observations.len())?;

    // Centring positions keeps the 2x2 information matrix well conditioned; the
    // intercept is shifted back at the end.
    for observation in &mut observations {
        observation.position -= summary.mean_position;
    }
    let (low, high) = summary.positions.unwrap_or_default();
    let scale = [summary.impressions, summary.impressions * (high - low)];

    let mut params = [logit(summary.clicks / summary.impressions), 0.0];
    let mut current = evaluate(&observations, params);
    let mut iterations = 0;
    loop {
        check_interrupts();
        if (0..2).all(|i| current.score[i].abs() <= SCORE_TOLERANCE * scale[i]) {
            break;
        }
        let no_convergence = CtrFitError::NoConvergence { iterations };
        let step = current.newton_step().ok_or(no_convergence.clone())?;
        if (0..2).all(|i| step[i].abs() <= STEP_TOLERANCE * (1.0 + params[i].abs())) {
            break;
        }
        if iterations == MAX_ITERATIONS {
            return Err(no_convergence);
        }
        (params, current) =
            line_search(&observations, params, step, &current).ok_or(no_convergence)?;
        iterations += 1;
    }

    Ok(CtrFit {
        alpha: params[0] - params[1] * summary.mean_position,
        beta: params[1],
        rows_used: observations.len(),
        impressions: summary.impressions,
        clicks: summary.clicks,
        iterations,
        log_likelihood: current.log_likelihood,
    })
}

struct Observation {
    clicks: f64,
    impressions: f64,
    position: f64,
}

fn usable_observations(
    rows: impl IntoIterator<Item = (f64, f64, f64)>,
) -> Result<Vec<Observation>, CtrFitError> {
    let mut usable = Vec::new();
    for (index, (clicks, impressions, position)) in rows.into_iter().enumerate() {
        let problem = if !(clicks.is_finite() && impressions.is_finite()) {
            "clicks and impressions must be finite"
        } else if clicks < 0.0 || impressions < 0.0 {
            "clicks and impressions must not be negative"
        } else if clicks > impressions {
            "clicks exceed impressions"
        } else if impressions == 0.0 {
            // No impressions means no evidence and no meaningful position (Search
            // Console may report 0), so the row is skipped before position is judged.
            continue;
        } else if !(position.is_finite() && position >= 1.0) {
            "position must be at least 1"
        } else {
            usable.push(Observation {
                clicks,
                impressions,
                position,
            });
            continue;
        };
        return Err(CtrFitError::InvalidRow {
            row: index + 1,
            reason: format!(
                "{problem} (clicks {clicks}, impressions {impressions}, position {position})"
            ),
        });
    }
    Ok(usable)
}

/// Totals, and the position span of all rows, of rows with clicks and of rows
/// with unclicked impressions.
struct Summary {
    clicks: f64,
    impressions: f64,
    mean_position: f64,
    positions: Option<(f64, f64)>,
    clicked: Option<(f64, f64)>,
    unclicked: Option<(f64, f64)>,
}

impl Summary {
    fn of(observations: &[Observation]) -> Summary {
        let span = |keep: fn(&Observation) -> bool| {
            let positions = observations.iter().filter(|o| keep(o)).map(|o| o.position);
            positions.fold(None, |span, p| match span {
                None => Some((p, p)),
                Some((low, high)) => Some((p.min(low), p.max(high))),
            })
        };
        let impressions: f64 = observations.iter().map(|o| o.impressions).sum();
        let weighted_positions: f64 = observations
            .iter()
            .map(|o| o.impressions * o.position)
            .sum();
        Summary {
            clicks: observations.iter().map(|o| o.clicks).sum(),
            impressions,
            mean_position: weighted_positions / impressions,
            positions: span(|_| true),
            clicked: span(|o| o.clicks > 0.0),
            unclicked: span(|o| o.impressions > o.clicks),
        }
    }

    /// The MLE is finite exactly when clicks and non-clicks overlap in position;
    /// otherwise the likelihood keeps rising as the curve steepens without bound.
    fn check_estimate_exists(&self, usable: usize) -> Result<(), CtrFitError> {
        if usable < MIN_ROWS {
            return Err(CtrFitError::TooFewRows { usable });
        }
        let (low, high) = self.positions.unwrap_or_default();
        if low == high {
            return Err(CtrFitError::SinglePosition { position: low });
        }
        let (clicked_low, clicked_high) = self.clicked.ok_or(CtrFitError::NoClicks)?;
        let (unclicked_low, unclicked_high) =
            self.unclicked.ok_or(CtrFitError::AllImpressionsClicked)?;
        if clicked_low >= unclicked_high || clicked_high <= unclicked_low {
            return Err(CtrFitError::Separated);
        }
        Ok(())
    }
}

/// Log-likelihood, score (gradient) and Fisher information at one parameter point.
struct Evaluation {
    log_likelihood: f64,
    score: [f64; 2],
    /// Symmetric information matrix as `[i_aa, i_ab, i_bb]`.
    information: [f64; 3],
}

impl Evaluation {
    /// Solves `information * step = score` directly; `None` if it is singular.
    fn newton_step(&self) -> Option<[f64; 2]> {
        let [a, b, d] = self.information;
        let det = a * d - b * b;
        if !(det.is_finite() && det > 0.0) {
            return None;
        }
        let [g0, g1] = self.score;
        Some([(d * g0 - b * g1) / det, (a * g1 - b * g0) / det])
    }
}

fn evaluate(observations: &[Observation], [intercept, slope]: [f64; 2]) -> Evaluation {
    let mut e = Evaluation {
        log_likelihood: 0.0,
        score: [0.0; 2],
        information: [0.0; 3],
    };
    for o in observations {
        let z = intercept + slope * o.position;
        let (p, q) = (sigmoid(z), sigmoid(-z));
        // ln σ(z) = -softplus(-z) and ln(1 - σ(z)) = -softplus(z), both stable.
        e.log_likelihood -= o.clicks * softplus(-z) + (o.impressions - o.clicks) * softplus(z);
        let residual = o.clicks - o.impressions * p;
        e.score[0] += residual;
        e.score[1] += residual * o.position;
        let weight = o.impressions * p * q;
        e.information[0] += weight;
        e.information[1] += weight * o.position;
        e.information[2] += weight * o.position * o.position;
    }
    e
}

/// Halves the Newton step until the log-likelihood has not decreased.
fn line_search(
    observations: &[Observation],
    params: [f64; 2],
    step: [f64; 2],
    current: &Evaluation,
) -> Option<([f64; 2], Evaluation)> {
    let mut fraction = 1.0;
    for _ in 0..=MAX_HALVINGS {
        let trial_params = [
            params[0] + fraction * step[0],
            params[1] + fraction * step[1],
        ];
        let trial = evaluate(observations, trial_params);
        // The log-likelihood is concave, so if it is still rising along the step at
        // the trial point it rose all the way there. Near the optimum this test beats
        // comparing log-likelihoods, whose rounding noise swamps the real gain.
        let still_rising = trial.score[0] * step[0] + trial.score[1] * step[1] >= 0.0;
        if trial.log_likelihood >= current.log_likelihood || still_rising {
            return Some((trial_params, trial));
        }
        fraction *= 0.5;
    }
    None
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `ln(1 + e^x)` without overflow for large `x`.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    type Row = (f64, f64, f64);

    /// SplitMix64: tiny, seedable, good enough to simulate clicks.
    struct Rng(u64);
    impl Rng {
        fn next_f64(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }
        fn binomial(&mut self, trials: u32, p: f64) -> f64 {
            (0..trials).filter(|_| self.next_f64() < p).count() as f64
        }
    }

    fn ctr(alpha: f64, beta: f64, position: f64) -> f64 {
        1.0 / (1.0 + (-(alpha + beta * position)).exp())
    }

    fn simulated_rows(alpha: f64, beta: f64, impressions: u32, seed: u64) -> Vec<Row> {
        let mut rng = Rng(seed);
        (1..=30)
            .map(|p| {
                let (p, n) = (f64::from(p), f64::from(impressions));
                (rng.binomial(impressions, ctr(alpha, beta, p)), n, p)
            })
            .collect()
    }

    /// Score at (alpha, beta) on the original positions, computed independently.
    fn score(rows: &[Row], alpha: f64, beta: f64) -> (f64, f64) {
        rows.iter().fold((0.0, 0.0), |(s0, s1), &(c, n, p)| {
            let r = c - n * ctr(alpha, beta, p);
            (s0 + r, s1 + r * p)
        })
    }

    /// The MLE by nested bisection: for each slope the intercept's score is
    /// monotone, and the profiled slope score is monotone too (concavity).
    fn mle_by_bisection(rows: &[Row]) -> (f64, f64) {
        let bisect = |mut low: f64, mut high: f64, f: &dyn Fn(f64) -> f64| {
            for _ in 0..200 {
                let mid = 0.5 * (low + high);
                if f(mid) > 0.0 {
                    low = mid
                } else {
                    high = mid
                }
            }
            0.5 * (low + high)
        };
        let alpha_for = |beta: f64| bisect(-60.0, 60.0, &|a| score(rows, a, beta).0);
        let beta = bisect(-5.0, 5.0, &|b| score(rows, alpha_for(b), b).1);
        (alpha_for(beta), beta)
    }

    #[test]
    fn recovers_known_curve() {
        let rows = simulated_rows(-0.5, -0.3, 200_000, 7);
        let fit = fit_ctr_curve(rows.iter().copied()).unwrap();
        assert!((fit.alpha + 0.5).abs() < 0.02, "alpha {}", fit.alpha);
        assert!((fit.beta + 0.3).abs() < 0.005, "beta {}", fit.beta);
        assert_eq!((fit.rows_used, fit.impressions), (30, 30.0 * 200_000.0));
        assert_eq!(fit.clicks, rows.iter().map(|r| r.0).sum::<f64>());
        assert!((2..30).contains(&fit.iterations), "{}", fit.iterations);
    }

    #[test]
    fn agrees_with_independent_solution() {
        // The second data set makes a full Newton step from the start overshoot, so
        // it only converges with step halving.
        let awkward = vec![
            (1.0, 1000.0, 1.0),
            (0.0, 1.0, 2.0),
            (0.0, 1.0, 3.0),
            (1.0, 1.0, 30.0),
        ];
        for rows in [simulated_rows(-0.5, -0.3, 5_000, 11), awkward] {
            let fit = fit_ctr_curve(rows.iter().copied()).unwrap();
            let (s0, s1) = score(&rows, fit.alpha, fit.beta);
            assert!(s0.abs() < 1e-9 * fit.impressions, "score alpha {s0}");
            assert!(s1.abs() < 1e-9 * fit.impressions * 30.0, "score beta {s1}");
            let (alpha, beta) = mle_by_bisection(&rows);
            assert!((fit.alpha - alpha).abs() < 1e-6, "{} vs {alpha}", fit.alpha);
            assert!((fit.beta - beta).abs() < 1e-6, "{} vs {beta}", fit.beta);
            let log_likelihood: f64 = rows
                .iter()
                .map(|&(c, n, p)| {
                    let ctr = ctr(alpha, beta, p);
                    c * ctr.ln() + (n - c) * (1.0 - ctr).ln()
                })
                .sum();
            assert!((fit.log_likelihood - log_likelihood).abs() < 1e-9 * log_likelihood.abs());
        }
    }

    #[test]
    fn zero_impression_rows_are_ignored() {
        let rows = simulated_rows(-0.5, -0.3, 1_000, 5);
        let mut padded = vec![(0.0, 0.0, 0.0), (0.0, 0.0, 999.0)];
        padded.extend(rows.iter().copied());
        padded.push((0.0, 0.0, f64::NAN));
        let plain = fit_ctr_curve(rows).unwrap();
        assert_eq!(fit_ctr_curve(padded).unwrap(), plain);
    }

    #[test]
    fn refuses_data_without_a_finite_estimate() {
        use CtrFitError::*;
        let cases: [(&[Row], CtrFitError); 8] = [
            (&[], TooFewRows { usable: 0 }),
            (
                &[(5.0, 100.0, 2.0), (0.0, 0.0, 3.0)],
                TooFewRows { usable: 1 },
            ),
            (
                &[(5.0, 100.0, 2.0), (7.0, 50.0, 2.0)],
                SinglePosition { position: 2.0 },
            ),
            (&[(0.0, 100.0, 1.0), (0.0, 50.0, 4.0)], NoClicks),
            (
                &[(100.0, 100.0, 1.0), (50.0, 50.0, 4.0)],
                AllImpressionsClicked,
            ),
            // All clicks at position 1, all misses at 2: separated.
            (&[(10.0, 10.0, 1.0), (0.0, 10.0, 2.0)], Separated),
            // Misses at 1 and 2 but clicks only at 1, or the mirror image: quasi-separated.
            (&[(5.0, 10.0, 1.0), (0.0, 10.0, 2.0)], Separated),
            (&[(0.0, 10.0, 1.0), (5.0, 10.0, 2.0)], Separated),
        ];
        for (rows, expected) in cases {
            let message = expected.to_string();
            let explained =
                message.contains("too little data") || message.contains("does not exist");
            assert!(explained, "{message}");
            assert_eq!(fit_ctr_curve(rows.iter().copied()), Err(expected));
        }
        // Clicks and misses at both positions overlap, so this one fits.
        assert!(fit_ctr_curve([(5.0, 10.0, 1.0), (1.0, 10.0, 2.0)]).is_ok());
    }

    #[test]
    fn invalid_rows_name_the_row() {
        let cases = [
            ((-1.0, 10.0, 1.0), "must not be negative"),
            ((1.0, -10.0, 1.0), "must not be negative"),
            (
                (11.0, 10.0, 1.0),
                "clicks exceed impressions (clicks 11, impressions 10",
            ),
            ((f64::NAN, 10.0, 1.0), "finite"),
            ((1.0, f64::INFINITY, 1.0), "finite"),
            ((1.0, 10.0, 0.5), "at least 1"),
            ((1.0, 10.0, f64::NAN), "at least 1"),
        ];
        for (bad, expected) in cases {
            let err = fit_ctr_curve([(1.0, 10.0, 1.0), bad]).unwrap_err();
            let message = err.to_string();
            assert!(message.starts_with("row 2 is invalid: "), "{message}");
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn fits_a_million_rows() {
        let mut rng = Rng(42);
        let rows: Vec<_> = (0..1_000_000)
            .map(|_| {
                let position = 1.0 + 59.0 * rng.next_f64();
                let impressions = 1 + (rng.next_f64() * 8.0) as u32;
                let clicks = rng.binomial(impressions, ctr(-0.5, -0.1, position));
                (clicks, f64::from(impressions), position)
            })
            .collect();
        let fit = fit_ctr_curve(rows).unwrap();
        assert_eq!(fit.rows_used, 1_000_000);
        assert!((fit.alpha + 0.5).abs() < 0.02, "alpha {}", fit.alpha);
        assert!((fit.beta + 0.1).abs() < 0.002, "beta {}", fit.beta);
    }
}
