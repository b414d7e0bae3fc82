//! What a table says about where and how it was measured: the device fingerprint and the method.
//!
//! The agent fills these (see `measurement.md` §5); every table carries both, so a table is
//! evidence that can be compared with another one (`tables diff`) or refused when mixed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::MethodError;
use crate::range::F64Range;

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

/// Largest `--warmup-secs`, `--pass-secs` and `--cooldown-secs`: one hour.
pub const MAX_METHOD_SECS: f64 = 3600.0;
/// Largest `--min-sample-secs`.
pub const MAX_MIN_SAMPLE_SECS: f64 = 10.0;
/// Largest `--canary-threshold` (a relative drift; `--canary-every 0` turns the canary off).
pub const MAX_CANARY_THRESHOLD: f64 = 1000.0;
/// Largest `--warmup-runs` and `--runs`.
pub const MAX_RUNS: u32 = 1_000_000;
/// Largest `--passes`.
pub const MAX_PASSES: u32 = 100;
/// Largest `--canary-every`.
pub const MAX_CANARY_EVERY: u32 = 100_000;
/// Largest `--threads`.
pub const MAX_THREADS: u32 = 256;

/// Allowed `--warmup-secs`, `--pass-secs` and `--cooldown-secs`: `[0, MAX_METHOD_SECS]`.
pub const METHOD_SECS: F64Range = F64Range::closed(0.0, MAX_METHOD_SECS);
/// Allowed `--min-sample-secs`: `[0, MAX_MIN_SAMPLE_SECS]`.
pub const MIN_SAMPLE_SECS: F64Range = F64Range::closed(0.0, MAX_MIN_SAMPLE_SECS);
/// Allowed `--canary-threshold`: `(0, MAX_CANARY_THRESHOLD]`.
pub const CANARY_THRESHOLD: F64Range = F64Range::above(0.0, MAX_CANARY_THRESHOLD);
/// Largest `--ci-target` (a relative half-width).
pub const MAX_CI_TARGET: f64 = 0.5;
/// Allowed `--ci-target`: `[0, MAX_CI_TARGET]` (0 = the fixed method).
pub const CI_TARGET: F64Range = F64Range::closed(0.0, MAX_CI_TARGET);

/// How keys were measured. Every value used is recorded, defaults included.
///
/// With the `cli` feature it is also a set of command-line flags (`--warmup-runs`, …) shared by
/// `device-agent bench` and `tunas profile`; their value parsers reject what
/// [`Method::check`] rejects, so a bad flag fails while the command line is parsed.
///
/// Limits ([`Method::check`]):
///
/// | field | allowed |
/// |---|---|
/// | `warmup_runs` | `0..=`[`MAX_RUNS`] |
/// | `warmup_secs`, `pass_secs`, `cooldown_secs` | finite, `[0,` [`MAX_METHOD_SECS`]`]` |
/// | `runs` | `1..=`[`MAX_RUNS`] |
/// | `min_sample_secs` | finite, `[0,` [`MAX_MIN_SAMPLE_SECS`]`]` |
/// | `passes` | `1..=`[`MAX_PASSES`] |
/// | `canary_every` | `0..=`[`MAX_CANARY_EVERY`] |
/// | `canary_threshold` | finite, `(0,` [`MAX_CANARY_THRESHOLD`]`]` |
/// | `threads` | `1..=`[`MAX_THREADS`] |
/// | `ci_target` | finite, `[0,` [`MAX_CI_TARGET`]`]` |
/// | `min_passes` | `1..=`[`MAX_PASSES`] |
/// | `seed` | any |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(default)]
pub struct Method {
    /// Minimum warm-up runs before timing a key.
    #[cfg_attr(
        feature = "cli",
        arg(long, default_value_t = 10,
            value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_RUNS)))
    )]
    pub warmup_runs: u32,
    /// Minimum warm-up time in seconds.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.3, value_parser = METHOD_SECS))]
    pub warmup_secs: f64,
    /// Minimum timed runs per key and pass.
    #[cfg_attr(
        feature = "cli",
        arg(long, default_value_t = 30,
            value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_RUNS)))
    )]
    pub runs: u32,
    /// Minimum timed seconds per key and pass.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 1.0, value_parser = METHOD_SECS))]
    pub pass_secs: f64,
    /// Each sample averages enough back-to-back runs to last at least this long (seconds).
    #[cfg_attr(
        feature = "cli",
        arg(long, default_value_t = 0.002, value_parser = MIN_SAMPLE_SECS)
    )]
    pub min_sample_secs: f64,
    /// Passes over the whole key list, each in rotated order.
    #[cfg_attr(
        feature = "cli",
        arg(long, default_value_t = 3,
            value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PASSES)))
    )]
    pub passes: u32,
    /// A canary block is re-measured after this many keys (0 = never).
    #[cfg_attr(
        feature = "cli",
        arg(long, default_value_t = 20,
            value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_CANARY_EVERY)))
    )]
    pub canary_every: u32,
    /// Relative drift of the canary's median that triggers a cool-down and re-measurement.
    #[cfg_attr(
        feature = "cli",
        arg(long, default_value_t = 0.05, value_parser = CANARY_THRESHOLD)
    )]
    pub canary_threshold: f64,
    /// Seconds to pause when the canary drifted.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 10.0, value_parser = METHOD_SECS))]
    pub cooldown_secs: f64,
    /// Adaptive measurement: stop timing a key once the 95% confidence interval of its median
    /// (order statistics) has a half-width of at most this fraction of the median — within a
    /// pass (after `--runs` runs; `--pass-secs` becomes the most a pass may take) and over the
    /// passes (after `--min-passes`, when the pass medians also agree within twice this). 0 is
    /// the fixed method: every key gets `--passes` passes of at least `--pass-secs`.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.0, value_parser = CI_TARGET))]
    pub ci_target: f64,
    /// Adaptive measurement: passes every key gets before it may stop (`--passes` is the most).
    #[cfg_attr(
        feature = "cli",
        arg(long, default_value_t = 2,
            value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PASSES)))
    )]
    pub min_passes: u32,
    /// Engine threads.
    #[cfg_attr(feature = "cli", arg(skip = 1u32))]
    pub threads: u32,
    /// Seed of the generated weights and inputs.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0))]
    pub seed: u64,
}

impl Method {
    /// The quickest method that still runs every stage: one warm-up run, three timed runs per
    /// pass, no time floors and no cool-down (tests and smoke runs; not for real tables).
    pub fn instant() -> Method {
        Method {
            warmup_runs: 1,
            warmup_secs: 0.0,
            runs: 3,
            pass_secs: 0.0,
            min_sample_secs: 0.0,
            cooldown_secs: 0.0,
            ..Method::default()
        }
    }

    /// Whether this is the adaptive method ([`Method::ci_target`] > 0).
    pub fn adaptive(&self) -> bool {
        self.ci_target > 0.0
    }

    /// Checks every field against the limits listed on [`Method`]; the error names the field as
    /// its command-line flag, the allowed range and the value.
    pub fn check(&self) -> Result<(), MethodError> {
        let real = |flag: &'static str, range: F64Range, value: f64| {
            if range.contains(value) {
                Ok(())
            } else {
                Err(MethodError {
                    flag,
                    allowed: format!("a finite number in {range}"),
                    value: value.to_string(),
                })
            }
        };
        let count = |flag: &'static str, min: u32, max: u32, value: u32| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(MethodError {
                    flag,
                    allowed: format!("in {min}..={max}"),
                    value: value.to_string(),
                })
            }
        };
        count("--warmup-runs", 0, MAX_RUNS, self.warmup_runs)?;
        real("--warmup-secs", METHOD_SECS, self.warmup_secs)?;
        count("--runs", 1, MAX_RUNS, self.runs)?;
        real("--pass-secs", METHOD_SECS, self.pass_secs)?;
        real("--min-sample-secs", MIN_SAMPLE_SECS, self.min_sample_secs)?;
        count("--passes", 1, MAX_PASSES, self.passes)?;
        count("--canary-every", 0, MAX_CANARY_EVERY, self.canary_every)?;
        real("--canary-threshold", CANARY_THRESHOLD, self.canary_threshold)?;
        real("--cooldown-secs", METHOD_SECS, self.cooldown_secs)?;
        count("--threads", 1, MAX_THREADS, self.threads)?;
        real("--ci-target", CI_TARGET, self.ci_target)?;
        count("--min-passes", 1, MAX_PASSES, self.min_passes)?;
        Ok(())
    }
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
            ci_target: 0.0,
            min_passes: 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_accepted() {
        assert_eq!(Method::default().check(), Ok(()));
    }

    #[test]
    fn bad_values_name_the_flag_the_range_and_the_value() {
        let cases: Vec<(Method, &str, &str)> = vec![
            (Method { pass_secs: f64::NAN, ..Method::default() }, "--pass-secs", "NaN"),
            (Method { warmup_secs: f64::INFINITY, ..Method::default() }, "--warmup-secs", "inf"),
            (Method { cooldown_secs: -1.0, ..Method::default() }, "--cooldown-secs", "-1"),
            (Method { cooldown_secs: 3601.0, ..Method::default() }, "--cooldown-secs", "3601"),
            (Method { min_sample_secs: 11.0, ..Method::default() }, "--min-sample-secs", "11"),
            (Method { canary_threshold: 0.0, ..Method::default() }, "--canary-threshold", "0"),
            (Method { runs: 0, ..Method::default() }, "--runs", "0"),
            (Method { warmup_runs: 2_000_000, ..Method::default() }, "--warmup-runs", "2000000"),
            (Method { passes: 1000, ..Method::default() }, "--passes", "1000"),
            (Method { passes: 0, ..Method::default() }, "--passes", "0"),
            (Method { canary_every: 100_001, ..Method::default() }, "--canary-every", "100001"),
            (Method { threads: 0, ..Method::default() }, "--threads", "0"),
            (Method { threads: 257, ..Method::default() }, "--threads", "257"),
        ];
        for (method, flag, value) in cases {
            let err = method.check().unwrap_err();
            assert_eq!(err.flag, flag);
            let text = err.to_string();
            assert!(text.starts_with(flag) && text.ends_with(&format!("got {value}")), "{text}");
        }
        let err = Method { passes: 1000, ..Method::default() }.check().unwrap_err().to_string();
        assert_eq!(err, "--passes must be in 1..=100, got 1000");
        let err = Method { pass_secs: f64::NAN, ..Method::default() }.check().unwrap_err();
        assert_eq!(err.to_string(), "--pass-secs must be a finite number in [0, 3600], got NaN");
    }

    #[test]
    fn the_limits_themselves_are_accepted() {
        let edge = Method {
            warmup_runs: MAX_RUNS,
            warmup_secs: MAX_METHOD_SECS,
            runs: MAX_RUNS,
            pass_secs: 0.0,
            min_sample_secs: MAX_MIN_SAMPLE_SECS,
            passes: MAX_PASSES,
            canary_every: MAX_CANARY_EVERY,
            canary_threshold: MAX_CANARY_THRESHOLD,
            cooldown_secs: 0.0,
            threads: MAX_THREADS,
            seed: u64::MAX,
            ci_target: MAX_CI_TARGET,
            min_passes: MAX_PASSES,
        };
        assert_eq!(edge.check(), Ok(()));
    }

    #[cfg(feature = "cli")]
    mod flags {
        use clap::Parser;

        use super::super::Method;

        #[derive(Debug, clap::Parser)]
        struct Flags {
            #[command(flatten)]
            method: Method,
        }

        fn parse(args: &[&str]) -> Result<Method, String> {
            let argv = std::iter::once("x").chain(args.iter().copied());
            Flags::try_parse_from(argv).map(|f| f.method).map_err(|e| e.to_string())
        }

        #[test]
        fn no_flags_give_the_defaults() {
            assert_eq!(parse(&[]), Ok(Method::default()));
        }

        #[test]
        fn bad_flags_fail_at_parse_time_naming_the_flag() {
            for (args, needle) in [
                (["--pass-secs", "NaN"], "--pass-secs"),
                (["--warmup-secs", "inf"], "--warmup-secs"),
                (["--cooldown-secs", "1e9"], "--cooldown-secs"),
                (["--min-sample-secs", "20"], "--min-sample-secs"),
                (["--canary-threshold", "0"], "--canary-threshold"),
                (["--runs", "0"], "--runs"),
                (["--passes", "1000"], "--passes"),
                (["--canary-every", "100001"], "--canary-every"),
                (["--warmup-runs", "2000000"], "--warmup-runs"),
            ] {
                let err = parse(&args).unwrap_err();
                assert!(err.contains(needle) && err.contains(args[1]), "{args:?}: {err}");
            }
            let err = parse(&["--cooldown-secs=-1"]).unwrap_err();
            assert!(err.contains("--cooldown-secs") && err.contains("'-1'"), "{err}");
            let err = parse(&["--pass-secs", "inf"]).unwrap_err();
            assert!(err.contains("[0, 3600]"), "{err}");
            assert_eq!(parse(&["--passes", "100"]).map(|m| m.passes), Ok(100));
        }
    }
}
