//! Behaviour of each public call of `Log`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_log::{Appended, Durability, Entry, Log, LogConfig, LogError, StoredEntry};

/// Small segments and a dense index so a few entries exercise rolling and index lookups.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

/// A log with the test configuration that refuses entries larger than `max_entry_bytes`.
fn open_with_entry_limit(dir: &std::path::Path, max_entry_bytes: u32) -> Log {
    Log::open(
        dir,
        LogConfig {
            max_entry_bytes,
            ..config()
        },
    )
    .unwrap()
}

fn payload(offset: u64) -> Vec<u8> {
    format!("entry-{offset}-")
        .repeat((offset % 7 + 1) as usize)
        .into_bytes()
}

/// Appends `n` single-offset entries whose payload and timestamp derive from their offset.
fn append_n(log: &Log, n: u64) -> Appended {
    let next = log.next_offset();
    let entries: Vec<Entry> = (next..next + n)
        .map(|o| Entry::new(1000 + o as i64, payload(o)))
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

fn assert_generated(entries: &[StoredEntry], offsets: std::ops::Range<u64>) {
    assert_eq!(entries.len() as u64, offsets.end - offsets.start);
    for (entry, offset) in entries.iter().zip(offsets) {
        assert_eq!(
            (entry.offset, entry.offset_count, entry.timestamp_ms),
            (offset, 1, 1000 + offset as i64)
        );
        assert_eq!(entry.payload, payload(offset));
    }
}

fn files_with_extension(dir: &Path, extension: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(&format!(".{extension}")))
        .collect();
    names.sort();
    names
}

#[test]
fn log_is_send_sync_clone() {
    fn assert_traits<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    assert_traits::<Log>();
}

#[test]
fn append_assigns_offsets_in_call_order_and_read_returns_them() {
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
    assert_eq!(
        log.append(&[]).unwrap(),
        Appended {
            base_offset: 5,
            next_offset: 5
        }
    );
    log.wait_durable_blocking(5).unwrap();
    assert_eq!(log.durable_offset(), 5);
    assert_generated(&read_all(&log), 0..5);
    log.close().unwrap();
}

#[test]
fn read_respects_max_bytes_but_returns_at_least_one_entry() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let entries: Vec<Entry> = (0..10).map(|i| Entry::new(i, vec![i as u8; 100])).collect();
    log.append(&entries).unwrap();
    log.wait_durable_blocking(10).unwrap();
    // Each frame is 28 + 100 bytes.
    assert_eq!(log.read(0, 0).unwrap().len(), 1);
    assert_eq!(log.read(0, 128).unwrap().len(), 1);
    assert_eq!(log.read(0, 3 * 128 + 127).unwrap().len(), 3);
    let tail = log.read(7, usize::MAX).unwrap();
    assert_eq!(
        tail.iter().map(|e| e.offset).collect::<Vec<_>>(),
        vec![7, 8, 9]
    );
    assert_eq!(tail[2].payload, vec![9u8; 100]);
    assert!(log.read(10, 1000).unwrap().is_empty());
    assert!(matches!(
        log.read(11, 1000),
        Err(LogError::OffsetOutOfRange {
            offset: 11,
            start: 0,
            next: 10
        })
    ));
}

#[test]
fn read_entry_finds_every_offset_and_rejects_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    append_n(&log, 200);
    for offset in 0..200 {
        assert_generated(&[log.read_entry(offset).unwrap()], offset..offset + 1);
    }
    assert!(matches!(
        log.read_entry(200),
        Err(LogError::OffsetOutOfRange { offset: 200, .. })
    ));
}

#[test]
fn multi_offset_entries_span_their_offset_count() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    let batch = |ts, count, body: &'static str| Entry {
        offset_count: count,
        ..Entry::new(ts, body)
    };
    let appended = log
        .append(&[
            batch(1, 5, "five"),
            batch(2, 1, "one"),
            batch(3, 3, "three"),
        ])
        .unwrap();
    assert_eq!(
        appended,
        Appended {
            base_offset: 0,
            next_offset: 9
        }
    );
    // An offset inside an entry yields the whole entry, with its base offset.
    let inside = log.read_entry(3).unwrap();
    assert_eq!(
        (inside.offset, inside.offset_count, &inside.payload[..]),
        (0, 5, &b"five"[..])
    );
    assert_eq!(log.read_entry(5).unwrap().payload, "one");
    assert_eq!(log.read_entry(8).unwrap().offset, 6);
    let from_inside = log.read(7, usize::MAX).unwrap();
    assert_eq!(from_inside.len(), 1);
    assert_eq!(
        (from_inside[0].offset, from_inside[0].next_offset()),
        (6, 9)
    );
    assert_eq!(log.offset_for_timestamp(2).unwrap(), Some(5));
    let zero = Entry {
        offset_count: 0,
        ..Entry::new(1, "x")
    };
    let err = log.append(&[Entry::new(1, "ok"), zero]).unwrap_err();
    assert!(
        matches!(&err, LogError::Io { source, .. } if source.kind() == std::io::ErrorKind::InvalidInput)
    );
    assert_eq!(log.next_offset(), 9, "a refused call appends nothing");
}

#[test]
fn an_entry_with_a_head_is_stored_and_read_as_one_payload() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with_entry_limit(dir.path(), 10);
    let shared = bytes::Bytes::from_static(b"0123456789");
    let patched = Entry {
        head: bytes::Bytes::from_static(b"AB"),
        ..Entry::new(7, shared.slice(2..))
    };
    assert_eq!(patched.len(), 10);
    let appended = log.append(&[patched, Entry::new(8, "plain")]).unwrap();
    log.wait_durable_blocking(appended.next_offset).unwrap();
    let read = log.read(0, usize::MAX).unwrap();
    assert_eq!(read[0].payload, "AB23456789");
    assert_eq!(read[1].payload, "plain");
    assert_eq!(shared, "0123456789", "the shared buffer is not changed");

    // The size limit counts the head too.
    let too_large = Entry {
        head: bytes::Bytes::from_static(b"A"),
        ..Entry::new(9, shared.clone())
    };
    assert!(matches!(
        log.append(&[too_large]).unwrap_err(),
        LogError::EntryTooLarge { size: 11, max: 10 }
    ));

    // And it survives a reopen (the frame's CRC covers both parts).
    log.close().unwrap();
    let reopened = Log::open(dir.path(), config()).unwrap();
    assert_eq!(reopened.read_entry(0).unwrap().payload, "AB23456789");
}

#[test]
fn entries_larger_than_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with_entry_limit(dir.path(), 10);
    log.append(&[Entry::new(0, vec![0u8; 10])]).unwrap();
    let err = log.append(&[Entry::new(0, vec![0u8; 11])]).unwrap_err();
    assert!(matches!(err, LogError::EntryTooLarge { size: 11, max: 10 }));
    assert_eq!(log.next_offset(), 1);
}

#[test]
fn segments_roll_at_segment_bytes_and_closed_ones_get_index_files() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    append_n(&log, 300);
    // An entry larger than a segment gets a segment of its own.
    let big = log.append(&[Entry::new(5, vec![7u8; 3000])]).unwrap();
    append_n(&log, 1);
    log.wait_durable_blocking(log.next_offset()).unwrap();
    let segments = log.segments();
    assert!(segments.len() > 5, "{} segments", segments.len());
    for pair in segments.windows(2) {
        assert_eq!(
            pair[0].next_offset, pair[1].base_offset,
            "segments are contiguous"
        );
    }
    for segment in &segments {
        assert!(segment.size_bytes <= 1024 || segment.next_offset - segment.base_offset == 1);
        assert_eq!(
            std::fs::metadata(&segment.path).unwrap().len(),
            segment.size_bytes
        );
    }
    let big_segment = segments
        .iter()
        .find(|s| s.base_offset == big.base_offset)
        .unwrap();
    assert_eq!(big_segment.next_offset, big.next_offset);
    assert_eq!(
        log.size_bytes(),
        segments.iter().map(|s| s.size_bytes).sum::<u64>()
    );
    let logs = files_with_extension(dir.path(), "log");
    assert_eq!(logs.len(), segments.len());
    assert_eq!(logs[0], "00000000000000000000.log");
    // Every closed segment has persisted indexes; the active one is indexed in memory only.
    assert_eq!(
        files_with_extension(dir.path(), "index").len(),
        segments.len() - 1
    );
    assert_eq!(
        files_with_extension(dir.path(), "timeindex").len(),
        segments.len() - 1
    );
    assert_generated(&read_all(&log)[..300], 0..300);
    assert_eq!(
        log.read_entry(big.base_offset).unwrap().payload,
        vec![7u8; 3000]
    );
}

#[test]
fn truncate_before_deletes_whole_old_segments_but_never_the_active_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    append_n(&log, 200);
    log.wait_durable_blocking(200).unwrap();
    let segments = log.segments();
    assert!(segments.len() >= 3);
    assert_eq!(log.truncate_before(0).unwrap(), 0);
    // The oldest segment's end is the first offset of the next; below it nothing goes.
    let end = log.oldest_segment_end().unwrap();
    assert_eq!(end, segments[1].base_offset);
    assert_eq!(log.truncate_before(end - 1).unwrap(), 0);
    // An offset in the middle of the second segment deletes only the first.
    let cut = segments[1].base_offset + 1;
    assert_eq!(log.truncate_before(cut).unwrap(), segments[1].base_offset);
    assert!(!segments[0].path.exists());
    assert!(!segments[0].path.with_extension("index").exists());
    assert!(matches!(
        log.read(0, 100),
        Err(LogError::OffsetOutOfRange { offset: 0, .. })
    ));
    assert!(matches!(
        log.read_entry(0),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_generated(&read_all(&log), segments[1].base_offset..200);
    // Truncating past the end keeps the active segment.
    let active = segments.last().unwrap().base_offset;
    assert_eq!(log.truncate_before(u64::MAX).unwrap(), active);
    assert_eq!(log.segments().len(), 1);
    assert_eq!(log.oldest_segment_end(), None);
    assert_eq!(log.start_offset(), active);
    append_n(&log, 5);
    log.wait_durable_blocking(205).unwrap();
    assert_generated(&read_all(&log), active..205);
    log.close().unwrap();
    let reopened = Log::open(dir.path(), config()).unwrap();
    assert_eq!(
        (reopened.start_offset(), reopened.next_offset()),
        (active, 205)
    );
}

#[test]
fn offset_for_timestamp_finds_the_first_entry_at_or_after_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    // Timestamps rise by 10 per entry, with an out-of-order dip every 50 entries.
    let ts = |o: u64| if o % 50 == 49 { 5 } else { o as i64 * 10 };
    let entries: Vec<Entry> = (0..300).map(|o| Entry::new(ts(o), payload(o))).collect();
    log.append(&entries).unwrap();
    log.wait_durable_blocking(300).unwrap();
    assert!(log.segments().len() > 3);
    for target in [-100, 0, 1, 5, 6, 10, 11, 495, 1234, 2990] {
        let expected = (0..300u64).find(|&o| ts(o) >= target);
        assert_eq!(
            log.offset_for_timestamp(target).unwrap(),
            expected,
            "target {target}"
        );
    }
    assert_eq!(log.offset_for_timestamp(2991).unwrap(), None);
}

#[test]
fn reopen_keeps_entries_and_continues_offsets() {
    let dir = tempfile::tempdir().unwrap();
    for durability in [
        Durability::Always,
        Durability::Interval(Duration::from_millis(5)),
        Durability::Never,
    ] {
        let cfg = LogConfig {
            durability,
            ..config()
        };
        let log = Log::open(dir.path(), cfg.clone()).unwrap();
        let before = log.next_offset();
        append_n(&log, 50);
        log.close().unwrap();
        let log = Log::open(dir.path(), cfg).unwrap();
        assert_eq!(
            (log.next_offset(), log.durable_offset()),
            (before + 50, before + 50)
        );
        assert_generated(&read_all(&log), 0..before + 50);
        assert!(!files_with_extension(dir.path(), "index").is_empty());
    }
}

#[test]
fn dropping_the_last_handle_closes_and_unlocks_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    let clone = log.clone();
    assert!(
        matches!(Log::open(dir.path(), config()), Err(LogError::Io { .. })),
        "the directory is locked"
    );
    append_n(&log, 10);
    drop(log);
    append_n(&clone, 10);
    drop(clone);
    let log = Log::open(dir.path(), config()).unwrap();
    assert_generated(&read_all(&log), 0..20);
}

#[test]
fn calls_after_close_fail_with_closed() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    append_n(&log, 3);
    log.close().unwrap();
    log.close().unwrap();
    assert_eq!(log.durable_offset(), 3, "close syncs everything appended");
    assert!(matches!(
        log.append(&[Entry::new(0, "x")]),
        Err(LogError::Closed)
    ));
    assert!(matches!(log.read(0, 10), Err(LogError::Closed)));
    assert!(matches!(log.read_entry(0), Err(LogError::Closed)));
    assert!(matches!(
        log.wait_durable_blocking(3),
        Err(LogError::Closed)
    ));
    assert!(matches!(log.offset_for_timestamp(0), Err(LogError::Closed)));
    assert!(matches!(log.truncate_before(1), Err(LogError::Closed)));
    assert_eq!(log.next_offset(), 3);
}

#[test]
fn async_waits_resolve_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let appended = log
            .append_durable(&[Entry::new(1, "a"), Entry::new(2, "b")])
            .await
            .unwrap();
        assert_eq!(
            appended,
            Appended {
                base_offset: 0,
                next_offset: 2
            }
        );
        assert!(log.durable_offset() >= 2);
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move {
                    let appended = log.append(&[Entry::new(i, vec![i as u8; 64])]).unwrap();
                    log.wait_durable(appended.next_offset).await.unwrap();
                    assert!(log.durable_offset() >= appended.next_offset);
                    appended.base_offset
                })
            })
            .collect();
        let mut offsets = Vec::new();
        for task in tasks {
            offsets.push(task.await.unwrap());
        }
        offsets.sort();
        assert_eq!(offsets, (2..34).collect::<Vec<_>>());
        log.wait_durable(0).await.unwrap();
        assert!(matches!(
            log.wait_durable(35).await,
            Err(LogError::OffsetOutOfRange { offset: 35, .. })
        ));
    });
}

#[test]
fn relaxed_durability_acknowledges_written_entries() {
    for durability in [
        Durability::Interval(Duration::from_secs(3600)),
        Durability::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let syncs = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&syncs);
        let log = Log::open(
            dir.path(),
            LogConfig {
                durability,
                on_sync: Some(Arc::new(move |stats| {
                    if !stats.duration.is_zero() {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                })),
                ..LogConfig::default()
            },
        )
        .unwrap();
        append_n(&log, 10);
        log.wait_durable_blocking(10).unwrap();
        assert_generated(&read_all(&log), 0..10);
        assert_eq!(
            syncs.load(Ordering::Relaxed),
            0,
            "{durability:?} does not sync before its interval"
        );
    }
}

#[test]
fn concurrent_appenders_get_distinct_contiguous_offsets_and_on_sync_sees_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, entries) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (b, e) = (Arc::clone(&bytes), Arc::clone(&entries));
    let log = Log::open(
        dir.path(),
        LogConfig {
            segment_bytes: 64 << 10,
            on_sync: Some(Arc::new(move |stats| {
                b.fetch_add(stats.bytes, Ordering::Relaxed);
                e.fetch_add(stats.entries, Ordering::Relaxed);
            })),
            ..LogConfig::default()
        },
    )
    .unwrap();
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..100u8 {
                    let appended = log.append(&[Entry::new(i64::from(t), vec![t, i])]).unwrap();
                    log.wait_durable_blocking(appended.next_offset).unwrap();
                    mine.push((appended.base_offset, vec![t, i]));
                }
                mine
            })
        })
        .collect();
    let mut written: Vec<(u64, Vec<u8>)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    written.sort();
    assert_eq!(
        written.iter().map(|w| w.0).collect::<Vec<_>>(),
        (0..400).collect::<Vec<_>>()
    );
    for (offset, body) in &written {
        assert_eq!(&log.read_entry(*offset).unwrap().payload[..], &body[..]);
    }
    log.close().unwrap();
    assert_eq!(entries.load(Ordering::Relaxed), 400);
    assert_eq!(bytes.load(Ordering::Relaxed), 400 * 30);
}

#[test]
fn read_entry_right_after_append_waits_for_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    for offset in 0..50 {
        let appended = log
            .append(&[Entry::new(1000 + offset as i64, payload(offset))])
            .unwrap();
        assert_generated(
            &[log.read_entry(appended.base_offset).unwrap()],
            offset..offset + 1,
        );
    }
}

#[test]
fn appends_beyond_the_queue_limit_wait_for_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        LogConfig {
            durability: Durability::Never,
            ..LogConfig::default()
        },
    )
    .unwrap();
    // 48 MiB appended without waiting: three times the queue limit.
    let entry = Entry::new(0, vec![1u8; 1 << 20]);
    for _ in 0..48 {
        log.append(std::slice::from_ref(&entry)).unwrap();
    }
    log.wait_durable_blocking(48).unwrap();
    assert_eq!(log.read_entry(47).unwrap().payload.len(), 1 << 20);
}

#[test]
fn interval_durability_syncs_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let (sender, syncs) = std::sync::mpsc::channel();
    let sender = std::sync::Mutex::new(sender);
    let log = Log::open(
        dir.path(),
        LogConfig {
            durability: Durability::Interval(Duration::from_millis(20)),
            on_sync: Some(Arc::new(move |stats| {
                let _ = sender.lock().unwrap().send(stats);
            })),
            ..config()
        },
    )
    .unwrap();
    // Keep the writer busy for less than the interval so the sync is deferred.
    append_n(&log, 1);
    log.wait_durable_blocking(1).unwrap();
    let deferred = loop {
        let stats = syncs
            .recv_timeout(Duration::from_secs(60))
            .expect("a deferred sync");
        if stats.bytes == 0 {
            break stats;
        }
        if !stats.duration.is_zero() {
            // The write itself was synced (the interval had passed): not what this tests.
            append_n(&log, 1);
        }
    };
    assert_eq!(deferred.entries, 0);
    assert!(!deferred.duration.is_zero());
}

#[test]
fn a_failed_write_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let log = Log::open(&log_dir, config()).unwrap();
    append_n(&log, 3);
    log.wait_durable_blocking(3).unwrap();
    // Without its directory the writer cannot create the next segment.
    std::fs::remove_dir_all(&log_dir).unwrap();
    let appended = append_n(&log, 50);
    let err = log.wait_durable_blocking(appended.next_offset).unwrap_err();
    assert!(matches!(err, LogError::Poisoned(_)), "{err}");
    assert!(matches!(
        log.append(&[Entry::new(0, "x")]),
        Err(LogError::Poisoned(_))
    ));
    assert!(matches!(log.truncate_before(1), Err(LogError::Poisoned(_))));
    assert!(matches!(log.close(), Err(LogError::Poisoned(_))));
}

#[test]
fn reads_and_retention_run_concurrently_with_appends_and_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        LogConfig {
            durability: Durability::Never,
            ..config()
        },
    )
    .unwrap();
    const TOTAL: u64 = 3000;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..TOTAL / 10 {
                append_n(&log, 10);
            }
        });
        scope.spawn(|| {
            while log.next_offset() < TOTAL {
                // Keep roughly the newest 500 offsets.
                log.truncate_before(log.durable_offset().saturating_sub(500))
                    .unwrap();
                std::thread::yield_now();
            }
        });
        for reader in 0..2u64 {
            let log = &log;
            scope.spawn(move || {
                let mut checked = 0u64;
                while log.durable_offset() < TOTAL {
                    let (start, durable) = (log.start_offset(), log.durable_offset());
                    if durable == start {
                        continue;
                    }
                    let offset = start + (checked * 7919 + reader) % (durable - start);
                    checked += 1;
                    // Retention may remove the offset at any moment; anything else is a bug.
                    match log.read_entry(offset) {
                        Ok(entry) => assert_generated(&[entry], offset..offset + 1),
                        Err(LogError::OffsetOutOfRange { .. }) => {}
                        Err(e) => panic!("read_entry({offset}): {e}"),
                    }
                    match log.read(offset, 2000) {
                        Ok(entries) => {
                            let first = entries.first().map_or(offset, |e| e.offset);
                            assert_generated(&entries, first..first + entries.len() as u64);
                        }
                        Err(LogError::OffsetOutOfRange { .. }) => {}
                        Err(e) => panic!("read({offset}): {e}"),
                    }
                }
            });
        }
    });
    log.wait_durable_blocking(TOTAL).unwrap();
    let start = log.start_offset();
    assert_generated(&read_all(&log), start..TOTAL);
}

#[test]
fn zero_filling_ahead_of_the_writer_never_touches_frames() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 128 << 10,
        index_interval_bytes: 1024,
        max_entry_bytes: 64 << 10,
        preallocate_bytes: 64 << 10,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config).unwrap();
    // Random sizes up to a whole half segment, from concurrent appenders, so batches keep
    // running into the stretches being zero-filled.
    let appenders: Vec<_> = (0..4u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut seed = t + 1;
                let mut mine = Vec::new();
                for _ in 0..300 {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let len = (seed >> 33) as usize % (64 << 10);
                    let byte = (seed >> 24) as u8 | 1;
                    let appended = log.append(&[Entry::new(0, vec![byte; len])]).unwrap();
                    log.wait_durable_blocking(appended.next_offset).unwrap();
                    mine.push((appended.base_offset, byte, len));
                }
                mine
            })
        })
        .collect();
    let written: Vec<(u64, u8, usize)> = appenders
        .into_iter()
        .flat_map(|a| a.join().unwrap())
        .collect();
    for (offset, byte, len) in written {
        let entry = log.read_entry(offset).unwrap();
        assert_eq!(entry.payload.len(), len);
        assert!(entry.payload.iter().all(|&b| b == byte), "entry {offset}");
    }
    log.close().unwrap();
}

#[test]
fn read_entries_answers_each_offset_near_or_far_and_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        LogConfig {
            index_interval_bytes: 4096,
            ..LogConfig::default()
        },
    )
    .unwrap();
    // 400 entries of about 1 KiB: offsets 0 and 200 lie far more than one scan gap apart.
    let entries: Vec<Entry> = (0..400u64)
        .map(|o| Entry::new(o as i64, vec![(o % 251) as u8; 1000 + (o % 50) as usize]))
        .collect();
    log.append(&entries).unwrap();
    let wanted = [399, 0, 1, 2, 200, 398, 5, 2, 400, 7_000];
    let found = log.read_entries(&wanted).unwrap();
    for (offset, entry) in wanted.iter().zip(&found) {
        if *offset < 400 {
            assert_eq!(entry.as_ref(), Some(&log.read_entry(*offset).unwrap()));
            assert_eq!(entry.as_ref().unwrap().offset, *offset);
        } else {
            assert_eq!(entry, &None, "offset {offset} is past the end");
        }
    }
    assert!(log.read_entries(&[]).unwrap().is_empty());
}

#[test]
fn max_timestamp_is_the_largest_entry_timestamp_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.max_timestamp().unwrap(), None);
    // Out of order, and spread over several 1 KiB segments.
    let timestamps = [500i64, 9_000, 300, 7_000, 8_999, -5];
    for ts in timestamps {
        log.append(&[Entry::new(ts, vec![1u8; 400])]).unwrap();
    }
    log.wait_durable_blocking(log.next_offset()).unwrap();
    assert!(log.segments().len() > 1);
    assert_eq!(log.max_timestamp().unwrap(), Some(9_000));
    drop(log);
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(log.max_timestamp().unwrap(), Some(9_000), "after reopen");
}

/// Whether the file system under `dir` allows `O_DIRECT` (tmpfs does not).
fn direct_io_available(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(dir.join("probe"))
        .is_ok()
}

#[test]
fn a_direct_io_log_pads_only_its_active_segment_and_reads_back_everything() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let direct = direct_io_available(dir.path());
    let logdir = dir.path().join("log");
    let cfg = LogConfig {
        direct_io: true,
        ..config()
    };
    let log = Log::open(&logdir, cfg.clone()).unwrap();
    // Single appends of odd sizes: each write rewrites the partial page the last one ended in.
    for _ in 0..60 {
        let appended = append_n(&log, 1);
        log.wait_durable_blocking(appended.next_offset).unwrap();
    }
    let segments = log.segments();
    assert!(segments.len() > 3, "{segments:?}");
    for s in &segments {
        let file_len = std::fs::metadata(&s.path).unwrap().len();
        if s.base_offset == segments.last().unwrap().base_offset {
            // The active segment: with direct I/O its file ends on a page boundary.
            let expected = if direct {
                s.size_bytes.div_ceil(4096) * 4096
            } else {
                s.size_bytes
            };
            assert_eq!(file_len, expected, "active {s:?}, direct I/O {direct}");
        } else {
            // Closed segments end at their last frame.
            assert_eq!(file_len, s.size_bytes, "closed {s:?}");
        }
    }
    let before = read_all(&log);
    assert_eq!(before.len(), 60);
    for e in &before {
        assert_eq!(e.payload, payload(e.offset));
    }
    log.close().unwrap();
    // Reopened with and without direct I/O: the same entries, and appends go on after them.
    for direct_io in [false, true] {
        let log = Log::open(
            &logdir,
            LogConfig {
                direct_io,
                ..config()
            },
        )
        .unwrap();
        assert_eq!(read_all(&log)[..60], before[..]);
        let appended = append_n(&log, 3);
        log.wait_durable_blocking(appended.next_offset).unwrap();
        let all = read_all(&log);
        assert_eq!(
            all.last().unwrap().payload,
            payload(all.last().unwrap().offset)
        );
        log.close().unwrap();
    }
    assert_eq!(read_all(&Log::open(&logdir, cfg).unwrap()).len(), 66);
}
