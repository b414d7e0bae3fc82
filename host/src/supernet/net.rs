//! The weight-sharing supernet of a search space (tunas-spec §4.3–4.6), at proxy geometry.
//!
//! - Shared 1×1 expansion and projection convs (+ BN) across kernel sizes and SE; one depthwise
//!   conv + BN per kernel size; one SE weight set per layer; one stem kernel per kernel choice;
//!   one complete separable conv (depthwise + BN + act, pointwise + BN) per kernel choice.
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

use super::ops::{batch_norm_act, conv1x1, conv2d_same, depthwise_conv2d};
use crate::rng::Rng;
use crate::space::{DecisionKind, LayerChannels, LayerSpec, Param, SearchSpace};

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

#[derive(Debug)]
struct Bn {
    gamma: Var,
    beta: Var,
}

#[derive(Debug)]
struct Se {
    w1: Var,
    b1: Var,
    w2: Var,
    b2: Var,
}

#[derive(Debug)]
enum Unit {
    Stem {
        kernels: Vec<(Var, Bn)>,
        kernel: Option<usize>,
        stride: usize,
        act: Activation,
    },
    /// One complete separable conv per kernel choice (depthwise + BN + act, pointwise + BN),
    /// switched as a whole (tunas-spec §4.3: the separable conv is not collapsed).
    Sep {
        branches: Vec<SepBranch>,
        kernel: Option<usize>,
        skip: Option<usize>,
        stride: usize,
        act: Activation,
    },
    Bottleneck {
        expand: Var,
        expand_bn: Bn,
        kernels: Vec<(Var, Bn)>,
        kernel: usize,
        se: Option<(usize, Se)>,
        skip: Option<usize>,
        stride: usize,
        act: Activation,
        proj: Var,
        proj_bn: Bn,
    },
    Head {
        conv: Var,
        /// BN after the conv, or the conv's bias (tunas-spec §1.6: V3's last conv).
        norm: HeadNorm,
        act: Activation,
        pool: bool,
    },
}

#[derive(Debug)]
enum HeadNorm {
    Bn(Bn),
    Bias(Var),
}

#[derive(Debug)]
struct SepBranch {
    dw: Var,
    dw_bn: Bn,
    proj: Var,
    proj_bn: Bn,
}

#[derive(Debug)]
struct Layer {
    unit: Unit,
    /// The largest channels (the tensors' sizes).
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

struct Init<'a> {
    rng: &'a mut Rng,
    vars: &'a VarMap,
    device: &'a Device,
}

impl Init<'_> {
    fn var(&mut self, name: String, shape: &[usize], std: f64, truncated: bool) -> Result<Var> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                let z = if truncated { self.rng.truncated_normal() } else { self.rng.normal() };
                (z * std) as f32
            })
            .collect();
        self.insert(name, Tensor::from_vec(v, shape, self.device)?)
    }

    fn constant(&mut self, name: String, n: usize, value: f32) -> Result<Var> {
        self.insert(name, Tensor::full(value, n, self.device)?)
    }

    fn insert(&mut self, name: String, t: Tensor) -> Result<Var> {
        let var = Var::from_tensor(&t)?;
        let mut data = self.vars.data().lock().map_err(|_| candle_core::Error::msg("poisoned"))?;
        if data.insert(name.clone(), var.clone()).is_some() {
            candle_core::bail!("supernet: two weights named {name}");
        }
        Ok(var)
    }

    /// `he_normal`: truncated normal, std = sqrt(2 / fan_in) / 0.8796.
    fn he(&mut self, name: String, shape: &[usize], fan_in: usize) -> Result<Var> {
        self.var(name, shape, (2.0 / fan_in as f64).sqrt() / 0.879_625_8, true)
    }

    fn bn(&mut self, name: &str, c: usize) -> Result<Bn> {
        Ok(Bn {
            gamma: self.constant(format!("{name}.bn.gamma"), c, 1.0)?,
            beta: self.constant(format!("{name}.bn.beta"), c, 0.0)?,
        })
    }

    /// One depthwise kernel + BN per kernel choice.
    fn depthwise(&mut self, name: &str, kernels: &[u32], c: usize) -> Result<Vec<(Var, Bn)>> {
        kernels
            .iter()
            .map(|&k| {
                let k = k as usize;
                let w = self.he(format!("{name}.dw{k}.weight"), &[c, k, k], k * k)?;
                Ok((w, self.bn(&format!("{name}.dw{k}"), c)?))
            })
            .collect()
    }
}

fn kernel_choices(space: &SearchSpace, p: Param) -> (Vec<u32>, Option<usize>) {
    match p {
        Param::Fixed(k) => (vec![k], None),
        Param::Decision(d) => match &space.decisions[d].kind {
            DecisionKind::Kernel(v) => (v.clone(), Some(d)),
            _ => (vec![space.decisions[d].value(0)], Some(d)),
        },
    }
}

/// Proxy strides: the deployment strides with the first stride-2 layers made stride 1 until the
/// last stage is at least 2×2 at `input_hw`.
pub fn proxy_strides(space: &SearchSpace, input_hw: usize) -> Vec<usize> {
    let mut strides: Vec<usize> = space
        .blocks
        .iter()
        .flat_map(|b| {
            b.layers.iter().map(|l| match *l {
                LayerSpec::Conv { stride, .. }
                | LayerSpec::SepConv { stride, .. }
                | LayerSpec::Bottleneck { stride, .. } => stride as usize,
                LayerSpec::Head { .. } => 1,
            })
        })
        .collect();
    let last = |s: &[usize]| s.iter().fold(input_hw, |hw, &st| hw.div_ceil(st));
    while last(&strides) < 2 {
        match strides.iter().position(|&s| s > 1) {
            Some(i) => strides[i] = 1,
            None => break,
        }
    }
    strides
}

/// A 0/1 mask of `max` channels with the first `n` set.
fn mask(n: usize, max: usize, dev: &Device) -> Result<Tensor> {
    let v: Vec<f32> = (0..max).map(|i| if i < n { 1.0 } else { 0.0 }).collect();
    Tensor::from_vec(v, max, dev)
}

/// Masked stateless BN (γ, β multiplied by the channel mask), then `act`, as one op.
fn bn(
    x: &Tensor,
    b: &Bn,
    m: &Tensor,
    act: Activation,
    t: &impl Fn(&Var) -> Tensor,
) -> Result<Tensor> {
    batch_norm_act(x, &t(&b.gamma).mul(m)?, &t(&b.beta).mul(m)?, BN_EPS, act)
}

/// Records one L2 term (the training forward only).
fn push_l2(on: bool, l2: &mut Vec<Tensor>, term: impl FnOnce() -> Result<Tensor>) -> Result<()> {
    if on {
        l2.push(term()?);
    }
    Ok(())
}

/// `w ⊙ (out_mask ⊗ in_mask)` for a `[Cout, Cin, …]` kernel.
fn mask_kernel(w: &Tensor, out: &Tensor, inp: &Tensor) -> Result<Tensor> {
    let outer = out.unsqueeze(1)?.broadcast_mul(&inp.unsqueeze(0)?)?;
    let mut shape = outer.dims().to_vec();
    shape.resize(w.rank(), 1);
    w.broadcast_mul(&outer.reshape(shape)?)
}

/// Channel state flowing through the network: proxy tensor plus the selected channel counts.
struct Flow {
    x: Tensor,
    /// Selected proxy channels.
    sel: usize,
    /// Max proxy channels (the tensor's channel dimension).
    max: usize,
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
        let mut init = Init { rng, vars: &vars, device };
        let g = &geometry;
        let mut layers = Vec::new();
        let max_plan = g.proxy(&space.max_channel_plan());
        let mut cin_max = g.in_channels;
        let mut flat = 0;
        for block in &space.blocks {
            for (i, spec) in block.layers.iter().enumerate() {
                let name = format!("{}.layer{i}", block.name);
                let stride = strides[flat];
                let max = max_plan[flat];
                let cout_max = max.output;
                flat += 1;
                let unit = match *spec {
                    LayerSpec::Conv { kernel, act, .. } => {
                        let (ks, dec) = kernel_choices(space, kernel);
                        let kernels = ks
                            .iter()
                            .map(|&k| {
                                let k = k as usize;
                                let w = init.he(
                                    format!("{name}.conv{k}.weight"),
                                    &[cout_max, cin_max, k, k],
                                    k * k * cin_max,
                                )?;
                                Ok((w, init.bn(&format!("{name}.conv{k}"), cout_max)?))
                            })
                            .collect::<Result<Vec<_>>>()?;
                        Unit::Stem { kernels, kernel: dec, stride, act }
                    }
                    LayerSpec::SepConv { kernel, skip, act, .. } => {
                        let (ks, dec) = kernel_choices(space, kernel);
                        let branches = init
                            .depthwise(&name, &ks, cin_max)?
                            .into_iter()
                            .zip(&ks)
                            .map(|((dw, dw_bn), k)| {
                                let pname = format!("{name}.dw{k}.project");
                                Ok(SepBranch {
                                    dw,
                                    dw_bn,
                                    proj: init.he(
                                        format!("{pname}.weight"),
                                        &[cout_max, cin_max],
                                        cin_max,
                                    )?,
                                    proj_bn: init.bn(&pname, cout_max)?,
                                })
                            })
                            .collect::<Result<Vec<_>>>()?;
                        Unit::Sep { branches, kernel: dec, skip, stride, act }
                    }
                    LayerSpec::Bottleneck { kernel, se, skip, act, .. } => {
                        let e_max = max.expanded.unwrap_or(cin_max);
                        let (ks, _) = kernel_choices(space, Param::Decision(kernel));
                        let se = match se {
                            Some(d) => {
                                let h = max.se_hidden.unwrap_or(1);
                                let s = Se {
                                    w1: init.he(
                                        format!("{name}.se.reduce.weight"),
                                        &[h, e_max],
                                        e_max,
                                    )?,
                                    b1: init.constant(format!("{name}.se.reduce.bias"), h, 0.0)?,
                                    w2: init.he(
                                        format!("{name}.se.expand.weight"),
                                        &[e_max, h],
                                        h,
                                    )?,
                                    b2: init.constant(
                                        format!("{name}.se.expand.bias"),
                                        e_max,
                                        0.0,
                                    )?,
                                };
                                Some((d, s))
                            }
                            None => None,
                        };
                        Unit::Bottleneck {
                            expand: init.he(
                                format!("{name}.expand.weight"),
                                &[e_max, cin_max],
                                cin_max,
                            )?,
                            expand_bn: init.bn(&format!("{name}.expand"), e_max)?,
                            kernels: init.depthwise(&name, &ks, e_max)?,
                            kernel,
                            se,
                            skip,
                            stride,
                            act,
                            proj: init.he(
                                format!("{name}.project.weight"),
                                &[cout_max, e_max],
                                e_max,
                            )?,
                            proj_bn: init.bn(&format!("{name}.project"), cout_max)?,
                        }
                    }
                    LayerSpec::Head { act, pool, bn } => Unit::Head {
                        conv: init.he(
                            format!("{name}.conv.weight"),
                            &[cout_max, cin_max],
                            cin_max,
                        )?,
                        norm: if bn {
                            HeadNorm::Bn(init.bn(&name, cout_max)?)
                        } else {
                            HeadNorm::Bias(init.constant(
                                format!("{name}.conv.bias"),
                                cout_max,
                                0.0,
                            )?)
                        },
                        act,
                        pool,
                    },
                };
                layers.push(Layer { unit, max });
                cin_max = cout_max;
            }
        }
        let classifier = (
            init.var("classifier.weight".into(), &[g.classes, cin_max], 0.01, false)?,
            init.constant("classifier.bias".into(), g.classes, 0.0)?,
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
        // A weight as the graph sees it: the variable itself, or a detached view (no graph).
        let t = |v: &Var| if train { v.as_tensor().clone() } else { v.as_tensor().detach() };
        let l2_on = train;
        let dev = &self.device;
        let g = &self.geometry;
        let space = &self.space;
        // The channels of the selection's argmax (filter decisions are one-hot).
        let chosen = g.proxy(&space.channel_plan(&|d| argmax(&sel[d])));
        let mut l2 = Vec::new();
        let mut flow = Flow { x: x.clone(), sel: g.in_channels, max: g.in_channels };
        let mut pooled = false;
        for (layer, c) in self.layers.iter().zip(&chosen) {
            let (out_sel, out_max) = (c.output, layer.max.output);
            let omask = mask(out_sel, out_max, dev)?;
            let imask = mask(flow.sel, flow.max, dev)?;
            let x = &flow.x;
            let y = match &layer.unit {
                Unit::Stem { kernels, kernel, stride, act } => {
                    let weights = kernel.map_or(vec![1.0], |d| sel[d].clone());
                    let mut acc: Option<Tensor> = None;
                    for ((w, b), &sw) in kernels.iter().zip(&weights) {
                        if sw == 0.0 {
                            continue;
                        }
                        let wm = mask_kernel(&t(w), &omask, &imask)?;
                        push_l2(l2_on, &mut l2, || {
                            wm.sqr()?.sum_all()?.affine(f64::from(sw), 0.0)
                        })?;
                        let h = bn(&conv2d_same(x, &wm, *stride)?, b, &omask, *act, &t)?;
                        acc = Some(add_weighted(acc, &h, sw)?);
                    }
                    acc.ok_or_else(|| candle_core::Error::msg("stem: no kernel enabled"))?
                }
                Unit::Sep { branches, kernel, skip, stride, act } => {
                    let present = skip.map_or(1.0, |d| sel[d][0]);
                    let body = |l2: &mut Vec<Tensor>| -> Result<Tensor> {
                        let weights = kernel.map_or(vec![1.0], |d| sel[d].clone());
                        let cmask = imask.reshape((flow.max, 1, 1))?;
                        let mut acc: Option<Tensor> = None;
                        for (b, &sw) in branches.iter().zip(&weights) {
                            if sw == 0.0 {
                                continue;
                            }
                            let l2w = f64::from(sw * present);
                            let wm = t(&b.dw).broadcast_mul(&cmask)?;
                            push_l2(l2_on, l2, || wm.sqr()?.sum_all()?.affine(l2w, 0.0))?;
                            let h = depthwise_conv2d(x, &wm, *stride)?;
                            let h = bn(&h, &b.dw_bn, &imask, *act, &t)?;
                            let pm = mask_kernel(&t(&b.proj), &omask, &imask)?;
                            push_l2(l2_on, l2, || pm.sqr()?.sum_all()?.affine(l2w, 0.0))?;
                            let h =
                                bn(&conv1x1(&h, &pm)?, &b.proj_bn, &omask, Activation::None, &t)?;
                            acc = Some(add_weighted(acc, &h, sw)?);
                        }
                        acc.ok_or_else(|| candle_core::Error::msg("sep: no kernel"))
                    };
                    residual(x, skip.is_some(), present, || body(&mut l2))?
                }
                Unit::Bottleneck {
                    expand,
                    expand_bn,
                    kernels,
                    kernel,
                    se,
                    skip,
                    stride,
                    act,
                    proj,
                    proj_bn,
                } => {
                    let present = skip.map_or(1.0, |d| sel[d][0]);
                    let e_max = t(expand).dim(0)?;
                    let emask = mask(c.expanded.unwrap_or(e_max), e_max, dev)?;
                    let body = |l2: &mut Vec<Tensor>| -> Result<Tensor> {
                        let xm = mask_kernel(&t(expand), &emask, &imask)?;
                        push_l2(l2_on, l2, || {
                            xm.sqr()?.sum_all()?.affine(f64::from(present), 0.0)
                        })?;
                        let h = bn(&conv1x1(x, &xm)?, expand_bn, &emask, *act, &t)?;
                        let cmask = emask.reshape((e_max, 1, 1))?;
                        let mut acc: Option<Tensor> = None;
                        for ((w, b), &sw) in kernels.iter().zip(&sel[*kernel]) {
                            if sw == 0.0 {
                                continue;
                            }
                            let wm = t(w).broadcast_mul(&cmask)?;
                            push_l2(l2_on, l2, || {
                                wm.sqr()?.sum_all()?.affine(f64::from(sw * present), 0.0)
                            })?;
                            let d = depthwise_conv2d(&h, &wm, *stride)?;
                            let d = bn(&d, b, &emask, *act, &t)?;
                            acc = Some(add_weighted(acc, &d, sw)?);
                        }
                        let mut h = acc.ok_or_else(|| candle_core::Error::msg("ib: no kernel"))?;
                        if let Some((d, s)) = se {
                            let (off, on) = (sel[*d][0], sel[*d][1]);
                            let hid = c.se_hidden.unwrap_or(1);
                            let hmax = s.b1.dims1()?;
                            let hmask = mask(hid, hmax, dev)?;
                            let mut out: Option<Tensor> = None;
                            if off != 0.0 {
                                out = Some(add_weighted(None, &h, off)?);
                            }
                            if on != 0.0 {
                                let w1 = mask_kernel(&t(&s.w1), &hmask, &emask)?;
                                let w2 = mask_kernel(&t(&s.w2), &emask, &hmask)?;
                                let sw = f64::from(on * present);
                                push_l2(l2_on, l2, || w1.sqr()?.sum_all()?.affine(sw, 0.0))?;
                                push_l2(l2_on, l2, || w2.sqr()?.sum_all()?.affine(sw, 0.0))?;
                                let b1 = t(&s.b1).mul(&hmask)?;
                                let b2 = t(&s.b2).mul(&emask)?;
                                let pooled = h.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?;
                                let z = conv1x1(&pooled, &w1)?
                                    .broadcast_add(&b1.reshape((1, hmax, 1, 1))?)?
                                    .relu()?;
                                let gate = candle_nn::ops::sigmoid(
                                    &conv1x1(&z, &w2)?
                                        .broadcast_add(&b2.reshape((1, e_max, 1, 1))?)?,
                                )?;
                                let y = h.broadcast_mul(&gate)?;
                                out = Some(add_weighted(out, &y, on)?);
                            }
                            h = out.ok_or_else(|| candle_core::Error::msg("se: no branch"))?;
                        }
                        let pm = mask_kernel(&t(proj), &omask, &emask)?;
                        push_l2(l2_on, l2, || {
                            pm.sqr()?.sum_all()?.affine(f64::from(present), 0.0)
                        })?;
                        bn(&conv1x1(&h, &pm)?, proj_bn, &omask, Activation::None, &t)
                    };
                    residual(x, skip.is_some(), present, || body(&mut l2))?
                }
                Unit::Head { conv, norm, act, pool } => {
                    let wm = mask_kernel(&t(conv), &omask, &imask)?;
                    push_l2(l2_on, &mut l2, || wm.sqr()?.sum_all())?;
                    let h = match norm {
                        HeadNorm::Bn(b) => bn(&conv1x1(x, &wm)?, b, &omask, *act, &t)?,
                        HeadNorm::Bias(bias) => {
                            let bias = t(bias).mul(&omask)?.reshape((1, out_max, 1, 1))?;
                            super::plain::act(&conv1x1(x, &wm)?.broadcast_add(&bias)?, *act)?
                        }
                    };
                    if *pool {
                        pooled = true;
                        h.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?
                    } else {
                        h
                    }
                }
            };
            flow = Flow { x: y, sel: out_sel, max: out_max };
        }
        let mut x = flow.x;
        if !pooled {
            x = x.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?;
        }
        let feats = x.flatten_from(1)?;
        let (w, b) = &self.classifier;
        let logits = feats.matmul(&t(w).t()?)?.broadcast_add(&t(b))?;
        let l2 = match l2.len() {
            0 => Tensor::zeros((), DType::F32, dev)?,
            _ => Tensor::stack(&l2, 0)?.sum_all()?,
        };
        Ok(Forward { logits, l2 })
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

fn add_weighted(acc: Option<Tensor>, h: &Tensor, w: f32) -> Result<Tensor> {
    let h = if w == 1.0 { h.clone() } else { h.affine(f64::from(w), 0.0)? };
    match acc {
        None => Ok(h),
        Some(a) => a.add(&h),
    }
}

/// `x + present·body(x)` for a skippable layer (body not run when skipped), `body(x)` otherwise.
fn residual(
    x: &Tensor,
    skippable: bool,
    present: f32,
    body: impl FnOnce() -> Result<Tensor>,
) -> Result<Tensor> {
    if !skippable {
        return body();
    }
    if present == 0.0 {
        return Ok(x.clone());
    }
    x.add(&add_weighted(None, &body()?, present)?)
}

/// A variable as a network reads it: tracked by the graph, or detached (forward only).
#[derive(Clone, Copy)]
struct Read {
    detach: bool,
}

impl Read {
    fn var(self, w: &Var) -> Tensor {
        if self.detach {
            w.as_tensor().detach()
        } else {
            w.as_tensor().clone()
        }
    }

    fn narrow2(self, w: &Var, rows: usize, cols: usize) -> Result<Tensor> {
        self.var(w).narrow(0, 0, rows)?.narrow(1, 0, cols)?.contiguous()
    }

    fn narrow1(self, w: &Var, n: usize) -> Result<Tensor> {
        self.var(w).narrow(0, 0, n)?.contiguous()
    }

    fn bn(self, b: &Bn, n: usize) -> Result<(Tensor, Tensor)> {
        Ok((self.narrow1(&b.gamma, n)?, self.narrow1(&b.beta, n)?))
    }
}

impl Supernet {
    /// The plain network of one architecture: every weight sliced to the selected channels, no
    /// masks, skipped layers left out. Its forward pass (with batch-statistics BN) equals the
    /// supernet's under the architecture's one-hot selection.
    pub fn extract(&self, indices: &[usize]) -> Result<Vec<super::PlainLayer>> {
        self.extract_with(indices, false)
    }

    /// [`Supernet::extract`], its tensors detached from the variables when `detach`.
    fn extract_with(&self, indices: &[usize], detach: bool) -> Result<Vec<super::PlainLayer>> {
        use super::PlainLayer as P;
        let r = Read { detach };
        let g = &self.geometry;
        let space = &self.space;
        let kernel_index = |d: Option<usize>| d.map_or(0, |d| indices[d]);
        let chosen = g.proxy(&space.channel_plan(&|d| indices[d]));
        let mut out = Vec::new();
        let mut in_sel = g.in_channels;
        for (layer, c) in self.layers.iter().zip(&chosen) {
            let out_sel = c.output;
            in_sel = c.input;
            if !c.present {
                continue;
            }
            match &layer.unit {
                Unit::Stem { kernels, kernel, stride, act } => {
                    let (w, b) = &kernels[kernel_index(*kernel)];
                    out.push(P::Conv {
                        weight: r.narrow2(w, out_sel, in_sel)?,
                        bn: r.bn(b, out_sel)?,
                        stride: *stride,
                        act: *act,
                    });
                }
                Unit::Sep { branches, kernel, skip, stride, act } => {
                    let b = &branches[kernel_index(*kernel)];
                    out.push(P::Sep {
                        depthwise: r.narrow1(&b.dw, in_sel)?,
                        dw_bn: r.bn(&b.dw_bn, in_sel)?,
                        stride: *stride,
                        act: *act,
                        project: r.narrow2(&b.proj, out_sel, in_sel)?,
                        proj_bn: r.bn(&b.proj_bn, out_sel)?,
                        residual: skip.is_some(),
                    });
                }
                Unit::Bottleneck {
                    expand,
                    expand_bn,
                    kernels,
                    kernel,
                    se,
                    skip,
                    stride,
                    act,
                    proj,
                    proj_bn,
                    ..
                } => {
                    let e = c.expanded.unwrap_or(in_sel);
                    let (w, b) = &kernels[indices[*kernel]];
                    let se = match se {
                        Some((d, s)) if indices[*d] == 1 => {
                            let h = c.se_hidden.unwrap_or(1);
                            Some((
                                r.narrow2(&s.w1, h, e)?,
                                r.narrow1(&s.b1, h)?,
                                r.narrow2(&s.w2, e, h)?,
                                r.narrow1(&s.b2, e)?,
                            ))
                        }
                        _ => None,
                    };
                    out.push(P::Bottleneck {
                        expand: r.narrow2(expand, e, in_sel)?,
                        expand_bn: r.bn(expand_bn, e)?,
                        depthwise: r.narrow1(w, e)?,
                        dw_bn: r.bn(b, e)?,
                        stride: *stride,
                        act: *act,
                        se,
                        project: r.narrow2(proj, out_sel, e)?,
                        proj_bn: r.bn(proj_bn, out_sel)?,
                        residual: skip.is_some(),
                    });
                }
                Unit::Head { conv, norm, act, pool } => out.push(P::Head {
                    weight: r.narrow2(conv, out_sel, in_sel)?,
                    norm: match norm {
                        HeadNorm::Bn(b) => super::HeadNorm::Bn(r.bn(b, out_sel)?),
                        HeadNorm::Bias(bias) => super::HeadNorm::Bias(r.narrow1(bias, out_sel)?),
                    },
                    act: *act,
                    pool: *pool,
                }),
            }
        }
        // The classifier reads the last layer's output.
        in_sel = chosen.last().map_or(in_sel, |c| c.output);
        let (w, b) = &self.classifier;
        out.push(P::Classifier {
            weight: r.var(w).narrow(1, 0, in_sel)?.contiguous()?,
            bias: r.var(b),
        });
        Ok(out)
    }
}

fn act_name(a: Activation) -> &'static str {
    match a {
        Activation::Relu => "relu",
        Activation::HSwish => "hswish",
        Activation::None => "none",
    }
}

impl Supernet {
    /// The supernet's structure as JSON (max channel counts, kernels, strides, switches), for
    /// re-implementations such as the PyTorch twin in `scripts/bench/supernet_torch.py`.
    pub fn describe(&self) -> Result<serde_json::Value> {
        use serde_json::json;
        let mut layers = Vec::new();
        for layer in &self.layers {
            let kernels = |ks: &[(Var, Bn)]| -> Result<Vec<usize>> {
                ks.iter().map(|(w, _)| w.as_tensor().dim(w.rank() - 1)).collect()
            };
            layers.push(match &layer.unit {
                Unit::Stem { kernels: ks, stride, act, .. } => {
                    let (co, ci, _, _) = ks[0].0.as_tensor().dims4()?;
                    json!({"kind": "stem", "cin_max": ci, "cout_max": co, "kernels": kernels(ks)?,
                           "stride": stride, "act": act_name(*act)})
                }
                Unit::Sep { branches, skip, stride, act, .. } => {
                    let (co, ci) = branches[0].proj.as_tensor().dims2()?;
                    let ks: Vec<usize> =
                        branches.iter().map(|b| b.dw.as_tensor().dim(1)).collect::<Result<_>>()?;
                    json!({"kind": "sep", "cin_max": ci, "cout_max": co, "kernels": ks,
                           "stride": stride, "act": act_name(*act), "skippable": skip.is_some()})
                }
                Unit::Bottleneck { expand, kernels: ks, se, skip, stride, act, proj, .. } => {
                    let (e, ci) = expand.as_tensor().dims2()?;
                    let co = proj.as_tensor().dim(0)?;
                    let h = match se {
                        Some((_, s)) => Some(s.b1.as_tensor().dim(0)?),
                        None => None,
                    };
                    json!({"kind": "ib", "cin_max": ci, "e_max": e, "cout_max": co,
                           "kernels": kernels(ks)?, "se_hidden_max": h, "stride": stride,
                           "act": act_name(*act), "skippable": skip.is_some()})
                }
                Unit::Head { conv, norm, act, pool } => {
                    let (co, ci) = conv.as_tensor().dims2()?;
                    json!({"kind": "head", "cin_max": ci, "cout_max": co, "act": act_name(*act),
                           "pool": pool, "bn": matches!(norm, HeadNorm::Bn(_))})
                }
            });
        }
        let (co, ci) = self.classifier.0.as_tensor().dims2()?;
        Ok(json!({
            "space": self.space.name,
            "geometry": self.geometry,
            "layers": layers,
            "classifier": {"cin_max": ci, "classes": co},
        }))
    }

    /// What a selection enables in every layer: selected channels and switch weights, in the
    /// order of [`Supernet::describe`]'s layers.
    pub fn describe_selection(&self, sel: &Selection) -> Result<Vec<serde_json::Value>> {
        use serde_json::json;
        let g = &self.geometry;
        let space = &self.space;
        let chosen = g.proxy(&space.channel_plan(&|d| argmax(&sel[d])));
        let mut out = Vec::new();
        for (layer, c) in self.layers.iter().zip(&chosen) {
            let mut v = json!({"in_sel": c.input, "out_sel": c.output});
            match &layer.unit {
                Unit::Stem { kernel, .. } | Unit::Sep { kernel, .. } => {
                    v["kernel_weights"] = json!(kernel.map_or(vec![1.0], |d| sel[d].clone()));
                }
                _ => {}
            }
            if let Unit::Sep { skip, .. } | Unit::Bottleneck { skip, .. } = &layer.unit {
                v["present"] = json!(skip.map_or(1.0, |d| sel[d][0]));
            }
            if let Unit::Bottleneck { kernel, se, .. } = &layer.unit {
                v["e_sel"] = json!(c.expanded);
                v["kernel_weights"] = json!(sel[*kernel]);
                if let Some((d, _)) = se {
                    v["se_weights"] = json!(sel[*d]);
                    v["h_sel"] = json!(c.se_hidden);
                }
            }
            out.push(v);
        }
        Ok(out)
    }
}
