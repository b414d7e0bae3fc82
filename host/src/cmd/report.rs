//! `tunas report`: a run directory as Markdown.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::runs::write_atomic;

/// Arguments of `tunas report`.
#[derive(Debug, Args)]
pub struct Cmd {
    /// The run directory (search, training, random search or comparison).
    run: PathBuf,
}

impl Cmd {
    /// Prints the report and writes it to `RUN/report.md`.
    pub fn run(self) -> Result<i32> {
        let text = crate::report::render(&self.run)?;
        write_atomic(&self.run.join("report.md"), &text)?;
        print!("{text}");
        log::info!("report: written to {}", self.run.join("report.md").display());
        Ok(0)
    }
}
