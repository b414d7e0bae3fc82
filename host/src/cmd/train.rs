//! `tunas train`: stand-alone training of one architecture at its selected widths.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::Begin;

use crate::run_loop::Stop;
use crate::train::{self, TrainConfig};

/// Arguments of `tunas train`.
#[derive(Debug, Args)]
pub struct Cmd {
    #[command(flatten)]
    training: super::options::Training,
    /// Architecture: index string, JSON, file, or a reference name (`tunas space show`); or
    /// `@RUN_DIR` for the architecture a search run found.
    #[arg(long, required_unless_present = "resume")]
    arch: Option<String>,
    /// Training length in epochs of the training split.
    #[arg(long, default_value_t = 3.0, conflicts_with = "steps",
          value_parser = super::values::EPOCHS)]
    epochs: f64,
    /// Training length in steps instead of epochs.
    #[arg(long, value_parser = super::values::steps())]
    steps: Option<usize>,
    /// Peak learning rate [default: 0.165·batch/256, the reference's].
    #[arg(long, value_parser = super::values::LEARNING_RATE)]
    lr: Option<f64>,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 100, value_parser = super::values::steps())]
    checkpoint_every: usize,
    /// Run directory [default: `runs/train-SPACE-seedN`, with -2, -3 … when taken].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the training in this directory from its last checkpoint.
    #[arg(long, conflicts_with_all = ["out", "arch", "steps", "seed", "device"])]
    resume: Option<PathBuf>,
    /// Stop (with a checkpoint) before this step; `--resume` continues.
    #[arg(long, hide = true)]
    stop_at: Option<usize>,
}

impl Cmd {
    fn config(&self) -> Result<TrainConfig> {
        let t = &self.training;
        let arch =
            super::options::architecture(&t.space()?, self.arch.as_deref().unwrap_or_default())?;
        let mut cfg = t.train_config(&arch.to_string())?;
        cfg.checkpoint_every = self.checkpoint_every;
        cfg.lr = self.lr.unwrap_or(cfg.lr);
        cfg.steps = match self.steps {
            Some(s) => s,
            None => t.steps_for_epochs(self.epochs)?,
        };
        Ok(cfg)
    }

    /// Trains; prints `result.json` on stdout.
    pub fn run(self) -> Result<i32> {
        let interrupt = super::interrupt("train", self.stop_at)?;
        let name = |c: &TrainConfig| format!("train-{}-seed{}", c.space, c.seed);
        let (outcome, dir) =
            match super::begin(self.resume.as_ref(), self.out.as_ref(), || self.config(), name)? {
                Begin::Resume(dir) => (train::resume(&dir, &interrupt)?, dir),
                Begin::Start(cfg, dir) => (train::start(cfg, &dir, &interrupt)?, dir),
            };
        match (outcome.stop, outcome.result) {
            (Stop::Finished, Some(r)) => {
                println!("{}", serde_json::to_string_pretty(&r)?);
                log::info!(
                    "train: done in {}: validation {:.2}%, test {:.2}% ({} steps, {:.0} s), T(α) = {:.2} ms",
                    dir.display(),
                    100.0 * r.validation_accuracy,
                    100.0 * r.test_accuracy,
                    r.steps,
                    r.train_seconds,
                    r.latency_ms
                );
                Ok(0)
            }
            _ => Ok(130),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::Command;
    use crate::cmd::options::testing::{arch_sources, parse};

    #[test]
    fn train_reads_arch_from_a_file_and_a_run_dir() {
        let dir = tempfile::tempdir().unwrap();
        let (file, run, indices) = arch_sources(dir.path());
        for arg in [file.as_str(), run.as_str(), "proxylessnas-mobile"] {
            let Command::Train(c) = parse(&["train", "--arch", arg, "--steps", "1"]) else {
                panic!("not train")
            };
            assert_eq!(c.config().unwrap().arch, indices, "--arch {arg}");
        }
    }
}
