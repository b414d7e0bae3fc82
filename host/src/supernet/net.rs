//! The weight-sharing supernet of a search space (tunas-spec §4.3–4.6), at proxy geometry.
//!
//! - Shared 1×1 expansion and projection convs (+ BN) across kernel sizes and SE; one depthwise
//!   conv + BN per kernel size; one SE weight set per layer; one stem kernel per kernel choice;
//!   one complete separable conv (depthwise + BN + act, pointwise + BN) per kernel choice. Each
//!   kind of layer is a unit of its own ([`super::units`]); this file walks them.
//! - Expansion ratios and output filters are channel masks on one max-size kernel; BN is
//!   stateless (batch statistics) and masked after normalisation (γ, β multiplied by the mask).
//! - A switch sums its enabled branches weighted by the decision's weights: one-hot normally,
//!   uniform under op warmup (a skippable layer then gives `x + 0.5·layer(x)`).
//!
//! Proxy geometry: the network runs at the dataset's resolution with every channel count scaled
//! by the width multiplier (`proxy(c) = max(1, round(c·m))`, applied to the deployment channel
//! counts, so expansion and SE sizes follow the reference rounding first) and with the first
//! stride-2 layers made stride 1 until the last stage is at least 2×2. The proxy counts are not
//! rounded again to multiples of 8 as the reference's `scale_filters` would: at ×0.25 that maps
//! all four stem choices {8, 16, 24, 32} to 8 channels and six block-3 choices {16 … 64} to
//! {8, 8, 8, 8, 16, 16}: 31 of the 111 filter choices of the three spaces would share their
//! width with another, and Q(α) could not tell them apart (tested in `supernet::tests`).

use candle_core::{DType, Device, Result, Tensor, Var, D};
use candle_nn::VarMap;
use latency_tables::Activation;

use super::ops::batch_norm_act;
use super::units::{self, Init, Pass, Read, SuperUnit, Widths};
use crate::rng::Rng;
use crate::space::{LayerChannels, SearchSpace};

/// Batch-norm epsilon of the reference code.
pub const BN_EPS: f64 = 1e-3;

/// The proxy geometry a supernet trains at.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProxyGeometry {
    /// Input height = width (after padding; 32 for 28×28 data).
    pub input_hw: usize,
    /// Input channels (1 for Fashion-MNIST, 3 for CIFAR-10).
    pub in_channels: usize,
    /// Classes of the dataset.
    pub classes: usize,
    /// Channel multiplier applied to the deployment channel counts.
    pub width_multiplier: f64,
}

impl ProxyGeometry {
    /// Proxy channel count of a deployment channel count.
    pub fn channels(&self, full: u32) -> usize {
        ((f64::from(full) * self.width_multiplier).round() as usize).max(1)
    }

    /// A channel plan at this width: every count scaled, the stem's input the data's channels.
    pub fn proxy(&self, plan: &[LayerChannels]) -> Vec<ProxyChannels> {
        plan.iter()
            .enumerate()
            .map(|(i, c)| ProxyChannels {
                input: if i == 0 { self.in_channels } else { self.channels(c.input) },
                output: self.channels(c.output),
                expanded: c.expanded.map(|e| self.channels(e)),
                se_hidden: c.se_hidden.map(|h| self.channels(h)),
                present: c.present,
            })
            .collect()
    }
}

/// One layer's channels at the proxy width (see [`LayerChannels`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyChannels {
    /// Input channels.
    pub input: usize,
    /// Output channels.
    pub output: usize,
    /// A bottleneck's expanded channels.
    pub expanded: Option<usize>,
    /// A bottleneck's SE hidden channels (when it has an SE slot).
    pub se_hidden: Option<usize>,
    /// False when the layer is skipped.
    pub present: bool,
}

/// Per-decision weights of one step: one-hot for a sampled choice, uniform `1/N` for an op
/// decision under op warmup. Filter decisions are always one-hot (filter warmup picks the
/// largest choice).
pub type Selection = [Vec<f32>];

fn argmax(w: &[f32]) -> usize {
    w.iter()
        .enumerate()
        .fold((0, f32::MIN), |best, (i, &v)| if v > best.1 { (i, v) } else { best })
        .0
}

/// One layer: its unit and its largest channels (the tensors' sizes).
#[derive(Debug)]
struct Layer {
    unit: Box<dyn SuperUnit>,
    max: ProxyChannels,
}

/// The supernet: its layers and the var map that owns every weight.
pub struct Supernet {
    space: SearchSpace,
    geometry: ProxyGeometry,
    layers: Vec<Layer>,
    classifier: (Var, Var),
    vars: VarMap,
    device: Device,
}

impl std::fmt::Debug for Supernet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supernet")
            .field("space", &self.space.name)
            .field("geometry", &self.geometry)
            .field("layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}

/// Output of a forward pass.
#[derive(Debug)]
pub struct Forward {
    /// Logits `[N, classes]`.
    pub logits: Tensor,
    /// `Σ ‖W ⊙ mask‖²` over conv and depthwise kernels, each term weighted by its switch weight.
    pub l2: Tensor,
}

/// Proxy strides: the deployment strides with the first stride-2 layers made stride 1 until the
/// last stage is at least 2×2 at `input_hw`.
pub fn proxy_strides(space: &SearchSpace, input_hw: usize) -> Vec<usize> {
    let mut strides: Vec<usize> =
        space.blocks.iter().flat_map(|b| b.layers.iter().map(|l| l.stride() as usize)).collect();
    let last = |s: &[usize]| s.iter().fold(input_hw, |hw, &st| hw.div_ceil(st));
    while last(&strides) < 2 {
        match strides.iter().position(|&s| s > 1) {
            Some(i) => strides[i] = 1,
            None => break,
        }
    }
    strides
}

impl Supernet {
    /// Builds the supernet of `space` at `geometry`, weights drawn from `rng` (deterministic).
    pub fn new(
        space: &SearchSpace,
        geometry: ProxyGeometry,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Supernet> {
        let vars = VarMap::new();
        let strides = proxy_strides(space, geometry.input_hw);
        let max_plan = geometry.proxy(&space.max_channel_plan());
        let mut init = Init { rng, vars: &vars, device };
        let mut layers = Vec::new();
        let specs = space.blocks.iter().flat_map(|b| {
            b.layers.iter().enumerate().map(move |(i, spec)| (format!("{}.layer{i}", b.name), spec))
        });
        for (((name, spec), &stride), max) in specs.zip(&strides).zip(max_plan) {
            let unit = units::build(&mut init, space, spec, &name, stride, &max)?;
            layers.push(Layer { unit, max });
        }
        let cin = layers.last().map_or(geometry.in_channels, |l| l.max.output);
        let classifier = (
            init.var("classifier.weight".into(), &[geometry.classes, cin], 0.01, false)?,
            init.constant("classifier.bias".into(), geometry.classes, 0.0)?,
        );
        Ok(Supernet {
            space: space.clone(),
            geometry,
            layers,
            classifier,
            vars,
            device: device.clone(),
        })
    }

    /// The var map holding every weight (names like `block2.layer0.expand.weight`).
    pub fn vars(&self) -> &VarMap {
        &self.vars
    }

    /// The geometry.
    pub fn geometry(&self) -> &ProxyGeometry {
        &self.geometry
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Number of scalar weights.
    pub fn num_weights(&self) -> usize {
        self.vars.all_vars().iter().map(|v| v.elem_count()).sum()
    }

    /// Forward pass of images `[N, C, H, W]` under a selection (one weight vector per decision),
    /// recording the graph for a backward pass.
    pub fn forward(&self, x: &Tensor, sel: &Selection) -> Result<Forward> {
        match one_hot_indices(sel) {
            Some(indices) => self.run_narrowed(x, &indices, true),
            None => self.run(x, sel, true),
        }
    }

    /// Forward-only pass (for Q(α) and evaluation): logits of the same network as
    /// [`Supernet::forward`], but the weights enter detached, so no graph is recorded, no
    /// activation outlives the layer that reads it, and no L2 term is computed.
    pub fn forward_eval(&self, x: &Tensor, sel: &Selection) -> Result<Tensor> {
        match one_hot_indices(sel) {
            Some(indices) => Ok(self.run_narrowed(x, &indices, false)?.logits),
            None => Ok(self.run(x, sel, false)?.logits),
        }
    }

    /// The masked forward pass (the reference's formulation: every layer at its largest
    /// width, channels beyond the selection zeroed by masks), whatever the selection; the
    /// public passes take it only when a selection is not one-hot (op warmup).
    pub fn forward_masked(&self, x: &Tensor, sel: &Selection, train: bool) -> Result<Forward> {
        self.run(x, sel, train)
    }

    /// A one-hot selection's pass on the architecture's own widths: every weight narrowed to
    /// the selected channels ([`Supernet::extract`]) and run with the custom ops and batch
    /// statistics. The masks' zeros contribute nothing to any sum, so this is the masked pass
    /// without the work on masked channels (tested equal, logits and gradients); the gradient
    /// of a variable outside the selection is zero either way.
    fn run_narrowed(&self, x: &Tensor, indices: &[usize], train: bool) -> Result<Forward> {
        let layers = self.extract_with(indices, !train)?;
        let logits = super::plain::forward_with(&layers, x, &mut BatchStatOps)?;
        let l2 = if train {
            let mut terms = Vec::new();
            for w in layers.iter().flat_map(super::PlainLayer::kernels) {
                terms.push(w.sqr()?.sum_all()?);
            }
            match terms.len() {
                0 => Tensor::zeros((), DType::F32, &self.device)?,
                _ => Tensor::stack(&terms, 0)?.sum_all()?,
            }
        } else {
            Tensor::zeros((), DType::F32, &self.device)?
        };
        Ok(Forward { logits, l2 })
    }

    fn run(&self, x: &Tensor, sel: &Selection, train: bool) -> Result<Forward> {
        let dev = &self.device;
        // The channels of the selection's argmax (filter decisions are one-hot).
        let chosen = self.geometry.proxy(&self.space.channel_plan(&|d| argmax(&sel[d])));
        let mut pass = Pass { train, dev, l2: Vec::new() };
        let mut x = x.clone();
        let mut pooled = false;
        for (layer, c) in self.layers.iter().zip(&chosen) {
            let widths = Widths::new(c, &layer.max, dev)?;
            x = layer.unit.forward(&mut pass, &x, sel, &widths)?;
            pooled |= layer.unit.pools();
        }
        if !pooled {
            x = x.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?;
        }
        let feats = x.flatten_from(1)?;
        let (w, b) = &self.classifier;
        let logits = feats.matmul(&pass.t(w).t()?)?.broadcast_add(&pass.t(b))?;
        let l2 = match pass.l2.len() {
            0 => Tensor::zeros((), DType::F32, dev)?,
            _ => Tensor::stack(&pass.l2, 0)?.sum_all()?,
        };
        Ok(Forward { logits, l2 })
    }

    /// The plain network of one architecture: every weight sliced to the selected channels, no
    /// masks, skipped layers left out. Its forward pass (with batch-statistics BN) equals the
    /// supernet's under the architecture's one-hot selection.
    pub fn extract(&self, indices: &[usize]) -> Result<Vec<super::PlainLayer>> {
        self.extract_with(indices, false)
    }

    /// [`Supernet::extract`], its tensors detached from the variables when `detach`.
    fn extract_with(&self, indices: &[usize], detach: bool) -> Result<Vec<super::PlainLayer>> {
        let r = Read { detach };
        let chosen = self.geometry.proxy(&self.space.channel_plan(&|d| indices[d]));
        let mut out = Vec::new();
        for (layer, c) in self.layers.iter().zip(&chosen) {
            if c.present {
                out.push(layer.unit.extract(r, indices, c)?);
            }
        }
        // The classifier reads the last layer's output.
        let cin = chosen.last().map_or(self.geometry.in_channels, |c| c.output);
        let (w, b) = &self.classifier;
        out.push(super::PlainLayer::Classifier {
            weight: r.var(w).narrow(1, 0, cin)?.contiguous()?,
            bias: r.var(b),
        });
        Ok(out)
    }

    /// The supernet's structure as JSON (max channel counts, kernels, strides, switches), for
    /// re-implementations such as the PyTorch twin in `scripts/bench/supernet_torch.py`.
    pub fn describe(&self) -> Result<serde_json::Value> {
        let layers = self.layers.iter().map(|l| l.unit.describe()).collect::<Result<Vec<_>>>()?;
        let (co, ci) = self.classifier.0.as_tensor().dims2()?;
        Ok(serde_json::json!({
            "space": self.space.name,
            "geometry": self.geometry,
            "layers": layers,
            "classifier": {"cin_max": ci, "classes": co},
        }))
    }

    /// What a selection enables in every layer: selected channels and switch weights, in the
    /// order of [`Supernet::describe`]'s layers.
    pub fn describe_selection(&self, sel: &Selection) -> Result<Vec<serde_json::Value>> {
        let chosen = self.geometry.proxy(&self.space.channel_plan(&|d| argmax(&sel[d])));
        let mut out = Vec::new();
        for (layer, c) in self.layers.iter().zip(&chosen) {
            let mut v = serde_json::json!({"in_sel": c.input, "out_sel": c.output});
            layer.unit.describe_selection(sel, c, &mut v);
            out.push(v);
        }
        Ok(out)
    }
}

/// The choice of every decision when each selection is one-hot (exactly one 1, zeros
/// elsewhere); `None` under op warmup (averaged options).
fn one_hot_indices(sel: &Selection) -> Option<Vec<usize>> {
    sel.iter()
        .map(|w| {
            let ones = w.iter().filter(|&&v| v == 1.0).count();
            let zeros = w.iter().filter(|&&v| v == 0.0).count();
            (ones == 1 && ones + zeros == w.len()).then(|| argmax(w))
        })
        .collect()
}

/// The custom CPU ops with batch statistics in every BN, activations fused into it: what the
/// masked pass runs, for a plain network.
struct BatchStatOps;

impl super::plain::PlainOps for BatchStatOps {
    fn bn(&mut self, x: &Tensor, (g, b): &(Tensor, Tensor)) -> Result<Tensor> {
        batch_norm_act(x, g, b, BN_EPS, Activation::None)
    }
    fn bn_act(&mut self, x: &Tensor, (g, b): &(Tensor, Tensor), a: Activation) -> Result<Tensor> {
        batch_norm_act(x, g, b, BN_EPS, a)
    }
}
