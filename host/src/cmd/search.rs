//! `tunas search`: a TuNAS search on the Candle supernet. With no arguments, a quick search of
//! the ProxylessNAS space on the embedded Fashion-MNIST subset with the Pixel 1 model at 84 ms.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::Begin;

use crate::search::{self, default_rl_lr, Baseline, RewardKind, SearchConfig, Stop};

/// Arguments of `tunas search`.
#[derive(Debug, Args)]
pub struct Cmd {
    #[command(flatten)]
    training: super::options::Training,
    #[command(flatten)]
    target: super::options::Target,
    /// Reward function.
    #[arg(long, value_enum, default_value = "abs")]
    reward: RewardKind,
    /// Cost exponent β [default: −0.5 for `abs` (see README "Searching"), −0.07 for `mnas`].
    #[arg(long, allow_hyphen_values = true, value_parser = super::values::BETA)]
    beta: Option<f64>,
    /// Search steps [default: 1000].
    #[arg(long, conflicts_with = "epochs", value_parser = super::values::steps())]
    steps: Option<usize>,
    /// Search length in epochs of the training split instead of steps.
    #[arg(long, value_parser = super::values::EPOCHS)]
    epochs: Option<f64>,
    /// Peak learning rate of the shared weights [default: 0.1·√(batch/32)].
    #[arg(long, value_parser = super::values::LEARNING_RATE)]
    lr: Option<f64>,
    /// RL learning rate at the end of the delay [default: Σ lr over the RL steps = 300, see
    /// README "Searching"].
    #[arg(long, value_parser = super::values::RL_LEARNING_RATE)]
    rl_lr: Option<f64>,
    /// Architectures per RL step (K): each gets its own Q(α) on the step's validation batch and
    /// the controller averages their gradients.
    #[arg(long, default_value_t = 4, value_parser = super::values::rl_archs())]
    rl_archs: usize,
    /// REINFORCE baseline: `leave-one-out` (the other K − 1 rewards of the step) or `ema` (the
    /// reference's moving average).
    #[arg(long, value_enum, default_value = "leave-one-out")]
    baseline: Baseline,
    /// Warmup and RL delay last at least this many steps (and at least 25% of the run, at most
    /// half of it).
    #[arg(long, default_value_t = search::QUICK_MIN_DELAY)]
    min_delay_steps: usize,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 50, value_parser = super::values::steps())]
    checkpoint_every: usize,
    /// Run directory [default: `runs/search-SPACE-seedN`, with -2, -3 … when taken].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint (its config.json is used).
    #[arg(long, conflicts_with_all = ["out", "space", "latency", "steps", "epochs", "seed", "device"])]
    resume: Option<PathBuf>,
    /// At the end, measure the found architecture whole on this device (as `tunas verify`,
    /// default method) and print predicted vs measured; written to `verify.json`.
    #[arg(long, value_name = "DEVICE")]
    verify_on: Option<String>,
    /// The agent binary when `--verify-on local`.
    #[arg(long, requires = "verify_on")]
    verify_agent: Option<PathBuf>,
    /// Stop (with a checkpoint) before this step; `--resume` continues.
    #[arg(long, hide = true)]
    stop_at: Option<usize>,
}

impl Cmd {
    fn config(&self) -> Result<SearchConfig> {
        let t = &self.training;
        let mut cfg = t.search_config()?;
        cfg.target_ms = self.target.or(cfg.target_ms);
        cfg.reward = self.reward;
        cfg.beta = self.beta.unwrap_or_else(|| self.reward.default_beta());
        cfg.checkpoint_every = self.checkpoint_every;
        cfg.steps = match (self.steps, self.epochs) {
            (Some(s), _) => s,
            (None, Some(e)) => t.steps_for_epochs(e)?,
            (None, None) => cfg.steps,
        };
        cfg.rl_archs = self.rl_archs;
        cfg.baseline = self.baseline;
        cfg.min_delay_steps = self.min_delay_steps;
        cfg.lr = self.lr.unwrap_or(cfg.lr);
        cfg.rl_lr = self.rl_lr.unwrap_or_else(|| default_rl_lr(cfg.steps, cfg.delay()));
        Ok(cfg)
    }

    /// Runs the search; prints the final architecture report (JSON) on stdout.
    pub fn run(self) -> Result<i32> {
        if let Some(device) = &self.verify_on {
            // A typo in the device should fail now, not after the search.
            crate::device::TransportSpec::parse(device, self.verify_agent.as_ref())?;
        }
        let interrupt = super::interrupt("search", self.stop_at)?;
        let name = |c: &SearchConfig| format!("search-{}-seed{}", c.space, c.seed);
        let (outcome, dir) =
            match super::begin(self.resume.as_ref(), self.out.as_ref(), || self.config(), name)? {
                Begin::Resume(dir) => (search::resume(&dir, &interrupt)?, dir),
                Begin::Start(cfg, dir) => (search::start(cfg, &dir, &interrupt)?, dir),
            };
        match (outcome.stop, outcome.final_report) {
            (Stop::Finished, Some(report)) => {
                println!("{}", serde_json::to_string_pretty(&report)?);
                log::info!(
                    "search: done in {}: architecture {}\n  T(α) = {:.2} ms (target {:.1}, {:+.1}%), one-shot validation accuracy {:.2}%",
                    dir.display(),
                    report.indices,
                    report.latency_ms,
                    report.target_ms,
                    100.0 * report.latency_error,
                    100.0 * report.one_shot_validation_accuracy,
                );
                if let Some(device) = &self.verify_on {
                    let on = super::verify::On {
                        device: device.clone(),
                        agent: self.verify_agent.clone(),
                        timeout: 600.0,
                        method: latency_tables::Method::default(),
                    };
                    on.verify(&dir)?;
                }
                Ok(0)
            }
            _ => Ok(130),
        }
    }
}
