//! Deterministic data orders and draws: pure functions of (seed, purpose, step), so a run
//! resumes exactly with no random state in its checkpoints.

use crate::rng::Rng;

/// A random stream that is a pure function of (seed, purpose, step): runs resume exactly with
/// no RNG state in their checkpoints.
pub fn rng_for(seed: u64, what: &str, step: usize) -> Rng {
    Rng::new(seed).fork(&format!("{what}/{step}"))
}

/// Shuffled epochs over a training split, each a pure function of (seed, epoch).
#[derive(Debug)]
pub struct EpochOrder {
    seed: u64,
    n: usize,
    cache: Option<(usize, Vec<usize>)>,
}

impl EpochOrder {
    /// Epochs over `n` images.
    pub fn new(seed: u64, n: usize) -> EpochOrder {
        EpochOrder { seed, n, cache: None }
    }

    /// The image indices of batch `step`.
    pub fn indices(&mut self, step: usize, batch: usize) -> Vec<usize> {
        (0..batch)
            .map(|j| {
                let i = step * batch + j;
                let (epoch, pos) = (i / self.n, i % self.n);
                if self.cache.as_ref().is_none_or(|c| c.0 != epoch) {
                    let mut perm: Vec<usize> = (0..self.n).collect();
                    Rng::new(self.seed).fork(&format!("epoch/{epoch}")).shuffle(&mut perm);
                    self.cache = Some((epoch, perm));
                }
                self.cache.as_ref().map_or(0, |c| c.1[pos])
            })
            .collect()
    }
}
