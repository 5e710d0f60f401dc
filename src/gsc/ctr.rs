//! The CTR curve: the click-through rate expected at a search position,
//! `ctr(p) = 1 / (1 + exp(-(alpha + beta · p)))`, with alpha and beta from `parameters`
//! (built-in defaults until `recalibrate_ctr()` fits them to the site's own data).

/// The curve's parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CtrCurve {
    pub alpha: f64,
    pub beta: f64,
}

impl CtrCurve {
    /// The built-in curve, until `recalibrate_ctr()` fits one to the site's data.
    pub const DEFAULT: CtrCurve = CtrCurve { alpha: -0.51, beta: -0.34 };

    /// The curve in `parameters` (SPI).
    pub fn from_parameters() -> Result<CtrCurve, pgrx::spi::Error> {
        Ok(CtrCurve {
            alpha: crate::config::parameter("ctr_alpha", CtrCurve::DEFAULT.alpha)?,
            beta: crate::config::parameter("ctr_beta", CtrCurve::DEFAULT.beta)?,
        })
    }

    /// The click-through rate expected at `position` (1 = the top result).
    pub fn expected_ctr(&self, position: f64) -> f64 {
        1.0 / (1.0 + (-(self.alpha + self.beta * position)).exp())
    }
}

#[cfg(test)]
mod tests {
    use super::CtrCurve;

    #[test]
    fn the_defaults_fall_with_position_and_stay_a_probability() {
        let curve = CtrCurve::DEFAULT;
        let top = curve.expected_ctr(1.0);
        assert!((top - 0.2994).abs() < 1e-3, "{top}");
        assert!(curve.expected_ctr(3.0) < top && curve.expected_ctr(10.0) < curve.expected_ctr(3.0));
        assert!((0.0..1.0).contains(&curve.expected_ctr(100.0)));
        assert_eq!(CtrCurve { alpha: 0.0, beta: 0.0 }.expected_ctr(7.0), 0.5);
    }
}
