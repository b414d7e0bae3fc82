//! The device fingerprint, CPU placement and frequency/thermal sampling, from `/proc` and sysfs.
//!
//! Everything degrades gracefully: where sysfs has no cpufreq (VMs, some containers) the
//! fields are empty and placement falls back to all CPUs; nothing here fails a measurement.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use latency_tables::{Cluster, CpuInfo, Fingerprint};

use crate::tract_engine::TRACT_VERSION;

fn read_trim(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn read_u64(path: impl AsRef<Path>) -> Option<u64> {
    read_trim(path)?.parse().ok()
}

/// Parses a CPU list like `0-3,6,8-9`.
pub fn parse_cpu_list(text: &str) -> Result<Vec<u32>, String> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("bad CPU list {text:?} (expected e.g. 0-3,6)");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) =
                    (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.trim().parse().map_err(|_| bad())?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Online CPUs (from `/sys/devices/system/cpu/online`, else the available parallelism).
pub fn online_cpus() -> Vec<u32> {
    read_trim("/sys/devices/system/cpu/online")
        .and_then(|s| parse_cpu_list(&s).ok())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
            (0..n).collect()
        })
}

fn cpufreq(cpu: u32, file: &str) -> Option<u64> {
    read_u64(format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/{file}"))
}

/// Frequency domains from `cpufreq/related_cpus`, with governor and frequencies.
pub fn clusters() -> Vec<Cluster> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for cpu in online_cpus() {
        if seen.contains(&cpu) {
            continue;
        }
        let Some(related) =
            read_trim(format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/related_cpus"))
                .and_then(|s| parse_cpu_list(&s.replace(' ', ",")).ok())
        else {
            continue;
        };
        seen.extend(related.iter().copied());
        out.push(Cluster {
            cpus: related,
            governor: read_trim(format!(
                "/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"
            )),
            min_khz: cpufreq(cpu, "cpuinfo_min_freq"),
            max_khz: cpufreq(cpu, "cpuinfo_max_freq"),
            cur_khz: cpufreq(cpu, "scaling_cur_freq"),
        });
    }
    out
}

/// The default placement: the cluster with the highest maximum frequency (ties: the larger
/// cluster, then the later one, which on phones is the big cluster); all CPUs without cpufreq.
pub fn fastest_cluster() -> Vec<u32> {
    clusters()
        .into_iter()
        .max_by_key(|c| {
            (c.max_khz.unwrap_or(0), c.cpus.len(), c.cpus.first().copied().unwrap_or(0))
        })
        .map(|c| c.cpus)
        .unwrap_or_else(online_cpus)
}

/// The names of `clusters`, slowest first by maximum frequency (ties: smaller first): `little`
/// and `big` for two; `little`, `mid`, `big` for three; `little`, `mid1`, …, `big` beyond.
/// One cluster is `big`.
pub fn cluster_names(clusters: &[Cluster]) -> Vec<(String, Vec<u32>)> {
    let mut sorted: Vec<&Cluster> = clusters.iter().collect();
    sorted.sort_by_key(|c| (c.max_khz.unwrap_or(0), c.cpus.len(), c.cpus.first().copied()));
    let n = sorted.len();
    sorted
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let name = match (i, n) {
                (i, n) if i + 1 == n => "big".to_string(),
                (0, _) => "little".to_string(),
                (_, 3) => "mid".to_string(),
                (i, _) => format!("mid{i}"),
            };
            (name, c.cpus.clone())
        })
        .collect()
}

/// The CPUs of the cluster called `name` ([`cluster_names`]); the error lists the names there
/// are (or says that the device reports no clusters: no cpufreq).
pub fn cluster_cpus(name: &str, clusters: &[Cluster]) -> Result<Vec<u32>, String> {
    let named = cluster_names(clusters);
    if named.is_empty() {
        return Err(format!(
            "no cluster {name:?}: this device reports no CPU clusters (no cpufreq); give --cpus"
        ));
    }
    let list = |cpus: &[u32]| cpus.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    named.iter().find(|(n, _)| n == name).map(|(_, cpus)| cpus.clone()).ok_or_else(|| {
        let known: Vec<String> =
            named.iter().map(|(n, cpus)| format!("{n} (cpus {})", list(cpus))).collect();
        format!("no cluster {name:?}; this device has {}", known.join(", "))
    })
}

/// Pins the calling thread to `cpus` (Linux and Android); returns the affinity now in force.
pub fn pin(cpus: &[u32]) -> Result<Vec<u32>, String> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
        use nix::unistd::Pid;
        let mut set = CpuSet::new();
        for &c in cpus {
            set.set(c as usize).map_err(|e| format!("CPU {c}: {e}"))?;
        }
        sched_setaffinity(Pid::from_raw(0), &set)
            .map_err(|e| format!("sched_setaffinity({cpus:?}): {e}"))?;
        let now = sched_getaffinity(Pid::from_raw(0)).map_err(|e| e.to_string())?;
        Ok((0..CpuSet::count() as u32)
            .filter(|&c| now.is_set(c as usize).unwrap_or(false))
            .collect())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = cpus;
        Err("CPU pinning is only implemented for Linux and Android".into())
    }
}

/// Per-CPU ids from `/proc/cpuinfo` and the model name.
fn cpuinfo() -> (Option<String>, Vec<CpuInfo>) {
    let text = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let mut model = None;
    let mut cpus: Vec<CpuInfo> = Vec::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        let (k, v) = (k.trim(), v.trim().to_string());
        match k {
            "processor" => {
                if let Ok(n) = v.parse() {
                    cpus.push(CpuInfo {
                        cpu: n,
                        max_khz: cpufreq(n, "cpuinfo_max_freq"),
                        ..Default::default()
                    });
                }
            }
            "model name" | "Hardware" | "Processor" | "cpu model" if model.is_none() => {
                model = Some(v)
            }
            "CPU implementer" => {
                if let Some(c) = cpus.last_mut() {
                    c.implementer = Some(v);
                }
            }
            "CPU part" => {
                if let Some(c) = cpus.last_mut() {
                    c.part = Some(v);
                }
            }
            _ => {}
        }
    }
    (model, cpus)
}

fn os_name() -> Option<String> {
    if let Some(release) = getprop("ro.build.version.release") {
        return Some(format!("Android {release}"));
    }
    let text = fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
}

fn getprop(name: &str) -> Option<String> {
    let out = std::process::Command::new("getprop").arg(name).output().ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !v.is_empty()).then_some(v)
}

fn libc_name() -> &'static str {
    if cfg!(target_os = "android") {
        "bionic"
    } else if cfg!(target_env = "musl") {
        "musl"
    } else if cfg!(target_feature = "crt-static") {
        "glibc (static)"
    } else if cfg!(target_env = "gnu") {
        "glibc"
    } else {
        "unknown"
    }
}

/// Whether tract's multithreaded kernels are compiled in.
pub const MULTITHREAD: bool = cfg!(feature = "multithread");

/// The fingerprint of this device and this agent build.
pub fn fingerprint(affinity: &[u32], threads: u32) -> Fingerprint {
    let (cpu_model, cpus) = cpuinfo();
    let mut android = BTreeMap::new();
    for prop in ["ro.build.fingerprint", "ro.product.model", "ro.soc.model", "ro.board.platform"] {
        if let Some(v) = getprop(prop) {
            android.insert(prop.to_string(), v);
        }
    }
    Fingerprint {
        cpu_model,
        cpus,
        clusters: clusters(),
        kernel: read_trim("/proc/sys/kernel/osrelease"),
        os: os_name(),
        android,
        tract_version: Some(TRACT_VERSION.into()),
        tract_multithread: MULTITHREAD,
        target: Some(env!("AGENT_TARGET").into()),
        libc: Some(libc_name().into()),
        profile: Some(env!("AGENT_PROFILE").into()),
        affinity: affinity.to_vec(),
        threads,
        agent_version: Some(env!("CARGO_PKG_VERSION").into()),
    }
}

/// Frequencies of some CPUs and the temperatures of all thermal zones, at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// `scaling_cur_freq` per CPU (kHz), where readable.
    pub freq_khz: Vec<(u32, u64)>,
    /// Thermal zone temperatures in °C.
    pub temps_c: Vec<f64>,
}

/// Samples the frequency of `cpus` and every thermal zone.
pub fn sample(cpus: &[u32]) -> Sample {
    let freq_khz =
        cpus.iter().filter_map(|&c| cpufreq(c, "scaling_cur_freq").map(|f| (c, f))).collect();
    let mut temps_c = Vec::new();
    if let Ok(dir) = fs::read_dir("/sys/class/thermal") {
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with("thermal_zone") {
                if let Some(t) =
                    read_trim(e.path().join("temp")).and_then(|s| s.parse::<f64>().ok())
                {
                    temps_c.push(t / 1000.0);
                }
            }
        }
    }
    Sample { freq_khz, temps_c }
}

/// Whether the frequency dropped by more than 10% on a CPU, or a zone reached `limit_c`.
pub fn throttled(before: &Sample, after: &Sample, limit_c: f64) -> bool {
    let dropped = before.freq_khz.iter().any(|&(cpu, f0)| {
        after.freq_khz.iter().any(|&(c, f1)| c == cpu && (f1 as f64) < 0.9 * f0 as f64)
    });
    dropped || after.temps_c.iter().any(|&t| t >= limit_c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,6,8-9\n").unwrap(), vec![0, 1, 2, 3, 6, 8, 9]);
        assert_eq!(parse_cpu_list("4").unwrap(), vec![4]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
    }

    #[test]
    fn throttling_rules() {
        let s = |f: u64, t: f64| Sample { freq_khz: vec![(0, f)], temps_c: vec![t] };
        assert!(!throttled(&s(2_000_000, 40.0), &s(1_900_000, 41.0), 85.0));
        assert!(throttled(&s(2_000_000, 40.0), &s(1_500_000, 41.0), 85.0));
        assert!(throttled(&s(2_000_000, 40.0), &s(2_000_000, 90.0), 85.0));
    }

    fn cluster(cpus: &[u32], max_khz: u64) -> Cluster {
        Cluster {
            cpus: cpus.to_vec(),
            governor: None,
            min_khz: None,
            max_khz: Some(max_khz),
            cur_khz: None,
        }
    }

    #[test]
    fn clusters_are_named_by_frequency() {
        // A phone lists its little cluster first; names follow frequency, not order.
        let phone = [cluster(&[4, 5, 6, 7], 2_400_000), cluster(&[0, 1, 2, 3], 1_800_000)];
        assert_eq!(cluster_cpus("big", &phone).unwrap(), vec![4, 5, 6, 7]);
        assert_eq!(cluster_cpus("little", &phone).unwrap(), vec![0, 1, 2, 3]);
        let three = [
            cluster(&[7], 3_000_000),
            cluster(&[0, 1, 2, 3], 1_800_000),
            cluster(&[4, 5, 6], 2_400_000),
        ];
        let names: Vec<String> = cluster_names(&three).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["little", "mid", "big"]);
        assert_eq!(cluster_cpus("mid", &three).unwrap(), vec![4, 5, 6]);
        let err = cluster_cpus("prime", &three).unwrap_err();
        assert!(err.contains("\"prime\"") && err.contains("big (cpus 7)"), "{err}");
        let err = cluster_cpus("big", &[]).unwrap_err();
        assert!(err.contains("no CPU clusters") && err.contains("--cpus"), "{err}");
        assert_eq!(cluster_cpus("big", &[cluster(&[0, 1], 1)]).unwrap(), vec![0, 1]);
    }

    #[test]
    fn fingerprint_of_this_machine() {
        let fp = fingerprint(&online_cpus(), 1);
        assert!(!fp.cpus.is_empty());
        assert_eq!(fp.tract_version.as_deref(), Some(TRACT_VERSION));
        assert!(fp.target.as_deref().unwrap_or("").contains('-'));
        assert!(fp.kernel.is_some());
    }
}
