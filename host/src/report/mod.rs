//! `tunas report`: any run directory (search, stand-alone training, random search, comparison)
//! as Markdown with its plots, written to `RUN_DIR/report.md` (image links are relative to it).

pub mod plot;

use std::fmt::Write;
use std::path::Path;

use anyhow::{bail, Result};

use crate::runs::read_json;
use crate::search::{read_steps, SearchConfig};
use crate::study::compare::{markdown, Comparison};
use crate::study::random::{Candidates, RandomConfig, RandomResult};
use crate::train::{read_lines, TrainConfig, TrainResult, TrainStep};

/// What kind of run a directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// `tunas compare`.
    Comparison,
    /// `tunas random-search`.
    Random,
    /// `tunas search`.
    Search,
    /// `tunas train`.
    Train,
}

/// The kind of run in `dir`, from the files it holds.
pub fn kind(dir: &Path) -> Result<RunKind> {
    let has = |f: &str| dir.join(f).exists();
    if !has("config.json") {
        bail!("{}: not a run directory (no config.json)", dir.display());
    }
    let cfg: serde_json::Value = read_json(&dir.join("config.json"))?;
    Ok(if cfg.get("k").is_some() {
        RunKind::Comparison
    } else if cfg.get("tolerance_ms").is_some() {
        RunKind::Random
    } else if cfg.get("reward").is_some() {
        RunKind::Search
    } else if cfg.get("arch").is_some() {
        RunKind::Train
    } else {
        bail!(
            "{}: config.json is not one of a search, training, random search or comparison",
            dir.display()
        )
    })
}

fn pct(v: f64) -> String {
    format!("{:.2}%", 100.0 * v)
}

fn plots(out: &mut String, dir: &Path, names: &[&str]) {
    for n in names {
        if dir.join(n).exists() {
            let _ = writeln!(out, "![{n}]({n})\n");
        }
    }
}

fn search(dir: &Path) -> Result<String> {
    let cfg: SearchConfig = read_json(&dir.join("config.json"))?;
    let mut out = String::new();
    let _ = writeln!(out, "# TuNAS search: {} on {}\n", cfg.space, cfg.data);
    let _ = writeln!(
        out,
        "{} steps of batch {}, width ×{}, seed {}; {:?} reward with β = {}, T0 = {} ms on `{}`.\n",
        cfg.steps,
        cfg.batch_size,
        cfg.width_multiplier,
        cfg.seed,
        cfg.reward,
        cfg.beta,
        cfg.target_ms,
        cfg.latency
    );
    let final_path = dir.join("final.json");
    if !final_path.exists() {
        let done = if dir.join("steps.jsonl").exists() {
            read_steps(&dir.join("steps.jsonl"))?.len()
        } else {
            0
        };
        let _ = writeln!(out, "**Not finished**: {done} of {} steps logged; continue with `tunas search --resume {}`.\n", cfg.steps, dir.display());
    } else {
        let f = crate::search::FinalReport::load(dir)?;
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(out, "| Architecture | `{}` |", f.indices);
        let _ = writeln!(
            out,
            "| T(α) | {:.2} ms ({:+.1}% from T0) |",
            f.latency_ms,
            100.0 * f.latency_error
        );
        let _ = writeln!(
            out,
            "| One-shot validation accuracy | {} on {} images |",
            pct(f.one_shot_validation_accuracy),
            f.validation_images
        );
        if let Some(p) = &f.policy {
            let _ = writeln!(
                out,
                "| Final policy | E[T] {:.2} ± {:.2} ms, entropy {:.1} nats, {} decisions with top p < 0.9 |",
                p.expected_latency_ms, p.expected_latency_sd_ms, p.entropy, p.decisions_below_0_9
            );
        }
        let _ = writeln!(out, "| Latency model | {} |\n", f.latency_model);
        let _ = writeln!(out, "Layers (op keys at 224×224):\n");
        for l in &f.layers {
            let _ = writeln!(out, "- {}: `{}`", l.name, l.key.as_deref().unwrap_or("skipped"));
        }
        out.push('\n');
    }
    plots(&mut out, dir, &["latency.svg", "reward.svg", "entropy.svg", "quality.svg"]);
    Ok(out)
}

fn train(dir: &Path) -> Result<String> {
    let cfg: TrainConfig = read_json(&dir.join("config.json"))?;
    let mut out = String::new();
    let _ = writeln!(out, "# Stand-alone training: {} on {}\n", cfg.space, cfg.data);
    let _ = writeln!(
        out,
        "Architecture `{}`; {} steps of batch {}, peak lr {}, width ×{}, seed {}.\n",
        cfg.arch, cfg.steps, cfg.batch_size, cfg.lr, cfg.width_multiplier, cfg.seed
    );
    if dir.join("result.json").exists() {
        let r: TrainResult = read_json(&dir.join("result.json"))?;
        let _ = writeln!(out, "| Validation | Test | T(α) | Weights | Training time | Final loss |\n|---|---|---|---|---|---|");
        let _ = writeln!(
            out,
            "| {} ({} images) | {} ({} images) | {:.2} ms | {} | {:.0} s | {:.3} |\n",
            pct(r.validation_accuracy),
            r.validation_images,
            pct(r.test_accuracy),
            r.test_images,
            r.latency_ms,
            r.weights,
            r.train_seconds,
            r.final_loss
        );
    } else {
        let done = if dir.join("steps.jsonl").exists() {
            read_lines::<TrainStep>(&dir.join("steps.jsonl"))?.len()
        } else {
            0
        };
        let _ = writeln!(out, "**Not finished**: {done} of {} steps logged; continue with `tunas train --resume {}`.\n", cfg.steps, dir.display());
    }
    plots(&mut out, dir, &["loss.svg", "accuracy.svg"]);
    Ok(out)
}

fn random(dir: &Path) -> Result<String> {
    let cfg: RandomConfig = read_json(&dir.join("config.json"))?;
    let mut out = String::new();
    let _ = writeln!(out, "# Random search: {} on {}\n", cfg.train.space, cfg.train.data);
    let _ = writeln!(
        out,
        "N = {} architectures with T(α) within {} ± {} ms on `{}`, each trained {} steps of batch {}.\n",
        cfg.n, cfg.target_ms, cfg.tolerance_ms, cfg.train.latency, cfg.train.steps, cfg.train.batch_size
    );
    if dir.join("result.json").exists() {
        let r: RandomResult = read_json(&dir.join("result.json"))?;
        let _ = writeln!(out, "Acceptance: {} of {} draws ({}). Best by validation: #{} `{}` — validation {}, test {}, {:.2} ms.\n",
            r.candidates.len(), r.draws, pct(r.acceptance_rate), r.best, r.best_result.arch,
            pct(r.best_result.validation_accuracy), pct(r.best_result.test_accuracy), r.best_result.latency_ms);
        let _ = writeln!(out, "| # | Architecture | T(α) ms | Validation | Test | Seconds |\n|---|---|---|---|---|---|");
        for (i, c) in r.candidates.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {i} | `{}` | {:.2} | {} | {} | {:.0} |",
                c.arch,
                c.latency_ms,
                pct(c.validation_accuracy),
                pct(c.test_accuracy),
                c.train_seconds
            );
        }
    } else if dir.join("candidates.json").exists() {
        let c: Candidates = read_json(&dir.join("candidates.json"))?;
        let done = c
            .candidates
            .iter()
            .enumerate()
            .filter(|(i, _)| dir.join(format!("candidates/{i:02}/result.json")).exists())
            .count();
        let _ = writeln!(out, "**Not finished**: {done} of {} candidates trained; continue with `tunas random-search --resume {}`.", c.candidates.len(), dir.display());
    }
    Ok(out)
}

/// The Markdown report of the run in `dir`.
pub fn render(dir: &Path) -> Result<String> {
    match kind(dir)? {
        RunKind::Comparison => {
            let path = dir.join("comparison.json");
            if !path.exists() {
                bail!("{}: the comparison has not finished (continue with `tunas compare --resume {}`)", dir.display(), dir.display());
            }
            let c: Comparison = read_json(&path)?;
            Ok(markdown(&c))
        }
        RunKind::Random => random(dir),
        RunKind::Search => search(dir),
        RunKind::Train => train(dir),
    }
}
