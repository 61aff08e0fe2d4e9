//! One stream partition: a `ferry-log` log of record batches, exposed directly.
//!
//! ```text
//! <stream dir>/<index>/log/          the ferry-log directory (one entry per record batch)
//! <stream dir>/<index>/start_offset  logical log start set by DeleteRecords (absent = 0)
//! <stream dir>/<index>/producers.snapshot  idempotent-producer state as of a durable offset
//! ```
//!
//! Appends are decided under the partition mutex (sequence checks, base offset patching,
//! `Log::append`, which assigns offsets without I/O); the caller then waits for durability
//! without the lock. Readers only ever see the durable prefix (the high watermark), so a
//! consumer never sees a record that a crash could take back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use ferry_log::{Entry, Log, LogConfig, LogError, StoredEntry};
use parking_lot::{Mutex, RwLock};

use super::batch::{self, BatchHeader};
use super::producer::{ProducerSnapshot, ProducerTable, SequenceCheck};
use super::StreamError;

/// How a partition stamps record timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampType {
    /// The producer's timestamp is kept.
    CreateTime,
    /// The broker overwrites the batch timestamp with the append time.
    LogAppendTime,
}

/// On open without a producer snapshot, the newest segments covering at least this many bytes
/// are scanned to rebuild the idempotent-producer state.
pub const PRODUCER_STATE_SCAN_BYTES: u64 = 128 << 20;
/// The producer snapshot's file in the partition's directory (see [`ProducerSnapshot`]).
const PRODUCER_SNAPSHOT: &str = "producers.snapshot";

pub struct Partition {
    pub index: u32,
    dir: PathBuf,
    /// Replaced (under the write lock) only when compaction swaps in a rewritten log.
    log: RwLock<Log>,
    state: Mutex<PartitionState>,
    config: LogConfig,
    /// Base offset of the active segment when the producer snapshot was last written.
    snapshot_segment: AtomicU64,
}

struct PartitionState {
    producers: ProducerTable,
    /// Logical start (DeleteRecords); the log may still hold older segments.
    start_offset: u64,
}

/// The result of an append, before durability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record of the request.
    pub base_offset: u64,
    /// Wait until the log is durable below this offset before acknowledging.
    pub durable_at: u64,
    /// Broker timestamp when the stream uses log-append time, else -1.
    pub log_append_time_ms: i64,
    /// True when every batch was a duplicate of one already stored.
    pub duplicate: bool,
}

/// Stored batches read from a partition, each in its own buffer (see
/// [`Partition::read_batches`]).
#[derive(Clone, Debug, Default)]
pub struct StoredBatches {
    /// Record batches in offset order (the first may start before the requested offset).
    pub batches: Vec<Bytes>,
    /// Total length of `batches`.
    pub bytes: usize,
    /// One past the last offset of the last batch (the fetch offset when there is none).
    pub next_offset: u64,
    pub high_watermark: u64,
    pub log_start_offset: u64,
}

/// Stored batches read from a partition, in one buffer.
#[derive(Clone, Debug, Default)]
pub struct ReadBatches {
    /// Concatenated record batches (may start before the requested offset).
    pub records: Bytes,
    pub high_watermark: u64,
    pub log_start_offset: u64,
}

impl Partition {
    pub fn open(dir: &Path, index: u32, config: LogConfig) -> Result<Partition, StreamError> {
        Partition::open_scanning(dir, index, config, PRODUCER_STATE_SCAN_BYTES)
    }

    /// [`Partition::open`], scanning at least `scan_bytes` of the newest segments for producer
    /// state when there is no usable snapshot.
    fn open_scanning(
        dir: &Path,
        index: u32,
        config: LogConfig,
        scan_bytes: u64,
    ) -> Result<Partition, StreamError> {
        std::fs::create_dir_all(dir).map_err(|e| StreamError::io(dir, e))?;
        super::compaction::recover_dirs(dir)?;
        let log = Log::open(dir.join("log"), config.clone())?;
        let start_path = dir.join("start_offset");
        let start_offset = match std::fs::read_to_string(&start_path) {
            Ok(s) => s.trim().parse::<u64>().unwrap_or(0),
            Err(_) => 0,
        };
        let end = log.next_offset();
        // The idempotent-producer state: the snapshot, then the batch headers stored after
        // it. Without one (or with one the log does not reach, which cannot happen since it
        // only covers durable batches), the newest segments, at least `scan_bytes` of them:
        // a retry concerns recent batches, and a producer not seen there is treated as new.
        let snapshot =
            ProducerSnapshot::load(&dir.join(PRODUCER_SNAPSHOT)).filter(|s| s.offset <= end);
        let (mut producers, mut offset) = match snapshot {
            Some(s) => {
                let from = s.offset;
                (ProducerTable::from_snapshot(s), from)
            }
            None => {
                let mut offset = log.start_offset();
                let mut tail_bytes = 0u64;
                for segment in log.segments().iter().rev() {
                    offset = segment.base_offset;
                    tail_bytes += segment.size_bytes;
                    if tail_bytes >= scan_bytes {
                        break;
                    }
                }
                (ProducerTable::default(), offset)
            }
        };
        offset = offset.max(log.start_offset());
        while offset < end {
            let entries = log.read(offset, 4 << 20)?;
            let Some(last) = entries.last() else { break };
            offset = last.next_offset();
            for entry in &entries {
                if let Ok(header) = batch::parse_header(&entry.payload) {
                    if header.is_idempotent() {
                        producers.record(&header, entry.offset);
                    }
                }
            }
        }
        let active_segment = log.segments().last().map_or(0, |s| s.base_offset);
        Ok(Partition {
            index,
            dir: dir.to_path_buf(),
            log: RwLock::new(log),
            state: Mutex::new(PartitionState {
                producers,
                start_offset,
            }),
            config,
            snapshot_segment: AtomicU64::new(active_segment),
        })
    }

    /// Writes the producer snapshot if a segment has rolled since the last one (or `always`),
    /// so that opening the partition scans at most about a segment of batch headers.
    /// Called periodically and at close.
    pub fn snapshot_producers(&self, always: bool) -> Result<(), StreamError> {
        let log = self.log();
        let active = log.segments().last().map_or(0, |s| s.base_offset);
        if !always && active <= self.snapshot_segment.load(Ordering::Acquire) {
            return Ok(());
        }
        let snapshot = {
            let state = self.state.lock();
            state.producers.snapshot_below(log.durable_offset())
        };
        snapshot.save(&self.dir.join(PRODUCER_SNAPSHOT))?;
        self.snapshot_segment.fetch_max(active, Ordering::AcqRel);
        Ok(())
    }

    /// The current log (a cheap handle clone).
    fn log(&self) -> Log {
        self.log.read().clone()
    }

    /// Validates and appends the record batches in `records`.
    pub fn append(
        &self,
        records: Bytes,
        timestamp_type: TimestampType,
        max_batch_bytes: usize,
        now_ms: i64,
    ) -> Result<Appended, StreamError> {
        let batches = batch::split_batches(records)?;
        for (header, bytes) in &batches {
            if bytes.len() > max_batch_bytes {
                return Err(StreamError::MessageTooLarge {
                    size: bytes.len(),
                    max: max_batch_bytes,
                });
            }
            if header.is_transactional() || header.is_control() {
                return Err(StreamError::InvalidBatch(
                    "transactional batches are not supported".into(),
                ));
            }
        }
        let mut state = self.state.lock();
        let mut next = self.log().next_offset();
        let mut entries = Vec::with_capacity(batches.len());
        let mut to_record: Vec<(BatchHeader, u64)> = Vec::new();
        let mut first: Option<u64> = None;
        let mut duplicate_end = 0u64;
        for (header, bytes) in batches {
            if header.is_idempotent() {
                match state.producers.check(&header)? {
                    SequenceCheck::Duplicate { base_offset } => {
                        first.get_or_insert(base_offset);
                        duplicate_end =
                            duplicate_end.max(base_offset + u64::from(header.offset_count()));
                        continue;
                    }
                    SequenceCheck::Append => {}
                }
            }
            let log_append_time = timestamp_type == TimestampType::LogAppendTime;
            let head = batch::stored_head(&bytes, next, log_append_time.then_some(now_ms));
            let mut ts = if log_append_time {
                now_ms
            } else {
                header.max_timestamp
            };
            if ts < 0 {
                ts = now_ms;
            }
            first.get_or_insert(next);
            if header.is_idempotent() {
                to_record.push((header.clone(), next));
            }
            next += u64::from(header.offset_count());
            entries.push(Entry {
                offset_count: header.offset_count(),
                head,
                ..Entry::new(ts, bytes.slice(batch::HEADER_BYTES..))
            });
        }
        let duplicate = entries.is_empty();
        let durable_at = if duplicate {
            duplicate_end.min(self.log().next_offset())
        } else {
            let appended = self.log().append(&entries)?;
            debug_assert_eq!(appended.next_offset, next);
            for (header, base) in &to_record {
                state.producers.record(header, *base);
            }
            appended.next_offset
        };
        drop(state);
        Ok(Appended {
            base_offset: first.unwrap_or(0),
            durable_at,
            log_append_time_ms: if timestamp_type == TimestampType::LogAppendTime {
                now_ms
            } else {
                -1
            },
            duplicate,
        })
    }

    /// Waits until everything below `offset` is durable.
    pub async fn wait_durable(&self, offset: u64) -> Result<(), StreamError> {
        Ok(self.log().wait_durable(offset).await?)
    }

    /// Batches from the one containing `from`, up to about `max_bytes` (at least one batch),
    /// concatenated into one buffer. [`Partition::read_batches`] without the copy.
    pub fn read(&self, from: u64, max_bytes: usize) -> Result<ReadBatches, StreamError> {
        let stored = self.read_batches(from, max_bytes)?;
        let mut out = BytesMut::with_capacity(stored.bytes);
        for batch in &stored.batches {
            out.extend_from_slice(batch);
        }
        Ok(ReadBatches {
            records: out.freeze(),
            high_watermark: stored.high_watermark,
            log_start_offset: stored.log_start_offset,
        })
    }

    /// Batches from the one containing `from`, up to about `max_bytes` (at least one batch),
    /// each exactly as stored (its own buffer, not copied again). Only durable batches (below
    /// the high watermark) are returned. May read the disk: see
    /// [`Partition::read_batches_in_memory`].
    pub fn read_batches(&self, from: u64, max_bytes: usize) -> Result<StoredBatches, StreamError> {
        let read = self.read_batches_with(from, |log| log.read(from, max_bytes).map(Some))?;
        Ok(read.expect("a read from the files always answers"))
    }

    /// [`Partition::read_batches`] when the batches are in the log's tail cache (or there are
    /// none to read); `None` when answering would read the disk.
    pub fn read_batches_in_memory(
        &self,
        from: u64,
        max_bytes: usize,
    ) -> Result<Option<StoredBatches>, StreamError> {
        self.read_batches_with(from, |log| log.read_cached(from, max_bytes))
    }

    fn read_batches_with(
        &self,
        from: u64,
        read: impl FnOnce(&Log) -> Result<Option<Vec<StoredEntry>>, LogError>,
    ) -> Result<Option<StoredBatches>, StreamError> {
        let high_watermark = self.high_watermark();
        let log_start_offset = self.log_start_offset();
        if from < log_start_offset || from > high_watermark {
            return Err(StreamError::OffsetOutOfRange {
                offset: from,
                start: log_start_offset,
                end: high_watermark,
            });
        }
        let mut batches = Vec::new();
        let mut bytes = 0;
        let mut next_offset = from;
        if from < high_watermark {
            let entries = match read(&self.log()) {
                Ok(Some(e)) => e,
                Ok(None) => return Ok(None),
                // Retention removed the segment between the check and the read.
                Err(LogError::OffsetOutOfRange { start, next, .. }) => {
                    return Err(StreamError::OffsetOutOfRange {
                        offset: from,
                        start,
                        end: next,
                    })
                }
                Err(e) => return Err(e.into()),
            };
            batches.reserve(entries.len());
            for entry in entries {
                if entry.offset >= high_watermark {
                    break;
                }
                bytes += entry.payload.len();
                next_offset = entry.next_offset();
                batches.push(entry.payload);
            }
        }
        Ok(Some(StoredBatches {
            batches,
            bytes,
            next_offset,
            high_watermark,
            log_start_offset,
        }))
    }

    /// Whether a consumer's next read from `from` would wait for the disk (durable batches
    /// neither in the tail cache nor read ahead): then [`Partition::prefetch`] is worth it.
    pub fn needs_prefetch(&self, from: u64) -> bool {
        from < self.high_watermark() && self.log().needs_prefetch(from)
    }

    /// Reads about `max_bytes` of batches from `from` into memory ahead of a consumer reading
    /// through the files (see `ferry_log::Log::prefetch`). Blocking.
    pub fn prefetch(&self, from: u64, max_bytes: usize) -> Result<(), StreamError> {
        if from < self.high_watermark() {
            self.log().prefetch(from, max_bytes)?;
        }
        Ok(())
    }

    /// Offsets below this are durable and visible to consumers.
    pub fn high_watermark(&self) -> u64 {
        self.log().durable_offset()
    }

    pub fn log_start_offset(&self) -> u64 {
        self.log()
            .start_offset()
            .max(self.state.lock().start_offset)
    }

    pub fn size_bytes(&self) -> u64 {
        self.log().size_bytes()
    }

    /// First offset whose record timestamp is `>= timestamp_ms`, with that timestamp.
    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(u64, i64)>, StreamError> {
        let hw = self.high_watermark();
        let start = self.log_start_offset();
        let Some(entry_offset) = self.log().offset_for_timestamp(timestamp_ms)? else {
            return Ok(None);
        };
        // The entry's timestamp is its batch's max; find the first matching record inside.
        let mut offset = entry_offset.max(start);
        while offset < hw {
            let entries = self.log().read(offset, 1 << 20)?;
            if entries.is_empty() {
                break;
            }
            for entry in &entries {
                if entry.offset >= hw {
                    return Ok(None);
                }
                if entry.timestamp_ms < timestamp_ms {
                    continue;
                }
                let log_append = batch::parse_header(&entry.payload)
                    .map(|h| h.attributes & (1 << 3) != 0)
                    .unwrap_or(false);
                if log_append {
                    return Ok(Some((entry.offset.max(start), entry.timestamp_ms)));
                }
                let records = batch::decode_records(&entry.payload)?;
                if let Some(r) = records
                    .iter()
                    .find(|r| r.timestamp_ms >= timestamp_ms && r.offset >= start)
                {
                    return Ok(Some((r.offset, r.timestamp_ms)));
                }
            }
            offset = entries.last().map_or(hw, |e| e.next_offset());
        }
        Ok(None)
    }

    /// The first record with the partition's largest timestamp, and that timestamp (Kafka's
    /// max-timestamp lookup, KIP-734); `None` when the partition holds no records.
    pub fn offset_of_max_timestamp(&self) -> Result<Option<(u64, i64)>, StreamError> {
        match self.log().max_timestamp()? {
            // No record is newer, so the first at or after it is the first with it.
            Some(max) => self.offset_for_timestamp(max),
            None => Ok(None),
        }
    }

    /// Offset of the first entry (batch) whose newest timestamp is `>= timestamp_ms`.
    pub fn first_entry_at_or_after(&self, timestamp_ms: i64) -> Result<Option<u64>, StreamError> {
        Ok(self.log().offset_for_timestamp(timestamp_ms)?)
    }

    /// DeleteRecords: makes `offset` the new logical start (`offset <= high watermark`).
    pub fn delete_records_before(&self, offset: u64) -> Result<u64, StreamError> {
        let hw = self.high_watermark();
        if offset > hw {
            return Err(StreamError::OffsetOutOfRange {
                offset,
                start: self.log_start_offset(),
                end: hw,
            });
        }
        {
            let mut state = self.state.lock();
            if offset > state.start_offset {
                super::producer::write_atomic(
                    &self.dir.join("start_offset"),
                    offset.to_string().as_bytes(),
                )?;
                state.start_offset = offset;
            }
        }
        self.log().truncate_before(offset)?;
        Ok(self.log_start_offset())
    }

    /// Retention: deletes whole segments below `offset` (never past the high watermark).
    pub fn truncate_before(&self, offset: u64) -> Result<u64, StreamError> {
        Ok(self
            .log()
            .truncate_before(offset.min(self.high_watermark()))?)
    }

    pub fn segments(&self) -> Vec<ferry_log::SegmentInfo> {
        self.log().segments()
    }

    pub fn close(&self) -> Result<(), StreamError> {
        self.log().close()?;
        // After the close, everything appended is durable and in the snapshot.
        self.snapshot_producers(true)
    }

    /// Compaction: rewrites every closed segment keeping the latest record per key, then
    /// swaps the rewritten log in (see `compaction.rs`). Returns (records before, after).
    pub fn compact(
        &self,
        now_ms: i64,
        delete_retention_ms: i64,
    ) -> Result<Option<(u64, u64)>, StreamError> {
        let log = self.log();
        let Some(plan) = super::compaction::plan(&log, now_ms, delete_retention_ms)? else {
            return Ok(None);
        };
        let compacted =
            super::compaction::rewrite_closed(&log, &self.dir, &plan, self.config.clone())?;
        // Appends wait while the tail is copied and the logs are swapped.
        let mut state = self.state.lock();
        let start = log.start_offset().max(state.start_offset);
        let mut current = self.log.write();
        let new_log = super::compaction::finish(&log, compacted, &self.dir, self.config.clone())?;
        if start > state.start_offset {
            super::producer::write_atomic(
                &self.dir.join("start_offset"),
                start.to_string().as_bytes(),
            )?;
            state.start_offset = start;
        }
        *current = new_log;
        drop(current);
        drop(state);
        Ok(Some((plan.records_before, plan.records_kept)))
    }

    pub fn producer_count(&self) -> usize {
        self.state.lock().producers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::batch::{encode_records, NewRecord};

    fn records(n: usize, ts: i64) -> Bytes {
        let recs: Vec<NewRecord> = (0..n)
            .map(|i| NewRecord {
                value: Some(Bytes::from(format!("v{i}"))),
                timestamp_ms: Some(ts + i as i64),
                ..Default::default()
            })
            .collect();
        encode_records(&recs, 0).unwrap()
    }

    /// An idempotent batch: producer fields patched into an encoded batch, CRC recomputed.
    fn idempotent(n: usize, pid: i64, seq: i32) -> Bytes {
        let mut b = BytesMut::from(&records(n, 1)[..]);
        b[43..51].copy_from_slice(&pid.to_be_bytes());
        b[51..53].copy_from_slice(&0i16.to_be_bytes());
        b[53..57].copy_from_slice(&seq.to_be_bytes());
        crate::stream::batch::reseal(&mut b);
        b.freeze()
    }

    #[tokio::test]
    async fn append_read_and_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let p = Partition::open(dir.path(), 0, LogConfig::default()).unwrap();
        let a = p
            .append(records(3, 1000), TimestampType::CreateTime, 1 << 20, 5)
            .unwrap();
        assert_eq!(a.base_offset, 0);
        p.wait_durable(a.durable_at).await.unwrap();
        let b = p
            .append(records(2, 2000), TimestampType::CreateTime, 1 << 20, 5)
            .unwrap();
        assert_eq!(b.base_offset, 3);
        p.wait_durable(b.durable_at).await.unwrap();
        assert_eq!(p.high_watermark(), 5);
        let read = p.read(0, 1 << 20).unwrap();
        let decoded = batch::decode_records(&read.records).unwrap();
        assert_eq!(decoded.len(), 5);
        assert_eq!(decoded[4].offset, 4);
        // Reading from inside the second batch returns that whole batch.
        let read = p.read(4, 1 << 20).unwrap();
        assert_eq!(batch::decode_records(&read.records).unwrap()[0].offset, 3);
        assert_eq!(p.read(5, 100).unwrap().records.len(), 0);
        assert!(matches!(
            p.read(6, 100),
            Err(StreamError::OffsetOutOfRange { .. })
        ));
        assert_eq!(p.offset_for_timestamp(1001).unwrap(), Some((1, 1001)));
        assert_eq!(p.offset_for_timestamp(2000).unwrap(), Some((3, 2000)));
        assert_eq!(p.offset_for_timestamp(9999).unwrap(), None);
        assert!(matches!(
            p.append(records(3, 0), TimestampType::CreateTime, 10, 5),
            Err(StreamError::MessageTooLarge { .. })
        ));
        assert_eq!(p.delete_records_before(2).unwrap(), 2);
        assert!(p.read(1, 100).is_err());
    }

    #[tokio::test]
    async fn idempotent_state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let p = Partition::open(dir.path(), 0, LogConfig::default()).unwrap();
            let a = p
                .append(idempotent(2, 9, 0), TimestampType::CreateTime, 1 << 20, 0)
                .unwrap();
            p.wait_durable(a.durable_at).await.unwrap();
            let b = p
                .append(idempotent(2, 9, 2), TimestampType::CreateTime, 1 << 20, 0)
                .unwrap();
            p.wait_durable(b.durable_at).await.unwrap();
            p.close().unwrap();
        }
        let p = Partition::open(dir.path(), 0, LogConfig::default()).unwrap();
        // A retry after restart is recognised, not re-appended.
        let dup = p
            .append(idempotent(2, 9, 2), TimestampType::CreateTime, 1 << 20, 0)
            .unwrap();
        assert!(dup.duplicate);
        assert_eq!(dup.base_offset, 2);
        assert_eq!(p.high_watermark(), 4);
        assert!(matches!(
            p.append(idempotent(1, 9, 7), TimestampType::CreateTime, 1 << 20, 0),
            Err(StreamError::OutOfOrderSequence { .. })
        ));
        let next = p
            .append(idempotent(1, 9, 4), TimestampType::CreateTime, 1 << 20, 0)
            .unwrap();
        assert_eq!(next.base_offset, 4);
    }

    /// A producer idle for longer than the scan covers is still recognised after a restart,
    /// through the snapshot; without it, its retry would be appended a second time.
    #[tokio::test]
    async fn producer_snapshot_keeps_an_idle_producer_across_restarts() {
        let small = || LogConfig {
            segment_bytes: 512,
            ..LogConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        {
            let p = Partition::open_scanning(dir.path(), 0, small(), 0).unwrap();
            let a = p
                .append(idempotent(2, 9, 0), TimestampType::CreateTime, 1 << 20, 0)
                .unwrap();
            p.wait_durable(a.durable_at).await.unwrap();
            // Others fill several segments after it.
            for _ in 0..20 {
                let b = p
                    .append(records(5, 1), TimestampType::CreateTime, 1 << 20, 0)
                    .unwrap();
                p.wait_durable(b.durable_at).await.unwrap();
            }
            assert!(p.segments().len() > 3);
            // The periodic refresh (a segment has rolled since open), then a crash: no close.
            p.snapshot_producers(false).unwrap();
            let c = p
                .append(idempotent(1, 11, 0), TimestampType::CreateTime, 1 << 20, 0)
                .unwrap();
            p.wait_durable(c.durable_at).await.unwrap();
        }
        let snapshot = dir.path().join(PRODUCER_SNAPSHOT);
        let p = Partition::open_scanning(dir.path(), 0, small(), 0).unwrap();
        let hw = p.high_watermark();
        // Producer 9 from the snapshot, producer 11 from the headers after it.
        let dup = p
            .append(idempotent(2, 9, 0), TimestampType::CreateTime, 1 << 20, 0)
            .unwrap();
        assert!(dup.duplicate);
        assert_eq!(dup.base_offset, 0);
        let dup = p
            .append(idempotent(1, 11, 0), TimestampType::CreateTime, 1 << 20, 0)
            .unwrap();
        assert!(dup.duplicate);
        assert_eq!(dup.base_offset, hw - 1);
        assert!(matches!(
            p.append(idempotent(1, 9, 5), TimestampType::CreateTime, 1 << 20, 0),
            Err(StreamError::OutOfOrderSequence { expected: 2, .. })
        ));
        drop(p);
        // Without the snapshot, the same scan forgets producer 9: its retry is a new append.
        std::fs::remove_file(&snapshot).unwrap();
        let p = Partition::open_scanning(dir.path(), 0, small(), 0).unwrap();
        let again = p
            .append(idempotent(2, 9, 0), TimestampType::CreateTime, 1 << 20, 0)
            .unwrap();
        assert!(!again.duplicate);
        assert_eq!(again.base_offset, hw);
    }

    /// A snapshot never claims batches that are not durable, and one the log does not reach
    /// is ignored.
    #[test]
    fn snapshot_covers_only_what_is_below_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = Partition::open(dir.path(), 0, LogConfig::default()).unwrap();
        p.append(idempotent(2, 9, 0), TimestampType::CreateTime, 1 << 20, 0)
            .unwrap();
        p.append(idempotent(2, 9, 2), TimestampType::CreateTime, 1 << 20, 0)
            .unwrap();
        let table = p.state.lock().producers.clone();
        let below_second = table.snapshot_below(2);
        let t = ProducerTable::from_snapshot(below_second);
        let h = |seq| batch::parse_header(&idempotent(2, 9, seq)).unwrap();
        assert_eq!(
            t.check(&h(0)).unwrap(),
            SequenceCheck::Duplicate { base_offset: 0 }
        );
        assert_eq!(t.check(&h(2)).unwrap(), SequenceCheck::Append);
        // Nothing below offset 0: producer 9 unknown, so any batch is a first one.
        assert_eq!(
            ProducerTable::from_snapshot(table.snapshot_below(0)).len(),
            0
        );
        // An (empty) snapshot saved with an offset past the log's end: not used, so the scan
        // rebuilds producer 9 (used, it would leave the table empty).
        ProducerTable::default()
            .snapshot_below(1_000)
            .save(&dir.path().join(PRODUCER_SNAPSHOT))
            .unwrap();
        drop(p);
        let p = Partition::open_scanning(dir.path(), 0, LogConfig::default(), 0).unwrap();
        assert_eq!(p.producer_count(), 1);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::stream::batch::{decode_records, encode_records, NewRecord};
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Append(Vec<u8>),
        Reopen,
        DeleteBefore(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => proptest::collection::vec(any::<u8>(), 1..6).prop_map(Op::Append),
            1 => Just(Op::Reopen),
            1 => any::<u8>().prop_map(Op::DeleteBefore),
        ]
    }

    fn read_all(p: &Partition) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut offset = p.log_start_offset();
        while offset < p.high_watermark() {
            let read = p.read(offset, 256).unwrap();
            for r in decode_records(&read.records).unwrap() {
                if r.offset >= offset {
                    out.push((r.offset, r.value.unwrap().to_vec()));
                }
            }
            offset = out.last().map_or(offset, |r| r.0 + 1);
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Appends, reopens and DeleteRecords against a model: offsets are dense and assigned
        /// in order, every durable record reads back (from any start offset) after a reopen,
        /// and records below the start offset are never returned.
        #[test]
        fn partition_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let config = LogConfig { segment_bytes: 512, ..LogConfig::default() };
            let mut p = Partition::open(dir.path(), 0, config.clone()).unwrap();
            let mut model: Vec<Vec<u8>> = Vec::new();
            let mut start = 0u64;
            for op in ops {
                match op {
                    Op::Append(values) => {
                        let recs: Vec<NewRecord> = values
                            .iter()
                            .map(|v| NewRecord { value: Some(Bytes::from(vec![*v; 3])), ..Default::default() })
                            .collect();
                        let a = p.append(encode_records(&recs, 1).unwrap(), TimestampType::CreateTime, 1 << 20, 1).unwrap();
                        prop_assert_eq!(a.base_offset, model.len() as u64);
                        p.log().wait_durable_blocking(a.durable_at).unwrap();
                        model.extend(values.iter().map(|v| vec![*v; 3]));
                    }
                    Op::Reopen => {
                        p.close().unwrap();
                        drop(p);
                        p = Partition::open(dir.path(), 0, config.clone()).unwrap();
                    }
                    Op::DeleteBefore(n) => {
                        let target = (n as u64).min(model.len() as u64);
                        if target >= start {
                            start = p.delete_records_before(target).unwrap();
                            prop_assert_eq!(start, target);
                        }
                    }
                }
                prop_assert_eq!(p.high_watermark(), model.len() as u64);
                prop_assert_eq!(p.log_start_offset(), start);
                let got = read_all(&p);
                let want: Vec<(u64, Vec<u8>)> = model
                    .iter()
                    .enumerate()
                    .skip(start as usize)
                    .map(|(i, v)| (i as u64, v.clone()))
                    .collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
