//! Latency models behind one trait: T(α) in milliseconds for an architecture of a space.
//!
//! - [`CostModel`]: the paper's coupled-feature linear model — the published Pixel 1 weights, or
//!   one fitted to a device's whole-network measurements ([`fit`], `tunas costmodel fit`).
//! - [`MeasuredTable`]: Σ of a measured table's medians over the architecture's op keys, with the
//!   table's optional affine correction. A missing key is an error, never 0.

mod cost_model;
pub mod fit;
mod measured;

pub use cost_model::CostModel;
pub use measured::MeasuredTable;

use std::path::Path;

use crate::space::{Architecture, SearchSpace};

/// One row of a latency breakdown.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BreakdownRow {
    /// Layer or term name (`block2/layer1`, `bias`, `correction`).
    pub name: String,
    /// The op key, where the model works on keys.
    pub key: Option<String>,
    /// Contribution in ms (may be negative for regression terms).
    pub ms: f64,
}

/// A per-layer latency breakdown whose rows add up to `total_ms`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Breakdown {
    /// Contributions.
    pub rows: Vec<BreakdownRow>,
    /// T(α) in ms.
    pub total_ms: f64,
}

/// Errors of latency models.
#[derive(Debug, thiserror::Error)]
pub enum LatencyError {
    /// The table lacks keys the architecture needs; every missing key is listed.
    #[error("{table} has no entry for {} key(s) of this architecture:\n  {}", keys.len(), keys.join("\n  "))]
    MissingKeys {
        /// The table (file name).
        table: String,
        /// The missing keys, in network order.
        keys: Vec<String>,
    },
    /// The model does not cover this space.
    #[error("{0}")]
    Unsupported(String),
}

/// T(α) for architectures of one search space.
pub trait LatencyModel {
    /// A short description (`pixel1`, the table's path).
    fn describe(&self) -> String;

    /// T(α) in milliseconds.
    fn latency_ms(&self, arch: &Architecture) -> Result<f64, LatencyError> {
        Ok(self.breakdown(arch)?.total_ms)
    }

    /// T(α) with per-layer contributions.
    fn breakdown(&self, arch: &Architecture) -> Result<Breakdown, LatencyError>;

    /// T for fractional per-decision masks (op warmup averages the options of a decision), where
    /// the model has a meaning for them: the reference applies its linear cost model to the
    /// masks. `None` for models that can only price one choice per decision (a table of op keys).
    fn masked_ms(&self, _masks: &[Vec<f64>]) -> Option<f64> {
        None
    }

    /// The model's typical relative error on networks it was not fitted on (held-out RMSPE as a
    /// fraction), where it knows one: a fitted cost model does.
    fn relative_error(&self) -> Option<f64> {
        None
    }

    /// The precision the model prices networks in (a table's keys'; cost models are float).
    fn precision(&self) -> latency_tables::Precision {
        latency_tables::Precision::F32
    }
}

/// Whether `path` is a cost-model file (it has a `spaces` object) rather than a latency table.
pub fn is_cost_model_file(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v.get("spaces").is_some_and(serde_json::Value::is_object))
}

/// Loads `pixel1`, a cost-model file or a table file for `space`.
pub fn load_model(
    spec: &str,
    space: &SearchSpace,
    resolution: u32,
) -> anyhow::Result<Box<dyn LatencyModel>> {
    use anyhow::Context;
    if spec == "pixel1" {
        if resolution != 224 {
            anyhow::bail!(
                "the pixel1 model only knows the 224×224 deployment resolution (got {resolution})"
            );
        }
        return Ok(Box::new(CostModel::pixel1(space)?));
    }
    if is_cost_model_file(Path::new(spec)) {
        let model = CostModel::load(Path::new(spec), space)?;
        if model.resolution() != resolution {
            anyhow::bail!(
                "{spec} was fitted at {r}×{r}, not {resolution}×{resolution}",
                r = model.resolution()
            );
        }
        return Ok(Box::new(model));
    }
    let table = latency_tables::LatencyTable::load(spec).with_context(|| {
        format!(
            "loading latency model {spec:?} (expected `pixel1`, a cost-model file or a table file)"
        )
    })?;
    Ok(Box::new(MeasuredTable::new(table, spec, space.clone(), resolution)))
}
