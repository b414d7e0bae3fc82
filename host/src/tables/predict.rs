//! Predicted keys (`tunas profile --budget N`, issue 14): measure N keys chosen to cover a
//! space, fit a per-kind latency model on them, and predict every other key, each marked
//! `predicted` with its model's held-out error.
//!
//! **Choice** ([`choose`]): kinds with few keys (stem, head, pooling, classifier in the usual
//! spaces) are measured whole; the budget left is shared among the other kinds in proportion to
//! their size. Within a kind, keys are grouped into cells by everything but width — kernel,
//! stride, activation, SE or not, residual or not, input resolution — every cell gets at least
//! one key, the rest is shared in proportion to the cells' sizes, and within a cell the keys
//! are taken evenly along their MAC count (narrowest and widest first).
//!
//! **Model** ([`fit`]): latency is linear in the work of the layer's parts — a sum of
//! per-part costs is how an engine that runs the parts one after another spends its time — so
//! each kind is fitted by least squares on the relative error (rows weighted by 1/y²) over two
//! feature sets, and the one with the lower k-fold held-out error is kept:
//! `macs` (MACs and a constant) and `parts` (each convolution's MACs, the depthwise MACs by
//! kernel size, the element traffic of the expanded tensors, the h-swish, SE and residual work,
//! and a constant). The table records both held-out errors.

use std::collections::BTreeMap;

use latency_tables::{Activation, Entry, KindFit, LatencyTable, OpKey, OpKind, PredictionFit};

/// Kinds with at most this many keys are measured whole.
pub const SMALL_KIND: usize = 16;
/// Least keys measured of a kind that is predicted (the fit needs rows for its k folds).
pub const MIN_PER_KIND: usize = 24;
/// Folds of the held-out error.
pub const FOLDS: usize = 5;

/// The keys to measure, at most `budget` of `keys` (more if the small kinds and the minimum
/// per kind need it), in plan order.
pub fn choose(keys: &[OpKey], budget: usize) -> Vec<OpKey> {
    let mut by_kind: BTreeMap<OpKind, Vec<&OpKey>> = BTreeMap::new();
    for k in keys {
        by_kind.entry(k.kind).or_default().push(k);
    }
    let small: usize = by_kind.values().filter(|v| v.len() <= SMALL_KIND).map(Vec::len).sum();
    let big: usize = by_kind.values().filter(|v| v.len() > SMALL_KIND).map(Vec::len).sum();
    let left = budget.saturating_sub(small);
    let mut chosen: Vec<OpKey> = Vec::new();
    for group in by_kind.values() {
        if group.len() <= SMALL_KIND {
            chosen.extend(group.iter().map(|k| (*k).clone()));
            continue;
        }
        let share = (left as f64 * group.len() as f64 / big.max(1) as f64).round() as usize;
        chosen.extend(spread(group, share.clamp(MIN_PER_KIND.min(group.len()), group.len())));
    }
    let order: BTreeMap<&OpKey, usize> = keys.iter().enumerate().map(|(i, k)| (k, i)).collect();
    chosen.sort_by_key(|k| order.get(k).copied().unwrap_or(usize::MAX));
    chosen
}

/// Everything but the width: the cell a key is spread within.
fn cell(k: &OpKey) -> (u32, u32, u32, Activation, bool, bool) {
    (k.h, k.kernel, k.stride, k.act, k.se > 0, k.residual)
}

/// `n` keys of one kind: at least one per cell, the rest in proportion, evenly along MACs.
fn spread(group: &[&OpKey], n: usize) -> Vec<OpKey> {
    let mut cells: BTreeMap<_, Vec<&OpKey>> = BTreeMap::new();
    for k in group {
        cells.entry(cell(k)).or_default().push(*k);
    }
    let total = group.len() as f64;
    let extra = n.saturating_sub(cells.len()) as f64;
    let mut out = Vec::with_capacity(n);
    for members in cells.values_mut() {
        members.sort_by_key(|k| (k.macs(), k.to_string()));
        let m = members.len();
        let want = (1 + (extra * m as f64 / total).round() as usize).min(m);
        out.extend(evenly(members, want).into_iter().cloned());
    }
    out
}

/// `want` of `sorted`, evenly spaced, both ends first.
fn evenly<'a>(sorted: &[&'a OpKey], want: usize) -> Vec<&'a OpKey> {
    let m = sorted.len();
    if want >= m {
        return sorted.to_vec();
    }
    if want == 1 {
        return vec![sorted[m / 2]];
    }
    let mut idx: Vec<usize> = (0..want)
        .map(|i| (i as f64 * (m - 1) as f64 / (want - 1) as f64).round() as usize)
        .collect();
    idx.dedup();
    idx.into_iter().map(|i| sorted[i]).collect()
}

/// The feature sets, by name.
pub const FEATURE_SETS: [&str; 2] = ["macs", "parts"];

/// The features of `key` in set `set` (work in millions; the constant last).
pub fn features(key: &OpKey, set: &str) -> Vec<f64> {
    let mega = |v: u64| v as f64 / 1e6;
    if set == "macs" {
        return vec![mega(key.macs()), 1.0];
    }
    let (oh, ow) = key.output_hw();
    let (h, w, oh, ow) = (u64::from(key.h), u64::from(key.w), u64::from(oh), u64::from(ow));
    let (cin, cout, e, se) =
        (u64::from(key.cin), u64::from(key.cout), u64::from(key.expanded), u64::from(key.se));
    let k2 = u64::from(key.kernel * key.kernel);
    let hswish = key.act == Activation::HSwish;
    // Depthwise MACs by kernel size (3, 5, 7 and larger), so each kernel's efficiency is its own.
    let by_kernel = |macs: u64| {
        let mut v = [0.0; 3];
        v[match key.kernel {
            0..=3 => 0,
            4..=5 => 1,
            _ => 2,
        }] = mega(macs);
        v
    };
    let res = if key.residual { mega(oh * ow * cout) } else { 0.0 };
    match key.kind {
        OpKind::Bottleneck => {
            let expanded = h * w * e + oh * ow * e;
            let dw = by_kernel(oh * ow * e * k2);
            vec![
                mega(h * w * cin * e),
                dw[0],
                dw[1],
                dw[2],
                mega(oh * ow * e * cout),
                mega(expanded),
                if hswish { mega(expanded) } else { 0.0 },
                if se > 0 { mega(2 * e * se + oh * ow * e) } else { 0.0 },
                res,
                1.0,
            ]
        }
        OpKind::SepConv => {
            let dw = by_kernel(oh * ow * cin * k2);
            vec![dw[0], dw[1], dw[2], mega(oh * ow * cin * cout), mega(h * w * cin), res, 1.0]
        }
        OpKind::StemConv | OpKind::HeadConv => {
            vec![mega(key.macs()), mega(oh * ow * cout), 1.0]
        }
        OpKind::GlobalPool | OpKind::Classifier => vec![mega(key.macs()), 1.0],
    }
}

/// A fitted linear model of one kind.
#[derive(Debug, Clone)]
pub struct KindModel {
    /// The feature set.
    pub set: &'static str,
    /// One weight per feature (µs per unit).
    pub weights: Vec<f64>,
}

impl KindModel {
    /// The predicted latency of `key` (µs), never below a tenth of the smallest fitted row.
    pub fn predict(&self, key: &OpKey) -> f64 {
        features(key, self.set).iter().zip(&self.weights).map(|(x, w)| x * w).sum()
    }
}

/// Weighted least squares of `y ≈ X·w` on the relative error (rows weighted by 1/y²), with a
/// tiny ridge on the scaled normal equations for stability; `None` if singular.
fn least_squares(x: &[Vec<f64>], y: &[f64]) -> Option<Vec<f64>> {
    let p = x.first()?.len();
    let mut a = vec![vec![0.0; p]; p];
    let mut b = vec![0.0; p];
    for (row, &yi) in x.iter().zip(y) {
        let wgt = 1.0 / (yi * yi);
        for i in 0..p {
            b[i] += wgt * row[i] * yi;
            for j in 0..p {
                a[i][j] += wgt * row[i] * row[j];
            }
        }
    }
    let trace = (0..p).map(|i| a[i][i]).sum::<f64>() / p as f64;
    for (i, r) in a.iter_mut().enumerate() {
        r[i] += 1e-9 * trace.max(1e-300);
    }
    crate::latency::fit::cholesky_solve(a, b)
}

/// Held-out relative errors of `set` over `rows` by `FOLDS`-fold cross-validation (rows
/// assigned to folds round-robin), or `None` if a fold cannot be fitted.
fn held_out(keys: &[&OpKey], y: &[f64], set: &str) -> Option<Vec<f64>> {
    let n = keys.len();
    let folds = FOLDS.min(n);
    let x: Vec<Vec<f64>> = keys.iter().map(|k| features(k, set)).collect();
    let mut errors = vec![0.0; n];
    for f in 0..folds {
        let train: Vec<usize> = (0..n).filter(|i| i % folds != f).collect();
        let tx: Vec<Vec<f64>> = train.iter().map(|&i| x[i].clone()).collect();
        let ty: Vec<f64> = train.iter().map(|&i| y[i]).collect();
        let w = least_squares(&tx, &ty)?;
        for i in (0..n).filter(|i| i % folds == f) {
            let p: f64 = x[i].iter().zip(&w).map(|(a, b)| a * b).sum();
            errors[i] = p / y[i] - 1.0;
        }
    }
    Some(errors)
}

fn rmspe(errors: &[f64]) -> f64 {
    (errors.iter().map(|e| e * e).sum::<f64>() / errors.len().max(1) as f64).sqrt()
}

fn median_abs(errors: &[f64]) -> f64 {
    let mut v: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
    v.sort_by(f64::total_cmp);
    latency_tables::stats::quantile(&v, 0.5)
}

/// Fits one model per kind on the measured entries of `table` and adds a predicted entry for
/// every key of `keys` the table lacks (failures stay failures). Returns the fit summary, also
/// stored in the table. A kind with nothing measured cannot be predicted: its keys are left out
/// and named in the error.
pub fn predict_missing(table: &mut LatencyTable, keys: &[OpKey]) -> anyhow::Result<PredictionFit> {
    let failed: std::collections::BTreeSet<String> =
        table.failures().map(|f| f.key.to_string()).collect();
    let missing: Vec<&OpKey> = keys
        .iter()
        .filter(|k| table.get(k).is_none() && !failed.contains(&k.to_string()))
        .collect();
    let mut kinds = Vec::new();
    let mut new_entries = Vec::new();
    for kind in OpKind::ALL {
        let todo: Vec<&OpKey> = missing.iter().copied().filter(|k| k.kind == kind).collect();
        let rows: Vec<&Entry> =
            table.entries().filter(|e| e.key.kind == kind && e.measured()).collect();
        if rows.is_empty() && todo.is_empty() {
            continue;
        }
        let rkeys: Vec<&OpKey> = rows.iter().map(|e| &e.key).collect();
        let y: Vec<f64> = rows.iter().map(|e| e.median).collect();
        let mut tried = Vec::new();
        let mut best: Option<(&'static str, Vec<f64>)> = None;
        if rows.len() >= 2 * FOLDS {
            for set in FEATURE_SETS {
                let p = features(rkeys[0], set).len();
                if rows.len() < 2 * p {
                    continue;
                }
                if let Some(err) = held_out(&rkeys, &y, set) {
                    tried.push((set.to_string(), rmspe(&err)));
                    if best.as_ref().is_none_or(|(_, b)| rmspe(&err) < rmspe(b)) {
                        best = Some((set, err));
                    }
                }
            }
        }
        let Some((set, errors)) = best else {
            if todo.is_empty() {
                continue; // measured whole: nothing to predict
            }
            anyhow::bail!(
                "cannot predict the {} {} keys: only {} of the kind were measured (at least {} are needed); raise --budget",
                todo.len(),
                kind.tag(),
                rows.len(),
                2 * FOLDS.max(features(todo[0], "parts").len())
            );
        };
        let x: Vec<Vec<f64>> = rkeys.iter().map(|k| features(k, set)).collect();
        let weights = least_squares(&x, &y)
            .ok_or_else(|| anyhow::anyhow!("the {} fit is singular", kind.tag()))?;
        let model = KindModel { set, weights };
        let floor = y.iter().copied().fold(f64::INFINITY, f64::min) * 0.1;
        let error = rmspe(&errors);
        for k in &todo {
            new_entries.push(Entry::prediction((*k).clone(), model.predict(k).max(floor), error));
        }
        kinds.push(KindFit {
            kind: kind.tag().into(),
            measured: rows.len(),
            predicted: todo.len(),
            features: set.into(),
            rmspe: error,
            median_abs_error: median_abs(&errors),
            tried,
        });
    }
    for e in new_entries {
        table.insert(e);
    }
    let fit = PredictionFit {
        model: "per-kind linear model of the parts' work, least squares on relative error; features chosen by 5-fold held-out RMSPE".into(),
        kinds,
    };
    table.prediction = Some(fit.clone());
    Ok(fit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use latency_tables::{Fingerprint, LatencyStats, Method};

    fn plan() -> Vec<OpKey> {
        let mut keys: Vec<OpKey> = Vec::new();
        for (h, cin, cout) in [(56u32, 24u32, 32u32), (28, 32, 48), (14, 48, 96)] {
            for k in [3u32, 5, 7] {
                for s in [1u32, 2] {
                    for e in [3u32, 4, 6] {
                        let res = s == 1 && cin == cout;
                        let text = format!(
                            "ib/{h}x{h}x{cin}/o{cout}/k{k}/s{s}/e{}/se0/relu{}",
                            cin * e,
                            if res { "/res" } else { "" }
                        );
                        keys.push(text.parse().unwrap());
                    }
                }
            }
        }
        keys.push("pool/7x7x1280".parse().unwrap());
        keys.push("fc/1x1x1280/o1001".parse().unwrap());
        keys
    }

    /// A device whose cost is linear in the parts' work, with ±2% of deterministic noise.
    fn truth(k: &OpKey, i: usize) -> f64 {
        let f = features(k, "parts");
        let w = match k.kind {
            OpKind::Bottleneck => vec![9.0, 30.0, 22.0, 18.0, 9.0, 2.0, 0.0, 0.0, 1.0, 40.0],
            _ => vec![5.0, 3.0],
        };
        let t: f64 = f.iter().zip(&w).map(|(a, b)| a * b).sum();
        t * (1.0 + 0.02 * (((i * 7919) % 13) as f64 / 6.0 - 1.0))
    }

    #[test]
    fn a_budget_covers_every_kind_and_cell() {
        let keys = plan();
        let chosen = choose(&keys, 30);
        assert!(chosen.iter().any(|k| k.kind == OpKind::GlobalPool));
        assert!(chosen.iter().any(|k| k.kind == OpKind::Classifier));
        let cells: std::collections::BTreeSet<_> = keys.iter().map(cell).collect();
        let covered: std::collections::BTreeSet<_> = chosen.iter().map(cell).collect();
        assert_eq!(cells, covered, "every (resolution, kernel, stride, act, SE, residual) cell");
        assert!(chosen.len() <= keys.len());
        let all = choose(&keys, 10_000);
        assert_eq!(all.len(), keys.len());
    }

    #[test]
    fn predicted_keys_are_marked_and_near_the_truth() {
        let keys = plan();
        let chosen = choose(&keys, 40);
        let mut table = LatencyTable::new(Fingerprint::default(), Method::default());
        for (i, k) in chosen.iter().enumerate() {
            let us = truth(k, i);
            let stats = LatencyStats::from_samples(&[us * 0.99, us, us * 1.01]).unwrap();
            table.insert(Entry::new(k.clone(), stats, 0.0, false));
        }
        let fit = predict_missing(&mut table, &keys).unwrap();
        assert_eq!(table.len(), keys.len());
        assert_eq!(table.predicted_len(), keys.len() - chosen.len());
        let ib = fit.kinds.iter().find(|k| k.kind == "ib").unwrap();
        assert_eq!(ib.features, "parts", "{:?}", ib.tried);
        assert!(ib.rmspe < 0.05, "{ib:?}");
        for (i, k) in keys.iter().enumerate() {
            let e = table.get(k).unwrap();
            if e.measured() {
                continue;
            }
            assert_eq!(e.n, 0);
            assert!((e.median / truth(k, i) - 1.0).abs() < 0.1, "{k}: {}", e.median);
        }
        // A table with predictions survives the round trip through its file.
        let back =
            LatencyTable::from_json(&table.to_json(), std::path::Path::new("t.json")).unwrap();
        assert_eq!(back, table);
    }

    #[test]
    fn a_kind_without_enough_measurements_is_an_error_naming_it() {
        let keys = plan();
        let mut table = LatencyTable::new(Fingerprint::default(), Method::default());
        let k = &keys[0];
        table.insert(Entry::new(
            k.clone(),
            LatencyStats::from_samples(&[10.0]).unwrap(),
            0.0,
            false,
        ));
        let err = predict_missing(&mut table, &keys).unwrap_err().to_string();
        assert!(err.contains("ib keys") && err.contains("raise --budget"), "{err}");
    }
}
