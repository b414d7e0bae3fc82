//! What every run directory shares (search, stand-alone training, random search, comparison):
//! atomic writes and JSON(-lines) files, the interrupt, the empty-directory rule and fresh
//! names, and the latency model of a run; `checkpoint` the checkpoints, `order` the
//! deterministic epoch orders and draws.

mod checkpoint;
mod order;

pub use checkpoint::{load_checkpoint, save_checkpoint, set_vars, var_tensors, Checkpoint};
pub use order::{rng_for, EpochOrder};

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::latency::{load_model, LatencyModel, MeasuredTable};
use crate::space::SearchSpace;

/// The deployment resolution at which T(α) is always computed.
pub const DEPLOYMENT_RESOLUTION: u32 = 224;

/// Interruption: a flag set by Ctrl-C, or a step at which to stop (tests, time slicing).
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    /// Set asynchronously (Ctrl-C handler).
    pub flag: Arc<AtomicBool>,
    /// Stop before running this step.
    pub at_step: Option<usize>,
}

impl Interrupt {
    /// True when the flag is set or `step` is the stop step.
    pub fn due(&self, step: usize) -> bool {
        self.flag.load(std::sync::atomic::Ordering::SeqCst) || self.at_step == Some(step)
    }
}

/// Writes `text` to `path` durably: a temporary file, flushed, renamed over it
/// ([`latency_tables::atomic::replace`]).
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    latency_tables::atomic::replace(path, &tmp, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads and parses a JSON file, naming the file in any error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Reads a JSON-lines file; a malformed line names the file and line.
pub fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    use std::io::BufRead;
    let f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: not a valid record", path.display(), i + 1))?,
        );
    }
    Ok(out)
}

/// Keeps the records of a JSON-lines log that `keep` accepts (on resume: the steps before the
/// checkpoint, which will not be run again), rewriting it atomically. A missing log is fine.
pub fn trim_log<T>(path: &Path, keep: impl Fn(&T) -> bool) -> Result<()>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    if !path.exists() {
        return Ok(());
    }
    let mut text = String::new();
    for r in read_lines::<T>(path)?.iter().filter(|r| keep(r)) {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    write_atomic(path, &text)
}

/// Creates `dir` for a new run; refuses a non-empty one, naming the resume command.
pub fn create_run_dir(dir: &Path, resume_hint: &str) -> Result<()> {
    if dir.exists() && fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{}: the run directory is not empty; continue it with `{resume_hint} {}` or choose another --out",
            dir.display(),
            dir.display()
        );
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// The first of `runs/PREFIX`, `runs/PREFIX-2`, … that does not exist.
pub fn fresh_dir(prefix: &str) -> PathBuf {
    let base = PathBuf::from("runs").join(prefix);
    let mut dir = base.clone();
    let mut n = 2;
    while dir.exists() {
        dir = PathBuf::from(format!("{}-{n}", base.display()));
        n += 1;
    }
    dir
}

/// The latency model of a run: `pixel1`, a fitted cost-model file, or a table file, which must
/// cover every op key of the space at the deployment resolution (checked before any training,
/// naming the missing keys).
pub fn load_latency(latency: &str, space: &SearchSpace) -> Result<Box<dyn LatencyModel>> {
    if latency == "pixel1" || crate::latency::is_cost_model_file(std::path::Path::new(latency)) {
        return load_model(latency, space, DEPLOYMENT_RESOLUTION);
    }
    let table = latency_tables::LatencyTable::load(latency).with_context(|| {
        format!(
            "loading latency model {latency:?} (expected `pixel1`, a cost-model file or a table file)"
        )
    })?;
    let have: std::collections::BTreeSet<String> =
        table.entries().map(|e| e.key.to_string()).collect();
    // In the table's precision: an int8 table covers the space's int8 keys.
    let precision = table.precision();
    let plan = space.plan(DEPLOYMENT_RESOLUTION);
    let missing: Vec<String> = plan
        .iter()
        .map(|k| k.clone().with_precision(precision).to_string())
        .filter(|k| !have.contains(k))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{latency}: the table lacks {} of the {} {precision} op keys of {} at {DEPLOYMENT_RESOLUTION}×{DEPLOYMENT_RESOLUTION} (first: {}); profile them with `tunas profile --space {} --precision {precision}`",
            missing.len(),
            plan.len(),
            space.name,
            missing.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
            space.name
        );
    }
    Ok(Box::new(MeasuredTable::new(table, latency, space.clone(), DEPLOYMENT_RESOLUTION)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::CostModel;

    #[test]
    fn an_int8_table_covers_the_space_in_int8() {
        use latency_tables::{Entry, Fingerprint, LatencyStats, LatencyTable, Method, Precision};
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let table = |skip: usize| {
            let mut t = LatencyTable::new(Fingerprint::default(), Method::default());
            for key in space.plan(DEPLOYMENT_RESOLUTION).into_iter().skip(skip) {
                let stats = LatencyStats::from_samples(&[100.0]).unwrap();
                t.insert(Entry::new(key.with_precision(Precision::I8), stats, 0.0, false));
            }
            let path = dir.path().join(format!("i8-{skip}.json"));
            t.save(&path).unwrap();
            path.to_str().unwrap().to_string()
        };
        let model = load_latency(&table(0), &space).unwrap();
        assert_eq!(model.precision(), Precision::I8);
        let err = load_latency(&table(1), &space).err().unwrap().to_string();
        assert!(
            err.contains("lacks 1 of the 73 i8 op keys") && err.contains("--precision i8"),
            "{err}"
        );
    }

    #[test]
    fn a_run_takes_a_fitted_cost_model_file_as_its_latency_model() {
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let pixel1 = CostModel::pixel1(&space).unwrap();
        let weights = vec![0.1; pixel1.num_weights()];
        let fit =
            serde_json::json!({"resolution": DEPLOYMENT_RESOLUTION, "held_out": {"rmspe": 3.0}});
        let model = pixel1.with_weights(10.0, weights, "fitted".into(), None, fit);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.json");
        model.save(&path).unwrap();
        let loaded = load_latency(&path.display().to_string(), &space).unwrap();
        let arch = space.parse_arch("proxylessnas-mobile").unwrap();
        assert_eq!(loaded.latency_ms(&arch).unwrap(), model.latency_ms(&arch).unwrap());
        assert_eq!(loaded.relative_error(), Some(0.03));
        // Fractional masks (the search's warmup pricing) work as for the Pixel 1 model.
        assert!(loaded.masked_ms(&pixel1.warmup_masks()).is_some());
    }
}
