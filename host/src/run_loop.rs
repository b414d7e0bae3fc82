//! The one loop of a resumable run, shared by the search and stand-alone training: interrupt →
//! checkpoint, step, log a line of `steps.jsonl`, progress, periodic checkpoint, a stop on a
//! non-finite loss that keeps the last good checkpoint, and the resume that drops the log lines
//! a checkpoint does not cover. A run says what a step is through [`Stepped`].

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::runs::{trim_log, Interrupt};

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// All steps done.
    Finished,
    /// Interrupted (Ctrl-C or a step limit); checkpointed at that step.
    Interrupted,
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Steps done (the next step's index).
    pub done: usize,
    /// Steps in the whole run.
    pub total: usize,
    /// Steps between checkpoints.
    pub checkpoint_every: usize,
}

impl Position {
    /// `done` of `total` steps, a checkpoint every `checkpoint_every`.
    pub fn new(done: usize, total: usize, checkpoint_every: usize) -> Position {
        Position { done, total, checkpoint_every }
    }
}

/// A run made of steps, checkpointed in its directory.
pub trait Stepped {
    /// A line of `steps.jsonl`.
    type Record: Serialize + DeserializeOwned;

    /// The command, as messages name it (`search`, `train`).
    const COMMAND: &'static str;

    /// The run directory.
    fn dir(&self) -> &Path;
    /// Where the run stands.
    fn position(&self) -> Position;
    /// Writes the checkpoint of the steps done.
    fn save(&self) -> Result<()>;
    /// Restores the checkpoint.
    fn load(&mut self) -> Result<()>;
    /// Runs one step; `Ok(None)` when its loss is not finite (nothing updated).
    fn step(&mut self) -> Result<Option<Self::Record>>;
    /// The step a log line records.
    fn step_of(record: &Self::Record) -> usize;
    /// The progress line's figures of a step.
    fn summary(record: &Self::Record) -> String;
    /// The progress line's label.
    fn label(&self) -> String {
        Self::COMMAND.to_string()
    }
}

fn checkpoint_dir(dir: &Path) -> PathBuf {
    dir.join("checkpoint")
}

/// Runs the steps left, checkpointing every `checkpoint_every` steps and at the end; on an
/// interrupt, checkpoints and returns [`Stop::Interrupted`].
pub fn drive<S: Stepped>(run: &mut S, interrupt: &Interrupt) -> Result<Stop> {
    let steps_path = run.dir().join("steps.jsonl");
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&steps_path)
        .with_context(|| format!("opening {}", steps_path.display()))?;
    let at = run.position();
    let mut progress = console::Progress::new(&run.label(), at.total as u64, at.done as u64);
    let mut last_saved = at.done;
    loop {
        let Position { done, total, .. } = run.position();
        if done >= total {
            break;
        }
        if interrupt.due(done) {
            run.save()?;
            // A warning, so that `-q` still says how to continue.
            log::warn!(
                "{what}: interrupted; checkpoint at step {done} in {} (continue with `tunas {what} --resume {}`)",
                checkpoint_dir(run.dir()).display(),
                run.dir().display(),
                what = S::COMMAND,
            );
            return Ok(Stop::Interrupted);
        }
        let Some(record) = run.step()? else {
            bail!(
                "step {done}: the training loss is not finite (NaN or ∞); the run stopped. The last good checkpoint (step {last_saved}) is kept in {}; lower --lr and start again",
                checkpoint_dir(run.dir()).display()
            );
        };
        writeln!(log, "{}", serde_json::to_string(&record)?)?;
        log.flush()?;
        progress.advance(1, &S::summary(&record));
        let at = run.position();
        if at.done % at.checkpoint_every == 0 && at.done < at.total {
            run.save()?;
            last_saved = at.done;
        }
    }
    run.save()?;
    Ok(Stop::Finished)
}

/// Restores a run from its checkpoint and drops the log lines of the steps after it (they will
/// be run again).
pub fn restore<S: Stepped>(run: &mut S) -> Result<()> {
    run.load()?;
    let Position { done, total, .. } = run.position();
    trim_log(&run.dir().join("steps.jsonl"), |r: &S::Record| S::step_of(r) < done)?;
    log::info!("{}: resuming {} at step {done}/{total}", S::COMMAND, run.dir().display());
    Ok(())
}
