//! The syncer threads of a `Durability::Always` log: bounded, started on demand, gone when
//! idle or closed. Alone in its own test binary, so the thread counts are this test's own.
//!
//! While syncs are quick the writer runs them itself, so the log here zero-fills ahead of the
//! writer (`preallocate_bytes`): zero-filling (a stretch of the active segment, or the spare
//! file for the next segment) is always a syncer thread's job, which makes syncer threads
//! start in every new segment however fast this disk is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_log::{Entry, Log, LogConfig};

/// Threads of this process named like the log's syncers.
fn sync_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "ferry-log-sync")
        .count()
}

#[test]
fn syncers_are_bounded_exit_when_idle_and_are_joined_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let syncs = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&syncs);
    let log = Log::open(
        dir.path(),
        LogConfig {
            segment_bytes: 256 << 10,
            preallocate_bytes: 128 << 10,
            on_sync: Some(Arc::new(move |stats| {
                if !stats.duration.is_zero() {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            })),
            ..LogConfig::default()
        },
    )
    .unwrap();
    assert_eq!(sync_threads(), 0, "no syncer before the first write");

    let most_seen = Arc::new(AtomicU64::new(0));
    let appenders: Vec<_> = (0..16u64)
        .map(|t| {
            let (log, most_seen) = (log.clone(), Arc::clone(&most_seen));
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    let appended = log.append(&[Entry::new(0, vec![t as u8; 512])]).unwrap();
                    log.wait_durable_blocking(appended.next_offset).unwrap();
                    assert!(log.durable_offset() >= appended.next_offset);
                    if i % 10 == 0 {
                        most_seen.fetch_max(sync_threads() as u64, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for appender in appenders {
        appender.join().unwrap();
    }
    let most = most_seen.load(Ordering::Relaxed);
    assert!((1..=4).contains(&most), "{most} syncer threads");
    assert_eq!(log.durable_offset(), 3200);
    assert!(syncs.load(Ordering::Relaxed) > 0);
    assert!(log.segments().len() > 1, "the load rolled segments");

    // Idle syncers exit by themselves (after 5 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    while sync_threads() > 0 {
        assert!(Instant::now() < deadline, "syncers still alive when idle");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Appends start them again (a new segment needs zero-filled space, or once an eighth
    // of it is written, a spare prepared for the next one); close joins them.
    let segments = log.segments().len();
    let mut appended_again = 0;
    while log.segments().len() == segments {
        let appended = log.append(&[Entry::new(0, vec![7u8; 4096])]).unwrap();
        log.wait_durable_blocking(appended.next_offset).unwrap();
        appended_again += 1;
    }
    for _ in 0..20 {
        let appended = log.append(&[Entry::new(0, vec![8u8; 4096])]).unwrap();
        log.wait_durable_blocking(appended.next_offset).unwrap();
        appended_again += 1;
    }
    assert!(sync_threads() >= 1);
    log.close().unwrap();
    assert_eq!(sync_threads(), 0, "close joins every syncer");

    let reopened = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(reopened.next_offset(), 3200 + appended_again);
}
