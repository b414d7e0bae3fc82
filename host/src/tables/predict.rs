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
//! **Model** ([`KindModel`]): per kind, a global fit over one of three feature sets, chosen by
//! 5-fold held-out RMSPE (all recorded): `parts` (linear in the work of the layer's parts),
//! `log` (ln latency linear in the logs of resolution, channels, expansion and kernel, plus the
//! stride, residual, h-swish and SE flags) and `log2` (`log` with the products of two logs, so
//! efficiency may change with shape). Then the prediction borrows the residual (in ln) of the
//! three nearest measured keys of the same cell, weighted by closeness in widths: the global
//! fit gets how latency scales with shape, the neighbours what is particular to that
//! resolution, kernel and stride on this engine. Measured on `proxylessnas-enlarged` (549 of
//! 1,536 `ib` keys measured, 97 predicted ones measured afterwards), the median |error| of
//! `parts` alone was 18.5%, `log2` alone 4.0%, `log2` with neighbours 1.5%.

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

/// The feature sets, by name: `parts` (linear in the work of the layer's parts, least squares
/// on the relative error), `log` (ln latency linear in the logs of the shape and the flags) and
/// `log2` (`log` with every product of two logs: how efficiency changes with shape).
pub const FEATURE_SETS: [&str; 3] = ["parts", "log", "log2"];

/// The logs of a key's shape (resolution, channels, expansion, kernel; those that vary for its
/// kind) and its flags (stride 2, residual, h-swish, SE).
fn shape_logs(key: &OpKey) -> (Vec<f64>, Vec<f64>) {
    let ln = |v: u32| f64::from(v.max(1)).ln();
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let logs = match key.kind {
        OpKind::Bottleneck => {
            vec![ln(key.h), ln(key.cin), ln(key.cout), ln(key.expanded), ln(key.kernel)]
        }
        OpKind::SepConv => vec![ln(key.h), ln(key.cin), ln(key.cout), ln(key.kernel)],
        OpKind::StemConv | OpKind::HeadConv | OpKind::GlobalPool | OpKind::Classifier => {
            vec![ln(key.h), ln(key.cin), ln(key.cout)]
        }
    };
    let flags = vec![
        flag(key.stride == 2),
        flag(key.residual),
        flag(key.act == Activation::HSwish),
        flag(key.se > 0),
    ];
    (logs, flags)
}

/// The features of `key` in set `set` (the constant last).
pub fn features(key: &OpKey, set: &str) -> Vec<f64> {
    match set {
        "log" | "log2" => {
            let (logs, flags) = shape_logs(key);
            let mut v = logs.clone();
            v.extend(&flags);
            if set == "log2" {
                for i in 0..logs.len() {
                    for j in i..logs.len() {
                        v.push(logs[i] * logs[j]);
                    }
                }
                // Stride 2 changes how every size matters.
                v.extend(logs.iter().map(|l| l * flags[0]));
            }
            v.push(1.0);
            v
        }
        _ => parts(key),
    }
}

/// Work of the layer's parts (in millions; the constant last).
fn parts(key: &OpKey) -> Vec<f64> {
    let mega = |v: u64| v as f64 / 1e6;
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

/// Neighbours whose residual a prediction borrows (same cell, nearest widths).
pub const NEIGHBOURS: usize = 3;

/// A fitted model of one kind: a global fit, then the residual of the nearest measured keys of
/// the same cell (everything but the widths) carried over — the global fit gets how latency
/// scales with shape, the neighbours what is particular to that resolution, kernel and stride
/// on this engine.
#[derive(Debug, Clone)]
pub struct KindModel {
    /// The feature set.
    pub set: &'static str,
    /// One weight per feature.
    pub weights: Vec<f64>,
    /// Every fitted key with ln(measured / global fit).
    residuals: Vec<(OpKey, f64)>,
    /// The least a prediction may be: a tenth of the fastest fitted key (a linear fit can go
    /// negative outside the measured range; a latency cannot).
    floor: f64,
}

impl KindModel {
    /// Fits `set` on measured `keys` with medians `y` (µs); `None` if singular.
    pub fn fit(keys: &[&OpKey], y: &[f64], set: &'static str) -> Option<KindModel> {
        let x: Vec<Vec<f64>> = keys.iter().map(|k| features(k, set)).collect();
        let weights = if set == "parts" {
            least_squares(&x, y, |yi| 1.0 / (yi * yi), |yi| yi)?
        } else {
            least_squares(&x, y, |_| 1.0, f64::ln)?
        };
        let floor = 0.1 * y.iter().copied().fold(f64::INFINITY, f64::min);
        let mut m = KindModel { set, weights, residuals: Vec::new(), floor };
        m.residuals = keys
            .iter()
            .zip(y)
            .map(|(k, &yi)| ((*k).clone(), (yi / m.global(k).max(m.floor)).ln()))
            .filter(|(_, r)| r.is_finite())
            .collect();
        Some(m)
    }

    /// The global fit alone (µs).
    fn global(&self, key: &OpKey) -> f64 {
        let v: f64 = features(key, self.set).iter().zip(&self.weights).map(|(x, w)| x * w).sum();
        if self.set == "parts" {
            v
        } else {
            v.exp()
        }
    }

    /// The predicted latency of `key` (µs).
    pub fn predict(&self, key: &OpKey) -> f64 {
        let ln_ratio = |a: u32, b: u32| (f64::from(a.max(1)) / f64::from(b.max(1))).ln().abs();
        let mut near: Vec<(f64, f64)> = self
            .residuals
            .iter()
            .filter(|(k, _)| cell(k) == cell(key))
            .map(|(k, r)| {
                let d = ln_ratio(k.cin, key.cin)
                    + ln_ratio(k.cout, key.cout)
                    + ln_ratio(k.expanded, key.expanded);
                (d, *r)
            })
            .collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0));
        near.truncate(NEIGHBOURS);
        let (num, den) = near
            .iter()
            .fold((0.0, 0.0), |(n, d), (dist, r)| (n + r / (dist + 0.05), d + 1.0 / (dist + 0.05)));
        let carried = if den > 0.0 { num / den } else { 0.0 };
        self.global(key).max(self.floor) * carried.exp()
    }
}

/// Weighted least squares of `target(y) ≈ X·w` with row weights `weight(y)`, and a tiny ridge
/// on the normal equations for stability; `None` if singular.
fn least_squares(
    x: &[Vec<f64>],
    y: &[f64],
    weight: impl Fn(f64) -> f64,
    target: impl Fn(f64) -> f64,
) -> Option<Vec<f64>> {
    let p = x.first()?.len();
    let mut a = vec![vec![0.0; p]; p];
    let mut b = vec![0.0; p];
    for (row, &yi) in x.iter().zip(y) {
        let (wgt, t) = (weight(yi), target(yi));
        for i in 0..p {
            b[i] += wgt * row[i] * t;
            for j in 0..p {
                a[i][j] += wgt * row[i] * row[j];
            }
        }
    }
    let trace = (0..p).map(|i| a[i][i]).sum::<f64>() / p as f64;
    for (i, r) in a.iter_mut().enumerate() {
        r[i] += 1e-8 * trace.max(1e-300);
    }
    crate::latency::fit::cholesky_solve(a, b)
}

/// Held-out relative errors of `set` by `FOLDS`-fold cross-validation (rows assigned to folds
/// round-robin), or `None` if a fold cannot be fitted.
fn held_out(keys: &[&OpKey], y: &[f64], set: &'static str) -> Option<Vec<f64>> {
    let n = keys.len();
    let fit = |train: &[usize]| {
        let tk: Vec<&OpKey> = train.iter().map(|&i| keys[i]).collect();
        let ty: Vec<f64> = train.iter().map(|&i| y[i]).collect();
        KindModel::fit(&tk, &ty, set)
    };
    let pred = crate::latency::fit::k_fold(n, FOLDS.min(n), fit, |m, i| m.predict(keys[i]))?;
    let errors: Vec<f64> = pred.iter().zip(y).map(|(p, m)| p / m - 1.0).collect();
    errors.iter().all(|e| e.is_finite()).then_some(errors)
}

/// Root mean square of relative errors.
pub fn rmspe(errors: &[f64]) -> f64 {
    (errors.iter().map(|e| e * e).sum::<f64>() / errors.len().max(1) as f64).sqrt()
}

/// Median |relative error|.
pub fn median_abs(errors: &[f64]) -> f64 {
    let mut v: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
    v.sort_by(f64::total_cmp);
    latency_tables::stats::quantile(&v, 0.5)
}

/// Fits one model per kind on the measured entries of `table` and adds a predicted entry for
/// every key of `keys` the table lacks (failures stay failures). Returns the fit summary, also
/// stored in the table. A kind with too few measurements to fit is an error naming it.
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
        if !todo.is_empty() && rows.len() >= 2 * FOLDS {
            for set in FEATURE_SETS {
                // Enough rows per weight in every training fold.
                if (rows.len() * (FOLDS - 1)) / FOLDS < 2 * features(rkeys[0], set).len() {
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
                "cannot predict the {} {} keys: only {} of the kind were measured, too few to fit and check a model (at least {}); raise --budget",
                todo.len(),
                kind.tag(),
                rows.len(),
                (2 * features(todo[0], "parts").len() * FOLDS).div_ceil(FOLDS - 1)
            );
        };
        let model = KindModel::fit(&rkeys, &y, set)
            .ok_or_else(|| anyhow::anyhow!("the {} fit is singular", kind.tag()))?;
        let error = rmspe(&errors);
        for k in &todo {
            new_entries.push(Entry::prediction((*k).clone(), model.predict(k), error));
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
        model: "per kind: a global fit (feature set chosen by 5-fold held-out RMSPE), times the residual of the 3 nearest measured keys of the same resolution, kernel, stride, activation, SE and residual".into(),
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
        // The device is linear in the parts' work: held-out error picks that set.
        assert!(ib.features == "parts" && ib.tried.len() >= 2, "{:?}", ib.tried);
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
