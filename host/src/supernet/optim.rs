//! RMSProp with TensorFlow 1 semantics (tunas-spec §4.2): decay ρ, momentum, ε inside the
//! square root, mean-square slot initialised to 1.
//!
//! `ms ← ρ·ms + (1−ρ)·g²; mom ← μ·mom + lr·g/sqrt(ms+ε); w ← w − mom`.

use std::collections::HashMap;

use candle_core::{backprop::GradStore, Result, Tensor, Var};
use candle_nn::VarMap;

/// Linear warmup from 0 over `warmup` steps, then cosine decay to 0 at `total`.
pub fn cosine_lr(peak: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return peak * step as f64 / warmup as f64;
    }
    let t = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    0.5 * peak * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

/// The optimiser state: one mean-square and one momentum slot per variable, by name. A CPU
/// variable's slots are plain `f32` vectors updated in one fused pass; another device's are
/// tensors on that device, updated with tensor ops, so a GPU's weights never leave it.
#[derive(Debug)]
pub struct RmsProp {
    /// Decay of the mean square (0.9).
    pub rho: f64,
    /// Momentum (0.9).
    pub momentum: f64,
    /// Epsilon inside the square root (1.0).
    pub eps: f64,
    vars: Vec<(String, Var, Slots)>,
}

/// One variable's mean square and momentum.
#[derive(Debug)]
enum Slots {
    Host { ms: Vec<f32>, mom: Vec<f32> },
    Device { ms: Tensor, mom: Tensor },
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

impl RmsProp {
    /// An optimiser over every variable of `vars`, in name order (deterministic).
    pub fn new(vars: &VarMap) -> Result<RmsProp> {
        Self::build(vars, false)
    }

    /// [`RmsProp::new`] with tensor slots for every variable, the CPU's too (what another
    /// device's variables get).
    pub fn with_tensor_slots(vars: &VarMap) -> Result<RmsProp> {
        Self::build(vars, true)
    }

    fn build(vars: &VarMap, tensors: bool) -> Result<RmsProp> {
        let data = vars.data().lock().map_err(|_| candle_core::Error::msg("poisoned var map"))?;
        let mut named: Vec<(String, Var)> =
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let vars = named
            .into_iter()
            .map(|(name, v)| {
                let slots = if tensors || !v.device().is_cpu() {
                    Slots::Device { ms: v.ones_like()?, mom: v.zeros_like()? }
                } else {
                    let n = v.elem_count();
                    Slots::Host { ms: vec![1f32; n], mom: vec![0f32; n] }
                };
                Ok((name, v, slots))
            })
            .collect::<Result<_>>()?;
        Ok(RmsProp { rho: 0.9, momentum: 0.9, eps: 1.0, vars })
    }

    /// One update with learning rate `lr`. A variable without a gradient (a branch the step's
    /// architecture did not use) is updated with a zero gradient, as TensorFlow does: its mean
    /// square decays and its momentum keeps moving it (tunas-spec §4.2).
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        let (rho, mu, eps) = (self.rho, self.momentum, self.eps);
        for (_, var, slots) in &mut self.vars {
            let grad = grads.get(var.as_tensor());
            match slots {
                Slots::Host { ms, mom } => host_step(var, grad, ms, mom, [rho, mu, eps, lr])?,
                Slots::Device { ms, mom } => {
                    let g = match grad {
                        Some(g) => g.clone(),
                        None => var.zeros_like()?,
                    };
                    *ms = (ms.affine(rho, 0.0)? + g.sqr()?.affine(1.0 - rho, 0.0)?)?;
                    let step = g.div(&(&*ms + eps)?.sqrt()?)?.affine(lr, 0.0)?;
                    *mom = (mom.affine(mu, 0.0)? + step)?;
                    var.set(&var.as_tensor().sub(mom)?)?;
                }
            }
        }
        Ok(())
    }

    /// The slots as named tensors (`ms/NAME`, `mom/NAME`) for a checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (name, var, slots) in &self.vars {
            let pair = match slots {
                Slots::Host { ms, mom } => {
                    let t = |v: &Vec<f32>| Tensor::from_vec(v.clone(), var.shape(), var.device());
                    match (t(ms), t(mom)) {
                        (Ok(ms), Ok(mom)) => (ms, mom),
                        _ => continue,
                    }
                }
                Slots::Device { ms, mom } => (ms.clone(), mom.clone()),
            };
            out.insert(format!("ms/{name}"), pair.0);
            out.insert(format!("mom/{name}"), pair.1);
        }
        out
    }

    /// Restores the slots written by [`RmsProp::state`]; every slot must be present and of its
    /// variable's size.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var, slots) in &mut self.vars {
            let get = |prefix: &str| -> Result<&Tensor> {
                let key = format!("{prefix}/{name}");
                let t = state
                    .get(&key)
                    .ok_or_else(|| candle_core::Error::msg(format!("checkpoint lacks {key}")))?;
                if t.elem_count() != var.elem_count() {
                    candle_core::bail!(
                        "checkpoint slot {key} has {} values, the variable {}",
                        t.elem_count(),
                        var.elem_count()
                    );
                }
                Ok(t)
            };
            let (ms_t, mom_t) = (get("ms")?, get("mom")?);
            match slots {
                Slots::Host { ms, mom } => {
                    *ms = to_vec(ms_t)?;
                    *mom = to_vec(mom_t)?;
                }
                Slots::Device { ms, mom } => {
                    let on = |t: &Tensor| t.to_device(var.device())?.reshape(var.shape());
                    *ms = on(ms_t)?;
                    *mom = on(mom_t)?;
                }
            }
        }
        Ok(())
    }
}

/// The fused update of a CPU variable (`[ρ, μ, ε, lr]`).
fn host_step(
    var: &Var,
    grad: Option<&Tensor>,
    ms: &mut [f32],
    mom: &mut [f32],
    [rho, mu, eps, lr]: [f64; 4],
) -> Result<()> {
    let (rho, mu, eps, lr) = (rho as f32, mu as f32, eps as f32, lr as f32);
    let grad = grad.map(to_vec).transpose()?;
    if grad.is_none() && mom.iter().all(|&m| m == 0.0) {
        // Zero gradient and zero momentum: only the mean square decays.
        ms.iter_mut().for_each(|m| *m *= rho);
        return Ok(());
    }
    let mut w = to_vec(var.as_tensor())?;
    for i in 0..w.len() {
        let g = grad.as_ref().map_or(0.0, |g| g[i]);
        ms[i] = rho * ms[i] + (1.0 - rho) * g * g;
        mom[i] = mu * mom[i] + lr * g / (ms[i] + eps).sqrt();
        w[i] -= mom[i];
    }
    var.set(&Tensor::from_vec(w, var.shape(), var.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variable_without_gradient_follows_tensorflow_zero_gradient_semantics() {
        use candle_core::{DType, Device};
        let vars = VarMap::new();
        let a = vars.get(2, "a", candle_nn::Init::Const(1.0), DType::F32, &Device::Cpu).unwrap();
        let b = vars.get(2, "b", candle_nn::Init::Const(1.0), DType::F32, &Device::Cpu).unwrap();
        let mut opt = RmsProp::new(&vars).unwrap();
        // Step 1: both used. Step 2: only `a` (b's branch not selected).
        let loss = (a.sum_all().unwrap() + b.sum_all().unwrap()).unwrap();
        opt.step(&loss.backward().unwrap(), 0.1).unwrap();
        let b1 = b.to_vec1::<f32>().unwrap()[0];
        let loss = a.sum_all().unwrap();
        opt.step(&loss.backward().unwrap(), 0.1).unwrap();
        let b2 = b.to_vec1::<f32>().unwrap()[0];
        // g = 1: ms = 0.9 + 0.1 = 1, mom = 0.1/√2, b = 1 − mom; then g = 0: mom ← 0.9·mom.
        let mom = 0.1 / 2f32.sqrt();
        assert!((b1 - (1.0 - mom)).abs() < 1e-6, "{b1}");
        assert!((b2 - (b1 - 0.9 * mom)).abs() < 1e-6, "momentum keeps moving b: {b2}");
        let state = opt.state();
        let ms = state["ms/b"].to_vec1::<f32>().unwrap()[0];
        assert!((ms - 0.9).abs() < 1e-6, "the mean square decays: {ms}");
        // The slots round-trip through a checkpoint.
        let mut again = RmsProp::new(&vars).unwrap();
        again.load_state(&state).unwrap();
        assert_eq!(
            again.state()["mom/a"].to_vec1::<f32>().unwrap(),
            state["mom/a"].to_vec1::<f32>().unwrap()
        );
    }

    /// The tensor slots (another device's variables) make the same updates as the fused host
    /// loop, with and without a gradient, and their state loads into either kind.
    #[test]
    fn tensor_slots_update_like_the_host_loop() {
        use candle_core::{DType, Device};
        let make = || {
            let vars = VarMap::new();
            let init = candle_nn::Init::Randn { mean: 0.0, stdev: 1.0 };
            let _ = vars.get((3, 4), "w", init, DType::F32, &Device::Cpu).unwrap();
            let _ = vars.get(5, "v", init, DType::F32, &Device::Cpu).unwrap();
            vars
        };
        let (host_vars, tensor_vars) = (make(), make());
        // Same draws in both maps.
        for (name, v) in tensor_vars.data().lock().unwrap().iter() {
            v.set(host_vars.data().lock().unwrap()[name].as_tensor()).unwrap();
        }
        let mut host = RmsProp::new(&host_vars).unwrap();
        let mut tensor = RmsProp::with_tensor_slots(&tensor_vars).unwrap();
        let vals = |vars: &VarMap, name: &str| {
            vars.data().lock().unwrap()[name].as_tensor().flatten_all().unwrap().to_vec1::<f32>()
        };
        for step in 0..4 {
            for (vars, opt) in [(&host_vars, &mut host), (&tensor_vars, &mut tensor)] {
                let data = vars.data().lock().unwrap();
                let (w, v) = (&data["w"], &data["v"]);
                // Steps 1 and 3 leave `v` without a gradient.
                let mut loss = w.sqr().unwrap().sum_all().unwrap().affine(0.5, 0.0).unwrap();
                if step % 2 == 0 {
                    loss = (loss + v.sin().unwrap().sum_all().unwrap()).unwrap();
                }
                let grads = loss.backward().unwrap();
                drop(data);
                opt.step(&grads, 0.05 * (step + 1) as f64).unwrap();
            }
            for name in ["w", "v"] {
                let (a, b) = (vals(&host_vars, name).unwrap(), vals(&tensor_vars, name).unwrap());
                for (x, y) in a.iter().zip(&b) {
                    assert!((x - y).abs() <= 1e-6 * x.abs().max(1.0), "step {step} {name}");
                }
            }
        }
        let (hs, ts) = (host.state(), tensor.state());
        for (key, t) in &hs {
            let d = t.sub(&ts[key]).unwrap().abs().unwrap().flatten_all().unwrap();
            assert!(d.max(0).unwrap().to_scalar::<f32>().unwrap() < 1e-6, "{key}");
        }
        let mut again = RmsProp::with_tensor_slots(&host_vars).unwrap();
        again.load_state(&hs).unwrap();
        assert_eq!(
            again.state()["mom/w"].to_vec2::<f32>().unwrap(),
            hs["mom/w"].to_vec2::<f32>().unwrap()
        );
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert_eq!(cosine_lr(1.0, 0, 10, 100), 0.0);
        assert!((cosine_lr(1.0, 5, 10, 100) - 0.5).abs() < 1e-12);
        assert!((cosine_lr(1.0, 10, 10, 100) - 1.0).abs() < 1e-12);
        assert!(cosine_lr(1.0, 100, 10, 100).abs() < 1e-12);
    }
}
