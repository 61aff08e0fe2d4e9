//! The public [`Log`] handle: appends go to the queue, reads go straight to the segments.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use fs2::FileExt;
use parking_lot::{Condvar, Mutex, RwLock};

use crate::config::{Durability, LogConfig};
use crate::entry::{Appended, Entry, StoredEntry};
use crate::error::LogError;
use crate::frame::HEADER_BYTES;
use crate::progress::{Progress, Watermark};
use crate::queue::AppendQueue;
use crate::readahead::{Found, Readahead, PREFETCH_MAX_BYTES};
use crate::recovery;
use crate::segment::{sync_dir, ReadProgress, Segment, SegmentInfo, MAX_RECYCLED};
use crate::tail_cache::CachedTail;
use crate::writer;

/// Name of the lock file that keeps two `Log`s (or processes) from opening one directory.
const LOCK_FILE: &str = ".lock";

/// Where a read answered from memory found its entries.
enum Memory {
    TailCache,
    ReadAhead,
}

/// State shared by every handle and the writer thread.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub config: LogConfig,
    pub queue: Mutex<AppendQueue>,
    /// Signalled when a batch is queued or the log closes (the writer waits on it).
    pub work_available: Condvar,
    /// Signalled when the writer drains the queue (appenders under back-pressure wait on it).
    pub space_available: Condvar,
    /// Every segment in offset order; the last one is the writer's active segment.
    pub segments: RwLock<Vec<Arc<Segment>>>,
    pub progress: Progress,
    /// This log's part of `config.tail_cache`, if it has one (with a budget of 0 it holds
    /// nothing and counts every read as a miss).
    pub tail: Option<Arc<CachedTail>>,
    /// What [`Log::prefetch`] read ahead.
    readahead: Readahead,
    /// Offsets assigned so far (mirrors the queue, readable without its lock).
    next_offset: AtomicU64,
    closed: AtomicBool,
    /// Holds the directory's exclusive `flock` until close (or until the writer is gone).
    dir_lock: Mutex<Option<File>>,
    /// How many segment files retention removed wait (at `recycled-segment.0` and up) to
    /// become spare segments. Held while such a file is renamed in or out.
    pub recycled: Mutex<usize>,
}

impl Shared {
    /// Whether retention keeps a removed segment's file to reuse as the next spare segment
    /// (only logs that prepare spares: `Always` with preallocation), and this one is worth
    /// it: at least half the rolling size, and held by no reader (which would otherwise read
    /// the file while it is overwritten).
    fn worth_recycling(&self, segment: &Arc<Segment>) -> bool {
        self.config.durability == Durability::Always
            && self.config.preallocate_bytes > 0
            && segment.size() >= self.config.segment_bytes / 2
            && Arc::strong_count(segment) == 1
    }
}

/// An append-only log of entries in segment files under one directory.
///
/// Cheap to clone; all clones share one writer thread. `Send + Sync`: any number of threads
/// may append, read and wait concurrently. The log closes when [`Log::close`] is called or
/// the last clone is dropped.
#[derive(Clone)]
pub struct Log {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.shared().dir)
            .field("start_offset", &self.start_offset())
            .field("next_offset", &self.next_offset())
            .field("durable_offset", &self.durable_offset())
            .finish()
    }
}

struct Handle {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Log {
    /// Opens the log in `dir`, creating the directory if missing, and runs recovery (see the
    /// crate documentation). Fails with `Io` (`WouldBlock`) if another `Log` has it open.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Log, LogError> {
        let dir = dir.as_ref().to_path_buf();
        let config = config.normalized();
        std::fs::create_dir_all(&dir).map_err(LogError::io(&dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(LogError::io(&lock_path))?;
        lock.try_lock_exclusive()
            .map_err(LogError::io(&lock_path))?;

        let segments = recovery::recover(&dir, &config)?;
        let active = Arc::clone(
            segments
                .last()
                .ok_or_else(|| LogError::corrupt(&dir, 0, "no segment after recovery"))?,
        );
        let (next_offset, active_bytes) = {
            let meta = active.meta();
            (meta.next_offset, meta.size)
        };
        let tail = config
            .tail_cache
            .as_ref()
            .map(|cache| CachedTail::new(Arc::clone(cache)));
        let shared = Arc::new(Shared {
            queue: Mutex::new(AppendQueue::new(
                next_offset,
                active.base_offset(),
                active_bytes,
                tail.as_ref().filter(|t| t.enabled()).map(|t| t.cache()),
            )),
            work_available: Condvar::new(),
            space_available: Condvar::new(),
            segments: RwLock::new(segments),
            progress: Progress::new(next_offset),
            tail,
            readahead: Readahead::default(),
            next_offset: AtomicU64::new(next_offset),
            closed: AtomicBool::new(false),
            dir_lock: Mutex::new(Some(lock)),
            recycled: Mutex::new(0),
            dir,
            config,
        });
        let writer =
            writer::spawn(Arc::clone(&shared), active).map_err(LogError::io(&shared.dir))?;
        Ok(Log {
            handle: Arc::new(Handle {
                shared,
                writer: Mutex::new(Some(writer)),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// Assigns offsets to `entries`, in call order, and queues them for the writer thread.
    ///
    /// Does not wait for the disk, with one exception: when more than 16 MiB are waiting to
    /// be written, it blocks until the writer catches up (back-pressure keeps memory bounded).
    /// All entries are validated before any is assigned an offset, so a failed call appends
    /// nothing. An `offset_count` of 0 is refused with an `Io` error of kind `InvalidInput`.
    pub fn append(&self, entries: &[Entry]) -> Result<Appended, LogError> {
        let shared = self.shared();
        let max = shared.config.max_entry_bytes as usize;
        let mut offsets: u64 = 0;
        for entry in entries {
            if entry.len() > max {
                return Err(LogError::EntryTooLarge {
                    size: entry.len(),
                    max,
                });
            }
            if entry.offset_count == 0 {
                return Err(self.invalid_input("an entry must span at least one offset"));
            }
            offsets += u64::from(entry.offset_count);
        }
        let mut queue = shared.queue.lock();
        loop {
            if queue.closed {
                return Err(LogError::Closed);
            }
            if let Some(reason) = shared.progress.failure() {
                return Err(LogError::Poisoned(reason.to_string()));
            }
            if !queue.is_full() {
                break;
            }
            shared.space_available.wait(&mut queue);
        }
        if queue.next_offset().checked_add(offsets).is_none() {
            return Err(self.invalid_input("the log has run out of offsets"));
        }
        if entries.is_empty() {
            let next = queue.next_offset();
            return Ok(Appended {
                base_offset: next,
                next_offset: next,
            });
        }
        let appended = queue.push(entries, shared.config.segment_bytes);
        shared
            .next_offset
            .store(appended.next_offset, Ordering::Release);
        drop(queue);
        shared.work_available.notify_one();
        Ok(appended)
    }

    /// Resolves once every entry below `offset` is durable under the configured policy
    /// (`Always`: written and `fdatasync`ed; `Interval`/`Never`: written, i.e. readable).
    /// `offset` may be at most [`Log::next_offset`].
    pub async fn wait_durable(&self, offset: u64) -> Result<(), LogError> {
        self.check_waitable(offset)?;
        self.shared()
            .progress
            .wait(Watermark::Durable, offset)
            .await
    }

    /// [`Log::wait_durable`] for threads outside an async runtime.
    pub fn wait_durable_blocking(&self, offset: u64) -> Result<(), LogError> {
        self.check_waitable(offset)?;
        self.shared()
            .progress
            .wait_blocking(Watermark::Durable, offset)
    }

    /// [`Log::append`] followed by [`Log::wait_durable`] for the appended entries.
    pub async fn append_durable(&self, entries: &[Entry]) -> Result<Appended, LogError> {
        let appended = self.append(entries)?;
        self.shared()
            .progress
            .wait(Watermark::Durable, appended.next_offset)
            .await?;
        Ok(appended)
    }

    /// The entries from the one containing `from` onwards, in order, while their total frame
    /// size (payload + 28 bytes each) stays within `max_bytes`; at least one entry if any is
    /// readable. Returns only entries already written to the file (an empty vector when
    /// `from` is the end of the written log). Every entry read from a file is CRC-checked;
    /// entries still in the tail cache or read ahead by [`Log::prefetch`] come from memory.
    /// Waits for a prefetch that is reading from `from`.
    pub fn read(&self, from: u64, max_bytes: usize) -> Result<Vec<StoredEntry>, LogError> {
        self.check_readable(from)?;
        let mut out = match self.read_memory(from, max_bytes, true) {
            Some((entries, Memory::TailCache)) => return Ok(entries),
            Some((entries, Memory::ReadAhead)) => entries,
            None => {
                if let Some(tail) = &self.shared().tail {
                    tail.count_miss();
                }
                return self.read_files(from, max_bytes);
            }
        };
        // The prefetched run may end before the budget does: go on from the files, by the
        // same rule, as one read would have.
        let used: usize = out.iter().map(|e| e.payload.len() + HEADER_BYTES).sum();
        let next = out.last().map_or(from, StoredEntry::next_offset);
        if used < max_bytes && next < self.written_offset() {
            let remaining = max_bytes - used;
            let rest = self.read_files(next, remaining)?;
            // `read_files` always returns its first entry; this read only if it fits.
            if rest
                .first()
                .is_some_and(|e| e.payload.len() + HEADER_BYTES <= remaining)
            {
                out.extend(rest);
            }
        }
        Ok(out)
    }

    /// [`Log::read`] if the tail cache or the read-ahead holds the entry containing `from`,
    /// without touching the disk or waiting; `None` if neither does. A read-ahead answer may
    /// end before `max_bytes` where the prefetched run ends.
    pub fn read_cached(
        &self,
        from: u64,
        max_bytes: usize,
    ) -> Result<Option<Vec<StoredEntry>>, LogError> {
        self.check_readable(from)?;
        Ok(self
            .read_memory(from, max_bytes, false)
            .map(|(entries, _)| entries))
    }

    /// The range read from `from` out of the tail cache, else out of the read-ahead (waiting
    /// for a prefetch loading from `from` when `wait`), and where it came from; counted.
    fn read_memory(
        &self,
        from: u64,
        max_bytes: usize,
        wait: bool,
    ) -> Option<(Vec<StoredEntry>, Memory)> {
        let shared = self.shared();
        if let Some(cached) = shared.tail.as_ref().and_then(|t| t.read(from, max_bytes)) {
            return Some((cached, Memory::TailCache));
        }
        match shared.readahead.read(from, max_bytes, wait) {
            Found::Entries(entries) => {
                if let Some(tail) = &shared.tail {
                    tail.count_read_ahead_hit();
                }
                Some((entries, Memory::ReadAhead))
            }
            Found::Missing => None,
        }
    }

    /// Whether a reader about to read from `from` would read the files: `from` is written but
    /// neither in the tail cache nor read ahead (or being read ahead).
    pub fn needs_prefetch(&self, from: u64) -> bool {
        let shared = self.shared();
        from >= self.start_offset()
            && from < self.written_offset()
            && !shared.tail.as_ref().is_some_and(|t| t.holds(from))
            && !shared.readahead.covers(from)
    }

    /// Reads the entries from `from` (about `max_bytes` of them, at most 8 MiB) from the files
    /// into memory, for the next [`Log::read`] or [`Log::read_cached`] from `from` to find
    /// there. Blocking: meant for a background thread while the reader handles its last read.
    /// Replaces what an earlier prefetch read; does nothing if `from` is not a place a reader
    /// would read the files from (see [`Log::needs_prefetch`]).
    pub fn prefetch(&self, from: u64, max_bytes: usize) -> Result<(), LogError> {
        if !self.needs_prefetch(from) || !self.shared().readahead.begin(from) {
            return Ok(());
        }
        let read = self.read_files(from, max_bytes.min(PREFETCH_MAX_BYTES));
        match read {
            Ok(entries) => {
                self.shared().readahead.finish(from, Some(entries));
                Ok(())
            }
            Err(e) => {
                self.shared().readahead.finish(from, None);
                Err(e)
            }
        }
    }

    /// Every entry below this offset has been written to the files.
    fn written_offset(&self) -> u64 {
        self.shared().progress.written()
    }

    fn check_readable(&self, from: u64) -> Result<(), LogError> {
        self.check_open()?;
        let (start, next) = (self.start_offset(), self.next_offset());
        if from < start || from > next {
            return Err(LogError::OffsetOutOfRange {
                offset: from,
                start,
                next,
            });
        }
        Ok(())
    }

    /// [`Log::read`] from the segment files (`from` checked by the caller).
    fn read_files(&self, from: u64, max_bytes: usize) -> Result<Vec<StoredEntry>, LogError> {
        let mut out = Vec::new();
        let mut budget = max_bytes;
        let mut offset = from;
        let Some(mut segment) = self.segment_for(offset) else {
            return Ok(out);
        };
        loop {
            match segment.read_from(offset, &mut budget, &mut out)? {
                ReadProgress::Full => break,
                ReadProgress::Exhausted { next_offset } => match self.segment_for(next_offset) {
                    Some(following) if following.base_offset() > segment.base_offset() => {
                        segment = following;
                        offset = next_offset;
                    }
                    _ => break,
                },
            }
        }
        Ok(out)
    }

    /// The entry containing `offset`: the one whose base offset is `offset`, or, if `offset`
    /// lies inside a multi-offset entry, that entry (check [`StoredEntry::offset`]).
    /// CRC-checked. Costs an index lookup and usually one `pread`.
    ///
    /// If `offset` was assigned by `append` but the writer has not written it yet, this waits
    /// (blocking) until it is written, which takes at most one write batch.
    pub fn read_entry(&self, offset: u64) -> Result<StoredEntry, LogError> {
        self.check_open()?;
        let out_of_range = || LogError::OffsetOutOfRange {
            offset,
            start: self.start_offset(),
            next: self.next_offset(),
        };
        if offset < self.start_offset() || offset >= self.next_offset() {
            return Err(out_of_range());
        }
        self.shared()
            .progress
            .wait_blocking(Watermark::Written, offset + 1)?;
        let segment = self.segment_for(offset).ok_or_else(out_of_range)?;
        segment.read_entry(offset)?.ok_or_else(out_of_range)
    }

    /// The entries containing each of `offsets`, in the order asked, `None` for an offset
    /// outside the log. Like [`Log::read_entry`] for each, but nearby offsets share their
    /// `pread`s: entries appended together (a batch of messages) usually cost one.
    pub fn read_entries(&self, offsets: &[u64]) -> Result<Vec<Option<StoredEntry>>, LogError> {
        self.check_open()?;
        let (start, next) = (self.start_offset(), self.next_offset());
        let mut order: Vec<usize> = (0..offsets.len())
            .filter(|&i| (start..next).contains(&offsets[i]))
            .collect();
        order.sort_unstable_by_key(|&i| offsets[i]);
        let mut out = vec![None; offsets.len()];
        let Some(&highest) = order.last() else {
            return Ok(out);
        };
        self.shared()
            .progress
            .wait_blocking(Watermark::Written, offsets[highest] + 1)?;
        let mut run: Vec<usize> = Vec::with_capacity(order.len());
        let mut run_segment: Option<Arc<Segment>> = None;
        for i in order {
            let segment = self.segment_for(offsets[i]);
            let same = match (&segment, &run_segment) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            };
            if !same {
                self.read_run(run_segment.take(), &run, offsets, &mut out)?;
                run.clear();
                run_segment = segment;
            }
            run.push(i);
        }
        self.read_run(run_segment, &run, offsets, &mut out)?;
        Ok(out)
    }

    /// Reads the entries of `offsets[i]` for every `i` in `run` (ascending offsets, all in
    /// `segment`) into `out[i]`.
    fn read_run(
        &self,
        segment: Option<Arc<Segment>>,
        run: &[usize],
        offsets: &[u64],
        out: &mut [Option<StoredEntry>],
    ) -> Result<(), LogError> {
        let Some(segment) = segment else {
            return Ok(());
        };
        let wanted: Vec<u64> = run.iter().map(|&i| offsets[i]).collect();
        for (&i, entry) in run.iter().zip(segment.read_entries(&wanted)?) {
            out[i] = entry;
        }
        Ok(())
    }

    /// The first offset (in log order) whose entry has a timestamp `>= timestamp_ms`, among
    /// written entries; `None` if there is none.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<u64>, LogError> {
        self.check_open()?;
        let segments = self.shared().segments.read().clone();
        for segment in segments {
            if let Some(offset) = segment.offset_for_timestamp(timestamp_ms)? {
                return Ok(Some(offset));
            }
        }
        Ok(None)
    }

    /// The largest timestamp of any written entry, `None` when the log holds none.
    pub fn max_timestamp(&self) -> Result<Option<i64>, LogError> {
        self.check_open()?;
        let segments = self.shared().segments.read().clone();
        Ok(segments
            .iter()
            .map(|s| s.meta().index.max_timestamp_ms())
            .filter(|&t| t != i64::MIN)
            .max())
    }

    /// Retention: deletes whole segments whose entries are all below `offset`, oldest first,
    /// never the active (last) segment. Returns the new start offset, which is `<= offset`
    /// unless it already was greater. A log that prepares spare segments (`Always` with
    /// `preallocate_bytes`) keeps up to two removed segments' files, at least half full and
    /// held by no reader, to reuse as spares (see the crate docs).
    pub fn truncate_before(&self, offset: u64) -> Result<u64, LogError> {
        self.check_open()?;
        let shared = self.shared();
        if let Some(reason) = shared.progress.failure() {
            return Err(LogError::Poisoned(reason.to_string()));
        }
        let removed: Vec<Arc<Segment>> = {
            let mut segments = shared.segments.write();
            // Never the last (active) segment; the list is never empty.
            let closed = segments.len().saturating_sub(1);
            let count = segments[..closed]
                .iter()
                .take_while(|s| s.next_offset() <= offset)
                .count();
            segments.drain(..count).collect()
        };
        for segment in &removed {
            if shared.worth_recycling(segment) {
                let mut recycled = shared.recycled.lock();
                if *recycled < MAX_RECYCLED {
                    segment.recycle_file(&shared.dir, *recycled)?;
                    *recycled += 1;
                    continue;
                }
            }
            segment.delete_files()?;
        }
        if !removed.is_empty() {
            if let Some(tail) = &shared.tail {
                tail.discard_below(self.start_offset());
            }
            sync_dir(&shared.dir)?;
            tracing::debug!(dir = %shared.dir.display(), segments = removed.len(), "retention deleted segments");
        }
        Ok(self.start_offset())
    }

    /// One past the last entry of the oldest segment when it is closed: `truncate_before`
    /// with at least this offset drops it. `None` while the log has a single segment.
    pub fn oldest_segment_end(&self) -> Option<u64> {
        let segments = self.shared().segments.read();
        match segments.len() {
            0 | 1 => None,
            _ => Some(segments[0].next_offset()),
        }
    }

    /// The first offset still stored.
    pub fn start_offset(&self) -> u64 {
        self.shared()
            .segments
            .read()
            .first()
            .map_or(0, |s| s.base_offset())
    }

    /// The offset the next appended entry will get.
    pub fn next_offset(&self) -> u64 {
        self.shared().next_offset.load(Ordering::Acquire)
    }

    /// Every entry below this offset is durable under the configured policy.
    pub fn durable_offset(&self) -> u64 {
        self.shared().progress.durable()
    }

    /// Bytes written to the segment files.
    pub fn size_bytes(&self) -> u64 {
        self.shared().segments.read().iter().map(|s| s.size()).sum()
    }

    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.shared()
            .segments
            .read()
            .iter()
            .map(|s| s.info())
            .collect()
    }

    /// Writes and syncs everything appended, stops the writer thread and releases the
    /// directory. Later calls (other than `close`, which is idempotent) fail with `Closed`.
    /// Fails with `Poisoned` if a write or sync failed at any point.
    pub fn close(&self) -> Result<(), LogError> {
        self.handle.close()
    }

    fn check_open(&self) -> Result<(), LogError> {
        if self.shared().closed.load(Ordering::Acquire) {
            Err(LogError::Closed)
        } else {
            Ok(())
        }
    }

    fn check_waitable(&self, offset: u64) -> Result<(), LogError> {
        self.check_open()?;
        let next = self.next_offset();
        if offset > next {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.start_offset(),
                next,
            });
        }
        Ok(())
    }

    /// The segment whose offsets would include `offset` (the last one with base `<= offset`).
    fn segment_for(&self, offset: u64) -> Option<Arc<Segment>> {
        let segments = self.shared().segments.read();
        let i = segments.partition_point(|s| s.base_offset() <= offset);
        segments.get(i.checked_sub(1)?).cloned()
    }

    fn invalid_input(&self, reason: &str) -> LogError {
        LogError::Io {
            path: self.shared().dir.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, reason),
        }
    }
}

impl Handle {
    fn close(&self) -> Result<(), LogError> {
        // Held while joining, so concurrent closers return only once everything is synced.
        let mut writer = self.writer.lock();
        let Some(thread) = writer.take() else {
            return Ok(());
        };
        let shared = &self.shared;
        shared.closed.store(true, Ordering::Release);
        shared.queue.lock().closed = true;
        shared.work_available.notify_one();
        shared.space_available.notify_all();
        if thread.thread().id() == std::thread::current().id() {
            // The last handle was dropped by the `on_sync` observer: the writer stops by
            // itself once the observer returns, and the directory lock goes with it.
            return Ok(());
        }
        let joined = thread.join();
        shared.dir_lock.lock().take();
        if let Some(tail) = &shared.tail {
            tail.clear();
        }
        shared.readahead.clear();
        if joined.is_err() {
            return Err(LogError::Poisoned("the writer thread panicked".to_string()));
        }
        match shared.progress.failure() {
            Some(reason) => Err(LogError::Poisoned(reason.to_string())),
            None => Ok(()),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::warn!(dir = %self.shared.dir.display(), %error, "closing the log on drop failed");
        }
    }
}
