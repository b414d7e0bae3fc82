//! The logic behind `tunas tables`: a summary of one latency table ([`mod@show`]), a
//! comparison of two tables measured before and after a firmware or engine change
//! ([`mod@diff`]), and the union of several tables measured on the same setup ([`mod@merge`]).
//!
//! Everything here works on loaded [`LatencyTable`](latency_tables::LatencyTable)s and writes to
//! any [`std::io::Write`]; the command in `cmd::tables` only parses arguments, loads files and
//! prints.

pub mod diff;
pub mod merge;
pub mod predict;
pub mod show;
pub mod validate;

use latency_tables::Entry;
use serde::Serialize;
use serde_json::Value;

pub use diff::{
    classify, diff_keys, diff_tables, Basis, KeyChange, KeyDiff, Systematic, TableDiff,
};
pub use merge::{merge, MergeError, MergeInput, MergeOptions, MergeOutcome, OnConflict};
pub use show::Summary;

/// The relative spread `(p90 − p10) / median` of an entry, its noise estimate.
pub fn relative_spread(entry: &Entry) -> f64 {
    entry.stats().relative_spread()
}

/// One field whose value differs between two versions of a record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    /// The field name, as serialised.
    pub field: String,
    /// The old value (`null` when absent).
    pub old: Value,
    /// The new value (`null` when absent).
    pub new: Value,
}

impl FieldChange {
    /// `field: old → new`, values written for people.
    pub fn describe(&self) -> String {
        format!("{}: {} → {}", self.field, display_value(&self.old), display_value(&self.new))
    }
}

/// Compares two records field by field: both are serialised to JSON objects and every field
/// whose value differs (or that only one of them has) is listed, in field-name order.
pub fn field_changes<T: Serialize>(old: &T, new: &T) -> Vec<FieldChange> {
    let old = serde_json::to_value(old).unwrap_or_default();
    let new = serde_json::to_value(new).unwrap_or_default();
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
            names.sort();
            names.dedup();
            names
                .into_iter()
                .filter_map(|name| {
                    let x = a.get(name).cloned().unwrap_or_default();
                    let y = b.get(name).cloned().unwrap_or_default();
                    (x != y).then(|| FieldChange { field: name.clone(), old: x, new: y })
                })
                .collect()
        }
        (a, b) if a != b => vec![FieldChange { field: String::new(), old: a, new: b }],
        _ => vec![],
    }
}

/// A JSON value as people read it: strings without quotes, `null` as `(none)`, the rest as
/// compact JSON.
pub fn display_value(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latency_tables::{Fingerprint, Method};

    #[test]
    fn field_changes_lists_exactly_the_changed_fields() {
        let a = Fingerprint { kernel: Some("5.10".into()), threads: 1, ..Default::default() };
        let mut b = a.clone();
        assert!(field_changes(&a, &b).is_empty());
        b.kernel = Some("6.1".into());
        b.libc = Some("musl".into());
        let changes = field_changes(&a, &b);
        let names: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(names, ["kernel", "libc"]);
        assert_eq!(changes[0].describe(), "kernel: 5.10 → 6.1");
        assert_eq!(changes[1].describe(), "libc: (none) → musl");
        let m = Method::default();
        let n = Method { runs: 50, ..Method::default() };
        let changes = field_changes(&m, &n);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].describe(), "runs: 30 → 50");
    }
}
