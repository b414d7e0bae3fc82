//! `tables merge`: the union of tables measured on the same setup (shards of one plan, a re-run
//! of the keys that failed).
//!
//! Tables whose fingerprints differ in an identity field
//! ([`Fingerprint::identity_diff`](latency_tables::Fingerprint::identity_diff)) are refused unless
//! mixing is allowed. A key in several inputs is resolved by [`OnConflict`]. A key
//! measured in any input is not a failure. The result keeps the first table's fingerprint and
//! method; corrections are dropped (they were fitted per table).

use std::collections::{BTreeMap, BTreeSet};

use latency_tables::{Entry, LatencyTable};

use super::field_changes;

/// What to do with a key present in several inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OnConflict {
    /// Fail, naming the key and the files.
    Error,
    /// The first input holding the key wins.
    KeepFirst,
    /// The entry with more samples (`n`) wins; on a tie the earlier input.
    #[default]
    MoreSamples,
}

impl OnConflict {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            OnConflict::Error => "error",
            OnConflict::KeepFirst => "keep-first",
            OnConflict::MoreSamples => "more-samples",
        }
    }
}

/// One table to merge, with the name (path) used in messages.
#[derive(Debug, Clone)]
pub struct MergeInput {
    /// The file name.
    pub name: String,
    /// The loaded table.
    pub table: LatencyTable,
}

/// How to merge.
#[derive(Debug, Clone, Copy, Default)]
pub struct MergeOptions {
    /// Merge even when identity fields of the fingerprints differ.
    pub allow_mixed: bool,
    /// Resolution of keys present in several inputs.
    pub on_conflict: OnConflict,
}

/// The merged table and what happened on the way.
#[derive(Debug, Clone)]
pub struct MergeOutcome {
    /// The union.
    pub table: LatencyTable,
    /// Per input: (name, keys it holds, keys of the result taken from it).
    pub per_input: Vec<(String, usize, usize)>,
    /// Keys that were present in more than one input.
    pub conflicts: usize,
    /// Things people should know (mixed setups, different methods, dropped corrections).
    pub warnings: Vec<String>,
}

impl MergeOutcome {
    /// One line: keys from each input and conflicts resolved.
    pub fn summary(&self, out: &str, policy: OnConflict) -> String {
        let inputs: Vec<String> = self
            .per_input
            .iter()
            .map(|(name, held, taken)| format!("{name}: {taken} of {held}"))
            .collect();
        format!(
            "merged {} tables into {out}: {} keys, {} failures (keys taken: {}); {} conflict(s) resolved ({})",
            self.per_input.len(),
            self.table.len(),
            self.table.failures().count(),
            inputs.join(", "),
            self.conflicts,
            policy.name()
        )
    }
}

/// Identity fields that differ, as `(field, first table's value, other table's value)`.
pub type IdentityDiff = Vec<(&'static str, String, String)>;

/// Why a merge was refused.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Fewer than two inputs.
    #[error("nothing to merge: give at least two tables")]
    TooFew,
    /// Identity fields of the fingerprints differ.
    #[error("{}; pass --allow-mixed to merge them anyway", mixed_message(first, others))]
    Mixed {
        /// The first input.
        first: String,
        /// Every other input that differs, with `(field, first's value, its value)`.
        others: Vec<(String, IdentityDiff)>,
    },
    /// A key is in several inputs and the policy is `error`.
    #[error("{}", conflict_message(key, files, *more))]
    Conflict {
        /// The first conflicting key.
        key: String,
        /// The files holding it.
        files: Vec<String>,
        /// How many other keys conflict too.
        more: usize,
    },
}

fn mixed_message(first: &str, others: &[(String, IdentityDiff)]) -> String {
    others
        .iter()
        .map(|(other, diff)| {
            let fields: Vec<String> =
                diff.iter().map(|(f, a, b)| format!("{f} ({a} vs {b})")).collect();
            format!("{first} and {other} were measured on different setups: {}", fields.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn conflict_message(key: &str, files: &[String], more: usize) -> String {
    let more = if more == 0 { String::new() } else { format!(" and {more} more key(s) conflict") };
    format!(
        "{key} is in several tables ({}){more}; choose --on-conflict keep-first or more-samples",
        files.join(", ")
    )
}

/// Merges `inputs` (at least two) into one table.
pub fn merge(inputs: &[MergeInput], opts: MergeOptions) -> Result<MergeOutcome, MergeError> {
    let [first, rest @ ..] = inputs else { return Err(MergeError::TooFew) };
    if rest.is_empty() {
        return Err(MergeError::TooFew);
    }
    let mut warnings = Vec::new();

    let mixed: Vec<(String, IdentityDiff)> = rest
        .iter()
        .filter_map(|i| {
            let d = first.table.fingerprint.identity_diff(&i.table.fingerprint);
            (!d.is_empty()).then(|| (i.name.clone(), d))
        })
        .collect();
    if !mixed.is_empty() {
        if !opts.allow_mixed {
            return Err(MergeError::Mixed { first: first.name.clone(), others: mixed });
        }
        warnings.push(format!("mixing setups: {}", mixed_message(&first.name, &mixed)));
    }
    for i in rest {
        let changes = field_changes(&first.table.method, &i.table.method);
        if !changes.is_empty() {
            let fields: Vec<String> = changes.iter().map(|c| c.describe()).collect();
            warnings.push(format!(
                "{} was measured with a different method than {}: {}",
                i.name,
                first.name,
                fields.join(", ")
            ));
        }
    }

    // key → (index of the winning input, its entry); key → every input holding it.
    let mut winners: BTreeMap<String, (usize, &Entry)> = BTreeMap::new();
    let mut holders: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (idx, input) in inputs.iter().enumerate() {
        for e in input.table.entries() {
            let k = e.key.to_string();
            holders.entry(k.clone()).or_default().push(idx);
            match winners.get(&k) {
                None => {
                    winners.insert(k, (idx, e));
                }
                Some((_, current)) => {
                    if opts.on_conflict == OnConflict::MoreSamples && e.n > current.n {
                        winners.insert(k, (idx, e));
                    }
                }
            }
        }
    }
    let conflicting: Vec<(&String, &Vec<usize>)> =
        holders.iter().filter(|(_, h)| h.len() > 1).collect();
    if opts.on_conflict == OnConflict::Error {
        if let Some((key, idx)) = conflicting.first() {
            return Err(MergeError::Conflict {
                key: (*key).clone(),
                files: idx.iter().map(|&i| inputs[i].name.clone()).collect(),
                more: conflicting.len() - 1,
            });
        }
    }

    let mut table = LatencyTable::new(first.table.fingerprint.clone(), first.table.method.clone());
    let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
    table.description = Some(format!("merged from {}", names.join(", ")));
    table.created = Some(latency_tables::table::timestamp());
    let mut taken = vec![0usize; inputs.len()];
    for (idx, e) in winners.values() {
        taken[*idx] += 1;
        table.insert((*e).clone());
    }
    let mut failed = BTreeSet::new();
    for input in inputs {
        for f in input.table.failures() {
            if failed.insert(f.key.to_string()) {
                table.insert_failure(f.clone());
            }
        }
    }
    let corrected: Vec<&str> =
        inputs.iter().filter(|i| i.table.correction.is_some()).map(|i| i.name.as_str()).collect();
    if !corrected.is_empty() {
        warnings.push(format!(
            "dropped the correction of {} (fitted per table; fit one for the merged table)",
            corrected.join(", ")
        ));
    }
    Ok(MergeOutcome {
        per_input: inputs
            .iter()
            .zip(&taken)
            .map(|(i, &t)| (i.name.clone(), i.table.len(), t))
            .collect(),
        table,
        conflicts: conflicting.len(),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use latency_tables::{Correction, Failure, Fingerprint, LatencyStats, Method};

    fn entry(key: &str, median: f64, n: usize) -> Entry {
        let samples = vec![median; n];
        Entry::new(key.parse().unwrap(), LatencyStats::from_samples(&samples).unwrap(), 0.0, false)
    }

    fn fp(cpu: &str) -> Fingerprint {
        Fingerprint { cpu_model: Some(cpu.into()), threads: 1, ..Default::default() }
    }

    fn input(name: &str, fingerprint: Fingerprint, entries: &[(&str, f64, usize)]) -> MergeInput {
        let mut table = LatencyTable::new(fingerprint, Method::default());
        for &(k, m, n) in entries {
            table.insert(entry(k, m, n));
        }
        MergeInput { name: name.into(), table }
    }

    const POOL: &str = "pool/7x7x1280";
    const FC: &str = "fc/1x1x1280/o1001";
    const HEAD: &str = "head/7x7x320/o1280/relu";

    fn two() -> Vec<MergeInput> {
        vec![
            input("a.json", fp("A53"), &[(POOL, 10.0, 3), (FC, 20.0, 3)]),
            input("b.json", fp("A53"), &[(FC, 25.0, 5), (HEAD, 30.0, 3)]),
        ]
    }

    fn opts(on_conflict: OnConflict) -> MergeOptions {
        MergeOptions { allow_mixed: false, on_conflict }
    }

    fn median(t: &LatencyTable, key: &str) -> f64 {
        t.get(&key.parse().unwrap()).unwrap().median
    }

    #[test]
    fn union_with_more_samples_by_default() {
        let out = merge(&two(), MergeOptions::default()).unwrap();
        assert_eq!(out.table.len(), 3);
        assert_eq!(median(&out.table, FC), 25.0, "b has more samples");
        assert_eq!(out.conflicts, 1);
        assert_eq!(out.per_input, [("a.json".to_string(), 2, 1), ("b.json".to_string(), 2, 2)]);
        assert_eq!(out.table.description.as_deref(), Some("merged from a.json, b.json"));
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        let line = out.summary("out.json", OnConflict::MoreSamples);
        assert!(line.contains("3 keys") && line.contains("1 conflict(s) resolved"), "{line}");
    }

    #[test]
    fn more_samples_ties_and_keep_first_keep_the_earlier_input() {
        let mut inputs = two();
        inputs[1] = input("b.json", fp("A53"), &[(FC, 25.0, 3)]);
        let out = merge(&inputs, opts(OnConflict::MoreSamples)).unwrap();
        assert_eq!(median(&out.table, FC), 20.0);
        let out = merge(&two(), opts(OnConflict::KeepFirst)).unwrap();
        assert_eq!(median(&out.table, FC), 20.0);
        assert_eq!(out.conflicts, 1);
    }

    #[test]
    fn conflict_error_names_the_key_and_files() {
        let mut inputs = two();
        inputs.push(input("c.json", fp("A53"), &[(FC, 1.0, 1), (POOL, 1.0, 1)]));
        let err = merge(&inputs, opts(OnConflict::Error)).unwrap_err().to_string();
        assert!(
            err.contains("fc/1x1x1280/o1001 is in several tables (a.json, b.json, c.json)"),
            "{err}"
        );
        assert!(err.contains("and 1 more key(s) conflict"), "{err}");
        // Disjoint inputs merge fine under `error`.
        let inputs = vec![
            input("a.json", fp("A53"), &[(POOL, 10.0, 3)]),
            input("b.json", fp("A53"), &[(FC, 25.0, 5)]),
        ];
        assert_eq!(merge(&inputs, opts(OnConflict::Error)).unwrap().table.len(), 2);
    }

    #[test]
    fn different_setups_are_refused_naming_every_field() {
        let mut other = fp("A76");
        other.threads = 4;
        let inputs = vec![
            input("a.json", fp("A53"), &[(POOL, 10.0, 3)]),
            input("b.json", fp("A53"), &[(HEAD, 10.0, 3)]),
            input("c.json", other, &[(FC, 25.0, 5)]),
        ];
        let err = merge(&inputs, MergeOptions::default()).unwrap_err().to_string();
        assert!(err.contains("a.json and c.json were measured on different setups"), "{err}");
        assert!(err.contains("cpu_model") && err.contains("threads (1 vs 4)"), "{err}");
        assert!(!err.contains("b.json"), "{err}");
        assert!(err.contains("--allow-mixed"), "{err}");
        let out = merge(&inputs, MergeOptions { allow_mixed: true, ..Default::default() }).unwrap();
        assert_eq!(out.table.len(), 3);
        assert_eq!(out.table.fingerprint, fp("A53"));
        assert!(out.warnings.iter().any(|w| w.contains("mixing setups")), "{:?}", out.warnings);
        // A field outside the identity (kernel) does not stop a merge.
        let mut newer = fp("A53");
        newer.kernel = Some("6.1".into());
        let inputs = vec![
            input("a.json", fp("A53"), &[(POOL, 10.0, 3)]),
            input("b.json", newer, &[(HEAD, 10.0, 3)]),
        ];
        assert!(merge(&inputs, MergeOptions::default()).is_ok());
        assert!(matches!(merge(&inputs[..1], MergeOptions::default()), Err(MergeError::TooFew)));
    }

    #[test]
    fn method_differences_warn_and_corrections_are_dropped() {
        let mut inputs = two();
        inputs[1].table.method = Method { runs: 50, ..Method::default() };
        inputs[1].table.correction = Some(Correction { scale: 1.1, offset_us: 3.0, samples: 4 });
        let out = merge(&inputs, MergeOptions::default()).unwrap();
        assert_eq!(out.table.method, Method::default());
        assert!(out.table.correction.is_none());
        let w = out.warnings.join("\n");
        assert!(
            w.contains("b.json was measured with a different method than a.json: runs: 30 → 50"),
            "{w}"
        );
        assert!(w.contains("dropped the correction of b.json"), "{w}");
    }

    #[test]
    fn failures_measured_elsewhere_are_dropped() {
        let mut inputs = two();
        let failure = |key: &str, error: &str| Failure {
            key: key.parse().unwrap(),
            error: error.into(),
            attempts: 1,
        };
        inputs[0].table.insert_failure(failure(HEAD, "timeout"));
        inputs[0].table.insert_failure(failure("stem/224x224x3/o32/k3/s2/relu", "oom"));
        inputs[1].table.insert_failure(failure("stem/224x224x3/o32/k3/s2/relu", "later"));
        let out = merge(&inputs, MergeOptions::default()).unwrap();
        let failures: Vec<(String, String)> =
            out.table.failures().map(|f| (f.key.to_string(), f.error.clone())).collect();
        assert_eq!(failures, [("stem/224x224x3/o32/k3/s2/relu".to_string(), "oom".to_string())]);
        assert!(out.table.get(&HEAD.parse().unwrap()).is_some());
    }
}
