//! Search spaces as plain data: decisions (in the reference code's index order), blocks of
//! layer specs that refer to decisions, and architectures (one choice per decision).
//!
//! This module knows nothing of latency or training; `resolve` turns (space, architecture,
//! resolution) into op keys, `named` holds the three TuNAS spaces.

mod channels;
mod named;
mod resolve;

use std::fmt;
use std::str::FromStr;

use latency_tables::Activation;
use serde::{Deserialize, Serialize};

pub use channels::{layer_channels, LayerChannels};
pub use named::{reference_architectures, space_names, RefArch};
pub use resolve::{Resolved, ResolvedLayer};

/// `scale_filters(f, m, 8)` of the reference code: `max(8, 8·floor(f·m/8 + 0.5))`.
pub fn scale_filters(filters: f64, multiplier: f64) -> u32 {
    let v = 8.0 * (filters * multiplier / 8.0 + 0.5).floor();
    (v as u32).max(8)
}

/// `make_divisible(v, 8)`: round to a multiple of 8, at least 8, never more than 10% below `v`.
pub fn make_divisible(v: f64) -> u32 {
    let mut r = ((v + 4.0) / 8.0).floor() * 8.0;
    r = r.max(8.0);
    if r < 0.9 * v {
        r += 8.0;
    }
    r as u32
}

/// The SE hidden size of a bottleneck with `expanded` channels.
pub fn se_hidden(expanded: u32) -> u32 {
    make_divisible(0.25 * f64::from(expanded))
}

/// The two decision tags of TuNAS: op warmup applies to `Op`, filter warmup to `Filters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tag {
    /// Which op, kernel, SE or skip.
    Op,
    /// Output filters or expansion size.
    Filters,
}

/// What a decision chooses, with its choices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionKind {
    /// Output filters of a block (absolute channel counts, ascending).
    Filters(Vec<u32>),
    /// Kernel size (ascending).
    Kernel(Vec<u32>),
    /// Expansion ratio relative to the layer's selected input channels (ascending).
    Expansion(Vec<u32>),
    /// Squeeze-and-excite: 0 = off, 1 = on.
    Se,
    /// Optional layer: 0 = present, 1 = skipped (identity).
    Skip,
    /// A single-choice decision that the reference encoding still counts (always 0).
    Fixed(&'static str),
}

/// One categorical decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Path-like name, as in the reference cost-model data (`block2/layer1/kernel`).
    pub name: String,
    /// What it chooses.
    pub kind: DecisionKind,
}

impl Decision {
    /// Number of choices.
    pub fn num_choices(&self) -> usize {
        match &self.kind {
            DecisionKind::Filters(v) | DecisionKind::Kernel(v) | DecisionKind::Expansion(v) => {
                v.len()
            }
            DecisionKind::Se | DecisionKind::Skip => 2,
            DecisionKind::Fixed(_) => 1,
        }
    }

    /// The TuNAS tag.
    pub fn tag(&self) -> Tag {
        match self.kind {
            DecisionKind::Filters(_) | DecisionKind::Expansion(_) => Tag::Filters,
            _ => Tag::Op,
        }
    }

    /// Human label of choice `i`.
    pub fn label(&self, i: usize) -> String {
        match &self.kind {
            DecisionKind::Filters(v) => v[i].to_string(),
            DecisionKind::Kernel(v) => format!("k{}", v[i]),
            DecisionKind::Expansion(v) => format!("x{}", v[i]),
            DecisionKind::Se => ["off", "on"][i].into(),
            DecisionKind::Skip => ["present", "skip"][i].into(),
            DecisionKind::Fixed(what) => what.to_string(),
        }
    }

    /// Numeric value of choice `i` (filters, kernel, ratio; 0/1 for SE and skip; 0 when fixed).
    pub fn value(&self, i: usize) -> u32 {
        match &self.kind {
            DecisionKind::Filters(v) | DecisionKind::Kernel(v) | DecisionKind::Expansion(v) => v[i],
            DecisionKind::Se | DecisionKind::Skip => i as u32,
            DecisionKind::Fixed(_) => 0,
        }
    }
}

/// A layer parameter that is either fixed or chosen by a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// A fixed value.
    Fixed(u32),
    /// The value of a decision's choice.
    Decision(usize),
}

/// One layer of a block, as data. Decisions are referred to by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerSpec {
    /// A full convolution + BN + activation (the stem).
    Conv {
        /// Kernel size.
        kernel: Param,
        /// Stride.
        stride: u32,
        /// Activation.
        act: Activation,
    },
    /// A separable convolution, optionally skippable (then residual).
    SepConv {
        /// Kernel decision.
        kernel: Param,
        /// Skip decision, when the layer is optional.
        skip: Option<usize>,
        /// Stride.
        stride: u32,
        /// Activation after the depthwise conv.
        act: Activation,
    },
    /// An inverted bottleneck; residual when skippable.
    Bottleneck {
        /// Kernel decision.
        kernel: usize,
        /// Expansion-ratio decision.
        expansion: usize,
        /// SE decision, when SE is searched.
        se: Option<usize>,
        /// Skip decision, when the layer is optional.
        skip: Option<usize>,
        /// Stride.
        stride: u32,
        /// Activation.
        act: Activation,
    },
    /// A 1×1 convolution + activation (with global pooling after it when `pool`).
    Head {
        /// Activation.
        act: Activation,
        /// Global average pooling follows.
        pool: bool,
        /// A batch norm follows the convolution; without one the convolution has a bias
        /// (MobileNetV3's last conv, tunas-spec §1.6).
        bn: bool,
    },
}

impl LayerSpec {
    /// The deployment stride (1 for the head).
    pub fn stride(&self) -> u32 {
        match *self {
            LayerSpec::Conv { stride, .. }
            | LayerSpec::SepConv { stride, .. }
            | LayerSpec::Bottleneck { stride, .. } => stride,
            LayerSpec::Head { .. } => 1,
        }
    }

    /// The skip decision, when the layer is optional.
    pub fn skip(&self) -> Option<usize> {
        match *self {
            LayerSpec::SepConv { skip, .. } | LayerSpec::Bottleneck { skip, .. } => skip,
            LayerSpec::Conv { .. } | LayerSpec::Head { .. } => None,
        }
    }

    /// The decisions that shape the layer's op besides its block's filters and its skip
    /// (kernel, expansion, SE): those that only matter when the layer is present.
    pub fn op_decisions(&self) -> Vec<usize> {
        let param = |p: Param| match p {
            Param::Decision(d) => Some(d),
            Param::Fixed(_) => None,
        };
        match *self {
            LayerSpec::Conv { kernel, .. } | LayerSpec::SepConv { kernel, .. } => {
                param(kernel).into_iter().collect()
            }
            LayerSpec::Bottleneck { kernel, expansion, se, .. } => {
                let mut v = vec![kernel, expansion];
                v.extend(se);
                v
            }
            LayerSpec::Head { .. } => vec![],
        }
    }
}

/// A block: layers that all write the block's output-filters decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Name (`stem`, `block2`, `head`, …).
    pub name: String,
    /// Layers in order.
    pub layers: Vec<LayerSpec>,
    /// The block's output-filters decision.
    pub filters: usize,
}

/// A whole search space.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSpace {
    /// Our name (`proxylessnas`, `proxylessnas-enlarged`, `mobilenet-v3-like`).
    pub name: &'static str,
    /// The reference code's name (`proxylessnas_search`, …).
    pub reference_name: &'static str,
    /// The paper's name.
    pub paper_name: &'static str,
    /// Decisions in the reference index order.
    pub decisions: Vec<Decision>,
    /// Blocks in network order.
    pub blocks: Vec<Block>,
    /// Classifier outputs (1001 in the reference code).
    pub classes: u32,
    /// The paper's latency target T0 for this space (ms).
    pub default_target_ms: f64,
}

impl SearchSpace {
    /// Looks a space up by our name or the reference name.
    pub fn by_name(name: &str) -> Result<SearchSpace, SpaceError> {
        named::by_name(name).ok_or_else(|| SpaceError::UnknownSpace {
            name: name.to_string(),
            known: space_names().join(", "),
        })
    }

    /// Number of decisions.
    pub fn len(&self) -> usize {
        self.decisions.len()
    }

    /// Whether the space has no decisions.
    pub fn is_empty(&self) -> bool {
        self.decisions.is_empty()
    }

    /// Number of architectures counting every combination, inactive ones included (the paper's
    /// Table 1 upper bound), as `f64`.
    pub fn cardinality(&self) -> f64 {
        self.decisions.iter().map(|d| d.num_choices() as f64).product()
    }

    /// Parses an architecture: a reference name, a colon-separated index string, or JSON
    /// (`[0, 1, …]` or `{"indices": "0:1:…"}` / `{"indices": [0, 1, …]}`).
    pub fn parse_arch(&self, text: &str) -> Result<Architecture, SpaceError> {
        let text = text.trim();
        if let Some(r) = reference_architectures(self.name)
            .into_iter()
            .find(|r| r.name.eq_ignore_ascii_case(text))
        {
            return self.parse_arch(r.indices);
        }
        if text.starts_with('[') || text.starts_with('{') {
            let json: ArchJson = serde_json::from_str(text).map_err(|e| SpaceError::BadArch {
                reason: format!("not an architecture in JSON: {e}"),
            })?;
            if let Some(space) = &json.space {
                if SearchSpace::by_name(space)?.name != self.name {
                    return Err(SpaceError::BadArch {
                        reason: format!(
                            "the JSON is an architecture of {space}, not of {}",
                            self.name
                        ),
                    });
                }
            }
            let indices = match json.indices {
                IndicesJson::Text(s) => return self.parse_arch(&s),
                IndicesJson::List(v) => v,
            };
            return self.check_arch(indices);
        }
        let mut indices = Vec::new();
        for (pos, part) in text.split(':').enumerate() {
            let v: usize = part.trim().parse().map_err(|_| SpaceError::BadArch {
                reason: format!(
                    "{:?} at position {pos} is not a non-negative integer (expected {} colon-separated indices, or a reference name: {})",
                    part,
                    self.len(),
                    reference_architectures(self.name).iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
                ),
            })?;
            indices.push(v);
        }
        self.check_arch(indices)
    }

    /// An architecture drawn uniformly: each decision's choice independent and equally likely.
    pub fn random_architecture(&self, rng: &mut crate::rng::Rng) -> Architecture {
        Architecture {
            indices: self.decisions.iter().map(|d| rng.below(d.num_choices())).collect(),
        }
    }

    /// Checks the count and range of indices.
    pub fn check_arch(&self, indices: Vec<usize>) -> Result<Architecture, SpaceError> {
        if indices.len() != self.len() {
            return Err(SpaceError::WrongCount {
                space: self.name,
                expected: self.len(),
                got: indices.len(),
            });
        }
        for (i, (&v, d)) in indices.iter().zip(&self.decisions).enumerate() {
            if v >= d.num_choices() {
                return Err(SpaceError::OutOfRange {
                    index: i,
                    name: d.name.clone(),
                    value: v,
                    max: d.num_choices() - 1,
                    choices: (0..d.num_choices())
                        .map(|c| format!("{c}={}", d.label(c)))
                        .collect::<Vec<_>>()
                        .join(" "),
                });
            }
        }
        Ok(Architecture { indices })
    }

    /// The architecture as JSON (index string plus a per-decision description).
    pub fn arch_json(&self, arch: &Architecture) -> serde_json::Value {
        let decisions: Vec<serde_json::Value> = self
            .decisions
            .iter()
            .zip(&arch.indices)
            .map(|(d, &i)| serde_json::json!({"name": d.name, "index": i, "choice": d.label(i)}))
            .collect();
        serde_json::json!({"space": self.name, "indices": arch.to_string(), "decisions": decisions})
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IndicesJson {
    Text(String),
    List(Vec<usize>),
}

#[derive(Deserialize)]
struct ArchJsonObject {
    #[serde(default)]
    space: Option<String>,
    indices: IndicesJson,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ArchJsonAny {
    List(Vec<usize>),
    Object(ArchJsonObject),
}

struct ArchJson {
    space: Option<String>,
    indices: IndicesJson,
}

impl<'de> Deserialize<'de> for ArchJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match ArchJsonAny::deserialize(d)? {
            ArchJsonAny::List(v) => ArchJson { space: None, indices: IndicesJson::List(v) },
            ArchJsonAny::Object(o) => ArchJson { space: o.space, indices: o.indices },
        })
    }
}

/// One choice per decision, in the space's index order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Architecture {
    /// The chosen index of every decision.
    pub indices: Vec<usize>,
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.indices.iter().map(usize::to_string).collect();
        f.write_str(&parts.join(":"))
    }
}

/// Errors of spaces and architectures; each names the decision and its allowed range.
#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    /// No space of this name.
    #[error("unknown search space {name:?} (known: {known})")]
    UnknownSpace {
        /// The name given.
        name: String,
        /// The known names.
        known: String,
    },
    /// The architecture text is malformed.
    #[error("bad architecture: {reason}")]
    BadArch {
        /// What is wrong.
        reason: String,
    },
    /// Wrong number of indices.
    #[error("{space} has {expected} decisions, the architecture gives {got} indices")]
    WrongCount {
        /// The space.
        space: &'static str,
        /// Decisions in the space.
        expected: usize,
        /// Indices given.
        got: usize,
    },
    /// An index is out of its decision's range.
    #[error("decision {index} ({name}): index {value} is out of range 0..={max} ({choices})")]
    OutOfRange {
        /// Decision position.
        index: usize,
        /// Decision name.
        name: String,
        /// The index given.
        value: usize,
        /// Largest allowed index.
        max: usize,
        /// The choices, labelled.
        choices: String,
    },
}

impl FromStr for Tag {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "op" => Ok(Tag::Op),
            "filters" => Ok(Tag::Filters),
            other => Err(format!("unknown tag {other:?}")),
        }
    }
}
