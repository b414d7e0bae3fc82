//! The `device-agent` command line: one `Command` variant per subcommand, each in `cmd::X`;
//! stdout carries only data.

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::cmd;
use crate::placement::PlacementArgs;
use crate::tract_engine::TractEngine;

/// On-device latency profiler: builds op keys as ONNX, times them with tract.
#[derive(Debug, Parser)]
#[command(name = "device-agent", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub log: console::logger::Flags,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the device fingerprint as JSON.
    Info(PlacementArgs),
    /// Measure every key of a plan into a table, journaling each result (resumable).
    Bench(cmd::bench::Cmd),
    /// Time any ONNX file end to end with the same method; prints JSON statistics.
    BenchModel(cmd::bench_model::Cmd),
    /// Run an ONNX model on a raw f32 input file and write the raw f32 output (for comparisons).
    Infer(cmd::infer::Cmd),
    /// Serve the host protocol over stdio, a serial port or TCP.
    Serve(cmd::serve::Cmd),
    /// Write the ONNX model the agent measures for op keys (one key, or several as a network),
    /// to inspect it with other tools or time it with `bench-model`.
    BuildOnnx(cmd::build_onnx::Cmd),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let engine = TractEngine;
    match cli.command {
        Command::Info(p) => cmd::info::run(&p),
        Command::Bench(c) => c.run(&engine),
        Command::BenchModel(c) => c.run(&engine),
        Command::Infer(c) => c.run(&engine),
        Command::Serve(c) => c.run(&engine),
        Command::BuildOnnx(c) => c.run(),
    }
}

#[cfg(test)]
mod tests {
    use latency_tables::Method;

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
        assert_eq!(a.measure.method, Method::default());
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
        assert_eq!((a.measure.method.passes, a.measure.method.seed), (5, 9));
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
