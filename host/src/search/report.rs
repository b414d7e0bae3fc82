//! `final.json`: what a finished search found, as one typed record that the search writes and
//! every reader (`tunas search`, `verify`, `report`, `rank-check`, `compare`) reads back.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One layer of the found architecture at deployment resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerKey {
    /// The layer's name (`block2/layer0`).
    pub name: String,
    /// Its op key, `None` when the layer is skipped.
    pub key: Option<String>,
}

/// How decided the final policy is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicySummary {
    /// E\[T\] over 1,000 samples of the final policy (ms).
    pub expected_latency_ms: f64,
    /// Their standard deviation (ms).
    pub expected_latency_sd_ms: f64,
    /// T of the argmax architecture (ms).
    pub argmax_latency_ms: f64,
    /// The policy's entropy (nats, every decision).
    pub entropy: f64,
    /// Mean over decisions of the top probability.
    pub mean_top_probability: f64,
    /// The least decided decision's top probability.
    pub min_top_probability: f64,
    /// Decisions whose top probability is below 0.9.
    pub decisions_below_0_9: usize,
    /// Every decision's top probability.
    pub top_probabilities: Vec<f64>,
}

/// A finished search's result (`final.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalReport {
    /// The search space.
    pub space: String,
    /// The architecture's index string.
    pub indices: String,
    /// Every decision with its choice (the space's JSON form of the architecture).
    pub architecture: serde_json::Value,
    /// The layers with their op keys at 224×224.
    pub layers: Vec<LayerKey>,
    /// The latency model, described.
    pub latency_model: String,
    /// T(α) (ms).
    pub latency_ms: f64,
    /// The target T0 (ms).
    pub target_ms: f64,
    /// `T(α)/T0 − 1`.
    pub latency_error: f64,
    /// Top-1 accuracy of the architecture's path of the supernet on the held-out images.
    pub one_shot_validation_accuracy: f64,
    /// Held-out images it was measured on.
    pub validation_images: usize,
    /// Steps run.
    pub steps: usize,
    /// Architectures per RL step (K); runs from before K existed had one.
    #[serde(default = "one")]
    pub rl_archs: usize,
    /// The final policy (absent in runs from before it was reported).
    #[serde(default)]
    pub policy: Option<PolicySummary>,
    /// Q's slope in ln T(α) at the end, when it was estimated.
    #[serde(default)]
    pub q_slope_ln_t: Option<f64>,
    /// The controller's final logits.
    pub logits: Vec<Vec<f64>>,
}

fn one() -> usize {
    1
}

impl FinalReport {
    /// Reads `RUN/final.json`; an unfinished search, and a file with a missing or malformed
    /// field, are errors naming the file (and the field).
    pub fn load(run: &Path) -> Result<FinalReport> {
        let path = run.join("final.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (is the search finished? `tunas search --resume {}` finishes it)",
                path.display(),
                run.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Writes `RUN/final.json` atomically.
    pub fn save(&self, run: &Path) -> Result<()> {
        crate::runs::write_atomic(&run.join("final.json"), &serde_json::to_string_pretty(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_field_is_named_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = FinalReport::load(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("is the search finished?"), "{err:#}");
        std::fs::write(dir.path().join("final.json"), r#"{"space": "proxylessnas"}"#).unwrap();
        let err = format!("{:#}", FinalReport::load(dir.path()).unwrap_err());
        assert!(err.contains("final.json") && err.contains("missing field `indices`"), "{err}");
    }
}
