//! Standalone profiling: `device-agent bench --plan plan.json --out table.json [--resume]`.
//!
//! For an engineer who pushed the binary and a plan to a device by hand. The plan runs through
//! the same driver as `tunas profile` ([`latency_tables::driver`]), with one worker: this
//! device's engine, in this process. Every finished (key, pass) is appended to
//! `table.json.journal` and flushed; `--resume` continues from it and never re-measures what it
//! holds. The table is written atomically at the end.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use latency_tables::driver::{self, Hello, Outcome, Report, Worker, WorkerError};
use latency_tables::{Fingerprint, Method, OpKey, Plan};

use crate::engine::Engine;
use crate::measure::{self, Canary, Placement};

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
    /// Journal lines found damaged and dropped (their keys were measured again).
    pub damaged_lines: usize,
    /// Seconds this run took.
    pub seconds: f64,
    /// Canary drifts seen.
    pub canary_drifts: u32,
}

/// The engine of this process as the driver's worker.
pub struct LocalWorker<'a> {
    engine: &'a dyn Engine,
    fingerprint: Fingerprint,
    placement: &'a Placement,
    canary: Option<Canary>,
    drifts: u32,
}

impl std::fmt::Debug for LocalWorker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalWorker").field("canary", &self.canary).finish()
    }
}

impl<'a> LocalWorker<'a> {
    /// A worker timing with `engine` on `placement`, introducing itself with `fingerprint`.
    pub fn new(engine: &'a dyn Engine, fingerprint: Fingerprint, placement: &'a Placement) -> Self {
        LocalWorker { engine, fingerprint, placement, canary: None, drifts: 0 }
    }
}

impl Worker for LocalWorker<'_> {
    fn describe(&self) -> String {
        "this device".into()
    }

    fn connect(&mut self) -> Result<Hello, WorkerError> {
        Ok(Hello { fingerprint: self.fingerprint.clone(), agent: self.engine.describe() })
    }

    fn measure(
        &mut self,
        pass: u32,
        keys: &[OpKey],
        method: &Method,
        report: &mut Report<'_>,
    ) -> Result<(), WorkerError> {
        let _ = pass;
        if self.canary.is_none() && method.canary_every > 0 {
            self.canary = Some(Canary::new(self.engine, method).map_err(|e| {
                WorkerError::Refused(format!("the canary block could not be built: {e:#}"))
            })?);
        }
        let mut stopped = false;
        let result = measure::run_pass(
            self.engine,
            keys,
            method,
            self.placement,
            &mut self.canary,
            &mut |key, result| {
                let outcome = match result {
                    Ok(t) => Outcome::Measured(t),
                    Err(e) => Outcome::Failed(format!("{e:#}")),
                };
                report(key, outcome).map_err(|_| {
                    stopped = true;
                    anyhow::anyhow!("stopped")
                })
            },
            &mut |_| Ok(()),
        );
        self.drifts = self.canary.as_ref().map_or(0, |c| c.drifts);
        match result {
            Ok(()) => Ok(()),
            Err(_) if stopped => Err(WorkerError::Stopped),
            // Timing the canary failed: nothing on this device can be trusted to continue.
            Err(e) => Err(WorkerError::Refused(format!("{e:#}"))),
        }
    }

    fn disconnect(&mut self, _broken: bool) {}
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
    let plan = Plan::load(plan_path)?;
    let opts = driver::Options {
        group: if method.canary_every == 0 { 8 } else { method.canary_every as usize },
        method,
        resume,
        allow_mixed: false,
        max_attempts: 1,
        max_restarts: 0,
        description: format!("device-agent bench --plan {}", plan_path.display()),
    };
    let mut worker = LocalWorker::new(engine, fingerprint, placement);
    let mut log = console::Log::new("device-agent", "bench");
    let s = driver::run_here(&plan.keys, &mut worker, out, &opts, &mut log)
        .with_context(|| format!("benchmarking {} into {}", plan_path.display(), out.display()))?;
    Ok(Summary {
        out: s.out,
        keys: s.keys,
        measured: s.measured,
        failed: s.failed.len(),
        measured_now: s.received_now,
        damaged_lines: s.damaged_lines,
        seconds: s.seconds,
        canary_drifts: worker.drifts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::FakeEngine;
    use latency_tables::{LatencyTable, OpKey};

    fn quick() -> Method {
        Method { passes: 3, canary_every: 2, ..Method::instant() }
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
