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

/// The optimiser state: one mean-square and one momentum slot per variable, by name.
#[derive(Debug)]
pub struct RmsProp {
    /// Decay of the mean square (0.9).
    pub rho: f64,
    /// Momentum (0.9).
    pub momentum: f64,
    /// Epsilon inside the square root (1.0).
    pub eps: f64,
    vars: Vec<(String, Var)>,
    ms: HashMap<String, Tensor>,
    mom: HashMap<String, Tensor>,
}

impl RmsProp {
    /// An optimiser over every variable of `vars`, in name order (deterministic).
    pub fn new(vars: &VarMap) -> Result<RmsProp> {
        let data = vars.data().lock().map_err(|_| candle_core::Error::msg("poisoned var map"))?;
        let mut named: Vec<(String, Var)> =
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let mut ms = HashMap::new();
        let mut mom = HashMap::new();
        for (name, v) in &named {
            ms.insert(name.clone(), v.ones_like()?);
            mom.insert(name.clone(), v.zeros_like()?);
        }
        Ok(RmsProp { rho: 0.9, momentum: 0.9, eps: 1.0, vars: named, ms, mom })
    }

    /// One update with learning rate `lr`. Variables without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        for (name, var) in &self.vars {
            // A variable's gradient is not detached by Candle (only intermediate nodes' are):
            // when the variable feeds an op directly, its gradient still references the forward
            // graph, and keeping it in the slots would keep every step's graph alive.
            let Some(g) = grads.get(var.as_tensor()).map(Tensor::detach) else { continue };
            let g = &g;
            let (Some(ms), Some(mom)) = (self.ms.get_mut(name), self.mom.get_mut(name)) else {
                continue;
            };
            let new_ms = ((&*ms * self.rho)? + (g.sqr()? * (1.0 - self.rho))?)?;
            let step = (g * lr)?.div(&(&new_ms + self.eps)?.sqrt()?)?;
            let new_mom = ((&*mom * self.momentum)? + step)?;
            var.set(&var.as_tensor().sub(&new_mom)?)?;
            *ms = new_ms;
            *mom = new_mom;
        }
        Ok(())
    }

    /// The slots as named tensors (`ms/NAME`, `mom/NAME`) for a checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (k, v) in &self.ms {
            out.insert(format!("ms/{k}"), v.clone());
        }
        for (k, v) in &self.mom {
            out.insert(format!("mom/{k}"), v.clone());
        }
        out
    }

    /// Restores the slots written by [`RmsProp::state`]; every slot must be present.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        for (name, _) in &self.vars {
            for (prefix, map) in [("ms", &mut self.ms), ("mom", &mut self.mom)] {
                let key = format!("{prefix}/{name}");
                let t = state
                    .get(&key)
                    .ok_or_else(|| candle_core::Error::msg(format!("checkpoint lacks {key}")))?;
                map.insert(name.clone(), t.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert_eq!(cosine_lr(1.0, 0, 10, 100), 0.0);
        assert!((cosine_lr(1.0, 5, 10, 100) - 0.5).abs() < 1e-12);
        assert!((cosine_lr(1.0, 10, 10, 100) - 1.0).abs() < 1e-12);
        assert!(cosine_lr(1.0, 100, 10, 100).abs() < 1e-12);
    }
}
