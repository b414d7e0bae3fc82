//! `device-agent bench`: a plan measured into a table on this device, journaled (resumable).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::engine::Engine;
use crate::measure;
use crate::placement::MeasureArgs;

/// `device-agent bench`
#[derive(Debug, Args)]
pub struct Cmd {
    /// The plan (`tunas plan --out plan.json`).
    #[arg(long)]
    pub plan: PathBuf,
    /// The table to write; the journal is `OUT.journal`.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue from the journal of an interrupted run.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub measure: MeasureArgs,
}

impl Cmd {
    /// Measures the plan; prints the summary as JSON.
    pub fn run(self, engine: &dyn Engine) -> Result<()> {
        let (placement, fp, method) = self.measure.setup()?;
        let summary = crate::bench::bench(
            engine,
            &self.plan,
            &self.out,
            self.resume,
            method,
            fp,
            &placement,
        )?;
        measure::log_line(&format!(
            "{} of {} keys measured ({} failed) into {} in {:.0} s",
            summary.measured,
            summary.keys,
            summary.failed,
            summary.out.display(),
            summary.seconds
        ));
        super::print_json(&summary)
    }
}
