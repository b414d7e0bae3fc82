//! What a table says about where and how it was measured: the device fingerprint and the method.
//!
//! The agent fills these (see `measurement.md` §5); every table carries both, so a table is
//! evidence that can be compared with another one (`tables diff`) or refused when mixed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One CPU as `/proc/cpuinfo` and cpufreq describe it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuInfo {
    /// Logical CPU number.
    pub cpu: u32,
    /// ARM `CPU implementer` (e.g. `0x41`), when present.
    pub implementer: Option<String>,
    /// ARM `CPU part` (e.g. `0xd0b`), when present.
    pub part: Option<String>,
    /// `cpuinfo_max_freq` in kHz, when sysfs has it.
    pub max_khz: Option<u64>,
}

/// A set of CPUs that share a clock (`cpufreq/related_cpus`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cluster {
    /// The CPUs of the cluster.
    pub cpus: Vec<u32>,
    /// Scaling governor (`schedutil`, `performance`, …).
    pub governor: Option<String>,
    /// Minimum frequency in kHz.
    pub min_khz: Option<u64>,
    /// Maximum frequency in kHz.
    pub max_khz: Option<u64>,
    /// Current frequency in kHz when the fingerprint was taken.
    pub cur_khz: Option<u64>,
}

/// The device fingerprint: what hardware and software produced a table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fingerprint {
    /// CPU model name (`model name` / `Hardware` / `Processor` in `/proc/cpuinfo`).
    pub cpu_model: Option<String>,
    /// Per-CPU ids and maximum frequencies.
    pub cpus: Vec<CpuInfo>,
    /// Frequency domains.
    pub clusters: Vec<Cluster>,
    /// Kernel release (`uname -r`).
    pub kernel: Option<String>,
    /// Operating system (`/etc/os-release` PRETTY_NAME or `Android <version>`).
    pub os: Option<String>,
    /// Android properties from `getprop` (ro.build.fingerprint, ro.product.model, ro.soc.model).
    pub android: BTreeMap<String, String>,
    /// Version of the tract engine compiled into the agent.
    pub tract_version: Option<String>,
    /// Whether tract's multithreaded kernels were compiled in.
    pub tract_multithread: bool,
    /// Target triple of the agent binary.
    pub target: Option<String>,
    /// C library of the agent binary (`glibc`, `musl`, `bionic`, `static-glibc`).
    pub libc: Option<String>,
    /// Cargo profile of the agent binary (`release`, `debug`, …).
    pub profile: Option<String>,
    /// CPUs the measuring thread was pinned to.
    pub affinity: Vec<u32>,
    /// Threads used by the engine.
    pub threads: u32,
    /// Agent version.
    pub agent_version: Option<String>,
}

impl Fingerprint {
    /// The fields that identify the hardware and engine setup; two tables may only be merged or
    /// sharded together when these agree. Returns `(field, value)` pairs.
    pub fn identity(&self) -> Vec<(&'static str, String)> {
        let parts: Vec<String> = self
            .cpus
            .iter()
            .map(|c| {
                format!(
                    "{}:{}",
                    c.implementer.as_deref().unwrap_or("-"),
                    c.part.as_deref().unwrap_or("-")
                )
            })
            .collect();
        let clusters: Vec<String> =
            self.clusters.iter().map(|c| format!("{:?}@{:?}", c.cpus, c.max_khz)).collect();
        vec![
            ("cpu_model", format!("{:?}", self.cpu_model)),
            ("cpu_parts", parts.join(",")),
            ("clusters", clusters.join(" ")),
            ("target", format!("{:?}", self.target)),
            ("threads", self.threads.to_string()),
            ("affinity", format!("{:?}", self.affinity)),
        ]
    }

    /// The identity fields that differ between two fingerprints, as `(field, self, other)`.
    pub fn identity_diff(&self, other: &Fingerprint) -> Vec<(&'static str, String, String)> {
        self.identity()
            .into_iter()
            .zip(other.identity())
            .filter(|((_, a), (_, b))| a != b)
            .map(|((name, a), (_, b))| (name, a, b))
            .collect()
    }
}

/// How keys were measured. Every value used is recorded, defaults included.
///
/// With the `cli` feature it is also a set of command-line flags (`--warmup-runs`, …) shared by
/// `device-agent bench` and `tunas profile`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(default)]
pub struct Method {
    /// Minimum warm-up runs before timing a key.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 10))]
    pub warmup_runs: u32,
    /// Minimum warm-up time in seconds.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.3))]
    pub warmup_secs: f64,
    /// Minimum timed runs per key and pass.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 30))]
    pub runs: u32,
    /// Minimum timed seconds per key and pass.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 1.0))]
    pub pass_secs: f64,
    /// Each sample averages enough back-to-back runs to last at least this long (seconds).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.002))]
    pub min_sample_secs: f64,
    /// Passes over the whole key list, each in rotated order.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 3))]
    pub passes: u32,
    /// A canary block is re-measured after this many keys (0 = never).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 20))]
    pub canary_every: u32,
    /// Relative drift of the canary's median that triggers a cool-down and re-measurement.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.05))]
    pub canary_threshold: f64,
    /// Seconds to pause when the canary drifted.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 10.0))]
    pub cooldown_secs: f64,
    /// Engine threads.
    #[cfg_attr(feature = "cli", arg(skip = 1u32))]
    pub threads: u32,
    /// Seed of the generated weights and inputs.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0))]
    pub seed: u64,
}

impl Default for Method {
    fn default() -> Self {
        Method {
            warmup_runs: 10,
            warmup_secs: 0.3,
            runs: 30,
            pass_secs: 1.0,
            min_sample_secs: 0.002,
            passes: 3,
            canary_every: 20,
            canary_threshold: 0.05,
            cooldown_secs: 10.0,
            threads: 1,
            seed: 0,
        }
    }
}
