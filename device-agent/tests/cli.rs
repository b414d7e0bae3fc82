//! The `device-agent` binary as an engineer runs it (these respect the cargo target runner, so
//! they also run under qemu for the aarch64 build).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use latency_tables::journal::{Journal, Record};
use latency_tables::{LatencyTable, OpKey, Plan};

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_device-agent"))
}

/// A fast method; the canary runs but never triggers a cool-down (timings this short are noisy).
const QUICK: &[&str] = &[
    "--warmup-runs",
    "2",
    "--warmup-secs",
    "0",
    "--runs",
    "3",
    "--pass-secs",
    "0.05",
    "--canary-every",
    "3",
    "--canary-threshold",
    "100",
    "--cooldown-secs",
    "0",
    "--passes",
    "3",
];

fn write_plan(dir: &Path, keys: &[&str]) -> std::path::PathBuf {
    let keys: Vec<OpKey> = keys.iter().map(|k| k.parse().unwrap()).collect();
    let path = dir.join("plan.json");
    std::fs::write(&path, Plan::new(None, Some(224), keys).to_json()).unwrap();
    path
}

#[test]
fn info_is_json_with_a_fingerprint() {
    let out = agent().arg("info").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fp: latency_tables::Fingerprint = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fp.tract_version.as_deref(), Some("0.23.9"));
    assert_eq!(fp.threads, 1);
    assert!(!fp.affinity.is_empty());
    assert!(fp.target.is_some() && fp.libc.is_some() && fp.profile.is_some());
}

#[test]
fn bench_writes_a_valid_table_with_the_method_used() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path(), &["pool/7x7x64", "fc/1x1x64/o10"]);
    let out = dir.path().join("t.json");
    let o = agent()
        .args(["bench", "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(&out)
        .args(QUICK)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["measured"], 2);
    let table = LatencyTable::load(&out).unwrap();
    assert_eq!(table.len(), 2);
    assert_eq!(table.method.passes, 3);
    assert_eq!(table.method.canary_every, 3);
    for e in table.entries() {
        assert!(e.median > 0.0 && e.min <= e.median && e.n >= 3, "{e:?}");
    }
}

#[test]
fn bench_resume_after_a_kill_loses_nothing_and_measures_nothing_twice() {
    let keys: Vec<String> = (1..=8)
        .map(|c| format!("ib/14x14x{0}/o{0}/k3/s1/e{1}/se0/relu/res", c * 8, c * 24))
        .collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    // Kill points spread over the run (a time-derived seed varies them between CI runs).
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
            as u64;
    for round in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        let plan = write_plan(dir.path(), &keys);
        let out = dir.path().join("t.json");
        let journal = Journal::path_for(&out);
        let mut child = agent()
            .args(["bench", "--plan"])
            .arg(&plan)
            .arg("--out")
            .arg(&out)
            .args(QUICK)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the journal has some results, then a little longer, then kill -9.
        let start = Instant::now();
        let want = 1 + ((seed >> (round * 8)) % 12) as usize;
        while start.elapsed() < Duration::from_secs(120) {
            let lines = std::fs::read_to_string(&journal).map(|s| s.lines().count()).unwrap_or(0);
            if lines > want || child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().ok();
        child.wait().unwrap();
        let before = std::fs::read_to_string(&journal).unwrap();
        let kept: Vec<&str> =
            before.split_inclusive('\n').filter(|l| l.ends_with('\n')).map(str::trim_end).collect();
        let o = agent()
            .args(["bench", "--resume", "--plan"])
            .arg(&plan)
            .arg("--out")
            .arg(&out)
            .args(QUICK)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let after = std::fs::read_to_string(&journal).unwrap();
        // Every complete record from before the kill is still there, in order.
        assert!(kept.len() >= 2, "killed before any result was journaled");
        for (a, b) in kept.iter().zip(after.lines()) {
            assert_eq!(*a, b);
        }
        // Exactly one record per (key, pass): nothing lost, nothing twice.
        let records = Journal::<Record>::read(&journal).unwrap().records;
        let mut seen = std::collections::BTreeSet::new();
        for r in &records {
            if let Record::Pass { key, pass, .. } = r {
                assert!(seen.insert((key.to_string(), *pass)), "{key} pass {pass} measured twice");
            }
        }
        assert_eq!(seen.len(), keys.len() * 3, "round {round}");
        assert_eq!(LatencyTable::load(&out).unwrap().len(), keys.len());
    }
}

#[test]
fn bench_model_times_any_onnx_file() {
    let dir = tempfile::tempdir().unwrap();
    let key: OpKey = "ib/28x28x16/o24/k5/s2/e48/se16/hswish".parse().unwrap();
    let model = dir.path().join("m.onnx");
    std::fs::write(&model, latency_tables::onnx::op_bytes(&key, 3).unwrap()).unwrap();
    let o = agent().arg("bench-model").arg(&model).args(QUICK).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["stats"]["median"].as_f64().unwrap() > 0.0);
    assert_eq!(v["units"], "us");
    let o = agent().arg("bench-model").arg(dir.path().join("missing.onnx")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.onnx"));
}

#[test]
fn bad_plan_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, "{\"count\": 1, \"keys\": [\"ib/1x1\"]}").unwrap();
    let o = agent()
        .args(["bench", "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(dir.path().join("t.json"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("plan.json:1:") && err.contains("ib/1x1"), "{err}");
}
