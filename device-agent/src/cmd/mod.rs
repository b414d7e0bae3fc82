//! One module per `device-agent` subcommand. Data goes to stdout, messages to stderr.

pub mod bench;
pub mod bench_model;
pub mod build_onnx;
pub mod infer;
pub mod info;
pub mod serve;

use std::io::Write;

use anyhow::Result;

/// Prints `v` as pretty JSON on stdout.
pub fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}
