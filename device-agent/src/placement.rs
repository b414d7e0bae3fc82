//! Where and how wide the agent runs: the CPUs it pins to, its engine threads, the thermal limit
//! that flags a measurement, and the fingerprint of that placement.

use anyhow::{bail, Context, Result};
use clap::Args;
use latency_tables::meta::MAX_THREADS;
use latency_tables::{F64Range, Fingerprint, Method};

use crate::measure::{self, Placement};
use crate::sysinfo;

/// Allowed `--thermal-limit` (°C).
pub const THERMAL_LIMIT: F64Range = F64Range::above(0.0, 1000.0);

/// Where and how wide to run.
#[derive(Debug, Clone, Args)]
pub struct PlacementArgs {
    /// CPUs to pin to, e.g. `4-7` (default: the fastest cluster, or all CPUs without cpufreq).
    #[arg(long, conflicts_with = "cluster")]
    pub cpus: Option<String>,
    /// The CPU cluster to pin to, by name: `big`, `little` (and `mid`, `mid1`, … between them),
    /// from the device's cpufreq domains ordered by maximum frequency.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Engine threads (needs the `multithread` feature for more than 1).
    #[arg(long, default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_THREADS)))]
    pub threads: u32,
    /// A thermal zone at or above this temperature (°C) flags a measurement as throttled.
    #[arg(long, default_value_t = 85.0, value_parser = THERMAL_LIMIT)]
    pub thermal_limit: f64,
}

/// Pins, configures threads, fingerprints.
pub fn setup(p: &PlacementArgs) -> Result<(Placement, latency_tables::Fingerprint)> {
    let wanted = match (&p.cpus, &p.cluster) {
        (Some(list), _) => {
            sysinfo::parse_cpu_list(list).map_err(anyhow::Error::msg).context("--cpus")?
        }
        (None, Some(name)) => sysinfo::cluster_cpus(name, &sysinfo::clusters())
            .map_err(anyhow::Error::msg)
            .context("--cluster")?,
        (None, None) => sysinfo::fastest_cluster(),
    };
    let explicit = p.cpus.as_deref().or(p.cluster.as_deref());
    let affinity = match sysinfo::pin(&wanted) {
        Ok(a) => a,
        Err(e) if explicit.is_some() => {
            bail!("could not pin to {}: {e}", explicit.unwrap_or(""))
        }
        Err(e) => {
            measure::warn_line(&format!("not pinned ({e}); measuring on any CPU"));
            sysinfo::online_cpus()
        }
    };
    if p.threads == 0 {
        bail!("--threads must be at least 1");
    }
    if p.threads > 1 {
        #[cfg(feature = "multithread")]
        tract_linalg::multithread::set_default_executor(
            tract_linalg::multithread::Executor::multithread(p.threads as usize),
        );
        #[cfg(not(feature = "multithread"))]
        bail!("--threads {} needs an agent built with the `multithread` feature", p.threads);
    }
    let placement = Placement { cpus: affinity.clone(), thermal_limit_c: p.thermal_limit };
    Ok((placement, sysinfo::fingerprint(&affinity, p.threads)))
}

/// The measuring commands' flags (`bench`, `bench-model`): the method and the placement.
#[derive(Debug, Clone, Args)]
pub struct MeasureArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub method: Method,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub placement: PlacementArgs,
}

impl MeasureArgs {
    /// Pins and fingerprints the placement; the method with its thread count, checked.
    pub fn setup(&self) -> Result<(Placement, Fingerprint, Method)> {
        let (placement, fp) = setup(&self.placement)?;
        let method = Method { threads: self.placement.threads, ..self.method };
        method.check()?;
        Ok((placement, fp, method))
    }
}
