//! Idempotent producers: per-partition sequence tracking and producer id allocation.
//!
//! A producer (id, epoch) numbers its batches per partition with consecutive sequence numbers.
//! The partition remembers, per producer, the epoch and the last [`CACHED_BATCHES`] batches
//! (first and last sequence, first offset). A batch is then:
//!
//! - **the next one** (`base_sequence == last + 1`, or 0 under a newer epoch): appended;
//! - **a duplicate** of a cached batch (a retry after a lost answer): acknowledged with the
//!   original offset and not appended again;
//! - anything else: refused with `OutOfOrderSequence` (or `InvalidProducerEpoch` for an old
//!   epoch). The client then retries in order.
//!
//! Every stored batch carries its producer id, epoch and sequences, so opening a partition
//! rebuilds the table by scanning batch headers: it survives `kill -9` exactly as far as the
//! batches themselves do. So that the scan stays short however long a producer was idle, the
//! partition also keeps a [`ProducerSnapshot`] (written when a segment has rolled since the
//! last one, and at close): the table as of a durable offset, from which opening scans on.
//!
//! Producer ids come from [`ProducerIds`], a counter persisted in blocks of
//! [`ID_BLOCK`] so ids are never reused after a restart.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::batch::{add_sequence, BatchHeader};
use super::StreamError;

/// Kafka clients keep at most five batches in flight per partition, so five are remembered.
pub const CACHED_BATCHES: usize = 5;
/// Producer ids are reserved on disk this many at a time.
pub const ID_BLOCK: i64 = 1000;
/// Bound on producers remembered per partition (the oldest-seen are forgotten first).
pub const MAX_PRODUCERS_PER_PARTITION: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct CachedBatch {
    first_seq: i32,
    last_seq: i32,
    base_offset: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<CachedBatch>,
    /// Monotonic counter of the last update, for eviction.
    touched: u64,
}

/// What to do with an incoming idempotent batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    /// Already stored at this base offset.
    Duplicate {
        base_offset: u64,
    },
}

/// Per-partition producer state.
#[derive(Debug, Default, Clone)]
pub struct ProducerTable {
    producers: HashMap<i64, ProducerEntry>,
    clock: u64,
}

impl ProducerTable {
    /// Decides what to do with `batch` (which must be idempotent).
    pub fn check(&self, batch: &BatchHeader) -> Result<SequenceCheck, StreamError> {
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            // Unknown producer: its first batch on this partition, or its state was removed
            // with old segments. Accept and start tracking from here.
            return Ok(SequenceCheck::Append);
        };
        if batch.producer_epoch < entry.epoch {
            return Err(StreamError::InvalidProducerEpoch);
        }
        if batch.producer_epoch > entry.epoch {
            return if batch.base_sequence == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(StreamError::OutOfOrderSequence {
                    expected: 0,
                    got: batch.base_sequence,
                })
            };
        }
        let last = batch.last_sequence();
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == batch.base_sequence && b.last_seq == last)
        {
            return Ok(SequenceCheck::Duplicate {
                base_offset: dup.base_offset,
            });
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |b| add_sequence(b.last_seq, 1));
        if batch.base_sequence == expected {
            Ok(SequenceCheck::Append)
        } else {
            Err(StreamError::OutOfOrderSequence {
                expected,
                got: batch.base_sequence,
            })
        }
    }

    /// Records an appended (or recovered) idempotent batch stored at `base_offset`.
    pub fn record(&mut self, batch: &BatchHeader, base_offset: u64) {
        self.clock += 1;
        let clock = self.clock;
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: batch.producer_epoch,
                batches: VecDeque::new(),
                touched: clock,
            });
        if batch.producer_epoch != entry.epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        entry.touched = clock;
        entry.batches.push_back(CachedBatch {
            first_seq: batch.base_sequence,
            last_seq: batch.last_sequence(),
            base_offset,
        });
        while entry.batches.len() > CACHED_BATCHES {
            entry.batches.pop_front();
        }
        if self.producers.len() > MAX_PRODUCERS_PER_PARTITION {
            if let Some((&oldest, _)) = self.producers.iter().min_by_key(|(_, e)| e.touched) {
                self.producers.remove(&oldest);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// The table as it was when the log ended at `offset`: batches stored at or after it are
    /// left out (and producers left with none), so the snapshot only claims what is durable.
    pub fn snapshot_below(&self, offset: u64) -> ProducerSnapshot {
        let mut producers: Vec<(i64, ProducerEntry)> = self
            .producers
            .iter()
            .filter_map(|(&id, e)| {
                let batches: VecDeque<CachedBatch> = e
                    .batches
                    .iter()
                    .filter(|b| b.base_offset < offset)
                    .copied()
                    .collect();
                (!batches.is_empty()).then(|| {
                    (
                        id,
                        ProducerEntry {
                            batches,
                            ..e.clone()
                        },
                    )
                })
            })
            .collect();
        producers.sort_by_key(|(id, _)| *id);
        ProducerSnapshot {
            version: SNAPSHOT_VERSION,
            offset,
            producers,
        }
    }

    /// The table a snapshot holds.
    pub fn from_snapshot(snapshot: ProducerSnapshot) -> ProducerTable {
        let clock = snapshot
            .producers
            .iter()
            .map(|(_, e)| e.touched)
            .max()
            .unwrap_or(0);
        ProducerTable {
            producers: snapshot.producers.into_iter().collect(),
            clock,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

const SNAPSHOT_VERSION: u32 = 1;

/// A partition's producer table as of a log offset: every idempotent batch stored below
/// `offset` is accounted for, none at or above it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProducerSnapshot {
    version: u32,
    pub offset: u64,
    producers: Vec<(i64, ProducerEntry)>,
}

impl ProducerSnapshot {
    /// Writes the snapshot atomically to `path`.
    pub fn save(&self, path: &Path) -> Result<(), StreamError> {
        let json = serde_json::to_vec(self)
            .map_err(|e| StreamError::Storage(format!("encoding a producer snapshot: {e}")))?;
        write_atomic(path, &json)
    }

    /// The snapshot at `path`, if there is one that this version reads. An unreadable one
    /// is reported and ignored: the partition then rebuilds the table by scanning.
    pub fn load(path: &Path) -> Option<ProducerSnapshot> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the producer snapshot; scanning instead");
                return None;
            }
        };
        match serde_json::from_slice::<ProducerSnapshot>(&bytes) {
            Ok(s) if s.version == SNAPSHOT_VERSION => Some(s),
            Ok(s) => {
                tracing::warn!(path = %path.display(), version = s.version, "unknown producer snapshot version; scanning instead");
                None
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "corrupt producer snapshot; scanning instead");
                None
            }
        }
    }
}

/// Allocates producer ids that are unique across restarts.
pub struct ProducerIds {
    path: PathBuf,
    state: Mutex<(i64, i64)>, // (next, reserved_until)
}

impl ProducerIds {
    pub fn open(dir: &Path) -> Result<ProducerIds, StreamError> {
        let path = dir.join("producer_ids");
        let reserved = match fs::read_to_string(&path) {
            Ok(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|e| StreamError::Storage(format!("{} is corrupt: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(StreamError::io(&path, e)),
        };
        // Everything below the reservation may have been handed out before a crash.
        Ok(ProducerIds {
            path,
            state: Mutex::new((reserved, reserved)),
        })
    }

    /// The next producer id (reserving a new block on disk when needed).
    pub fn next(&self) -> Result<i64, StreamError> {
        let mut state = self.state.lock();
        if state.0 >= state.1 {
            let until = state.1 + ID_BLOCK;
            write_atomic(&self.path, until.to_string().as_bytes())?;
            state.1 = until;
        }
        let id = state.0;
        state.0 += 1;
        Ok(id)
    }
}

/// Writes `data` to `path` atomically and durably, through the broker's one
/// [`write_atomic`](crate::catalog::write_atomic), with the stream's error type.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StreamError> {
    crate::catalog::write_atomic(path, data).map_err(|e| match e {
        crate::BrokerError::Storage(reason) => StreamError::Storage(reason),
        other => StreamError::Storage(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, seq: i32, n: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            last_offset_delta: n - 1,
            attributes: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: n,
        }
    }

    #[test]
    fn in_order_duplicate_and_gap() {
        let mut t = ProducerTable::default();
        let b0 = batch(7, 0, 0, 3);
        assert_eq!(t.check(&b0).unwrap(), SequenceCheck::Append);
        t.record(&b0, 100);
        let b1 = batch(7, 0, 3, 2);
        assert_eq!(t.check(&b1).unwrap(), SequenceCheck::Append);
        t.record(&b1, 103);
        // A retry of either batch is a duplicate with its original offset.
        assert_eq!(
            t.check(&b0).unwrap(),
            SequenceCheck::Duplicate { base_offset: 100 }
        );
        assert_eq!(
            t.check(&b1).unwrap(),
            SequenceCheck::Duplicate { base_offset: 103 }
        );
        // A gap is out of order.
        assert!(matches!(
            t.check(&batch(7, 0, 9, 1)),
            Err(StreamError::OutOfOrderSequence {
                expected: 5,
                got: 9
            })
        ));
        // Old epoch is fenced; a new epoch restarts at 0.
        assert!(matches!(
            t.check(&batch(7, -1, 5, 1)),
            Err(StreamError::InvalidProducerEpoch)
        ));
        assert_eq!(t.check(&batch(7, 1, 0, 1)).unwrap(), SequenceCheck::Append);
        assert!(t.check(&batch(7, 1, 4, 1)).is_err());
    }

    #[test]
    fn only_last_five_batches_are_remembered() {
        let mut t = ProducerTable::default();
        for i in 0..8 {
            let b = batch(1, 0, i, 1);
            assert_eq!(t.check(&b).unwrap(), SequenceCheck::Append);
            t.record(&b, i as u64);
        }
        assert_eq!(
            t.check(&batch(1, 0, 7, 1)).unwrap(),
            SequenceCheck::Duplicate { base_offset: 7 }
        );
        assert!(t.check(&batch(1, 0, 1, 1)).is_err());
    }

    #[test]
    fn producer_ids_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(dir.path()).unwrap();
        let a = ids.next().unwrap();
        let b = ids.next().unwrap();
        assert_ne!(a, b);
        drop(ids);
        let ids = ProducerIds::open(dir.path()).unwrap();
        let c = ids.next().unwrap();
        assert!(c > b);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        /// Send the next batch of `n` records.
        Next(i32),
        /// Retry the batch sent `k` batches ago.
        Retry(usize),
        /// Send a batch that skips `gap` sequence numbers.
        Gap(i32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1..5i32).prop_map(Op::Next),
            3 => (0..8usize).prop_map(Op::Retry),
            1 => (1..4i32).prop_map(Op::Gap),
        ]
    }

    fn header(seq: i32, n: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            last_offset_delta: n - 1,
            attributes: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: 1,
            producer_epoch: 0,
            base_sequence: seq,
            record_count: n,
        }
    }

    proptest! {
        /// Whatever mix of new batches, retries and gaps arrives, the stored sequence numbers
        /// are consecutive from the first stored one (no duplicate, no hole), and a retry of a recent batch is
        /// answered with the offset it was first stored at.
        #[test]
        fn stored_sequences_are_dense_and_unique(ops in proptest::collection::vec(op(), 1..200)) {
            let mut table = ProducerTable::default();
            let mut sent: Vec<(i32, i32)> = Vec::new(); // (base seq, count) in send order
            let mut stored: Vec<(i32, i32, u64)> = Vec::new(); // (base seq, count, offset)
            let mut next_seq = 0i32;
            let mut next_offset = 0u64;
            for op in ops {
                let (seq, n) = match op {
                    Op::Next(n) => (next_seq, n),
                    Op::Retry(k) if !sent.is_empty() => sent[sent.len() - 1 - k.min(sent.len() - 1)],
                    Op::Retry(_) => continue,
                    Op::Gap(g) => (next_seq + g, 1),
                };
                let h = header(seq, n);
                match table.check(&h) {
                    Ok(SequenceCheck::Append) => {
                        // A producer unknown to the partition starts wherever it is.
                        if stored.is_empty() {
                            next_seq = seq;
                        }
                        prop_assert_eq!(seq, next_seq);
                        table.record(&h, next_offset);
                        stored.push((seq, n, next_offset));
                        sent.push((seq, n));
                        next_seq += n;
                        next_offset += n as u64;
                    }
                    Ok(SequenceCheck::Duplicate { base_offset }) => {
                        let original = stored.iter().find(|(s, c, _)| *s == seq && *c == n);
                        prop_assert_eq!(original.map(|o| o.2), Some(base_offset));
                    }
                    Err(_) => prop_assert!(seq != next_seq),
                }
            }
            let mut expect = stored.first().map_or(0, |s| s.0);
            for (s, n, _) in &stored {
                prop_assert_eq!(*s, expect);
                expect += n;
            }
        }
    }
}
