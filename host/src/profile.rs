//! The profiling driver: keys × passes → one or more agents → journal → table.
//!
//! Work items are (pass, key), pass-major with the key order rotated per pass. Every device
//! has a thread that takes small groups of items from a shared queue, so keys are sharded
//! across devices dynamically. Every result is appended to the journal (flushed) the moment it
//! arrives, so nothing measured is lost; `--resume` skips what the journal holds. When a link
//! fails (agent killed, pipe closed, frames corrupted, a response times out) the unfinished
//! items go back to the queue, the agent is restarted or reconnected, and each key's attempts
//! are counted; a key that fails `max_attempts` times is recorded as failed, never as 0.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use latency_tables::journal::{Collected, Journal, Record};
use latency_tables::progress::Progress;
use latency_tables::{Fingerprint, LatencyTable, Method, OpKey, SCHEMA_VERSION};

use crate::device::client::{AgentClient, KeyResult};
use crate::device::TransportSpec;

/// Options of a profile.
#[derive(Debug, Clone)]
pub struct ProfileOptions {
    /// The method sent to the agents.
    pub method: Method,
    /// Continue from the journal.
    pub resume: bool,
    /// Allow devices whose fingerprints differ.
    pub allow_mixed: bool,
    /// Longest wait for one key's result.
    pub key_timeout: Duration,
    /// Attempts per key before it is recorded as failed.
    pub max_attempts: u32,
    /// Reconnects/restarts per device before it is given up.
    pub max_restarts: u32,
    /// Items sent per request.
    pub group: usize,
    /// Print progress on stderr.
    pub progress: bool,
}

/// What happened.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProfileSummary {
    /// Keys in the plan.
    pub keys: usize,
    /// Keys measured.
    pub measured: usize,
    /// Keys recorded as failed, with their errors.
    pub failed: Vec<(String, String)>,
    /// (key, pass) results received by this run.
    pub received_now: usize,
    /// Link failures recovered from (restarts and reconnects).
    pub restarts: u32,
    /// Seconds.
    pub seconds: f64,
}

enum Event {
    Result { pass: u32, key: OpKey, result: KeyResult },
    LinkFailed { device: usize, error: String, unfinished: Vec<(u32, OpKey)> },
    Hello { device: usize, fingerprint: Box<Fingerprint>, agent: String },
    Gone { device: usize, error: Option<String> },
}

struct Shared {
    queue: Mutex<VecDeque<(u32, OpKey)>>,
    stop: std::sync::atomic::AtomicBool,
}

/// Profiles `keys` on `devices` into `out` (journal at `out.journal`).
pub fn profile(
    keys: &[OpKey],
    devices: &[TransportSpec],
    out: &Path,
    opts: &ProfileOptions,
) -> Result<ProfileSummary> {
    let start = std::time::Instant::now();
    if devices.is_empty() {
        bail!("no --device given");
    }
    let journal_path = Journal::path_for(out);
    let mut collected = Collected::new();
    let mut header_fp: Option<Fingerprint> = None;
    let (mut journal, method) = if opts.resume && journal_path.exists() {
        let (j, records) = Journal::resume(&journal_path)?;
        let Some(Record::Header { method, fingerprint, keys: n, .. }) = records.first().cloned()
        else {
            bail!("{}: no header", journal_path.display());
        };
        if n != keys.len() {
            bail!(
                "{}: the journal was started for {n} keys, this plan has {}",
                journal_path.display(),
                keys.len()
            );
        }
        for r in &records {
            collected.add(r);
        }
        header_fp = Some(*fingerprint);
        eprintln!(
            "tunas: resuming {}: {} results already measured",
            journal_path.display(),
            collected.passes_done()
        );
        (Some(j), method)
    } else {
        if !opts.resume && journal_path.exists() {
            bail!(
                "{}: a journal already exists: pass --resume to continue it, or remove it",
                journal_path.display()
            );
        }
        (None, opts.method.clone())
    };
    let passes = method.passes.max(1);
    let mut attempts: BTreeMap<OpKey, u32> = BTreeMap::new();
    let mut queue = VecDeque::new();
    for pass in 0..passes {
        for key in latency_tables::journal::rotated(keys, pass, passes) {
            if !collected.has(&key, pass) && !collected.failed(&key) {
                queue.push_back((pass, key));
            }
        }
    }
    let total = keys.len() * passes as usize;
    let already = total - queue.len();
    let shared = Arc::new(Shared {
        queue: Mutex::new(queue),
        stop: std::sync::atomic::AtomicBool::new(false),
    });
    let (tx, rx) = mpsc::channel::<Event>();
    let mut handles = Vec::new();
    for (device, spec) in devices.iter().enumerate() {
        let (spec, shared, tx, method, opts) =
            (spec.clone(), shared.clone(), tx.clone(), method.clone(), opts.clone());
        handles.push(std::thread::spawn(move || {
            device_loop(device, &spec, &shared, &tx, &method, &opts)
        }));
    }
    drop(tx);
    let mut fingerprint = header_fp.clone();
    let mut received_now = 0;
    let mut restarts = 0;
    let mut live = devices.len();
    let mut last_error = None;
    let mut progress =
        opts.progress.then(|| Progress::new("profile", total as u64, already as u64));
    while live > 0 {
        let Ok(event) = rx.recv() else { break };
        match event {
            Event::Hello { device, fingerprint: fp, agent } => {
                match &fingerprint {
                    None => fingerprint = Some((*fp).clone()),
                    Some(first) => {
                        let diff = first.identity_diff(&fp);
                        if !diff.is_empty() && !opts.allow_mixed {
                            let fields: Vec<String> =
                                diff.iter().map(|(f, a, b)| format!("{f}: {a} vs {b}")).collect();
                            shared.stop.store(true, std::sync::atomic::Ordering::SeqCst);
                            bail!(
                                "device {} ({agent}) is different hardware from the first device ({}); refusing to mix them in one table (pass --allow-mixed to override)",
                                devices[device].describe(),
                                fields.join("; ")
                            );
                        }
                    }
                }
                if journal.is_none() {
                    let header = Record::Header {
                        schema_version: SCHEMA_VERSION,
                        method: method.clone(),
                        fingerprint: Box::new(fp.as_ref().clone()),
                        keys: keys.len(),
                    };
                    journal = Some(Journal::create(&journal_path, header)?);
                }
            }
            Event::Result { pass, key, result } => {
                let record = match result {
                    KeyResult::Measured { samples_us, batch, throttled } => {
                        Record::Pass { key: key.clone(), pass, samples_us, batch, throttled }
                    }
                    KeyResult::Failed(error) => {
                        // A key the agent cannot build or run fails the same way every time.
                        Record::Failed { key: key.clone(), error, attempts: 1 }
                    }
                };
                if collected.has(&key, pass) || collected.failed(&key) {
                    continue; // a duplicate after a re-request: already journaled
                }
                if let Some(j) = journal.as_mut() {
                    j.append(&record)?;
                }
                if let Record::Failed { .. } = record {
                    // Drop the key's other passes from the queue.
                    shared
                        .queue
                        .lock()
                        .map_err(|_| anyhow::anyhow!("queue poisoned"))?
                        .retain(|(_, k)| k != &key);
                }
                collected.add(&record);
                received_now += 1;
                if let Some(p) = progress.as_mut() {
                    p.advance(1, &key.to_string());
                }
            }
            Event::LinkFailed { device, error, unfinished } => {
                restarts += 1;
                eprintln!(
                    "tunas: {}: {error}; re-requesting {} items",
                    devices[device].describe(),
                    unfinished.len()
                );
                let mut q = shared.queue.lock().map_err(|_| anyhow::anyhow!("queue poisoned"))?;
                // The device thread has already put these back in the queue.
                for (pass, key) in unfinished {
                    if collected.has(&key, pass) || collected.failed(&key) {
                        continue;
                    }
                    let n = attempts.entry(key.clone()).or_insert(0);
                    *n += 1;
                    if *n >= opts.max_attempts {
                        let record =
                            Record::Failed { key: key.clone(), error: error.clone(), attempts: *n };
                        if let Some(j) = journal.as_mut() {
                            j.append(&record)?;
                        }
                        collected.add(&record);
                        q.retain(|(_, k)| k != &key);
                        eprintln!("tunas: {key}: giving up after {n} attempts: {error}");
                    }
                }
            }
            Event::Gone { device, error } => {
                live -= 1;
                if let Some(e) = error {
                    eprintln!(
                        "tunas: {}: giving up on this device: {e}",
                        devices[device].describe()
                    );
                    last_error = Some(e);
                }
            }
        }
    }
    shared.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for h in handles {
        let _ = h.join();
    }
    let left = shared.queue.lock().map_err(|_| anyhow::anyhow!("queue poisoned"))?.len();
    if left > 0 {
        bail!(
            "{left} (key, pass) items were not measured: every device failed ({}). What was measured is in {}; rerun with --resume",
            last_error.unwrap_or_default(),
            journal_path.display()
        );
    }
    let Some(fingerprint) = fingerprint else {
        bail!("no device answered the handshake ({})", last_error.unwrap_or_default());
    };
    let mut table: LatencyTable = collected.to_table(fingerprint, method);
    table.created = Some(latency_tables::table::timestamp());
    table.description = Some(format!(
        "tunas profile over {}",
        devices.iter().map(TransportSpec::describe).collect::<Vec<_>>().join(", ")
    ));
    table.save(out)?;
    Ok(ProfileSummary {
        keys: keys.len(),
        measured: table.len(),
        failed: table.failures().map(|f| (f.key.to_string(), f.error.clone())).collect(),
        received_now,
        restarts,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// One device: connect, take groups of items of one pass, measure, report; on a link failure
/// hand the group back and reconnect (restarting a spawned agent).
fn device_loop(
    device: usize,
    spec: &TransportSpec,
    shared: &Shared,
    tx: &mpsc::Sender<Event>,
    method: &Method,
    opts: &ProfileOptions,
) {
    let stop = || shared.stop.load(std::sync::atomic::Ordering::SeqCst);
    let mut failures = 0u32;
    let mut greeted = false;
    'connect: while !stop() {
        let mut client = match AgentClient::connect(spec, Duration::from_secs(60)) {
            Ok(c) => c,
            Err(e) => {
                failures += 1;
                if failures > opts.max_restarts {
                    let _ = tx.send(Event::Gone { device, error: Some(format!("{e:#}")) });
                    return;
                }
                std::thread::sleep(Duration::from_millis(200 * u64::from(failures)));
                continue;
            }
        };
        if !greeted {
            greeted = true;
            let _ = tx.send(Event::Hello {
                device,
                fingerprint: Box::new(client.fingerprint.clone()),
                agent: client.agent.clone(),
            });
        }
        loop {
            if stop() {
                client.shutdown();
                break 'connect;
            }
            let group: Vec<(u32, OpKey)> = {
                let Ok(mut q) = shared.queue.lock() else { return };
                let Some(&(pass, _)) = q.front() else {
                    drop(q);
                    client.shutdown();
                    let _ = tx.send(Event::Gone { device, error: None });
                    return;
                };
                let mut g = Vec::new();
                while g.len() < opts.group {
                    match q.front() {
                        Some((p, _)) if *p == pass => g.extend(q.pop_front()),
                        _ => break,
                    }
                }
                g
            };
            let pass = group[0].0;
            let keys: Vec<OpKey> = group.iter().map(|(_, k)| k.clone()).collect();
            let mut done: Vec<OpKey> = Vec::new();
            let result =
                client.measure(pass, &keys, method, opts.key_timeout, &mut |key, result| {
                    done.push(key.clone());
                    tx.send(Event::Result { pass, key: key.clone(), result })
                        .context("the driver stopped")
                });
            let unfinished: Vec<(u32, OpKey)> =
                group.into_iter().filter(|(_, k)| !done.contains(k)).collect();
            // Hand the unfinished items back first, so they can never be lost (the driver
            // only counts attempts).
            if !unfinished.is_empty() {
                if let Ok(mut q) = shared.queue.lock() {
                    for item in unfinished.iter().rev() {
                        q.push_front(item.clone());
                    }
                }
            }
            match result {
                Err(e) => {
                    let _ =
                        tx.send(Event::LinkFailed { device, error: format!("{e:#}"), unfinished });
                    client.kill();
                    failures += 1;
                    if failures > opts.max_restarts {
                        let _ = tx.send(Event::Gone { device, error: Some(format!("{e:#}")) });
                        return;
                    }
                    continue 'connect;
                }
                // The request completed but some results never arrived (their frames were
                // corrupted and dropped): re-request them on the same link.
                Ok(()) if !unfinished.is_empty() => {
                    let error = format!("{} result(s) lost on the link", unfinished.len());
                    let _ = tx.send(Event::LinkFailed { device, error, unfinished });
                    failures += 1;
                    if failures > opts.max_restarts {
                        let _ = tx.send(Event::Gone {
                            device,
                            error: Some("too many lost results".into()),
                        });
                        return;
                    }
                }
                Ok(()) => {}
            }
        }
    }
    let _ = tx.send(Event::Gone { device, error: None });
}
