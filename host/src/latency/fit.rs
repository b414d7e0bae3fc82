//! Fitting a coupled-feature cost model to whole-network measurements: ridge regression with an
//! unpenalised bias, shrunk towards a prior weight vector (zero, or a table's Σ projected onto
//! the features), with the ridge strength λ chosen by k-fold cross-validation.
//!
//! Solved in the dual (`N × N`, N networks), so the 5,983- and 29,068-weight spaces cost no more
//! than the 144-weight one: with centred features `X̃` and targets `ỹ`,
//! `w = w₀ + X̃ᵀ (X̃X̃ᵀ + λI)⁻¹ (ỹ − X̃w₀)` and `bias = ȳ − x̄·w`.

use serde::Serialize;

/// A fitted linear model.
#[derive(Debug, Clone, PartialEq)]
pub struct Ridge {
    /// The intercept (ms).
    pub bias: f64,
    /// One weight per feature (ms).
    pub weights: Vec<f64>,
}

impl Ridge {
    /// The prediction for one sparse feature row.
    pub fn predict(&self, row: &[(usize, f64)]) -> f64 {
        self.bias + row.iter().map(|&(i, v)| v * self.weights[i]).sum::<f64>()
    }
}

/// Fits `y ≈ bias + X·w` with penalty `λ‖w − prior‖²` over `n_features` features (rows sparse).
/// `None` when the system cannot be solved (no rows, or a non-positive λ on singular data).
pub fn ridge(
    rows: &[Vec<(usize, f64)>],
    y: &[f64],
    n_features: usize,
    prior: Option<&[f64]>,
    lambda: f64,
) -> Option<Ridge> {
    let n = rows.len();
    if n == 0 || n != y.len() {
        return None;
    }
    let zero = vec![0.0; n_features];
    let prior = prior.unwrap_or(&zero);
    // Dense centred features.
    let mut mean = vec![0.0; n_features];
    for row in rows {
        for &(i, v) in row {
            mean[i] += v / n as f64;
        }
    }
    let y_mean = y.iter().sum::<f64>() / n as f64;
    let x: Vec<Vec<f64>> = rows
        .iter()
        .map(|row| {
            let mut d: Vec<f64> = mean.iter().map(|m| -m).collect();
            for &(i, v) in row {
                d[i] += v;
            }
            d
        })
        .collect();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
    // Residual of the prior, and the Gram matrix.
    let r: Vec<f64> = x.iter().zip(y).map(|(xi, yi)| (yi - y_mean) - dot(xi, prior)).collect();
    let mut g = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let v = dot(&x[i], &x[j]);
            g[i][j] = v;
            g[j][i] = v;
        }
        g[i][i] += lambda;
    }
    let alpha = cholesky_solve(g, r)?;
    let mut weights = prior.to_vec();
    for (xi, a) in x.iter().zip(&alpha) {
        for (w, v) in weights.iter_mut().zip(xi) {
            *w += a * v;
        }
    }
    let bias = y_mean - dot(&mean, &weights);
    Some(Ridge { bias, weights })
}

/// Solves `A x = b` for a symmetric positive definite `A` (Cholesky); `None` if it is not.
pub(crate) fn cholesky_solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    let dot = |p: &[f64], q: &[f64]| p.iter().zip(q).map(|(x, y)| x * y).sum::<f64>();
    for j in 0..n {
        let d = a[j][j] - dot(&a[j][..j], &a[j][..j]);
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        a[j][j] = d;
        for i in j + 1..n {
            let s = a[i][j] - dot(&a[i][..j], &a[j][..j]);
            a[i][j] = s / d;
        }
    }
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i][k] * b[k];
        }
        b[i] = s / a[i][i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= a[k][i] * b[k];
        }
        b[i] = s / a[i][i];
    }
    Some(b)
}

/// The λ grid searched: relative to the mean squared norm of the centred feature rows.
pub const LAMBDA_GRID: &[f64] =
    &[1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1e3, 1e4];

/// A cross-validated fit: the model on all rows at the chosen λ, and every row's prediction by
/// the model of the fold that held it out.
#[derive(Debug, Clone)]
pub struct CrossValidated {
    /// The model fitted on every row.
    pub model: Ridge,
    /// The λ chosen (absolute).
    pub lambda: f64,
    /// Out-of-fold predictions, one per row.
    pub held_out: Vec<f64>,
    /// Folds.
    pub folds: usize,
}

/// Held-out predictions of `n` rows by `folds`-fold cross-validation, rows assigned to folds
/// round-robin: `fit` gets a fold's training rows, `predict` predicts a held-out row with its
/// model. `None` if a fold cannot be fitted.
pub fn k_fold<M>(
    n: usize,
    folds: usize,
    fit: impl Fn(&[usize]) -> Option<M>,
    predict: impl Fn(&M, usize) -> f64,
) -> Option<Vec<f64>> {
    let mut pred = vec![0.0; n];
    for f in 0..folds {
        let train: Vec<usize> = (0..n).filter(|i| i % folds != f).collect();
        let m = fit(&train)?;
        for i in (0..n).filter(|i| i % folds == f) {
            pred[i] = predict(&m, i);
        }
    }
    Some(pred)
}

/// Fits with λ chosen from [`LAMBDA_GRID`] by `folds`-fold cross-validation on the root mean
/// square *relative* error (latency errors matter in proportion). Rows are assigned to folds
/// round-robin in the given order (shuffle beforehand if the order is not random).
pub fn cross_validated(
    rows: &[Vec<(usize, f64)>],
    y: &[f64],
    n_features: usize,
    prior: Option<&[f64]>,
    folds: usize,
) -> Option<CrossValidated> {
    let n = rows.len();
    let folds = folds.clamp(2, n.max(2));
    // Scale of the Gram diagonal, so the grid means the same for every space.
    let scale = {
        let m = rows.iter().map(Vec::len).sum::<usize>() as f64 / n.max(1) as f64;
        m.max(1.0)
    };
    let held_out_at = |lambda: f64| -> Option<Vec<f64>> {
        let fit = |train: &[usize]| {
            let tr: Vec<Vec<(usize, f64)>> = train.iter().map(|&i| rows[i].clone()).collect();
            let ty: Vec<f64> = train.iter().map(|&i| y[i]).collect();
            ridge(&tr, &ty, n_features, prior, lambda)
        };
        k_fold(n, folds, fit, |m, i| m.predict(&rows[i]))
    };
    let rmspe = |pred: &[f64]| {
        (pred.iter().zip(y).map(|(p, m)| ((p - m) / m).powi(2)).sum::<f64>() / n as f64).sqrt()
    };
    let mut best: Option<(f64, f64, Vec<f64>)> = None;
    for &g in LAMBDA_GRID {
        let lambda = g * scale;
        let Some(pred) = held_out_at(lambda) else { continue };
        let e = rmspe(&pred);
        if best.as_ref().is_none_or(|(_, b, _)| e < *b) {
            best = Some((lambda, e, pred));
        }
    }
    let (lambda, _, held_out) = best?;
    Some(CrossValidated {
        model: ridge(rows, y, n_features, prior, lambda)?,
        lambda,
        held_out,
        folds,
    })
}

/// Prediction quality of a set of predictions against measurements.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Accuracy {
    /// Networks.
    pub n: usize,
    /// Root mean square percentage error (%).
    pub rmspe: f64,
    /// Median |percentage error| (%).
    pub median_abs_error: f64,
    /// Share within ±5% (%).
    pub within_5: f64,
    /// Share within ±10% (%).
    pub within_10: f64,
    /// Kendall τ-b between predictions and measurements.
    pub kendall_tau: f64,
}

impl Accuracy {
    /// The figures of `predicted` against `measured`.
    pub fn of(predicted: &[f64], measured: &[f64]) -> Accuracy {
        let m = crate::tables::validate::metrics(predicted, measured);
        let mut abs: Vec<f64> =
            predicted.iter().zip(measured).map(|(p, m)| 100.0 * ((p - m) / m).abs()).collect();
        abs.sort_by(f64::total_cmp);
        Accuracy {
            n: predicted.len(),
            rmspe: m.rmspe,
            median_abs_error: if abs.is_empty() {
                0.0
            } else {
                latency_tables::stats::quantile(&abs, 0.5)
            },
            within_5: m.within_5,
            within_10: m.within_10,
            kendall_tau: m.kendall_tau,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ridge_recovers_a_sparse_linear_model() {
        // 6 features, one-hot in two groups of 3 (like two layers' choices), plus noise-free y.
        let truth = [1.0, 2.0, 3.0, 10.0, 20.0, 30.0];
        let mut rows = Vec::new();
        let mut y = Vec::new();
        for a in 0..3 {
            for b in 3..6 {
                rows.push(vec![(a, 1.0), (b, 1.0)]);
                y.push(5.0 + truth[a] + truth[b]);
            }
        }
        let m = ridge(&rows, &y, 6, None, 1e-9).unwrap();
        for (row, yi) in rows.iter().zip(&y) {
            assert!((m.predict(row) - yi).abs() < 1e-6, "{} vs {yi}", m.predict(row));
        }
        // A strong penalty shrinks towards the prior: with the true weights as prior and any
        // λ, the fit is exact too.
        let prior: Vec<f64> = truth.to_vec();
        let m = ridge(&rows, &y, 6, Some(&prior), 1e3).unwrap();
        for (row, yi) in rows.iter().zip(&y) {
            assert!((m.predict(row) - yi).abs() < 1e-6);
        }
        // Without the prior, a huge λ predicts the mean.
        let m = ridge(&rows, &y, 6, None, 1e12).unwrap();
        let mean = y.iter().sum::<f64>() / y.len() as f64;
        assert!((m.predict(&rows[0]) - mean).abs() < 1e-3);
    }

    #[test]
    fn cross_validation_predicts_unseen_rows_and_reports_them() {
        let truth = [1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 0.5, 0.7];
        let mut rows = Vec::new();
        let mut y = Vec::new();
        for a in 0..3 {
            for b in 3..6 {
                for c in 6..8 {
                    rows.push(vec![(a, 1.0), (b, 1.0), (c, 1.0)]);
                    y.push(40.0 + truth[a] + truth[b] + truth[c]);
                }
            }
        }
        let cv = cross_validated(&rows, &y, 8, None, 3).unwrap();
        let acc = Accuracy::of(&cv.held_out, &y);
        assert_eq!(acc.n, 18);
        assert!(acc.rmspe < 1.0 && acc.within_5 == 100.0 && acc.kendall_tau > 0.9, "{acc:?}");
        assert!(cv.lambda <= 0.01 * 3.0, "an exact model wants little shrinkage: {}", cv.lambda);
    }
}
