//! The `device-agent` command line (clap derive); stdout carries only data.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use latency_tables::meta::MAX_THREADS;
use latency_tables::{F64Range, LatencyStats, Method};

use crate::engine::Engine;
use crate::measure::{self, Placement};
use crate::sysinfo;
use crate::tract_engine::TractEngine;

/// On-device latency profiler: builds op keys as ONNX, times them with tract.
#[derive(Debug, Parser)]
#[command(name = "device-agent", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Say only warnings and errors on stderr (no progress lines).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Say more on stderr (`-vv` for everything).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the device fingerprint as JSON.
    Info(PlacementArgs),
    /// Measure every key of a plan into a table, journaling each result (resumable).
    Bench(BenchArgs),
    /// Time any ONNX file end to end with the same method; prints JSON statistics.
    BenchModel(BenchModelArgs),
    /// Run an ONNX model on a raw f32 input file and write the raw f32 output (for comparisons).
    Infer(InferArgs),
    /// Serve the host protocol over stdio, a serial port or TCP.
    Serve(ServeArgs),
    /// Write the ONNX model the agent measures for op keys (one key, or several as a network),
    /// to inspect it with other tools or time it with `bench-model`.
    BuildOnnx(BuildOnnxArgs),
}

/// `device-agent build-onnx KEY [KEY …] --out FILE`
#[derive(Debug, Args)]
pub struct BuildOnnxArgs {
    /// Op keys; several keys are built as one network, in order.
    #[arg(required = true)]
    pub keys: Vec<String>,
    /// Where to write the model.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the generated weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Allowed `--thermal-limit` (°C).
pub const THERMAL_LIMIT: F64Range = F64Range::above(0.0, 1000.0);

/// Where and how wide to run.
#[derive(Debug, Clone, Args)]
pub struct PlacementArgs {
    /// CPUs to pin to, e.g. `4-7` (default: the fastest cluster, or all CPUs without cpufreq).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Engine threads (needs the `multithread` feature for more than 1).
    #[arg(long, default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_THREADS)))]
    pub threads: u32,
    /// A thermal zone at or above this temperature (°C) flags a measurement as throttled.
    #[arg(long, default_value_t = 85.0, value_parser = THERMAL_LIMIT)]
    pub thermal_limit: f64,
}

/// `device-agent bench`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The plan (`tunas plan --out plan.json`).
    #[arg(long)]
    pub plan: PathBuf,
    /// The table to write; the journal is `OUT.journal`.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue from the journal of an interrupted run.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub method: Method,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub placement: PlacementArgs,
}

/// `device-agent bench-model`
#[derive(Debug, Args)]
pub struct BenchModelArgs {
    /// The ONNX file.
    pub model: PathBuf,
    /// Input shape when the model's is not fixed, e.g. `1,3,224,224`.
    #[arg(long)]
    pub input_shape: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub method: Method,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub placement: PlacementArgs,
}

/// `device-agent infer`
#[derive(Debug, Args)]
pub struct InferArgs {
    /// The ONNX file.
    pub model: PathBuf,
    /// Raw little-endian f32 input of the model's input shape.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the raw little-endian f32 output.
    #[arg(long)]
    pub output: PathBuf,
    /// The input holds this many inputs back to back; each is run and the outputs are
    /// written back to back.
    #[arg(long, default_value_t = 1,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub count: usize,
}

/// `device-agent serve`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("transport").required(true).args(["stdio", "serial", "tcp"])))]
pub struct ServeArgs {
    /// Serve on stdin/stdout.
    #[arg(long)]
    pub stdio: bool,
    /// Serve on a serial port (e.g. /dev/ttyGS0, /dev/ttyUSB0).
    #[arg(long)]
    pub serial: Option<String>,
    /// Serial baud rate.
    #[arg(long, default_value_t = 115_200, value_parser = clap::value_parser!(u32).range(1..))]
    pub baud: u32,
    /// Serve on TCP at ADDR (host:port); loopback only unless --listen-any.
    #[arg(long)]
    pub tcp: Option<String>,
    /// Allow binding a TCP address that is not loopback.
    #[arg(long)]
    pub listen_any: bool,
    /// Serve one TCP connection or serial session, then exit.
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub placement: PlacementArgs,
}

/// Pins, configures threads, fingerprints (for `serve`).
pub fn setup_for_serve(p: &PlacementArgs) -> Result<(Placement, latency_tables::Fingerprint)> {
    setup(p)
}

/// Pins, configures threads, fingerprints.
fn setup(p: &PlacementArgs) -> Result<(Placement, latency_tables::Fingerprint)> {
    let wanted = match &p.cpus {
        Some(list) => {
            sysinfo::parse_cpu_list(list).map_err(anyhow::Error::msg).context("--cpus")?
        }
        None => sysinfo::fastest_cluster(),
    };
    let affinity = match sysinfo::pin(&wanted) {
        Ok(a) => a,
        Err(e) if p.cpus.is_some() => {
            bail!("could not pin to --cpus {}: {e}", p.cpus.as_deref().unwrap_or(""))
        }
        Err(e) => {
            measure::warn_line(&format!("not pinned ({e}); measuring on any CPU"));
            sysinfo::online_cpus()
        }
    };
    if p.threads == 0 {
        bail!("--threads must be at least 1");
    }
    if p.threads > 1 {
        #[cfg(feature = "multithread")]
        tract_linalg::multithread::set_default_executor(
            tract_linalg::multithread::Executor::multithread(p.threads as usize),
        );
        #[cfg(not(feature = "multithread"))]
        bail!("--threads {} needs an agent built with the `multithread` feature", p.threads);
    }
    let placement = Placement { cpus: affinity.clone(), thermal_limit_c: p.thermal_limit };
    Ok((placement, sysinfo::fingerprint(&affinity, p.threads)))
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let engine = TractEngine;
    match cli.command {
        Command::Info(p) => {
            let (_, fp) = setup(&p)?;
            print_json(&fp)
        }
        Command::Bench(a) => {
            let (placement, fp) = setup(&a.placement)?;
            let method = Method { threads: a.placement.threads, ..a.method };
            method.check()?;
            let summary =
                crate::bench::bench(&engine, &a.plan, &a.out, a.resume, method, fp, &placement)?;
            measure::log_line(&format!(
                "{} of {} keys measured ({} failed) into {} in {:.0} s",
                summary.measured,
                summary.keys,
                summary.failed,
                summary.out.display(),
                summary.seconds
            ));
            print_json(&summary)
        }
        Command::BenchModel(a) => {
            let (placement, fp) = setup(&a.placement)?;
            let method = Method { threads: a.placement.threads, ..a.method };
            method.check()?;
            let bytes = std::fs::read(&a.model)
                .with_context(|| format!("reading {}", a.model.display()))?;
            let shape = match &a.input_shape {
                Some(s) => Some(
                    s.split(',')
                        .map(|d| d.trim().parse::<usize>())
                        .collect::<Result<Vec<_>, _>>()
                        .with_context(|| {
                            format!("--input-shape {s:?} is not a list like 1,3,224,224")
                        })?,
                ),
                None => None,
            };
            let mut r = engine
                .prepare(&bytes, shape.as_deref(), method.seed)
                .with_context(|| format!("loading {}", a.model.display()))?;
            let t = measure::time_model(r.as_mut(), &method, &placement, &mut |_| Ok(()))?;
            let stats = LatencyStats::from_samples(&t.samples_us).context("no samples")?;
            print_json(&serde_json::json!({
                "model": a.model, "units": "us", "stats": stats, "batch": t.batch,
                "throttled": t.throttled, "method": method, "fingerprint": fp,
            }))
        }
        Command::Infer(a) => {
            let bytes = std::fs::read(&a.model)
                .with_context(|| format!("reading {}", a.model.display()))?;
            let raw = std::fs::read(&a.input)
                .with_context(|| format!("reading {}", a.input.display()))?;
            if raw.len() % 4 != 0 {
                bail!(
                    "{}: {} bytes is not a whole number of f32 values",
                    a.input.display(),
                    raw.len()
                );
            }
            let input: Vec<f32> =
                raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            if a.count == 0 || input.len() % a.count != 0 {
                bail!(
                    "{}: {} values do not split into --count {} inputs",
                    a.input.display(),
                    input.len(),
                    a.count
                );
            }
            let mut r = engine
                .prepare(&bytes, None, 0)
                .with_context(|| format!("loading {}", a.model.display()))?;
            let mut out = Vec::new();
            for (i, one) in input.chunks_exact(input.len() / a.count).enumerate() {
                out.extend(r.infer(one).with_context(|| format!("input {i}"))?);
            }
            let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(&a.output, bytes)
                .with_context(|| format!("writing {}", a.output.display()))?;
            Ok(())
        }
        Command::Serve(a) => crate::transport::serve(&engine, &a),
        Command::BuildOnnx(a) => {
            let keys = a
                .keys
                .iter()
                .map(|k| k.parse::<latency_tables::OpKey>())
                .collect::<Result<Vec<_>, _>>()?;
            let bytes =
                latency_tables::onnx::network_bytes(&latency_tables::Network::new(keys), a.seed)?;
            std::fs::write(&a.out, bytes)
                .with_context(|| format!("writing {}", a.out.display()))?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn flag_defaults_are_the_method_defaults() {
        let cli =
            Cli::try_parse_from(["device-agent", "bench", "--plan", "p.json", "--out", "t.json"])
                .unwrap();
        let Command::Bench(a) = cli.command else { panic!("not bench") };
        assert_eq!(a.method, Method::default());
        let cli = Cli::try_parse_from([
            "device-agent",
            "bench",
            "--plan",
            "p",
            "--out",
            "t",
            "--passes",
            "5",
            "--seed",
            "9",
        ])
        .unwrap();
        let Command::Bench(a) = cli.command else { panic!("not bench") };
        assert_eq!((a.method.passes, a.method.seed), (5, 9));
    }

    #[test]
    fn bad_numbers_fail_at_parse_time_naming_the_flag() {
        let bench = ["device-agent", "bench", "--plan", "p", "--out", "t"];
        for (extra, flag) in [
            (["--pass-secs", "inf"], "--pass-secs"),
            (["--passes", "1000"], "--passes"),
            (["--runs", "0"], "--runs"),
            (["--threads", "0"], "--threads"),
            (["--threads", "257"], "--threads"),
            (["--thermal-limit", "NaN"], "--thermal-limit"),
        ] {
            let argv = bench.iter().chain(&extra).copied();
            let err = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            let text = err.to_string();
            assert!(text.contains(flag) && text.contains(extra[1]), "{extra:?}: {text}");
        }
        let err = Cli::try_parse_from([
            "device-agent",
            "infer",
            "m.onnx",
            "--input",
            "i",
            "--output",
            "o",
            "--count",
            "0",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("--count"), "{err}");
    }
}
