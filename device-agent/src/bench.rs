//! Standalone profiling: `device-agent bench --plan plan.json --out table.json [--resume]`.
//!
//! For an engineer who pushed the binary and a plan to a device by hand. Every finished
//! (key, pass) is appended to `table.json.journal` and flushed; `--resume` continues from it and
//! never re-measures what it holds. The table is written atomically at the end.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use latency_tables::journal::{Collected, Journal, Record};
use latency_tables::{Fingerprint, Method, Plan, SCHEMA_VERSION};

use crate::engine::Engine;
use crate::measure::{self, Canary, Placement};
use latency_tables::progress::Progress;

/// What a finished bench did.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    /// The table written.
    pub out: PathBuf,
    /// Keys in the plan.
    pub keys: usize,
    /// Keys measured.
    pub measured: usize,
    /// Keys that failed.
    pub failed: usize,
    /// (key, pass) pairs measured by this run (not taken from the journal).
    pub measured_now: usize,
    /// Seconds this run took.
    pub seconds: f64,
    /// Canary drifts seen.
    pub canary_drifts: u32,
}

/// Runs the plan by `method`, journaling into `out`'s journal.
pub fn bench(
    engine: &dyn Engine,
    plan_path: &Path,
    out: &Path,
    resume: bool,
    method: Method,
    fingerprint: Fingerprint,
    placement: &Placement,
) -> Result<Summary> {
    let start = Instant::now();
    let plan = Plan::load(plan_path)?;
    let journal_path = Journal::path_for(out);
    let mut collected = Collected::new();
    let (mut journal, method) = if resume && journal_path.exists() {
        let (journal, records) = Journal::resume(&journal_path)?;
        let Some(Record::Header { method: old, keys, .. }) = records.first().cloned() else {
            bail!("{}: no header", journal_path.display());
        };
        if keys != plan.keys.len() {
            bail!(
                "{}: the journal was started for a plan of {keys} keys, {} has {}",
                journal_path.display(),
                plan_path.display(),
                plan.keys.len()
            );
        }
        for r in &records {
            collected.add(r);
        }
        measure::log_line(&format!(
            "resuming {}: {} (key, pass) results already measured",
            journal_path.display(),
            collected.passes_done()
        ));
        (journal, old)
    } else {
        if resume {
            measure::log_line(&format!("no journal at {}: starting fresh", journal_path.display()));
        }
        let header = Record::Header {
            schema_version: SCHEMA_VERSION,
            method: method.clone(),
            fingerprint: Box::new(fingerprint.clone()),
            keys: plan.keys.len(),
        };
        (Journal::create(&journal_path, header)?, method)
    };
    let passes = method.passes.max(1);
    let total = (plan.keys.len() as u64) * u64::from(passes);
    let mut progress = Progress::new("bench", total, collected.passes_done() as u64);
    let mut canary =
        if method.canary_every > 0 { Some(Canary::new(engine, &method)?) } else { None };
    let mut measured_now = 0;
    for pass in 0..passes {
        let todo: Vec<_> = measure::rotated(&plan.keys, pass, passes)
            .into_iter()
            .filter(|k| !collected.has(k, pass) && !collected.failed(k))
            .collect();
        measure::run_pass(engine, &todo, &method, placement, &mut canary, &mut |key, result| {
            let record = match result {
                Ok(t) => Record::Pass {
                    key: key.clone(),
                    pass,
                    samples_us: t.samples_us,
                    batch: t.batch,
                    throttled: t.throttled,
                },
                Err(e) => {
                    let msg = format!("{e:#}");
                    measure::log_line(&format!("{key}: {msg}"));
                    Record::Failed { key: key.clone(), error: msg, attempts: 1 }
                }
            };
            journal.append(&record)?;
            collected.add(&record);
            measured_now += 1;
            progress.advance(1, &key.to_string());
            Ok(())
        })?;
    }
    let mut table = collected.to_table(fingerprint, method);
    table.description = Some(format!("device-agent bench --plan {}", plan_path.display()));
    table.created = Some(latency_tables::table::timestamp());
    table.save(out)?;
    Ok(Summary {
        out: out.to_path_buf(),
        keys: plan.keys.len(),
        measured: table.len(),
        failed: table.failures().count(),
        measured_now,
        seconds: start.elapsed().as_secs_f64(),
        canary_drifts: canary.map_or(0, |c| c.drifts),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::FakeEngine;
    use latency_tables::{LatencyTable, OpKey};

    fn quick() -> Method {
        Method {
            warmup_runs: 1,
            warmup_secs: 0.0,
            runs: 3,
            pass_secs: 0.0,
            min_sample_secs: 0.0,
            passes: 3,
            canary_every: 2,
            cooldown_secs: 0.0,
            ..Method::default()
        }
    }

    fn placement() -> Placement {
        Placement { cpus: vec![], thermal_limit_c: 200.0 }
    }

    #[test]
    fn bench_writes_a_table_and_resume_measures_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<OpKey> =
            (1..=5).map(|c| format!("pool/7x7x{}", c * 8).parse().unwrap()).collect();
        let plan_path = dir.path().join("plan.json");
        std::fs::write(&plan_path, Plan::new(None, None, keys.clone()).to_json()).unwrap();
        let out = dir.path().join("t.json");
        let engine = FakeEngine::default();
        let s =
            bench(&engine, &plan_path, &out, false, quick(), Fingerprint::default(), &placement())
                .unwrap();
        assert_eq!((s.keys, s.measured, s.failed, s.measured_now), (5, 5, 0, 15));
        let table = LatencyTable::load(&out).unwrap();
        assert_eq!(table.len(), 5);
        assert!(table.entries().all(|e| e.n >= 9));
        // Resuming a complete journal measures nothing.
        let s =
            bench(&engine, &plan_path, &out, true, quick(), Fingerprint::default(), &placement())
                .unwrap();
        assert_eq!(s.measured_now, 0);
        // Without --resume an existing journal is refused.
        let err =
            bench(&engine, &plan_path, &out, false, quick(), Fingerprint::default(), &placement())
                .unwrap_err();
        assert!(format!("{err:#}").contains("--resume"), "{err:#}");
    }
}
