//! Supernet step time: forward + backward + RMSProp update of the Candle supernet at one batch
//! size, and the forward-only (validation) pass, over the same sampled architectures the PyTorch
//! twin (`scripts/bench/supernet_torch.py`) runs. Prints one table row per architecture and a
//! summary with the medians and peak RSS.
//!
//! `cargo bench -p host --bench supernet -- [--batch 64] [--steps 5] [--archs 4] [--width 0.25]
//!  [--space proxylessnas] [--dump spec.json] [--masked 1] [--device cpu|cuda] [--candle-kernels 1]`;
//! `scripts/bench/supernet.sh` runs both frameworks.

use std::time::Instant;

use candle_core::Tensor;
use host::rng::Rng;
use host::search::{decision_infos, Controller};
use host::space::SearchSpace;
use host::supernet::{
    ops, smoothed_cross_entropy, ComputeDevice, ProxyGeometry, RmsProp, Supernet,
};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> anyhow::Result<()> {
    host::allocator::keep_freed_memory();
    // `--candle-kernels 1`: Candle's own ops in place of the custom CPU ops (what a GPU runs).
    let candle_kernels = arg("--candle-kernels", 0u8) == 1;
    if candle_kernels {
        return ops::with_candle_kernels(|| run(candle_kernels));
    }
    run(candle_kernels)
}

fn run(candle_kernels: bool) -> anyhow::Result<()> {
    let batch: usize = arg("--batch", 64);
    let steps: usize = arg("--steps", 5);
    let archs: usize = arg("--archs", 4);
    let width: f64 = arg("--width", 0.25);
    let space = SearchSpace::by_name(&arg("--space", "proxylessnas".to_string()))?;
    let dump: String = arg("--dump", String::new());
    // `--eval-only 1`: time only the forward-only passes (for profiling them).
    let eval_only: bool = arg("--eval-only", 0u8) == 1;
    // `--masked 1`: the masked formulation (every layer at its largest width) instead of the
    // narrowed pass the search runs for one-hot selections.
    let masked: bool = arg("--masked", 0u8) == 1;
    let geometry =
        ProxyGeometry { input_hw: 32, in_channels: 1, classes: 10, width_multiplier: width };
    let device: ComputeDevice = arg("--device", "cpu".to_string()).parse()?;
    let dev = device.open()?;
    let label = match (device, candle_kernels) {
        (ComputeDevice::Cpu, true) => "candle (candle kernels)".to_string(),
        (ComputeDevice::Cpu, _) => "candle".to_string(),
        (d, _) => format!("candle {d}"),
    };
    let net = Supernet::new(&space, geometry, &mut Rng::new(1), &dev)?;
    let mut opt = RmsProp::new(net.vars())?;
    let controller = Controller::new(decision_infos(&space));
    let mut rng = Rng::new(7);
    let draws: Vec<_> = (0..archs).map(|_| controller.draw(&mut rng, 0.0)).collect();
    if !dump.is_empty() {
        let mut spec = net.describe()?;
        spec["archs"] = serde_json::Value::Array(
            draws
                .iter()
                .map(|d| {
                    Ok(serde_json::json!({
                        "indices": d.sampled.iter().map(usize::to_string).collect::<Vec<_>>().join(":"),
                        "layers": net.describe_selection(&d.weights)?,
                    }))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        );
        std::fs::write(&dump, serde_json::to_string_pretty(&spec)?)?;
    }
    let xs: Vec<f32> = (0..batch * 32 * 32).map(|_| rng.normal() as f32).collect();
    let x = Tensor::from_vec(xs, (batch, 1, 32, 32), &dev)?;
    let y = Tensor::from_vec((0..batch as u32).map(|i| i % 10).collect::<Vec<_>>(), batch, &dev)?;
    eprintln!(
        "{label} supernet: {} at width ×{width}, {} weights, batch {batch}, {archs} architectures × {steps} timed steps (+1 warm-up)",
        space.name,
        net.num_weights()
    );
    println!("| framework | batch | arch | median step ms | median fwd ms | median eval ms |");
    println!("|---|---|---|---|---|---|");
    let mut all = Vec::new();
    let mut fwd_all = Vec::new();
    let mut eval_all = Vec::new();
    for (a, d) in draws.iter().enumerate() {
        let mut times = Vec::new();
        let mut fwd = Vec::new();
        for s in 0..=if eval_only { 0 } else { steps } {
            let t0 = Instant::now();
            let out = if masked {
                net.forward_masked(&x, &d.weights, true)?
            } else {
                net.forward(&x, &d.weights)?
            };
            let loss = (smoothed_cross_entropy(&out.logits, &y, 0.1)? + (out.l2 * 2e-5)?)?;
            let _ = loss.to_scalar::<f32>()?;
            let tf = t0.elapsed().as_secs_f64();
            let grads = loss.backward()?;
            opt.step(&grads, 0.01)?;
            let t = t0.elapsed().as_secs_f64();
            if s > 0 {
                times.push(t * 1e3);
                fwd.push(tf * 1e3);
            }
        }
        // Forward only (validation): no graph, no L2, logits read back.
        let mut eval = Vec::new();
        for s in 0..=if eval_only { 10 * steps } else { steps } {
            let t0 = Instant::now();
            let logits = if masked {
                net.forward_masked(&x, &d.weights, false)?.logits
            } else {
                net.forward_eval(&x, &d.weights)?
            };
            let _ = logits.sum_all()?.to_scalar::<f32>()?;
            if s > 0 {
                eval.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        let (m, f, e) =
            (median(&mut times.clone()), median(&mut fwd.clone()), median(&mut eval.clone()));
        println!("| {label} | {batch} | {a} | {m:.1} | {f:.1} | {e:.1} |");
        all.extend(times);
        fwd_all.extend(fwd);
        eval_all.extend(eval);
    }
    println!(
        "| {label} | {batch} | all | {:.1} | {:.1} | {:.1} |\n\npeak RSS: {:.0} MB",
        median(&mut all),
        median(&mut fwd_all),
        median(&mut eval_all),
        peak_rss_mb()
    );
    Ok(())
}
