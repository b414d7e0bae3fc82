//! The `tunas` binary as a user runs it: outputs, exit codes and error messages.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn tunas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunas")).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn space_list_prints_the_paper_cardinalities() {
    let o = tunas(&["space", "list"]);
    assert!(o.status.success());
    let text = stdout(&o);
    for (name, card) in [
        ("proxylessnas ", "2.16e21"),
        ("proxylessnas-enlarged", "1.39e28"),
        ("mobilenet-v3-like", "8.48e42"),
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        assert!(line.contains(card), "{line}");
    }
}

#[test]
fn space_show_lists_decisions_and_reference_architectures() {
    let o = tunas(&["space", "show", "proxylessnas-enlarged"]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(text.contains("73 decisions, 1.39e28 architectures"), "{text}");
    assert!(text.contains(" 72  head/filters"), "{text}");
    assert!(text.contains("0=512 1=640 2=768 3=1024 4=1280 5=1536 6=2048"), "{text}");
    for r in ["proxylessnas-mobile", "mobilenet-v2", "mnasnet-b1"] {
        assert!(text.contains(r), "{r} missing");
    }
    let o = tunas(&["space", "show", "mobilenet-v3-like", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["decisions"].as_array().unwrap().len(), 86);
}

#[test]
fn latency_of_the_reference_models_with_the_pixel1_model() {
    for (space, arch, expected) in [
        ("proxylessnas", "proxylessnas-mobile", "84.416"),
        ("proxylessnas-enlarged", "mobilenet-v2", "77.222"),
        ("proxylessnas-enlarged", "mnasnet-b1", "84.512"),
    ] {
        let o = tunas(&["latency", "--space", space, "--arch", arch, "--latency", "pixel1"]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stdout(&o).trim(), expected, "{space} {arch}");
    }
}

#[test]
fn latency_breakdown_and_json_agree() {
    let o = tunas(&[
        "latency",
        "--space",
        "proxylessnas",
        "--arch",
        "proxylessnas-mobile",
        "--breakdown",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let total = v["latency_ms"].as_f64().unwrap();
    let sum: f64 =
        v["breakdown"].as_array().unwrap().iter().map(|r| r["ms"].as_f64().unwrap()).sum();
    assert!((total - 84.416241).abs() < 1e-5 && (sum - total).abs() < 1e-9);
}

#[test]
fn architectures_as_json_and_as_files() {
    let indices = "0:0:0:1:0:0:0:0:0:0:0:1:0:0:1:0:2:0:0:0:0:0:1:0:0:1:0:0:0:2:1:0:1:0:0:1:0:0:1:0:0:0:1:1:0:1:0:0:1:0:0:1:0:0:0:2:1:0:2:1:0:2:0:0:2:0:0:0:2:1:0:0:0";
    let json = format!("{{\"space\": \"proxylessnas\", \"indices\": \"{indices}\"}}");
    let o = tunas(&["latency", "--space", "proxylessnas", "--arch", &json]);
    assert_eq!(stdout(&o).trim(), "84.416", "{}", stderr(&o));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("arch.json");
    let list: Vec<usize> = indices.split(':').map(|s| s.parse().unwrap()).collect();
    std::fs::write(&path, serde_json::to_string(&list).unwrap()).unwrap();
    let o = tunas(&["latency", "--space", "proxylessnas", "--arch", path.to_str().unwrap()]);
    assert_eq!(stdout(&o).trim(), "84.416", "{}", stderr(&o));
}

#[test]
fn bad_input_is_one_clear_line_and_exit_code_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["latency", "--space", "nasnet", "--arch", "0"], "unknown search space \"nasnet\""),
        (&["latency", "--space", "proxylessnas", "--arch", "0:1:x"], "\"x\" at position 2 is not a non-negative integer"),
        (&["latency", "--space", "proxylessnas", "--arch", "0:1:2"], "proxylessnas has 73 decisions, the architecture gives 3 indices"),
        (
            &["latency", "--space", "proxylessnas", "--arch", "0:0:0:1:5:0:0:0:0:0:0:1:0:0:1:0:2:0:0:0:0:0:1:0:0:1:0:0:0:2:1:0:1:0:0:1:0:0:1:0:0:0:1:1:0:1:0:0:1:0:0:1:0:0:0:2:1:0:2:1:0:2:0:0:2:0:0:0:2:1:0:0:0"],
            "decision 4 (block2/layer0/expansion): index 5 is out of range 0..=1",
        ),
        (&["latency", "--space", "proxylessnas", "--arch", "mobilenet-v2"], "reference name: proxylessnas-mobile"),
        (&["latency", "--space", "proxylessnas", "--arch", "proxylessnas-mobile", "--model", "/nonexistent.json"], "/nonexistent.json"),
    ];
    for (args, needle) in cases {
        let o = tunas(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = stderr(&o);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(err.trim().lines().count() <= 2, "{args:?}: not one clear line: {err}");
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn non_finite_timeouts_and_oversized_plans_are_errors_not_panics() {
    // Both used to panic in Duration::from_secs_f64 (exit code 101).
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "tables",
                "validate",
                "t.json",
                "--space",
                "proxylessnas",
                "--device",
                "local",
                "--timeout",
                "inf",
            ],
            "'--timeout <TIMEOUT>': expected a finite number in (0, 86400]",
        ),
        (
            &[
                "profile",
                "--space",
                "proxylessnas",
                "--device",
                "local",
                "--out",
                "t.json",
                "--key-timeout",
                "NaN",
            ],
            "'--key-timeout <KEY_TIMEOUT>': expected a finite number in (0, 86400]",
        ),
        (
            &[
                "profile",
                "--space",
                "proxylessnas",
                "--device",
                "local",
                "--out",
                "t.json",
                "--pass-secs",
                "inf",
            ],
            "'--pass-secs <PASS_SECS>'",
        ),
    ];
    for (args, needle) in cases {
        let o = tunas(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = stderr(&o);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("typo.json");
    let key = "stem/100000x100000x3/o32/k3/s2/relu";
    std::fs::write(&plan, format!("{{\"count\": 1, \"keys\": [\"{key}\"]}}")).unwrap();
    let out = dir.path().join("t.json");
    let plan_arg = plan.to_str().unwrap();
    let out_arg = out.to_str().unwrap();
    let o = tunas(&["profile", "--plan", plan_arg, "--device", "local", "--out", out_arg]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("typo.json") && err.contains(key) && err.contains("4096"), "{err}");
    assert!(!out.exists());
}

#[test]
fn plan_counts_for_every_space() {
    for (space, count) in
        [("proxylessnas", 73), ("proxylessnas-enlarged", 1651), ("mobilenet-v3-like", 7584)]
    {
        let o = tunas(&["plan", "--space", space]);
        assert!(o.status.success());
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["count"], count, "{space}");
        assert_eq!(v["keys"].as_array().unwrap().len(), count);
        assert!(stderr(&o).contains(&format!("{count} distinct op keys")));
    }
    let o = tunas(&["plan", "--space", "proxylessnas", "--resolution", "160"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["keys"].as_array().unwrap().iter().any(|k| k == "stem/160x160x3/o32/k3/s2/relu"));
}

#[test]
fn measured_table_latency_and_missing_keys() {
    use latency_tables::{Entry, Fingerprint, LatencyStats, LatencyTable, Method, Plan};
    let dir = tempfile::tempdir().unwrap();
    let o = tunas(&["plan", "--space", "proxylessnas"]);
    let plan: Plan = serde_json::from_slice(&o.stdout).unwrap();
    let mut table = LatencyTable::new(Fingerprint::default(), Method::default());
    for key in plan.keys.iter().skip(1) {
        table.insert(Entry::new(
            key.clone(),
            LatencyStats::from_samples(&[1000.0]).unwrap(),
            0.0,
            false,
        ));
    }
    let path = dir.path().join("t.json");
    table.save(&path).unwrap();
    // The first plan key (fc) is missing: every architecture needs it.
    let o = tunas(&[
        "latency",
        "--space",
        "proxylessnas",
        "--arch",
        "proxylessnas-mobile",
        "--latency",
        path.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("has no entry for 1 key(s)")
            && stderr(&o).contains(plan.keys[0].to_string().as_str()),
        "{}",
        stderr(&o)
    );
    table.insert(Entry::new(
        plan.keys[0].clone(),
        LatencyStats::from_samples(&[1000.0]).unwrap(),
        0.0,
        false,
    ));
    table.save(&path).unwrap();
    let o = tunas(&[
        "latency",
        "--space",
        "proxylessnas",
        "--arch",
        "proxylessnas-mobile",
        "--model",
        path.to_str().unwrap(),
    ]);
    // 24 layers × 1 ms.
    assert_eq!(stdout(&o).trim(), "24.000", "{}", stderr(&o));
}

#[test]
fn search_writes_a_run_directory_and_resumes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let d = dir.to_str().unwrap();
    let common = [
        "search",
        "--steps",
        "4",
        "--batch-size",
        "8",
        "--width-multiplier",
        "0.1",
        "--validation-size",
        "100",
        "--checkpoint-every",
        "2",
        "--space",
        "mobilenet-v3-like",
        "--out",
        d,
    ];
    // Stopped before step 3 (as Ctrl-C would), then resumed.
    let mut args = common.to_vec();
    args.extend(["--stop-at", "3"]);
    let o = tunas(&args);
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
    let o = tunas(&["search", "--resume", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["space"], "mobilenet-v3-like");
    assert_eq!(report["target_ms"], 57.0);
    assert_eq!(report["indices"].as_str().unwrap().split(':').count(), 86);
    assert!(stderr(&o).contains("one-shot validation accuracy"), "{}", stderr(&o));
    let steps = std::fs::read_to_string(dir.join("steps.jsonl")).unwrap();
    let numbers: Vec<u64> = steps
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, vec![0, 1, 2, 3]);
    for f in ["config.json", "final.json", "latency.svg", "reward.svg", "entropy.svg"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    // Options the run directory already fixes cannot be given with --resume.
    let o = tunas(&["search", "--resume", d, "--seed", "3"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn search_refuses_bad_data_and_incomplete_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let o = tunas(&[
        "search",
        "--data",
        "/no/such/dir",
        "--out",
        tmp.path().join("a").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/no/such/dir"), "{}", stderr(&o));
    // The committed x86 table covers proxylessnas only, not the enlarged space.
    let table = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../latency-tables/data/x86_64-xeon-vm-proxylessnas-224.json"
    );
    let o = tunas(&[
        "search",
        "--space",
        "proxylessnas-enlarged",
        "--latency",
        table,
        "--out",
        tmp.path().join("b").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("lacks") && stderr(&o).contains("tunas profile"), "{}", stderr(&o));
}

#[test]
fn compare_runs_both_methods_and_every_run_reports_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cmp");
    let d = dir.to_str().unwrap();
    let o = tunas(&[
        "compare",
        "--k",
        "1",
        "--n",
        "2",
        "--search-steps",
        "4",
        "--batch-size",
        "8",
        "--width-multiplier",
        "0.1",
        "--validation-size",
        "100",
        "--final-epochs",
        "0.002",
        "--tolerance-ms",
        "3",
        "--out",
        d,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let c: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let methods = c["methods"].as_array().unwrap();
    assert_eq!(methods.len(), 2);
    // Equal compute: 4 supernet steps × 8 images = 2 candidates × 2 steps × 8 images.
    for m in methods {
        assert_eq!(m["search_train_images"]["mean"], 32.0, "{m}");
        let row = &m["rows"][0];
        let t = row["final_result"]["latency_ms"].as_f64().unwrap();
        assert!(t > 0.0);
    }
    let random_t = methods[1]["rows"][0]["final_result"]["latency_ms"].as_f64().unwrap();
    assert!((random_t - 84.0).abs() <= 3.0, "{random_t}");
    for f in ["comparison.json", "comparison.md", "comparison.svg"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    // Every part is a run directory that renders.
    for (sub, marker) in [
        ("", "| TuNAS |"),
        ("search-0", "# TuNAS search"),
        ("random-0", "Acceptance: 2 of"),
        ("final-search-0", "# Stand-alone training"),
        ("final-random-0", "| Validation | Test |"),
    ] {
        let o = tunas(&["report", dir.join(sub).to_str().unwrap()]);
        assert!(o.status.success(), "{sub}: {}", stderr(&o));
        assert!(stdout(&o).contains(marker), "{sub}: {}", stdout(&o));
        assert!(dir.join(sub).join("report.md").exists());
    }
    // Resuming a finished comparison reports it again without training anything.
    let o = tunas(&["compare", "--resume", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("train "), "{}", stderr(&o));
    // Not a run directory.
    let o = tunas(&["report", tmp.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a run directory"), "{}", stderr(&o));
}

#[test]
fn quiet_keeps_the_data_and_drops_the_messages() {
    let normal = tunas(&["plan", "--space", "proxylessnas"]);
    let quiet = tunas(&["-q", "plan", "--space", "proxylessnas"]);
    let after = tunas(&["plan", "--space", "proxylessnas", "--quiet"]);
    assert!(normal.status.success() && quiet.status.success() && after.status.success());
    assert!(stderr(&normal).contains("distinct op keys"), "{}", stderr(&normal));
    assert_eq!(stderr(&quiet), "");
    assert_eq!(stderr(&after), "", "the flag is global: it goes before or after the command");
    assert_eq!(stdout(&normal), stdout(&quiet));
    // Errors are still said.
    let bad = tunas(&["-q", "plan", "--space", "nope"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("nope"), "{}", stderr(&bad));
}
