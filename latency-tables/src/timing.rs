//! One measurement's timed samples, as the agent takes them and every layer passes them on
//! (the wire's `Measured`, the driver's outcome, the journal's pass record).

use serde::{Deserialize, Serialize};

use crate::stats::quantile;

/// Timed samples of one subject (one pass of a key, or all passes of a network).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// µs per run, one value per sample (each the mean of `batch` back-to-back runs).
    pub samples_us: Vec<f64>,
    /// Runs averaged into each sample.
    pub batch: u32,
    /// Whether a CPU frequency drop or thermal limit was seen around it, or the canary had not
    /// come back after the most re-measurements allowed.
    pub throttled: bool,
    /// Times it was measured again because the canary drifted (the earlier timings dropped).
    #[serde(default, skip_serializing_if = "crate::is_zero")]
    pub redos: u32,
    /// The canary's relative drift from its baseline, `median / baseline − 1`, at the check
    /// that released this measurement (`None` without a canary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_drift: Option<f64>,
}

impl Timing {
    /// Median of the samples (NaN when there are none).
    pub fn median(&self) -> f64 {
        let mut v = self.samples_us.clone();
        v.sort_by(f64::total_cmp);
        quantile(&v, 0.5)
    }
}
