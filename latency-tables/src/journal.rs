//! The measurement journal: an append-only JSON Lines file with one record per finished
//! (key, pass), flushed as it is written, from which a profile resumes after any crash.
//!
//! The first line is a header (method, plan size, fingerprint). [`Journal`] is generic over its
//! record type, so whole-network measurements use the same file format and recovery rule.
//! [`Collected`] turns the records into a [`LatencyTable`]: statistics over the samples of
//! every pass, the spread between pass medians, and failures.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::TableError;
use crate::meta::{Fingerprint, Method};
use crate::op_key::OpKey;
use crate::stats::{median_ci, LatencyStats};
use crate::table::{Entry, Failure, LatencyTable, Stopped};
use crate::timing::Timing;

/// [`Collected::converged`] of a key's entry.
fn entry_converged(e: &Entry, method: &Method) -> bool {
    e.passes.unwrap_or(0) >= method.min_passes.min(method.passes).max(1)
        && e.median_ci_half_width().is_some_and(|h| h <= method.ci_target)
        && e.pass_spread <= 2.0 * method.ci_target
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Record {
    /// The first line: what is being measured and how.
    Header {
        /// The journal format version (the table schema version).
        schema_version: u32,
        /// The method.
        method: Method,
        /// The device, as the agent described itself.
        fingerprint: Box<Fingerprint>,
        /// Number of keys in the plan.
        keys: usize,
    },
    /// The samples of one pass of one key.
    Pass {
        /// The key.
        key: OpKey,
        /// The pass.
        pass: u32,
        /// Samples (µs per run).
        samples_us: Vec<f64>,
        /// Runs averaged per sample.
        batch: u32,
        /// Throttling seen.
        throttled: bool,
        /// Re-measurements after a canary drift (older journals: 0).
        #[serde(default, skip_serializing_if = "crate::is_zero")]
        redos: u32,
        /// The canary's drift at the check that released it (older journals: none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        canary_drift: Option<f64>,
    },
    /// A key that failed (it is not retried by later passes).
    Failed {
        /// The key.
        key: OpKey,
        /// The error.
        error: String,
        /// Attempts made.
        attempts: u32,
    },
}

impl Record {
    /// The record of one pass of `key`.
    pub fn pass(key: OpKey, pass: u32, t: Timing) -> Record {
        let Timing { samples_us, batch, throttled, redos, canary_drift } = t;
        Record::Pass { key, pass, samples_us, batch, throttled, redos, canary_drift }
    }
}

/// A line of a journal that could not be read back, and was dropped on resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The 1-based line number in the file as it was found.
    pub line: usize,
    /// Why it was dropped.
    pub message: String,
}

/// What [`Journal::resume`] read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered<R> {
    /// Every record that was read back intact, in file order.
    pub records: Vec<R>,
    /// Damaged lines in the middle of the file (a torn last line is not damage: it is what a
    /// writer killed mid-write leaves, and it is cut off silently).
    pub damaged: Vec<Damage>,
    /// Where the damaged file was kept before the journal was rewritten without the damage.
    pub backup: Option<PathBuf>,
}

/// An append-only JSON Lines journal of records of type `R`, flushed to disk record by record.
///
/// One format and one recovery rule for every journal of the project (op-key profiles, whole-
/// network validation, …):
/// - every record is one line, written with one `write` and `fsync`ed;
/// - on resume, a last line without its newline (a writer killed mid-write) is kept if it is a
///   whole record and cut off otherwise, so the next append starts on a clean line;
/// - any other line that is not a record (garbage, a flipped byte) is dropped and reported;
///   the damaged file is kept as `PATH.damaged` and the journal rewritten (atomically) with
///   the intact records, so that nothing read back is lost and the file is clean again.
#[derive(Debug)]
pub struct Journal<R = Record> {
    path: PathBuf,
    file: File,
    records: PhantomData<fn(R)>,
}

impl Journal<Record> {
    /// The conventional journal path next to an output table: `table.json` → `table.json.journal`.
    pub fn path_for(out: &Path) -> PathBuf {
        let mut name = out.as_os_str().to_owned();
        name.push(".journal");
        PathBuf::from(name)
    }
}

impl<R: Serialize + DeserializeOwned> Journal<R> {
    /// Creates a new journal (refusing to overwrite one) and writes `first` into it.
    pub fn create(path: &Path, first: &[R]) -> Result<Journal<R>, TableError> {
        let io = |source| TableError::Io { path: path.to_path_buf(), source };
        let file = OpenOptions::new().write(true).create_new(true).open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                TableError::Invalid {
                    path: path.to_path_buf(),
                    message: "a journal already exists: pass --resume to continue it, or remove it"
                        .into(),
                }
            } else {
                io(e)
            }
        })?;
        let mut j = Journal { path: path.to_path_buf(), file, records: PhantomData };
        for r in first {
            j.append(r)?;
        }
        Ok(j)
    }

    /// Opens the journal at `path` for appending, creating an empty one when there is none,
    /// and reads back what it holds (see [`Journal::resume`]).
    pub fn open(path: &Path) -> Result<(Journal<R>, Recovered<R>), TableError> {
        if path.exists() {
            Self::resume(path)
        } else {
            let empty = Recovered { records: vec![], damaged: vec![], backup: None };
            Ok((Self::create(path, &[])?, empty))
        }
    }

    /// Reads a journal back without changing it: its intact records and its damaged lines
    /// (a torn last line that is not a whole record is neither).
    pub fn read(path: &Path) -> Result<Recovered<R>, TableError> {
        let bytes = std::fs::read(path)
            .map_err(|source| TableError::Io { path: path.to_path_buf(), source })?;
        Ok(Self::parse(&bytes).0)
    }

    /// The records and damage of `bytes`, and whether the file needs rewriting (its last line
    /// is torn, or a line is damaged).
    fn parse(bytes: &[u8]) -> (Recovered<R>, bool) {
        let mut out = Recovered { records: vec![], damaged: vec![], backup: None };
        let mut rewrite = false;
        let mut lines = bytes.split_inclusive(|&b| b == b'\n').enumerate().peekable();
        while let Some((i, line)) = lines.next() {
            let whole = line.ends_with(b"\n");
            let last = lines.peek().is_none();
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            if text.iter().all(u8::is_ascii_whitespace) {
                rewrite |= !whole;
                continue;
            }
            match serde_json::from_slice::<R>(text) {
                Ok(r) => {
                    out.records.push(r);
                    rewrite |= !whole;
                }
                Err(_) if last && !whole => rewrite = true,
                Err(e) => {
                    out.damaged.push(Damage { line: i + 1, message: e.to_string() });
                    rewrite = true;
                }
            }
        }
        (out, rewrite)
    }

    /// Opens an existing journal for appending and reads it back. A torn last line is cut off
    /// (or completed, when it is a whole record); damaged lines are dropped, the damaged file is
    /// kept as `PATH.damaged` and the journal rewritten with the intact records.
    pub fn resume(path: &Path) -> Result<(Journal<R>, Recovered<R>), TableError> {
        let io = |source| TableError::Io { path: path.to_path_buf(), source };
        let bytes = std::fs::read(path).map_err(io)?;
        let (mut recovered, rewrite) = Self::parse(&bytes);
        if rewrite {
            if !recovered.damaged.is_empty() {
                let backup = free_name(path, "damaged");
                std::fs::copy(path, &backup).map_err(io)?;
                recovered.backup = Some(backup);
            }
            let mut text = Vec::new();
            for r in &recovered.records {
                text.extend(line_of(r));
            }
            let tmp = free_name(path, "tmp");
            crate::atomic::replace(path, &tmp, &text).map_err(io)?;
        }
        let file = OpenOptions::new().append(true).open(path).map_err(io)?;
        Ok((Journal { path: path.to_path_buf(), file, records: PhantomData }, recovered))
    }

    /// Appends one record as one line and flushes it to disk.
    pub fn append(&mut self, record: &R) -> Result<(), TableError> {
        let io = |source| TableError::Io { path: self.path.clone(), source };
        self.file.write_all(&line_of(record)).map_err(io)?;
        self.file.flush().map_err(io)?;
        self.file.sync_data().map_err(io)
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn line_of<R: Serialize>(record: &R) -> Vec<u8> {
    // Serialising plain data into memory cannot fail.
    let mut line = serde_json::to_vec(record).unwrap_or_default();
    line.push(b'\n');
    line
}

/// `PATH.suffix`, or `PATH.suffix.N` with the first N not taken.
pub fn free_name(path: &Path, suffix: &str) -> PathBuf {
    let with = |s: String| {
        let mut name = path.as_os_str().to_owned();
        name.push(s);
        PathBuf::from(name)
    };
    let first = with(format!(".{suffix}"));
    if !first.exists() {
        return first;
    }
    (1..).map(|n| with(format!(".{suffix}.{n}"))).find(|p| !p.exists()).unwrap_or(first)
}

/// The key order of pass `pass` of `passes`: pass p starts `p·len/passes` keys later, so every
/// key sits early, middle and late once and slow drift becomes noise instead of bias.
pub fn rotated(keys: &[OpKey], pass: u32, passes: u32) -> Vec<OpKey> {
    if keys.is_empty() {
        return vec![];
    }
    let shift = (pass as usize * keys.len()) / passes.max(1) as usize % keys.len();
    keys[shift..].iter().chain(&keys[..shift]).cloned().collect()
}

#[derive(Debug, Clone, Default)]
struct KeyPasses {
    passes: BTreeMap<u32, Timing>,
}

/// The measurements gathered so far, keyed by op key.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    keys: BTreeMap<OpKey, KeyPasses>,
    failed: BTreeMap<OpKey, Failure>,
}

impl Collected {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds records in (headers are ignored). A (key, pass) seen twice keeps the first.
    pub fn add(&mut self, record: &Record) {
        match record {
            Record::Header { .. } => {}
            Record::Pass { key, pass, samples_us, batch, throttled, redos, canary_drift } => {
                self.keys.entry(key.clone()).or_default().passes.entry(*pass).or_insert_with(
                    || Timing {
                        samples_us: samples_us.clone(),
                        batch: *batch,
                        throttled: *throttled,
                        redos: *redos,
                        canary_drift: *canary_drift,
                    },
                );
            }
            Record::Failed { key, error, attempts } => {
                self.failed.insert(
                    key.clone(),
                    Failure { key: key.clone(), error: error.clone(), attempts: *attempts },
                );
            }
        }
    }

    /// Whether this (key, pass) is measured.
    pub fn has(&self, key: &OpKey, pass: u32) -> bool {
        self.keys.get(key).is_some_and(|k| k.passes.contains_key(&pass))
    }

    /// Whether this key failed.
    pub fn failed(&self, key: &OpKey) -> bool {
        self.failed.contains_key(key)
    }

    /// Number of (key, pass) pairs measured.
    pub fn passes_done(&self) -> usize {
        self.keys.values().map(|k| k.passes.len()).sum()
    }

    /// The table entry of a key from all its passes, if it has any.
    pub fn entry(&self, key: &OpKey) -> Option<Entry> {
        let k = self.keys.get(key)?;
        let mut all: Vec<f64> =
            k.passes.values().flat_map(|t| t.samples_us.iter().copied()).collect();
        all.sort_by(f64::total_cmp);
        let stats = LatencyStats::from_samples(&all)?;
        let mut medians: Vec<f64> =
            k.passes.values().filter(|t| !t.samples_us.is_empty()).map(Timing::median).collect();
        medians.sort_by(f64::total_cmp);
        let spread = match (medians.first(), medians.last()) {
            (Some(lo), Some(hi)) if stats.median > 0.0 => (hi - lo) / stats.median,
            _ => 0.0,
        };
        let throttled = k.passes.values().any(|t| t.throttled);
        let mut e = Entry::new(key.clone(), stats, spread, throttled);
        e.median_ci95 = median_ci(&all).map(|(lo, hi)| [lo, hi]);
        e.passes = Some(k.passes.len() as u32);
        e.remeasured = k.passes.values().map(|t| t.redos).sum();
        e.canary_drift = k
            .passes
            .values()
            .filter_map(|t| t.canary_drift)
            .max_by(|a, b| a.abs().total_cmp(&b.abs()));
        Some(e)
    }

    /// Whether the adaptive `method` is done with `key`: at least `min_passes` passes, the 95%
    /// interval of the median over all of them within `ci_target`, and the pass medians
    /// within twice that of each other. Always false for the fixed method.
    pub fn converged(&self, key: &OpKey, method: &Method) -> bool {
        method.adaptive() && self.entry(key).is_some_and(|e| entry_converged(&e, method))
    }

    /// The table entry of a key measured by `method`: [`Collected::entry`] plus, for the
    /// adaptive method, why it stopped.
    pub fn entry_by(&self, key: &OpKey, method: &Method) -> Option<Entry> {
        let mut e = self.entry(key)?;
        if method.adaptive() {
            e.stopped = Some(if entry_converged(&e, method) {
                Stopped::Converged
            } else {
                Stopped::MaxPasses
            });
        }
        Some(e)
    }

    /// The table of everything collected. A key with samples is an entry even if a later
    /// attempt failed; failures are kept only for keys without samples.
    pub fn to_table(&self, fingerprint: Fingerprint, method: Method) -> LatencyTable {
        let mut t = LatencyTable::new(fingerprint, method.clone());
        for key in self.keys.keys() {
            if let Some(e) = self.entry_by(key, &method) {
                t.insert(e);
            }
        }
        for f in self.failed.values() {
            t.insert_failure(f.clone());
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Record {
        Record::Header {
            schema_version: 1,
            method: Method::default(),
            fingerprint: Box::default(),
            keys: 2,
        }
    }

    fn pass(key: &str, pass: u32, v: f64) -> Record {
        Record::Pass {
            key: key.parse().unwrap(),
            pass,
            samples_us: vec![v, v + 1.0, v + 2.0],
            batch: 1,
            throttled: false,
            redos: 0,
            canary_drift: None,
        }
    }

    #[test]
    fn resume_cuts_a_torn_line_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json.journal");
        let mut j = Journal::create(&path, &[header()]).unwrap();
        j.append(&pass("pool/7x7x8", 0, 10.0)).unwrap();
        drop(j);
        // A writer killed mid-line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"type\":\"pass\",\"key\":\"pool/7").unwrap();
        drop(f);
        let (mut j, got) = Journal::<Record>::resume(&path).unwrap();
        assert_eq!((got.records.len(), got.damaged.len(), got.backup), (2, 0, None));
        j.append(&pass("pool/7x7x8", 1, 20.0)).unwrap();
        drop(j);
        // Killed again, and resumed again: the second torn line does not glue onto a record.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"type\":\"pa").unwrap();
        drop(f);
        let (mut j, got) = Journal::<Record>::resume(&path).unwrap();
        assert_eq!((got.records.len(), got.damaged.len()), (3, 0));
        j.append(&pass("pool/7x7x8", 2, 30.0)).unwrap();
        drop(j);
        assert_eq!(Journal::<Record>::read(&path).unwrap().records.len(), 4);
        let err = Journal::create(&path, &[header()]).unwrap_err().to_string();
        assert!(err.contains("--resume"), "{err}");
    }

    #[test]
    fn a_whole_record_without_its_newline_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let text = serde_json::to_string(&header()).unwrap();
        std::fs::write(&path, &text).unwrap();
        let (mut j, got) = Journal::<Record>::resume(&path).unwrap();
        assert_eq!(got.records, vec![header()]);
        j.append(&pass("pool/7x7x8", 0, 1.0)).unwrap();
        assert_eq!(Journal::<Record>::read(&path).unwrap().records.len(), 2);
    }

    #[test]
    fn a_damaged_middle_line_is_dropped_reported_and_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let mut text = serde_json::to_string(&header()).unwrap();
        text.push_str("\n{garbage}\n");
        text.push_str(&serde_json::to_string(&pass("pool/7x7x8", 0, 1.0)).unwrap());
        text.push('\n');
        std::fs::write(&path, &text).unwrap();
        let (_, got) = Journal::<Record>::resume(&path).unwrap();
        assert_eq!(got.records.len(), 2);
        assert_eq!(got.damaged.len(), 1);
        assert_eq!(got.damaged[0].line, 2);
        let backup = got.backup.unwrap();
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), text);
        // The journal itself is clean again.
        let again = Journal::<Record>::read(&path).unwrap();
        assert_eq!((again.records.len(), again.damaged.len()), (2, 0));
    }

    #[test]
    fn fuzz_truncation_and_garbage_anywhere_lose_only_the_hit_records() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<Record> = std::iter::once(header())
            .chain((0..12).map(|i| pass(&format!("pool/7x7x{}", 8 + i), i % 3, f64::from(i))))
            .collect();
        let lines: Vec<Vec<u8>> = records.iter().map(line_of).collect();
        let clean: Vec<u8> = lines.concat();
        // Bytes that can never stand in valid JSON text (control characters, invalid UTF-8),
        // and a newline, so garbage may also split a line in two.
        const GARBAGE: &[u8] = &[0x00, 0x01, 0x07, 0x1B, 0x1F, 0xC0, 0xFF, b'\n'];
        let mut stream = crate::onnx::SeededWeights::new(7);
        let mut next = move || stream.next_u64();
        for case in 0..300 {
            let path = dir.path().join(format!("j{case}"));
            let mut bytes = clean.clone();
            // Garbage inserted at a random byte (or none), then a random truncation (or none).
            let hit = if next() % 4 != 0 {
                let at = (next() % bytes.len() as u64) as usize;
                let n = 1 + (next() % 3) as usize;
                let junk: Vec<u8> =
                    (0..n).map(|_| GARBAGE[(next() % GARBAGE.len() as u64) as usize]).collect();
                bytes.splice(at..at, junk);
                Some(at)
            } else {
                None
            };
            let cut =
                if next() % 2 == 0 { (next() % bytes.len() as u64) as usize } else { bytes.len() };
            bytes.truncate(cut);
            std::fs::write(&path, &bytes).unwrap();
            let (mut j, got) = Journal::<Record>::resume(&path).unwrap();
            // Every record whose line lies wholly before the damage and the cut is back, in
            // order; nothing else is invented.
            let mut end = 0;
            let mut expect = Vec::new();
            for (r, l) in records.iter().zip(&lines) {
                end += l.len();
                let before_hit = hit.is_none_or(|h| end <= h);
                if before_hit && end <= cut {
                    expect.push(r.clone());
                }
            }
            assert!(got.records.len() >= expect.len(), "case {case}: {got:?}");
            assert_eq!(&got.records[..expect.len()], &expect[..], "case {case}");
            assert!(got.records.iter().all(|r| records.contains(r)), "case {case}");
            // The journal takes appends on a clean line, and reads back whole.
            let extra = pass("pool/7x7x99", 0, 5.0);
            j.append(&extra).unwrap();
            drop(j);
            let again = Journal::<Record>::read(&path).unwrap();
            assert!(again.damaged.is_empty(), "case {case}");
            assert_eq!(again.records.last(), Some(&extra), "case {case}");
            assert_eq!(again.records.len(), got.records.len() + 1, "case {case}");
        }
    }

    #[test]
    fn collected_merges_passes_into_stats() {
        let mut c = Collected::new();
        c.add(&pass("pool/7x7x8", 0, 10.0));
        c.add(&pass("pool/7x7x8", 1, 12.0));
        c.add(&pass("pool/7x7x8", 1, 99.0)); // duplicate (key, pass): first wins
        c.add(&Record::Failed {
            key: "fc/1x1x8/o10".parse().unwrap(),
            error: "boom".into(),
            attempts: 3,
        });
        let key: OpKey = "pool/7x7x8".parse().unwrap();
        assert!(c.has(&key, 1) && !c.has(&key, 2));
        let e = c.entry(&key).unwrap();
        assert_eq!(e.n, 6);
        assert_eq!(e.median, 12.0); // 10 11 12 12 13 14
        assert!((e.pass_spread - 2.0 / 12.0).abs() < 1e-12); // pass medians 11 and 13
        let t = c.to_table(Fingerprint::default(), Method::default());
        assert_eq!(t.len(), 1);
        assert_eq!(t.failures().count(), 1);
    }
}
