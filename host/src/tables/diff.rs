//! `tables diff`: what changed between two tables of the same device, e.g. before and after a
//! firmware or engine update.
//!
//! - Per common key, Δ = (new − old) / old of the medians. A key has *moved* when
//!   |Δ| ≥ max([`MIN_THRESHOLD`], [`NOISE_FACTOR`] × noise), where noise is the larger relative
//!   spread `(p90 − p10) / median` of its two entries: a noisy key needs a larger change.
//! - The *systematic* shift: the median of the per-key ratios new/old over the common keys, with
//!   a 95% bootstrap interval ([`Systematic`]). A firmware update that slows every op by 15% is a
//!   ratio of 1.15, even when no single key moves beyond its noise. Each key is also classified
//!   against that shift (`relative_delta`, `moved_relative`): the keys that changed differently
//!   from the rest.
//! - Which fingerprint and method fields changed (every field, compared as JSON).
//! - Per op kind, the speed-up old/new (median over its common keys), and with different thread
//!   counts the threads efficiency (speed-up ÷ thread ratio): tables of two configurations of
//!   one device (`tunas profile --threads 1,2 --cluster big,little`, or f32 against i8: keys
//!   are matched by layer, whatever their precision) compare kind by kind.
//! - The predicted change of T(α) for the reference architectures of a space and its median
//!   architecture, using each table as a [`MeasuredTable`], like with like: raw Σ of medians
//!   with raw Σ always, and corrected with corrected when both tables carry a correction, each
//!   labelled. An architecture whose keys a table lacks is reported as missing keys, never as 0.

use std::collections::BTreeSet;
use std::io::{self, Write};

use latency_tables::stats::quantile;
use latency_tables::{Entry, LatencyTable, OpKey, OpKind};
use serde::Serialize;

use super::{field_changes, relative_spread, FieldChange};
use crate::latency::{LatencyError, LatencyModel, MeasuredTable};
use crate::rng::Rng;
use crate::space::{reference_architectures, space_names, Architecture, SearchSpace, SpaceError};

/// The smallest relative change of a median that counts as a move (5%).
pub const MIN_THRESHOLD: f64 = 0.05;
/// A move must also exceed this many times the key's relative spread.
pub const NOISE_FACTOR: f64 = 3.0;

/// One key present in both tables, classified.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyChange {
    /// The op key.
    pub key: String,
    /// Old median (µs).
    pub old_us: f64,
    /// New median (µs).
    pub new_us: f64,
    /// Relative change of the median, `(new − old) / old` (a fraction, not %).
    pub delta: f64,
    /// The larger relative spread of the two entries.
    pub noise: f64,
    /// The |Δ| needed to count as moved: `max(MIN_THRESHOLD, NOISE_FACTOR × noise)`.
    pub threshold: f64,
    /// Whether |Δ| ≥ threshold.
    pub moved: bool,
    /// Change relative to the systematic shift, `new / (old · ratio) − 1`.
    pub relative_delta: f64,
    /// Whether |relative Δ| ≥ threshold: the key changed differently from the rest.
    pub moved_relative: bool,
}

/// Classifies one key measured in both tables, in absolute terms and against a systematic
/// shift `ratio` (1 for none).
pub fn classify(old: &Entry, new: &Entry, ratio: f64) -> KeyChange {
    let delta = if old.median > 0.0 {
        (new.median - old.median) / old.median
    } else if new.median > 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    let noise = relative_spread(old).max(relative_spread(new));
    let threshold = MIN_THRESHOLD.max(NOISE_FACTOR * noise);
    let relative_delta = if old.median > 0.0 && ratio > 0.0 {
        new.median / (old.median * ratio) - 1.0
    } else {
        delta
    };
    KeyChange {
        key: old.key.to_string(),
        old_us: old.median,
        new_us: new.median,
        delta,
        noise,
        threshold,
        moved: delta.abs() >= threshold,
        relative_delta,
        moved_relative: relative_delta.abs() >= threshold,
    }
}

/// Bootstrap resamples behind [`Systematic`]'s interval.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// The global shift between two tables: the median of the per-key ratios new/old over the
/// common keys, with a 95% percentile-bootstrap interval (resampling keys).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Systematic {
    /// Median of the per-key ratios new/old.
    pub ratio: f64,
    /// 2.5th percentile of the bootstrap medians.
    pub low: f64,
    /// 97.5th percentile of the bootstrap medians.
    pub high: f64,
    /// Common keys with positive medians in both tables.
    pub keys: usize,
}

impl Systematic {
    /// The shift of `ratios` (one per common key), or `None` without any. The bootstrap is
    /// seeded, so the same tables always give the same interval.
    pub fn of(ratios: &[f64]) -> Option<Systematic> {
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            quantile(v, 0.5)
        };
        let mut all = ratios.to_vec();
        if all.is_empty() {
            return None;
        }
        let ratio = median(&mut all);
        let mut rng = Rng::new(0x5157);
        let mut medians: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
            .map(|_| {
                let mut v: Vec<f64> =
                    (0..ratios.len()).map(|_| ratios[rng.below(ratios.len())]).collect();
                median(&mut v)
            })
            .collect();
        medians.sort_by(f64::total_cmp);
        Some(Systematic {
            ratio,
            low: quantile(&medians, 0.025),
            high: quantile(&medians, 0.975),
            keys: ratios.len(),
        })
    }

    /// Whether the interval excludes 1: the tables differ as a whole.
    pub fn significant(&self) -> bool {
        self.low > 1.0 || self.high < 1.0
    }
}

/// The per-key comparison of two tables.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyDiff {
    /// The global shift over the common keys (`None` without common keys).
    pub systematic: Option<Systematic>,
    /// Keys whose median moved, largest |Δ| first.
    pub moved: Vec<KeyChange>,
    /// Number of common keys that did not move.
    pub unchanged: usize,
    /// Keys that moved relative to the systematic shift, largest |relative Δ| first.
    pub moved_relative: Vec<KeyChange>,
    /// Keys measured only in the old table.
    pub only_in_old: Vec<String>,
    /// Keys measured only in the new table.
    pub only_in_new: Vec<String>,
}

impl KeyDiff {
    /// Number of keys measured in both tables.
    pub fn common(&self) -> usize {
        self.moved.len() + self.unchanged
    }
}

/// The entry of `new` for the layer of `key` (in `new`'s precision: an f32 and an i8 table
/// compare layer by layer).
fn counterpart<'a>(new: &'a LatencyTable, key: &OpKey) -> Option<&'a Entry> {
    new.get(&key.clone().with_precision(new.precision()))
}

/// One op kind's speed-up between two tables.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindSpeedup {
    /// The kind's tag (`ib`, `sep`, …).
    pub kind: String,
    /// Common keys of the kind.
    pub keys: usize,
    /// Median over those keys of old / new (2 = the new table's keys run twice as fast).
    pub speedup: f64,
    /// With different thread counts: speed-up ÷ (new threads / old threads).
    pub threads_efficiency: Option<f64>,
}

/// Per op kind, the median speed-up old/new over the common keys, with the threads efficiency
/// when the two tables' thread counts differ.
pub fn kind_speedups(old: &LatencyTable, new: &LatencyTable) -> Vec<KindSpeedup> {
    let (t_old, t_new) = (old.method.threads.max(1), new.method.threads.max(1));
    OpKind::ALL
        .into_iter()
        .filter_map(|kind| {
            let mut ratios: Vec<f64> = old
                .entries()
                .filter(|e| e.key.kind == kind && e.median > 0.0)
                .filter_map(|e| counterpart(new, &e.key).map(|n| e.median / n.median))
                .filter(|r| r.is_finite())
                .collect();
            if ratios.is_empty() {
                return None;
            }
            ratios.sort_by(f64::total_cmp);
            let speedup = quantile(&ratios, 0.5);
            let threads_efficiency =
                (t_old != t_new).then(|| speedup / (f64::from(t_new) / f64::from(t_old)));
            Some(KindSpeedup {
                kind: kind.tag().to_string(),
                keys: ratios.len(),
                speedup,
                threads_efficiency,
            })
        })
        .collect()
}

/// Compares the entries of two tables key by key, and as a whole.
pub fn diff_keys(old: &LatencyTable, new: &LatencyTable) -> KeyDiff {
    let common: Vec<(&Entry, &Entry)> =
        old.entries().filter_map(|e| counterpart(new, &e.key).map(|n| (e, n))).collect();
    let ratios: Vec<f64> = common
        .iter()
        .filter(|(o, n)| o.median > 0.0 && n.median > 0.0)
        .map(|(o, n)| n.median / o.median)
        .collect();
    let systematic = Systematic::of(&ratios);
    let ratio = systematic.as_ref().map_or(1.0, |s| s.ratio);
    let (mut moved, mut moved_relative, mut unchanged) = (Vec::new(), Vec::new(), 0);
    for (o, n) in common {
        let c = classify(o, n, ratio);
        if c.moved_relative {
            moved_relative.push(c.clone());
        }
        if c.moved {
            moved.push(c);
        } else {
            unchanged += 1;
        }
    }
    let only_in_old = old
        .entries()
        .filter(|e| counterpart(new, &e.key).is_none())
        .map(|e| e.key.to_string())
        .collect();
    let only_in_new = new
        .entries()
        .filter(|e| counterpart(old, &e.key).is_none())
        .map(|e| e.key.to_string())
        .collect();
    moved.sort_by(|a, b| b.delta.abs().total_cmp(&a.delta.abs()).then_with(|| a.key.cmp(&b.key)));
    moved_relative.sort_by(|a, b| {
        b.relative_delta.abs().total_cmp(&a.relative_delta.abs()).then_with(|| a.key.cmp(&b.key))
    });
    KeyDiff { systematic, moved, unchanged, moved_relative, only_in_old, only_in_new }
}

/// T(α) from one table: milliseconds, or how many distinct keys the table lacks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Predicted {
    /// T(α) in ms.
    Ms(f64),
    /// The table lacks this many distinct keys of the architecture.
    MissingKeys(usize),
    /// The model could not be evaluated for another reason.
    Unavailable(String),
}

impl Predicted {
    fn ms(&self) -> Option<f64> {
        match self {
            Predicted::Ms(v) => Some(*v),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Predicted::Ms(v) => format!("{v:.3}"),
            Predicted::MissingKeys(n) => format!("missing {n} keys"),
            Predicted::Unavailable(why) => format!("unavailable ({why})"),
        }
    }
}

/// What a predicted T(α) is: the raw Σ of the table's medians, or Σ with the table's affine
/// correction. Two tables are only ever compared on the same basis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Σ of medians, both tables without their corrections.
    Raw,
    /// Σ of medians with each table's own correction (only when both have one).
    Corrected,
}

impl Basis {
    fn label(self) -> &'static str {
        match self {
            Basis::Raw => "raw Σ",
            Basis::Corrected => "corrected",
        }
    }
}

/// The predicted latency of one architecture from both tables.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchPrediction {
    /// Raw Σ or corrected, the same for both tables.
    pub basis: Basis,
    /// The space.
    pub space: String,
    /// The reference architecture's name, or `median`.
    pub architecture: String,
    /// T(α) from the old table.
    pub old: Predicted,
    /// T(α) from the new table.
    pub new: Predicted,
    /// `(new − old) / old` (a fraction) when both are known.
    pub delta: Option<f64>,
}

/// The "median architecture" of a space: every decision at index `(num_choices − 1) / 2`.
pub fn median_architecture(space: &SearchSpace) -> Architecture {
    Architecture { indices: space.decisions.iter().map(|d| (d.num_choices() - 1) / 2).collect() }
}

/// The architectures predicted for a space: its reference architectures, then `median`.
pub fn space_architectures(space: &SearchSpace) -> Result<Vec<(String, Architecture)>, SpaceError> {
    let mut archs = Vec::new();
    for r in reference_architectures(space.name) {
        archs.push((r.name.to_string(), space.parse_arch(r.indices)?));
    }
    archs.push(("median".to_string(), median_architecture(space)));
    Ok(archs)
}

/// Whether every key of every architecture of `space` (see [`space_architectures`]) is in both
/// tables.
pub fn covers(
    old: &LatencyTable,
    new: &LatencyTable,
    space: &SearchSpace,
    resolution: u32,
) -> Result<bool, SpaceError> {
    for (_, arch) in space_architectures(space)? {
        let net = space.resolve(&arch, resolution).with_precision(new.precision()).network;
        if net.layers.iter().any(|k| counterpart(old, k).is_none() || new.get(k).is_none()) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn predict_one(model: &MeasuredTable, arch: &Architecture) -> Predicted {
    match model.latency_ms(arch) {
        Ok(ms) => Predicted::Ms(ms),
        Err(LatencyError::MissingKeys { keys, .. }) => {
            Predicted::MissingKeys(keys.iter().collect::<BTreeSet<_>>().len())
        }
        Err(e) => Predicted::Unavailable(e.to_string()),
    }
}

/// Predicts T(α) with both tables for every architecture of `space`: raw Σ always, and
/// corrected when both tables carry a correction (never one corrected against one raw).
pub fn predict(
    (old, old_name): (&LatencyTable, &str),
    (new, new_name): (&LatencyTable, &str),
    space: &SearchSpace,
    resolution: u32,
) -> Result<Vec<ArchPrediction>, SpaceError> {
    let raw = |t: &LatencyTable| {
        let mut t = t.clone();
        t.correction = None;
        t
    };
    let mut bases = vec![(Basis::Raw, raw(old), raw(new))];
    if old.correction.is_some() && new.correction.is_some() {
        bases.push((Basis::Corrected, old.clone(), new.clone()));
    }
    let archs = space_architectures(space)?;
    let mut out = Vec::new();
    for (basis, old, new) in bases {
        let old_model = MeasuredTable::new(old, old_name, space.clone(), resolution);
        let new_model = MeasuredTable::new(new, new_name, space.clone(), resolution);
        for (name, arch) in &archs {
            let o = predict_one(&old_model, arch);
            let n = predict_one(&new_model, arch);
            let delta = match (o.ms(), n.ms()) {
                (Some(a), Some(b)) if a > 0.0 => Some((b - a) / a),
                _ => None,
            };
            out.push(ArchPrediction {
                basis,
                space: space.name.to_string(),
                architecture: name.clone(),
                old: o,
                new: n,
                delta,
            });
        }
    }
    Ok(out)
}

/// Everything `tables diff` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableDiff {
    /// The old table's name (its path).
    pub old: String,
    /// The new table's name (its path).
    pub new: String,
    /// Fingerprint fields that changed.
    pub fingerprint: Vec<FieldChange>,
    /// Method fields that changed.
    pub method: Vec<FieldChange>,
    /// The correction, when it changed.
    pub correction: Option<FieldChange>,
    /// The per-key comparison.
    pub keys: KeyDiff,
    /// Per op kind, the speed-up old/new.
    pub kinds: Vec<KindSpeedup>,
    /// The resolution of the predictions.
    pub resolution: u32,
    /// The spaces predicted (given, or every space both tables cover).
    pub spaces: Vec<String>,
    /// Predicted T(α) of each space's architectures.
    pub predictions: Vec<ArchPrediction>,
}

/// Compares two tables. With `space`, predicts for that space whatever keys are missing;
/// without, for every space whose architectures both tables fully cover.
pub fn diff_tables(
    (old, old_name): (&LatencyTable, &str),
    (new, new_name): (&LatencyTable, &str),
    space: Option<&SearchSpace>,
    resolution: u32,
) -> Result<TableDiff, SpaceError> {
    let spaces = match space {
        Some(s) => vec![s.clone()],
        None => {
            let mut v = Vec::new();
            for name in space_names() {
                let s = SearchSpace::by_name(name)?;
                if covers(old, new, &s, resolution)? {
                    v.push(s);
                }
            }
            v
        }
    };
    let mut predictions = Vec::new();
    for s in &spaces {
        predictions.extend(predict((old, old_name), (new, new_name), s, resolution)?);
    }
    let correction = (old.correction != new.correction).then(|| FieldChange {
        field: "correction".into(),
        old: serde_json::to_value(&old.correction).unwrap_or_default(),
        new: serde_json::to_value(&new.correction).unwrap_or_default(),
    });
    Ok(TableDiff {
        old: old_name.to_string(),
        new: new_name.to_string(),
        fingerprint: field_changes(&old.fingerprint, &new.fingerprint),
        method: field_changes(&old.method, &new.method),
        correction,
        keys: diff_keys(old, new),
        kinds: kind_speedups(old, new),
        resolution,
        spaces: spaces.iter().map(|s| s.name.to_string()).collect(),
        predictions,
    })
}

fn pct(v: f64) -> String {
    format!("{:+.2}%", 100.0 * v)
}

/// A table of key changes under `title`, with `last` as its last column (nothing if empty).
fn write_changes(
    out: &mut dyn Write,
    title: &str,
    changes: &[KeyChange],
    last: &str,
    value: impl Fn(&KeyChange) -> String,
) -> io::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let w = changes.iter().map(|c| c.key.len()).max().unwrap_or(0).max(3);
    writeln!(out, "{title}")?;
    writeln!(out, "  {:<w$}  {:>12}  {:>12}  {:>9}  {:>11}", "key", "old µs", "new µs", "Δ", last)?;
    for c in changes {
        writeln!(
            out,
            "  {:<w$}  {:>12.3}  {:>12.3}  {:>9}  {:>11}",
            c.key,
            c.old_us,
            c.new_us,
            pct(c.delta),
            value(c)
        )?;
    }
    Ok(())
}

impl TableDiff {
    /// Writes the comparison for people.
    pub fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "old: {}", self.old)?;
        writeln!(out, "new: {}", self.new)?;
        for (what, changes) in [("fingerprint", &self.fingerprint), ("method", &self.method)] {
            if changes.is_empty() {
                writeln!(out, "{what}: unchanged")?;
            } else {
                let s = if changes.len() == 1 { "" } else { "s" };
                writeln!(out, "{what}: {} field{s} changed", changes.len())?;
                for c in changes {
                    writeln!(out, "  {}", c.describe())?;
                }
            }
        }
        if let Some(c) = &self.correction {
            writeln!(out, "{}", c.describe())?;
        }
        let k = &self.keys;
        if let Some(sys) = &k.systematic {
            writeln!(
                out,
                "systematic: new/old = {:.4} [{:.4}, {:.4}] over {} common keys (median of per-key ratios, 95% bootstrap interval){}",
                sys.ratio,
                sys.low,
                sys.high,
                sys.keys,
                if sys.significant() {
                    format!(": the whole table moved {}", pct(sys.ratio - 1.0))
                } else {
                    ": no shift of the whole table".to_string()
                }
            )?;
        }
        writeln!(
            out,
            "keys: {} common ({} moved, {} unchanged; {} moved relative to the systematic shift), {} only in old, {} only in new",
            k.common(),
            k.moved.len(),
            k.unchanged,
            k.moved_relative.len(),
            k.only_in_old.len(),
            k.only_in_new.len()
        )?;
        if !self.kinds.is_empty() {
            let eff = self.kinds.iter().any(|k| k.threads_efficiency.is_some());
            writeln!(out, "per kind (speed-up = old / new, median over the kind's common keys):")?;
            writeln!(
                out,
                "  {:<5}  {:>5}  {:>9}{}",
                "kind",
                "keys",
                "speed-up",
                if eff { "  threads efficiency" } else { "" }
            )?;
            for k in &self.kinds {
                let e = k
                    .threads_efficiency
                    .map_or(String::new(), |e| format!("  {:>17.0}%", 100.0 * e));
                writeln!(out, "  {:<5}  {:>5}  {:>8.2}×{e}", k.kind, k.keys, k.speedup)?;
            }
        }
        let title = format!(
            "moved keys (|Δ| ≥ max({:.0}%, {NOISE_FACTOR} × relative spread)):",
            100.0 * MIN_THRESHOLD
        );
        write_changes(out, &title, &k.moved, "threshold", |c| {
            format!("{:.2}%", 100.0 * c.threshold)
        })?;
        write_changes(
            out,
            "keys that moved relative to the systematic shift (same thresholds):",
            &k.moved_relative,
            "relative Δ",
            |c| pct(c.relative_delta),
        )?;
        if self.spaces.is_empty() {
            writeln!(
                out,
                "predicted latency: no search space is fully covered by both tables at {0}x{0} (name one with --space)",
                self.resolution
            )?;
            return Ok(());
        }
        writeln!(out, "predicted latency at {0}x{0}:", self.resolution)?;
        let sw = self.predictions.iter().map(|p| p.space.len()).max().unwrap_or(0).max(5);
        let aw = self.predictions.iter().map(|p| p.architecture.len()).max().unwrap_or(0).max(12);
        writeln!(
            out,
            "  {:<9}  {:<sw$}  {:<aw$}  {:>16}  {:>16}  {:>9}",
            "basis", "space", "architecture", "old ms", "new ms", "Δ"
        )?;
        for p in &self.predictions {
            writeln!(
                out,
                "  {:<9}  {:<sw$}  {:<aw$}  {:>16}  {:>16}  {:>9}",
                p.basis.label(),
                p.space,
                p.architecture,
                p.old.describe(),
                p.new.describe(),
                p.delta.map_or_else(|| "-".to_string(), pct)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latency_tables::{Fingerprint, LatencyStats, Method};

    /// An entry with median `m` and relative spread `spread` (p10 and p90 placed symmetrically).
    fn entry(key: &str, m: f64, spread: f64) -> Entry {
        let stats = LatencyStats {
            n: 30,
            median: m,
            p10: m * (1.0 - spread / 2.0),
            p90: m * (1.0 + spread / 2.0),
            mean: m,
            std: 0.0,
            min: m * (1.0 - spread),
        };
        Entry::new(key.parse().unwrap(), stats, 0.0, false)
    }

    const K: &str = "pool/7x7x1280";

    fn classify_abs(old: &Entry, new: &Entry) -> KeyChange {
        classify(old, new, 1.0)
    }

    #[test]
    fn quiet_keys_move_at_five_percent() {
        let c = classify_abs(&entry(K, 100.0, 0.0), &entry(K, 106.0, 0.0));
        assert!(c.moved && (c.delta - 0.06).abs() < 1e-12 && c.threshold == MIN_THRESHOLD);
        let c = classify_abs(&entry(K, 100.0, 0.0), &entry(K, 96.0, 0.0));
        assert!(!c.moved, "4% is noise: {c:?}");
        let c = classify_abs(&entry(K, 100.0, 0.0), &entry(K, 94.0, 0.0));
        assert!(c.moved && c.delta < 0.0, "a speed-up moves too: {c:?}");
        // The boundary counts as moved (|Δ| ≥ threshold).
        assert!(classify_abs(&entry(K, 100.0, 0.0), &entry(K, 105.0, 0.0)).moved);
    }

    #[test]
    fn noisy_keys_need_three_times_their_spread() {
        // Spread 4% → threshold 12%: a 10% change is noise, 13% is a move.
        let c = classify_abs(&entry(K, 100.0, 0.04), &entry(K, 110.0, 0.0));
        assert!((c.threshold - 0.12).abs() < 1e-9 && !c.moved, "{c:?}");
        assert!(classify_abs(&entry(K, 100.0, 0.04), &entry(K, 113.0, 0.0)).moved);
        // The noise is the larger spread of the two entries, whichever table has it.
        let c = classify_abs(&entry(K, 100.0, 0.01), &entry(K, 110.0, 0.05));
        assert!((c.noise - 0.05).abs() < 1e-9, "{c:?}");
        assert!((c.threshold - 0.15).abs() < 1e-9 && !c.moved, "{c:?}");
        // A small spread does not lower the threshold below 5%.
        let c = classify_abs(&entry(K, 100.0, 0.01), &entry(K, 104.0, 0.01));
        assert_eq!(c.threshold, MIN_THRESHOLD);
        assert!(!c.moved);
    }

    fn table(entries: &[(&str, f64, f64)]) -> LatencyTable {
        let mut t = LatencyTable::new(Fingerprint::default(), Method::default());
        for &(k, m, s) in entries {
            t.insert(entry(k, m, s));
        }
        t
    }

    #[test]
    fn configurations_compare_kind_by_kind_and_precisions_layer_by_layer() {
        let old = table(&[
            ("ib/56x56x32/o32/k3/s1/e96/se0/relu", 1000.0, 0.01),
            ("ib/28x28x32/o32/k3/s1/e96/se0/relu", 400.0, 0.01),
            ("sep/56x56x32/o16/k3/s1/relu", 300.0, 0.01),
        ]);
        // Two threads: bottlenecks 1.6× faster, the separable conv not at all.
        let mut two = table(&[
            ("ib/56x56x32/o32/k3/s1/e96/se0/relu", 625.0, 0.01),
            ("ib/28x28x32/o32/k3/s1/e96/se0/relu", 250.0, 0.01),
            ("sep/56x56x32/o16/k3/s1/relu", 300.0, 0.01),
        ]);
        two.method.threads = 2;
        let kinds = kind_speedups(&old, &two);
        let ib = kinds.iter().find(|k| k.kind == "ib").unwrap();
        assert_eq!(ib.keys, 2);
        assert!((ib.speedup - 1.6).abs() < 1e-12);
        assert!((ib.threads_efficiency.unwrap() - 0.8).abs() < 1e-12);
        let sep = kinds.iter().find(|k| k.kind == "sep").unwrap();
        assert!((sep.speedup - 1.0).abs() < 1e-12 && sep.threads_efficiency == Some(0.5));
        // An int8 table of the same layers: matched by layer, no threads efficiency.
        let i8 = table(&[
            ("ib/56x56x32/o32/k3/s1/e96/se0/relu/i8", 4000.0, 0.01),
            ("sep/56x56x32/o16/k3/s1/relu/i8", 150.0, 0.01),
        ]);
        let kinds = kind_speedups(&old, &i8);
        assert_eq!(kinds.len(), 2);
        assert!((kinds.iter().find(|k| k.kind == "ib").unwrap().speedup - 0.25).abs() < 1e-12);
        assert!(kinds.iter().all(|k| k.threads_efficiency.is_none()));
        let d = diff_keys(&old, &i8);
        assert_eq!((d.common(), d.only_in_old.len(), d.only_in_new.len()), (2, 1, 0));
        let text = {
            let mut out = Vec::new();
            let diff = diff_tables((&old, "f32.json"), (&two, "t2.json"), None, 224).unwrap();
            diff.write_text(&mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(
            text.contains("threads efficiency") && text.contains("1.60×") && text.contains("80%"),
            "{text}"
        );
    }

    #[test]
    fn key_diff_sorts_moves_and_counts_the_rest() {
        let old = table(&[
            ("pool/7x7x1280", 100.0, 0.0),
            ("fc/1x1x1280/o1001", 100.0, 0.0),
            ("head/7x7x320/o1280/relu", 100.0, 0.0),
            ("stem/224x224x3/o32/k3/s2/relu", 100.0, 0.0),
        ]);
        let new = table(&[
            ("pool/7x7x1280", 110.0, 0.0),
            ("fc/1x1x1280/o1001", 70.0, 0.0),
            ("head/7x7x320/o1280/relu", 101.0, 0.0),
            ("sep/112x112x32/o16/k3/s1/relu", 50.0, 0.0),
        ]);
        let d = diff_keys(&old, &new);
        let moved: Vec<&str> = d.moved.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(moved, ["fc/1x1x1280/o1001", "pool/7x7x1280"]);
        assert_eq!(d.unchanged, 1);
        assert_eq!(d.common(), 3);
        assert_eq!(d.only_in_old, ["stem/224x224x3/o32/k3/s2/relu"]);
        assert_eq!(d.only_in_new, ["sep/112x112x32/o16/k3/s1/relu"]);
    }

    fn full_table(space: &SearchSpace) -> LatencyTable {
        let mut t = LatencyTable::new(Fingerprint::default(), Method::default());
        for key in space.plan(224) {
            t.insert(Entry::new(key, LatencyStats::from_samples(&[1000.0]).unwrap(), 0.0, false));
        }
        t
    }

    #[test]
    fn median_architecture_takes_the_middle_choice() {
        let space = SearchSpace::by_name("proxylessnas-enlarged").unwrap();
        let arch = median_architecture(&space);
        assert!(space.check_arch(arch.indices.clone()).is_ok());
        for (d, &i) in space.decisions.iter().zip(&arch.indices) {
            assert_eq!(i, (d.num_choices() - 1) / 2, "{}", d.name);
        }
        // Filters of the head: 7 choices → index 3.
        assert_eq!(arch.indices[72], 3);
    }

    #[test]
    fn predictions_report_missing_keys_never_zero() {
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let old = full_table(&space);
        let mut new = LatencyTable::new(Fingerprint::default(), Method::default());
        let mobile = space.parse_arch("proxylessnas-mobile").unwrap();
        for e in old.entries().skip(1) {
            let mut e = e.clone();
            e.median *= 2.0;
            new.insert(e);
        }
        let p = predict((&old, "old.json"), (&new, "new.json"), &space, 224).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].architecture, "proxylessnas-mobile");
        assert_eq!(p[1].architecture, "median");
        // 1000 µs per layer.
        let layers = space.resolve(&mobile, 224).network.layers.len() as f64;
        assert_eq!(p[0].old, Predicted::Ms(layers));
        // The first key of the table (fc/1x1x1280/o1001) is in every architecture.
        assert_eq!(p[0].new, Predicted::MissingKeys(1));
        assert_eq!(p[0].delta, None);
        assert!(!covers(&old, &new, &space, 224).unwrap());
        assert!(covers(&old, &old, &space, 224).unwrap());
        let d = diff_tables((&old, "old.json"), (&new, "new.json"), None, 224).unwrap();
        assert!(d.spaces.is_empty() && d.predictions.is_empty());
        let mut text = Vec::new();
        d.write_text(&mut text).unwrap();
        assert!(String::from_utf8(text).unwrap().contains("no search space is fully covered"));
        // Named explicitly, the space is predicted anyway and the gap is shown.
        let d = diff_tables((&old, "old.json"), (&new, "new.json"), Some(&space), 224).unwrap();
        let mut text = Vec::new();
        d.write_text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("missing 1 keys"), "{text}");
    }

    #[test]
    fn diff_of_covered_space_predicts_the_change() {
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let old = full_table(&space);
        let mut new = old.clone();
        new.fingerprint.kernel = Some("6.1".into());
        for e in old.entries() {
            let mut e = e.clone();
            e.median *= 1.5;
            e.p10 *= 1.5;
            e.p90 *= 1.5;
            e.mean *= 1.5;
            new.insert(e);
        }
        let d = diff_tables((&old, "a"), (&new, "b"), None, 224).unwrap();
        assert_eq!(d.spaces, ["proxylessnas"]);
        assert_eq!(d.keys.moved.len(), old.len());
        assert_eq!(d.fingerprint.len(), 1);
        assert_eq!(d.fingerprint[0].field, "kernel");
        assert!(d.method.is_empty() && d.correction.is_none());
        for p in &d.predictions {
            assert!((p.delta.unwrap() - 0.5).abs() < 1e-12, "{p:?}");
        }
    }

    /// A table of the proxylessnas plan with medians spread over 3 decades and ±2% jitter.
    fn noisy_table(space: &SearchSpace, seed: u64) -> LatencyTable {
        let mut rng = Rng::new(seed);
        let mut t = LatencyTable::new(Fingerprint::default(), Method::default());
        for (i, key) in space.plan(224).into_iter().enumerate() {
            let m = 10.0 * 1.1f64.powi(i as i32 % 70) * (1.0 + 0.02 * (2.0 * rng.uniform() - 1.0));
            t.insert(entry(&key.to_string(), m, 0.02));
        }
        t
    }

    #[test]
    fn a_table_scaled_by_0_85_reports_a_systematic_ratio_of_0_85() {
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let old = noisy_table(&space, 1);
        let mut new = old.clone();
        for e in old.entries() {
            let mut e = e.clone();
            // Every op 15% faster, with ±2% measurement noise of its own.
            let jitter = 1.0 + 0.02 * ((e.median * 7919.0).sin());
            e.median *= 0.85 * jitter;
            new.insert(e);
        }
        let d = diff_keys(&old, &new);
        let sys = d.systematic.clone().unwrap();
        assert!((sys.ratio - 0.85).abs() <= 0.01, "{sys:?}");
        assert!(sys.low <= sys.ratio && sys.ratio <= sys.high && sys.high - sys.low < 0.02);
        assert!(sys.significant());
        // Every key moved in absolute terms (15% > 3 × 2%... = 6%), none relative to the shift.
        assert_eq!(d.moved.len(), old.len());
        assert!(d.moved_relative.is_empty(), "{:?}", d.moved_relative.first());
        // One key that did not speed up stands out against the shift.
        let odd = old.entries().nth(5).unwrap().clone();
        new.insert(odd.clone());
        let d = diff_keys(&old, &new);
        assert_eq!(d.moved_relative.len(), 1);
        assert_eq!(d.moved_relative[0].key, odd.key.to_string());
        assert!((d.moved_relative[0].relative_delta - (1.0 / 0.85 - 1.0)).abs() < 0.02);
        // A table against itself: ratio 1, not significant, nothing moved.
        let same = diff_keys(&old, &old);
        let sys = same.systematic.unwrap();
        assert_eq!((sys.ratio, sys.low, sys.high), (1.0, 1.0, 1.0));
        assert!(!sys.significant() && same.moved.is_empty() && same.moved_relative.is_empty());
    }

    #[test]
    fn predictions_compare_raw_with_raw_and_corrected_with_corrected() {
        use latency_tables::Correction;
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let old = full_table(&space);
        let mut new = old.clone();
        // Only the old table carries a correction: the comparison is raw Σ only, and the raw
        // sums are equal (the tables' medians are).
        let mut old = old;
        old.correction = Some(Correction { scale: 1.2, offset_us: 3000.0, samples: 30 });
        let p = predict((&old, "a"), (&new, "b"), &space, 224).unwrap();
        assert!(p.iter().all(|p| p.basis == Basis::Raw && p.delta == Some(0.0)), "{p:?}");
        // Both corrected: raw and corrected rows, each like with like.
        new.correction = Some(Correction { scale: 1.2, offset_us: 1000.0, samples: 30 });
        let p = predict((&old, "a"), (&new, "b"), &space, 224).unwrap();
        assert_eq!(p.iter().filter(|p| p.basis == Basis::Raw).count(), 2);
        let corrected: Vec<_> = p.iter().filter(|p| p.basis == Basis::Corrected).collect();
        assert_eq!(corrected.len(), 2);
        assert!(corrected.iter().all(|p| p.delta.unwrap() < 0.0), "{corrected:?}");
        let d = diff_tables((&old, "a"), (&new, "b"), None, 224).unwrap();
        let mut text = Vec::new();
        d.write_text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("raw Σ") && text.contains("corrected"), "{text}");
        assert!(text.contains("systematic: new/old = 1.0000"), "{text}");
    }
}
