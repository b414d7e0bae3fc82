//! Overhead of the agent's method versus a plain tract timing loop on the same ONNX file.
//!
//! `cargo run --release -p device-agent --example overhead -- MODEL.onnx [SECONDS]`
//!
//! The plain loop is what `tract MODEL bench` does: load, optimise, make runnable, then call
//! `run` back to back and report the mean. The agent's number is the median of its batched
//! samples (`measure::time_model`, default method, 3 passes). Prints a table.

use std::time::Instant;

use anyhow::{Context, Result};
use device_agent::engine::Engine;
use device_agent::measure::{self, Placement};
use device_agent::tract_engine::TractEngine;
use latency_tables::{LatencyStats, Method};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).context("usage: overhead MODEL.onnx [SECONDS]")?;
    let secs: f64 = args.get(2).map_or(Ok(3.0), |s| s.parse()).context("SECONDS")?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    let engine = TractEngine;

    // Plain loop: one run per timestamp, like tract's own `bench`.
    let mut r = engine.prepare(&bytes, None, 0)?;
    for _ in 0..10 {
        r.run()?;
    }
    let mut plain = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        r.run()?;
        plain.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let plain = LatencyStats::from_samples(&plain).context("no samples")?;

    // The agent's method on a fresh runnable.
    let mut r = engine.prepare(&bytes, None, 0)?;
    let placement = Placement { cpus: vec![], thermal_limit_c: 200.0 };
    let t = measure::time_model(r.as_mut(), &Method::default(), &placement, &mut |_| Ok(()))?;
    let agent = LatencyStats::from_samples(&t.samples_us).context("no samples")?;

    println!("| loop | n | mean µs | median µs | p10 µs | p90 µs |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| plain tract loop | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
        plain.n, plain.mean, plain.median, plain.p10, plain.p90
    );
    println!(
        "| agent method (batch {}) | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
        t.batch, agent.n, agent.mean, agent.median, agent.p10, agent.p90
    );
    println!(
        "\nagent median / plain mean = {:.4}; agent median / plain median = {:.4}",
        agent.median / plain.mean,
        agent.median / plain.median
    );
    Ok(())
}
