//! How much one-shot accuracy each single-decision move away from a search's final architecture
//! buys per unit of ln T(α) (issue 11): the measurement behind the choice of β.
//!
//! With the absolute reward `Q + β·|T/T0 − 1|`, an architecture at T0 is a local optimum only if
//! no single move gains more Q than it costs, i.e. every move's `ΔQ / |Δ ln T|` is below |β|.
//! This loads a finished search run (its final checkpoint and `final.json`), changes one
//! decision at a time to each other choice, and measures Q on the whole held-out validation
//! split (paired with the unchanged architecture on the same images) and T with the run's
//! latency model.
//!
//! ```sh
//! cargo run --release -p host --example decision_slopes -- RUN_DIR [RUN_DIR …]
//! ```

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Device;

use host::runs::{load_checkpoint, load_latency, set_vars};
use host::search::{
    decision_infos, evaluate_one_shot, one_hot_selection, FinalReport, SearchConfig,
};

fn study(dir: &Path) -> Result<Vec<(f64, f64)>> {
    let cfg: SearchConfig = serde_json::from_str(
        &std::fs::read_to_string(dir.join("config.json"))
            .with_context(|| format!("{}/config.json", dir.display()))?,
    )?;
    let setup = cfg.setup()?;
    let ck = load_checkpoint(dir, &Device::Cpu)?;
    set_vars(setup.net.vars(), &ck.weights, &ck.weights_path)?;
    let model = load_latency(&cfg.latency, &setup.space)?;
    let infos = decision_infos(&setup.space);
    let best: Vec<usize> = FinalReport::load(dir)?
        .indices
        .split(':')
        .map(|s| s.parse().context("index"))
        .collect::<Result<_>>()?;
    let batch = cfg.batch_size * cfg.validation_multiplier;
    let q_of = |idx: &[usize]| {
        evaluate_one_shot(
            &setup.net,
            &setup.val,
            &setup.batcher,
            &one_hot_selection(idx, &infos),
            batch,
        )
    };
    let t_of = |idx: &[usize]| -> Result<f64> {
        Ok(model.latency_ms(&setup.space.check_arch(idx.to_vec())?)?)
    };
    let (q0, t0) = (q_of(&best)?, t_of(&best)?);
    eprintln!("{}: argmax Q {q0:.4}, T {t0:.2} ms", dir.display());
    let mut moves = Vec::new();
    for (d, info) in infos.iter().enumerate() {
        for c in (0..info.choices).filter(|&c| c != best[d]) {
            let mut idx = best.clone();
            idx[d] = c;
            let t = t_of(&idx)?;
            let dl = (t / t0).ln();
            if dl.abs() < 1e-9 {
                continue; // an inactive decision (its layer is skipped): nothing changes
            }
            let dq = q_of(&idx)? - q0;
            moves.push((dq, dl));
        }
    }
    Ok(moves)
}

fn main() -> Result<()> {
    let mut all = Vec::new();
    for dir in std::env::args().skip(1) {
        let moves = study(Path::new(&dir))?;
        all.extend(moves);
    }
    let mut ratios: Vec<f64> = all.iter().map(|(dq, dl)| dq / dl.abs()).collect();
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    let q = |p: f64| ratios[((p * (n - 1) as f64).round() as usize).min(n - 1)];
    println!("{n} single-decision moves with a latency change");
    println!(
        "ΔQ/|Δ ln T| quantiles: 50% {:+.3}  75% {:+.3}  90% {:+.3}  95% {:+.3}  max {:+.3}",
        q(0.5),
        q(0.75),
        q(0.9),
        q(0.95),
        q(1.0)
    );
    for beta in [0.1, 0.2, 0.3, 0.5, 1.0] {
        let over: Vec<&(f64, f64)> = all.iter().filter(|(dq, dl)| dq / dl.abs() > beta).collect();
        let dl_max = over.iter().map(|(_, dl)| dl.abs()).fold(0.0, f64::max);
        println!(
            "|β| = {beta}: {} moves gain more Q than they cost (largest of them moves T by {:.1}%)",
            over.len(),
            100.0 * dl_max
        );
    }
    println!("dq dlnT");
    for (dq, dl) in &all {
        println!("{dq:+.4} {dl:+.4}");
    }
    Ok(())
}
