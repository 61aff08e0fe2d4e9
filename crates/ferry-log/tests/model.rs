//! Property test: random appends, reopens, retention and lookups, checked against a `Vec`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_log::{Durability, Entry, Log, LogConfig, StoredEntry, TailCache};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// One `append` call: (payload length, offset count, timestamp) per entry.
    Append(Vec<(usize, u32, i64)>),
    Reopen,
    /// `truncate_before` at this percentage of the way from start to next offset.
    TruncateBefore(u8),
    OffsetForTimestamp(i64),
    /// `prefetch` from this percentage of the way from start to next offset, of this many bytes.
    Prefetch(u8, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((0usize..600, prop_oneof![4 => Just(1u32), 1 => 1u32..20], -50i64..1000), 1..8)
            .prop_map(Op::Append),
        1 => Just(Op::Reopen),
        1 => (0u8..=110).prop_map(Op::TruncateBefore),
        1 => (-100i64..1100).prop_map(Op::OffsetForTimestamp),
        2 => (0u8..=100, 0usize..3000).prop_map(|(p, b)| Op::Prefetch(p, b)),
    ]
}

fn durability() -> impl Strategy<Value = Durability> {
    prop_oneof![
        Just(Durability::Always),
        Just(Durability::Interval(Duration::from_millis(1))),
        Just(Durability::Never),
    ]
}

fn payload(offset: u64, len: usize) -> Bytes {
    (0..len).map(|i| (offset as usize * 7 + i) as u8).collect()
}

/// Reads everything in chunks of `max_bytes` and compares with the model; also checks
/// `read_entry` on every offset, including offsets inside multi-offset entries.
fn check(log: &Log, model: &[StoredEntry], start: u64, next: u64, max_bytes: usize) {
    assert_eq!((log.start_offset(), log.next_offset()), (start, next));
    log.wait_durable_blocking(next).unwrap();
    let mut read = Vec::new();
    let mut from = start;
    loop {
        let batch = log.read(from, max_bytes).unwrap();
        let Some(last) = batch.last() else { break };
        from = last.next_offset();
        read.extend(batch);
    }
    assert_eq!(read, model);
    // A read from inside every entry: the same entries a model read under the same budget
    // rule gives (frames of payload + 28 bytes within `max_bytes`, at least one), whether
    // the log serves it from its files or from its tail cache.
    for (i, entry) in model.iter().enumerate() {
        let from = entry.next_offset() - 1;
        let mut budget = max_bytes;
        let mut expected = Vec::new();
        for e in &model[i..] {
            let len = e.payload.len() + 28;
            if !expected.is_empty() && len > budget {
                break;
            }
            expected.push(e.clone());
            budget = budget.saturating_sub(len);
            if budget == 0 {
                break;
            }
        }
        assert_eq!(
            log.read(from, max_bytes).unwrap(),
            expected,
            "read from {from}"
        );
    }
    for entry in model {
        for offset in [entry.offset, entry.next_offset() - 1] {
            assert_eq!(&log.read_entry(offset).unwrap(), entry);
        }
    }
    // Batch reads: every offset from just below the start to just past the end, scrambled,
    // with repeats; each answer is the entry holding it, or `None` outside the log.
    let span: Vec<u64> = (start.saturating_sub(2)..next + 2).collect();
    let mut wanted: Vec<u64> = (0..span.len())
        .map(|i| span[(i * 7919 + 3) % span.len()])
        .collect();
    wanted.extend(span.iter().step_by(3));
    let found = log.read_entries(&wanted).unwrap();
    assert_eq!(found.len(), wanted.len());
    for (offset, entry) in wanted.iter().zip(found) {
        let expected = model.iter().find(|e| e.contains(*offset));
        assert_eq!(entry.as_ref(), expected, "offset {offset}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn log_behaves_like_a_vec(
        durability in durability(),
        segment_bytes in 100u64..3000,
        index_interval_bytes in 0u32..400,
        max_bytes in 0usize..2000,
        direct_io in any::<bool>(),
        tail_cache_bytes in prop_oneof![Just(0u64), 1u64..3000, Just(1u64 << 20)],
        ops in prop::collection::vec(op(), 1..30),
    ) {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let cache = TailCache::new(tail_cache_bytes);
        let mut appended_any = false;
        let config = LogConfig {
            segment_bytes,
            index_interval_bytes,
            durability,
            direct_io,
            tail_cache: Some(Arc::clone(&cache)),
            ..LogConfig::default()
        };
        let mut log = Log::open(dir.path(), config.clone()).unwrap();
        let mut model: Vec<StoredEntry> = Vec::new();
        let (mut start, mut next) = (0u64, 0u64);
        for op in ops {
            match op {
                Op::Append(specs) => {
                    let mut offset = next;
                    let entries: Vec<Entry> = specs
                        .iter()
                        .map(|&(len, offset_count, timestamp_ms)| {
                            // Some entries come as a head and the rest (as a patched Kafka
                            // batch does); they must read back as the one payload.
                            let whole = payload(offset, len);
                            let cut = (offset as usize * 13) % (len + 1);
                            let entry = Entry {
                                offset_count,
                                head: whole.slice(..cut),
                                ..Entry::new(timestamp_ms, whole.slice(cut..))
                            };
                            model.push(StoredEntry { offset, offset_count, timestamp_ms, payload: whole });
                            offset += u64::from(offset_count);
                            entry
                        })
                        .collect();
                    let appended = log.append(&entries).unwrap();
                    prop_assert_eq!((appended.base_offset, appended.next_offset), (next, offset));
                    next = offset;
                    appended_any = true;
                }
                Op::Reopen => {
                    log.close().unwrap();
                    log = Log::open(dir.path(), config.clone()).unwrap();
                }
                Op::TruncateBefore(percent) => {
                    log.wait_durable_blocking(next).unwrap();
                    let target = start + (next - start) * u64::from(percent) / 100;
                    let new_start = log.truncate_before(target).unwrap();
                    prop_assert!(new_start >= start);
                    // Only whole entries below the target are gone, and a whole prefix.
                    let removed = model.iter().take_while(|e| e.offset < new_start).count();
                    prop_assert!(model[..removed].iter().all(|e| e.next_offset() <= target));
                    prop_assert!(model.get(removed).map_or(new_start == next, |e| e.offset == new_start));
                    model.drain(..removed);
                    start = new_start;
                }
                Op::Prefetch(percent, bytes) => {
                    log.wait_durable_blocking(next).unwrap();
                    let from = start + (next - start) * u64::from(percent) / 100;
                    log.prefetch(from, bytes).unwrap();
                    if from < next {
                        prop_assert!(!log.needs_prefetch(from), "prefetched or cached: {}", from);
                    }
                }
                Op::OffsetForTimestamp(ts) => {
                    log.wait_durable_blocking(next).unwrap();
                    let expected = model.iter().find(|e| e.timestamp_ms >= ts).map(|e| e.offset);
                    prop_assert_eq!(log.offset_for_timestamp(ts).unwrap(), expected);
                }
            }
            check(&log, &model, start, next, max_bytes);
        }
        log.close().unwrap();
        prop_assert_eq!(cache.stats().used_bytes, 0, "a closed log gives its memory back");
        if tail_cache_bytes == 1 << 20 && appended_any {
            prop_assert!(cache.stats().hits > 0, "reads of fresh entries come from memory");
        }
        check(&Log::open(dir.path(), config).unwrap(), &model, start, next, max_bytes);
    }
}
