//! `tunas profile`'s driver: the contract crate's one profiling loop
//! ([`latency_tables::driver`]) with one [`AgentWorker`] per device link, and the console's
//! progress line and log as its observer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use latency_tables::driver::{self, Observer, Summary};
use latency_tables::{Method, OpKey};

use crate::device::worker::AgentWorker;
use crate::device::Link;

/// Options of a profile.
#[derive(Debug, Clone)]
pub struct ProfileOptions {
    /// The method sent to the agents.
    pub method: Method,
    /// Continue from the journal.
    pub resume: bool,
    /// Allow devices whose fingerprints differ.
    pub allow_mixed: bool,
    /// The longest silence allowed from an agent at work before its link counts as failed.
    pub key_timeout: Duration,
    /// Attempts per key before it is recorded as failed.
    pub max_attempts: u32,
    /// Reconnects/restarts per device before it is given up.
    pub max_restarts: u32,
    /// Items sent per request.
    pub group: usize,
    /// Print progress and problems on stderr.
    pub progress: bool,
}

/// Profiles `keys` on `links` into `out` (journal at `out.journal`).
pub fn profile(
    keys: &[OpKey],
    links: &[Arc<dyn Link>],
    out: &Path,
    opts: &ProfileOptions,
) -> Result<Summary> {
    if links.is_empty() {
        anyhow::bail!("no --device given");
    }
    let workers: Vec<AgentWorker> =
        links.iter().map(|l| AgentWorker::new(l.clone(), opts.key_timeout)).collect();
    let options = driver::Options {
        method: opts.method.clone(),
        resume: opts.resume,
        allow_mixed: opts.allow_mixed,
        max_attempts: opts.max_attempts,
        max_restarts: opts.max_restarts,
        group: opts.group,
        description: format!(
            "tunas profile over {}",
            links.iter().map(|l| l.describe()).collect::<Vec<_>>().join(", ")
        ),
    };
    let mut log = console::Log::new("tunas", "profile");
    let mut quiet = driver::Quiet;
    let observer: &mut dyn Observer = if opts.progress { &mut log } else { &mut quiet };
    Ok(driver::run(keys, workers, out, &options, observer)?)
}
