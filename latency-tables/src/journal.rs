//! The measurement journal: an append-only JSON Lines file with one record per finished
//! (key, pass), flushed as it is written, from which a profile resumes after any crash.
//!
//! The first line is a header (method, plan size, fingerprint). A torn last line (the writer was
//! killed mid-write) is cut off on resume; any other bad line is an error naming the file and
//! line. [`Collected`] turns the records into a [`LatencyTable`]: statistics over the samples of
//! every pass, the spread between pass medians, and failures.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::TableError;
use crate::meta::{Fingerprint, Method};
use crate::op_key::OpKey;
use crate::stats::{quantile, LatencyStats};
use crate::table::{Entry, Failure, LatencyTable};

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

/// An open journal, appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// The conventional journal path next to an output table: `table.json` → `table.json.journal`.
    pub fn path_for(out: &Path) -> PathBuf {
        let mut name = out.as_os_str().to_owned();
        name.push(".journal");
        PathBuf::from(name)
    }

    /// Creates a new journal (refusing to overwrite one) and writes its header.
    pub fn create(path: &Path, header: Record) -> Result<Journal, TableError> {
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
        let mut j = Journal { path: path.to_path_buf(), file };
        j.append(&header)?;
        Ok(j)
    }

    /// Opens an existing journal for resuming: returns it (positioned at the end) and its records.
    /// A torn last line is removed from the file.
    pub fn resume(path: &Path) -> Result<(Journal, Vec<Record>), TableError> {
        let io = |source| TableError::Io { path: path.to_path_buf(), source };
        let mut file = OpenOptions::new().read(true).write(true).open(path).map_err(io)?;
        let mut records = Vec::new();
        let mut good_len = 0u64;
        let mut reader = BufReader::new(&mut file);
        let mut line = String::new();
        let mut lineno = 0;
        loop {
            line.clear();
            let n = reader.read_line(&mut line).map_err(io)?;
            if n == 0 {
                break;
            }
            lineno += 1;
            if !line.ends_with('\n') {
                break; // torn last line: cut off below
            }
            match serde_json::from_str::<Record>(line.trim_end()) {
                Ok(r) => {
                    records.push(r);
                    good_len += n as u64;
                }
                Err(e) => {
                    return Err(TableError::Syntax {
                        path: path.to_path_buf(),
                        line: lineno,
                        column: e.column(),
                        message: format!("bad journal record: {e}"),
                    })
                }
            }
        }
        drop(reader);
        match records.first() {
            Some(Record::Header { .. }) => {}
            _ => {
                return Err(TableError::Invalid {
                    path: path.to_path_buf(),
                    message: "the journal does not start with a header line".into(),
                })
            }
        }
        file.set_len(good_len).map_err(io)?;
        file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok((Journal { path: path.to_path_buf(), file }, records))
    }

    /// Appends one record and flushes it to the OS (and to disk).
    pub fn append(&mut self, record: &Record) -> Result<(), TableError> {
        let io = |source| TableError::Io { path: self.path.clone(), source };
        let mut line = serde_json::to_string(record).unwrap_or_default();
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.flush().map_err(io)?;
        self.file.sync_data().map_err(io)
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
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
    passes: BTreeMap<u32, (Vec<f64>, u32, bool)>,
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
            Record::Pass { key, pass, samples_us, batch, throttled } => {
                self.keys
                    .entry(key.clone())
                    .or_default()
                    .passes
                    .entry(*pass)
                    .or_insert_with(|| (samples_us.clone(), *batch, *throttled));
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
        let all: Vec<f64> = k.passes.values().flat_map(|(s, _, _)| s.iter().copied()).collect();
        let stats = LatencyStats::from_samples(&all)?;
        let mut medians: Vec<f64> = k
            .passes
            .values()
            .filter(|(s, _, _)| !s.is_empty())
            .map(|(s, _, _)| {
                let mut v = s.clone();
                v.sort_by(f64::total_cmp);
                quantile(&v, 0.5)
            })
            .collect();
        medians.sort_by(f64::total_cmp);
        let spread = match (medians.first(), medians.last()) {
            (Some(lo), Some(hi)) if stats.median > 0.0 => (hi - lo) / stats.median,
            _ => 0.0,
        };
        let throttled = k.passes.values().any(|(_, _, t)| *t);
        Some(Entry::new(key.clone(), stats, spread, throttled))
    }

    /// The table of everything collected. A key with samples is an entry even if a later
    /// attempt failed; failures are kept only for keys without samples.
    pub fn to_table(&self, fingerprint: Fingerprint, method: Method) -> LatencyTable {
        let mut t = LatencyTable::new(fingerprint, method);
        for key in self.keys.keys() {
            if let Some(e) = self.entry(key) {
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
        }
    }

    #[test]
    fn resume_cuts_a_torn_line_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json.journal");
        let mut j = Journal::create(&path, header()).unwrap();
        j.append(&pass("pool/7x7x8", 0, 10.0)).unwrap();
        drop(j);
        // A writer killed mid-line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"type\":\"pass\",\"key\":\"pool/7").unwrap();
        drop(f);
        let (mut j, records) = Journal::resume(&path).unwrap();
        assert_eq!(records.len(), 2);
        j.append(&pass("pool/7x7x8", 1, 20.0)).unwrap();
        drop(j);
        let (_, records) = Journal::resume(&path).unwrap();
        assert_eq!(records.len(), 3);
        assert!(Journal::create(&path, header()).unwrap_err().to_string().contains("--resume"));
    }

    #[test]
    fn a_corrupt_middle_line_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let mut text = serde_json::to_string(&header()).unwrap();
        text.push_str("\n{garbage}\n");
        text.push_str(&serde_json::to_string(&pass("pool/7x7x8", 0, 1.0)).unwrap());
        text.push('\n');
        std::fs::write(&path, text).unwrap();
        let err = Journal::resume(&path).unwrap_err().to_string();
        assert!(err.contains(":2:") && err.contains("bad journal record"), "{err}");
        std::fs::write(&path, "").unwrap();
        assert!(Journal::resume(&path).unwrap_err().to_string().contains("header"));
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
