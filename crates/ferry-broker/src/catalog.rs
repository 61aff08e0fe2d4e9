//! The catalog: queue definitions, tags, timestamps, incarnations and message move tasks.
//!
//! Small metadata, persisted as one JSON file (`<data_dir>/catalog.json`) rewritten atomically
//! on every change: write `catalog.json.tmp`, fsync it, rename it over `catalog.json`, fsync the
//! directory. A crash leaves either the old or the new file, never a mix.

use crate::error::BrokerError;
use crate::types::QueueAttributes;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const CATALOG_FILE: &str = "catalog.json";
const CATALOG_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QueueEntry {
    pub attributes: QueueAttributes,
    pub tags: BTreeMap<String, String>,
    pub created_ms: u64,
    pub modified_ms: u64,
    /// Unique across the catalog's lifetime: a re-created queue gets a new directory and old
    /// receipt handles stop matching.
    pub incarnation: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MoveTaskRecord {
    pub handle: String,
    pub source: String,
    pub destination: Option<String>,
    pub max_per_second: Option<u32>,
    /// RUNNING, COMPLETED, CANCELLING, CANCELLED, FAILED.
    pub status: String,
    pub moved: u64,
    pub to_move: u64,
    pub started_ms: u64,
    pub failure_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Catalog {
    pub version: u32,
    pub next_incarnation: u64,
    pub queues: BTreeMap<String, QueueEntry>,
    #[serde(default)]
    pub move_tasks: Vec<MoveTaskRecord>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            version: CATALOG_VERSION,
            next_incarnation: 1,
            queues: BTreeMap::new(),
            move_tasks: Vec::new(),
        }
    }
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> BrokerError {
    BrokerError::Storage(format!("{what} {}: {e}", path.display()))
}

impl Catalog {
    pub fn load(dir: &Path) -> Result<Catalog, BrokerError> {
        let path = dir.join(CATALOG_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let c: Catalog = serde_json::from_slice(&bytes).map_err(|e| {
                    BrokerError::Storage(format!("catalog {} is corrupt: {e}", path.display()))
                })?;
                if c.version != CATALOG_VERSION {
                    return Err(BrokerError::Storage(format!(
                        "catalog {} has unknown version {}",
                        path.display(),
                        c.version
                    )));
                }
                Ok(c)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Catalog::default()),
            Err(e) => Err(io_err(&path, "reading", e)),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), BrokerError> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| BrokerError::Storage(format!("encoding the catalog: {e}")))?;
        write_atomic(&dir.join(CATALOG_FILE), &bytes)
    }
}

/// Files larger than this are written out a chunk at a time (see [`write_atomic`]).
const WRITE_THROUGH_CHUNK: usize = 256 << 10;

/// Writes `path` atomically and durably (tmp file, fsync, rename, fsync of the directory).
///
/// A large file (a queue checkpoint can be tens of MiB) is written a chunk at a time, each
/// chunk sent to the disk and waited for before the next is written, so that at most one
/// chunk of it is ever queued in front of the logs' `fdatasync`s: dumped whole, its writeback
/// made every log sync that ran meanwhile wait milliseconds (measured in `docs/benchmarks.md`).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BrokerError> {
    let mut tmp = PathBuf::from(path);
    tmp.as_mut_os_string().push(".tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, "creating", e))?;
    let write_through = bytes.len() > WRITE_THROUGH_CHUNK;
    let mut offset = 0;
    for chunk in bytes.chunks(WRITE_THROUGH_CHUNK) {
        f.write_all(chunk).map_err(|e| io_err(&tmp, "writing", e))?;
        if write_through {
            write_out(&f, offset, chunk.len()).map_err(|e| io_err(&tmp, "writing out", e))?;
        }
        offset += chunk.len();
    }
    f.sync_all().map_err(|e| io_err(&tmp, "syncing", e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, "renaming into", e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Starts writeback of `[offset, offset + len)` of `f` and waits for it (not a durability
/// point: no cache flush, no metadata; the caller syncs the file at the end).
#[cfg(target_os = "linux")]
fn write_out(f: &std::fs::File, offset: usize, len: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: a plain system call on a file descriptor `f` keeps open.
    let rc = unsafe { libc::sync_file_range(f.as_raw_fd(), offset as i64, len as i64, flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn write_out(_f: &std::fs::File, _offset: usize, _len: usize) -> std::io::Result<()> {
    Ok(())
}

pub fn sync_dir(dir: &Path) -> Result<(), BrokerError> {
    let d = std::fs::File::open(dir).map_err(|e| io_err(dir, "opening directory", e))?;
    d.sync_all()
        .map_err(|e| io_err(dir, "syncing directory", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_files_are_written_whole_in_chunks_and_replace_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        write_atomic(&path, b"old").unwrap();
        let bytes: Vec<u8> = (0..3 * WRITE_THROUGH_CHUNK + 7)
            .map(|i| (i % 251) as u8)
            .collect();
        write_atomic(&path, &bytes).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert!(!dir.path().join("big.tmp").exists());
    }

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Catalog::load(dir.path()).unwrap(), Catalog::default());
        let mut c = Catalog::default();
        c.queues.insert(
            "q".into(),
            QueueEntry {
                attributes: QueueAttributes::default(),
                tags: BTreeMap::new(),
                created_ms: 1,
                modified_ms: 2,
                incarnation: 3,
            },
        );
        c.save(dir.path()).unwrap();
        assert_eq!(Catalog::load(dir.path()).unwrap(), c);
        std::fs::write(dir.path().join(CATALOG_FILE), b"{not json").unwrap();
        assert!(matches!(
            Catalog::load(dir.path()),
            Err(BrokerError::Storage(_))
        ));
    }
}
