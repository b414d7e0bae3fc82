//! `tunas random-search`: the random-search baseline near a latency target.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::Begin;

use crate::run_loop::Stop;
use crate::runs::read_json;
use crate::study::random::{self, RandomConfig};

/// Arguments of `tunas random-search`.
#[derive(Debug, Args)]
pub struct Cmd {
    #[command(flatten)]
    training: super::options::Training,
    #[command(flatten)]
    target: super::options::Target,
    /// Accept architectures with |T(α) − T0| ≤ this (ms).
    #[arg(long, default_value_t = 1.0, value_parser = super::values::LATENCY_MS)]
    tolerance_ms: f64,
    /// Architectures to accept and train.
    #[arg(long, default_value_t = 20, value_parser = super::values::count())]
    n: usize,
    /// Give up after this many draws.
    #[arg(long, default_value_t = 1_000_000, value_parser = super::values::positive())]
    max_draws: usize,
    /// Training length of each candidate in epochs.
    #[arg(long, default_value_t = 1.0, conflicts_with = "steps",
          value_parser = super::values::EPOCHS)]
    epochs: f64,
    /// Training length of each candidate in steps instead of epochs.
    #[arg(long, value_parser = super::values::steps())]
    steps: Option<usize>,
    /// Trainings run at a time (they share the machine's cores).
    #[arg(long, default_value_t = 1, value_parser = super::values::jobs())]
    jobs: usize,
    /// Run directory [default: `runs/random-SPACE-seedN`, with -2, -3 … when taken].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the random search in this directory.
    #[arg(long, conflicts_with_all = ["out", "steps", "seed", "n", "device"])]
    resume: Option<PathBuf>,
}

impl Cmd {
    fn config(&self) -> Result<RandomConfig> {
        let t = &self.training;
        let mut train = t.train_config("")?;
        train.steps = match self.steps {
            Some(s) => s,
            None => t.steps_for_epochs(self.epochs)?,
        };
        if self.tolerance_ms.is_nan() || self.tolerance_ms <= 0.0 || self.n == 0 {
            anyhow::bail!("--tolerance-ms and --n must be positive");
        }
        Ok(RandomConfig {
            target_ms: self.target.or(t.space()?.default_target_ms),
            tolerance_ms: self.tolerance_ms,
            n: self.n,
            max_draws: self.max_draws,
            seed: t.seed,
            train,
        })
    }

    /// Runs; prints `result.json` on stdout.
    pub fn run(self) -> Result<i32> {
        let interrupt = super::interrupt("random search", None)?;
        let name = |c: &RandomConfig| format!("random-{}-seed{}", c.train.space, c.seed);
        let (cfg, dir) =
            match super::begin(self.resume.as_ref(), self.out.as_ref(), || self.config(), name)? {
                Begin::Resume(dir) => (read_json::<RandomConfig>(&dir.join("config.json"))?, dir),
                Begin::Start(cfg, dir) => (cfg, dir),
            };
        let outcome = random::run(&cfg, &dir, self.jobs, &interrupt)?;
        match (outcome.stop, outcome.result) {
            (Stop::Finished, Some(r)) => {
                println!("{}", serde_json::to_string_pretty(&r)?);
                let b = &r.best_result;
                log::info!(
                    "random search: done in {}: best of {} is #{} {} — validation {:.2}%, test {:.2}%, T(α) = {:.2} ms; acceptance {:.2}% of {} draws",
                    dir.display(),
                    r.candidates.len(),
                    r.best,
                    b.arch,
                    100.0 * b.validation_accuracy,
                    100.0 * b.test_accuracy,
                    b.latency_ms,
                    100.0 * r.acceptance_rate,
                    r.draws
                );
                Ok(0)
            }
            _ => Ok(130),
        }
    }
}
