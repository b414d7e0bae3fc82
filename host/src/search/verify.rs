//! The closed loop of a search (issue 14): build the architecture a finished search found at
//! deployment resolution, measure it whole on a device, and compare with the latency model
//! the search priced it with. The result is written into the run directory (`verify.json`);
//! the measurement is journaled (`verify.journal`), so an interrupted check resumes.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use latency_tables::{Fingerprint, Method};
use serde::{Deserialize, Serialize};

use super::run::{SearchConfig, DEPLOYMENT_RESOLUTION};
use crate::device::networks::measure_architectures;
use crate::device::Link;
use crate::runs::{load_latency, write_atomic};
use crate::space::SearchSpace;

/// What `tunas verify` found; `verify.json` in the run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// The search space.
    pub space: String,
    /// The architecture's index string.
    pub arch: String,
    /// Deployment resolution it was built at.
    pub resolution: u32,
    /// The latency model the search used.
    pub latency_model: String,
    /// T(α) as the model predicts it (ms).
    pub predicted_ms: f64,
    /// The model's own typical relative error (held-out RMSPE), when it knows one.
    pub model_error: Option<f64>,
    /// The whole network's measured median (ms).
    pub measured_ms: f64,
    /// `predicted / measured − 1`.
    pub error: f64,
    /// The search's target T0 (ms).
    pub target_ms: f64,
    /// `measured / T0 − 1`: where the found network really lands against the target.
    pub measured_vs_target: f64,
    /// The device, when it was connected by this run (not when the journal held the result).
    pub fingerprint: Option<Fingerprint>,
    /// How it was measured.
    pub method: Method,
}

/// Measures the architecture of the finished search in `run` on the agent behind `link`.
pub fn verify(
    run: &Path,
    link: &dyn Link,
    method: &Method,
    timeout: Duration,
) -> Result<Verification> {
    let cfg_path = run.join("config.json");
    let cfg: SearchConfig = serde_json::from_str(
        &std::fs::read_to_string(&cfg_path)
            .with_context(|| format!("reading {}", cfg_path.display()))?,
    )
    .with_context(|| format!("parsing {}", cfg_path.display()))?;
    let report = super::FinalReport::load(run)?;
    let space = SearchSpace::by_name(&cfg.space)?;
    let arch = space
        .parse_arch(&report.indices)
        .with_context(|| format!("{}: \"indices\"", run.join("final.json").display()))?;
    let model = load_latency(&cfg.latency, &space)?;
    let predicted_ms = model.latency_ms(&arch)?;
    let journal = run.join("verify.journal");
    let (us, fingerprint) = measure_architectures(
        &space,
        std::slice::from_ref(&arch),
        DEPLOYMENT_RESOLUTION,
        model.precision(),
        link,
        method,
        timeout,
        &journal,
        &mut |_, _, _, _| {},
    )?;
    let measured_ms = us[0] / 1e3;
    let v = Verification {
        space: space.name.into(),
        arch: arch.to_string(),
        resolution: DEPLOYMENT_RESOLUTION,
        latency_model: model.describe(),
        predicted_ms,
        model_error: model.relative_error(),
        measured_ms,
        error: predicted_ms / measured_ms - 1.0,
        target_ms: cfg.target_ms,
        measured_vs_target: measured_ms / cfg.target_ms - 1.0,
        fingerprint,
        method: method.clone(),
    };
    write_atomic(&run.join("verify.json"), &serde_json::to_string_pretty(&v)?)?;
    Ok(v)
}

impl Verification {
    /// Two lines for people.
    pub fn summary(&self) -> String {
        let band = self.model_error.map_or(String::new(), |e| format!(" ± {:.1}%", 100.0 * e));
        format!(
            "verify: {} at {r}×{r}: predicted {:.2} ms{band} ({}), measured {:.2} ms: prediction {:+.1}%\n  measured against the target {:.1} ms: {:+.1}%",
            self.arch,
            self.predicted_ms,
            self.latency_model,
            self.measured_ms,
            100.0 * self.error,
            self.target_ms,
            100.0 * self.measured_vs_target,
            r = self.resolution,
        )
    }
}
