//! `device-agent build-onnx`: the ONNX model the agent measures for op keys.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

/// `device-agent build-onnx KEY [KEY …] --out FILE`
#[derive(Debug, Args)]
pub struct Cmd {
    /// Op keys; several keys are built as one network, in order.
    #[arg(required = true)]
    pub keys: Vec<String>,
    /// Where to write the model.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the generated weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl Cmd {
    /// Writes the model.
    pub fn run(self) -> Result<()> {
        let keys = self
            .keys
            .iter()
            .map(|k| k.parse::<latency_tables::OpKey>())
            .collect::<Result<Vec<_>, _>>()?;
        let bytes =
            latency_tables::onnx::network_bytes(&latency_tables::Network::new(keys), self.seed)?;
        std::fs::write(&self.out, bytes)
            .with_context(|| format!("writing {}", self.out.display()))?;
        Ok(())
    }
}
