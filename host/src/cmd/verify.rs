//! `tunas verify RUN_DIR --device D`: the architecture a search found, built at deployment
//! resolution and measured whole on the device, against the latency model's prediction.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use latency_tables::Method;

use crate::device::TransportSpec;

/// Where to measure a found network and how.
#[derive(Debug, Args)]
pub struct On {
    /// Where the agent is (local, exec:COMMAND, serial:PATH, tcp:HOST:PORT).
    #[arg(long)]
    pub device: String,
    /// The agent binary for `local`.
    #[arg(long)]
    pub agent: Option<PathBuf>,
    /// Longest silence in seconds while the network is measured.
    #[arg(long, default_value_t = 600.0, value_parser = super::values::SECONDS)]
    pub timeout: f64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub method: Method,
}

impl On {
    /// Measures the finished search in `run`; prints the summary on stderr and writes
    /// `verify.json` there.
    pub fn verify(&self, run: &std::path::Path) -> Result<crate::search::Verification> {
        self.method.check()?;
        let link = TransportSpec::parse(&self.device, self.agent.as_ref())?;
        let v =
            crate::search::verify(run, &link, &self.method, Duration::from_secs_f64(self.timeout))?;
        log::info!("{}", v.summary());
        log::info!("verify: written to {}", run.join("verify.json").display());
        Ok(v)
    }
}

/// `tunas verify RUN_DIR --device D`
#[derive(Debug, Args)]
pub struct Cmd {
    /// A finished search's run directory.
    pub run: PathBuf,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub on: On,
}

impl Cmd {
    /// Runs the check; prints `verify.json`'s content on stdout.
    pub fn run(self) -> Result<i32> {
        let v = self.on.verify(&self.run)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
        Ok(0)
    }
}
