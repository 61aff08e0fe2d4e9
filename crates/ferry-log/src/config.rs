//! Configuration of a [`Log`](crate::Log) and the statistics it reports.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::frame::MAX_ENTRY_BYTES_LIMIT;
use crate::tail_cache::TailCache;

/// Largest accepted `segment_bytes`. Positions inside a segment are stored as `u32` in the
/// offset index, and a segment may exceed `segment_bytes` by one entry, so the cap keeps every
/// position below 4 GiB.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

/// When an appended entry counts as durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Written and `fdatasync`ed before it is acknowledged (group commit keeps this cheap).
    Always,
    /// Acknowledged once written to the file; `fdatasync` runs at most once per interval.
    /// A power loss can lose up to one interval of acknowledged entries.
    Interval(Duration),
    /// Acknowledged once written to the file; synced only when a segment rolls and on close.
    Never,
}

/// What one write batch cost, reported to [`LogConfig::on_sync`] (for metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Time spent in `fdatasync` (zero if this batch was not synced).
    pub duration: Duration,
    /// Bytes written by the batch (zero for a deferred `Interval` sync).
    pub bytes: u64,
    /// Entries written by the batch (zero for a deferred `Interval` sync).
    pub entries: u64,
}

/// Observer called on the writer thread after every write batch and every deferred sync.
/// It must be cheap: the next group commit waits for it.
pub type SyncObserver = Arc<dyn Fn(SyncStats) + Send + Sync>;

/// How a log is laid out on disk and how hard it syncs.
#[derive(Clone)]
pub struct LogConfig {
    /// Roll to a new segment when the active one would exceed this size (capped at
    /// [`MAX_SEGMENT_BYTES`]; a single entry larger than this still gets a segment of its own).
    pub segment_bytes: u64,
    /// One sparse offset-index and time-index entry per this many bytes of log.
    pub index_interval_bytes: u32,
    pub durability: Durability,
    /// Larger payloads are refused with `LogError::EntryTooLarge` (capped at 256 MiB).
    pub max_entry_bytes: u32,
    /// Metrics observer, see [`SyncObserver`].
    pub on_sync: Option<SyncObserver>,
    /// Under `Durability::Always`, keep up to this many zero-filled bytes ahead of the write
    /// position of the active segment (0: off; the stretch grows with the segment's data from
    /// 64 KiB, so quiet logs hold little zero-filled space). The zeros are cut off when the
    /// segment rolls or the log closes. Overwriting zeros that are already on disk
    /// lets `fdatasync` skip the inode update that appending needs, which makes each sync
    /// cheaper, at the price of writing every byte twice (once as zeros, in the background).
    /// Worth it for logs whose appends wait on many small syncs (queues); not for logs that
    /// are bound by write bandwidth (streams). A log whose active segment reaches an eighth of
    /// `segment_bytes` also gets its next segment prepared whole, as a spare file of zeros
    /// or, without writing anything, as the file of a segment `truncate_before` removed (it
    /// keeps up to two of those for that); so a busy log holds up to three segments more on
    /// disk than its data.
    pub preallocate_bytes: u64,
    /// Write and read the segments with direct I/O (`O_DIRECT`), bypassing the page cache,
    /// where the file system allows it. Every write then rewrites the partial page the data
    /// ended in and pads to a whole page. Worth it for logs bound by write bandwidth (streams),
    /// where copying into fresh page-cache pages costs more CPU than the disk write; not for
    /// logs whose recent entries are read back at once (queues), which would then come from
    /// the disk (unless a `tail_cache` holds them).
    pub direct_io: bool,
    /// Keep the newest written entries in memory, within this shared budget, and serve range
    /// reads ([`Log::read`](crate::Log::read)) of them from there (see [`TailCache`]).
    pub tail_cache: Option<Arc<TailCache>>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 64 << 20,
            index_interval_bytes: 4096,
            durability: Durability::Always,
            max_entry_bytes: 16 << 20,
            on_sync: None,
            preallocate_bytes: 0,
            direct_io: false,
            tail_cache: None,
        }
    }
}

impl fmt::Debug for LogConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogConfig")
            .field("segment_bytes", &self.segment_bytes)
            .field("index_interval_bytes", &self.index_interval_bytes)
            .field("durability", &self.durability)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .field("on_sync", &self.on_sync.as_ref().map(|_| "Fn(SyncStats)"))
            .field("preallocate_bytes", &self.preallocate_bytes)
            .field("direct_io", &self.direct_io)
            .field("tail_cache", &self.tail_cache)
            .finish()
    }
}

impl LogConfig {
    /// Clamps the limits into the ranges the on-disk format can represent.
    pub(crate) fn normalized(mut self) -> LogConfig {
        self.segment_bytes = self.segment_bytes.clamp(1, MAX_SEGMENT_BYTES);
        self.max_entry_bytes = self.max_entry_bytes.min(MAX_ENTRY_BYTES_LIMIT);
        self
    }
}
