//! The paper's form of latency model: a linear model over Kronecker-product ("coupled") features
//! of the decision masks (tunas-spec §2). [`CostModel::pixel1`] carries the published Pixel 1
//! weights (Apache-2.0, see `host/data/NOTICE.md`); `tunas costmodel fit` fits the same form for
//! any device from whole-network measurements and saves it as a file of the same shape
//! ([`CostModel::save`], [`CostModel::load`]), with the device's fingerprint and the fit's
//! held-out error.
//!
//! `T = bias + Σ_segments Σ_{o,i,c} m_out[o] · m_in[i] · g[c] · w[offset + (o·n_in + i)·n_config + c]`.
//! With one-hot masks this is one weight per layer; fractional masks (op and filter warmup) give
//! the mask-weighted average, as in the reference code.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use latency_tables::Fingerprint;
use serde::{Deserialize, Serialize};

use super::{Breakdown, BreakdownRow, LatencyError, LatencyModel};
use crate::space::{Architecture, SearchSpace};

const DATA: &str = include_str!("../../data/tunas-pixel1-cost-model.json");

/// A cost-model file: the shipped Pixel 1 data, or a fitted model.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DataFile {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    units: Option<String>,
    /// The device a fitted model was measured on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fingerprint: Option<Fingerprint>,
    /// How a fitted model was fitted and how well it predicts held-out networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fit: Option<serde_json::Value>,
    spaces: BTreeMap<String, SpaceData>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DecisionData {
    name: String,
    tag: String,
    num_choices: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Segment {
    path: String,
    #[serde(default)]
    offset: Option<usize>,
    pruned: bool,
    n_in: usize,
    n_config: usize,
    out_decision: usize,
    in_decision: Option<usize>,
    config_decisions: Vec<usize>,
    config_radix: Vec<usize>,
    skip_decision: Option<usize>,
    skip_choice: Option<usize>,
    skip_slot: Option<usize>,
}

/// A named test vector shipped with the data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestVector {
    /// Its name (`ProxylessNAS-Mobile`, `random_seed0_3`, `warmup_t0_fractional_masks`, …).
    pub name: String,
    /// The index string (absent for the fractional-mask vector).
    #[serde(default)]
    pub indices: Option<String>,
    /// Expected T in ms (f64 sum of the f32 weights).
    pub cost_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SpaceData {
    bias_ms: f64,
    num_weights: usize,
    decisions: Vec<DecisionData>,
    segments: Vec<Segment>,
    weights: Vec<f64>,
    #[serde(default)]
    test_vectors: Vec<TestVector>,
}

fn data() -> &'static DataFile {
    static PARSED: OnceLock<DataFile> = OnceLock::new();
    // The file is embedded at build time and checked by the tests below.
    PARSED.get_or_init(|| {
        serde_json::from_str(DATA).expect("embedded Pixel 1 cost model is valid JSON")
    })
}

/// A coupled-feature linear cost model of one search space.
#[derive(Debug, Clone)]
pub struct CostModel {
    data: Arc<SpaceData>,
    /// `reference_name` of the space.
    space: String,
    name: String,
    fingerprint: Option<Fingerprint>,
    fit: Option<serde_json::Value>,
}

impl CostModel {
    /// The paper's Pixel 1 model of `space`; checks that the space's decisions match exactly.
    pub fn pixel1(space: &SearchSpace) -> Result<Self, LatencyError> {
        let data = data().spaces.get(space.reference_name).ok_or_else(|| {
            LatencyError::Unsupported(format!("the pixel1 model has no weights for {}", space.name))
        })?;
        Self::checked(data.clone(), space, "pixel1 (TuNAS learned Pixel 1 cost model)".into())
    }

    /// A fitted model of `space` with these weights (the layout of the Pixel 1 model's segments).
    pub fn with_weights(
        &self,
        bias_ms: f64,
        weights: Vec<f64>,
        name: String,
        fingerprint: Option<Fingerprint>,
        fit: serde_json::Value,
    ) -> Self {
        let mut data = (*self.data).clone();
        data.bias_ms = bias_ms;
        data.weights = weights;
        data.test_vectors.clear();
        CostModel {
            data: Arc::new(data),
            space: self.space.clone(),
            name,
            fingerprint,
            fit: Some(fit),
        }
    }

    /// Loads a cost-model file (as `tunas costmodel fit` writes) for `space`.
    pub fn load(path: &Path, space: &SearchSpace) -> anyhow::Result<Self> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading cost model {}", path.display()))?;
        let file: DataFile = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{}:{}:{}: bad cost model: {e}", path.display(), e.line(), e.column())
        })?;
        let data = file.spaces.get(space.reference_name).cloned().ok_or_else(|| {
            anyhow::anyhow!("{}: no model for the space {}", path.display(), space.name)
        })?;
        let mut model = Self::checked(data, space, path.display().to_string())
            .with_context(|| format!("loading cost model {}", path.display()))?;
        model.fingerprint = file.fingerprint;
        model.fit = file.fit;
        Ok(model)
    }

    /// Writes the model as a cost-model file (atomically).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        use anyhow::Context;
        let file = DataFile {
            title: Some(format!("coupled-feature latency cost model ({})", self.name)),
            units: Some("milliseconds".into()),
            fingerprint: self.fingerprint.clone(),
            fit: self.fit.clone(),
            spaces: [(self.space.clone(), (*self.data).clone())].into(),
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let text = serde_json::to_string_pretty(&file)? + "\n";
        latency_tables::atomic::replace(path, Path::new(&tmp), text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The fit report of a fitted model.
    pub fn fit(&self) -> Option<&serde_json::Value> {
        self.fit.as_ref()
    }

    /// The deployment resolution a fitted model was measured at (the Pixel 1 model's is 224).
    pub fn resolution(&self) -> u32 {
        self.fit
            .as_ref()
            .and_then(|f| f.get("resolution"))
            .and_then(serde_json::Value::as_u64)
            .and_then(|r| u32::try_from(r).ok())
            .unwrap_or(224)
    }

    /// The held-out relative error (RMSPE as a fraction) of a fitted model.
    pub fn held_out_rmspe(&self) -> Option<f64> {
        let f = self.fit.as_ref()?;
        Some(f.get("held_out")?.get("rmspe")?.as_f64()? / 100.0)
    }

    /// Number of weights (features).
    pub fn num_weights(&self) -> usize {
        self.data.num_weights
    }

    /// The active features of an architecture: `(weight index, value)` with one-hot masks, so
    /// that `T = bias + Σ value · w[index]`.
    pub fn features(&self, arch: &Architecture) -> Vec<(usize, f64)> {
        let masks = self.one_hot(arch);
        self.data
            .segments
            .iter()
            .filter(|s| !s.pruned)
            .flat_map(|s| self.segment_features(s, &masks))
            .collect()
    }

    fn checked(data: SpaceData, space: &SearchSpace, name: String) -> Result<Self, LatencyError> {
        if data.weights.len() != data.num_weights || data.decisions.len() != space.len() {
            return Err(LatencyError::Unsupported(format!(
                "the pixel1 data for {} has {} decisions, the space {}",
                space.name,
                data.decisions.len(),
                space.len()
            )));
        }
        for (i, (d, ours)) in data.decisions.iter().zip(&space.decisions).enumerate() {
            let tag = match ours.tag() {
                crate::space::Tag::Op => "op",
                crate::space::Tag::Filters => "filters",
            };
            if d.name != ours.name || d.num_choices != ours.num_choices() || d.tag != tag {
                return Err(LatencyError::Unsupported(format!(
                    "decision {i} differs between the pixel1 data ({} {} ×{}) and the space ({} {tag} ×{})",
                    d.name,
                    d.tag,
                    d.num_choices,
                    ours.name,
                    ours.num_choices()
                )));
            }
        }
        Ok(CostModel {
            data: Arc::new(data),
            space: space.reference_name.to_string(),
            name,
            fingerprint: None,
            fit: None,
        })
    }

    /// The test vectors shipped with the data.
    pub fn test_vectors(&self) -> &[TestVector] {
        &self.data.test_vectors
    }

    /// One-hot masks of an architecture.
    pub fn one_hot(&self, arch: &Architecture) -> Vec<Vec<f64>> {
        self.data
            .decisions
            .iter()
            .zip(&arch.indices)
            .map(|(d, &i)| {
                let mut m = vec![0.0; d.num_choices];
                m[i] = 1.0;
                m
            })
            .collect()
    }

    /// The masks TuNAS uses at step 0 of warmup: every `op` decision uniform, every `filters`
    /// decision one-hot on its largest choice.
    pub fn warmup_masks(&self) -> Vec<Vec<f64>> {
        self.data
            .decisions
            .iter()
            .map(|d| {
                if d.tag == "op" {
                    vec![1.0 / d.num_choices as f64; d.num_choices]
                } else {
                    let mut m = vec![0.0; d.num_choices];
                    m[d.num_choices - 1] = 1.0;
                    m
                }
            })
            .collect()
    }

    /// T in ms for arbitrary (possibly fractional) masks, one per decision, with per-segment terms.
    pub fn masked(&self, masks: &[Vec<f64>]) -> Breakdown {
        let mut rows = vec![BreakdownRow { name: "bias".into(), key: None, ms: self.data.bias_ms }];
        let mut total = self.data.bias_ms;
        for s in self.data.segments.iter().filter(|s| !s.pruned) {
            let term: f64 = self
                .segment_features(s, masks)
                .iter()
                .map(|&(i, v)| v * self.data.weights[i])
                .sum();
            total += term;
            rows.push(BreakdownRow { name: s.path.clone(), key: None, ms: term });
        }
        Breakdown { rows, total_ms: total }
    }

    /// The non-zero features of one segment: `(weight index, m_out[o] · m_in[i] · g[c])`.
    fn segment_features(&self, s: &Segment, masks: &[Vec<f64>]) -> Vec<(usize, f64)> {
        let Some(offset) = s.offset else { return vec![] };
        let m_out = &masks[s.out_decision];
        let one = [1.0];
        let m_in: &[f64] = match s.in_decision {
            Some(d) => &masks[d],
            None => &one,
        };
        let g = self.config_weights(s, masks);
        let mut out = Vec::new();
        for (o, &mo) in m_out.iter().enumerate().filter(|(_, &m)| m != 0.0) {
            for (i, &mi) in m_in.iter().enumerate().filter(|(_, &m)| m != 0.0) {
                let base = offset + (o * s.n_in + i) * s.n_config;
                for (c, &gc) in g.iter().enumerate().filter(|(_, &g)| g != 0.0) {
                    out.push((base + c, mo * mi * gc));
                }
            }
        }
        out
    }

    /// `g[c]` of a segment: mixed-radix products of the config masks, times "present", plus skip.
    fn config_weights(&self, s: &Segment, masks: &[Vec<f64>]) -> Vec<f64> {
        let present = match s.skip_decision {
            Some(d) => masks[d][0],
            None => 1.0,
        };
        let mut g = vec![0.0; s.n_config];
        let slots: usize = s.config_radix.iter().product();
        for (c, slot) in g.iter_mut().enumerate().take(slots) {
            let mut rest = c;
            let mut v = present;
            // First config decision is the most significant digit.
            for (&d, &r) in s.config_decisions.iter().zip(&s.config_radix).rev() {
                v *= masks[d][rest % r];
                rest /= r;
            }
            *slot = v;
        }
        if let (Some(d), Some(choice), Some(slot)) = (s.skip_decision, s.skip_choice, s.skip_slot) {
            g[slot] = masks[d][choice];
        }
        g
    }
}

impl LatencyModel for CostModel {
    fn masked_ms(&self, masks: &[Vec<f64>]) -> Option<f64> {
        Some(self.masked(masks).total_ms)
    }

    fn describe(&self) -> String {
        self.name.clone()
    }

    fn relative_error(&self) -> Option<f64> {
        self.held_out_rmspe()
    }

    fn breakdown(&self, arch: &Architecture) -> Result<Breakdown, LatencyError> {
        Ok(self.masked(&self.one_hot(arch)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::space_names;

    #[test]
    fn every_test_vector_matches() {
        let mut checked = 0;
        for name in space_names() {
            let space = SearchSpace::by_name(name).unwrap();
            let model = CostModel::pixel1(&space).unwrap();
            assert!(!model.test_vectors().is_empty());
            for tv in model.test_vectors() {
                let got = match &tv.indices {
                    Some(indices) => model.latency_ms(&space.parse_arch(indices).unwrap()).unwrap(),
                    None => {
                        assert_eq!(tv.name, "warmup_t0_fractional_masks");
                        model.masked(&model.warmup_masks()).total_ms
                    }
                };
                assert!(
                    (got - tv.cost_ms).abs() < 1e-5,
                    "{name} {}: got {got}, expected {}",
                    tv.name,
                    tv.cost_ms
                );
                checked += 1;
            }
        }
        // 11 + 12 + 9 vectors in the reference note.
        assert_eq!(checked, 32);
    }

    #[test]
    fn reference_architectures_give_the_paper_latencies() {
        let cases = [
            ("proxylessnas", "proxylessnas-mobile", 84.416241),
            ("proxylessnas-enlarged", "proxylessnas-mobile", 84.405130),
            ("proxylessnas-enlarged", "mobilenet-v2", 77.222263),
            ("proxylessnas-enlarged", "mnasnet-b1", 84.511757),
        ];
        for (space, arch, expected) in cases {
            let space = SearchSpace::by_name(space).unwrap();
            let model = CostModel::pixel1(&space).unwrap();
            let got = model.latency_ms(&space.parse_arch(arch).unwrap()).unwrap();
            assert!((got - expected).abs() < 1e-3, "{arch}: {got}");
        }
    }

    #[test]
    fn breakdown_rows_add_up() {
        let space = SearchSpace::by_name("mobilenet-v3-like").unwrap();
        let model = CostModel::pixel1(&space).unwrap();
        let arch = space.check_arch(vec![0; space.len()]).unwrap();
        let b = model.breakdown(&arch).unwrap();
        let sum: f64 = b.rows.iter().map(|r| r.ms).sum();
        assert!((sum - b.total_ms).abs() < 1e-9);
        // The features reproduce T.
        let t: f64 = model.data.bias_ms
            + model.features(&arch).iter().map(|&(i, v)| v * model.data.weights[i]).sum::<f64>();
        assert!((t - b.total_ms).abs() < 1e-9);
    }

    #[test]
    fn a_fitted_model_round_trips_through_its_file() {
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let pixel1 = CostModel::pixel1(&space).unwrap();
        let weights: Vec<f64> = (0..pixel1.num_weights()).map(|i| i as f64 * 0.01).collect();
        let fit = serde_json::json!({"networks": 3});
        let model = pixel1.with_weights(5.0, weights, "fitted".into(), None, fit.clone());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        model.save(&path).unwrap();
        let back = CostModel::load(&path, &space).unwrap();
        let arch = space.parse_arch("proxylessnas-mobile").unwrap();
        assert_eq!(back.latency_ms(&arch).unwrap(), model.latency_ms(&arch).unwrap());
        assert_eq!(back.fit(), Some(&fit));
        assert_ne!(back.latency_ms(&arch).unwrap(), pixel1.latency_ms(&arch).unwrap());
        // Another space's file is refused by name.
        let other = SearchSpace::by_name("mobilenet-v3-like").unwrap();
        let err = format!("{:#}", CostModel::load(&path, &other).unwrap_err());
        assert!(err.contains("no model for the space mobilenet-v3-like"), "{err}");
    }
}
