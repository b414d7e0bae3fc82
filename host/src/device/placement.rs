//! Placement configurations of a profile: how many engine threads and which CPUs the agent runs
//! on (`tunas profile --threads 1,2,4 --cluster big,little`), one table per configuration.
//!
//! The host cannot move a running agent, so a configuration is the agent's own flags (`serve
//! --stdio --threads N --cluster NAME`): links that start the agent (`local`, `exec:`) start it
//! with them; an agent that already runs (`serial:`, `tcp:`) is refused with the command to run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// Where the agent pins itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cpus {
    /// A cluster by name (`big`, `little`, `mid`; resolved by the agent from its cpufreq map).
    Cluster(String),
    /// An explicit CPU list (`0-3,6`).
    List(String),
}

/// One configuration: engine threads and CPUs; `None` keeps the agent's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Engine threads.
    pub threads: Option<u32>,
    /// CPUs.
    pub cpus: Option<Cpus>,
}

impl Placement {
    /// The agent's flags for this configuration.
    pub fn agent_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if let Some(t) = self.threads {
            flags.extend(["--threads".to_string(), t.to_string()]);
        }
        match &self.cpus {
            Some(Cpus::Cluster(name)) => flags.extend(["--cluster".to_string(), name.clone()]),
            Some(Cpus::List(list)) => flags.extend(["--cpus".to_string(), list.clone()]),
            None => {}
        }
        flags
    }

    /// A short tag for file names and messages: `t2-big`, `t1-cpus0-3`, `little`.
    pub fn tag(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.threads {
            parts.push(format!("t{t}"));
        }
        match &self.cpus {
            Some(Cpus::Cluster(name)) => parts.push(name.clone()),
            Some(Cpus::List(list)) => parts.push(format!("cpus{}", list.replace(',', "_"))),
            None => {}
        }
        if parts.is_empty() {
            "default".into()
        } else {
            parts.join("-")
        }
    }

    /// `out` with this configuration's tag before the extension: `t.json` → `t.t2-big.json`.
    pub fn table_path(&self, out: &Path) -> PathBuf {
        let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let name = match out.extension() {
            Some(ext) => format!("{stem}.{}.{}", self.tag(), ext.to_string_lossy()),
            None => format!("{stem}.{}", self.tag()),
        };
        out.with_file_name(name)
    }
}

/// Every combination of `threads` × (`clusters` or `cpus`), threads outermost. Empty lists keep
/// the agent's default; all empty is one default configuration. Names and lists are checked
/// (they reach a shell command line for `exec:` links).
pub fn configurations(
    threads: &[u32],
    clusters: &[String],
    cpus: &[String],
) -> Result<Vec<Placement>> {
    if !clusters.is_empty() && !cpus.is_empty() {
        bail!("give --cluster or --cpus, not both");
    }
    for name in clusters {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("--cluster {name:?} is not a cluster name (letters, digits and _ only)");
        }
    }
    for list in cpus {
        if list.is_empty() || !list.chars().all(|c| c.is_ascii_digit() || c == ',' || c == '-') {
            bail!("--cpus {list:?} is not a CPU list like 0-3,6");
        }
    }
    if let Some(t) = threads.iter().find(|&&t| t == 0) {
        bail!("--threads {t}: every thread count must be at least 1");
    }
    let places: Vec<Option<Cpus>> = if !clusters.is_empty() {
        clusters.iter().map(|c| Some(Cpus::Cluster(c.clone()))).collect()
    } else if !cpus.is_empty() {
        cpus.iter().map(|c| Some(Cpus::List(c.clone()))).collect()
    } else {
        vec![None]
    };
    let counts: Vec<Option<u32>> =
        if threads.is_empty() { vec![None] } else { threads.iter().map(|&t| Some(t)).collect() };
    let mut out: Vec<Placement> = Vec::new();
    for t in &counts {
        for c in &places {
            let p = Placement { threads: *t, cpus: c.clone() };
            if out.contains(&p) {
                bail!("configuration {} is given twice", p.tag());
            }
            out.push(p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_times_clusters_each_with_flags_and_a_file() {
        let c = configurations(&[1, 2], &["big".into(), "little".into()], &[]).unwrap();
        let tags: Vec<String> = c.iter().map(Placement::tag).collect();
        assert_eq!(tags, ["t1-big", "t1-little", "t2-big", "t2-little"]);
        assert_eq!(c[2].agent_flags(), ["--threads", "2", "--cluster", "big"]);
        assert_eq!(c[2].table_path(Path::new("out/p.json")), Path::new("out/p.t2-big.json"));
        let c = configurations(&[], &[], &["0-3,6".into()]).unwrap();
        assert_eq!(c[0].agent_flags(), ["--cpus", "0-3,6"]);
        assert_eq!(c[0].table_path(Path::new("p")), Path::new("p.cpus0-3_6"));
        let c = configurations(&[], &[], &[]).unwrap();
        assert_eq!(c, [Placement { threads: None, cpus: None }]);
        assert!(c[0].agent_flags().is_empty());
    }

    #[test]
    fn bad_configurations_are_named() {
        /// Threads, clusters, CPU lists, and what the error must say.
        type Case<'a> = (&'a [u32], &'a [&'a str], &'a [&'a str], &'a str);
        let cases: [Case; 5] = [
            (&[1], &["big"], &["0-3"], "not both"),
            (&[], &["big;rm"], &[], "\"big;rm\""),
            (&[], &[], &["0-3 &"], "\"0-3 &\""),
            (&[0], &[], &[], "--threads 0"),
            (&[2, 2], &[], &[], "t2 is given twice"),
        ];
        for (t, cl, cp, needle) in cases {
            let cl: Vec<String> = cl.iter().map(|s| s.to_string()).collect();
            let cp: Vec<String> = cp.iter().map(|s| s.to_string()).collect();
            let err = configurations(t, &cl, &cp).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
