//! `tunas tables show|diff|merge` as a user runs it, on small tables built here.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use host::space::SearchSpace;
use latency_tables::{Entry, Failure, Fingerprint, LatencyStats, LatencyTable, Method, OpKey};

fn tunas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunas")).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fingerprint(cpu: &str) -> Fingerprint {
    Fingerprint {
        cpu_model: Some(cpu.into()),
        kernel: Some("6.1.0".into()),
        target: Some("aarch64-unknown-linux-gnu".into()),
        threads: 1,
        ..Default::default()
    }
}

/// A deterministic median per key, in µs.
fn median_us(key: &OpKey) -> f64 {
    100.0 + (key.macs() as f64 / 1e4).round()
}

/// An entry with median `m` and a relative spread of 1.6% (threshold: 5%).
fn entry(key: OpKey, m: f64, n: usize) -> Entry {
    let mut samples = vec![m * 0.99, m, m * 1.01];
    samples.resize(n.max(3), m);
    Entry::new(key, LatencyStats::from_samples(&samples).unwrap(), 0.01, false)
}

/// Every proxylessnas key at 224.
fn full_table(cpu: &str) -> LatencyTable {
    let space = SearchSpace::by_name("proxylessnas").unwrap();
    let mut t = LatencyTable::new(fingerprint(cpu), Method::default());
    t.description = Some("test fixture".into());
    for key in space.plan(224) {
        let m = median_us(&key);
        t.insert(entry(key, m, 3));
    }
    t
}

/// The keys of ProxylessNAS-Mobile, in network order.
fn mobile_keys() -> Vec<OpKey> {
    let space = SearchSpace::by_name("proxylessnas").unwrap();
    let arch = space.parse_arch("proxylessnas-mobile").unwrap();
    space.resolve(&arch, 224).network.layers
}

fn save(dir: &Path, name: &str, t: &LatencyTable) -> PathBuf {
    let path = dir.join(name);
    t.save(&path).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn show_prints_the_slowest_keys_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = full_table("Cortex-A76");
    t.insert_failure(Failure {
        key: "ib/7x7x320/o320/k9/s1/e1920/se0/relu/res".parse().unwrap(),
        error: "engine refused the graph".into(),
        attempts: 3,
    });
    let path = save(dir.path(), "t.json", &t);
    let mut by_median: Vec<&Entry> = t.entries().collect();
    by_median.sort_by(|a, b| b.median.total_cmp(&a.median));
    let o = tunas(&["tables", "show", s(&path), "--top", "3"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("cpu model: Cortex-A76"), "{text}");
    assert!(text.contains("kernel:    6.1.0"), "{text}");
    let counts = "73 entries (73 measured, 0 predicted), 1 failures, 0 throttled, 219 samples";
    assert!(text.contains(counts), "{text}");
    assert!(text.contains("thermal:     no canary; 0 keys re-measured"), "{text}");
    assert!(text.contains("slowest 3 keys:"), "{text}");
    let listed: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("slowest"))
        .skip(2)
        .take(3)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let expected: Vec<String> = by_median[..3].iter().map(|e| e.key.to_string()).collect();
    assert_eq!(listed, expected, "{text}");
    assert!(!text.contains(&format!("  {} ", by_median[3].key)), "only 3 listed: {text}");
    assert!(text.contains("engine refused the graph (3 attempts)"), "{text}");

    let o = tunas(&["tables", "show", s(&path), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["counts"]["entries"], 73);
    assert_eq!(v["slowest"].as_array().unwrap().len(), 10);
    assert_eq!(v["slowest"][0]["key"], expected[0].as_str());
    assert_eq!(v["fingerprint"]["cpu_model"], "Cortex-A76");
    assert_eq!(v["method"]["runs"], 30);
    assert_eq!(v["failures"][0]["error"], "engine refused the graph");

    let o = tunas(&["tables", "show", s(&dir.path().join("nope.json"))]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nope.json"), "{}", stderr(&o));
}

#[test]
fn diff_lists_exactly_the_slowed_keys_and_the_predicted_change() {
    let dir = tempfile::tempdir().unwrap();
    let old = full_table("Cortex-A76");
    let mut new = old.clone();
    new.fingerprint.kernel = Some("6.6.7".into());
    // Slow three keys of ProxylessNAS-Mobile by 20%; nudge every other key by 1% (noise).
    let slowed: Vec<OpKey> = mobile_keys().into_iter().take(3).collect();
    for e in old.entries() {
        let factor = if slowed.contains(&e.key) { 1.2 } else { 1.01 };
        new.insert(entry(e.key.clone(), e.median * factor, 3));
    }
    let old_path = save(dir.path(), "old.json", &old);
    let new_path = save(dir.path(), "new.json", &new);

    let o = tunas(&["tables", "diff", s(&old_path), s(&new_path)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("kernel: 6.1.0 → 6.6.7"), "{text}");
    assert!(text.contains("method: unchanged"), "{text}");
    assert!(
        text.contains(
            "73 common (3 moved, 70 unchanged; 3 moved relative to the systematic shift), 0 only in old, 0 only in new"
        ),
        "{text}"
    );
    // Every other key moved by 1%: the systematic shift, which the three slowed keys exceed.
    assert!(text.contains("systematic: new/old = 1.0100 [1.0100, 1.0100] over 73"), "{text}");
    let moved: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("moved keys"))
        .skip(2)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let mut expected: Vec<String> = slowed.iter().map(OpKey::to_string).collect();
    let mut got: Vec<String> = moved.iter().map(|s| s.to_string()).collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "{text}");
    assert!(text.contains("+20.00%"), "{text}");

    let layers = mobile_keys();
    let old_ms: f64 = layers.iter().map(|k| old.get(k).unwrap().median).sum::<f64>() / 1e3;
    let new_ms: f64 = layers.iter().map(|k| new.get(k).unwrap().median).sum::<f64>() / 1e3;
    let line = text
        .lines()
        .find(|l| l.contains("proxylessnas-mobile"))
        .unwrap_or_else(|| panic!("no prediction for ProxylessNAS-Mobile:\n{text}"));
    assert!(line.contains(&format!("{old_ms:.3}")), "{line} vs {old_ms}");
    assert!(line.contains(&format!("{new_ms:.3}")), "{line} vs {new_ms}");
    let delta = 100.0 * (new_ms - old_ms) / old_ms;
    assert!(line.contains(&format!("{delta:+.2}%")), "{line} vs {delta}");
    assert!(text.lines().any(|l| l.contains("proxylessnas") && l.contains("median")), "{text}");

    let o = tunas(&["tables", "diff", s(&old_path), s(&new_path), "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["keys"]["moved"].as_array().unwrap().len(), 3);
    assert_eq!(v["keys"]["unchanged"], 70);
    assert_eq!(v["fingerprint"][0]["field"], "kernel");
    assert_eq!(v["fingerprint"][0]["new"], "6.6.7");
    assert_eq!(v["spaces"], serde_json::json!(["proxylessnas"]));
    assert_eq!(v["predictions"][0]["architecture"], "proxylessnas-mobile");
    assert!((v["predictions"][0]["old"]["ms"].as_f64().unwrap() - old_ms).abs() < 1e-9);
    assert!((v["predictions"][0]["new"]["ms"].as_f64().unwrap() - new_ms).abs() < 1e-9);

    // Same tables: nothing moved, no fingerprint change, still exit 0.
    let o = tunas(&["tables", "diff", s(&old_path), s(&old_path)]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("fingerprint: unchanged"));
    assert!(stdout(&o).contains("(0 moved, 73 unchanged; 0 moved relative"), "{}", stdout(&o));
    assert!(stdout(&o).contains("no shift of the whole table"), "{}", stdout(&o));
}

#[test]
fn diff_reports_missing_keys_instead_of_a_number() {
    let dir = tempfile::tempdir().unwrap();
    let old = full_table("Cortex-A76");
    let mut new = LatencyTable::new(fingerprint("Cortex-A76"), Method::default());
    let dropped = mobile_keys();
    for e in old.entries().filter(|e| e.key != dropped[0] && e.key != dropped[1]) {
        new.insert(e.clone());
    }
    let old_path = save(dir.path(), "old.json", &old);
    let new_path = save(dir.path(), "new.json", &new);
    // Without --space no space is covered by both.
    let o = tunas(&["tables", "diff", s(&old_path), s(&new_path)]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("no search space is fully covered"), "{}", stdout(&o));
    assert!(stdout(&o).contains("2 only in old"), "{}", stdout(&o));
    let o = tunas(&["tables", "diff", s(&old_path), s(&new_path), "--space", "proxylessnas"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let line = stdout(&o).lines().find(|l| l.contains("proxylessnas-mobile")).unwrap().to_string();
    assert!(line.contains("missing 2 keys"), "{line}");
    let o = tunas(&["tables", "diff", s(&old_path), s(&new_path), "--space", "nasnet"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown search space"), "{}", stderr(&o));
}

#[test]
fn merge_refuses_a_different_cpu_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let keys: std::collections::BTreeSet<OpKey> = mobile_keys().into_iter().collect();
    let mut a = LatencyTable::new(fingerprint("Cortex-A76"), Method::default());
    let mut b = LatencyTable::new(fingerprint("Cortex-A55"), Method::default());
    for (i, k) in keys.iter().enumerate() {
        let t = if i % 2 == 0 { &mut a } else { &mut b };
        t.insert(entry(k.clone(), median_us(k), 3));
    }
    let a_path = save(dir.path(), "a.json", &a);
    let b_path = save(dir.path(), "b.json", &b);
    let out = dir.path().join("out.json");
    let o = tunas(&["tables", "merge", s(&a_path), s(&b_path), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("cpu_model") && err.contains("a.json") && err.contains("b.json"), "{err}");
    assert!(!out.exists());

    let o = tunas(&["tables", "merge", s(&a_path), s(&b_path), "--out", s(&out), "--allow-mixed"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let merged = LatencyTable::load(&out).unwrap();
    assert_eq!(merged.len(), a.len() + b.len());
    assert_eq!(merged.fingerprint, a.fingerprint);
    let desc = merged.description.clone().unwrap();
    assert!(desc.starts_with("merged from ") && desc.contains("a.json, "), "{desc}");
    assert!(stderr(&o).contains("warning: mixing setups"), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("{} keys", merged.len())), "{}", stderr(&o));
}

#[test]
fn merge_conflicts_follow_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let key: OpKey = "pool/7x7x1280".parse().unwrap();
    let other: OpKey = "fc/1x1x1280/o1001".parse().unwrap();
    let mut a = LatencyTable::new(fingerprint("Cortex-A76"), Method::default());
    a.insert(entry(key.clone(), 30.0, 3));
    a.insert(entry(other.clone(), 200.0, 3));
    let mut b = LatencyTable::new(fingerprint("Cortex-A76"), Method::default());
    b.insert(entry(key.clone(), 40.0, 9));
    let a_path = save(dir.path(), "a.json", &a);
    let b_path = save(dir.path(), "b.json", &b);
    let out = dir.path().join("out.json");

    let o = tunas(&[
        "tables",
        "merge",
        s(&a_path),
        s(&b_path),
        "--out",
        s(&out),
        "--on-conflict",
        "error",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("pool/7x7x1280") && err.contains("a.json") && err.contains("b.json"),
        "{err}"
    );
    assert!(!out.exists());

    let o = tunas(&["tables", "merge", s(&a_path), s(&b_path), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let merged = LatencyTable::load(&out).unwrap();
    assert_eq!(merged.get(&key).unwrap().median, 40.0, "more samples wins by default");
    assert_eq!(merged.len(), 2);
    assert!(stderr(&o).contains("1 conflict(s) resolved (more-samples)"), "{}", stderr(&o));

    let o = tunas(&[
        "tables",
        "merge",
        s(&a_path),
        s(&b_path),
        "--out",
        s(&out),
        "--on-conflict",
        "keep-first",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(LatencyTable::load(&out).unwrap().get(&key).unwrap().median, 30.0);

    let o = tunas(&["tables", "merge", s(&a_path), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(2), "one input is not a merge");
}
