//! Uniform architectures near a latency target: what random search trains and what the rank
//! check compares the supernet on.

use anyhow::Result;

use crate::latency::LatencyModel;
use crate::rng::Rng;
use crate::space::{Architecture, SearchSpace};

/// The latency window `target_ms ± tolerance_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// T0 (ms).
    pub target_ms: f64,
    /// Half-width (ms).
    pub tolerance_ms: f64,
}

impl Window {
    /// Whether `t` ms falls in the window.
    pub fn holds(&self, t: f64) -> bool {
        (t - self.target_ms).abs() <= self.tolerance_ms
    }
}

/// One accepted draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// The architecture.
    pub arch: Architecture,
    /// Its T(α) (ms).
    pub latency_ms: f64,
    /// Its draw number (1-based).
    pub draw: usize,
}

/// What [`draw_within`] found: fewer than asked when the draws ran out.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawn {
    /// The accepted architectures, in draw order.
    pub accepted: Vec<Accepted>,
    /// Draws made.
    pub draws: usize,
}

/// Draws uniform architectures from `rng` until `n` distinct ones, none of them in `taken`,
/// have T(α) in `window`, or `max_draws` draws were made.
pub fn draw_within(
    space: &SearchSpace,
    model: &dyn LatencyModel,
    rng: &mut Rng,
    window: Window,
    n: usize,
    max_draws: usize,
    taken: &[Architecture],
) -> Result<Drawn> {
    let mut accepted: Vec<Accepted> = Vec::new();
    let mut draws = 0;
    while accepted.len() < n && draws < max_draws {
        draws += 1;
        let arch = space.random_architecture(rng);
        let latency_ms = model.latency_ms(&arch)?;
        let new = !taken.contains(&arch) && !accepted.iter().any(|a| a.arch == arch);
        if window.holds(latency_ms) && new {
            accepted.push(Accepted { arch, latency_ms, draw: draws });
        }
    }
    Ok(Drawn { accepted, draws })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::load_model;

    #[test]
    fn draws_are_distinct_inside_the_window_and_stop_at_the_limit() {
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let model = load_model("pixel1", &space, 224).unwrap();
        let window = Window { target_ms: 84.0, tolerance_ms: 2.0 };
        let taken = vec![space.parse_arch("proxylessnas-mobile").unwrap()];
        let got = draw_within(&space, model.as_ref(), &mut Rng::new(3), window, 5, 100_000, &taken)
            .unwrap();
        assert_eq!(got.accepted.len(), 5);
        for (i, a) in got.accepted.iter().enumerate() {
            assert!(window.holds(a.latency_ms) && !taken.contains(&a.arch));
            assert!(got.accepted[..i].iter().all(|b| b.arch != a.arch && b.draw < a.draw));
        }
        assert_eq!(got.accepted.last().unwrap().draw, got.draws);
        // The same seed draws the same architectures.
        let again =
            draw_within(&space, model.as_ref(), &mut Rng::new(3), window, 5, 100_000, &taken)
                .unwrap();
        assert_eq!(again, got);
        // Out of draws: fewer than asked, not an endless loop.
        let far = Window { target_ms: 1.0, tolerance_ms: 0.01 };
        let none = draw_within(&space, model.as_ref(), &mut Rng::new(3), far, 5, 50, &[]).unwrap();
        assert_eq!((none.accepted.len(), none.draws), (0, 50));
    }
}
