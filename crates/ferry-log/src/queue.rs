//! The append side of group commit: turns `append` calls into write batches.
//!
//! Appenders encode their frames straight into the batch at the back of the queue, under one
//! mutex, so offsets are assigned in call order and no appender ever touches the disk. The
//! writer thread pops batches from the front. Everything that arrived while the previous
//! batch was being written and synced lands in the same batch, which therefore costs one
//! `write` and one `fdatasync` however many appenders contributed.
//!
//! The queue also decides where segments roll, because that depends on the byte positions of
//! the frames, which are known here: a batch never spans two segments, and a batch that
//! starts a new segment is marked `roll`.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::entry::{Appended, Entry};
use crate::frame;
use crate::tail_cache::TailCache;

/// Largest write batch, unless a single frame is larger. This is also the window in which
/// recovery (under `Durability::Always`) may find a torn write; see the crate docs.
pub(crate) const WRITE_BATCH_MAX_BYTES: usize = 4 << 20;
/// Appenders block (back-pressure) while this many bytes wait for the writer.
pub(crate) const MAX_QUEUED_BYTES: usize = 4 * WRITE_BATCH_MAX_BYTES;
/// Emptied batch buffers kept for reuse.
const SPARE_BUFFERS: usize = 2;

/// Where one frame of a batch came from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FrameMeta {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub len: u32,
}

/// Frames to be written with one `write` call.
#[derive(Debug)]
pub(crate) struct Batch {
    /// The first frame starts a new segment with base offset `frames[0].offset`.
    pub roll: bool,
    pub buf: Vec<u8>,
    pub frames: Vec<FrameMeta>,
    /// One past the last offset in the batch.
    pub next_offset: u64,
}

#[derive(Debug)]
pub(crate) struct AppendQueue {
    next_offset: u64,
    /// Base offset and size of the segment the next frame goes to (including queued frames).
    active_base: u64,
    active_bytes: u64,
    batches: VecDeque<Batch>,
    queued_bytes: usize,
    spare: Vec<Vec<u8>>,
    /// Where buffers come from when `spare` is empty: a tail cache's evicted ones.
    pool: Option<Arc<TailCache>>,
    pub closed: bool,
}

impl AppendQueue {
    pub(crate) fn new(
        next_offset: u64,
        active_base: u64,
        active_bytes: u64,
        pool: Option<Arc<TailCache>>,
    ) -> AppendQueue {
        AppendQueue {
            next_offset,
            active_base,
            active_bytes,
            batches: VecDeque::new(),
            queued_bytes: 0,
            spare: Vec::new(),
            pool,
            closed: false,
        }
    }

    pub(crate) fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Whether appenders must wait for the writer before adding more.
    pub(crate) fn is_full(&self) -> bool {
        self.queued_bytes >= MAX_QUEUED_BYTES
    }

    /// Assigns offsets to `entries` and queues their frames. The caller has validated them.
    pub(crate) fn push(&mut self, entries: &[Entry], segment_bytes: u64) -> Appended {
        let base_offset = self.next_offset;
        for entry in entries {
            let len = frame::frame_len(entry.len());
            let offset = self.next_offset;
            let next_offset = offset + u64::from(entry.offset_count);
            // Roll when the segment would outgrow its size, or its relative offsets their u32.
            let roll = self.active_bytes > 0
                && (self.active_bytes + len as u64 > segment_bytes
                    || next_offset - self.active_base > u64::from(u32::MAX));
            if roll {
                self.active_base = offset;
                self.active_bytes = 0;
            }
            let batch = match self.batches.back_mut() {
                Some(batch) if !roll && batch.buf.len() + len <= WRITE_BATCH_MAX_BYTES => batch,
                _ => {
                    let buf = self.spare.pop().unwrap_or_else(|| self.fresh_buffer());
                    self.batches.push_back(Batch {
                        roll,
                        buf,
                        frames: Vec::new(),
                        next_offset: offset,
                    });
                    let last = self.batches.len() - 1;
                    &mut self.batches[last]
                }
            };
            frame::encode(
                &mut batch.buf,
                offset,
                entry.timestamp_ms,
                entry.offset_count,
                [&entry.head[..], &entry.payload[..]],
            );
            batch.frames.push(FrameMeta {
                offset,
                timestamp_ms: entry.timestamp_ms,
                len: len as u32,
            });
            batch.next_offset = next_offset;
            self.active_bytes += len as u64;
            self.queued_bytes += len;
            self.next_offset = next_offset;
        }
        Appended {
            base_offset,
            next_offset: self.next_offset,
        }
    }

    /// A buffer for a new batch when no spare one is left: with a tail cache (which keeps the
    /// buffers it is given), an evicted one from its pool if there is one. A new buffer starts
    /// empty and grows with its batch, so logs with small batches hold small buffers.
    fn fresh_buffer(&self) -> Vec<u8> {
        self.pool
            .as_ref()
            .and_then(|pool| pool.take_buffer())
            .unwrap_or_default()
    }

    /// The oldest batch, for the writer.
    pub(crate) fn pop(&mut self) -> Option<Batch> {
        let batch = self.batches.pop_front()?;
        self.queued_bytes -= batch.buf.len();
        Some(batch)
    }

    /// Returns a written batch's buffer for reuse.
    pub(crate) fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS && buf.capacity() <= 2 * WRITE_BATCH_MAX_BYTES {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// Drops every queued batch (after a failure nothing more will be written).
    pub(crate) fn discard(&mut self) {
        self.batches.clear();
        self.queued_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesces_appends_and_rolls_at_segment_size() {
        let mut queue = AppendQueue::new(10, 10, 0, None);
        let entry = Entry::new(1, vec![0u8; 72]); // 100-byte frames
        assert_eq!(
            queue.push(&[entry.clone(), entry.clone()], 250),
            Appended {
                base_offset: 10,
                next_offset: 12
            }
        );
        queue.push(std::slice::from_ref(&entry), 250); // third frame would make 300 > 250: new segment
        let first = queue.pop().unwrap();
        assert!(!first.roll);
        assert_eq!(
            (first.frames.len(), first.next_offset, first.buf.len()),
            (2, 12, 200)
        );
        let second = queue.pop().unwrap();
        assert!(second.roll);
        assert_eq!(second.frames[0].offset, 12);
        assert!(queue.pop().is_none());
    }

    #[test]
    fn multi_offset_entries_advance_by_their_count() {
        let mut queue = AppendQueue::new(0, 0, 0, None);
        let mut entry = Entry::new(1, "batch");
        entry.offset_count = 5;
        assert_eq!(
            queue.push(&[entry.clone(), entry], 1 << 20),
            Appended {
                base_offset: 0,
                next_offset: 10
            }
        );
        let batch = queue.pop().unwrap();
        assert_eq!(
            batch.frames.iter().map(|f| f.offset).collect::<Vec<_>>(),
            vec![0, 5]
        );
    }
}
