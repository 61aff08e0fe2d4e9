//! `ferry-log`: Ferry's storage engine. Segmented, CRC-framed, group-committed append-only
//! logs. It knows entries, offsets and files, and nothing about queues or streams.
//!
//! # Files
//!
//! A log is a directory of segments, each named by the offset of its first entry:
//!
//! ```text
//! 00000000000000000000.log        frames of entries with offsets [0, 1234)
//! 00000000000000000000.index      sparse offset index (closed segments only)
//! 00000000000000000000.timeindex  sparse time index   (closed segments only)
//! 00000000000000001234.log        the active segment: appends go here
//! .lock                           flock held while a `Log` has the directory open
//! spare-segment                   a busy log's next segment, prepared (see below)
//! recycled-segment.0, .1          files of removed segments kept to become spares
//! ```
//!
//! Each entry is one frame (all integers little-endian):
//!
//! ```text
//! byte  size  field
//!    0     4  length         u32: bytes after this field = 24 + payload length
//!    4     4  crc32c         u32: CRC32C of bytes 8 .. 4 + length (everything after the CRC)
//!    8     8  base_offset    u64: first offset of the entry
//!   16     8  timestamp_ms   i64
//!   24     4  offset_count   u32: offsets spanned (>= 1; a Kafka batch spans one per record)
//!   28     n  payload
//! ```
//!
//! Every `index_interval_bytes` (and for the first and, once closed, the last frame of each
//! segment) the sparse indexes record where a frame starts and the running maximum timestamp:
//!
//! ```text
//! .index      n × [relative_offset u32][position u32]          relative to the base offset
//! .timeindex  n × [max_timestamp_ms i64][relative_offset u32]  running max: monotonic
//! ```
//!
//! A segment rolls when the next frame would take it past `segment_bytes`; the closed segment
//! is synced and its index files are written and synced before the next segment file is
//! created (and the directory synced).
//!
//! # Writing: group commit
//!
//! [`Log::append`] assigns offsets under one mutex, encodes the frames into the current write
//! batch and returns; it never does I/O. One writer thread per log writes a whole batch with
//! one `pwrite` and, under [`Durability::Always`], gets one `fdatasync` run for it, which then
//! wakes every waiter once. While syncs are quick (averaging under 500 µs) and none is
//! running, the writer runs the sync itself: one thread hand-off fewer per commit, and what
//! is appended meanwhile forms the next batch. Otherwise it hands the sync to a syncer thread
//! and writes the next batch at once; the next sync claims everything written meanwhile.
//! Syncs overlap only when they are slow: another sync starts beside a running one only once
//! that one has run for 1 ms, up to four at once (each makes durable everything written
//! before it started). On a disk that flushes in a few hundred microseconds, overlapping
//! flushes queue in the device and slow each other down; on a loaded machine where a lone
//! `fdatasync` takes milliseconds, overlapping keeps a batch from waiting on a sync that does
//! not cover it. Whatever is appended while a batch is
//! written forms the next batch (capped at 4 MiB), so the number of syncs adapts to the load.
//! At most 8 MiB (or one batch, if larger) is ever written but not yet synced, and the
//! writer lets every sync finish before it rolls to a new segment. Syncer threads start on
//! demand and exit after 5 s idle.
//!
//! With [`LogConfig::preallocate_bytes`] the syncer threads also keep zeros, written with direct
//! I/O, ahead of the writer in the active segment: overwriting zeros already on disk spares
//! `fdatasync` the inode update that appending needs. In zero-filled space the writer pads
//! each write with zeros to the end of its last page (the file's bytes do not change; in a
//! recycled file, described below, they overwrite old bytes nothing reads), so the
//! page stays whole in the page cache and the next write never reads it back from the disk.
//! Zero-filled space is cut off when the segment rolls and when the log closes, so only the
//! active segment ever has it. Once the active segment holds an eighth of its rolling size, a
//! syncer thread also prepares the next segment whole, as a zero-filled and synced spare file,
//! which the roll renames into place: extending the active segment a stretch at a time makes
//! the next `fdatasync` commit the file's new size and blocks (about a millisecond on the
//! disk measured in `docs/benchmarks.md`), a prepared segment never does. Such a log also
//! recycles: retention ([`Log::truncate_before`]) keeps up to two removed segments' files (at
//! least half full, and only when no reader holds the segment), and the next spare is one of
//! them, renamed, instead of a new segment of zeros; the new segment's data then overwrites
//! the old frames in place. Recovery deletes a spare or recycled file left by a crash; closing
//! the log deletes them too.
//! `Interval(d)` writes immediately and syncs at most every `d`; `Never` syncs only on roll
//! and close. Under the relaxed modes "durable" means
//! written to the file: it survives a process crash, not a power loss.
//!
//! # Recovery and torn tails
//!
//! On open every closed segment's index is checked (and rebuilt by a full scan if missing or
//! inconsistent), and the last segment is scanned frame by frame. Entries of one `append`
//! are never lost out of order: recovery keeps the longest intact prefix, and batches are
//! written and synced in offset order. Zeros after the last intact frame of the last segment
//! are zero-filled space, the clean end of the data; otherwise a bad frame (bad length, CRC or
//! offset) is classified, counting only the bytes up to the last non-zero one after it:
//!
//! * in a segment other than the last: **corruption** (that segment was synced before the
//!   next one was created), open fails with [`LogError::Corrupt`] naming file and position;
//! * in the last segment under `Always`: only bytes written but not yet synced can be torn,
//!   and there are never more than 8 MiB of those (or one maximum-size frame, if larger). If
//!   no more than that follows the bad frame, it is a **torn tail**: truncated, with a
//!   `tracing::warn!`. If more follows, valid or not, it is **corruption**. Truncating at the
//!   first bad frame never drops an acknowledged entry: a sync that acknowledged an entry
//!   also made durable everything written before it;
//! * in the last segment under `Always`, reusing a recycled file: the old frames after the new
//!   data are the **end of the data** and are cut off. They are recognised as a chain of intact
//!   frames (CRC, length and offset continuity), every one of them below the segment's base
//!   offset (the old segment was older than anything in this one), starting within the
//!   torn-write window plus one frame of the first bad frame and running to the end of the
//!   file's non-zero bytes. This segment's own frames cannot pass that test (their offsets are
//!   the base or above), so a corrupt frame followed by more than the window of them is still
//!   corruption;
//! * in the last segment under `Interval`/`Never`: any number of unsynced batches may have
//!   been lost in any order, so everything from the first bad frame on is treated as a torn
//!   tail and truncated. These modes can lose their unsynced window on power loss, and a
//!   flipped bit in their last segment also truncates everything after it.
//!
//! The rule uses the durability of the configuration passed to [`Log::open`]; opening a log
//! written under a relaxed mode with `Always` after a power loss may report corruption.
//! Corruption elsewhere in closed segments is caught when it is read: no read ever returns
//! data whose CRC does not match.
//!
//! # Reading
//!
//! Reads run on the caller's thread with `pread`, concurrently with the writer and each
//! other. A lookup binary-searches the in-memory sparse index and scans at most one index
//! interval, so [`Log::read_entry`] is usually one `pread`. [`Log::read_entries`] looks up
//! many offsets at once and scans on from one to the next while they are near each other
//! (within 64 KiB), so entries appended together, such as a batch of queue messages, cost
//! one `pread` between them rather than one each.
//!
//! A log given a [`TailCache`] (`LogConfig::tail_cache`, one budget shared by many logs)
//! keeps its newest written batches in memory, as the very buffers the writer wrote, and
//! [`Log::read`] answers from them without a `pread`, a copy or a CRC check while the entry
//! asked for is still held ([`Log::read_cached`] answers only from memory). The oldest batches
//! of any log sharing the budget are evicted first, and their buffers reused for new batches.
//! For a reader going through the files in order, [`Log::prefetch`] reads its next run ahead
//! on another thread; a read of that run is then answered from memory too (or waits for the
//! prefetch still loading it instead of reading it twice).
//!
//! # Notes for callers
//!
//! * [`Log`] is `Clone + Send + Sync`; clones share one writer thread. Offsets are assigned
//!   in the order `append` calls take the internal lock, so a caller that appends while
//!   holding its own lock gets log order equal to its own state order.
//! * Calls that can block the thread: `append` (only under back-pressure, when 16 MiB are
//!   queued), `read_entry` and `read_entries` (only for an offset appended but not yet
//!   written, for at most one write batch), `wait_durable_blocking`, `close` and dropping the
//!   last handle (both wait for the final `fdatasync`), `open` and `truncate_before` (file
//!   system calls), and reads (`pread`). `wait_durable` and `append_durable` wait without
//!   blocking.
//! * `read` returns only entries already written; `read_entry` and `read_entries` wait for
//!   them. An offset inside a multi-offset entry yields that whole entry (its `offset` is the
//!   base offset).
//! * After a failed write or sync the log is poisoned: appends, waits and retention fail
//!   with [`LogError::Poisoned`]; reads of what was written keep working. Reopen to recover.
//! * Resources: one writer thread per open log, one file descriptor per segment, and an
//!   in-memory index of 16 bytes per `index_interval_bytes` of log (0.4% at the default).
//! * The `on_sync` observer runs on the writer thread: keep it short. If it owns the last
//!   `Log` handle and drops it, the log closes without waiting for the final sync.

mod aligned;
mod config;
mod cursor;
mod entry;
mod error;
mod frame;
mod index;
mod log;
mod progress;
mod queue;
mod readahead;
mod recovery;
mod segment;
mod syncer;
mod tail_cache;
mod writer;

pub use config::{Durability, LogConfig, SyncObserver, SyncStats, MAX_SEGMENT_BYTES};
pub use entry::{Appended, Entry, StoredEntry};
pub use error::LogError;
pub use log::Log;
pub use segment::SegmentInfo;
pub use tail_cache::{TailCache, TailCacheStats};
