//! The stand-alone network of one architecture: the plain layers at the selected widths (no
//! masks), weights in a Candle `VarMap`, stateful batch norm with moving averages (tunas-spec §7:
//! momentum 0.99, ε = 1e-3), trained with the fast custom ops of the supernet.

use std::collections::HashMap;

use candle_core::{Device, Result, Tensor, Var};
use candle_nn::VarMap;

use crate::rng::Rng;
use crate::space::{Architecture, SearchSpace};
use crate::supernet::ops::batch_norm_train;
use crate::supernet::{forward_with, PlainLayer, PlainOps, ProxyGeometry, Supernet, BN_EPS};

/// Moving-average momentum of the BN statistics (tunas-spec §7).
pub const BN_MOMENTUM: f64 = 0.99;

/// The momentum at update `t` (0-based): `min(0.99, (1 + t)/(10 + t))`, TensorFlow's
/// `ExponentialMovingAverage(num_updates=t)`. Short trainings would otherwise evaluate with
/// statistics still dominated by their initial values (0.99^750 = 0.05% left after 750 steps,
/// but 37% after 100).
pub fn bn_momentum(t: usize) -> f64 {
    BN_MOMENTUM.min((1.0 + t as f64) / (10.0 + t as f64))
}

/// Moving mean and variance of one batch norm.
#[derive(Debug, Clone)]
pub struct Moving {
    /// `[C]`.
    pub mean: Tensor,
    /// `[C]`.
    pub var: Tensor,
}

/// A trainable plain network.
pub struct StandaloneNet {
    layers: Vec<PlainLayer>,
    vars: VarMap,
    /// One per batch norm, forward order; named `l{layer}.{part}`.
    moving: Vec<(String, Moving)>,
    /// Kernels under L2 (every conv, depthwise and SE kernel; not BN, biases or the classifier).
    decayed: Vec<Tensor>,
    geometry: ProxyGeometry,
    device: Device,
}

impl std::fmt::Debug for StandaloneNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandaloneNet")
            .field("layers", &self.layers.len())
            .field("geometry", &self.geometry)
            .finish_non_exhaustive()
    }
}

/// The initial value of a weight from its part name: `he_normal` (truncated, fan-in of the
/// plain kernel) for conv and SE kernels, variance 2/(k·k) for depthwise kernels, N(0, 0.01²)
/// for the classifier, γ = 1, β = 0, biases 0.
fn initial(part: &str, dims: &[usize], rng: &mut Rng, device: &Device) -> Result<Tensor> {
    let n: usize = dims.iter().product();
    let constant = |v: f32| Tensor::full(v, dims, device);
    if part.ends_with("bn.gamma") {
        return constant(1.0);
    }
    if part.ends_with("bn.beta") || part.ends_with(".bias") {
        return constant(0.0);
    }
    let (std, truncated) = if part == "fc.weight" {
        (0.01, false)
    } else if part == "dw.weight" {
        ((2.0 / (dims[1] * dims[2]) as f64).sqrt() / 0.879_625_8, true)
    } else {
        let fan_in: usize = dims[1..].iter().product();
        ((2.0 / fan_in as f64).sqrt() / 0.879_625_8, true)
    };
    let v: Vec<f32> = (0..n)
        .map(|_| (std * if truncated { rng.truncated_normal() } else { rng.normal() }) as f32)
        .collect();
    Tensor::from_vec(v, dims, device)
}

impl StandaloneNet {
    /// The network of `arch` at `geometry` with fresh weights from `rng`.
    pub fn new(
        space: &SearchSpace,
        arch: &Architecture,
        geometry: ProxyGeometry,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<StandaloneNet> {
        // The supernet's extraction gives the plain layers at the selected widths; its weights
        // are only shapes here and are all drawn again.
        let shapes = Supernet::new(space, geometry.clone(), &mut Rng::new(0), device)?
            .extract(&arch.indices)?;
        let vars = VarMap::new();
        let mut layers = Vec::new();
        let mut moving = Vec::new();
        let mut decayed = Vec::new();
        for (i, layer) in shapes.iter().enumerate() {
            let plain = layer.map(&mut |part, t| {
                let var = Var::from_tensor(&initial(part, t.dims(), rng, device)?)?;
                let tensor = var.as_tensor().clone();
                if part.ends_with(".weight") && part != "fc.weight" {
                    decayed.push(tensor.clone());
                }
                // `map` visits a layer's BNs in forward order ([`PlainLayer::bn_parts`]).
                if let Some(bn) = part.strip_suffix(".bn.gamma") {
                    let c = t.elem_count();
                    moving.push((
                        format!("l{i}.{bn}"),
                        Moving {
                            mean: Tensor::zeros(c, candle_core::DType::F32, device)?,
                            var: Tensor::ones(c, candle_core::DType::F32, device)?,
                        },
                    ));
                }
                vars.data()
                    .lock()
                    .map_err(|_| candle_core::Error::msg("poisoned var map"))?
                    .insert(format!("l{i}.{part}"), var);
                Ok(tensor)
            })?;
            layers.push(plain);
        }
        Ok(StandaloneNet { layers, vars, moving, decayed, geometry, device: device.clone() })
    }

    /// The layers (tensors are the trainable vars).
    pub fn layers(&self) -> &[PlainLayer] {
        &self.layers
    }

    /// The var map.
    pub fn vars(&self) -> &VarMap {
        &self.vars
    }

    /// The geometry.
    pub fn geometry(&self) -> &ProxyGeometry {
        &self.geometry
    }

    /// The device its weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Moving BN statistics, forward order, with their `l{layer}.{part}` names.
    pub fn moving(&self) -> &[(String, Moving)] {
        &self.moving
    }

    /// Number of trainable scalars.
    pub fn num_weights(&self) -> usize {
        self.vars.all_vars().iter().map(|v| v.elem_count()).sum()
    }

    /// Training forward pass: logits and `Σ‖W‖²` over the decayed kernels; BN uses the batch's
    /// statistics, which are returned for [`StandaloneNet::update_moving`].
    pub fn forward_train(&self, x: &Tensor) -> Result<(Tensor, Tensor, Vec<Moving>)> {
        let mut ops = FastOps { bn: BnMode::Train(Vec::new()) };
        let logits = forward_with(&self.layers, x, &mut ops)?;
        let batch = match ops.bn {
            BnMode::Train(batch) => batch,
            BnMode::Eval { .. } => Vec::new(),
        };
        let mut l2 = Tensor::zeros((), candle_core::DType::F32, x.device())?;
        for w in &self.decayed {
            l2 = (l2 + w.sqr()?.sum_all()?)?;
        }
        Ok((logits, l2, batch))
    }

    /// Inference forward pass with the moving statistics.
    pub fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        forward_with(
            &self.layers,
            x,
            &mut FastOps { bn: BnMode::Eval { moving: &self.moving, next: 0 } },
        )
    }

    /// `moving ← m·moving + (1 − m)·batch` (unbiased batch variance), m = [`bn_momentum`] of
    /// the update's number `t`.
    pub fn update_moving(&mut self, batch: &[Moving], t: usize) -> Result<()> {
        if batch.len() != self.moving.len() {
            candle_core::bail!(
                "{} batch statistics for {} batch norms",
                batch.len(),
                self.moving.len()
            );
        }
        let m = bn_momentum(t);
        for ((_, mv), b) in self.moving.iter_mut().zip(batch) {
            mv.mean = ((&mv.mean * m)? + (&b.mean * (1.0 - m))?)?;
            mv.var = ((&mv.var * m)? + (&b.var * (1.0 - m))?)?;
        }
        Ok(())
    }

    /// Weights and moving statistics by name (`l3.dw.weight`, `moving.l3.dw.mean`, …).
    pub fn state(&self) -> anyhow::Result<HashMap<String, Tensor>> {
        let mut out = crate::runs::var_tensors(&self.vars)?;
        for (name, mv) in &self.moving {
            out.insert(format!("moving.{name}.mean"), mv.mean.clone());
            out.insert(format!("moving.{name}.var"), mv.var.clone());
        }
        Ok(out)
    }

    /// Loads [`StandaloneNet::state`] back; a missing or misshapen tensor names `file`.
    pub fn load_state(
        &mut self,
        state: &HashMap<String, Tensor>,
        file: &std::path::Path,
    ) -> anyhow::Result<()> {
        use anyhow::Context;
        crate::runs::set_vars(&self.vars, state, file)?;
        for (name, mv) in self.moving.iter_mut() {
            for (what, slot) in [("mean", &mut mv.mean), ("var", &mut mv.var)] {
                let key = format!("moving.{name}.{what}");
                let t = state
                    .get(&key)
                    .with_context(|| format!("{}: no tensor {key}", file.display()))?;
                if t.dims() != slot.dims() {
                    anyhow::bail!(
                        "{}: {key} has shape {:?}, the network needs {:?}",
                        file.display(),
                        t.dims(),
                        slot.dims()
                    );
                }
                *slot = t.clone();
            }
        }
        Ok(())
    }
}

/// What a batch norm does in [`FastOps`].
enum BnMode<'a> {
    /// Batch statistics, recorded for the moving averages.
    Train(Vec<Moving>),
    /// The moving statistics, in forward order.
    Eval { moving: &'a [(String, Moving)], next: usize },
}

/// The fast custom ops of the supernet (the trait's default convolutions) with stateful BN.
struct FastOps<'a> {
    bn: BnMode<'a>,
}

impl PlainOps for FastOps<'_> {
    fn bn(&mut self, x: &Tensor, (g, b): &(Tensor, Tensor)) -> Result<Tensor> {
        match &mut self.bn {
            BnMode::Train(batch) => {
                let d = x.detach();
                let (n, c, h, w) = d.dims4()?;
                let count = (n * h * w) as f64;
                let flat = d.transpose(0, 1)?.contiguous()?.reshape((c, n * h * w))?;
                let mean = flat.mean(1)?;
                let var = flat.broadcast_sub(&mean.unsqueeze(1)?)?.sqr()?.mean(1)?;
                let var = (var * (count / (count - 1.0).max(1.0)))?;
                batch.push(Moving { mean, var });
                batch_norm_train(x, g, b, BN_EPS)
            }
            // `x·s + t`, s = γ/√(var + ε), t = β − mean·s.
            BnMode::Eval { moving, next } => {
                let (_, mv) = moving.get(*next).ok_or_else(|| {
                    candle_core::Error::msg("more batch norms than moving statistics")
                })?;
                *next += 1;
                let (scale, shift) = fold(g, b, mv)?;
                let c = scale.elem_count();
                x.broadcast_mul(&scale.reshape((1, c, 1, 1))?)?
                    .broadcast_add(&shift.reshape((1, c, 1, 1))?)
            }
        }
    }
}

/// The inference form of a batch norm: `scale = γ/√(var + ε)`, `shift = β − mean·scale`.
pub fn fold(g: &Tensor, b: &Tensor, mv: &Moving) -> Result<(Tensor, Tensor)> {
    let scale = g.div(&(&mv.var + BN_EPS)?.sqrt()?)?;
    let shift = b.sub(&mv.mean.mul(&scale)?)?;
    Ok((scale.detach(), shift.detach()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::space_names;
    use crate::supernet::plain_forward;

    fn geometry() -> ProxyGeometry {
        ProxyGeometry { input_hw: 32, in_channels: 1, classes: 10, width_multiplier: 0.25 }
    }

    fn random_arch(space: &SearchSpace, seed: u64) -> Architecture {
        space.random_architecture(&mut Rng::new(seed))
    }

    fn input(n: usize, seed: u64) -> Tensor {
        let mut rng = Rng::new(seed);
        let v: Vec<f32> = (0..n * 32 * 32).map(|_| rng.normal() as f32).collect();
        Tensor::from_vec(v, (n, 1, 32, 32), &Device::Cpu).unwrap()
    }

    #[test]
    fn the_fast_training_path_equals_candles_native_ops() {
        for name in space_names() {
            let space = SearchSpace::by_name(name).unwrap();
            let arch = random_arch(&space, 7);
            let net = StandaloneNet::new(&space, &arch, geometry(), &mut Rng::new(1), &Device::Cpu)
                .unwrap();
            let x = input(4, 2);
            let (fast, l2, stats) = net.forward_train(&x).unwrap();
            let native = plain_forward(net.layers(), &x, BN_EPS).unwrap();
            let diff = (fast - &native).unwrap().abs().unwrap().max_all().unwrap();
            let scale = native.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(
                diff.to_scalar::<f32>().unwrap() <= 1e-4 * scale.max(1.0),
                "{name}: fast and native forward passes differ"
            );
            assert_eq!(stats.len(), net.moving().len());
            assert!(l2.to_scalar::<f32>().unwrap() > 0.0);
        }
    }

    #[test]
    fn evaluation_uses_the_moving_statistics() {
        // ProxyLessNAS at 32×32 ends at 2×2: every BN sees ≥ 32·4 values.
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let arch = random_arch(&space, 3);
        let mut net =
            StandaloneNet::new(&space, &arch, geometry(), &mut Rng::new(1), &Device::Cpu).unwrap();
        let x = input(32, 5);
        // Fresh statistics (mean 0, var 1): evaluation is a plain affine BN, not the batch's.
        let fresh = net.forward_eval(&x).unwrap();
        let (train, _, stats) = net.forward_train(&x).unwrap();
        let d = |a: &Tensor, b: &Tensor| {
            (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
        };
        assert!(d(&fresh, &train) > 1e-3);
        // The first update takes the batch's statistics whole (momentum 0 at t = 0); the
        // evaluation of the same batch then matches training up to the unbiased variance.
        assert_eq!(bn_momentum(0), 0.1);
        let exact: Vec<Moving> =
            stats.iter().map(|m| Moving { mean: m.mean.clone(), var: m.var.clone() }).collect();
        for ((_, mv), s) in net.moving.iter_mut().zip(&exact) {
            *mv = s.clone();
        }
        let eval = net.forward_eval(&x).unwrap();
        let scale = train.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        // (Not exact: the unbiased variance differs from the batch's by up to 1/127 per BN,
        // compounding over ~60 of them; fresh statistics are two orders of magnitude further.)
        assert!(d(&eval, &train) < 0.1 * scale, "eval with the batch's statistics ≈ training");
        assert!(d(&eval, &train) * 50.0 < d(&fresh, &train));
        assert!(bn_momentum(10_000) == BN_MOMENTUM);
    }

    #[test]
    fn a_state_round_trip_restores_every_weight_and_statistic() {
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let arch = random_arch(&space, 9);
        let mut a =
            StandaloneNet::new(&space, &arch, geometry(), &mut Rng::new(1), &Device::Cpu).unwrap();
        let (_, _, stats) = a.forward_train(&input(4, 1)).unwrap();
        a.update_moving(&stats, 0).unwrap();
        let mut b =
            StandaloneNet::new(&space, &arch, geometry(), &mut Rng::new(2), &Device::Cpu).unwrap();
        let x = input(3, 8);
        let before = (a.forward_eval(&x).unwrap() - b.forward_eval(&x).unwrap()).unwrap();
        assert!(before.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 1e-3);
        b.load_state(&a.state().unwrap(), std::path::Path::new("mem")).unwrap();
        let after = (a.forward_eval(&x).unwrap() - b.forward_eval(&x).unwrap()).unwrap();
        assert_eq!(after.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
        // A state of another architecture is refused, naming the file.
        let other = random_arch(&space, 10);
        let mut c =
            StandaloneNet::new(&space, &other, geometry(), &mut Rng::new(2), &Device::Cpu).unwrap();
        let err = c.load_state(&a.state().unwrap(), std::path::Path::new("ck.safetensors"));
        assert!(format!("{:#}", err.unwrap_err()).contains("ck.safetensors"));
    }
}
