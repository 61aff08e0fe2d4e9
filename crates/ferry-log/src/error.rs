//! The one error type of the crate.

use std::path::{Path, PathBuf};

/// Everything that can go wrong in a [`Log`](crate::Log).
///
/// Errors name the file (and for corruption the byte position inside it) so an operator can
/// inspect the damage with `xxd` or `hexdump` without guessing.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An operating-system I/O call failed on `path`.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Bytes on disk fail their checks (CRC, length, offset sequence, index consistency).
    #[error("corrupt data in {} at byte {position}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    /// The requested offset is not in `[start, next]` (or, for single entries, `[start, next)`).
    #[error("offset {offset} is out of range: the log holds offsets [{start}, {next})")]
    OffsetOutOfRange { offset: u64, start: u64, next: u64 },
    /// An entry's payload exceeds `LogConfig::max_entry_bytes`.
    #[error("entry of {size} bytes exceeds the maximum of {max} bytes")]
    EntryTooLarge { size: usize, max: usize },
    /// The log was closed (explicitly or by dropping every handle).
    #[error("the log is closed")]
    Closed,
    /// A write or fdatasync failed earlier. The log refuses further appends: after a failed
    /// fsync the kernel may have dropped the dirty pages, so retrying could report success for
    /// data that is gone ("fsyncgate"). Reopen the log to recover from what is on disk.
    #[error("the log stopped after a failed write or sync: {0}")]
    Poisoned(String),
}

impl LogError {
    /// Builds a closure that wraps an `io::Error` with the path it happened on.
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
        move |source| LogError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &Path, position: u64, reason: impl Into<String>) -> LogError {
        LogError::Corrupt {
            path: path.to_path_buf(),
            position,
            reason: reason.into(),
        }
    }
}
