//! One module per `tunas` subcommand. Data goes to stdout, messages to stderr.

pub mod compare;
pub mod costmodel;
pub mod export;
pub mod latency;
pub mod options;
pub mod plan;
pub mod profile;
pub mod random;
pub mod rank_check;
pub mod report;
pub mod search;
pub mod space;
pub mod tables;
pub mod train;
pub mod values;
pub mod verify;

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};

use crate::runs::Interrupt;

/// An interrupt set by Ctrl-C (a second Ctrl-C exits at once with 130), stopping before
/// `stop_at` when given.
pub fn interrupt(what: &'static str, stop_at: Option<usize>) -> Result<Interrupt> {
    let interrupt = Interrupt { at_step: stop_at, ..Interrupt::default() };
    let flag = interrupt.flag.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        log::warn!("\n{what}: Ctrl-C — checkpointing after this step (again to quit now)");
    })
    .context("installing the Ctrl-C handler")?;
    Ok(interrupt)
}

/// Where a run goes: `--resume DIR` continues DIR; otherwise a new run of its configuration in
/// `--out DIR`, or in a fresh `runs/NAME` named after the configuration.
#[derive(Debug)]
pub enum Begin<C> {
    /// Continue this directory.
    Resume(PathBuf),
    /// Start this configuration in this directory.
    Start(C, PathBuf),
}

/// The [`Begin`] of a command's `--resume`/`--out`; `config` is only built for a new run.
pub fn begin<C>(
    resume: Option<&PathBuf>,
    out: Option<&PathBuf>,
    config: impl FnOnce() -> Result<C>,
    name: impl FnOnce(&C) -> String,
) -> Result<Begin<C>> {
    if let Some(dir) = resume {
        return Ok(Begin::Resume(dir.clone()));
    }
    let cfg = config()?;
    let dir = out.cloned().unwrap_or_else(|| crate::runs::fresh_dir(&name(&cfg)));
    Ok(Begin::Start(cfg, dir))
}
