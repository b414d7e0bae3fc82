//! Durable replacement of a file: the bytes go to a temporary file beside it, are flushed to the
//! disk, and the temporary file is renamed over the target, the directory flushed too. A crash
//! or a power cut at any point leaves the old file or the new one whole, never an empty or
//! half-written one (a rename alone is not enough: without the flush it can reach the disk
//! before the data does).

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes` through `tmp` (a path in the same directory).
pub fn replace(path: &Path, tmp: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(tmp, path)?;
    sync_dir(path)
}

/// Flushes the directory that holds `path` (its entries: a rename or a new file in it).
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Directories can be opened and flushed on Unix only; elsewhere a rename is what there is.
    if cfg!(unix) {
        File::open(dir)?.sync_all()
    } else {
        Ok(())
    }
}

/// Flushes a file already written (e.g. by a library that wrote it by path).
pub fn sync_file(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_holds_the_new_bytes_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        let tmp = dir.path().join("t.json.tmp");
        std::fs::write(&path, "old").unwrap();
        replace(&path, &tmp, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert!(!tmp.exists());
        // A bare file name resolves its directory to the current one.
        sync_dir(Path::new("relative.json")).unwrap();
    }
}
