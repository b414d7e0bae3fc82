//! The supernet's units, one file each: the stem conv, the separable conv, the inverted
//! bottleneck and the head conv. A unit owns its weights at the largest channels and knows its
//! masked pass (every switch summed under a selection's weights), its plain layer for one
//! architecture, and its description; the channels come from the plan
//! ([`crate::space::SearchSpace::channel_plan`]). Adding a layer kind is a file here and an arm
//! in [`build`].

mod bottleneck;
mod head;
mod sep;
mod stem;

use candle_core::{Device, Result, Tensor, Var};
use candle_nn::VarMap;
use latency_tables::Activation;

use super::net::{ProxyChannels, Selection, BN_EPS};
use super::ops::batch_norm_act;
use super::PlainLayer;
use crate::rng::Rng;
use crate::space::{DecisionKind, LayerSpec, Param, SearchSpace};

/// One unit of the supernet.
pub(super) trait SuperUnit: std::fmt::Debug + Send + Sync {
    /// The masked pass of `x` under `sel` at the widths `w`.
    fn forward(
        &self,
        pass: &mut Pass<'_>,
        x: &Tensor,
        sel: &Selection,
        w: &Widths<'_>,
    ) -> Result<Tensor>;
    /// Whether the unit ends with global pooling.
    fn pools(&self) -> bool {
        false
    }
    /// The plain layer of the architecture `indices` at its channels `c` (a present layer).
    fn extract(&self, r: Read, indices: &[usize], c: &ProxyChannels) -> Result<PlainLayer>;
    /// The unit's structure (largest channels, kernels, stride, switches) as JSON.
    fn describe(&self) -> Result<serde_json::Value>;
    /// What `sel` enables in the unit, added to `v`.
    fn describe_selection(&self, _sel: &Selection, _c: &ProxyChannels, _v: &mut serde_json::Value) {
    }
}

/// The unit of layer `spec`, named `name`, its weights at the largest channels `max`.
pub(super) fn build(
    init: &mut Init<'_>,
    space: &SearchSpace,
    spec: &LayerSpec,
    name: &str,
    stride: usize,
    max: &ProxyChannels,
) -> Result<Box<dyn SuperUnit>> {
    Ok(match *spec {
        LayerSpec::Conv { kernel, act, .. } => {
            Box::new(stem::Stem::new(init, space, name, kernel, stride, act, max)?)
        }
        LayerSpec::SepConv { kernel, skip, act, .. } => {
            Box::new(sep::Sep::new(init, space, name, kernel, skip, stride, act, max)?)
        }
        LayerSpec::Bottleneck { kernel, se, skip, act, .. } => Box::new(
            bottleneck::Bottleneck::new(init, space, name, kernel, se, skip, stride, act, max)?,
        ),
        LayerSpec::Head { act, pool, bn } => {
            Box::new(head::Head::new(init, name, act, pool, bn, max)?)
        }
    })
}

/// One masked pass: whether it records the graph and the L2 terms, and those terms.
pub(super) struct Pass<'a> {
    /// Training: the graph is recorded and the L2 terms collected.
    pub train: bool,
    /// The device.
    pub dev: &'a Device,
    /// `‖W ⊙ mask‖²` terms, each weighted by its switch weight.
    pub l2: Vec<Tensor>,
}

impl Pass<'_> {
    /// A weight as the graph sees it: the variable itself, or a detached view (no graph).
    pub fn t(&self, v: &Var) -> Tensor {
        Read { detach: !self.train }.var(v)
    }

    /// Records one L2 term (training only).
    pub fn l2(&mut self, term: impl FnOnce() -> Result<Tensor>) -> Result<()> {
        if self.train {
            self.l2.push(term()?);
        }
        Ok(())
    }

    /// `‖w‖² · weight` as an L2 term.
    pub fn l2_of(&mut self, w: &Tensor, weight: f32) -> Result<()> {
        self.l2(|| w.sqr()?.sum_all()?.affine(f64::from(weight), 0.0))
    }

    /// Masked stateless BN (γ, β multiplied by the channel mask), then `act`, as one op.
    pub fn bn(&self, x: &Tensor, b: &Bn, m: &Tensor, act: Activation) -> Result<Tensor> {
        batch_norm_act(x, &self.t(&b.gamma).mul(m)?, &self.t(&b.beta).mul(m)?, BN_EPS, act)
    }
}

/// A layer's channels in the masked pass: the selection's, the largest, and their masks.
pub(super) struct Widths<'a> {
    /// The selection's channels.
    pub chosen: &'a ProxyChannels,
    /// The largest channels (the tensors' sizes).
    pub max: &'a ProxyChannels,
    /// Mask of the selected input channels.
    pub imask: Tensor,
    /// Mask of the selected output channels.
    pub omask: Tensor,
}

impl<'a> Widths<'a> {
    /// The widths of a layer with these channels.
    pub fn new(chosen: &'a ProxyChannels, max: &'a ProxyChannels, dev: &Device) -> Result<Self> {
        Ok(Widths {
            chosen,
            max,
            imask: mask(chosen.input, max.input, dev)?,
            omask: mask(chosen.output, max.output, dev)?,
        })
    }
}

/// Batch-norm parameters.
#[derive(Debug)]
pub(super) struct Bn {
    gamma: Var,
    beta: Var,
}

/// Draws the weights, deterministically, into the var map.
pub(super) struct Init<'a> {
    /// The generator.
    pub rng: &'a mut Rng,
    /// Where the weights go.
    pub vars: &'a VarMap,
    /// The device.
    pub device: &'a Device,
}

impl Init<'_> {
    /// A normal (or truncated normal) weight of `std`.
    pub fn var(&mut self, name: String, shape: &[usize], std: f64, truncated: bool) -> Result<Var> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                let z = if truncated { self.rng.truncated_normal() } else { self.rng.normal() };
                (z * std) as f32
            })
            .collect();
        self.insert(name, Tensor::from_vec(v, shape, self.device)?)
    }

    /// A constant vector.
    pub fn constant(&mut self, name: String, n: usize, value: f32) -> Result<Var> {
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
    pub fn he(&mut self, name: String, shape: &[usize], fan_in: usize) -> Result<Var> {
        self.var(name, shape, (2.0 / fan_in as f64).sqrt() / 0.879_625_8, true)
    }

    /// BN parameters of `c` channels (γ = 1, β = 0).
    pub fn bn(&mut self, name: &str, c: usize) -> Result<Bn> {
        Ok(Bn {
            gamma: self.constant(format!("{name}.bn.gamma"), c, 1.0)?,
            beta: self.constant(format!("{name}.bn.beta"), c, 0.0)?,
        })
    }

    /// One depthwise kernel + BN per kernel choice.
    pub fn depthwise(&mut self, name: &str, kernels: &[u32], c: usize) -> Result<Vec<(Var, Bn)>> {
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

/// A variable as a network reads it: tracked by the graph, or detached (forward only).
#[derive(Debug, Clone, Copy)]
pub(super) struct Read {
    /// Detached from the variables.
    pub detach: bool,
}

impl Read {
    /// The whole variable.
    pub fn var(self, w: &Var) -> Tensor {
        if self.detach {
            w.as_tensor().detach()
        } else {
            w.as_tensor().clone()
        }
    }

    /// The first `rows` × `cols` of a 2+-dimensional weight.
    pub fn narrow2(self, w: &Var, rows: usize, cols: usize) -> Result<Tensor> {
        self.var(w).narrow(0, 0, rows)?.narrow(1, 0, cols)?.contiguous()
    }

    /// The first `n` rows.
    pub fn narrow1(self, w: &Var, n: usize) -> Result<Tensor> {
        self.var(w).narrow(0, 0, n)?.contiguous()
    }

    /// BN parameters of the first `n` channels.
    pub fn bn(self, b: &Bn, n: usize) -> Result<(Tensor, Tensor)> {
        Ok((self.narrow1(&b.gamma, n)?, self.narrow1(&b.beta, n)?))
    }
}

/// The kernel sizes a kernel parameter offers and its decision, if searched.
pub(super) fn kernel_choices(space: &SearchSpace, p: Param) -> (Vec<u32>, Option<usize>) {
    match p {
        Param::Fixed(k) => (vec![k], None),
        Param::Decision(d) => match &space.decisions[d].kind {
            DecisionKind::Kernel(v) => (v.clone(), Some(d)),
            _ => (vec![space.decisions[d].value(0)], Some(d)),
        },
    }
}

/// A switch's branch weights: the decision's, or the one branch of a fixed choice.
pub(super) fn switch(decision: Option<usize>, sel: &Selection) -> Vec<f32> {
    decision.map_or(vec![1.0], |d| sel[d].clone())
}

/// A skippable layer's presence weight (1 when not skippable).
pub(super) fn presence(skip: Option<usize>, sel: &Selection) -> f32 {
    skip.map_or(1.0, |d| sel[d][0])
}

/// A 0/1 mask of `max` channels with the first `n` set.
pub(super) fn mask(n: usize, max: usize, dev: &Device) -> Result<Tensor> {
    let v: Vec<f32> = (0..max).map(|i| if i < n { 1.0 } else { 0.0 }).collect();
    Tensor::from_vec(v, max, dev)
}

/// `w ⊙ (out_mask ⊗ in_mask)` for a `[Cout, Cin, …]` kernel.
pub(super) fn mask_kernel(w: &Tensor, out: &Tensor, inp: &Tensor) -> Result<Tensor> {
    let outer = out.unsqueeze(1)?.broadcast_mul(&inp.unsqueeze(0)?)?;
    let mut shape = outer.dims().to_vec();
    shape.resize(w.rank(), 1);
    w.broadcast_mul(&outer.reshape(shape)?)
}

/// `acc + w·h`.
pub(super) fn add_weighted(acc: Option<Tensor>, h: &Tensor, w: f32) -> Result<Tensor> {
    let h = if w == 1.0 { h.clone() } else { h.affine(f64::from(w), 0.0)? };
    match acc {
        None => Ok(h),
        Some(a) => a.add(&h),
    }
}

/// The masked pass of a unit that may be skippable: `x + present·body(present)` when it is
/// (body not run when skipped), `body(1)` otherwise.
pub(super) fn optional(
    skip: Option<usize>,
    sel: &Selection,
    x: &Tensor,
    body: impl FnOnce(f32) -> Result<Tensor>,
) -> Result<Tensor> {
    let present = presence(skip, sel);
    if skip.is_none() {
        return body(present);
    }
    if present == 0.0 {
        return Ok(x.clone());
    }
    x.add(&add_weighted(None, &body(present)?, present)?)
}

/// The kernel sizes of per-kernel depthwise weights `[C, k, k]`.
pub(super) fn kernel_sizes(ks: &[(Var, Bn)]) -> Result<Vec<usize>> {
    ks.iter().map(|(w, _)| w.as_tensor().dim(w.rank() - 1)).collect()
}
