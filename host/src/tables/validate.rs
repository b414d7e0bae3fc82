//! `tables validate`: does Σ table medians predict whole-network latency on the device?
//!
//! Architectures are sampled uniformly (seeded), each is predicted with the table (without its
//! correction) and measured end to end on the device (`MeasureNetwork`: the agent builds the
//! network from its op keys). Reported: RMSPE, the share within ±5% and ±10%, Kendall τ, and an
//! affine correction `measured ≈ scale · Σ + offset` fitted by least squares, with the same
//! metrics after the correction. Every measured network is appended to a journal
//! (`TABLE.validate.journal`, the same [`latency_tables::journal::Journal`] as profiles use,
//! with its torn-line and damage recovery), so an interrupted validation resumes without
//! re-measuring.

use anyhow::Result;
use latency_tables::{Correction, LatencyTable};
use serde::{Deserialize, Serialize};

use crate::space::{Architecture, SearchSpace};

/// One validated architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The architecture's index string.
    pub arch: String,
    /// Σ table medians (µs).
    pub predicted_us: f64,
    /// Measured median (µs).
    pub measured_us: f64,
}

/// Prediction-quality metrics of a set of points.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    /// Root mean square percentage error (%).
    pub rmspe: f64,
    /// Share within ±5% (%).
    pub within_5: f64,
    /// Share within ±10% (%).
    pub within_10: f64,
    /// Kendall rank correlation (τ-b).
    pub kendall_tau: f64,
}

/// Metrics of predictions against measurements.
pub fn metrics(predicted: &[f64], measured: &[f64]) -> Metrics {
    let n = predicted.len().max(1) as f64;
    let rel: Vec<f64> = predicted.iter().zip(measured).map(|(p, m)| (p - m) / m).collect();
    let rmspe = 100.0 * (rel.iter().map(|r| r * r).sum::<f64>() / n).sqrt();
    let within = |t: f64| 100.0 * rel.iter().filter(|r| r.abs() <= t).count() as f64 / n;
    Metrics {
        rmspe,
        within_5: within(0.05),
        within_10: within(0.10),
        kendall_tau: kendall_tau(predicted, measured),
    }
}

/// Kendall's τ-b (ties handled), O(n²).
pub fn kendall_tau(a: &[f64], b: &[f64]) -> f64 {
    let (mut concordant, mut discordant, mut ties_a, mut ties_b) = (0f64, 0f64, 0f64, 0f64);
    for i in 0..a.len() {
        for j in i + 1..a.len() {
            let da = (a[i] - a[j]).signum();
            let db = (b[i] - b[j]).signum();
            if da == 0.0 && db == 0.0 {
                continue;
            } else if da == 0.0 {
                ties_a += 1.0;
            } else if db == 0.0 {
                ties_b += 1.0;
            } else if da == db {
                concordant += 1.0;
            } else {
                discordant += 1.0;
            }
        }
    }
    let denom = ((concordant + discordant + ties_a) * (concordant + discordant + ties_b)).sqrt();
    if denom == 0.0 {
        0.0
    } else {
        (concordant - discordant) / denom
    }
}

/// Least-squares `measured ≈ scale · predicted + offset`.
pub fn fit_affine(predicted: &[f64], measured: &[f64]) -> Option<(f64, f64)> {
    let n = predicted.len() as f64;
    if predicted.len() < 2 {
        return None;
    }
    let mx = predicted.iter().sum::<f64>() / n;
    let my = measured.iter().sum::<f64>() / n;
    let sxx: f64 = predicted.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = predicted.iter().zip(measured).map(|(x, y)| (x - mx) * (y - my)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let scale = sxy / sxx;
    Some((scale, my - scale * mx))
}

/// Uniformly random architectures of `space` (xorshift64*, seeded).
pub fn sample_architectures(space: &SearchSpace, n: usize, seed: u64) -> Vec<Architecture> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    (0..n)
        .map(|_| Architecture {
            indices: space
                .decisions
                .iter()
                .map(|d| (next() >> 33) as usize % d.num_choices())
                .collect(),
        })
        .collect()
}

/// The outcome of a validation.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The points.
    pub points: Vec<Point>,
    /// Before the correction.
    pub before: Metrics,
    /// The fitted correction.
    pub correction: Option<Correction>,
    /// After the correction.
    pub after: Option<Metrics>,
}

/// Computes the report of measured points.
pub fn report(points: Vec<Point>) -> Report {
    let p: Vec<f64> = points.iter().map(|x| x.predicted_us).collect();
    let m: Vec<f64> = points.iter().map(|x| x.measured_us).collect();
    let before = metrics(&p, &m);
    // A non-positive slope (too few or too noisy points) would invert the ranking: fall back
    // to a constant per-network overhead.
    let offset_only = || {
        (!p.is_empty())
            .then(|| (1.0, m.iter().zip(&p).map(|(m, p)| m - p).sum::<f64>() / p.len() as f64))
    };
    let fit = fit_affine(&p, &m).filter(|(s, _)| *s > 0.0).or_else(offset_only);
    let correction =
        fit.map(|(scale, offset_us)| Correction { scale, offset_us, samples: points.len() as u32 });
    let after = correction.as_ref().map(|c| {
        let corrected: Vec<f64> = p.iter().map(|&x| c.apply(x)).collect();
        metrics(&corrected, &m)
    });
    Report { points, before, correction, after }
}

/// Σ of the table's medians over the architecture's keys, without the correction.
pub fn predict_us(
    table: &LatencyTable,
    space: &SearchSpace,
    arch: &Architecture,
    resolution: u32,
) -> Result<f64> {
    let net = space.resolve(arch, resolution).with_precision(table.precision()).network;
    let mut missing = Vec::new();
    let mut sum = 0.0;
    for key in &net.layers {
        match table.get(key) {
            Some(e) => sum += e.median,
            None => missing.push(key.to_string()),
        }
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "the table has no entry for {} key(s) of {arch}: {}",
            missing.len(),
            missing.join(", ")
        );
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kendall_tau_of_known_orders() {
        assert_eq!(kendall_tau(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), 1.0);
        assert_eq!(kendall_tau(&[1.0, 2.0, 3.0], &[30.0, 20.0, 10.0]), -1.0);
        // 1 discordant pair of 3.
        assert!((kendall_tau(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]) - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn affine_fit_recovers_a_line_and_fixes_the_metrics() {
        let p = [100.0, 200.0, 300.0, 400.0];
        let m: Vec<f64> = p.iter().map(|x| 1.1 * x + 50.0).collect();
        let (s, o) = fit_affine(&p, &m).unwrap();
        assert!((s - 1.1).abs() < 1e-9 && (o - 50.0).abs() < 1e-6);
        let points = p
            .iter()
            .zip(&m)
            .map(|(&a, &b)| Point { arch: format!("{a}"), predicted_us: a, measured_us: b })
            .collect();
        let r = report(points);
        assert!(r.before.rmspe > 10.0 && r.before.within_10 < 100.0);
        let after = r.after.unwrap();
        assert!(after.rmspe < 1e-6 && after.within_5 == 100.0 && after.kendall_tau == 1.0);
    }

    #[test]
    fn an_inverted_fit_falls_back_to_a_constant_offset() {
        let points = vec![
            Point { arch: "a".into(), predicted_us: 100.0, measured_us: 230.0 },
            Point { arch: "b".into(), predicted_us: 200.0, measured_us: 210.0 },
        ];
        let c = report(points).correction.unwrap();
        assert_eq!(c.scale, 1.0);
        assert!((c.offset_us - 70.0).abs() < 1e-9);
    }

    #[test]
    fn sampling_is_seeded_and_in_range() {
        let space = SearchSpace::by_name("mobilenet-v3-like").unwrap();
        let a = sample_architectures(&space, 20, 1);
        assert_eq!(a, sample_architectures(&space, 20, 1));
        assert_ne!(a, sample_architectures(&space, 20, 2));
        for arch in a {
            space.check_arch(arch.indices).unwrap();
        }
    }
}
