//! The paper's Pixel 1 latency model: a linear model over Kronecker-product features of the
//! decision masks (tunas-spec §2), with the published weights (Apache-2.0, see `host/data/NOTICE.md`).
//!
//! `T = bias + Σ_segments Σ_{o,i,c} m_out[o] · m_in[i] · g[c] · w[offset + (o·n_in + i)·n_config + c]`.
//! With one-hot masks this is one weight per layer; fractional masks (op and filter warmup) give
//! the mask-weighted average, as in the reference code.

use std::sync::OnceLock;

use serde::Deserialize;

use super::{Breakdown, BreakdownRow, LatencyError, LatencyModel};
use crate::space::{Architecture, SearchSpace};

const DATA: &str = include_str!("../../data/tunas-pixel1-cost-model.json");

#[derive(Debug, Deserialize)]
struct DataFile {
    spaces: std::collections::BTreeMap<String, SpaceData>,
}

#[derive(Debug, Clone, Deserialize)]
struct DecisionData {
    name: String,
    tag: String,
    num_choices: usize,
}

#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
pub struct TestVector {
    /// Its name (`ProxylessNAS-Mobile`, `random_seed0_3`, `warmup_t0_fractional_masks`, …).
    pub name: String,
    /// The index string (absent for the fractional-mask vector).
    #[serde(default)]
    pub indices: Option<String>,
    /// Expected T in ms (f64 sum of the f32 weights).
    pub cost_ms: f64,
}

#[derive(Debug, Clone, Deserialize)]
struct SpaceData {
    bias_ms: f64,
    num_weights: usize,
    decisions: Vec<DecisionData>,
    segments: Vec<Segment>,
    weights: Vec<f64>,
    test_vectors: Vec<TestVector>,
}

fn data() -> &'static DataFile {
    static PARSED: OnceLock<DataFile> = OnceLock::new();
    // The file is embedded at build time and checked by the tests below.
    PARSED.get_or_init(|| {
        serde_json::from_str(DATA).expect("embedded Pixel 1 cost model is valid JSON")
    })
}

/// The Pixel 1 cost model of one search space.
#[derive(Debug, Clone)]
pub struct Pixel1CostModel {
    data: &'static SpaceData,
}

impl Pixel1CostModel {
    /// The model of `space`; checks that the space's decisions match the model's exactly.
    pub fn for_space(space: &SearchSpace) -> Result<Self, LatencyError> {
        let data = data().spaces.get(space.reference_name).ok_or_else(|| {
            LatencyError::Unsupported(format!("the pixel1 model has no weights for {}", space.name))
        })?;
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
        Ok(Pixel1CostModel { data })
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
            let Some(offset) = s.offset else { continue };
            let m_out = &masks[s.out_decision];
            let one = [1.0];
            let m_in: &[f64] = match s.in_decision {
                Some(d) => &masks[d],
                None => &one,
            };
            let g = self.config_weights(s, masks);
            let mut term = 0.0;
            for (o, &mo) in m_out.iter().enumerate() {
                if mo == 0.0 {
                    continue;
                }
                for (i, &mi) in m_in.iter().enumerate() {
                    if mi == 0.0 {
                        continue;
                    }
                    let base = offset + (o * s.n_in + i) * s.n_config;
                    for (c, &gc) in g.iter().enumerate() {
                        if gc != 0.0 {
                            term += mo * mi * gc * self.data.weights[base + c];
                        }
                    }
                }
            }
            total += term;
            rows.push(BreakdownRow { name: s.path.clone(), key: None, ms: term });
        }
        Breakdown { rows, total_ms: total }
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

impl LatencyModel for Pixel1CostModel {
    fn masked_ms(&self, masks: &[Vec<f64>]) -> Option<f64> {
        Some(self.masked(masks).total_ms)
    }

    fn describe(&self) -> String {
        "pixel1 (TuNAS learned Pixel 1 cost model)".into()
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
            let model = Pixel1CostModel::for_space(&space).unwrap();
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
            let model = Pixel1CostModel::for_space(&space).unwrap();
            let got = model.latency_ms(&space.parse_arch(arch).unwrap()).unwrap();
            assert!((got - expected).abs() < 1e-3, "{arch}: {got}");
        }
    }

    #[test]
    fn breakdown_rows_add_up() {
        let space = SearchSpace::by_name("mobilenet-v3-like").unwrap();
        let model = Pixel1CostModel::for_space(&space).unwrap();
        let arch = space.check_arch(vec![0; space.len()]).unwrap();
        let b = model.breakdown(&arch).unwrap();
        let sum: f64 = b.rows.iter().map(|r| r.ms).sum();
        assert!((sum - b.total_ms).abs() < 1e-9);
    }
}
