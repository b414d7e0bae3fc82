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

/// The optimiser state: one mean-square and one momentum slot per variable, by name, kept as
/// plain `f32` vectors and updated in one fused pass per variable.
#[derive(Debug)]
pub struct RmsProp {
    /// Decay of the mean square (0.9).
    pub rho: f64,
    /// Momentum (0.9).
    pub momentum: f64,
    /// Epsilon inside the square root (1.0).
    pub eps: f64,
    vars: Vec<(String, Var)>,
    ms: Vec<Vec<f32>>,
    mom: Vec<Vec<f32>>,
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

impl RmsProp {
    /// An optimiser over every variable of `vars`, in name order (deterministic).
    pub fn new(vars: &VarMap) -> Result<RmsProp> {
        let data = vars.data().lock().map_err(|_| candle_core::Error::msg("poisoned var map"))?;
        let mut named: Vec<(String, Var)> =
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let ms = named.iter().map(|(_, v)| vec![1f32; v.elem_count()]).collect();
        let mom = named.iter().map(|(_, v)| vec![0f32; v.elem_count()]).collect();
        Ok(RmsProp { rho: 0.9, momentum: 0.9, eps: 1.0, vars: named, ms, mom })
    }

    /// One update with learning rate `lr`. A variable without a gradient (a branch the step's
    /// architecture did not use) is updated with a zero gradient, as TensorFlow does: its mean
    /// square decays and its momentum keeps moving it (tunas-spec §4.2).
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        let (rho, mu, eps, lr) =
            (self.rho as f32, self.momentum as f32, self.eps as f32, lr as f32);
        for (((_, var), ms), mom) in self.vars.iter().zip(&mut self.ms).zip(&mut self.mom) {
            let grad = match grads.get(var.as_tensor()) {
                Some(g) => Some(to_vec(g)?),
                None => None,
            };
            if grad.is_none() && mom.iter().all(|&m| m == 0.0) {
                // Zero gradient and zero momentum: only the mean square decays.
                ms.iter_mut().for_each(|m| *m *= rho);
                continue;
            }
            let mut w = to_vec(var.as_tensor())?;
            for i in 0..w.len() {
                let g = grad.as_ref().map_or(0.0, |g| g[i]);
                ms[i] = rho * ms[i] + (1.0 - rho) * g * g;
                mom[i] = mu * mom[i] + lr * g / (ms[i] + eps).sqrt();
                w[i] -= mom[i];
            }
            var.set(&Tensor::from_vec(w, var.shape(), var.device())?)?;
        }
        Ok(())
    }

    /// The slots as named tensors (`ms/NAME`, `mom/NAME`) for a checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (((name, var), ms), mom) in self.vars.iter().zip(&self.ms).zip(&self.mom) {
            for (prefix, slot) in [("ms", ms), ("mom", mom)] {
                if let Ok(t) = Tensor::from_vec(slot.clone(), var.shape(), var.device()) {
                    out.insert(format!("{prefix}/{name}"), t);
                }
            }
        }
        out
    }

    /// Restores the slots written by [`RmsProp::state`]; every slot must be present and of its
    /// variable's size.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        for (((name, var), ms), mom) in self.vars.iter().zip(&mut self.ms).zip(&mut self.mom) {
            for (prefix, slot) in [("ms", ms), ("mom", mom)] {
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
                *slot = to_vec(t)?;
            }
        }
        Ok(())
    }
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

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert_eq!(cosine_lr(1.0, 0, 10, 100), 0.0);
        assert!((cosine_lr(1.0, 5, 10, 100) - 0.5).abs() < 1e-12);
        assert!((cosine_lr(1.0, 10, 10, 100) - 1.0).abs() < 1e-12);
        assert!(cosine_lr(1.0, 100, 10, 100).abs() < 1e-12);
    }
}
