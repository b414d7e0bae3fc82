//! Random search (the paper's baseline, §3): rejection sampling of uniform architectures with
//! T(α) in [T0 − tol, T0 + tol], stand-alone training of each for the same budget, the best by
//! validation accuracy, then its test accuracy.
//!
//! Run directory: `config.json`, `candidates.json` (the accepted architectures, the draws and
//! the acceptance rate), `candidates/NN/` (one training run directory each — its own resumable
//! job, so a scheduler can run them anywhere), `result.json`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::window::{draw_within, Drawn, Window};
use crate::rng::Rng;
use crate::run_loop::Stop;
use crate::runs::{create_run_dir, load_latency, read_json, write_atomic, Interrupt};
use crate::space::SearchSpace;
use crate::train::{run_or_resume, TrainConfig, TrainResult};

/// Everything that defines a random search; written to `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomConfig {
    /// Latency target T0 (ms).
    pub target_ms: f64,
    /// Accepted window half-width (ms).
    pub tolerance_ms: f64,
    /// Architectures to accept and train.
    pub n: usize,
    /// Give up after this many draws.
    pub max_draws: usize,
    /// Seed of the draws.
    pub seed: u64,
    /// The training of every candidate (its `arch` is replaced by the candidate's); the space,
    /// latency model and data are this one's.
    pub train: TrainConfig,
}

/// One accepted architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Index string.
    pub arch: String,
    /// T(α) in ms.
    pub latency_ms: f64,
    /// The draw (1-based) at which it was accepted.
    pub draw: usize,
}

/// `candidates.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidates {
    /// Draws made.
    pub draws: usize,
    /// Accepted / drawn.
    pub acceptance_rate: f64,
    /// The accepted architectures, in order.
    pub candidates: Vec<Candidate>,
}

/// `result.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomResult {
    /// Space.
    pub space: String,
    /// T0.
    pub target_ms: f64,
    /// Window half-width.
    pub tolerance_ms: f64,
    /// Draws and acceptance rate.
    pub draws: usize,
    /// Accepted / drawn.
    pub acceptance_rate: f64,
    /// Every candidate's training result, in order.
    pub candidates: Vec<TrainResult>,
    /// Index of the best candidate by validation accuracy.
    pub best: usize,
    /// Its result (test accuracy is reported for this one only in the paper's protocol).
    pub best_result: TrainResult,
    /// Σ training images over the candidates.
    pub train_images: usize,
    /// Σ training seconds over the candidates.
    pub train_seconds: f64,
}

/// Draws uniform architectures until `n` fall in the window (distinct ones only).
pub fn sample(space: &SearchSpace, cfg: &RandomConfig) -> Result<Candidates> {
    let model = load_latency(&cfg.train.latency, space)?;
    let mut rng = Rng::new(cfg.seed).fork("random-search");
    let window = Window { target_ms: cfg.target_ms, tolerance_ms: cfg.tolerance_ms };
    let Drawn { accepted, draws } =
        draw_within(space, model.as_ref(), &mut rng, window, cfg.n, cfg.max_draws, &[])?;
    if accepted.len() < cfg.n {
        bail!(
            "random search: only {} of {} architectures within {} ± {} ms after {draws} draws; widen --tolerance-ms or move --target-ms",
            accepted.len(),
            cfg.n,
            cfg.target_ms,
            cfg.tolerance_ms
        );
    }
    let out: Vec<Candidate> = accepted
        .into_iter()
        .map(|a| Candidate { arch: a.arch.to_string(), latency_ms: a.latency_ms, draw: a.draw })
        .collect();
    Ok(Candidates { draws, acceptance_rate: cfg.n as f64 / draws as f64, candidates: out })
}

fn candidate_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join("candidates").join(format!("{i:02}"))
}

/// The training configuration of candidate `c`.
fn candidate_config(cfg: &RandomConfig, c: &Candidate) -> TrainConfig {
    TrainConfig { arch: c.arch.clone(), ..cfg.train.clone() }
}

/// The outcome of a random search.
#[derive(Debug, Clone)]
pub struct RandomOutcome {
    /// Why it stopped.
    pub stop: Stop,
    /// The result when finished.
    pub result: Option<RandomResult>,
}

/// Runs (or continues) the random search in `dir` with `jobs` trainings at a time.
pub fn run(
    cfg: &RandomConfig,
    dir: &Path,
    jobs: usize,
    interrupt: &Interrupt,
) -> Result<RandomOutcome> {
    let space = SearchSpace::by_name(&cfg.train.space)?;
    let config_path = dir.join("config.json");
    if config_path.exists() {
        let have: RandomConfig = read_json(&config_path)?;
        if &have != cfg {
            bail!("{}: holds a random search with another configuration", dir.display());
        }
    } else {
        create_run_dir(dir, "tunas random-search --resume")?;
        write_atomic(&config_path, &serde_json::to_string_pretty(cfg)?)?;
    }
    let cands_path = dir.join("candidates.json");
    let cands: Candidates = if cands_path.exists() {
        read_json(&cands_path)?
    } else {
        let c = sample(&space, cfg)?;
        write_atomic(&cands_path, &serde_json::to_string_pretty(&c)?)?;
        c
    };
    log::info!(
        "random search: {} architectures within {} ± {} ms after {} draws (acceptance {:.2}%); training each for {} steps, {} at a time",
        cands.candidates.len(),
        cfg.target_ms,
        cfg.tolerance_ms,
        cands.draws,
        100.0 * cands.acceptance_rate,
        cfg.train.steps,
        jobs.max(1)
    );
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<TrainResult>>> = Mutex::new(vec![None; cands.candidates.len()]);
    let errors: Mutex<Vec<anyhow::Error>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= cands.candidates.len() || interrupt.flag.load(Ordering::SeqCst) {
                    break;
                }
                let c = &cands.candidates[i];
                let sub = candidate_dir(dir, i);
                match run_or_resume(&candidate_config(cfg, c), &sub, interrupt) {
                    Ok(o) => {
                        if let Ok(mut r) = results.lock() {
                            r[i] = o.result;
                        }
                    }
                    Err(e) => {
                        if let Ok(mut errs) = errors.lock() {
                            errs.push(e.context(format!("candidate {i} ({})", sub.display())));
                        }
                        break;
                    }
                }
            });
        }
    });
    if let Some(e) = errors.into_inner().map_err(|_| anyhow::anyhow!("poisoned"))?.pop() {
        return Err(e);
    }
    let results = results.into_inner().map_err(|_| anyhow::anyhow!("poisoned"))?;
    if results.iter().any(Option::is_none) {
        log::info!(
            "random search: interrupted; continue with `tunas random-search --resume {}`",
            dir.display()
        );
        return Ok(RandomOutcome { stop: Stop::Interrupted, result: None });
    }
    let candidates: Vec<TrainResult> = results.into_iter().flatten().collect();
    let best = candidates.iter().enumerate().fold(0, |b, (i, r)| {
        if r.validation_accuracy > candidates[b].validation_accuracy {
            i
        } else {
            b
        }
    });
    let result = RandomResult {
        space: space.name.to_string(),
        target_ms: cfg.target_ms,
        tolerance_ms: cfg.tolerance_ms,
        draws: cands.draws,
        acceptance_rate: cands.acceptance_rate,
        best,
        best_result: candidates[best].clone(),
        train_images: candidates.iter().map(|r| r.train_images).sum(),
        train_seconds: candidates.iter().map(|r| r.train_seconds).sum(),
        candidates,
    };
    write_atomic(&dir.join("result.json"), &serde_json::to_string_pretty(&result)?)
        .context("writing the random search result")?;
    Ok(RandomOutcome { stop: Stop::Finished, result: Some(result) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(target: f64, tol: f64, n: usize) -> RandomConfig {
        RandomConfig {
            target_ms: target,
            tolerance_ms: tol,
            n,
            max_draws: 20_000,
            seed: 3,
            train: TrainConfig::new("proxylessnas", ""),
        }
    }

    #[test]
    fn rejection_sampling_keeps_distinct_architectures_in_the_window() {
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let a = sample(&space, &config(84.0, 1.0, 20)).unwrap();
        assert_eq!(a.candidates.len(), 20);
        let model = load_latency("pixel1", &space).unwrap();
        for c in &a.candidates {
            assert!((c.latency_ms - 84.0).abs() <= 1.0);
            let t = model.latency_ms(&space.parse_arch(&c.arch).unwrap()).unwrap();
            assert!((t - c.latency_ms).abs() < 1e-9);
        }
        let mut names: Vec<&String> = a.candidates.iter().map(|c| &c.arch).collect();
        names.dedup();
        assert_eq!(names.len(), 20);
        assert!(a.draws > 20 && (a.acceptance_rate - 20.0 / a.draws as f64).abs() < 1e-12);
        // Deterministic in the seed.
        assert_eq!(sample(&space, &config(84.0, 1.0, 20)).unwrap(), a);
    }

    #[test]
    fn an_unreachable_window_is_an_error_naming_it() {
        let space = SearchSpace::by_name("proxylessnas").unwrap();
        let err = sample(&space, &config(5.0, 0.5, 2)).unwrap_err().to_string();
        assert!(err.contains("5 ± 0.5 ms") && err.contains("--tolerance-ms"), "{err}");
    }
}
