//! The measurement method (`measurement.md` §5): warm-up, batched timed samples, a canary that
//! detects drift, and throttling flags.
//!
//! One *pass* measures a list of keys once each. Results are released in groups: after every
//! `canary_every` keys the canary block is re-timed; when it drifted beyond
//! `canary_threshold` from its baseline, the agent pauses `cooldown_secs` and re-measures the
//! keys since the last good canary before releasing them. Callers run `method.passes` passes
//! in rotated order and merge the samples (`latency_tables::journal::Collected`).

use std::time::Instant;

use anyhow::{Context, Result};
use latency_tables::{onnx, Method, Network, OpKey};

use crate::engine::{Engine, Runnable};
use crate::sysinfo;

/// The fixed canary block: one MBConv at 56×56.
pub const CANARY: &str = "ib/56x56x24/o24/k3/s1/e72/se0/relu/res";

/// Settings of the agent beyond the table's method.
#[derive(Debug, Clone)]
pub struct Placement {
    /// CPUs the measuring thread is pinned to (sampled for throttling).
    pub cpus: Vec<u32>,
    /// A thermal zone at or above this temperature flags a measurement.
    pub thermal_limit_c: f64,
}

pub use latency_tables::Timing;

/// Samples an adaptive pass takes at least before its interval is trusted.
pub const MIN_CI_SAMPLES: usize = 16;
/// Samples between the adaptive checks of the interval (each sorts the samples).
const CI_CHECK_EVERY: usize = 4;

/// Whether the 95% interval of the samples' median is within `target` (relative half-width).
fn median_known(samples: &[f64], target: f64) -> bool {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    latency_tables::stats::median_ci_relative(&v).is_some_and(|h| h <= target)
}

/// Warm-up then timed samples of one prepared model, by `method`.
///
/// Warm-up: at least `warmup_runs` runs and `warmup_secs`. Then each sample averages `batch`
/// back-to-back runs, with `batch` chosen so a sample lasts at least `min_sample_secs`; samples
/// are taken until there are at least `runs` runs and `pass_secs` seconds — or, by the
/// adaptive method, at least `runs` runs and [`MIN_CI_SAMPLES`] samples whose median's 95%
/// interval is within `ci_target`, at most `pass_secs`.
pub fn time_runnable(
    r: &mut dyn Runnable,
    method: &Method,
    placement: &Placement,
) -> Result<Timing> {
    let before = sysinfo::sample(&placement.cpus);
    let start = Instant::now();
    let mut warm = 0u32;
    while warm < method.warmup_runs.max(1) || start.elapsed().as_secs_f64() < method.warmup_secs {
        r.run()?;
        warm += 1;
    }
    let per_run = start.elapsed().as_secs_f64() / f64::from(warm);
    let batch = ((method.min_sample_secs / per_run.max(1e-9)).ceil() as u32).clamp(1, 1_000_000);
    let mut samples_us = Vec::new();
    // u64: `runs + batch` cannot overflow however long `pass_secs` keeps the loop going.
    let mut runs = 0u64;
    let timed = Instant::now();
    loop {
        let enough_runs = runs >= u64::from(method.runs.max(1));
        // Fixed: both minimums met. Adaptive: `pass_secs` is the budget, the interval decides.
        if enough_runs && timed.elapsed().as_secs_f64() >= method.pass_secs {
            break;
        }
        if method.adaptive()
            && enough_runs
            && samples_us.len() >= MIN_CI_SAMPLES
            && samples_us.len() % CI_CHECK_EVERY == 0
            && median_known(&samples_us, method.ci_target)
        {
            break;
        }
        let t = Instant::now();
        for _ in 0..batch {
            r.run()?;
        }
        samples_us.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(batch));
        runs += u64::from(batch);
    }
    let after = sysinfo::sample(&placement.cpus);
    Ok(Timing {
        samples_us,
        batch,
        throttled: sysinfo::throttled(&before, &after, placement.thermal_limit_c),
        ..Timing::default()
    })
}

/// Builds `key` as ONNX, prepares it and times it.
pub fn time_key(
    engine: &dyn Engine,
    key: &OpKey,
    method: &Method,
    placement: &Placement,
) -> Result<Timing> {
    let bytes = onnx::op_bytes(key, method.seed).with_context(|| format!("building {key}"))?;
    let shape = [1, key.cin as usize, key.h as usize, key.w as usize];
    let mut r = engine
        .prepare(&bytes, Some(&shape), method.seed)
        .with_context(|| format!("preparing {key}"))?;
    time_runnable(r.as_mut(), method, placement).with_context(|| format!("running {key}"))
}

/// Builds a whole network and times it with every pass of the method back to back; `beat` is
/// called after the build and after every pass with the passes done.
pub fn time_network(
    engine: &dyn Engine,
    net: &Network,
    method: &Method,
    placement: &Placement,
    beat: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<Timing> {
    let bytes = onnx::network_bytes(net, method.seed)?;
    let shape = net.input_shape().map(|(h, w, c)| [1, c as usize, h as usize, w as usize]);
    let mut r = engine.prepare(&bytes, shape.as_ref().map(|s| &s[..]), method.seed)?;
    beat(0)?;
    time_model(r.as_mut(), method, placement, beat)
}

/// Times a prepared model with every pass of the method back to back (samples concatenated);
/// `beat` is called after every pass with the passes done.
pub fn time_model(
    r: &mut dyn Runnable,
    method: &Method,
    placement: &Placement,
    beat: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<Timing> {
    let mut all = Timing { batch: 1, ..Timing::default() };
    for pass in 0..method.passes.max(1) {
        let t = time_runnable(r, method, placement)?;
        all.samples_us.extend(t.samples_us);
        all.batch = t.batch;
        all.throttled |= t.throttled;
        beat(u64::from(pass) + 1)?;
    }
    Ok(all)
}

/// The canary: prepared once, re-timed between groups of keys, compared with its baseline.
pub struct Canary {
    runnable: Box<dyn Runnable>,
    baseline_us: Option<f64>,
    /// How many times a drift was detected (and keys re-measured).
    pub drifts: u32,
}

impl std::fmt::Debug for Canary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canary")
            .field("baseline_us", &self.baseline_us)
            .field("drifts", &self.drifts)
            .finish()
    }
}

impl Canary {
    /// Prepares the canary block.
    pub fn new(engine: &dyn Engine, method: &Method) -> Result<Canary> {
        let key: OpKey = CANARY.parse()?;
        let bytes = onnx::op_bytes(&key, method.seed)?;
        let shape = [1, key.cin as usize, key.h as usize, key.w as usize];
        Ok(Canary {
            runnable: engine.prepare(&bytes, Some(&shape), method.seed)?,
            baseline_us: None,
            drifts: 0,
        })
    }

    /// The canary's method: the same warm-up, a quarter of the timed budget.
    fn method(method: &Method) -> Method {
        Method {
            pass_secs: method.pass_secs / 4.0,
            runs: method.runs.div_ceil(2),
            ..method.clone()
        }
    }

    /// Times the canary; its drift from the baseline, `median / baseline − 1` (the first
    /// timing becomes the baseline: drift 0). Within `canary_threshold` is good.
    pub fn check(&mut self, method: &Method, placement: &Placement) -> Result<f64> {
        let median =
            time_runnable(self.runnable.as_mut(), &Self::method(method), placement)?.median();
        match self.baseline_us {
            None => {
                self.baseline_us = Some(median);
                Ok(0.0)
            }
            Some(base) => Ok(median / base - 1.0),
        }
    }

    /// The baseline median in µs.
    pub fn baseline_us(&self) -> Option<f64> {
        self.baseline_us
    }
}

/// Runs one pass over `keys`, calling `emit` for every key's result in order. Results are
/// released after each good canary (see the module docs). At most `max_redos` re-measurements
/// per group; after that the group is released with `throttled` set.
///
/// `beat` is called after every key timed, after every canary and at least once a second of a
/// cool-down, with the keys timed so far (re-measurements included): the server turns it into
/// `Progress` messages, so the host can time out per message instead of per group.
pub fn run_pass(
    engine: &dyn Engine,
    keys: &[OpKey],
    method: &Method,
    placement: &Placement,
    canary: &mut Option<Canary>,
    emit: &mut dyn FnMut(&OpKey, Result<Timing>) -> Result<()>,
    beat: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<()> {
    const MAX_REDOS: u32 = 3;
    let group =
        if method.canary_every == 0 { keys.len().max(1) } else { method.canary_every as usize };
    let mut timed = 0u64;
    if let Some(c) = canary.as_mut() {
        if c.baseline_us.is_none() {
            c.check(method, placement)?;
            beat(timed)?;
        }
    }
    for chunk in keys.chunks(group) {
        let mut redos = 0;
        loop {
            let mut results: Vec<(OpKey, Result<Timing>)> = Vec::with_capacity(chunk.len());
            for k in chunk {
                results.push((k.clone(), time_key(engine, k, method, placement)));
                timed += 1;
                beat(timed)?;
            }
            let drift = match canary.as_mut() {
                Some(c) if method.canary_every > 0 => {
                    let drift = c.check(method, placement)?;
                    beat(timed)?;
                    Some(drift)
                }
                _ => None,
            };
            let good = drift.is_none_or(|d| d.abs() <= method.canary_threshold);
            if good || redos >= MAX_REDOS {
                for (key, mut res) in results {
                    if let Ok(t) = &mut res {
                        t.throttled |= !good;
                        t.redos = redos;
                        t.canary_drift = drift;
                    }
                    emit(&key, res)?;
                }
                break;
            }
            redos += 1;
            if let Some(c) = canary.as_mut() {
                c.drifts += 1;
            }
            warn_line(&format!(
                "canary drifted beyond {:.0}%: cooling down {:.0} s and re-measuring {} keys",
                method.canary_threshold * 100.0,
                method.cooldown_secs,
                chunk.len()
            ));
            // No re-baselining: the canary must come back to its first value. The cool-down
            // is slept a second at a time, with a heartbeat after each.
            let mut left = method.cooldown_secs.max(0.0);
            loop {
                let slice = left.min(1.0);
                engine.cool_down(slice);
                beat(timed)?;
                left -= slice;
                if left <= 0.0 {
                    break;
                }
            }
        }
    }
    Ok(())
}

pub use latency_tables::journal::rotated;

/// A message for people, on stderr (hidden by `-q`).
pub fn log_line(msg: &str) {
    log::info!("device-agent: {msg}");
}

/// A warning for people, on stderr (shown even with `-q`).
pub fn warn_line(msg: &str) {
    log::warn!("device-agent: {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::FakeEngine;
    use std::time::Duration;

    fn quick() -> Method {
        Method {
            warmup_runs: 2,
            runs: 5,
            pass_secs: 0.01,
            min_sample_secs: 0.0005,
            passes: 2,
            canary_every: 2,
            ..Method::instant()
        }
    }

    fn placement() -> Placement {
        Placement { cpus: vec![0], thermal_limit_c: 200.0 }
    }

    #[test]
    fn timing_meets_the_run_and_time_minimums() {
        let engine = FakeEngine::default();
        let key: OpKey = "pool/7x7x64".parse().unwrap();
        let m = quick();
        let t = time_key(&engine, &key, &m, &placement()).unwrap();
        assert!(t.samples_us.len() as u32 * t.batch >= m.runs);
        assert!(t.samples_us.iter().all(|&s| s > 0.0));
        assert!(t.batch >= 1);
    }

    #[test]
    fn an_adaptive_pass_stops_when_the_median_is_known() {
        let engine = FakeEngine::default();
        let key: OpKey = "pool/7x7x64".parse().unwrap();
        // The fixed method would sample for 3 s (thousands of 0.5 ms samples); a busy-wait's
        // median is known within 5% after the minimum.
        let m = Method { pass_secs: 3.0, ci_target: 0.05, ..quick() };
        let t = time_key(&engine, &key, &m, &placement()).unwrap();
        let n = t.samples_us.len();
        assert!((MIN_CI_SAMPLES..MIN_CI_SAMPLES + 200).contains(&n), "{n} samples");
        let mut v = t.samples_us.clone();
        v.sort_by(f64::total_cmp);
        assert!(latency_tables::stats::median_ci_relative(&v).unwrap() <= 0.05);
    }

    #[test]
    fn a_pass_emits_every_key_once_in_order_with_failures_as_errors() {
        let engine = FakeEngine { ns_per_byte: 0.01, fail_modulo: 0 };
        let keys: Vec<OpKey> =
            ["pool/7x7x64", "fc/1x1x64/o10", "head/7x7x8/o16/relu", "pool/7x7x8", "pool/3x3x8"]
                .iter()
                .map(|k| k.parse().unwrap())
                .collect();
        let mut canary = Some(Canary::new(&engine, &quick()).unwrap());
        let mut seen = Vec::new();
        run_pass(
            &engine,
            &keys,
            &quick(),
            &placement(),
            &mut canary,
            &mut |k, r| {
                seen.push((k.clone(), r.is_ok()));
                Ok(())
            },
            &mut |_| Ok(()),
        )
        .unwrap();
        assert_eq!(seen.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), keys);
        assert!(seen.iter().all(|(_, ok)| *ok));
        let failing = FakeEngine { ns_per_byte: 0.01, fail_modulo: 1 };
        let mut errors = 0;
        run_pass(
            &failing,
            &keys[..2],
            &quick(),
            &placement(),
            &mut None,
            &mut |_, r| {
                errors += usize::from(r.is_err());
                Ok(())
            },
            &mut |_| Ok(()),
        )
        .unwrap();
        assert_eq!(errors, 2);
    }

    /// An engine whose models all slow down 3× while `slow` is above 0; each canary-sized
    /// timing decrements it, so the machine "cools down" after a few checks.
    struct Drifting {
        slow: std::sync::Arc<std::sync::atomic::AtomicU32>,
    }

    struct DriftingRun {
        slow: std::sync::Arc<std::sync::atomic::AtomicU32>,
    }

    impl Runnable for DriftingRun {
        fn run(&mut self) -> Result<()> {
            let factor =
                if self.slow.load(std::sync::atomic::Ordering::SeqCst) > 0 { 3 } else { 1 };
            let start = Instant::now();
            while start.elapsed() < Duration::from_micros(200 * factor) {
                std::hint::spin_loop();
            }
            Ok(())
        }
        fn infer(&mut self, _: &[f32]) -> Result<Vec<f32>> {
            Ok(vec![])
        }
    }

    impl Engine for Drifting {
        fn describe(&self) -> String {
            "drifting".into()
        }
        fn prepare(&self, _: &[u8], _: Option<&[usize]>, _: u64) -> Result<Box<dyn Runnable>> {
            Ok(Box::new(DriftingRun { slow: self.slow.clone() }))
        }
        fn cool_down(&self, _: f64) {
            self.slow.store(0, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_drifting_canary_causes_a_cool_down_and_a_re_measurement() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let slow = std::sync::Arc::new(AtomicU32::new(0));
        let engine = Drifting { slow: slow.clone() };
        let m = Method { canary_threshold: 0.5, ..quick() };
        let mut canary = Some(Canary::new(&engine, &m).unwrap());
        canary.as_mut().unwrap().check(&m, &placement()).unwrap(); // baseline while fast
        slow.store(1, Ordering::SeqCst); // the device heats up
        let keys: Vec<OpKey> = ["pool/7x7x64", "pool/7x7x32", "pool/7x7x16"]
            .iter()
            .map(|k| k.parse().unwrap())
            .collect();
        let mut emitted = Vec::new();
        let mut redone = 0;
        let mut beats = 0;
        let slow2 = slow.clone();
        run_pass(
            &engine,
            &keys,
            &m,
            &placement(),
            &mut canary,
            &mut |k, r| {
                let t = r.unwrap();
                // What the canary that released it saw.
                assert!(t.canary_drift.is_some_and(|d| d.abs() <= 0.5) && !t.throttled, "{t:?}");
                redone += t.redos;
                emitted.push((k.clone(), t.median()));
                // Cooling happened before release: timings released are the fast ones.
                assert_eq!(slow2.load(Ordering::SeqCst), 0);
                Ok(())
            },
            &mut |_| {
                beats += 1;
                Ok(())
            },
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(emitted.len(), keys.len(), "every key released exactly once");
        assert!(canary.unwrap().drifts >= 1);
        assert!(redone >= 2, "the first group's two keys say they were measured again");
        // A heartbeat per key timed (re-measurements too), per canary and per cool-down.
        assert!(beats >= 2 * keys.len(), "{beats} heartbeats");
    }

    #[test]
    fn rotation_moves_every_key() {
        let keys: Vec<OpKey> = (1..=6).map(|c| format!("pool/7x7x{c}").parse().unwrap()).collect();
        assert_eq!(rotated(&keys, 0, 3), keys);
        assert_eq!(rotated(&keys, 1, 3)[0], keys[2]);
        assert_eq!(rotated(&keys, 2, 3)[0], keys[4]);
        assert_eq!(rotated(&keys, 2, 3).len(), 6);
    }
}
