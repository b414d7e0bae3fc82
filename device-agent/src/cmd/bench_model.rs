//! `device-agent bench-model`: any ONNX file timed end to end with the profiling method.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use latency_tables::LatencyStats;

use crate::engine::Engine;
use crate::measure;
use crate::placement::MeasureArgs;

/// `device-agent bench-model`
#[derive(Debug, Args)]
pub struct Cmd {
    /// The ONNX file.
    pub model: PathBuf,
    /// Input shape when the model's is not fixed, e.g. `1,3,224,224`.
    #[arg(long)]
    pub input_shape: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub measure: MeasureArgs,
}

impl Cmd {
    /// Times the model; prints the statistics as JSON.
    pub fn run(self, engine: &dyn Engine) -> Result<()> {
        let (placement, fp, method) = self.measure.setup()?;
        let bytes = std::fs::read(&self.model)
            .with_context(|| format!("reading {}", self.model.display()))?;
        let shape = match &self.input_shape {
            Some(s) => Some(
                s.split(',')
                    .map(|d| d.trim().parse::<usize>())
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| {
                        format!("--input-shape {s:?} is not a list like 1,3,224,224")
                    })?,
            ),
            None => None,
        };
        let mut r = engine
            .prepare(&bytes, shape.as_deref(), method.seed)
            .with_context(|| format!("loading {}", self.model.display()))?;
        let t = measure::time_model(r.as_mut(), &method, &placement, &mut |_| Ok(()))?;
        let stats = LatencyStats::from_samples(&t.samples_us).context("no samples")?;
        super::print_json(&serde_json::json!({
            "model": self.model, "units": "us", "stats": stats, "batch": t.batch,
            "throttled": t.throttled, "method": method, "fingerprint": fp,
        }))
    }
}
