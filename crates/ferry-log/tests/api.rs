//! Behaviour of each public call of `Log`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_log::{Appended, Durability, Entry, Log, LogConfig, LogError, StoredEntry, SyncStats};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

fn payload(i: u64) -> Vec<u8> {
    format!("entry-{i}-")
        .repeat((i % 7 + 1) as usize)
        .into_bytes()
}

fn append_n(log: &Log, n: u64) -> Appended {
    let entries: Vec<Entry> = (0..n)
        .map(|i| Entry::new(1000 + i as i64, payload(log.next_offset() + i)))
        .collect();
    log.append(&entries).unwrap()
}

fn read_all(log: &Log) -> Vec<StoredEntry> {
    let mut out = Vec::new();
    let mut from = log.start_offset();
    loop {
        let batch = log.read(from, 300).unwrap();
        let Some(last) = batch.last() else { break };
        from = last.next_offset();
        out.extend(batch);
    }
    out
}

#[test]
fn log_is_send_sync_clone() {
    fn assert_traits<T: Send + Sync + Clone + 'static>() {}
    assert_traits::<Log>();
}

#[test]
fn append_assigns_offsets_in_order_and_reads_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(
        (log.start_offset(), log.next_offset(), log.durable_offset()),
        (0, 0, 0)
    );
    assert_eq!(
        append_n(&log, 3),
        Appended {
            base_offset: 0,
            next_offset: 3
        }
    );
    assert_eq!(
        append_n(&log, 2),
        Appended {
            base_offset: 3,
            next_offset: 5
        }
    );
    log.wait_durable_blocking(5).unwrap();
    assert_eq!(log.durable_offset(), 5);
    let all = read_all(&log);
    assert_eq!(all.len(), 5);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(
            (e.offset, e.offset_count, e.timestamp_ms),
            (i as u64, 1, 1000 + (i as i64 % 3).min(i as i64))
        );
        assert_eq!(e.payload, payload(i as u64));
    }
    assert_eq!(log.read_entry(4).unwrap(), all[4]);
    log.close().unwrap();
}
