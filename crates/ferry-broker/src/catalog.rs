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
/// See [`AtomicFile`], which writes it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BrokerError> {
    let mut file = AtomicFile::create(path)?;
    file.write(bytes)?;
    file.commit()
}

/// A file written piece by piece under a temporary name, then made durable and renamed into
/// place by [`AtomicFile::commit`] (until then, and if it is dropped instead, `path` keeps its
/// old contents and the temporary file is removed).
///
/// A large file (a queue checkpoint can be tens of MiB) goes to the disk a chunk at a time:
/// each completed chunk is sent to the disk and waited for before more is written, so that at
/// most one chunk of it is ever queued in front of the logs' `fdatasync`s. Dumped whole, its
/// writeback made every log sync that ran meanwhile wait milliseconds (measured in
/// `docs/benchmarks.md`).
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::fs::File>,
    /// Bytes written so far, and how many of them were already sent to the disk.
    written: usize,
    written_out: usize,
}

impl AtomicFile {
    pub fn create(path: &Path) -> Result<AtomicFile, BrokerError> {
        let mut tmp = PathBuf::from(path);
        tmp.as_mut_os_string().push(".tmp");
        let file = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, "creating", e))?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            tmp,
            file: Some(file),
            written: 0,
            written_out: 0,
        })
    }

    fn file(&self) -> &std::fs::File {
        self.file.as_ref().expect("open until committed")
    }

    /// Appends `bytes`.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), BrokerError> {
        for piece in bytes.chunks(WRITE_THROUGH_CHUNK) {
            let mut file = self.file();
            file.write_all(piece)
                .map_err(|e| io_err(&self.tmp, "writing", e))?;
            self.written += piece.len();
            let complete = self.written - self.written % WRITE_THROUGH_CHUNK;
            if complete > self.written_out {
                write_out(self.file(), self.written_out, complete - self.written_out)
                    .map_err(|e| io_err(&self.tmp, "writing out", e))?;
                self.written_out = complete;
            }
        }
        Ok(())
    }

    /// Overwrites bytes already written at `offset` (a header whose fields are known only at
    /// the end).
    pub fn write_at(&self, bytes: &[u8], offset: u64) -> Result<(), BrokerError> {
        use std::os::unix::fs::FileExt;
        debug_assert!(offset as usize + bytes.len() <= self.written);
        self.file()
            .write_all_at(bytes, offset)
            .map_err(|e| io_err(&self.tmp, "writing", e))
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.written
    }

    /// Syncs the file and renames it into place, then syncs the directory.
    pub fn commit(mut self) -> Result<(), BrokerError> {
        let file = self.file.take().expect("open until committed");
        file.sync_all()
            .map_err(|e| io_err(&self.tmp, "syncing", e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path)
            .map_err(|e| io_err(&self.path, "renaming into", e))?;
        sync_dir(self.path.parent().unwrap_or(Path::new(".")))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
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
    fn an_atomic_file_replaces_the_old_one_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        write_atomic(&path, b"old").unwrap();
        let mut file = AtomicFile::create(&path).unwrap();
        file.write(&[0; 4]).unwrap();
        file.write(&vec![7; 2 * WRITE_THROUGH_CHUNK + 1]).unwrap();
        drop(file);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"old",
            "dropped: nothing replaced"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        let mut file = AtomicFile::create(&path).unwrap();
        file.write(&[0; 4]).unwrap();
        file.write(b"body").unwrap();
        file.write_at(b"head", 0).unwrap();
        assert_eq!(file.len(), 8);
        file.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"headbody");
    }

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
