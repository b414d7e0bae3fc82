//! A study of the search's controller alone: the real `Controller`, warmup, RL schedule and
//! Pixel 1 latency model, with the supernet's Q(α) replaced by a synthetic model calibrated on
//! real runs (issue 11). Each simulated search takes well under a second, so the controller's
//! settings (K, the RL logit budget, steps, β) can be compared over many seeds before a real
//! run confirms one.
//!
//! Q(α, t) = q0(t) + slope·ln(T/T0) + Σ_d u_d·w_d + batch noise (shared by the step's K) + ε
//! (per architecture), with u_d fixed per seed (the supernet's real preferences among choices).
//!
//! ```sh
//! cargo run --release -p host --example controller_sim -- [key=value …]
//! ```
//! keys: seeds, steps, delay, k, budget, beta, slope, eps, u, space, target.

use std::collections::HashMap;

use host::latency::{CostModel, LatencyModel};
use host::rng::Rng;
use host::search::controller::{
    decision_infos, rl_learning_rate, warmup_probability, Baseline, Controller, RewardKind,
};
use host::space::SearchSpace;

struct Params {
    seeds: u64,
    steps: usize,
    delay: usize,
    k: usize,
    budget: f64,
    beta: f64,
    slope: f64,
    eps: f64,
    u: f64,
    space: String,
    target: f64,
}

fn parse() -> Params {
    let mut m: HashMap<String, String> = HashMap::new();
    for a in std::env::args().skip(1) {
        let (k, v) = a.split_once('=').expect("arguments are key=value");
        m.insert(k.to_string(), v.to_string());
    }
    let f = |k: &str, d: f64| m.get(k).map_or(d, |v| v.parse().expect("a number"));
    let steps = f("steps", 1000.0) as usize;
    Params {
        seeds: f("seeds", 20.0) as u64,
        steps,
        delay: f("delay", (steps as f64 * 0.25).max(250.0).min(steps as f64 / 2.0)) as usize,
        k: f("k", 4.0) as usize,
        budget: f("budget", 300.0),
        beta: f("beta", -0.1),
        slope: f("slope", -0.015),
        eps: f("eps", 0.010),
        u: f("u", 0.004),
        space: m.get("space").cloned().unwrap_or_else(|| "proxylessnas".into()),
        target: f("target", 84.0),
    }
}

struct Outcome {
    argmax_err: f64,
    expected_err: f64,
    undecided: usize,
    /// Σ u of the argmax minus the mean Σ u of 500 uniform architectures (Q the preferences add).
    pref: f64,
}

fn simulate(p: &Params, space: &SearchSpace, model: &dyn LatencyModel, seed: u64) -> Outcome {
    let mut rng = Rng::new(seed).fork("sim");
    let infos = decision_infos(space);
    let u: Vec<Vec<f64>> = infos
        .iter()
        .map(|d| {
            let v: Vec<f64> = (0..d.choices).map(|_| p.u * rng.normal()).collect();
            let m = v.iter().sum::<f64>() / v.len() as f64;
            v.into_iter().map(|x| x - m).collect()
        })
        .collect();
    let mut c = Controller::new(infos);
    let n_rl = p.steps.saturating_sub(p.delay).max(1) as f64;
    let rl_base = p.budget / (n_rl * 9.0 / std::f64::consts::LN_10);
    let latency = |idx: &[usize]| {
        let arch =
            space.check_arch(idx.to_vec()).expect("the controller draws valid architectures");
        model.latency_ms(&arch).expect("pixel1 prices every architecture of its space")
    };
    for step in 0..p.steps {
        let pw = warmup_probability(step, p.delay);
        let k = if step < p.delay { 1 } else { p.k };
        let draws: Vec<_> = (0..k).map(|_| c.draw(&mut rng, pw)).collect();
        let q0 = 0.8 - 0.7 * (-(step as f64) / 300.0).exp();
        let shared = 0.03 * rng.normal();
        let rewards: Vec<f64> = draws
            .iter()
            .map(|d| {
                let t = if d.replaced.iter().any(|&r| r) {
                    let masks: Vec<Vec<f64>> = d
                        .weights
                        .iter()
                        .map(|w| w.iter().map(|&v| f64::from(v)).collect())
                        .collect();
                    model.masked_ms(&masks).unwrap_or_else(|| latency(&d.effective))
                } else {
                    latency(&d.effective)
                };
                let pref: f64 = d
                    .weights
                    .iter()
                    .zip(&u)
                    .map(|(w, ud)| {
                        w.iter().zip(ud).map(|(&wi, &ui)| f64::from(wi) * ui).sum::<f64>()
                    })
                    .sum();
                let q = q0 + p.slope * (t / p.target).ln() + pref + shared + p.eps * rng.normal();
                RewardKind::Abs.reward(q.clamp(0.0, 1.0), t, p.target, p.beta)
            })
            .collect();
        let lr = rl_learning_rate(rl_base, step, p.delay, p.steps);
        c.update_many(&draws, &rewards, lr, Baseline::LeaveOneOut);
    }
    let best = c.argmax();
    let t_arg = latency(&best);
    let pref_of = |idx: &[usize]| idx.iter().zip(&u).map(|(&i, ud)| ud[i]).sum::<f64>();
    let pref = pref_of(&best);
    let n = 500;
    let e: f64 = (0..n).map(|_| latency(&c.draw(&mut rng, 0.0).sampled)).sum::<f64>() / n as f64;
    Outcome {
        argmax_err: t_arg / p.target - 1.0,
        expected_err: e / p.target - 1.0,
        undecided: c.top_probs().iter().filter(|&&q| q < 0.9).count(),
        pref,
    }
}

fn main() {
    let p = parse();
    let space = SearchSpace::by_name(&p.space).expect("space");
    let model = CostModel::pixel1(&space).expect("pixel1");
    let outs: Vec<Outcome> = (0..p.seeds).map(|s| simulate(&p, &space, &model, s)).collect();
    let n = outs.len() as f64;
    let errs: Vec<f64> = outs.iter().map(|o| 100.0 * o.argmax_err).collect();
    let within = errs.iter().filter(|e| e.abs() <= 1.0).count();
    let rms = (errs.iter().map(|e| e * e).sum::<f64>() / n).sqrt();
    let max = errs.iter().fold(0.0f64, |m, e| m.max(e.abs()));
    let e_rms = (outs.iter().map(|o| (100.0 * o.expected_err).powi(2)).sum::<f64>() / n).sqrt();
    let und = outs.iter().map(|o| o.undecided as f64).sum::<f64>() / n;
    let pref = outs.iter().map(|o| o.pref).sum::<f64>() / n;
    println!(
        "steps {} delay {} k {} budget {} beta {} slope {} eps {} u {}: argmax within ±1% {}/{}, rms {:.2}%, max {:.2}%; E[T] rms {:.2}%; undecided {:.1}; Q from preferences {:+.4}",
        p.steps, p.delay, p.k, p.budget, p.beta, p.slope, p.eps, p.u, within, outs.len(), rms, max, e_rms, und, pref
    );
    let list: Vec<String> = errs.iter().map(|e| format!("{e:+.1}")).collect();
    println!("  argmax errors %: {}", list.join(" "));
}
