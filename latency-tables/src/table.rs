//! The latency table file: JSON, versioned, with units, fingerprint, method and per-key statistics.
//!
//! ```json
//! {
//!   "schema_version": 1,
//!   "units": "us",
//!   "fingerprint": { ... },
//!   "method": { ... },
//!   "correction": null,
//!   "entries": [
//!     {"key": "ib/56x56x32/o32/k3/s1/e96/se0/relu/res", "n": 90, "median": 812.4, "p10": 805.0,
//!      "p90": 830.2, "mean": 815.1, "std": 9.3, "min": 801.7, "pass_spread": 0.004, "throttled": false}
//!   ],
//!   "failures": []
//! }
//! ```
//!
//! Entries are written sorted by key so that diffs of committed tables stay readable. Loading
//! checks everything and names the file, line, key and field of the first problem.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::TableError;
use crate::meta::{Fingerprint, Method};
use crate::op_key::{OpKey, Precision};
use crate::stats::LatencyStats;

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
/// The only unit tables are written in.
pub const UNITS: &str = "us";

/// The creation time written into tables: `unix:SECONDS` (no date library on devices).
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("unix:{secs}")
}

/// One measured key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The op key.
    pub key: OpKey,
    /// Number of timed runs over all passes.
    pub n: u64,
    /// Median (µs).
    pub median: f64,
    /// 10th percentile (µs).
    pub p10: f64,
    /// 90th percentile (µs).
    pub p90: f64,
    /// Mean (µs).
    pub mean: f64,
    /// Standard deviation (µs).
    pub std: f64,
    /// Fastest run (µs).
    pub min: f64,
    /// Relative spread of the per-pass medians, `(max − min) / median` (0 with one pass).
    #[serde(default)]
    pub pass_spread: f64,
    /// Whether a CPU frequency drop or thermal change was seen while measuring this key.
    #[serde(default)]
    pub throttled: bool,
    /// The distribution-free 95% confidence interval of the median over all samples (µs),
    /// where there are enough samples (`stats::median_ci`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_ci95: Option<[f64; 2]>,
    /// Passes measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passes: Option<u32>,
    /// Re-measurements of this key's passes after a canary drift (a cool-down each).
    #[serde(default, skip_serializing_if = "crate::is_zero")]
    pub remeasured: u32,
    /// The largest canary drift (`median / baseline − 1`) at the checks that released this
    /// key's passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_drift: Option<f64>,
    /// Not measured: predicted from the measured keys of its kind (`n` is 0 and every
    /// statistic is the prediction); the value is that model's held-out relative error (RMSPE).
    /// `tunas profile --resume` without `--budget` replaces it with a measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted: Option<f64>,
    /// Why the adaptive method stopped measuring this key (absent for the fixed method).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stopped>,
}

/// Why the adaptive method stopped measuring a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stopped {
    /// Its median's interval reached the target and its pass medians agreed.
    Converged,
    /// It used every pass the method allows without converging.
    MaxPasses,
}

impl Entry {
    /// An entry from a key and its statistics.
    pub fn new(key: OpKey, stats: LatencyStats, pass_spread: f64, throttled: bool) -> Entry {
        Entry {
            key,
            n: stats.n,
            median: stats.median,
            p10: stats.p10,
            p90: stats.p90,
            mean: stats.mean,
            std: stats.std,
            min: stats.min,
            pass_spread,
            throttled,
            median_ci95: None,
            passes: None,
            remeasured: 0,
            canary_drift: None,
            predicted: None,
            stopped: None,
        }
    }

    /// A predicted entry (see [`Entry::predicted`]): `µs` for every statistic, `n` = 0.
    pub fn prediction(key: OpKey, us: f64, error: f64) -> Entry {
        let stats =
            LatencyStats { n: 0, median: us, p10: us, p90: us, mean: us, std: 0.0, min: us };
        Entry { predicted: Some(error), ..Entry::new(key, stats, 0.0, false) }
    }

    /// The half-width of [`Entry::median_ci95`] as a fraction of the median.
    pub fn median_ci_half_width(&self) -> Option<f64> {
        self.median_ci95.map(|[lo, hi]| (hi - lo) / (2.0 * self.median))
    }

    /// Whether it was measured (not predicted).
    pub fn measured(&self) -> bool {
        self.predicted.is_none()
    }

    /// The statistics part.
    pub fn stats(&self) -> LatencyStats {
        LatencyStats {
            n: self.n,
            median: self.median,
            p10: self.p10,
            p90: self.p90,
            mean: self.mean,
            std: self.std,
            min: self.min,
        }
    }
}

/// A key that could not be measured, with the error that stopped it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// The op key.
    pub key: OpKey,
    /// What went wrong.
    pub error: String,
    /// How many attempts were made.
    #[serde(default)]
    pub attempts: u32,
}

/// How a table's predicted entries were predicted (`tunas profile --budget`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictionFit {
    /// The model, in words.
    pub model: String,
    /// One fit per op kind.
    pub kinds: Vec<KindFit>,
}

/// The fit of one op kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindFit {
    /// The kind's tag (`ib`, `sep`, …).
    pub kind: String,
    /// Keys of the kind measured (the fit's rows).
    pub measured: usize,
    /// Keys of the kind predicted.
    pub predicted: usize,
    /// The feature set chosen by held-out error.
    pub features: String,
    /// Held-out (k-fold) root mean square relative error of the chosen features.
    pub rmspe: f64,
    /// Held-out median |relative error|.
    pub median_abs_error: f64,
    /// Held-out RMSPE of every feature set tried, by name.
    pub tried: Vec<(String, f64)>,
}

/// An affine correction from Σ table medians to measured whole-network latency:
/// `T = scale · Σ + offset_us`, fitted by `tables validate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Correction {
    /// Multiplicative factor.
    pub scale: f64,
    /// Additive term in µs.
    pub offset_us: f64,
    /// Number of whole networks it was fitted on.
    #[serde(default)]
    pub samples: u32,
}

impl Correction {
    /// Applies the correction to a sum in µs.
    pub fn apply(&self, sum_us: f64) -> f64 {
        self.scale * sum_us + self.offset_us
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    schema_version: u32,
    units: String,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    description: Option<String>,
    fingerprint: Fingerprint,
    method: Method,
    #[serde(default)]
    correction: Option<Correction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prediction: Option<PredictionFit>,
    entries: Vec<Entry>,
    #[serde(default)]
    failures: Vec<Failure>,
}

/// A latency table in memory. Keys are unique; iteration is in canonical-string order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LatencyTable {
    /// Free-form timestamp of creation (RFC 3339 when written by our tools).
    pub created: Option<String>,
    /// Free-form description (what, where, the command that made it).
    pub description: Option<String>,
    /// Where it was measured.
    pub fingerprint: Fingerprint,
    /// How it was measured.
    pub method: Method,
    /// Optional affine correction fitted against whole-network measurements.
    pub correction: Option<Correction>,
    /// How the predicted entries were predicted, when there are any.
    pub prediction: Option<PredictionFit>,
    entries: BTreeMap<String, Entry>,
    failures: BTreeMap<String, Failure>,
}

impl LatencyTable {
    /// An empty table.
    pub fn new(fingerprint: Fingerprint, method: Method) -> Self {
        LatencyTable { fingerprint, method, ..Default::default() }
    }

    /// Inserts (or replaces) an entry; a key that succeeds is no longer a failure.
    pub fn insert(&mut self, entry: Entry) -> Option<Entry> {
        let k = entry.key.to_string();
        self.failures.remove(&k);
        self.entries.insert(k, entry)
    }

    /// Records a failed key (unless it has been measured).
    pub fn insert_failure(&mut self, failure: Failure) {
        let k = failure.key.to_string();
        if !self.entries.contains_key(&k) {
            self.failures.insert(k, failure);
        }
    }

    /// The entry of `key`.
    pub fn get(&self, key: &OpKey) -> Option<&Entry> {
        self.entries.get(&key.to_string())
    }

    /// The precision the table's keys run in (its first entry's or failure's; `F32` when
    /// empty). A table is measured from one plan, so its keys share one precision; a key of
    /// another precision is simply absent.
    pub fn precision(&self) -> Precision {
        let entry = self.entries.values().map(|e| e.key.precision);
        entry.chain(self.failures.values().map(|f| f.key.precision)).next().unwrap_or_default()
    }

    /// Entries in key order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Failures in key order.
    pub fn failures(&self) -> impl Iterator<Item = &Failure> {
        self.failures.values()
    }

    /// Number of entries (measured and predicted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Number of predicted entries.
    pub fn predicted_len(&self) -> usize {
        self.entries.values().filter(|e| !e.measured()).count()
    }

    /// Whether nothing was measured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Parses and validates a table from JSON text; `path` is used in error messages.
    pub fn from_json(text: &str, path: &Path) -> Result<LatencyTable, TableError> {
        let syntax = |e: serde_json::Error| TableError::Syntax {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string().split(" at line ").next().unwrap_or_default().to_string(),
        };
        let invalid = |message: String| TableError::Invalid { path: path.to_path_buf(), message };
        let value: serde_json::Value = serde_json::from_str(text).map_err(syntax)?;
        match value.get("schema_version") {
            None => return Err(invalid("missing field `schema_version`".into())),
            Some(v) if v.as_u64() == Some(u64::from(SCHEMA_VERSION)) => {}
            Some(v) => {
                return Err(TableError::SchemaVersion {
                    path: path.to_path_buf(),
                    found: v.to_string(),
                    expected: SCHEMA_VERSION,
                })
            }
        }
        let file: TableFile = serde_json::from_str(text).map_err(syntax)?;
        if file.units != UNITS {
            return Err(invalid(format!("units must be {UNITS:?}, found {:?}", file.units)));
        }
        let mut table = LatencyTable {
            created: file.created,
            description: file.description,
            fingerprint: file.fingerprint,
            method: file.method,
            correction: file.correction,
            prediction: file.prediction,
            ..Default::default()
        };
        if let Some(c) = &table.correction {
            if !(c.scale.is_finite() && c.scale > 0.0 && c.offset_us.is_finite()) {
                return Err(invalid(format!(
                    "correction must have a positive finite scale and a finite offset, found {c:?}"
                )));
            }
        }
        for (i, entry) in file.entries.into_iter().enumerate() {
            let key = entry.key.to_string();
            entry.key.check_bounds().map_err(|e| invalid(format!("entries[{i}]: {e}")))?;
            let mut stats = entry.stats();
            if let Some(e) = entry.predicted {
                if !(e.is_finite() && e >= 0.0) {
                    return Err(invalid(format!(
                        "entries[{i}] ({key}): predicted must be a relative error ≥ 0, found {e}"
                    )));
                }
                stats.n = stats.n.max(1); // a prediction has no runs
            }
            stats.check().map_err(|e| invalid(format!("entries[{i}] ({key}): {e}")))?;
            if !(entry.pass_spread.is_finite() && entry.pass_spread >= 0.0) {
                return Err(invalid(format!(
                    "entries[{i}] ({key}): pass_spread must be ≥ 0, found {}",
                    entry.pass_spread
                )));
            }
            if table.entries.insert(key.clone(), entry).is_some() {
                return Err(invalid(format!("entries[{i}]: duplicate key {key}")));
            }
        }
        for (i, failure) in file.failures.into_iter().enumerate() {
            let key = failure.key.to_string();
            if table.entries.contains_key(&key) {
                return Err(invalid(format!("failures[{i}]: {key} is also a measured entry")));
            }
            if table.failures.insert(key.clone(), failure).is_some() {
                return Err(invalid(format!("failures[{i}]: duplicate key {key}")));
            }
        }
        Ok(table)
    }

    /// Loads and validates a table file.
    pub fn load(path: impl AsRef<Path>) -> Result<LatencyTable, TableError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| TableError::Io { path: path.to_path_buf(), source })?;
        Self::from_json(&text, path)
    }

    /// The table as pretty JSON, entries sorted by key.
    pub fn to_json(&self) -> String {
        let file = TableFile {
            schema_version: SCHEMA_VERSION,
            units: UNITS.into(),
            created: self.created.clone(),
            description: self.description.clone(),
            fingerprint: self.fingerprint.clone(),
            method: self.method.clone(),
            correction: self.correction.clone(),
            prediction: self.prediction.clone(),
            entries: self.entries.values().cloned().collect(),
            failures: self.failures.values().cloned().collect(),
        };
        // Serialising plain structs of strings and finite numbers cannot fail.
        let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Writes the table durably ([`crate::atomic::replace`]), so a crash never leaves half a table.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), TableError> {
        let path = path.as_ref();
        let io = |source| TableError::Io { path: path.to_path_buf(), source };
        let tmp = path.with_extension("json.tmp");
        crate::atomic::replace(path, &tmp, self.to_json().as_bytes()).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn entry(key: &str, median: f64) -> Entry {
        let stats = LatencyStats::from_samples(&[median * 0.98, median, median * 1.03]).unwrap();
        Entry::new(key.parse().unwrap(), stats, 0.01, false)
    }

    fn sample() -> LatencyTable {
        let mut t = LatencyTable::new(Fingerprint::default(), Method::default());
        t.insert(entry("pool/7x7x1280", 30.0));
        t.insert(entry("fc/1x1x1280/o1001", 200.0));
        t.insert(entry("stem/224x224x3/o32/k3/s2/relu", 900.0));
        t
    }

    fn load_err(text: &str) -> String {
        LatencyTable::from_json(text, &PathBuf::from("bad.json")).unwrap_err().to_string()
    }

    #[test]
    fn round_trip_sorted() {
        let t = sample();
        let text = t.to_json();
        let back = LatencyTable::from_json(&text, Path::new("x.json")).unwrap();
        assert_eq!(back, t);
        let keys: Vec<String> = back.entries().map(|e| e.key.to_string()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        let fc = text.find("fc/1x1x1280").unwrap();
        let pool = text.find("pool/7x7x1280").unwrap();
        assert!(fc < pool);
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let err = load_err("{\n  \"schema_version\": 1,\n  oops\n}");
        assert!(err.starts_with("bad.json:3:"), "{err}");
    }

    #[test]
    fn unknown_schema_version() {
        let text = sample().to_json().replace("\"schema_version\": 1", "\"schema_version\": 7");
        let err = load_err(&text);
        assert!(err.contains("unknown schema_version 7"), "{err}");
    }

    #[test]
    fn duplicate_key() {
        let text = sample().to_json();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let first = v["entries"][0].clone();
        v["entries"].as_array_mut().unwrap().push(first);
        let err = load_err(&serde_json::to_string_pretty(&v).unwrap());
        assert!(err.contains("duplicate key fc/1x1x1280/o1001"), "{err}");
    }

    #[test]
    fn negative_statistic_names_key_and_field() {
        let text = sample().to_json();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["entries"][1]["std"] = serde_json::json!(-3.0);
        let err = load_err(&v.to_string());
        assert!(err.contains("pool/7x7x1280") && err.contains("std is negative"), "{err}");
    }

    #[test]
    fn nan_statistic_is_rejected() {
        let text = sample().to_json().replacen("\"mean\": ", "\"mean\": NaN, \"x\": ", 1);
        let err = load_err(&text);
        assert!(err.starts_with("bad.json:"), "{err}");
    }

    #[test]
    fn missing_field_is_named() {
        let text = sample().to_json();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["entries"][0].as_object_mut().unwrap().remove("median");
        let err = load_err(&serde_json::to_string_pretty(&v).unwrap());
        assert!(err.contains("missing field `median`") && err.starts_with("bad.json:"), "{err}");
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v.as_object_mut().unwrap().remove("method");
        let err = load_err(&v.to_string());
        assert!(err.contains("missing field `method`"), "{err}");
    }

    #[test]
    fn bad_key_and_units() {
        let text = sample().to_json().replace("pool/7x7x1280", "pool/7x7");
        assert!(load_err(&text).contains("pool/7x7"));
        let text = sample().to_json().replace("\"units\": \"us\"", "\"units\": \"ms\"");
        assert!(load_err(&text).contains("units must be"));
        // A key far beyond the documented limits is refused by name, not computed with.
        let text = sample().to_json().replace("pool/7x7x1280", "pool/7x7x4000000000");
        let err = load_err(&text);
        assert!(err.contains("entries[") && err.contains("pool/7x7x4000000000"), "{err}");
    }

    #[test]
    fn save_is_atomic_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        sample().save(&path).unwrap();
        assert_eq!(LatencyTable::load(&path).unwrap(), sample());
        assert!(!dir.path().join("t.json.tmp").exists());
        let err = LatencyTable::load(dir.path().join("nope.json")).unwrap_err().to_string();
        assert!(err.contains("nope.json"), "{err}");
    }
}
