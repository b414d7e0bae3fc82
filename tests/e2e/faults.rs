//! The fault-injection suite, in-process: `host::profile` drives the agent's real protocol
//! server (`device_agent::serve`, fake engine) on threads behind in-memory links, and the faults
//! are injected into the bytes the agent writes, by frame count, so every case is deterministic:
//! agents killed mid-run, a host killed mid-run and resumed (with a torn journal line), frames
//! corrupted, results and `Done` lost, an agent that refuses the method, mixed hardware, and
//! a group of keys that takes longer than the timeout (kept alive by heartbeats).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use device_agent::engine::FakeEngine;
use device_agent::measure::Placement;
use host::device::memory::MemoryLink;
use host::device::Link;
use host::profile::{profile, ProfileOptions};
use latency_tables::frame::{encode_frame, Decoder};
use latency_tables::journal::{Journal, Record};
use latency_tables::{Fingerprint, LatencyTable, Method, OpKey};

fn keys() -> Vec<OpKey> {
    (1..=8)
        .map(|c| {
            format!("ib/14x14x{0}/o{0}/k3/s1/e{1}/se0/relu/res", c * 8, c * 24).parse().unwrap()
        })
        .collect()
}

fn quick() -> Method {
    Method { runs: 2, passes: 3, canary_every: 4, canary_threshold: 100.0, ..Method::instant() }
}

fn options(method: Method) -> ProfileOptions {
    ProfileOptions {
        group: method.canary_every.max(1) as usize,
        method,
        resume: false,
        allow_mixed: false,
        key_timeout: Duration::from_secs(2),
        max_attempts: 50,
        max_restarts: 50,
        progress: false,
    }
}

/// What the agent's writer does to frame number `n` (counted per session, from 0).
#[derive(Clone, Copy, PartialEq)]
enum Fate {
    Send,
    /// Flip a payload byte: the host's decoder rejects it by its CRC.
    Corrupt,
    /// Never sent.
    Drop,
    /// The agent dies before sending it.
    Die,
}

/// The agent's output stream, re-framed so faults hit whole frames.
struct Faulty<'a> {
    inner: &'a mut dyn Write,
    decoder: Decoder,
    frames: usize,
    fate: &'a (dyn Fn(usize, &[u8]) -> Fate + Send + Sync),
}

impl Write for Faulty<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.decoder.push(buf);
        while let Some(payload) = self.decoder.next_frame() {
            let n = self.frames;
            self.frames += 1;
            let mut bytes = encode_frame(&payload);
            match (self.fate)(n, &payload) {
                Fate::Send => {}
                Fate::Corrupt => {
                    let at = bytes.len() - 2;
                    bytes[at] ^= 0x20;
                }
                Fate::Drop => continue,
                Fate::Die => return Err(std::io::ErrorKind::BrokenPipe.into()),
            }
            self.inner.write_all(&bytes)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

type FateFn = dyn Fn(usize, usize, &[u8]) -> Fate + Send + Sync;

/// An agent (the real server, fake engine) behind an in-memory link; `fate(session, frame,
/// payload)` decides what happens to each frame it writes.
fn agent(name: &str, fingerprint: Fingerprint, fate: Arc<FateFn>) -> Arc<dyn Link> {
    agent_with(name, fingerprint, FakeEngine { ns_per_byte: 0.001, fail_modulo: 0 }, fate)
}

fn agent_with(
    name: &str,
    fingerprint: Fingerprint,
    engine: FakeEngine,
    fate: Arc<FateFn>,
) -> Arc<dyn Link> {
    Arc::new(MemoryLink::new(name, move |session, input: &mut dyn Read, output: &mut dyn Write| {
        let fate = fate.clone();
        let per_frame = move |n: usize, payload: &[u8]| fate(session, n, payload);
        let mut out =
            Faulty { inner: output, decoder: Decoder::new(), frames: 0, fate: &per_frame };
        let placement = Placement { cpus: vec![], thermal_limit_c: 1000.0 };
        // An agent that dies just stops serving: its streams close.
        let _ = device_agent::serve::serve(&engine, &fingerprint, &placement, input, &mut out);
    }))
}

fn healthy(name: &str) -> Arc<dyn Link> {
    agent(name, Fingerprint::default(), Arc::new(|_, _, _| Fate::Send))
}

fn is_result(payload: &[u8]) -> bool {
    let text = String::from_utf8_lossy(payload);
    text.contains(r#""type":"measured""#)
}

/// Every (key, pass) exactly once in the journal, and the table complete.
fn check_complete(out: &Path) -> Vec<Record> {
    let records = Journal::<Record>::read(&Journal::path_for(out)).unwrap().records;
    let mut seen = BTreeSet::new();
    for r in &records {
        if let Record::Pass { key, pass, .. } = r {
            assert!(seen.insert((key.to_string(), *pass)), "{key} pass {pass} journaled twice");
        }
    }
    assert_eq!(seen.len(), keys().len() * 3);
    let table = LatencyTable::load(out).unwrap();
    assert_eq!(table.len(), keys().len());
    assert_eq!(table.failures().count(), 0);
    records
}

#[test]
fn agents_killed_mid_run_are_reconnected_and_nothing_is_measured_twice() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.json");
    // Sessions 0–3 die after 2, 5, 3 and 7 frames; later sessions are healthy.
    let link = agent(
        "dying",
        Fingerprint::default(),
        Arc::new(|session, n, _| match [2, 5, 3, 7].get(session) {
            Some(&life) if n >= life => Fate::Die,
            _ => Fate::Send,
        }),
    );
    let s = profile(&keys(), &[link], &out, &options(quick())).unwrap();
    check_complete(&out);
    assert!(s.restarts >= 3, "{} restarts", s.restarts);
    assert_eq!(s.received_now, keys().len() * 3);
}

#[test]
fn a_host_killed_mid_run_resumes_from_a_torn_journal_without_loss_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.json");
    // Every session of this agent dies after 14 frames (a group and a half: hello, heartbeats,
    // results), and the host gives up quickly: the run
    // stops with part of the work journaled, as a killed host leaves it.
    let mortal = agent(
        "mortal",
        Fingerprint::default(),
        Arc::new(|_, n, _| if n >= 14 { Fate::Die } else { Fate::Send }),
    );
    let opts = ProfileOptions { max_restarts: 2, ..options(quick()) };
    let err = profile(&keys(), &[mortal], &out, &opts).unwrap_err();
    assert!(format!("{err:#}").contains("--resume"), "{err:#}");
    let journal = Journal::path_for(&out);
    let before = std::fs::read_to_string(&journal).unwrap();
    assert!(before.lines().count() > 3, "nothing was journaled:\n{before}");
    // The host was killed in the middle of a write.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .unwrap()
        .write_all(br#"{"type":"pass","key":"ib/14x14x8/o8/k3"#)
        .unwrap();
    // Without --resume the journal is refused, with it the run completes.
    let err = profile(&keys(), &[healthy("a")], &out, &options(quick())).unwrap_err();
    assert!(format!("{err:#}").contains("--resume"), "{err:#}");
    let resumed = ProfileOptions { resume: true, ..options(quick()) };
    let s = profile(&keys(), &[healthy("a")], &out, &resumed).unwrap();
    check_complete(&out);
    let after = std::fs::read_to_string(&journal).unwrap();
    assert!(after.starts_with(&before), "journaled results changed on resume");
    assert_eq!(s.received_now + before.lines().count() - 1, keys().len() * 3);
    // Resuming a complete journal measures nothing.
    let s = profile(&keys(), &[healthy("a")], &out, &resumed).unwrap();
    assert_eq!(s.received_now, 0);
}

#[test]
fn corrupted_and_lost_frames_are_re_requested() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.json");
    // Every 5th frame corrupted, every 7th result lost, and the first `Done` of session 0 lost
    // (the host times out and reconnects).
    let link = agent(
        "noisy",
        Fingerprint::default(),
        Arc::new(|session, n, payload| {
            let text = String::from_utf8_lossy(payload);
            if session == 0 && text.contains(r#""type":"done""#) {
                Fate::Drop
            } else if n % 5 == 4 {
                Fate::Corrupt
            } else if n % 7 == 6 && is_result(payload) {
                Fate::Drop
            } else {
                Fate::Send
            }
        }),
    );
    let opts = ProfileOptions { key_timeout: Duration::from_millis(500), ..options(quick()) };
    let s = profile(&keys(), &[link], &out, &opts).unwrap();
    check_complete(&out);
    assert!(s.restarts >= 2, "{} restarts", s.restarts);
}

#[test]
fn heartbeats_keep_a_group_longer_than_the_timeout_alive() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.json");
    // 8 keys of ≥ 60 ms each in one group (≥ 0.5 s) against a 0.3 s silence limit: without a
    // heartbeat after every key this times out on every attempt.
    let method = Method { pass_secs: 0.06, passes: 1, canary_every: 8, ..quick() };
    let opts = ProfileOptions {
        key_timeout: Duration::from_millis(300),
        max_attempts: 1,
        max_restarts: 0,
        ..options(method)
    };
    let s = profile(&keys(), &[healthy("slow")], &out, &opts).unwrap();
    assert_eq!((s.measured, s.restarts), (keys().len(), 0));
}

#[test]
fn an_agent_refusing_the_method_is_given_up_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.json");
    // A host that skipped its own check: the agent checks too.
    let method = Method { runs: 0, ..quick() };
    let err = profile(&keys(), &[healthy("strict")], &out, &options(method)).unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("--runs") && err.contains("refusing the method"), "{err}");
}

#[test]
fn a_fleet_shards_keys_and_refuses_mixed_hardware() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.json");
    let s = profile(&keys(), &[healthy("a"), healthy("b")], &out, &options(quick())).unwrap();
    check_complete(&out);
    assert_eq!(s.received_now, keys().len() * 3);
    let other = Fingerprint { cpu_model: Some("Other CPU".into()), ..Fingerprint::default() };
    let odd = agent("odd", other, Arc::new(|_, _, _| Fate::Send));
    let out = dir.path().join("mixed.json");
    let err = profile(&keys(), &[healthy("a"), odd.clone()], &out, &options(quick())).unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("different hardware") && err.contains("cpu_model"), "{err}");
    std::fs::remove_file(Journal::path_for(&out)).unwrap();
    let mixed = ProfileOptions { allow_mixed: true, ..options(quick()) };
    profile(&keys(), &[healthy("a"), odd], &out, &mixed).unwrap();
    check_complete(&out);
}

#[test]
fn an_agent_that_cannot_build_its_canary_refuses_instead_of_measuring_blind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.json");
    // The fake engine refuses models whose size is a multiple of the canary's: the canary, and
    // no key measured here.
    let canary: OpKey = device_agent::measure::CANARY.parse().unwrap();
    let size = latency_tables::onnx::op_bytes(&canary, 0).unwrap().len();
    let keys: Vec<OpKey> = keys()
        .into_iter()
        .filter(|k| latency_tables::onnx::op_bytes(k, 0).unwrap().len() % size != 0)
        .collect();
    assert!(keys.len() >= 4);
    let engine = FakeEngine { ns_per_byte: 0.001, fail_modulo: size };
    let link =
        agent_with("no-canary", Fingerprint::default(), engine, Arc::new(|_, _, _| Fate::Send));
    let err = profile(&keys, &[link], &out, &options(quick())).unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("canary block") && err.contains("--canary-every 0"), "{err}");
}

#[test]
fn fuzz_a_damaged_journal_resumes_to_a_complete_table_keeping_every_intact_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut stream = latency_tables::onnx::SeededWeights::new(3);
    let mut next = move || stream.next_u64();
    const GARBAGE: &[u8] = &[0x00, 0x01, 0x1B, 0xFF, b'\n'];
    for case in 0..10 {
        let out = dir.path().join(format!("t{case}.json"));
        profile(&keys(), &[healthy("a")], &out, &options(quick())).unwrap();
        let journal = Journal::path_for(&out);
        let clean = std::fs::read(&journal).unwrap();
        // Garbage at a random byte, then a random truncation.
        let mut bytes = clean.clone();
        let at = (next() % bytes.len() as u64) as usize;
        bytes.insert(at, GARBAGE[(next() % GARBAGE.len() as u64) as usize]);
        let cut = at + (next() % (bytes.len() - at) as u64) as usize;
        bytes.truncate(cut.max(at + 1));
        std::fs::write(&journal, &bytes).unwrap();
        let resumed = ProfileOptions { resume: true, ..options(quick()) };
        profile(&keys(), &[healthy("a")], &out, &resumed).unwrap();
        let records = check_complete(&out);
        // Every record whose line lies wholly before the damage is still there.
        let intact = clean[..at].iter().filter(|&&b| b == b'\n').count();
        let before: Vec<Record> = clean
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        for r in &before[..intact] {
            assert!(records.contains(r), "case {case}: lost {r:?}");
        }
    }
}
