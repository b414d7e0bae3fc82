//! `tunas rank-check`: does a search's supernet rank architectures like stand-alone training?
//! (the TuNAS paper's Fig. 7).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::run_loop::Stop;
use crate::study::rank::{self, coefficient, RankConfig, MAX_DRAWS};

/// Arguments of `tunas rank-check`.
#[derive(Debug, Args)]
pub struct Cmd {
    /// A finished search run directory (made by `tunas search`).
    run: PathBuf,
    /// Architectures to rank, drawn uniformly within T0 ± --tolerance-ms (the search's own result
    /// is one of them when it falls inside, an extra unranked point otherwise).
    #[arg(long, default_value_t = 12, value_parser = super::values::count())]
    n: usize,
    /// Accept architectures with |T(α) − T0| ≤ this (ms); T0 is the search's target.
    #[arg(long, default_value_t = 2.0, value_parser = super::values::LATENCY_MS)]
    tolerance_ms: f64,
    /// Stand-alone training of each architecture, in epochs of the training split (batch size,
    /// learning rate, width and data as the search's).
    #[arg(long, default_value_t = 1.0, value_parser = super::values::EPOCHS)]
    epochs: f64,
    /// Seed of the draws and of every stand-alone training.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Give up drawing after this many draws.
    #[arg(long, default_value_t = MAX_DRAWS, value_parser = super::values::positive())]
    max_draws: usize,
    /// Output directory [default: RUN/rank-check]; running the same check again continues it.
    #[arg(long)]
    out: Option<PathBuf>,
}

impl Cmd {
    /// Runs; prints `rank-check.json` on stdout and τ, ρ and n on stderr.
    pub fn run(self) -> Result<i32> {
        // One spelling of the run's path, so that the same check run from elsewhere resumes (a
        // path that does not resolve is reported as given by `search_run`).
        let run = std::fs::canonicalize(&self.run).unwrap_or_else(|_| self.run.clone());
        let search = rank::search_run(&run)?;
        let mut cfg = RankConfig::for_run(
            &run,
            &search.config,
            self.n,
            self.tolerance_ms,
            self.epochs,
            self.seed,
        )?;
        cfg.max_draws = self.max_draws;
        let out = self.out.clone().unwrap_or_else(|| run.join("rank-check"));
        let interrupt = super::interrupt("rank-check", None)?;
        let outcome = rank::run(&cfg, &search, &out, &interrupt)?;
        match (outcome.stop, outcome.result) {
            (Stop::Finished, Some(r)) => {
                println!("{}", serde_json::to_string_pretty(&r)?);
                log::info!(
                    "rank-check: Kendall τ = {}, Spearman ρ = {}, n = {} (one-shot vs stand-alone validation accuracy); report in {}",
                    coefficient(r.kendall_tau),
                    coefficient(r.spearman_rho),
                    r.n,
                    out.join("rank-check.md").display()
                );
                Ok(0)
            }
            _ => {
                log::info!(
                    "rank-check: interrupted; run the same command again to continue in {}",
                    out.display()
                );
                Ok(130)
            }
        }
    }
}
