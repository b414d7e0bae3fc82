//! `device-agent infer`: an ONNX model run on raw f32 inputs (for comparisons), or the range of
//! every output over them (int8 calibration).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::engine::Engine;

/// `device-agent infer`
#[derive(Debug, Args)]
pub struct Cmd {
    /// The ONNX file.
    pub model: PathBuf,
    /// Raw little-endian f32 input of the model's input shape.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the raw little-endian f32 output; with --ranges, the JSON list of
    /// `[min, max]` of every output of the model, in its output order, over all inputs.
    #[arg(long)]
    pub output: PathBuf,
    /// Write each output's range instead of the first output's values (int8 calibration).
    #[arg(long)]
    pub ranges: bool,
    /// The input holds this many inputs back to back; each is run and the outputs are
    /// written back to back.
    #[arg(long, default_value_t = 1,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub count: usize,
}

impl Cmd {
    /// Runs the model on every input; writes the outputs.
    pub fn run(self, engine: &dyn Engine) -> Result<()> {
        let bytes = std::fs::read(&self.model)
            .with_context(|| format!("reading {}", self.model.display()))?;
        let raw = std::fs::read(&self.input)
            .with_context(|| format!("reading {}", self.input.display()))?;
        if raw.len() % 4 != 0 {
            bail!(
                "{}: {} bytes is not a whole number of f32 values",
                self.input.display(),
                raw.len()
            );
        }
        let input: Vec<f32> =
            raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        if self.count == 0 || input.len() % self.count != 0 {
            bail!(
                "{}: {} values do not split into --count {} inputs",
                self.input.display(),
                input.len(),
                self.count
            );
        }
        let mut r = engine
            .prepare(&bytes, None, 0)
            .with_context(|| format!("loading {}", self.model.display()))?;
        let inputs = input.chunks_exact(input.len() / self.count);
        if self.ranges {
            let mut all: Vec<(f32, f32)> = Vec::new();
            for (i, one) in inputs.enumerate() {
                let got = r.ranges(one).with_context(|| format!("input {i}"))?;
                if all.is_empty() {
                    all = got;
                } else {
                    for (a, g) in all.iter_mut().zip(got) {
                        *a = (a.0.min(g.0), a.1.max(g.1));
                    }
                }
            }
            let text = serde_json::to_string(&all)?;
            return std::fs::write(&self.output, text)
                .with_context(|| format!("writing {}", self.output.display()));
        }
        let mut out = Vec::new();
        for (i, one) in inputs.enumerate() {
            out.extend(r.infer(one).with_context(|| format!("input {i}"))?);
        }
        let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&self.output, bytes)
            .with_context(|| format!("writing {}", self.output.display()))?;
        Ok(())
    }
}
