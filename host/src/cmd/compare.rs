//! `tunas compare`: K TuNAS searches against K random searches at equal search compute.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::Begin;

use crate::run_loop::Stop;
use crate::runs::read_json;
use crate::search::{default_rl_lr, RewardKind};
use crate::study::compare::{self, equal_compute_steps, CompareConfig};
use crate::study::random::RandomConfig;

/// Arguments of `tunas compare`.
#[derive(Debug, Args)]
pub struct Cmd {
    #[command(flatten)]
    training: super::options::Training,
    #[command(flatten)]
    target: super::options::Target,
    /// Repeats of each method.
    #[arg(long, default_value_t = 2, value_parser = super::values::count())]
    k: usize,
    /// Random-search candidates per repeat.
    #[arg(long, default_value_t = 20, value_parser = super::values::count())]
    n: usize,
    /// TuNAS search steps per repeat.
    #[arg(long, default_value_t = crate::search::QUICK_STEPS,
          value_parser = super::values::steps())]
    search_steps: usize,
    /// Cost exponent β of the absolute reward.
    #[arg(long, default_value_t = crate::search::controller::ABS_BETA, allow_hyphen_values = true,
          value_parser = super::values::BETA)]
    beta: f64,
    /// Random search window half-width (ms).
    #[arg(long, default_value_t = 1.0, value_parser = super::values::LATENCY_MS)]
    tolerance_ms: f64,
    /// Training steps of each random candidate [default: equal compute — the candidates
    /// together see as many training images as the supernet].
    #[arg(long, value_parser = super::values::steps())]
    candidate_steps: Option<usize>,
    /// Stand-alone training of each result, in epochs of the training split.
    #[arg(long, default_value_t = 3.0, value_parser = super::values::EPOCHS)]
    final_epochs: f64,
    /// Random-search trainings run at a time.
    #[arg(long, default_value_t = 1, value_parser = super::values::jobs())]
    jobs: usize,
    /// Run directory [default: `runs/compare-SPACE-seedN`, with -2, -3 … when taken].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the comparison in this directory.
    #[arg(long, conflicts_with = "out")]
    resume: Option<PathBuf>,
}

impl Cmd {
    fn config(&self) -> Result<CompareConfig> {
        let t = &self.training;
        if self.k == 0 || self.n == 0 || self.search_steps == 0 {
            anyhow::bail!("--k, --n and --search-steps must be positive");
        }
        let mut search = t.search_config()?;
        let target_ms = self.target.or(search.target_ms);
        search.seed = 0;
        search.target_ms = target_ms;
        search.reward = RewardKind::Abs;
        search.beta = self.beta;
        search.steps = self.search_steps;
        search.rl_lr = default_rl_lr(search.steps, search.delay());
        let mut train = crate::study::train_like(&search);
        let mut candidate = train.clone();
        candidate.steps = self
            .candidate_steps
            .unwrap_or_else(|| equal_compute_steps(&search, self.n, t.batch_size));
        train.steps = t.steps_for_epochs(self.final_epochs)?;
        Ok(CompareConfig {
            k: self.k,
            seed: t.seed,
            search,
            random: RandomConfig {
                target_ms,
                tolerance_ms: self.tolerance_ms,
                n: self.n,
                max_draws: 1_000_000,
                seed: t.seed,
                train: candidate,
            },
            final_train: train,
            jobs: self.jobs,
        })
    }

    /// Runs; prints `comparison.json` on stdout and the Markdown table on stderr.
    pub fn run(self) -> Result<i32> {
        let interrupt = super::interrupt("compare", None)?;
        let name = |c: &CompareConfig| format!("compare-{}-seed{}", c.search.space, c.seed);
        let (cfg, dir) =
            match super::begin(self.resume.as_ref(), self.out.as_ref(), || self.config(), name)? {
                Begin::Resume(dir) => (read_json::<CompareConfig>(&dir.join("config.json"))?, dir),
                Begin::Start(cfg, dir) => (cfg, dir),
            };
        let outcome = compare::run(&cfg, &dir, &interrupt)?;
        match (outcome.stop, outcome.comparison) {
            (Stop::Finished, Some(c)) => {
                println!("{}", serde_json::to_string_pretty(&c)?);
                log::info!("compare: done in {}\n\n{}", dir.display(), compare::markdown(&c));
                Ok(0)
            }
            _ => {
                log::info!(
                    "compare: interrupted; continue with `tunas compare --resume {}`",
                    dir.display()
                );
                Ok(130)
            }
        }
    }
}
