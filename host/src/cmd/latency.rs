//! `tunas latency`: T(α) of one architecture, in ms, optionally per layer.

use clap::Args;

use crate::latency::load_model;
use crate::space::SearchSpace;

/// `tunas latency --space NAME --arch ARCH --latency pixel1|MODEL.json|TABLE.json`
#[derive(Debug, Args)]
pub struct Cmd {
    /// The search space.
    #[arg(long)]
    pub space: String,
    /// The architecture: a reference name, a colon-separated index string, JSON, or a JSON file.
    #[arg(long)]
    pub arch: String,
    /// `pixel1` (the paper's model), a fitted cost-model file (`tunas costmodel fit`) or a
    /// latency table file (`--model` is the old name of this option).
    #[arg(long, default_value = "pixel1", alias = "model")]
    pub latency: String,
    /// Deployment resolution.
    #[arg(long, default_value_t = 224, value_parser = super::values::resolution())]
    pub resolution: u32,
    /// Print the contribution of every layer.
    #[arg(long)]
    pub breakdown: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl Cmd {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<i32> {
        use std::io::Write;
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let space = SearchSpace::by_name(&self.space)?;
        let arch = super::options::architecture(&space, &self.arch)?;
        let model = load_model(&self.latency, &space, self.resolution)?;
        let b = model.breakdown(&arch)?;
        if self.json {
            let doc = serde_json::json!({
                "space": space.name, "architecture": arch.to_string(), "model": model.describe(),
                "resolution": self.resolution, "latency_ms": b.total_ms,
                "relative_error": model.relative_error(),
                "breakdown": if self.breakdown { Some(&b.rows) } else { None },
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
            return Ok(0);
        }
        if self.breakdown {
            for row in &b.rows {
                writeln!(
                    out,
                    "{:<34} {:>10.3} ms  {}",
                    row.name,
                    row.ms,
                    row.key.as_deref().unwrap_or("")
                )?;
            }
            writeln!(out, "{:<34} {:>10.3} ms", "total", b.total_ms)?;
        } else {
            writeln!(out, "{:.3}", b.total_ms)?;
        }
        if let Some(e) = model.relative_error() {
            log::info!(
                "T(α) = {:.3} ms ± {:.1}% (the cost model's held-out RMSPE)",
                b.total_ms,
                100.0 * e
            );
        }
        Ok(0)
    }
}
