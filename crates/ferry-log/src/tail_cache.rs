//! Recently written entries kept in memory, so readers that follow a log's tail (a consumer
//! catching up, a fetch long poll) are served without reading the disk, and without copying.
//!
//! One [`TailCache`] is a memory budget shared by many logs (all partitions of all streams,
//! say). Each log that uses it keeps a [`CachedTail`]: its newest written batches, one chunk
//! per batch, contiguous up to the last entry written. A chunk *is* the batch's write buffer
//! (the frames exactly as written to the segment file); the entries handed to readers are
//! slices of it. When the budget is exceeded, the oldest chunk of any log goes first (the
//! cache remembers the order in which chunks came), so a log's cached tail only ever shrinks
//! from its front and stays contiguous. An evicted buffer that no reader still holds goes to
//! a pool from which every log's append queue takes its next batch buffer, so once the cache
//! is full new batches mostly reuse the memory of evicted ones (small batches are cached in
//! copies of their own size, which the allocator recycles).
//!
//! Only entries already written to their segment file are inserted (by the writer thread,
//! after the write returns), so a read served here returns nothing a disk read could not.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::entry::{within_budget, StoredEntry};
use crate::frame::HEADER_BYTES;
use crate::queue::{FrameMeta, WRITE_BATCH_MAX_BYTES};

/// Evicted batch buffers kept for reuse, at most (memory beyond the budget: each insert
/// usually evicts about one buffer, which the next batch takes, so a few suffice).
const POOLED_BUFFERS: usize = 4;
/// Evicted buffers of this size are pooled (append queues take them for new batches); small
/// ones (copies of small batches) and larger ones (batches of one huge entry) are freed.
const POOLED_BUFFER_BYTES: std::ops::RangeInclusive<usize> = (64 << 10)..=2 * WRITE_BATCH_MAX_BYTES;
/// A batch using less than this fraction of its buffer's capacity is cached in a copy of its
/// own size (the large buffer goes back to its queue), so small batches do not hold large
/// buffers.
const MIN_FILL_DIVISOR: usize = 2;

/// A memory budget for the recent entries of many logs (see the module documentation). Pass
/// the same `Arc` in the [`LogConfig`](crate::LogConfig) of every log that should share it.
pub struct TailCache {
    limit: u64,
    /// Capacity of every cached buffer.
    used: AtomicU64,
    /// Every cached chunk of every log, oldest first.
    order: Mutex<VecDeque<Ticket>>,
    /// Evicted buffers, for the next batches of any log.
    pool: Mutex<Vec<Vec<u8>>>,
    hits: AtomicU64,
    read_ahead_hits: AtomicU64,
    misses: AtomicU64,
}

/// A cached chunk's place in the eviction order.
struct Ticket {
    tail: Weak<CachedTail>,
    first_offset: u64,
}

/// What a [`TailCache`] holds and how it has been used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TailCacheStats {
    pub limit_bytes: u64,
    /// Bytes of memory cached now (buffer capacities).
    pub used_bytes: u64,
    /// Range reads answered from the cache.
    pub hits: u64,
    /// Range reads answered from what `Log::prefetch` read ahead.
    pub read_ahead_hits: u64,
    /// Range reads that went to the segment files.
    pub misses: u64,
}

impl std::fmt::Debug for TailCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TailCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl TailCache {
    /// A budget of `limit_bytes` (0 caches nothing).
    pub fn new(limit_bytes: u64) -> Arc<TailCache> {
        Arc::new(TailCache {
            limit: limit_bytes,
            used: AtomicU64::new(0),
            order: Mutex::new(VecDeque::new()),
            pool: Mutex::new(Vec::new()),
            hits: AtomicU64::new(0),
            read_ahead_hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> TailCacheStats {
        TailCacheStats {
            limit_bytes: self.limit,
            used_bytes: self.used.load(Ordering::Acquire),
            hits: self.hits.load(Ordering::Relaxed),
            read_ahead_hits: self.read_ahead_hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// An evicted buffer for a new batch, if one is pooled.
    pub(crate) fn take_buffer(&self) -> Option<Vec<u8>> {
        self.pool.lock().pop()
    }

    /// Evicts the oldest chunks, of whichever logs, until the budget holds. Tickets of
    /// chunks already gone (their log dropped or truncated) are discarded on the way.
    fn enforce_limit(&self) {
        let mut order = self.order.lock();
        while let Some(ticket) = order.front() {
            let over = self.used.load(Ordering::Acquire) > self.limit;
            let live = ticket.tail.upgrade();
            let cached = live
                .as_ref()
                .is_some_and(|tail| tail.holds_chunk(ticket.first_offset));
            if cached && !over {
                break;
            }
            if let (Some(tail), true) = (&live, cached) {
                tail.evict_through(ticket.first_offset);
            }
            order.pop_front();
        }
    }

    /// Takes back the memory of dropped chunks, pooling the buffers no reader holds.
    fn release(&self, dropped: impl Iterator<Item = Chunk>) {
        let mut bytes = 0;
        for chunk in dropped {
            bytes += chunk.bytes;
            drop(chunk.entries);
            if let Ok(mut buf) = Arc::try_unwrap(chunk.buf) {
                let mut pool = self.pool.lock();
                if pool.len() < POOLED_BUFFERS && POOLED_BUFFER_BYTES.contains(&buf.capacity()) {
                    buf.clear();
                    pool.push(buf);
                }
            }
        }
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// One batch as written: its buffer and its entries, whose payloads are slices of it.
struct Chunk {
    buf: Arc<Vec<u8>>,
    entries: Vec<StoredEntry>,
    /// The buffer's capacity, as counted against the budget.
    bytes: u64,
}

impl Chunk {
    fn first_offset(&self) -> u64 {
        self.entries[0].offset
    }

    fn next_offset(&self) -> u64 {
        self.entries[self.entries.len() - 1].next_offset()
    }
}

/// Whether `chunks` (contiguous) hold the entry containing `offset`.
fn spans(chunks: &VecDeque<Chunk>, offset: u64) -> bool {
    chunks
        .front()
        .zip(chunks.back())
        .is_some_and(|(first, last)| first.first_offset() <= offset && offset < last.next_offset())
}

/// Lets `Bytes` slices share a chunk's buffer while the chunk keeps the means to recycle it.
struct SharedBuf(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// One log's part of a [`TailCache`]: chunks of its newest entries, oldest first, contiguous.
pub(crate) struct CachedTail {
    cache: Arc<TailCache>,
    chunks: RwLock<VecDeque<Chunk>>,
}

impl CachedTail {
    pub(crate) fn new(cache: Arc<TailCache>) -> Arc<CachedTail> {
        Arc::new(CachedTail {
            cache,
            chunks: RwLock::new(VecDeque::new()),
        })
    }

    /// The shared budget (whose pool the log's append queue draws buffers from).
    pub(crate) fn cache(&self) -> Arc<TailCache> {
        Arc::clone(&self.cache)
    }

    /// Whether the budget allows caching anything at all.
    pub(crate) fn enabled(&self) -> bool {
        self.cache.limit > 0
    }

    /// Keeps a batch just written: `buf` holds its frames from position 0 (and possibly
    /// padding after them), `frames` describes them, `next_offset` is one past its last
    /// offset. Then evicts the oldest chunks of any log while the budget is exceeded. Returns
    /// the buffer when the cache copied what it keeps, for the caller to reuse.
    pub(crate) fn insert(
        self: &Arc<Self>,
        mut buf: Vec<u8>,
        frames: &[FrameMeta],
        next_offset: u64,
    ) -> Option<Vec<u8>> {
        let first_offset = frames.first()?.offset;
        let data_len: usize = frames.iter().map(|f| f.len as usize).sum();
        let mut returned = None;
        if data_len < buf.capacity() / MIN_FILL_DIVISOR {
            let copy = buf[..data_len].to_vec();
            returned = Some(std::mem::replace(&mut buf, copy));
        }
        let bytes = buf.capacity() as u64;
        let buf = Arc::new(buf);
        let whole = Bytes::from_owner(SharedBuf(Arc::clone(&buf)));
        let mut entries = Vec::with_capacity(frames.len());
        let mut position = 0;
        for (i, frame) in frames.iter().enumerate() {
            let next = frames.get(i + 1).map_or(next_offset, |f| f.offset);
            let end = position + frame.len as usize;
            entries.push(StoredEntry {
                offset: frame.offset,
                offset_count: u32::try_from(next - frame.offset).unwrap_or(u32::MAX),
                timestamp_ms: frame.timestamp_ms,
                payload: whole.slice(position + HEADER_BYTES..end),
            });
            position = end;
        }
        drop(whole);
        {
            let mut chunks = self.chunks.write();
            if chunks
                .back()
                .is_some_and(|last| last.next_offset() != first_offset)
            {
                // Not contiguous (cannot happen while the writer inserts every batch): start
                // afresh rather than serve a gap.
                self.cache.release(chunks.drain(..));
            }
            chunks.push_back(Chunk {
                buf,
                entries,
                bytes,
            });
            self.cache.used.fetch_add(bytes, Ordering::AcqRel);
        }
        self.cache.order.lock().push_back(Ticket {
            tail: Arc::downgrade(self),
            first_offset,
        });
        self.cache.enforce_limit();
        returned
    }

    /// Entries from the one containing `from`, under the budget rules of `Log::read` (frame
    /// sizes within `max_bytes`, at least one entry), up to the newest cached one. `None`
    /// when `from` is not cached (below the cached tail, or at or past its end); only hits are
    /// counted here (the log counts where a miss was answered).
    pub(crate) fn read(&self, from: u64, max_bytes: usize) -> Option<Vec<StoredEntry>> {
        let chunks = self.chunks.read();
        if !spans(&chunks, from) {
            return None;
        }
        self.cache.hits.fetch_add(1, Ordering::Relaxed);
        let i = chunks.partition_point(|c| c.first_offset() <= from) - 1;
        let j = chunks[i]
            .entries
            .partition_point(|e| e.next_offset() <= from);
        let later = chunks.range(i + 1..).flat_map(|c| &c.entries);
        Some(within_budget(
            chunks[i].entries[j..].iter().chain(later),
            max_bytes,
        ))
    }

    /// Drops the chunks whose entries all lie below `offset` (retention removed them).
    pub(crate) fn discard_below(&self, offset: u64) {
        self.drop_front_while(|c| c.next_offset() <= offset);
    }

    /// Drops everything (the log closed).
    pub(crate) fn clear(&self) {
        self.cache.release(self.chunks.write().drain(..));
    }

    /// Counts a range read of this log answered from its read-ahead.
    pub(crate) fn count_read_ahead_hit(&self) {
        self.cache.read_ahead_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a range read of this log that went to its files.
    pub(crate) fn count_miss(&self) {
        self.cache.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the entry containing `offset` is cached.
    pub(crate) fn holds(&self, offset: u64) -> bool {
        spans(&self.chunks.read(), offset)
    }

    fn holds_chunk(&self, first_offset: u64) -> bool {
        let chunks = self.chunks.read();
        chunks
            .front()
            .is_some_and(|c| c.first_offset() <= first_offset)
            && chunks
                .back()
                .is_some_and(|c| c.first_offset() >= first_offset)
    }

    /// Drops the chunks from the front up to the one starting at `first_offset`.
    fn evict_through(&self, first_offset: u64) {
        self.drop_front_while(|c| c.first_offset() <= first_offset);
    }

    /// Drops chunks from the front (the oldest) while `drop` says so.
    fn drop_front_while(&self, drop: impl Fn(&Chunk) -> bool) {
        let mut chunks = self.chunks.write();
        let count = chunks.iter().take_while(|c| drop(c)).count();
        self.cache.release(chunks.drain(..count));
    }
}

impl Drop for CachedTail {
    fn drop(&mut self) {
        let chunks = std::mem::take(self.chunks.get_mut());
        self.cache.release(chunks.into_iter());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame;

    /// A written batch of `count` entries of `size` bytes from offset `first`, in a buffer
    /// of exactly its size: (buffer, frames, next offset).
    fn batch(first: u64, count: u64, size: usize) -> (Vec<u8>, Vec<FrameMeta>, u64) {
        let frame_len = frame::frame_len(size);
        let mut buf = Vec::with_capacity(frame_len * count as usize);
        let mut frames = Vec::new();
        for offset in first..first + count {
            frame::encode(
                &mut buf,
                offset,
                offset as i64,
                1,
                [&vec![offset as u8; size][..]],
            );
            frames.push(FrameMeta {
                offset,
                timestamp_ms: offset as i64,
                len: frame_len as u32,
            });
        }
        (buf, frames, first + count)
    }

    fn insert(tail: &Arc<CachedTail>, (buf, frames, next): (Vec<u8>, Vec<FrameMeta>, u64)) {
        assert!(tail.insert(buf, &frames, next).is_none());
    }

    fn offsets(read: &[StoredEntry]) -> Vec<u64> {
        read.iter().map(|e| e.offset).collect()
    }

    #[test]
    fn serves_reads_inside_the_cached_tail_under_the_read_budget() {
        let cache = TailCache::new(1 << 20);
        let tail = CachedTail::new(Arc::clone(&cache));
        insert(&tail, batch(10, 3, 100));
        insert(&tail, batch(13, 2, 100));
        assert_eq!(tail.read(9, 1 << 20), None, "below the cached tail");
        assert_eq!(tail.read(15, 1 << 20), None, "at the end");
        let read = tail.read(11, 1 << 20).unwrap();
        assert_eq!(offsets(&read), [11, 12, 13, 14]);
        assert!(read.iter().all(|e| e.payload[..] == [e.offset as u8; 100]));
        assert_eq!(read[0].timestamp_ms, 11);
        // 128 bytes per frame: two fit in 256, the first always does.
        assert_eq!(offsets(&tail.read(12, 256).unwrap()), [12, 13]);
        assert_eq!(offsets(&tail.read(12, 1).unwrap()), [12]);
        assert_eq!(cache.stats().used_bytes, 5 * 128);
        assert_eq!(cache.stats().hits, 3);
    }

    #[test]
    fn a_read_inside_a_multi_offset_entry_starts_with_that_entry() {
        let cache = TailCache::new(1 << 20);
        let tail = CachedTail::new(cache);
        let (buf, mut frames, _) = batch(0, 2, 10);
        frames[1].offset = 5; // the first entry spans offsets 0..5
        assert!(tail.insert(buf, &frames, 6).is_none());
        let read = tail.read(3, 1 << 20).unwrap();
        assert_eq!(offsets(&read), [0, 5]);
        assert_eq!((read[0].offset_count, read[1].offset_count), (5, 1));
        assert_eq!(offsets(&tail.read(5, 1 << 20).unwrap()), [5]);
        assert_eq!(tail.read(6, 1 << 20), None, "past the end");
    }

    #[test]
    fn the_oldest_chunk_of_any_log_is_evicted_first() {
        let cache = TailCache::new(1000);
        let a = CachedTail::new(Arc::clone(&cache));
        let b = CachedTail::new(Arc::clone(&cache));
        insert(&a, batch(0, 3, 100)); // 384
        insert(&b, batch(0, 3, 100)); // 768
        let held = a.read(0, 1).unwrap(); // a reader still holds a's first buffer
        insert(&a, batch(3, 3, 100)); // 1152: a's first chunk goes
        assert_eq!(a.read(0, 1 << 20), None);
        assert_eq!(offsets(&a.read(3, 1 << 20).unwrap()), [3, 4, 5]);
        assert_eq!(offsets(&b.read(0, 1 << 20).unwrap()), [0, 1, 2]);
        assert_eq!(cache.stats().used_bytes, 768);
        assert_eq!(
            held[0].payload[..],
            [0u8; 100],
            "evicted data a reader holds stays valid"
        );
        insert(&b, batch(3, 3, 100)); // b's first chunk goes
        assert_eq!(b.read(2, 1 << 20), None);
        assert_eq!(cache.stats().used_bytes, 768);
        // A dropped log gives its bytes back; its stale tickets are skipped.
        drop(a);
        assert_eq!(cache.stats().used_bytes, 384);
        let c = CachedTail::new(Arc::clone(&cache));
        insert(&c, batch(0, 4, 100));
        assert_eq!(cache.stats().used_bytes, 384 + 512);
        assert_eq!(offsets(&b.read(3, 1 << 20).unwrap()), [3, 4, 5]);
    }

    #[test]
    fn an_evicted_batch_buffer_is_pooled_unless_a_reader_holds_it() {
        let size = WRITE_BATCH_MAX_BYTES / 4; // three entries fill most of a batch buffer
        let full = |first| {
            let (buf, frames, next) = batch(first, 3, size);
            let mut big = Vec::with_capacity(WRITE_BATCH_MAX_BYTES);
            big.extend_from_slice(&buf);
            (big, frames, next)
        };
        let cache = TailCache::new(WRITE_BATCH_MAX_BYTES as u64);
        let tail = CachedTail::new(Arc::clone(&cache));
        insert(&tail, full(0));
        let held = tail.read(0, 1).unwrap();
        insert(&tail, full(3)); // the first chunk goes, but a reader holds it
        assert_eq!(tail.read(0, 1), None);
        assert!(cache.take_buffer().is_none(), "a held buffer is not reused");
        assert_eq!(held[0].payload.len(), size);
        insert(&tail, full(6)); // the second goes, nobody holds it
        let reused = cache.take_buffer().expect("the evicted buffer is pooled");
        assert!(reused.is_empty() && reused.capacity() >= WRITE_BATCH_MAX_BYTES);
        assert_eq!(offsets(&tail.read(6, 1).unwrap()), [6]);
    }

    #[test]
    fn a_chunk_larger_than_the_budget_is_not_kept() {
        let cache = TailCache::new(100);
        let tail = CachedTail::new(Arc::clone(&cache));
        insert(&tail, batch(0, 2, 100));
        assert_eq!(tail.read(0, 1 << 20), None);
        assert_eq!(cache.stats().used_bytes, 0);
    }

    #[test]
    fn a_small_batch_in_a_large_buffer_is_kept_in_a_copy() {
        let cache = TailCache::new(1 << 20);
        let tail = CachedTail::new(Arc::clone(&cache));
        let (mut buf, frames, next) = batch(0, 1, 100);
        buf.reserve(64 << 10);
        let returned = tail
            .insert(buf, &frames, next)
            .expect("the large buffer comes back");
        assert!(returned.capacity() >= 64 << 10);
        assert_eq!(cache.stats().used_bytes, 128);
        assert_eq!(tail.read(0, 1 << 20).unwrap()[0].payload[..], [0u8; 100]);
    }

    #[test]
    fn retention_and_close_release_memory() {
        let cache = TailCache::new(1 << 20);
        let tail = CachedTail::new(Arc::clone(&cache));
        insert(&tail, batch(0, 2, 100));
        insert(&tail, batch(2, 2, 100));
        tail.discard_below(3);
        assert_eq!(cache.stats().used_bytes, 256);
        assert_eq!(offsets(&tail.read(2, 1 << 20).unwrap()), [2, 3]);
        tail.clear();
        assert_eq!(cache.stats().used_bytes, 0);
        assert_eq!(tail.read(2, 1 << 20), None);
    }
}
