//! `tunas compare`: K TuNAS searches against K random searches at equal search compute, every
//! result trained stand-alone the same way, reported in the form of the paper's Table 4.
//!
//! Run directory: `config.json`; per repeat r: `search-r/` (a search run), `random-r/` (a random
//! search), `final-search-r/` and `final-random-r/` (stand-alone trainings of the two results);
//! then `comparison.json`, `comparison.md` and `comparison.svg`. Every part is its own resumable
//! run, so the comparison resumes where it stopped.
//!
//! Equal compute: the random search's candidates are trained for as many training images in
//! total as the supernet saw (steps × batch); the wall time of both is measured and reported.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::random::{self, RandomConfig};
use crate::report::plot::scatter_svg;
use crate::run_loop::Stop;
use crate::runs::{create_run_dir, read_json, write_atomic, Interrupt};
use crate::search::{self, SearchConfig, StepRecord};
use crate::train::{run_or_resume, TrainConfig, TrainResult};

/// Everything that defines a comparison; written to `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareConfig {
    /// Repeats of each method.
    pub k: usize,
    /// Base seed; repeat r uses seed + r for both methods.
    pub seed: u64,
    /// The TuNAS search of every repeat (its seed is replaced).
    pub search: SearchConfig,
    /// The random search of every repeat (its seed and its candidates' seed are replaced).
    pub random: RandomConfig,
    /// The stand-alone training of every result (architecture and seed replaced).
    pub final_train: TrainConfig,
    /// Random-search trainings run at a time.
    pub jobs: usize,
}

/// One method's result in one repeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Repeat.
    pub repeat: usize,
    /// The architecture the method found.
    pub arch: String,
    /// The stand-alone training of it.
    pub final_result: TrainResult,
    /// Training images the search consumed (supernet steps × batch, or Σ candidate steps × batch).
    pub search_train_images: usize,
    /// Images only evaluated during the search (Q batches, or the candidates' validation and
    /// test splits).
    pub search_eval_images: usize,
    /// Wall seconds of the search's steps.
    pub search_seconds: f64,
}

/// Mean and sample standard deviation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (0 for one value).
    pub std: f64,
}

/// Mean and sample standard deviation of `v`.
pub fn mean_std(v: &[f64]) -> MeanStd {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    MeanStd { mean, std: var.sqrt() }
}

/// One method's summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Method name.
    pub method: String,
    /// Validation accuracy of the stand-alone trainings.
    pub validation_accuracy: MeanStd,
    /// Test accuracy.
    pub test_accuracy: MeanStd,
    /// T(α) in ms.
    pub latency_ms: MeanStd,
    /// Search training images per repeat.
    pub search_train_images: MeanStd,
    /// Search wall seconds per repeat.
    pub search_seconds: MeanStd,
    /// The rows.
    pub rows: Vec<Row>,
}

/// `comparison.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The configuration.
    pub config: CompareConfig,
    /// TuNAS, then random search.
    pub methods: Vec<Summary>,
}

fn summary(method: &str, rows: Vec<Row>) -> Summary {
    let f = |g: &dyn Fn(&Row) -> f64| mean_std(&rows.iter().map(g).collect::<Vec<_>>());
    Summary {
        method: method.into(),
        validation_accuracy: f(&|r| r.final_result.validation_accuracy),
        test_accuracy: f(&|r| r.final_result.test_accuracy),
        latency_ms: f(&|r| r.final_result.latency_ms),
        search_train_images: f(&|r| r.search_train_images as f64),
        search_seconds: f(&|r| r.search_seconds),
        rows,
    }
}

/// Steps per random-search candidate that give the candidates together the supernet's training
/// images: `round(steps × batch / (n × candidate batch))`, at least 1.
pub fn equal_compute_steps(search: &SearchConfig, n: usize, candidate_batch: usize) -> usize {
    let images = search.steps * search.batch_size;
    ((images as f64 / (n * candidate_batch) as f64).round() as usize).max(1)
}

fn search_repeat(cfg: &CompareConfig, dir: &Path, interrupt: &Interrupt) -> Result<Option<Row>> {
    let r = repeat_of(dir)?;
    let mut scfg = cfg.search.clone();
    scfg.seed = cfg.seed + r as u64;
    let outcome = if dir.join("config.json").exists() {
        let have: SearchConfig = read_json(&dir.join("config.json"))?;
        if have != scfg {
            bail!("{}: holds a search with another configuration", dir.display());
        }
        search::resume(dir, interrupt)?
    } else {
        search::start(scfg.clone(), dir, interrupt)?
    };
    if outcome.stop != Stop::Finished {
        return Ok(None);
    }
    let report = outcome.final_report.context("a finished search without a report")?;
    let arch = report.indices;
    let steps: Vec<StepRecord> = search::read_steps(&dir.join("steps.jsonl"))?;
    let parent = dir.parent().unwrap_or(Path::new("."));
    let Some(final_result) =
        final_training(cfg, &parent.join(format!("final-search-{r}")), &arch, r, interrupt)?
    else {
        return Ok(None);
    };
    Ok(Some(Row {
        repeat: r,
        arch,
        final_result,
        search_train_images: scfg.steps * scfg.batch_size,
        search_eval_images: scfg.steps
            * scfg.batch_size
            * scfg.validation_multiplier
            * scfg.rl_archs,
        search_seconds: steps.iter().map(|s| s.seconds).sum(),
    }))
}

fn random_repeat(cfg: &CompareConfig, dir: &Path, interrupt: &Interrupt) -> Result<Option<Row>> {
    let r = repeat_of(dir)?;
    let mut rcfg = cfg.random.clone();
    rcfg.seed = cfg.seed + r as u64;
    rcfg.train.seed = rcfg.seed;
    let outcome = random::run(&rcfg, dir, cfg.jobs, interrupt)?;
    let Some(result) = outcome.result else { return Ok(None) };
    let arch = result.best_result.arch.clone();
    let parent = dir.parent().unwrap_or(Path::new("."));
    let Some(final_result) =
        final_training(cfg, &parent.join(format!("final-random-{r}")), &arch, r, interrupt)?
    else {
        return Ok(None);
    };
    let eval: usize = result.candidates.iter().map(|c| c.validation_images + c.test_images).sum();
    Ok(Some(Row {
        repeat: r,
        arch,
        final_result,
        search_train_images: result.train_images,
        search_eval_images: eval,
        search_seconds: result.train_seconds,
    }))
}

fn repeat_of(dir: &Path) -> Result<usize> {
    dir.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.rsplit('-').next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("{}: not a repeat directory", dir.display()))
}

fn final_training(
    cfg: &CompareConfig,
    dir: &Path,
    arch: &str,
    r: usize,
    interrupt: &Interrupt,
) -> Result<Option<TrainResult>> {
    let tcfg =
        TrainConfig { arch: arch.into(), seed: cfg.seed + r as u64, ..cfg.final_train.clone() };
    let outcome = run_or_resume(&tcfg, dir, interrupt)?;
    Ok(outcome.result)
}

/// The outcome of a comparison.
#[derive(Debug, Clone)]
pub struct CompareOutcome {
    /// Why it stopped.
    pub stop: Stop,
    /// The comparison when finished.
    pub comparison: Option<Comparison>,
}

/// Runs (or continues) the comparison in `dir`.
pub fn run(cfg: &CompareConfig, dir: &Path, interrupt: &Interrupt) -> Result<CompareOutcome> {
    let config_path = dir.join("config.json");
    if config_path.exists() {
        let have: CompareConfig = read_json(&config_path)?;
        if &have != cfg {
            bail!("{}: holds a comparison with another configuration", dir.display());
        }
    } else {
        create_run_dir(dir, "tunas compare --resume")?;
        write_atomic(&config_path, &serde_json::to_string_pretty(cfg)?)?;
    }
    let (mut tunas, mut random) = (Vec::new(), Vec::new());
    for r in 0..cfg.k {
        log::info!(
            "compare: repeat {}/{} — TuNAS search (seed {})",
            r + 1,
            cfg.k,
            cfg.seed + r as u64
        );
        let Some(row) = search_repeat(cfg, &dir.join(format!("search-{r}")), interrupt)? else {
            return Ok(CompareOutcome { stop: Stop::Interrupted, comparison: None });
        };
        tunas.push(row);
        log::info!("compare: repeat {}/{} — random search (N = {})", r + 1, cfg.k, cfg.random.n);
        let Some(row) = random_repeat(cfg, &dir.join(format!("random-{r}")), interrupt)? else {
            return Ok(CompareOutcome { stop: Stop::Interrupted, comparison: None });
        };
        random.push(row);
    }
    let comparison = Comparison {
        config: cfg.clone(),
        methods: vec![
            summary("TuNAS", tunas),
            summary(&format!("Random search (N = {})", cfg.random.n), random),
        ],
    };
    write_atomic(&dir.join("comparison.json"), &serde_json::to_string_pretty(&comparison)?)?;
    write_atomic(&dir.join("comparison.md"), &markdown(&comparison))?;
    let series: Vec<(&str, Vec<(f64, f64)>)> = comparison
        .methods
        .iter()
        .map(|m| {
            let pts = m
                .rows
                .iter()
                .map(|r| (r.final_result.latency_ms, 100.0 * r.final_result.test_accuracy))
                .collect();
            (m.method.as_str(), pts)
        })
        .collect();
    write_atomic(
        &dir.join("comparison.svg"),
        &scatter_svg(
            "stand-alone test accuracy vs T(α) (target dashed)",
            "T(α) ms",
            "test accuracy %",
            &series,
            Some(cfg.search.target_ms),
        ),
    )?;
    Ok(CompareOutcome { stop: Stop::Finished, comparison: Some(comparison) })
}

fn pct(m: MeanStd) -> String {
    format!("{:.2} ± {:.2}", 100.0 * m.mean, 100.0 * m.std)
}

/// The comparison as Markdown: the Table 4 summary, then every repeat.
pub fn markdown(c: &Comparison) -> String {
    use std::fmt::Write;
    let cfg = &c.config;
    let s = &cfg.search;
    let mut out = String::new();
    let _ = writeln!(out, "# TuNAS vs random search: {} on {}\n", s.space, s.data);
    let _ = writeln!(
        out,
        "K = {} repeats per method (seeds {}–{}); T0 = {} ms on `{}`; random search draws within ±{} ms.",
        cfg.k,
        cfg.seed,
        cfg.seed + cfg.k as u64 - 1,
        s.target_ms,
        s.latency,
        cfg.random.tolerance_ms
    );
    let _ = writeln!(
        out,
        "TuNAS: {} steps of batch {} ({:?} reward, β = {}), width ×{}. Random search: N = {} candidates × {} steps of batch {} (equal training images). Every result trained stand-alone for {} steps of batch {}; accuracies on {} held-out validation and the test split.\n",
        s.steps,
        s.batch_size,
        s.reward,
        s.beta,
        s.width_multiplier,
        cfg.random.n,
        cfg.random.train.steps,
        cfg.random.train.batch_size,
        cfg.final_train.steps,
        cfg.final_train.batch_size,
        cfg.final_train.validation_size
    );
    let _ = writeln!(
        out,
        "| Method | Search training images | Search time (s) | Validation acc (%) | Test acc (%) | Latency (ms) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for m in &c.methods {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} ± {:.0} | {} | {} | {:.2} ± {:.2} |",
            m.method,
            m.search_train_images.mean,
            m.search_seconds.mean,
            m.search_seconds.std,
            pct(m.validation_accuracy),
            pct(m.test_accuracy),
            m.latency_ms.mean,
            m.latency_ms.std
        );
    }
    let _ = writeln!(
        out,
        "\nMean ± sample standard deviation over the K repeats. Search time: the sum of the training steps' wall times (a supernet step includes its Q(α) batch; the candidates' evaluations are not counted).\n"
    );
    let _ = writeln!(out, "![test accuracy vs latency](comparison.svg)\n");
    let _ = writeln!(
        out,
        "| Method | Repeat | Architecture | T(α) ms | Validation % | Test % | Search s |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for m in &c.methods {
        for r in &m.rows {
            let _ = writeln!(
                out,
                "| {} | {} | `{}` | {:.2} | {:.2} | {:.2} | {:.0} |",
                m.method,
                r.repeat,
                r.arch,
                r.final_result.latency_ms,
                100.0 * r.final_result.validation_accuracy,
                100.0 * r.final_result.test_accuracy,
                r.search_seconds
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std() {
        let m = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m.mean - 2.5).abs() < 1e-12);
        assert!((m.std - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_std(&[7.0]).std, 0.0);
    }

    #[test]
    fn random_candidates_get_the_supernets_training_images() {
        let mut s = SearchConfig::quick();
        s.steps = 400;
        s.batch_size = 32;
        assert_eq!(equal_compute_steps(&s, 20, 32), 20);
        assert_eq!(equal_compute_steps(&s, 20, 64), 10);
        s.steps = 3;
        assert_eq!(equal_compute_steps(&s, 20, 32), 1);
    }
}
