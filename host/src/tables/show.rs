//! `tables show`: what one table holds — where and how it was measured, how much, its slowest
//! keys and its failures — as text or as one JSON object.

use std::io::{self, Write};

use latency_tables::{Correction, Failure, Fingerprint, LatencyTable, Method};
use serde::Serialize;

use super::{display_value, relative_spread};

/// Counts of a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Counts {
    /// Entries (measured and predicted).
    pub entries: usize,
    /// Entries predicted from the measured keys, not measured.
    pub predicted: usize,
    /// Keys that could not be measured.
    pub failures: usize,
    /// Entries measured while the CPU throttled.
    pub throttled: usize,
    /// Timed runs over all entries (Σ n).
    pub samples: u64,
    /// Adaptive method: entries whose median converged before the last pass.
    pub converged: usize,
    /// Adaptive method: entries that used every pass without converging.
    pub max_passes: usize,
    /// Keys re-measured after a canary drift.
    pub remeasured_keys: usize,
    /// Re-measurements in all (a cool-down each).
    pub remeasurements: u64,
    /// The largest canary drift at a check that released keys (`median / baseline − 1`).
    pub canary_drift_max: Option<f64>,
    /// Median over entries of the 95% interval's half-width of the median, relative (where
    /// the entries have one).
    pub median_ci_half_width: Option<f64>,
}

/// One of the slowest keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlowKey {
    /// The op key.
    pub key: String,
    /// Median (µs).
    pub median: f64,
    /// 10th percentile (µs).
    pub p10: f64,
    /// 90th percentile (µs).
    pub p90: f64,
    /// `(p90 − p10) / median`.
    pub relative_spread: f64,
    /// Relative spread of the per-pass medians.
    pub pass_spread: f64,
    /// Timed runs.
    pub n: u64,
    /// Whether throttling was seen while measuring it.
    pub throttled: bool,
}

/// Everything `tables show` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The file.
    pub file: String,
    /// The table's description.
    pub description: Option<String>,
    /// When it was created.
    pub created: Option<String>,
    /// Where it was measured.
    pub fingerprint: Fingerprint,
    /// How it was measured.
    pub method: Method,
    /// The configuration: engine threads, CPUs and the keys' precision, in one line
    /// (`threads 2 on cpus 4,5,6,7, i8 keys`).
    pub configuration: String,
    /// Counts.
    pub counts: Counts,
    /// The affine correction, if any.
    pub correction: Option<Correction>,
    /// How the predicted entries were predicted.
    pub prediction: Option<latency_tables::PredictionFit>,
    /// The slowest keys, slowest first.
    pub slowest: Vec<SlowKey>,
    /// Every failure.
    pub failures: Vec<Failure>,
}

/// What a table's configuration is: engine threads, the CPUs pinned to, the keys' precision.
pub fn configuration(table: &LatencyTable) -> String {
    let fp = &table.fingerprint;
    let cpus: Vec<String> = fp.affinity.iter().map(u32::to_string).collect();
    let on =
        if cpus.is_empty() { "any CPU".to_string() } else { format!("cpus {}", cpus.join(",")) };
    format!("threads {} on {on}, {} keys", fp.threads.max(1), table.precision())
}

fn median_of(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| latency_tables::stats::quantile(&v, 0.5))
}

impl Summary {
    /// Summarises `table` (named `file`) with its `top` slowest keys.
    pub fn new(table: &LatencyTable, file: &str, top: usize) -> Summary {
        let mut slowest: Vec<SlowKey> = table
            .entries()
            .map(|e| SlowKey {
                key: e.key.to_string(),
                median: e.median,
                p10: e.p10,
                p90: e.p90,
                relative_spread: relative_spread(e),
                pass_spread: e.pass_spread,
                n: e.n,
                throttled: e.throttled,
            })
            .collect();
        slowest.sort_by(|a, b| b.median.total_cmp(&a.median).then_with(|| a.key.cmp(&b.key)));
        slowest.truncate(top);
        let stopped = |why| table.entries().filter(|e| e.stopped == Some(why)).count();
        Summary {
            file: file.to_string(),
            description: table.description.clone(),
            created: table.created.clone(),
            fingerprint: table.fingerprint.clone(),
            method: table.method.clone(),
            configuration: configuration(table),
            counts: Counts {
                entries: table.len(),
                predicted: table.predicted_len(),
                failures: table.failures().count(),
                throttled: table.entries().filter(|e| e.throttled).count(),
                samples: table.entries().map(|e| e.n).sum(),
                remeasured_keys: table.entries().filter(|e| e.remeasured > 0).count(),
                remeasurements: table.entries().map(|e| u64::from(e.remeasured)).sum(),
                canary_drift_max: table
                    .entries()
                    .filter_map(|e| e.canary_drift)
                    .max_by(|a, b| a.abs().total_cmp(&b.abs())),
                converged: stopped(latency_tables::Stopped::Converged),
                max_passes: stopped(latency_tables::Stopped::MaxPasses),
                median_ci_half_width: median_of(
                    table
                        .entries()
                        .filter_map(latency_tables::Entry::median_ci_half_width)
                        .collect(),
                ),
            },
            correction: table.correction.clone(),
            prediction: table.prediction.clone(),
            slowest,
            failures: table.failures().cloned().collect(),
        }
    }

    /// Writes the summary for people.
    pub fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        let list = |v: &[u32]| {
            if v.is_empty() {
                "(none)".to_string()
            } else {
                v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            }
        };
        let fp = &self.fingerprint;
        writeln!(out, "file:        {}", self.file)?;
        writeln!(out, "description: {}", opt(&self.description))?;
        writeln!(out, "created:     {}", opt(&self.created))?;
        writeln!(out, "config:      {}", self.configuration)?;
        writeln!(out, "device:")?;
        writeln!(out, "  cpu model: {}", opt(&fp.cpu_model))?;
        writeln!(out, "  target:    {}", opt(&fp.target))?;
        writeln!(out, "  libc:      {}", opt(&fp.libc))?;
        writeln!(out, "  profile:   {}", opt(&fp.profile))?;
        writeln!(
            out,
            "  tract:     {}{}",
            opt(&fp.tract_version),
            if fp.tract_multithread { " (multithread)" } else { "" }
        )?;
        writeln!(out, "  threads:   {}", fp.threads)?;
        writeln!(out, "  affinity:  {}", list(&fp.affinity))?;
        writeln!(out, "  os:        {}", opt(&fp.os))?;
        writeln!(out, "  kernel:    {}", opt(&fp.kernel))?;
        writeln!(out, "  agent:     {}", opt(&fp.agent_version))?;
        if fp.clusters.is_empty() {
            writeln!(out, "  clusters:  (none)")?;
        }
        for c in &fp.clusters {
            let max = c.max_khz.map_or_else(|| "?".to_string(), |k| format!("{} MHz", k / 1000));
            writeln!(
                out,
                "  cluster:   cpus {} governor {} max {}",
                list(&c.cpus),
                opt(&c.governor),
                max
            )?;
        }
        for (k, v) in &fp.android {
            writeln!(out, "  android:   {k} = {v}")?;
        }
        let method = serde_json::to_value(&self.method).unwrap_or_default();
        let fields: Vec<String> = match &method {
            serde_json::Value::Object(m) => {
                m.iter().map(|(k, v)| format!("{k}={}", display_value(v))).collect()
            }
            other => vec![display_value(other)],
        };
        writeln!(out, "method:      {}", fields.join(" "))?;
        let c = &self.counts;
        writeln!(
            out,
            "counts:      {} entries ({} measured, {} predicted), {} failures, {} throttled, {} samples",
            c.entries,
            c.entries - c.predicted,
            c.predicted,
            c.failures,
            c.throttled,
            c.samples
        )?;
        if let Some(p) = &self.prediction {
            for k in &p.kinds {
                writeln!(
                    out,
                    "prediction:  {:<5} {} measured, {} predicted, {} features, held-out RMSPE {:.1}% (median |error| {:.1}%)",
                    k.kind,
                    k.measured,
                    k.predicted,
                    k.features,
                    100.0 * k.rmspe,
                    100.0 * k.median_abs_error
                )?;
            }
        }
        let drift = c.canary_drift_max.map_or_else(
            || "no canary".to_string(),
            |d| format!("largest canary drift {:+.1}%", 100.0 * d),
        );
        writeln!(
            out,
            "thermal:     {drift}; {} keys re-measured after a canary drift ({} re-measurements, beyond ±{}%); {} keys flagged throttled (CPU frequency drop, thermal limit, or a canary that did not come back)",
            c.remeasured_keys,
            c.remeasurements,
            100.0 * self.method.canary_threshold,
            c.throttled
        )?;
        if self.method.adaptive() {
            writeln!(
                out,
                "adaptive:    {} keys converged (95% interval of the median within ±{}%), {} used all {} passes",
                c.converged,
                100.0 * self.method.ci_target,
                c.max_passes,
                self.method.passes
            )?;
        }
        if let Some(h) = c.median_ci_half_width {
            writeln!(out, "precision:   median 95% interval of a key's median ±{:.2}%", 100.0 * h)?;
        }
        match &self.correction {
            Some(k) => writeln!(
                out,
                "correction:  T = {} · Σ + {} µs (fitted on {} networks)",
                k.scale, k.offset_us, k.samples
            )?,
            None => writeln!(out, "correction:  (none)")?,
        }
        if !self.slowest.is_empty() {
            let w = self.slowest.iter().map(|s| s.key.len()).max().unwrap_or(0).max(3);
            writeln!(out, "slowest {} keys:", self.slowest.len())?;
            writeln!(
                out,
                "  {:<w$}  {:>12}  {:>12}  {:>12}  {:>7}  {:>11}",
                "key", "median µs", "p10 µs", "p90 µs", "spread", "pass_spread"
            )?;
            for s in &self.slowest {
                writeln!(
                    out,
                    "  {:<w$}  {:>12.3}  {:>12.3}  {:>12.3}  {:>6.2}%  {:>10.2}%{}",
                    s.key,
                    s.median,
                    s.p10,
                    s.p90,
                    100.0 * s.relative_spread,
                    100.0 * s.pass_spread,
                    if s.throttled { "  throttled" } else { "" }
                )?;
            }
        }
        if !self.failures.is_empty() {
            writeln!(out, "failures:")?;
            for f in &self.failures {
                writeln!(out, "  {}: {} ({} attempts)", f.key, f.error, f.attempts)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latency_tables::{Cluster, Entry, LatencyStats};

    #[test]
    fn summary_counts_and_orders_the_slowest() {
        let fp = Fingerprint {
            cpu_model: Some("Cortex-A53".into()),
            clusters: vec![Cluster {
                cpus: vec![0, 1, 2, 3],
                governor: Some("performance".into()),
                max_khz: Some(1_800_000),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut t = LatencyTable::new(fp, Method::default());
        for (k, m, throttled) in [
            ("pool/7x7x1280", 30.0, false),
            ("fc/1x1x1280/o1001", 200.0, true),
            ("stem/224x224x3/o32/k3/s2/relu", 900.0, false),
        ] {
            let stats = LatencyStats::from_samples(&[m * 0.9, m, m * 1.1]).unwrap();
            t.insert(Entry::new(k.parse().unwrap(), stats, 0.01, throttled));
        }
        t.insert_failure(Failure {
            key: "head/7x7x320/o1280/relu".parse().unwrap(),
            error: "out of memory".into(),
            attempts: 2,
        });
        let s = Summary::new(&t, "t.json", 2);
        let counts = Counts {
            entries: 3,
            predicted: 0,
            failures: 1,
            throttled: 1,
            samples: 9,
            remeasured_keys: 0,
            remeasurements: 0,
            canary_drift_max: None,
            converged: 0,
            max_passes: 0,
            median_ci_half_width: None,
        };
        assert_eq!(s.counts, counts);
        let keys: Vec<&str> = s.slowest.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, ["stem/224x224x3/o32/k3/s2/relu", "fc/1x1x1280/o1001"]);
        assert!((s.slowest[0].relative_spread - 0.16).abs() < 1e-9);
        let mut text = Vec::new();
        s.write_text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("cpu model: Cortex-A53"), "{text}");
        assert!(text.contains("cpus 0,1,2,3 governor performance max 1800 MHz"), "{text}");
        assert!(text.contains("runs=30"), "{text}");
        assert!(text.contains("head/7x7x320/o1280/relu: out of memory (2 attempts)"), "{text}");
        assert!(!text.contains("pool/7x7x1280"), "only the top 2: {text}");
    }
}
