//! A plan: the list of op keys to measure (what `tunas plan` writes and `device-agent bench` reads).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::TableError;
use crate::op_key::OpKey;

/// Op keys to measure, with where they came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The search space the keys were enumerated from, if any.
    #[serde(default)]
    pub space: Option<String>,
    /// The deployment resolution, if any.
    #[serde(default)]
    pub resolution: Option<u32>,
    /// Number of keys (checked against `keys` when loading).
    pub count: usize,
    /// The keys, sorted and distinct.
    pub keys: Vec<OpKey>,
}

impl Plan {
    /// A plan of distinct keys in sorted (canonical string) order.
    pub fn new(
        space: Option<String>,
        resolution: Option<u32>,
        keys: impl IntoIterator<Item = OpKey>,
    ) -> Plan {
        let mut keys: Vec<OpKey> = keys.into_iter().collect();
        keys.sort_by_key(|k| k.to_string());
        keys.dedup();
        Plan { space, resolution, count: keys.len(), keys }
    }

    /// Loads and checks a plan file: the count, distinct keys, and every key within the size
    /// limits of [`OpKey::check_bounds`] (the error names the file and the key).
    pub fn load(path: impl AsRef<Path>) -> Result<Plan, TableError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| TableError::Io { path: path.to_path_buf(), source })?;
        let plan: Plan = serde_json::from_str(&text).map_err(|e| TableError::Syntax {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string().split(" at line ").next().unwrap_or_default().to_string(),
        })?;
        if plan.count != plan.keys.len() {
            return Err(TableError::Invalid {
                path: path.to_path_buf(),
                message: format!("count is {} but {} keys are listed", plan.count, plan.keys.len()),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for key in &plan.keys {
            if !seen.insert(key) {
                return Err(TableError::Invalid {
                    path: path.to_path_buf(),
                    message: format!("duplicate key {key}"),
                });
            }
            key.check_bounds().map_err(|e| TableError::Invalid {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        }
        Ok(plan)
    }

    /// The plan as pretty JSON.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_round_trip_and_checks() {
        let keys: Vec<OpKey> =
            vec!["pool/7x7x1280".parse().unwrap(), "fc/1x1x1280/o1001".parse().unwrap()];
        let plan = Plan::new(
            Some("proxylessnas".into()),
            Some(224),
            keys.iter().cloned().chain(keys.clone()),
        );
        assert_eq!(plan.count, 2);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        std::fs::write(&path, plan.to_json()).unwrap();
        assert_eq!(Plan::load(&path).unwrap(), plan);
        std::fs::write(&path, plan.to_json().replace("\"count\": 2", "\"count\": 3")).unwrap();
        assert!(Plan::load(&path).unwrap_err().to_string().contains("count is 3"));
        std::fs::write(&path, plan.to_json().replace("pool/7x7x1280", "pool/7x7")).unwrap();
        let err = Plan::load(&path).unwrap_err().to_string();
        assert!(err.contains("plan.json:") && err.contains("pool/7x7"), "{err}");
    }

    #[test]
    fn a_plan_with_an_oversized_key_names_the_file_and_the_key() {
        let huge = "stem/100000x100000x3/o32/k3/s2/relu";
        let plan = Plan::new(None, None, [huge.parse::<OpKey>().unwrap()]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("typo.json");
        std::fs::write(&path, plan.to_json()).unwrap();
        let err = Plan::load(&path).unwrap_err().to_string();
        assert!(err.contains("typo.json") && err.contains(huge) && err.contains("4096"), "{err}");
    }
}
