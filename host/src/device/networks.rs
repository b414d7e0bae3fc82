//! Whole networks measured on a device, one architecture after another, each journaled the
//! moment it is measured ([`latency_tables::journal::Journal`], the profiles' format and
//! recovery rule), so an interrupted run resumes without re-measuring: `tables validate`,
//! `costmodel fit` and `costmodel eval` all measure through here.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use latency_tables::journal::Journal;
use latency_tables::{Fingerprint, LatencyStats, Method, Precision};
use serde::{Deserialize, Serialize};

use super::client::AgentClient;
use super::Link;
use crate::space::{Architecture, SearchSpace};

/// One measured network, as journaled (older validation journals, which also hold the table's
/// prediction, read as these too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkTiming {
    /// The architecture's index string.
    pub arch: String,
    /// The median of its samples (µs).
    pub measured_us: f64,
}

/// Measures every architecture of `archs` at `resolution`, in `precision`, on the agent behind `link` (median
/// µs each, in order), journaling into `journal_path`; `report(i, arch, µs, fresh)` is called for
/// each (fresh: measured now, not read from the journal). Also returns the device's fingerprint
/// when it was connected (not when everything came from the journal).
#[allow(clippy::too_many_arguments)]
pub fn measure_architectures(
    space: &SearchSpace,
    archs: &[Architecture],
    resolution: u32,
    precision: Precision,
    link: &dyn Link,
    method: &Method,
    timeout: Duration,
    journal_path: &Path,
    report: &mut dyn FnMut(usize, &Architecture, f64, bool),
) -> Result<(Vec<f64>, Option<Fingerprint>)> {
    let (mut journal, recovered) = Journal::<NetworkTiming>::open(journal_path)?;
    if !recovered.damaged.is_empty() {
        log::warn!(
            "tunas: {}: {} damaged line(s) dropped (their networks are measured again){}",
            journal_path.display(),
            recovered.damaged.len(),
            recovered.backup.as_ref().map_or(String::new(), |b| format!(
                "; the damaged file is kept as {}",
                b.display()
            ))
        );
    }
    let done: BTreeMap<String, f64> =
        recovered.records.into_iter().map(|p| (p.arch, p.measured_us)).collect();
    let mut client = None;
    let mut out = Vec::with_capacity(archs.len());
    for (i, arch) in archs.iter().enumerate() {
        let key = arch.to_string();
        if let Some(&us) = done.get(&key) {
            report(i, arch, us, false);
            out.push(us);
            continue;
        }
        if client.is_none() {
            client = Some(AgentClient::connect(link, Duration::from_secs(60))?);
        }
        let Some(agent) = client.as_mut() else { continue };
        let net = space.resolve(arch, resolution).with_precision(precision).network;
        let samples = agent
            .measure_network(&net, method, timeout)
            .with_context(|| format!("measuring architecture {key}"))?;
        let us = LatencyStats::from_samples(&samples)
            .map(|s| s.median)
            .context("the agent sent no samples")?;
        journal.append(&NetworkTiming { arch: key, measured_us: us })?;
        report(i, arch, us, true);
        out.push(us);
    }
    let fingerprint = client.as_ref().map(|c| c.fingerprint.clone());
    if let Some(c) = client {
        c.shutdown();
    }
    Ok((out, fingerprint))
}
