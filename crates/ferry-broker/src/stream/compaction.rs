//! Log compaction (`cleanup.policy=compact`): keep the latest record per key.
//!
//! A pass rewrites every **closed** segment of a partition into a new log beside it
//! (`<partition>/log.compact/`), keeping a record when it is the latest of its key anywhere in
//! the partition (records without a key are kept; tombstones, records with a null value, are
//! kept until their batch is older than `delete.retention.ms`). Then, with appends paused, the
//! active segment is copied unchanged, the logs are swapped by renaming directories and the new
//! log is opened.
//!
//! Offsets never change. A rewritten batch keeps its header's base offset and last offset
//! delta (like Kafka's cleaner), so a consumer's next fetch offset always moves past it; only
//! its records (re-encoded uncompressed), record count and CRC change. Batches left empty are
//! dropped, and the next log entry spans the gap: `ferry-log` entries are contiguous, so each
//! entry covers `[end of previous entry, end of its batch)`. A fetch at an offset inside a gap
//! returns the next batch, whose first record is past the offset, as Kafka does.
//!
//! Crash safety: the rewritten log is complete and synced before the rename. On open,
//! [`recover_dirs`] discards a half-written `log.compact/`, or finishes an interrupted swap.

use std::collections::HashMap;
use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
use ferry_log::{Durability, Entry, Log, LogConfig};

use super::batch::{self, BatchHeader, StreamRecord};
use super::StreamError;

/// Most distinct keys one pass holds in memory; larger partitions are not compacted.
pub const MAX_KEYS_PER_PASS: usize = 5_000_000;
/// Entries read per step.
const READ_BYTES: usize = 4 << 20;

/// What one pass will do: everything below `cut` (the active segment's base) is rewritten.
pub struct Plan {
    pub cut: u64,
    /// Per key: offset of its latest record, and whether that is an expired tombstone.
    latest: HashMap<Bytes, (u64, bool)>,
    pub records_before: u64,
    pub records_kept: u64,
}

/// Finishes or discards an interrupted compaction of the partition in `dir`.
pub fn recover_dirs(dir: &Path) -> Result<(), StreamError> {
    let log = dir.join("log");
    let compact = dir.join("log.compact");
    let old = dir.join("log.old");
    if compact.exists() {
        if log.exists() {
            std::fs::remove_dir_all(&compact).map_err(|e| StreamError::io(&compact, e))?;
        } else {
            std::fs::rename(&compact, &log).map_err(|e| StreamError::io(&compact, e))?;
        }
    }
    if old.exists() && log.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| StreamError::io(&old, e))?;
    }
    Ok(())
}

/// Calls `f` with every stored entry in `[from, to)` and its decoded records.
fn scan(
    log: &Log,
    from: u64,
    to: u64,
    mut f: impl FnMut(
        &ferry_log::StoredEntry,
        Option<&BatchHeader>,
        Vec<StreamRecord>,
    ) -> Result<(), StreamError>,
) -> Result<(), StreamError> {
    let mut offset = from;
    while offset < to {
        let entries = log.read(offset, READ_BYTES)?;
        let Some(last) = entries.last() else { break };
        offset = last.next_offset();
        for entry in &entries {
            if entry.offset >= to {
                return Ok(());
            }
            let header = batch::parse_header(&entry.payload).ok();
            let records = batch::decode_records(&entry.payload)?;
            f(entry, header.as_ref(), records)?;
        }
    }
    Ok(())
}

/// Decides whether a pass would remove anything. `None`: nothing to do.
pub fn plan(log: &Log, now_ms: i64, delete_retention_ms: i64) -> Result<Option<Plan>, StreamError> {
    let horizon = now_ms.saturating_sub(delete_retention_ms.max(0));
    let segments = log.segments();
    if segments.len() < 2 {
        return Ok(None);
    }
    let cut = segments[segments.len() - 1].base_offset;
    let end = log.durable_offset();
    let mut latest: HashMap<Bytes, (u64, bool)> = HashMap::new();
    let mut before = 0u64;
    let mut unkeyed = 0u64;
    let mut too_many = false;
    scan(log, log.start_offset(), end, |_, header, records| {
        let old = header.is_some_and(|h| h.max_timestamp < horizon);
        for r in records {
            if r.offset < cut {
                before += 1;
            }
            match r.key {
                Some(k) => {
                    if latest.len() >= MAX_KEYS_PER_PASS && !latest.contains_key(&k) {
                        too_many = true;
                    } else {
                        latest.insert(k, (r.offset, old && r.value.is_none()));
                    }
                }
                None if r.offset < cut => unkeyed += 1,
                None => {}
            }
        }
        Ok(())
    })?;
    if too_many {
        tracing::warn!("partition has more than {MAX_KEYS_PER_PASS} keys; not compacted");
        return Ok(None);
    }
    let kept = unkeyed
        + latest
            .values()
            .filter(|(o, expired)| *o < cut && !expired)
            .count() as u64;
    if kept == before {
        return Ok(None);
    }
    Ok(Some(Plan {
        cut,
        latest,
        records_before: before,
        records_kept: kept,
    }))
}

/// The new log being built, and the end offset of its last entry.
pub struct Compacted {
    log: Log,
    end: u64,
}

/// Rewrites everything below `plan.cut` into `<dir>/log.compact/`.
pub fn rewrite_closed(
    log: &Log,
    dir: &Path,
    plan: &Plan,
    config: LogConfig,
) -> Result<Compacted, StreamError> {
    let target = dir.join("log.compact");
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(|e| StreamError::io(&target, e))?;
    }
    // Synced once, at the end (close), before the swap.
    let new_log = Log::open(
        &target,
        LogConfig {
            durability: Durability::Never,
            // Its entries are not news to any consumer.
            tail_cache: None,
            ..config
        },
    )?;
    let mut end = 0u64;
    scan(
        log,
        log.start_offset(),
        plan.cut,
        |entry, header, records| {
            let Some(header) = header else {
                return Err(StreamError::CorruptBatch(format!(
                    "entry at offset {} is not a record batch",
                    entry.offset
                )));
            };
            let total = records.len();
            let kept: Vec<StreamRecord> = records
                .into_iter()
                .filter(|r| match &r.key {
                    None => true,
                    Some(k) => plan.latest.get(k) == Some(&(r.offset, false)),
                })
                .collect();
            if kept.is_empty() {
                return Ok(());
            }
            let payload = if kept.len() == total {
                entry.payload.clone()
            } else {
                encode_kept(header, &kept)
            };
            append_spanning(
                &new_log,
                &mut end,
                entry.next_offset(),
                entry.timestamp_ms,
                payload,
            )
        },
    )?;
    Ok(Compacted { log: new_log, end })
}

/// Appends `payload` as an entry covering `[*end, batch_end)`.
fn append_spanning(
    log: &Log,
    end: &mut u64,
    batch_end: u64,
    timestamp_ms: i64,
    payload: Bytes,
) -> Result<(), StreamError> {
    let span = u32::try_from(batch_end - *end)
        .map_err(|_| StreamError::Storage("compaction gap larger than 2^32 offsets".to_string()))?;
    log.append(&[Entry {
        offset_count: span,
        ..Entry::new(timestamp_ms, payload)
    }])?;
    *end = batch_end;
    Ok(())
}

/// With appends paused: copies the active segment, swaps the logs, opens the new one.
pub fn finish(
    old: &Log,
    mut compacted: Compacted,
    dir: &Path,
    config: LogConfig,
) -> Result<Log, StreamError> {
    let next = old.next_offset();
    old.wait_durable_blocking(next)?;
    let cut = old.segments().last().map_or(next, |s| s.base_offset);
    let mut offset = cut;
    while offset < next {
        let entries = old.read(offset, READ_BYTES)?;
        let Some(last) = entries.last() else { break };
        offset = last.next_offset();
        for entry in entries {
            append_spanning(
                &compacted.log,
                &mut compacted.end,
                entry.next_offset(),
                entry.timestamp_ms,
                entry.payload,
            )?;
        }
    }
    if compacted.end != next {
        let _ = compacted.log.close();
        return Err(StreamError::Storage(format!(
            "compaction copy ended at {} instead of {next}",
            compacted.end
        )));
    }
    compacted.log.close()?;
    old.close()?;
    let live = dir.join("log");
    let staged = dir.join("log.compact");
    let retired = dir.join("log.old");
    std::fs::rename(&live, &retired).map_err(|e| StreamError::io(&live, e))?;
    std::fs::rename(&staged, &live).map_err(|e| StreamError::io(&staged, e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    let _ = std::fs::remove_dir_all(&retired);
    Ok(Log::open(&live, config)?)
}

fn put_varint(buf: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    buf.put_u8(z as u8);
}

fn put_bytes(buf: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, b.len() as i64);
            buf.put_slice(b);
        }
    }
}

/// Re-encodes the kept records of a batch, uncompressed, keeping the header's offsets,
/// timestamps and producer fields.
fn encode_kept(h: &BatchHeader, kept: &[StreamRecord]) -> Bytes {
    let mut records = BytesMut::new();
    for r in kept {
        let mut rec = BytesMut::new();
        rec.put_i8(0);
        put_varint(&mut rec, r.timestamp_ms - h.base_timestamp);
        put_varint(&mut rec, r.offset as i64 - h.base_offset);
        put_bytes(&mut rec, r.key.as_deref());
        put_bytes(&mut rec, r.value.as_deref());
        put_varint(&mut rec, r.headers.len() as i64);
        for (k, v) in &r.headers {
            put_bytes(&mut rec, Some(k.as_bytes()));
            put_bytes(&mut rec, v.as_deref());
        }
        put_varint(&mut records, rec.len() as i64);
        records.extend_from_slice(&rec);
    }
    let mut b = BytesMut::with_capacity(batch::HEADER_BYTES + records.len());
    b.put_i64(h.base_offset);
    b.put_i32((batch::HEADER_BYTES - 12 + records.len()) as i32);
    b.put_i32(-1);
    b.put_i8(2);
    b.put_u32(0);
    // Compression bits cleared; timestamp type and the other flags kept.
    b.put_i16(h.attributes & !0x7);
    b.put_i32(h.last_offset_delta);
    b.put_i64(h.base_timestamp);
    b.put_i64(h.max_timestamp);
    b.put_i64(h.producer_id);
    b.put_i16(h.producer_epoch);
    b.put_i32(h.base_sequence);
    b.put_i32(kept.len() as i32);
    b.extend_from_slice(&records);
    batch::reseal(&mut b);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::batch::{encode_records, NewRecord};
    use crate::stream::{Partition, TimestampType};

    fn keyed(pairs: &[(&str, Option<&str>)], ts: i64) -> Bytes {
        let recs: Vec<NewRecord> = pairs
            .iter()
            .map(|(k, v)| NewRecord {
                key: Some(Bytes::from(k.to_string())),
                value: v.map(|v| Bytes::from(v.to_string())),
                timestamp_ms: Some(ts),
                ..Default::default()
            })
            .collect();
        encode_records(&recs, ts).unwrap()
    }

    fn all(p: &Partition) -> Vec<(u64, String, Option<String>)> {
        let mut out = Vec::new();
        let mut offset = p.log_start_offset();
        while offset < p.high_watermark() {
            let read = p.read(offset, 1 << 20).unwrap();
            let records = batch::decode_records(&read.records).unwrap();
            let mut next = offset;
            let mut b = read.records.clone();
            // Advance by batch headers so that empty-after-filter batches still move on.
            while b.len() >= batch::HEADER_BYTES {
                let len = i32::from_be_bytes(b[8..12].try_into().unwrap()) as usize + 12;
                let h = batch::parse_header(&b[..len]).unwrap();
                next = next.max(h.base_offset as u64 + u64::from(h.offset_count()));
                bytes::Buf::advance(&mut b, len);
            }
            for r in records {
                if r.offset >= offset {
                    out.push((
                        r.offset,
                        String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
                        r.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                    ));
                }
            }
            offset = next;
        }
        out
    }

    #[tokio::test]
    async fn keeps_latest_per_key_offsets_unchanged_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 300,
            ..LogConfig::default()
        };
        let p = Partition::open(dir.path(), 0, config.clone()).unwrap();
        let produce = |pairs: &[(&str, Option<&str>)], ts: i64| {
            p.append(keyed(pairs, ts), TimestampType::CreateTime, 1 << 20, ts)
                .unwrap()
        };
        produce(&[("a", Some("a1")), ("b", Some("b1"))], 1); // 0, 1
        produce(&[("a", Some("a2"))], 2); // 2
        produce(&[("c", Some("c1")), ("b", None)], 3); // 3, 4 (b tombstone)
        produce(&[("d", Some("d1"))], 4); // 5
        for i in 0..10 {
            produce(&[("a", Some(&format!("a{}", i + 3)))], 5 + i); // 6..=15
        }
        let last = produce(&[("e", Some("e1"))], 20); // 16
        p.wait_durable(last.durable_at).await.unwrap();
        assert!(p.segments().len() > 2);
        let before = all(&p);
        assert_eq!(before.len(), 17);

        let (n_before, n_after) = p
            .compact(100, 1_000_000)
            .unwrap()
            .expect("something to compact");
        assert!(n_after < n_before);
        let after = all(&p);
        // Same offsets for every surviving record, the latest per key among closed segments.
        for rec in &after {
            assert!(before.contains(rec), "{rec:?}");
        }
        let keys_a: Vec<_> = after.iter().filter(|r| r.1 == "a").collect();
        assert_eq!(keys_a.last().unwrap().0, 15);
        assert!(!after.iter().any(|r| r.0 == 0 || r.0 == 1 || r.0 == 2));
        assert!(after
            .iter()
            .any(|r| *r == (3, "c".into(), Some("c1".into()))));
        assert!(
            after.iter().any(|r| *r == (4, "b".into(), None)),
            "tombstone kept within delete.retention"
        );
        assert_eq!(p.high_watermark(), 17);

        // Appends continue at the same offsets; a reopen sees the compacted log.
        let a = produce(&[("f", Some("f1"))], 30);
        assert_eq!(a.base_offset, 17);
        p.wait_durable(a.durable_at).await.unwrap();
        p.close().unwrap();
        drop(p);
        let p = Partition::open(dir.path(), 0, config).unwrap();
        let reopened = all(&p);
        assert_eq!(reopened.last().unwrap().0, 17);
        assert_eq!(&reopened[..reopened.len() - 1], &after[..]);
        // Tombstones go once older than delete.retention.ms.
        p.compact(1_000_000, 10).unwrap();
        assert!(!all(&p).iter().any(|r| r.1 == "b"));
    }

    #[test]
    fn interrupted_swap_is_finished_or_discarded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("log")).unwrap();
        std::fs::create_dir_all(dir.path().join("log.compact")).unwrap();
        recover_dirs(dir.path()).unwrap();
        assert!(!dir.path().join("log.compact").exists());
        std::fs::rename(dir.path().join("log"), dir.path().join("log.old")).unwrap();
        std::fs::create_dir_all(dir.path().join("log.compact")).unwrap();
        recover_dirs(dir.path()).unwrap();
        assert!(dir.path().join("log").exists());
        assert!(!dir.path().join("log.old").exists());
    }
}
