//! The writer thread: the only code that writes to segment files.
//!
//! It pops one batch at a time from the [`AppendQueue`](crate::queue::AppendQueue), writes it
//! with a single positional `write` and publishes the new `written` watermark. Under
//! `Durability::Always` it then gets the batch synced through the [`Syncers`]: it runs the
//! `fdatasync` itself while syncs are quick and none is running, otherwise a syncer thread
//! runs it and publishes `durable` while the writer goes on to the next batch; under the
//! relaxed policies it syncs by itself when the policy says so. While it writes and syncs,
//! appenders keep filling the next batch: that is the group commit.
//!
//! Under `LogConfig::direct_io` the writer writes through the segment's `O_DIRECT` file: it
//! copies each batch into an aligned buffer after the bytes already written to the page the
//! batch starts in (kept in memory), pads the buffer with zeros to a whole page, and writes
//! it at that page. So the partial page at the end of the data is rewritten, with the same
//! bytes before the old end, by the next write; readers never look past the published end.
//!
//! A failed write or sync poisons the log and stops the thread. It is not retried: after a
//! failed `fsync` Linux may already have dropped the dirty pages, so a retry could succeed
//! without the data ever reaching the disk.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::aligned::{align_down, align_up, AlignedBuf};
use crate::config::{Durability, SyncStats};
use crate::error::LogError;
use crate::log::Shared;
use crate::queue::Batch;
use crate::segment::{sync_dir, Segment};
use crate::syncer::Syncers;

/// Starts the writer thread appending to `active`, the last segment.
pub(crate) fn spawn(shared: Arc<Shared>, active: Arc<Segment>) -> std::io::Result<JoinHandle<()>> {
    let syncers = (shared.config.durability == Durability::Always).then(|| {
        Syncers::new(
            Arc::clone(&shared),
            Arc::clone(&active),
            active.next_offset(),
        )
    });
    let tail = partial_page(&active)?;
    let writer = Writer {
        shared,
        active,
        syncers,
        dirty: false,
        last_sync: Instant::now(),
        tail,
        direct_buf: AlignedBuf::zeroed(0),
    };
    thread::Builder::new()
        .name("ferry-log-writer".to_string())
        .spawn(move || writer.run())
}

/// Under direct I/O, the bytes of `segment`'s data in its last, partial page (empty when the
/// data ends on a page boundary, or without direct I/O).
fn partial_page(segment: &Segment) -> std::io::Result<Vec<u8>> {
    let size = segment.size();
    let page_start = align_down(size);
    let mut tail = vec![0; (size - page_start) as usize];
    if segment.direct_file().is_some() {
        segment.file().read_exact_at(&mut tail, page_start)?;
    }
    Ok(tail)
}

/// Marks the writer stopped however it exits, so no waiter waits forever, even after a panic.
struct StopOnExit(Arc<Shared>);

impl Drop for StopOnExit {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0
                .progress
                .fail("the writer thread panicked".to_string());
        }
        self.0.progress.stop();
    }
}

struct Writer {
    shared: Arc<Shared>,
    active: Arc<Segment>,
    /// Under `Always`, the threads that sync what this writer wrote.
    syncers: Option<Arc<Syncers>>,
    /// Under the relaxed policies: bytes were written to `active` since its last `fdatasync`.
    dirty: bool,
    last_sync: Instant,
    /// Under direct I/O: the data already in the active segment's last, partial page.
    tail: Vec<u8>,
    /// Under direct I/O: where each write is assembled, page-aligned.
    direct_buf: AlignedBuf,
}

enum Work {
    Write(Batch),
    /// The `Interval` deadline passed with unsynced data and nothing to write.
    Sync,
    /// The log is closing and the queue is empty.
    Stop,
}

impl Writer {
    fn run(mut self) {
        let _stop = StopOnExit(Arc::clone(&self.shared));
        let result = self.run_until_stopped();
        if let Some(syncers) = &self.syncers {
            syncers.stop();
            // A prepared next segment is only zeros: a closed log does not keep it.
            if let Err(error) = Segment::remove_spare(&self.shared.dir) {
                tracing::warn!(%error, "cannot remove the log's spare segment file");
            }
        }
        if let Err(error) = result {
            tracing::error!(dir = %self.shared.dir.display(), %error, "ferry-log writer failed; the log refuses further appends");
            self.shared.progress.fail(error.to_string());
            self.shared.queue.lock().discard();
            self.shared.space_available.notify_all();
        }
    }

    fn run_until_stopped(&mut self) -> Result<(), LogError> {
        loop {
            match self.next_work() {
                Work::Write(batch) => self.write(batch)?,
                Work::Sync => {
                    let duration = self.sync()?;
                    self.report(SyncStats {
                        duration,
                        bytes: 0,
                        entries: 0,
                    });
                }
                Work::Stop => {
                    // Close makes everything durable, whatever the policy.
                    self.sync()?;
                    self.trim_active()?;
                    return Ok(());
                }
            }
        }
    }

    fn next_work(&mut self) -> Work {
        let mut queue = self.shared.queue.lock();
        loop {
            if let Some(batch) = queue.pop() {
                self.shared.space_available.notify_all();
                return Work::Write(batch);
            }
            if queue.closed {
                return Work::Stop;
            }
            let deadline = match self.shared.config.durability {
                Durability::Interval(every) if self.dirty => self.last_sync.checked_add(every),
                _ => None,
            };
            match deadline {
                Some(deadline) if Instant::now() >= deadline => return Work::Sync,
                Some(deadline) => {
                    self.shared.work_available.wait_until(&mut queue, deadline);
                }
                None => self.shared.work_available.wait(&mut queue),
            }
        }
    }

    fn write(&mut self, mut batch: Batch) -> Result<(), LogError> {
        debug_assert!(!batch.frames.is_empty());
        if batch.roll {
            self.roll(batch.frames[0].offset)?;
        }
        let len = batch.buf.len() as u64;
        let segment = &self.active;
        let start = segment.size();
        if let Some(syncers) = &self.syncers {
            syncers.wait_for_room(start, len)?;
        }
        match segment.direct_file() {
            Some(direct) => {
                let page_start = align_down(start);
                let end = start + len;
                let span = (align_up(end) - page_start) as usize;
                debug_assert_eq!(self.tail.len() as u64, start - page_start);
                self.direct_buf.reserve(span);
                let out = &mut self.direct_buf.as_mut_slice()[..span];
                let (prefix, rest) = out.split_at_mut(self.tail.len());
                prefix.copy_from_slice(&self.tail);
                let (data, padding) = rest.split_at_mut(batch.buf.len());
                data.copy_from_slice(&batch.buf);
                padding.fill(0);
                direct
                    .write_all_at(out, page_start)
                    .map_err(LogError::io(segment.path()))?;
                segment.note_allocated(page_start + span as u64);
                self.tail.clear();
                self.tail.extend_from_slice(
                    &out[(align_down(end) - page_start) as usize..(end - page_start) as usize],
                );
            }
            None => {
                let padding = segment.page_padding(start + len);
                batch.buf.resize(batch.buf.len() + padding, 0);
                segment
                    .file()
                    .write_all_at(&batch.buf, start)
                    .map_err(LogError::io(segment.path()))?;
            }
        }
        {
            let mut meta = segment.meta_mut();
            debug_assert_eq!(batch.frames[0].offset, meta.next_offset);
            let mut position = start;
            for frame in &batch.frames {
                // The queue rolls segments before either field could overflow.
                let (Ok(relative), Ok(position32)) = (
                    u32::try_from(frame.offset - segment.base_offset()),
                    u32::try_from(position),
                ) else {
                    return Err(LogError::corrupt(
                        segment.path(),
                        position,
                        "internal error: segment outgrew its u32 index fields",
                    ));
                };
                meta.index.observe(relative, position32, frame.timestamp_ms);
                position += u64::from(frame.len);
            }
            meta.size = position;
            meta.next_offset = batch.next_offset;
        }
        let mut buf = Some(batch.buf);
        if let Some(tail) = self.shared.tail.as_ref().filter(|t| t.enabled()) {
            let written = buf.take().expect("the batch's buffer");
            buf = tail.insert(written, &batch.frames, batch.next_offset);
        }
        let progress = &self.shared.progress;
        progress.set_written(batch.next_offset);
        self.dirty = true;
        let duration = match self.shared.config.durability {
            Durability::Always => {
                if let Some(syncers) = &self.syncers {
                    syncers.written(batch.next_offset, len)?;
                }
                self.dirty = false;
                Duration::ZERO
            }
            Durability::Interval(every) if self.last_sync.elapsed() >= every => self.sync()?,
            Durability::Interval(_) | Durability::Never => {
                progress.set_durable(batch.next_offset);
                progress.wake();
                Duration::ZERO
            }
        };
        self.report(SyncStats {
            duration,
            bytes: len,
            entries: batch.frames.len() as u64,
        });
        if let Some(buf) = buf {
            self.shared.queue.lock().recycle(buf);
        }
        Ok(())
    }

    /// Makes everything written durable: under `Always` by waiting for the syncers, otherwise
    /// by `fdatasync`ing the active segment if it has unsynced data. Publishes `durable`.
    fn sync(&mut self) -> Result<Duration, LogError> {
        if let Some(syncers) = &self.syncers {
            syncers.wait_quiet()?;
            return Ok(Duration::ZERO);
        }
        if !self.dirty {
            return Ok(Duration::ZERO);
        }
        let start = Instant::now();
        self.active
            .file()
            .sync_data()
            .map_err(LogError::io(self.active.path()))?;
        let duration = start.elapsed();
        self.dirty = false;
        self.last_sync = Instant::now();
        let progress = &self.shared.progress;
        progress.set_durable(progress.written());
        progress.wake();
        Ok(duration)
    }

    /// Closes the active segment (synced, index persisted) and starts a new one at `base`: the
    /// spare file the syncers prepared, if one is ready, else a new empty file.
    fn roll(&mut self, base: u64) -> Result<(), LogError> {
        debug_assert_eq!(base, self.active.next_offset());
        // Even under `Never`: only the last segment may ever have a torn tail.
        self.sync()?;
        self.trim_active()?;
        self.active.persist_index()?;
        let (dir, interval) = (&self.shared.dir, self.shared.config.index_interval_bytes);
        let spare = self.syncers.as_ref().is_some_and(|s| s.take_spare());
        let segment = if spare {
            Segment::adopt_spare(dir, base, interval)?
        } else {
            Segment::create(dir, base, interval)?
        };
        let segment = Arc::new(segment.with_direct_io(self.shared.config.direct_io));
        sync_dir(&self.shared.dir)?;
        self.shared.segments.write().push(Arc::clone(&segment));
        if let Some(syncers) = &self.syncers {
            syncers.set_active(Arc::clone(&segment));
        }
        self.active = segment;
        self.tail.clear();
        Ok(())
    }

    /// Cuts the active segment's zero-filled space (nothing is being written or filled) and
    /// syncs the new length, so the file ends at its last frame.
    fn trim_active(&self) -> Result<(), LogError> {
        let segment = &self.active;
        if segment.allocated() > segment.size() {
            segment.trim_allocation()?;
            segment
                .file()
                .sync_all()
                .map_err(LogError::io(segment.path()))?;
        }
        Ok(())
    }

    fn report(&self, stats: SyncStats) {
        if let Some(observer) = &self.shared.config.on_sync {
            observer(stats);
        }
    }
}
