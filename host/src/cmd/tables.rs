//! `tunas tables show|diff|merge`: inspect, compare and combine latency tables. Thin: loads the
//! files, calls [`crate::tables`] and prints (data on stdout, notes on stderr).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use latency_tables::LatencyTable;

use crate::space::SearchSpace;
use crate::tables::{diff_tables, merge, MergeInput, MergeOptions, OnConflict, Summary};

/// `tunas tables …`
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Show a table: fingerprint, method, counts, correction, slowest keys and failures.
    Show(ShowCmd),
    /// Compare two tables of one device (e.g. before and after a firmware or engine change).
    Diff(DiffCmd),
    /// Merge tables of one setup into one (union of their keys).
    Merge(MergeCmd),
    /// Check a table against whole networks measured on the device; fit and store a correction.
    Validate(Box<ValidateCmd>),
}

/// `tunas tables validate FILE --space NAME --device TRANSPORT [--samples 50]`
#[derive(Debug, Args)]
pub struct ValidateCmd {
    /// The table to validate (its correction is updated unless --dry-run).
    pub file: PathBuf,
    /// The search space to sample architectures from.
    #[arg(long)]
    pub space: String,
    /// Where the agent is (local, exec:COMMAND, serial:PATH, tcp:HOST:PORT).
    #[arg(long)]
    pub device: String,
    /// The agent binary for `local`.
    #[arg(long)]
    pub agent: Option<PathBuf>,
    /// Number of sampled architectures.
    #[arg(long, default_value_t = 50, value_parser = super::values::count())]
    pub samples: usize,
    /// Seed of the architecture sampling.
    #[arg(long, default_value_t = 0)]
    pub sample_seed: u64,
    /// Deployment resolution.
    #[arg(long, default_value_t = 224, value_parser = super::values::resolution())]
    pub resolution: u32,
    /// Report only; do not store the correction in the table.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Longest silence in seconds while a network is measured (the agent sends a heartbeat
    /// after building it and after every pass).
    #[arg(long, default_value_t = 600.0, value_parser = super::values::SECONDS)]
    pub timeout: f64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub method: latency_tables::Method,
}

/// `tunas tables show FILE [--top N] [--json]`
#[derive(Debug, Args)]
pub struct ShowCmd {
    /// The table file.
    pub file: PathBuf,
    /// How many of the slowest keys to list.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `tunas tables diff OLD NEW [--space NAME] [--resolution 224] [--json]`
#[derive(Debug, Args)]
pub struct DiffCmd {
    /// The table measured before the change.
    pub old: PathBuf,
    /// The table measured after the change.
    pub new: PathBuf,
    /// Predict T(α) for this space (default: every space both tables cover).
    #[arg(long)]
    pub space: Option<String>,
    /// Deployment resolution of the predictions.
    #[arg(long, default_value_t = 224, value_parser = super::values::resolution())]
    pub resolution: u32,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `tunas tables merge A B [C …] --out OUT [--allow-mixed] [--on-conflict POLICY]`
#[derive(Debug, Args)]
pub struct MergeCmd {
    /// The tables, in priority order (the first one's fingerprint and method are kept).
    #[arg(required = true, num_args = 2..)]
    pub inputs: Vec<PathBuf>,
    /// Where to write the merged table.
    #[arg(long)]
    pub out: PathBuf,
    /// Merge even when the fingerprints' identity fields (CPU, target, threads, …) differ.
    #[arg(long)]
    pub allow_mixed: bool,
    /// What to do with a key present in several tables.
    #[arg(long, value_enum, default_value_t = OnConflict::MoreSamples)]
    pub on_conflict: OnConflict,
}

impl ValidateCmd {
    fn run(self, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
        use crate::tables::validate::{self, Point};
        self.method.check()?;
        let mut table = load(&self.file)?;
        let space = SearchSpace::by_name(&self.space)?;
        let spec = crate::device::TransportSpec::parse(&self.device, self.agent.as_ref())?;
        let archs = validate::sample_architectures(&space, self.samples, self.sample_seed);
        let mut journal_name = self.file.as_os_str().to_owned();
        journal_name.push(".validate.journal");
        let predicted = archs
            .iter()
            .map(|arch| validate::predict_us(&table, &space, arch, self.resolution))
            .collect::<anyhow::Result<Vec<f64>>>()?;
        let (measured, _) = crate::device::networks::measure_architectures(
            &space,
            &archs,
            self.resolution,
            table.precision(),
            &spec,
            &self.method,
            std::time::Duration::from_secs_f64(self.timeout),
            Path::new(&journal_name),
            &mut |i, _, measured_us, fresh| {
                if fresh {
                    let predicted_us = predicted[i];
                    log::info!(
                        "validate {}/{}: predicted {:.2} ms, measured {:.2} ms ({:+.1}%)",
                        i + 1,
                        archs.len(),
                        predicted_us / 1e3,
                        measured_us / 1e3,
                        100.0 * (predicted_us - measured_us) / measured_us
                    );
                }
            },
        )?;
        let points: Vec<Point> = archs
            .iter()
            .zip(predicted.iter().zip(&measured))
            .map(|(a, (&predicted_us, &measured_us))| Point {
                arch: a.to_string(),
                predicted_us,
                measured_us,
            })
            .collect();
        let report = validate::report(points);
        if self.json {
            writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        } else {
            let row = |name: &str, m: &validate::Metrics| {
                format!(
                    "{name:<18} RMSPE {:6.2}%   within ±5% {:5.1}%   within ±10% {:5.1}%   Kendall τ {:.3}",
                    m.rmspe, m.within_5, m.within_10, m.kendall_tau
                )
            };
            writeln!(
                out,
                "{} architectures of {} on {}",
                report.points.len(),
                space.name,
                spec.describe()
            )?;
            writeln!(out, "{}", row("table sum", &report.before))?;
            if let (Some(c), Some(after)) = (&report.correction, &report.after) {
                writeln!(out, "{}", row("after correction", after))?;
                writeln!(out, "correction: measured ≈ {:.4} × Σ + {:.1} µs", c.scale, c.offset_us)?;
            }
        }
        if !self.dry_run {
            if let Some(c) = report.correction.clone() {
                table.correction = Some(c);
                table
                    .save(&self.file)
                    .with_context(|| format!("writing {}", self.file.display()))?;
                log::info!("stored the correction in {}", self.file.display());
            }
        }
        Ok(())
    }
}

fn load(path: &Path) -> anyhow::Result<LatencyTable> {
    LatencyTable::load(path).with_context(|| format!("loading table {}", path.display()))
}

impl Cmd {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<i32> {
        use std::io::Write;
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        match self {
            Cmd::Show(c) => {
                let table = load(&c.file)?;
                let summary = Summary::new(&table, &c.file.display().to_string(), c.top);
                if c.json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
                } else {
                    summary.write_text(&mut out)?;
                }
            }
            Cmd::Diff(c) => {
                let old = load(&c.old)?;
                let new = load(&c.new)?;
                let space = c.space.as_deref().map(SearchSpace::by_name).transpose()?;
                let (old_name, new_name) =
                    (c.old.display().to_string(), c.new.display().to_string());
                let diff = diff_tables(
                    (&old, &old_name),
                    (&new, &new_name),
                    space.as_ref(),
                    c.resolution,
                )?;
                if c.json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&diff)?)?;
                } else {
                    diff.write_text(&mut out)?;
                }
            }
            Cmd::Merge(c) => {
                let mut inputs = Vec::new();
                for path in &c.inputs {
                    inputs
                        .push(MergeInput { name: path.display().to_string(), table: load(path)? });
                }
                let opts = MergeOptions { allow_mixed: c.allow_mixed, on_conflict: c.on_conflict };
                let outcome = merge(&inputs, opts)?;
                for w in &outcome.warnings {
                    log::warn!("warning: {w}");
                }
                outcome
                    .table
                    .save(&c.out)
                    .with_context(|| format!("writing merged table {}", c.out.display()))?;
                log::info!("{}", outcome.summary(&c.out.display().to_string(), c.on_conflict));
            }
            Cmd::Validate(c) => c.run(&mut out)?,
        }
        Ok(0)
    }
}
