//! `tunas profile`'s driver: the contract crate's one profiling loop
//! ([`latency_tables::driver`]) with one [`AgentWorker`] per device link, and the console's
//! progress line and log as its observer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use latency_tables::driver::{self, Observer, Summary};
use latency_tables::{Method, OpKey};

use crate::device::worker::AgentWorker;
use crate::device::Link;

/// Options of a profile.
#[derive(Debug, Clone)]
pub struct ProfileOptions {
    /// The method sent to the agents.
    pub method: Method,
    /// Continue from the journal.
    pub resume: bool,
    /// Allow devices whose fingerprints differ.
    pub allow_mixed: bool,
    /// The longest silence allowed from an agent at work before its link counts as failed.
    pub key_timeout: Duration,
    /// Attempts per key before it is recorded as failed.
    pub max_attempts: u32,
    /// Reconnects/restarts per device before it is given up.
    pub max_restarts: u32,
    /// Items sent per request.
    pub group: usize,
    /// Print progress and problems on stderr.
    pub progress: bool,
}

/// Profiles `keys` on `links` into `out` (journal at `out.journal`).
pub fn profile(
    keys: &[OpKey],
    links: &[Arc<dyn Link>],
    out: &Path,
    opts: &ProfileOptions,
) -> Result<Summary> {
    if links.is_empty() {
        anyhow::bail!("no --device given");
    }
    let workers: Vec<AgentWorker> =
        links.iter().map(|l| AgentWorker::new(l.clone(), opts.key_timeout)).collect();
    let options = driver::Options {
        method: opts.method.clone(),
        resume: opts.resume,
        allow_mixed: opts.allow_mixed,
        max_attempts: opts.max_attempts,
        max_restarts: opts.max_restarts,
        group: opts.group,
        description: format!(
            "tunas profile over {}",
            links.iter().map(|l| l.describe()).collect::<Vec<_>>().join(", ")
        ),
    };
    let mut log = console::Log::new("tunas", "profile");
    let mut quiet = driver::Quiet;
    let observer: &mut dyn Observer = if opts.progress { &mut log } else { &mut quiet };
    Ok(driver::run(keys, workers, out, &options, observer)?)
}

/// Fits the per-kind models on the measured entries of the table at `out` and adds a predicted
/// entry for every key of `plan` it lacks ([`crate::tables::predict`]); the table is saved.
pub fn predict_rest(out: &Path, plan: &[OpKey]) -> Result<latency_tables::PredictionFit> {
    use anyhow::Context;
    let mut table = latency_tables::LatencyTable::load(out)?;
    let fit = crate::tables::predict::predict_missing(&mut table, plan)
        .with_context(|| format!("predicting the keys {} lacks", out.display()))?;
    table.save(out)?;
    Ok(fit)
}

/// Predictions checked against measurements of the same keys.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PredictionCheck {
    /// The table of the keys measured for the check.
    pub table: std::path::PathBuf,
    /// Keys compared.
    pub keys: usize,
    /// Median |predicted / measured − 1|.
    pub median_abs_error: f64,
    /// 90th percentile of the same.
    pub p90_abs_error: f64,
    /// Root mean square relative error.
    pub rmspe: f64,
}

/// Measures `n` of the predicted keys of the table at `out` (a seeded sample) into
/// `OUT.check.json` and compares them with their predictions.
pub fn check_predicted(
    out: &Path,
    n: usize,
    links: &[Arc<dyn Link>],
    opts: &ProfileOptions,
) -> Result<PredictionCheck> {
    let table = latency_tables::LatencyTable::load(out)?;
    let mut sample: Vec<OpKey> =
        table.entries().filter(|e| !e.measured()).map(|e| e.key.clone()).collect();
    crate::rng::Rng::new(0).fork("check-predicted").shuffle(&mut sample);
    sample.truncate(n);
    sample.sort();
    let mut name = out.as_os_str().to_owned();
    name.push(".check.json");
    let check_out = std::path::PathBuf::from(name);
    profile(&sample, links, &check_out, opts)?;
    let check = latency_tables::LatencyTable::load(&check_out)?;
    use crate::tables::predict::{median_abs, rmspe};
    let errors: Vec<f64> = sample
        .iter()
        .filter_map(|k| Some(table.get(k)?.median / check.get(k)?.median - 1.0))
        .collect();
    let mut abs: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
    abs.sort_by(f64::total_cmp);
    Ok(PredictionCheck {
        table: check_out,
        keys: errors.len(),
        median_abs_error: median_abs(&errors),
        p90_abs_error: latency_tables::stats::quantile(&abs, 0.9),
        rmspe: rmspe(&errors),
    })
}
