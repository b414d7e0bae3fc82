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
    #[arg(long, default_value_t = 224)]
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
                    eprintln!("warning: {w}");
                }
                outcome
                    .table
                    .save(&c.out)
                    .with_context(|| format!("writing merged table {}", c.out.display()))?;
                eprintln!("{}", outcome.summary(&c.out.display().to_string(), c.on_conflict));
            }
        }
        Ok(0)
    }
}
