//! `tunas profile`: measure a space's plan, a plan file, or one architecture's keys on one or
//! more devices, journaling every result, into a latency table.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use latency_tables::{Method, OpKey, Plan};

use crate::device::placement::configurations;
use crate::device::{Link, TransportSpec};
use crate::profile::{profile, ProfileOptions};
use crate::space::SearchSpace;

/// `tunas profile (--space NAME | --plan FILE | --space NAME --arch ARCH) --device T --out TABLE`
#[derive(Debug, Args)]
pub struct Cmd {
    /// Profile every key of this search space (or, with --arch, of one architecture).
    #[arg(long)]
    pub space: Option<String>,
    /// Deployment resolution for --space.
    #[arg(long, default_value_t = 224, value_parser = super::values::resolution())]
    pub resolution: u32,
    /// The number format of the keys of --space: f32 or i8 (a plan's keys carry their own).
    #[arg(long, default_value = "f32", conflicts_with = "plan")]
    pub precision: latency_tables::Precision,
    /// Profile the keys of a plan file (any subset of keys).
    #[arg(long, conflicts_with_all = ["space", "arch"])]
    pub plan: Option<PathBuf>,
    /// Profile only the keys of this architecture (needs --space).
    #[arg(long, requires = "space")]
    pub arch: Option<String>,
    /// Where the agent is: local, exec:COMMAND, serial:PATH[?baud=N], tcp:HOST:PORT. Repeat to
    /// shard the keys across several devices of the same hardware.
    #[arg(long = "device", required = true)]
    pub devices: Vec<String>,
    /// The agent binary for `local` (default: device-agent next to tunas).
    #[arg(long)]
    pub agent: Option<PathBuf>,
    /// The table to write; the journal is OUT.journal. With several configurations (--threads,
    /// --cluster, --cpus), one table per configuration: OUT with the configuration's tag before
    /// the extension (`t.json` → `t.t2-big.json`).
    #[arg(long)]
    pub out: PathBuf,
    /// Engine threads, one configuration each: `1,2,4` (the agent's `--threads`; default 1).
    #[arg(long, value_delimiter = ',')]
    pub threads: Vec<u32>,
    /// CPU clusters by name, one configuration each: `big,little` (`mid` between them; the
    /// agent's cpufreq map names them by maximum frequency). Default: the fastest cluster.
    #[arg(long, value_delimiter = ',')]
    pub cluster: Vec<String>,
    /// An explicit CPU list, one configuration each; repeat for several (`--cpus 0 --cpus 0-1`).
    #[arg(long)]
    pub cpus: Vec<String>,
    /// Continue from the journal of an interrupted run.
    #[arg(long)]
    pub resume: bool,
    /// Allow devices with different fingerprints in one table.
    #[arg(long)]
    pub allow_mixed: bool,
    /// Longest silence in seconds from an agent at work before its link counts as failed (the
    /// agent sends a heartbeat after every key, every canary and every second of a cool-down).
    #[arg(long, default_value_t = 120.0, value_parser = super::values::SECONDS)]
    pub key_timeout: f64,
    /// Attempts per key before it is recorded as failed.
    #[arg(long, default_value_t = 3, value_parser = super::values::attempts())]
    pub max_attempts: u32,
    /// Reconnects/restarts per device before it is given up.
    #[arg(long, default_value_t = 10)]
    pub max_restarts: u32,
    /// Measure only this many keys, chosen to cover the plan (every kind and every kernel,
    /// stride, activation, SE, residual and resolution; spread over widths), and predict the
    /// rest with a per-kind model fitted on them; predicted entries are marked with their
    /// model's held-out error. `--resume` without `--budget` measures the predicted keys.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub budget: Option<u64>,
    /// With --budget: measure this many of the predicted keys afterwards (into OUT.check.json)
    /// and report the predictions' error against them.
    #[arg(long, requires = "budget", default_value_t = 0)]
    pub check_predicted: usize,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub method: Method,
}

impl Cmd {
    /// The keys to measure.
    pub fn keys(&self) -> Result<Vec<OpKey>> {
        if let Some(plan) = &self.plan {
            return Ok(Plan::load(plan)?.keys);
        }
        let Some(space) = &self.space else {
            bail!("give --space NAME, --plan FILE, or --space NAME --arch ARCH")
        };
        let space = SearchSpace::by_name(space)?;
        let keys: Vec<OpKey> = match &self.arch {
            Some(arch) => {
                let arch = super::options::architecture(&space, arch)?;
                space.resolve(&arch, self.resolution).network.layers
            }
            None => space.plan(self.resolution).into_iter().collect(),
        };
        let keys: Vec<OpKey> = keys.into_iter().map(|k| k.with_precision(self.precision)).collect();
        Ok(Plan::new(Some(space.name.into()), Some(self.resolution), keys).keys)
    }

    /// Predicts the keys of `plan` the table lacks and prints the fit; with
    /// `--check-predicted M`, measures M of them and prints the predictions' error.
    fn predict(
        &self,
        plan: &[OpKey],
        devices: &[Arc<dyn Link>],
        out: &Path,
        opts: &ProfileOptions,
    ) -> Result<()> {
        let fit = crate::profile::predict_rest(out, plan)?;
        for k in &fit.kinds {
            let tried: Vec<String> =
                k.tried.iter().map(|(s, e)| format!("{s} {:.1}%", 100.0 * e)).collect();
            log::info!(
                "tunas: {:<5} {} measured, {} predicted ({} features; held-out RMSPE {:.1}%, median |error| {:.1}%; tried {})",
                k.kind,
                k.measured,
                k.predicted,
                k.features,
                100.0 * k.rmspe,
                100.0 * k.median_abs_error,
                if tried.is_empty() { "none: measured whole".into() } else { tried.join(", ") }
            );
        }
        if self.check_predicted > 0 {
            let c = crate::profile::check_predicted(out, self.check_predicted, devices, opts)?;
            log::info!(
                "tunas: predicted vs measured on {} predicted keys ({}): median |error| {:.1}%, 90th percentile {:.1}%, RMSPE {:.1}%",
                c.keys,
                c.table.display(),
                100.0 * c.median_abs_error,
                100.0 * c.p90_abs_error,
                100.0 * c.rmspe
            );
        }
        Ok(())
    }

    /// Runs the command: one profile per configuration.
    pub fn run(self) -> Result<i32> {
        self.method.check()?;
        let keys = self.keys()?;
        let specs = self
            .devices
            .iter()
            .map(|d| TransportSpec::parse(d, self.agent.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let configs = configurations(&self.threads, &self.cluster, &self.cpus)?;
        let mut status = 0;
        for config in &configs {
            let devices = specs
                .iter()
                .map(|s| Ok(Arc::new(s.placed(config)?) as Arc<dyn Link>))
                .collect::<Result<Vec<_>>>()?;
            let out =
                if configs.len() == 1 { self.out.clone() } else { config.table_path(&self.out) };
            let method = Method { threads: config.threads.unwrap_or(1), ..self.method.clone() };
            if configs.len() > 1 {
                log::info!("tunas: configuration {} → {}", config.tag(), out.display());
            }
            status = status.max(self.run_one(&keys, &devices, &out, method)?);
        }
        Ok(status)
    }

    /// Profiles `keys` on `devices` into `out`.
    fn run_one(
        &self,
        keys: &[OpKey],
        devices: &[Arc<dyn Link>],
        out: &Path,
        method: Method,
    ) -> Result<i32> {
        use std::io::Write;
        let keys = keys.to_vec();
        let opts = ProfileOptions {
            method,
            resume: self.resume,
            allow_mixed: self.allow_mixed,
            key_timeout: Duration::from_secs_f64(self.key_timeout.max(0.1)),
            max_attempts: self.max_attempts.max(1),
            max_restarts: self.max_restarts,
            group: if self.method.canary_every == 0 {
                8
            } else {
                self.method.canary_every as usize
            },
            progress: true,
        };
        log::info!(
            "tunas: profiling {} keys × {} passes on {}",
            keys.len(),
            self.method.passes,
            self.devices.join(", ")
        );
        let plan = keys.clone();
        let keys = match self.budget {
            Some(n) => {
                let chosen = crate::tables::predict::choose(&keys, n as usize);
                log::info!(
                    "tunas: --budget {n}: measuring {} of the {} keys, predicting the rest",
                    chosen.len(),
                    keys.len()
                );
                chosen
            }
            None => keys,
        };
        let summary = profile(&keys, devices, out, &opts)
            .with_context(|| format!("profiling into {}", out.display()))?;
        if self.budget.is_some() {
            self.predict(&plan, devices, out, &opts)?;
        }
        log::info!(
            "tunas: {} of {} keys measured into {} in {:.0} s ({} link failures recovered, {} damaged journal lines re-measured)",
            summary.measured,
            summary.keys,
            out.display(),
            summary.seconds,
            summary.restarts,
            summary.damaged_lines
        );
        for (key, error) in &summary.failed {
            log::warn!("tunas: FAILED {key}: {error}");
        }
        if self.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &summary)?;
            writeln!(out)?;
        }
        Ok(if summary.failed.is_empty() { 0 } else { 1 })
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::Command;
    use crate::cmd::options::testing::{arch_sources, parse};
    use crate::space::SearchSpace;

    #[test]
    fn profile_reads_arch_from_a_file_and_a_run_dir() {
        let dir = tempfile::tempdir().unwrap();
        let (file, run, indices) = arch_sources(dir.path());
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        // The plan of the network's distinct keys.
        let want: std::collections::BTreeSet<_> = space
            .resolve(&space.parse_arch(&indices).unwrap(), 224)
            .network
            .layers
            .into_iter()
            .collect();
        for arg in [file.as_str(), run.as_str()] {
            let line = ["profile", "--space", "proxylessnas", "--arch", arg];
            let Command::Profile(c) =
                parse(&[&line[..], &["--device", "local", "--out", "t.json"]].concat())
            else {
                panic!("not profile")
            };
            let got: std::collections::BTreeSet<_> = c.keys().unwrap().into_iter().collect();
            assert_eq!(got, want, "--arch {arg}");
        }
    }
}
