//! `tunas profile` against real agents over real transports: the thin smoke layer over the
//! in-process fault suite (`faults.rs`). The same keys over local, TCP and a serial pty, the
//! host killed with SIGKILL and resumed, garbage on a serial line, bad input, and validation.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use latency_tables::journal::{Journal, Record};
use latency_tables::{LatencyTable, OpKey, Plan};

/// A fast method: timings are meaningless, the plumbing is what is tested.
const QUICK: &[&str] = &[
    "--warmup-runs",
    "1",
    "--warmup-secs",
    "0",
    "--runs",
    "2",
    "--pass-secs",
    "0.02",
    "--canary-every",
    "4",
    "--canary-threshold",
    "100",
    "--cooldown-secs",
    "0",
    "--passes",
    "3",
];

/// A fast method for whole networks (one pass, two runs).
const QUICK_NETWORKS: &[&str] = &[
    "--warmup-runs",
    "1",
    "--warmup-secs",
    "0",
    "--runs",
    "2",
    "--pass-secs",
    "0",
    "--passes",
    "1",
];

fn keys() -> Vec<String> {
    (1..=8).map(|c| format!("ib/14x14x{0}/o{0}/k3/s1/e{1}/se0/relu/res", c * 8, c * 24)).collect()
}

fn plan(dir: &Path) -> PathBuf {
    let keys: Vec<OpKey> = keys().iter().map(|k| k.parse().unwrap()).collect();
    let path = dir.join("plan.json");
    std::fs::write(&path, Plan::new(None, None, keys).to_json()).unwrap();
    path
}

fn tunas() -> Command {
    tests::command("tunas")
}

fn profile(dir: &Path, device: &str, extra: &[&str]) -> (std::process::Output, PathBuf) {
    let out = dir.join(format!("t{}.json", dir.read_dir().unwrap().count()));
    let o = tunas()
        .args(["profile", "--plan"])
        .arg(plan(dir))
        .args(["--device", device, "--out"])
        .arg(&out)
        .args(QUICK)
        .args(extra)
        .output()
        .unwrap();
    (o, out)
}

/// Every (key, pass) exactly once in the journal, and the table complete.
fn check_complete(out: &Path) {
    let records = Journal::<Record>::read(&Journal::path_for(out)).unwrap().records;
    let mut seen = BTreeSet::new();
    for r in &records {
        if let Record::Pass { key, pass, .. } = r {
            assert!(
                seen.insert((key.to_string(), *pass)),
                "{key} pass {pass} is in the journal twice"
            );
        }
    }
    assert_eq!(seen.len(), keys().len() * 3);
    let table = LatencyTable::load(out).unwrap();
    assert_eq!(table.len(), keys().len());
    assert_eq!(table.failures().count(), 0);
}

fn ok(o: &std::process::Output) {
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn table_keys(path: &Path) -> Vec<String> {
    LatencyTable::load(path).unwrap().entries().map(|e| e.key.to_string()).collect()
}

struct Killer(Vec<Child>);

impl Drop for Killer {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A socat pseudo-terminal pair; returns the two paths once both exist.
fn socat_pair(dir: &Path, guard: &mut Killer) -> (String, String) {
    let (a, b) = (dir.join("ttyA"), dir.join("ttyB"));
    let child = Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", a.display()))
        .arg(format!("pty,raw,echo=0,link={}", b.display()))
        .stderr(Stdio::null())
        .spawn()
        .expect("socat is needed for the serial tests (bash scripts/setup.sh installs it)");
    guard.0.push(child);
    let start = Instant::now();
    while !(a.exists() && b.exists()) {
        assert!(start.elapsed() < Duration::from_secs(10), "socat did not create the pty pair");
        std::thread::sleep(Duration::from_millis(20));
    }
    (a.display().to_string(), b.display().to_string())
}

fn serve_serial(path: &str, guard: &mut Killer) {
    let child = tests::command("device-agent")
        .args(["serve", "--serial", path])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    guard.0.push(child);
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn local_tcp_and_serial_pty_produce_the_same_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (o, local) = profile(dir.path(), "local", &[]);
    ok(&o);
    check_complete(&local);

    let mut guard = Killer(vec![]);
    let (a, b) = socat_pair(dir.path(), &mut guard);
    serve_serial(&a, &mut guard);
    let (o, serial) =
        profile(dir.path(), &format!("serial:{b}?baud=115200"), &["--key-timeout", "10"]);
    ok(&o);
    check_complete(&serial);
    assert_eq!(table_keys(&serial), table_keys(&local));

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    guard.0.push(
        tests::command("device-agent")
            .args(["serve", "--once", "--tcp", &addr])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let (o, tcp) = profile(dir.path(), &format!("tcp:{addr}"), &[]);
    ok(&o);
    check_complete(&tcp);
    assert_eq!(table_keys(&tcp), table_keys(&local));
}

#[test]
fn a_host_killed_mid_run_resumes_without_loss_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path());
    let out = dir.path().join("t.json");
    let journal = Journal::path_for(&out);
    let mut child = tunas()
        .args(["profile", "--plan"])
        .arg(&plan)
        .args(["--device", "local", "--out"])
        .arg(&out)
        .args(QUICK)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let lines = std::fs::read_to_string(&journal).map(|s| s.lines().count()).unwrap_or(0);
        if lines > 6 || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before: Vec<String> = std::io::BufReader::new(std::fs::File::open(&journal).unwrap())
        .lines()
        .map_while(Result::ok)
        .filter(|l| serde_json::from_str::<Record>(l).is_ok())
        .collect();
    assert!(before.len() > 6, "the host was killed before it journaled anything");
    let o = tunas()
        .args(["profile", "--resume", "--plan"])
        .arg(&plan)
        .args(["--device", "local", "--out"])
        .arg(&out)
        .args(QUICK)
        .output()
        .unwrap();
    ok(&o);
    let after: Vec<String> =
        std::fs::read_to_string(&journal).unwrap().lines().map(String::from).collect();
    assert_eq!(&after[..before.len()], &before[..], "journaled results changed on resume");
    check_complete(&out);
}

#[test]
fn garbage_on_the_serial_line_is_rejected_and_re_requested() {
    let dir = tempfile::tempdir().unwrap();
    let mut guard = Killer(vec![]);
    let script = tests::workspace_root().join("scripts/noisy_relay.py");
    let mut relay = Command::new(tests::python())
        .arg(&script)
        .args(["--p", "0.08", "--seed", "3", "--seconds", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(relay.stdout.take().unwrap()).lines();
    let a = lines.next().unwrap().unwrap();
    let b = lines.next().unwrap().unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    guard.0.push(relay);
    serve_serial(&a, &mut guard);
    let (o, out) = profile(
        dir.path(),
        &format!("serial:{b}"),
        &["--key-timeout", "1", "--max-restarts", "100", "--max-attempts", "20"],
    );
    ok(&o);
    check_complete(&out);
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    // An agent of another protocol version.
    let old = tests::workspace_root().join("tests/fixtures/old_agent.py");
    let device = format!("exec:{} {}", tests::python(), old.display());
    let (o, _) = profile(dir.path(), &device, &["--max-restarts", "0"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    let ours = format!("this host speaks version {}", latency_tables::PROTOCOL_VERSION);
    assert!(err.contains("protocol version 99") && err.contains(&ours), "{err}");

    // A journal with a damaged line in the middle: the line is dropped and reported, the
    // damaged file kept aside, and the resumed run completes (the journal's method is used).
    let (o, out) = profile(dir.path(), "local", &[]);
    ok(&o);
    let journal = Journal::path_for(&out);
    let mut text = std::fs::read_to_string(&journal).unwrap();
    let second = text.find('\n').unwrap() + 1;
    text.insert_str(second, "{\"type\":\"pass\",\"key\":\n");
    std::fs::write(&journal, &text).unwrap();
    let o = tunas()
        .args(["profile", "--resume", "--plan"])
        .arg(plan(dir.path()))
        .args(["--device", "local", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("1 damaged line(s) dropped (line 2;"), "{err}");
    let mut damaged = journal.as_os_str().to_owned();
    damaged.push(".damaged");
    assert_eq!(std::fs::read_to_string(damaged).unwrap(), text);
    check_complete(&out);

    // An existing journal without --resume.
    let (o, _) = profile(dir.path(), "local", &[]);
    ok(&o);
    let again = tunas()
        .args(["profile", "--plan"])
        .arg(plan(dir.path()))
        .args(["--device", "local", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));

    // Unknown transport.
    let o = tunas()
        .args(["profile", "--plan"])
        .arg(plan(dir.path()))
        .args(["--device", "usb:3", "--out", "x.json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown transport \"usb:3\""));
}

#[test]
fn validate_measures_whole_networks_stores_a_correction_and_resumes() {
    use latency_tables::{Entry, Fingerprint, LatencyStats, Method};
    let dir = tempfile::tempdir().unwrap();
    // A synthetic table over the whole proxylessnas plan (values ∝ MACs), so every sampled
    // architecture can be predicted; the networks themselves are really measured.
    let space = host::space::SearchSpace::by_name("proxylessnas").unwrap();
    let mut table = LatencyTable::new(Fingerprint::default(), Method::default());
    for key in space.plan(224) {
        let us = 5.0 + key.macs() as f64 / 2e3;
        table.insert(Entry::new(key, LatencyStats::from_samples(&[us]).unwrap(), 0.0, false));
    }
    let path = dir.path().join("t.json");
    table.save(&path).unwrap();
    let args = |p: &Path| {
        let mut c = tunas();
        c.args(["tables", "validate"]).arg(p).args([
            "--space",
            "proxylessnas",
            "--device",
            "local",
            "--samples",
            "3",
        ]);
        c.args(QUICK_NETWORKS);
        c
    };
    let o = args(&path).output().unwrap();
    ok(&o);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("3 architectures of proxylessnas")
            && text.contains("RMSPE")
            && text.contains("Kendall"),
        "{text}"
    );
    let stored = LatencyTable::load(&path).unwrap().correction.expect("a correction is stored");
    assert_eq!(stored.samples, 3);
    let journal = dir.path().join("t.json.validate.journal");
    assert_eq!(std::fs::read_to_string(&journal).unwrap().lines().count(), 3);
    // A second run reuses the journal: nothing is measured again.
    let o = args(&path).output().unwrap();
    ok(&o);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("validate 1/3"), "measured again");
    assert_eq!(std::fs::read_to_string(&journal).unwrap().lines().count(), 3);
}

#[test]
fn costmodel_fit_eval_and_use_over_a_real_agent() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.json");
    // Small networks (64×64) and a fast method: the plumbing is what is tested.
    let quick: Vec<&str> =
        ["--space", "proxylessnas", "--device", "local", "--resolution", "64", "--json"]
            .into_iter()
            .chain(QUICK_NETWORKS.iter().copied())
            .collect();
    let o = tunas()
        .args(["costmodel", "fit", "--samples", "8", "--folds", "2", "--out"])
        .arg(&model)
        .args(&quick)
        .output()
        .unwrap();
    ok(&o);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let networks = report["networks"].as_u64().unwrap();
    assert!(networks >= 8, "{report}");
    assert_eq!(report["held_out"]["n"].as_u64(), Some(networks));
    assert_eq!(report["features"], 144);
    let mut journal = model.as_os_str().to_owned();
    journal.push(".journal");
    assert_eq!(std::fs::read_to_string(&journal).unwrap().lines().count() as u64, networks);
    // The model predicts new networks, and loads wherever a latency model does.
    let o = tunas()
        .args(["costmodel", "eval"])
        .arg(&model)
        .args(["--samples", "3"])
        .args(&quick)
        .output()
        .unwrap();
    ok(&o);
    let eval: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(eval["networks"], 3);
    assert!(eval["within_10"].as_f64().is_some(), "{eval}");
    let o = tunas()
        .args(["latency", "--space", "proxylessnas", "--arch", "proxylessnas-mobile"])
        .args(["--resolution", "64", "--latency"])
        .arg(&model)
        .output()
        .unwrap();
    ok(&o);
    let ms: f64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    assert!(ms > 0.0);
    assert!(String::from_utf8_lossy(&o.stderr).contains("held-out RMSPE"));
    // At another resolution than it was fitted at, it is refused by name.
    let o = tunas()
        .args(["latency", "--space", "proxylessnas", "--arch", "proxylessnas-mobile", "--latency"])
        .arg(&model)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("fitted at 64×64"));
}

#[test]
fn int8_keys_at_one_and_two_threads_make_one_table_per_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.json");
    let o = tunas()
        .args(["profile", "--space", "proxylessnas", "--arch", "proxylessnas-mobile"])
        .args(["--resolution", "64", "--precision", "i8", "--threads", "1,2"])
        .args(["--device", "local", "--out"])
        .arg(&out)
        .args(QUICK)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.exists(), "several configurations write one table each, not OUT itself");
    for threads in [1, 2] {
        let path = dir.path().join(format!("q.t{threads}.json"));
        let t = LatencyTable::load(&path).unwrap();
        assert_eq!((t.method.threads, t.fingerprint.threads), (threads, threads));
        assert_eq!(t.precision(), latency_tables::Precision::I8);
        assert!(t.failures().next().is_none(), "{:?}", t.failures().collect::<Vec<_>>());
        assert!(t.entries().all(|e| e.key.to_string().ends_with("/i8") && e.median > 0.0));
    }
    let o = tunas()
        .args(["tables", "diff"])
        .arg(dir.path().join("q.t1.json"))
        .arg(dir.path().join("q.t2.json"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("threads efficiency") && text.contains("  ib "), "{text}");
}
