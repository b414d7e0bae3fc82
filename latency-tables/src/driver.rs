//! The profiling driver: a plan of op keys × passes → one or more [`Worker`]s → the journal →
//! a [`LatencyTable`]. `device-agent bench` runs it with one in-process worker, `tunas profile`
//! with one worker per device link; it knows nothing of engines, links or terminals.
//!
//! Work items are (pass, key), pass-major with the key order rotated per pass
//! ([`rotated`]). Every worker runs on its own thread and takes small groups of items of one
//! pass from a shared queue, so keys are sharded across devices dynamically. Every result is
//! appended to the journal (flushed) the moment it arrives, so nothing measured is lost, and a
//! resumed run skips what the journal holds. When a worker's link fails, the unfinished items go
//! back to the front of the queue, the worker reconnects, and each key's attempts are counted;
//! a key that fails `max_attempts` times is recorded as failed, never as 0. A key the device
//! cannot build or run is failed at once (it would fail the same way every time). Progress and
//! problems are reported to an [`Observer`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::TableError;
use crate::journal::{rotated, Collected, Damage, Journal, Record};
use crate::meta::{Fingerprint, Method};
use crate::op_key::OpKey;
use crate::table::LatencyTable;
use crate::timing::Timing;
use crate::SCHEMA_VERSION;

/// The outcome of one key of one pass, as a worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Samples of this pass.
    Measured(Timing),
    /// The device could not build or run the key.
    Failed(String),
}

/// A device as it introduced itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// Its self-description (agent name, version, engine).
    pub agent: String,
}

/// Why a worker could not finish a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerError {
    /// The link broke (closed, timed out, garbled): reconnect and re-request what is missing.
    Link(String),
    /// The device refused the work (another protocol version, a method it rejects, a canary it
    /// cannot build): reconnecting will not help, so the device is given up.
    Refused(String),
    /// The driver asked the worker to stop (see [`Stop`]).
    Stopped,
}

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerError::Link(e) | WorkerError::Refused(e) => f.write_str(e),
            WorkerError::Stopped => f.write_str("stopped"),
        }
    }
}

impl std::error::Error for WorkerError {}

/// Returned by the report callback when the driver stops (a journal write failed, another
/// device turned out to be different hardware): the worker returns [`WorkerError::Stopped`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop;

impl From<Stop> for WorkerError {
    fn from(_: Stop) -> Self {
        WorkerError::Stopped
    }
}

/// Reports one key's outcome to the driver.
pub type Report<'a> = dyn FnMut(&OpKey, Outcome) -> Result<(), Stop> + 'a;

/// One device that measures keys: an agent behind a link, or the engine in this process.
pub trait Worker {
    /// A short name for messages (`local:/path/agent`, `tcp:phone:7000`, `this device`).
    fn describe(&self) -> String;
    /// Connects, or reconnects after a failure, and says who the device is.
    fn connect(&mut self) -> Result<Hello, WorkerError>;
    /// Measures one pass of `keys` by `method`, calling `report` for every key as its result
    /// arrives (in any order; a key never reported is re-requested).
    fn measure(
        &mut self,
        pass: u32,
        keys: &[OpKey],
        method: &Method,
        report: &mut Report<'_>,
    ) -> Result<(), WorkerError>;
    /// Ends the connection; `broken` after a failure (kill the agent rather than say goodbye).
    fn disconnect(&mut self, broken: bool);
}

impl<W: Worker + ?Sized> Worker for &mut W {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn connect(&mut self) -> Result<Hello, WorkerError> {
        (**self).connect()
    }
    fn measure(
        &mut self,
        pass: u32,
        keys: &[OpKey],
        method: &Method,
        report: &mut Report<'_>,
    ) -> Result<(), WorkerError> {
        (**self).measure(pass, keys, method, report)
    }
    fn disconnect(&mut self, broken: bool) {
        (**self).disconnect(broken)
    }
}

/// What the driver reports while it works.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A resumed journal was read: `done` of `total` (key, pass) items already measured.
    Resumed {
        /// The journal.
        path: &'a Path,
        /// Items already measured.
        done: u64,
        /// Items in all.
        total: u64,
    },
    /// Lines of the journal could not be read back and were dropped (their items are measured
    /// again); the damaged file was kept at `backup`.
    Damaged {
        /// The journal.
        path: &'a Path,
        /// The lines dropped.
        lines: &'a [Damage],
        /// The damaged file, kept.
        backup: Option<&'a Path>,
    },
    /// The work starts: `done` of `total` items are already measured.
    Started {
        /// Items already measured.
        done: u64,
        /// Items in all.
        total: u64,
    },
    /// One (key, pass) item was journaled.
    Measured {
        /// The key.
        key: &'a OpKey,
        /// The pass.
        pass: u32,
    },
    /// The adaptive method knows a key's median well enough: its remaining passes are skipped.
    Converged {
        /// The key.
        key: &'a OpKey,
        /// Passes skipped.
        skipped: usize,
    },
    /// The device could not build or run a key; it is recorded as failed.
    KeyFailed {
        /// The key.
        key: &'a OpKey,
        /// The device's reason.
        error: &'a str,
    },
    /// A worker's link failed; `requeued` items go back to the queue.
    LinkFailed {
        /// The device.
        device: &'a str,
        /// What happened.
        error: &'a str,
        /// Items handed back.
        requeued: usize,
    },
    /// A key failed `attempts` times on broken links and is recorded as failed.
    GaveUp {
        /// The key.
        key: &'a OpKey,
        /// Attempts made.
        attempts: u32,
        /// The last link error.
        error: &'a str,
    },
    /// A worker stopped: done (`error` is `None`) or given up.
    Gone {
        /// The device.
        device: &'a str,
        /// Why it was given up.
        error: Option<&'a str>,
    },
}

/// Receives the driver's [`Event`]s (a progress line, a log, a test's recorder).
pub trait Observer: Send {
    /// One event.
    fn event(&mut self, event: Event<'_>);
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Observer for Quiet {
    fn event(&mut self, _: Event<'_>) {}
}

/// How to run a profile.
#[derive(Debug, Clone)]
pub struct Options {
    /// The method sent to the workers (a resumed journal keeps its own).
    pub method: Method,
    /// Continue from the journal; without it an existing journal is refused.
    pub resume: bool,
    /// Allow devices whose fingerprints' identity fields differ.
    pub allow_mixed: bool,
    /// Attempts per key on broken links before it is recorded as failed.
    pub max_attempts: u32,
    /// Reconnects per worker before it is given up.
    pub max_restarts: u32,
    /// Items per request.
    pub group: usize,
    /// The table's description.
    pub description: String,
}

/// What a finished profile did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// The table written.
    pub out: PathBuf,
    /// Keys in the plan.
    pub keys: usize,
    /// Keys measured.
    pub measured: usize,
    /// Keys recorded as failed, with their errors.
    pub failed: Vec<(String, String)>,
    /// (key, pass) results received by this run (not read from the journal).
    pub received_now: usize,
    /// Journal lines that were damaged and dropped (their items were measured again).
    pub damaged_lines: usize,
    /// Link failures recovered from (reconnects and re-requests).
    pub restarts: u32,
    /// Seconds this run took.
    pub seconds: f64,
}

/// Why a profile stopped without a table.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The journal or the table could not be read or written.
    #[error(transparent)]
    Table(#[from] TableError),
    /// The journal belongs to another plan.
    #[error("{path}: the journal was started for a plan of {journal} keys, this plan has {plan}")]
    OtherPlan {
        /// The journal.
        path: PathBuf,
        /// Keys in the journal's header.
        journal: usize,
        /// Keys in this plan.
        plan: usize,
    },
    /// A device is different hardware from the first one.
    #[error("{device} ({agent}) is different hardware from the first device ({fields}); refusing to mix them in one table (pass --allow-mixed to override)")]
    Mixed {
        /// The device.
        device: String,
        /// Its self-description.
        agent: String,
        /// The differing identity fields.
        fields: String,
    },
    /// Every worker was given up before the work was done.
    #[error("{left} (key, pass) items were not measured: every device failed ({last_error}). What was measured is in {journal}; rerun with --resume")]
    Unfinished {
        /// Items left.
        left: usize,
        /// The last worker error.
        last_error: String,
        /// The journal.
        journal: PathBuf,
    },
    /// No device ever answered.
    #[error("no device answered ({0})")]
    NoDevice(String),
}

/// The shared state: queue, journal, results, attempts.
struct State<'o> {
    journal_path: PathBuf,
    journal: Option<Journal<Record>>,
    /// Records of a journal whose header was lost: written after the new header.
    carried: Vec<Record>,
    method: Method,
    plan_keys: usize,
    plan: BTreeSet<OpKey>,
    collected: Collected,
    queue: VecDeque<(u32, OpKey)>,
    in_flight: usize,
    attempts: BTreeMap<OpKey, u32>,
    fingerprint: Option<Fingerprint>,
    received_now: usize,
    restarts: u32,
    last_error: Option<String>,
    error: Option<DriverError>,
    stop: bool,
    observer: &'o mut dyn Observer,
}

impl State<'_> {
    fn fail(&mut self, e: DriverError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
        self.stop = true;
    }

    fn append(&mut self, record: &Record) -> Result<(), Stop> {
        let Some(j) = self.journal.as_mut() else { return Ok(()) };
        if let Err(e) = j.append(record) {
            self.fail(e.into());
            return Err(Stop);
        }
        Ok(())
    }

    fn done(&self, key: &OpKey, pass: u32) -> bool {
        self.collected.has(key, pass) || self.collected.failed(key)
    }

    /// Checks a device's identity and creates the journal at the first hello.
    fn hello(&mut self, device: &str, hello: &Hello, allow_mixed: bool) -> Result<(), Stop> {
        match &self.fingerprint {
            None => self.fingerprint = Some(hello.fingerprint.clone()),
            Some(first) => {
                let diff = first.identity_diff(&hello.fingerprint);
                if !diff.is_empty() && !allow_mixed {
                    let fields: Vec<String> =
                        diff.iter().map(|(f, a, b)| format!("{f}: {a} vs {b}")).collect();
                    self.fail(DriverError::Mixed {
                        device: device.into(),
                        agent: hello.agent.clone(),
                        fields: fields.join("; "),
                    });
                    return Err(Stop);
                }
            }
        }
        if self.journal.is_none() {
            let mut first = vec![Record::Header {
                schema_version: SCHEMA_VERSION,
                method: self.method.clone(),
                fingerprint: Box::new(hello.fingerprint.clone()),
                keys: self.plan_keys,
            }];
            first.append(&mut self.carried);
            match Journal::create(&self.journal_path, &first) {
                Ok(j) => self.journal = Some(j),
                Err(e) => {
                    self.fail(e.into());
                    return Err(Stop);
                }
            }
        }
        Ok(())
    }

    /// The next group of items of one pass, or `None` when there is nothing left to take.
    fn take(&mut self, max: usize) -> Option<Take> {
        if self.stop {
            return None;
        }
        let Some(&(pass, _)) = self.queue.front() else {
            return (self.in_flight > 0).then_some(Take::Wait);
        };
        let mut keys = Vec::new();
        while keys.len() < max.max(1) {
            match self.queue.front() {
                Some((p, _)) if *p == pass => keys.extend(self.queue.pop_front().map(|(_, k)| k)),
                _ => break,
            }
        }
        self.in_flight += keys.len();
        Some(Take::Group(pass, keys))
    }

    fn result(&mut self, pass: u32, key: &OpKey, outcome: Outcome) -> Result<(), Stop> {
        if self.stop {
            return Err(Stop);
        }
        if !self.plan.contains(key) || self.done(key, pass) {
            return Ok(()); // not ours, or a duplicate after a re-request
        }
        let record = match outcome {
            Outcome::Measured(timing) => Record::pass(key.clone(), pass, timing),
            Outcome::Failed(error) => Record::Failed { key: key.clone(), error, attempts: 1 },
        };
        self.append(&record)?;
        self.collected.add(&record);
        self.received_now += 1;
        if let Record::Failed { error, .. } = &record {
            // Its other passes would fail the same way.
            self.queue.retain(|(_, k)| k != key);
            self.observer.event(Event::KeyFailed { key, error });
        } else {
            self.observer.event(Event::Measured { key, pass });
            if self.collected.converged(key, &self.method) {
                // The adaptive method knows its median well enough: its other passes go.
                let before = self.queue.len();
                self.queue.retain(|(_, k)| k != key);
                let skipped = before - self.queue.len();
                if skipped > 0 {
                    self.observer.event(Event::Converged { key, skipped });
                }
            }
        }
        Ok(())
    }

    /// Puts the unfinished items of a group back at the front of the queue; after a link
    /// failure (`error`) counts an attempt for each and fails the keys out of attempts.
    fn give_back(
        &mut self,
        device: &str,
        sent: usize,
        unfinished: Vec<(u32, OpKey)>,
        error: Option<&str>,
        max_attempts: u32,
    ) {
        self.in_flight -= sent;
        let unfinished: Vec<_> =
            unfinished.into_iter().filter(|(p, k)| !self.done(k, *p)).collect();
        let Some(error) = error else {
            for item in unfinished.into_iter().rev() {
                self.queue.push_front(item);
            }
            return;
        };
        self.restarts += 1;
        self.observer.event(Event::LinkFailed { device, error, requeued: unfinished.len() });
        for (pass, key) in unfinished.into_iter().rev() {
            if self.collected.failed(&key) {
                continue;
            }
            let n = self.attempts.entry(key.clone()).or_insert(0);
            *n += 1;
            let n = *n;
            if n >= max_attempts {
                let record = Record::Failed { key: key.clone(), error: error.into(), attempts: n };
                if self.append(&record).is_err() {
                    return;
                }
                self.collected.add(&record);
                self.queue.retain(|(_, k)| k != &key);
                self.observer.event(Event::GaveUp { key: &key, attempts: n, error });
            } else {
                self.queue.push_front((pass, key));
            }
        }
    }

    fn gone(&mut self, device: &str, error: Option<&str>) {
        if let Some(e) = error {
            self.last_error = Some(e.into());
        }
        self.observer.event(Event::Gone { device, error });
    }
}

enum Take {
    Group(u32, Vec<OpKey>),
    Wait,
}

fn lock<'a, 'o>(state: &'a Mutex<State<'o>>) -> MutexGuard<'a, State<'o>> {
    // A worker that panicked cannot leave the state half-updated in a way that loses data:
    // every record is journaled before the state changes.
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Profiles `keys` with one worker per device into `out` (journal at `out.journal`).
pub fn run<W: Worker + Send>(
    keys: &[OpKey],
    workers: Vec<W>,
    out: &Path,
    opts: &Options,
    observer: &mut dyn Observer,
) -> Result<Summary, DriverError> {
    drive(keys, out, opts, observer, |state| {
        let names: Vec<String> = workers.iter().map(Worker::describe).collect();
        std::thread::scope(|s| {
            for (mut worker, name) in workers.into_iter().zip(&names) {
                s.spawn(move || work(state, name, &mut worker, opts));
            }
        });
    })
}

/// [`run`] with one worker on the calling thread (for a worker that cannot move threads, such
/// as an engine with thread-bound state).
pub fn run_here<W: Worker>(
    keys: &[OpKey],
    mut worker: W,
    out: &Path,
    opts: &Options,
    observer: &mut dyn Observer,
) -> Result<Summary, DriverError> {
    drive(keys, out, opts, observer, |state| {
        let name = worker.describe();
        work(state, &name, &mut worker, opts);
    })
}

/// Opens the journal, lets `workers` work on the shared state, and writes the table.
fn drive(
    keys: &[OpKey],
    out: &Path,
    opts: &Options,
    observer: &mut dyn Observer,
    workers: impl FnOnce(&Mutex<State<'_>>),
) -> Result<Summary, DriverError> {
    let start = Instant::now();
    let (state, damaged_lines) = open(keys, out, opts, observer)?;
    let state = Mutex::new(state);
    workers(&state);
    let state = state.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    finish(state, keys, out, opts, damaged_lines, start)
}

/// Reads (or refuses) the journal and fills the queue.
fn open<'o>(
    keys: &[OpKey],
    out: &Path,
    opts: &Options,
    observer: &'o mut dyn Observer,
) -> Result<(State<'o>, usize), DriverError> {
    let journal_path = Journal::path_for(out);
    let mut collected = Collected::new();
    let mut method = opts.method.clone();
    let mut fingerprint = None;
    let mut journal = None;
    let mut carried = Vec::new();
    let mut damaged_lines = 0;
    let plan: BTreeSet<OpKey> = keys.iter().cloned().collect();
    if opts.resume && journal_path.exists() {
        let (j, got) = Journal::<Record>::resume(&journal_path)?;
        damaged_lines = got.damaged.len();
        if !got.damaged.is_empty() {
            observer.event(Event::Damaged {
                path: &journal_path,
                lines: &got.damaged,
                backup: got.backup.as_deref(),
            });
        }
        let header = got.records.iter().find_map(|r| match r {
            Record::Header { method, fingerprint, keys, .. } => {
                Some((method.clone(), (**fingerprint).clone(), *keys))
            }
            _ => None,
        });
        let all_in_plan = got.records.iter().all(|r| match r {
            Record::Pass { key, .. } | Record::Failed { key, .. } => plan.contains(key),
            Record::Header { .. } => true,
        });
        let measured = got.records.into_iter().filter(|r| match r {
            Record::Header { .. } => false,
            Record::Pass { key, .. } | Record::Failed { key, .. } => plan.contains(key),
        });
        match header {
            Some((m, fp, n)) => {
                // A plan that grew (the predicted keys of a `--budget` run, measured now) may
                // continue a journal whose every key it holds.
                let grown = n < keys.len() && all_in_plan;
                if n != keys.len() && !grown {
                    return Err(DriverError::OtherPlan {
                        path: journal_path,
                        journal: n,
                        plan: keys.len(),
                    });
                }
                method = m;
                fingerprint = Some(fp);
                journal = Some(j);
                for r in measured {
                    collected.add(&r);
                }
            }
            None => {
                // The header was lost: the journal starts again at the first device's hello,
                // with what survived carried over. Until then the old file stays on disk, set
                // aside, so a run that dies before any device answers loses nothing.
                drop(j);
                let aside = crate::journal::free_name(&journal_path, "headerless");
                std::fs::rename(&journal_path, &aside)
                    .map_err(|source| TableError::Io { path: journal_path.clone(), source })?;
                for r in measured {
                    collected.add(&r);
                    carried.push(r);
                }
            }
        }
    } else if journal_path.exists() {
        return Err(TableError::Invalid {
            path: journal_path,
            message: "a journal already exists: pass --resume to continue it, or remove it".into(),
        }
        .into());
    }
    let passes = method.passes.max(1);
    let mut queue = VecDeque::new();
    for pass in 0..passes {
        for key in rotated(keys, pass, passes) {
            let done = collected.failed(&key) || collected.converged(&key, &method);
            if !collected.has(&key, pass) && !done {
                queue.push_back((pass, key));
            }
        }
    }
    let total = (keys.len() * passes as usize) as u64;
    let done = total - queue.len() as u64;
    if opts.resume && done > 0 {
        observer.event(Event::Resumed { path: &journal_path, done, total });
    }
    observer.event(Event::Started { done, total });
    let state = State {
        journal_path,
        journal,
        carried,
        method,
        plan_keys: keys.len(),
        plan,
        collected,
        queue,
        in_flight: 0,
        attempts: BTreeMap::new(),
        fingerprint,
        received_now: 0,
        restarts: 0,
        last_error: None,
        error: None,
        stop: false,
        observer,
    };
    Ok((state, damaged_lines))
}

/// One worker's life: connect, take groups, measure, report; on a link failure hand the group
/// back and reconnect, up to `max_restarts` times.
fn work<W: Worker>(state: &Mutex<State<'_>>, name: &str, worker: &mut W, opts: &Options) {
    let mut failures = 0u32;
    let give_up = |failures: u32, error: &str| {
        (failures > opts.max_restarts).then(|| lock(state).gone(name, Some(error)))
    };
    'connect: loop {
        if lock(state).stop {
            return;
        }
        let hello = match worker.connect() {
            Ok(h) => h,
            Err(WorkerError::Stopped) => return,
            Err(WorkerError::Refused(e)) => return lock(state).gone(name, Some(&e)),
            Err(WorkerError::Link(e)) => {
                failures += 1;
                if give_up(failures, &e).is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100 * u64::from(failures.min(20))));
                continue;
            }
        };
        if lock(state).hello(name, &hello, opts.allow_mixed).is_err() {
            worker.disconnect(true);
            return;
        }
        let method = lock(state).method.clone();
        loop {
            let take = lock(state).take(opts.group);
            let (pass, keys) = match take {
                None => {
                    worker.disconnect(false);
                    return lock(state).gone(name, None);
                }
                Some(Take::Wait) => {
                    // Another worker holds the last items; they may come back.
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                Some(Take::Group(pass, keys)) => (pass, keys),
            };
            let mut reported = BTreeSet::new();
            let result = worker.measure(pass, &keys, &method, &mut |key, outcome| {
                reported.insert(key.clone());
                lock(state).result(pass, key, outcome)
            });
            let sent = keys.len();
            let unfinished: Vec<(u32, OpKey)> =
                keys.into_iter().filter(|k| !reported.contains(k)).map(|k| (pass, k)).collect();
            let lost = format!("{} result(s) lost on the link", unfinished.len());
            let error = match &result {
                Ok(()) if unfinished.is_empty() => None,
                // The request completed but some results never arrived (their frames were
                // corrupted and dropped): re-request them.
                Ok(()) => Some(lost.as_str()),
                Err(WorkerError::Link(e)) => Some(e.as_str()),
                // Not the keys' fault: no attempt is counted, the device is given up below.
                Err(WorkerError::Refused(_) | WorkerError::Stopped) => None,
            };
            lock(state).give_back(name, sent, unfinished, error, opts.max_attempts);
            match result {
                Ok(()) if error.is_none() => {}
                Ok(()) => {
                    failures += 1;
                    if give_up(failures, &lost).is_some() {
                        worker.disconnect(true);
                        return;
                    }
                }
                Err(WorkerError::Stopped) => {
                    worker.disconnect(true);
                    return;
                }
                Err(WorkerError::Refused(e)) => {
                    worker.disconnect(true);
                    return lock(state).gone(name, Some(&e));
                }
                Err(WorkerError::Link(e)) => {
                    worker.disconnect(true);
                    failures += 1;
                    if give_up(failures, &e).is_some() {
                        return;
                    }
                    continue 'connect;
                }
            }
        }
    }
}

/// The table of a finished run, or why there is none.
fn finish(
    mut state: State<'_>,
    keys: &[OpKey],
    out: &Path,
    opts: &Options,
    damaged_lines: usize,
    start: Instant,
) -> Result<Summary, DriverError> {
    if let Some(e) = state.error.take() {
        return Err(e);
    }
    let last_error = state.last_error.clone().unwrap_or_else(|| "no error reported".into());
    if !state.queue.is_empty() {
        return Err(DriverError::Unfinished {
            left: state.queue.len(),
            last_error,
            journal: state.journal_path,
        });
    }
    let Some(fingerprint) = state.fingerprint.take() else {
        return Err(DriverError::NoDevice(last_error));
    };
    let mut table: LatencyTable = state.collected.to_table(fingerprint, state.method.clone());
    table.created = Some(crate::table::timestamp());
    table.description = Some(opts.description.clone());
    table.save(out)?;
    Ok(Summary {
        out: out.to_path_buf(),
        keys: keys.len(),
        measured: table.len(),
        failed: table.failures().map(|f| (f.key.to_string(), f.error.clone())).collect(),
        received_now: state.received_now,
        damaged_lines,
        restarts: state.restarts,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device whose key `tight` always times 100 µs ± 0.1% and `noisy` anywhere in 50–150 µs.
    struct Fake {
        calls: u32,
    }

    impl Worker for Fake {
        fn describe(&self) -> String {
            "fake".into()
        }
        fn connect(&mut self) -> Result<Hello, WorkerError> {
            Ok(Hello { fingerprint: Fingerprint::default(), agent: "fake".into() })
        }
        fn measure(
            &mut self,
            _pass: u32,
            keys: &[OpKey],
            _method: &Method,
            report: &mut Report<'_>,
        ) -> Result<(), WorkerError> {
            for key in keys {
                self.calls += 1;
                let tight = key.to_string().starts_with("pool");
                let samples_us = (0..40u32)
                    .map(|i| {
                        let u = f64::from((i * 37 + self.calls * 11) % 40) / 39.0;
                        if tight {
                            100.0 + 0.1 * (u - 0.5)
                        } else {
                            50.0 + 100.0 * u
                        }
                    })
                    .collect();
                let timing = Timing { samples_us, batch: 1, ..Timing::default() };
                report(key, Outcome::Measured(timing))?;
            }
            Ok(())
        }
        fn disconnect(&mut self, _broken: bool) {}
    }

    fn options(method: Method) -> Options {
        Options {
            method,
            resume: false,
            allow_mixed: false,
            max_attempts: 3,
            max_restarts: 3,
            group: 1,
            description: "test".into(),
        }
    }

    #[test]
    fn the_adaptive_method_stops_a_key_once_its_median_is_known() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<OpKey> =
            ["pool/7x7x1280", "fc/1x1x1280/o1001"].iter().map(|k| k.parse().unwrap()).collect();
        let method = Method { passes: 4, min_passes: 2, ci_target: 0.01, ..Method::default() };
        let out = dir.path().join("adaptive.json");
        let mut worker = Fake { calls: 0 };
        run_here(&keys, &mut worker, &out, &options(method), &mut Quiet).unwrap();
        assert_eq!(worker.calls, 2 + 4, "the tight key stops after 2 passes, the noisy one runs 4");
        let table = LatencyTable::load(&out).unwrap();
        let tight = table.get(&keys[0]).unwrap();
        assert_eq!((tight.passes, tight.stopped), (Some(2), Some(crate::Stopped::Converged)));
        let [lo, hi] = tight.median_ci95.unwrap();
        assert!(lo <= tight.median && tight.median <= hi && (hi - lo) / tight.median < 0.02);
        let noisy = table.get(&keys[1]).unwrap();
        assert_eq!((noisy.passes, noisy.stopped), (Some(4), Some(crate::Stopped::MaxPasses)));

        // The fixed method measures every pass of every key and says nothing of stopping.
        let out = dir.path().join("fixed.json");
        let mut worker = Fake { calls: 0 };
        let fixed = Method { passes: 4, ..Method::default() };
        run_here(&keys, &mut worker, &out, &options(fixed), &mut Quiet).unwrap();
        assert_eq!(worker.calls, 8);
        let table = LatencyTable::load(&out).unwrap();
        assert_eq!(table.get(&keys[0]).unwrap().stopped, None);
        assert_eq!(table.get(&keys[0]).unwrap().passes, Some(4));
    }

    #[test]
    fn a_resumed_adaptive_run_does_not_remeasure_a_converged_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<OpKey> =
            ["pool/7x7x1280", "fc/1x1x1280/o1001"].iter().map(|k| k.parse().unwrap()).collect();
        let method = Method { passes: 4, min_passes: 2, ci_target: 0.01, ..Method::default() };
        let out = dir.path().join("t.json");
        run_here(&keys, Fake { calls: 0 }, &out, &options(method.clone()), &mut Quiet).unwrap();
        std::fs::remove_file(&out).unwrap();
        let mut worker = Fake { calls: 0 };
        let resume = Options { resume: true, ..options(method) };
        run_here(&keys, &mut worker, &out, &resume, &mut Quiet).unwrap();
        assert_eq!(worker.calls, 0, "everything the method needs is in the journal");
        assert!(LatencyTable::load(&out).unwrap().get(&keys[0]).is_some());
    }
}
