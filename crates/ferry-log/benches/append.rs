//! Append benchmarks under `Durability::Always` (every acknowledged entry is fdatasync'ed).
//!
//! * `group_commit/8_appenders`: 8 threads each append one 1 KiB entry and wait until it is
//!   durable, in a loop. Throughput in entries/s; MB/s is that times 1 KiB.
//! * `append_durable_latency/1_appender`: one task, `append_durable` of one 1 KiB entry.
//!
//! Run: `cargo bench -p ferry-log -- --warm-up-time 1 --measurement-time 5`
//! The logs live under the target directory, on the same disk as the build, not in a tmpfs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferry_log::{Durability, Entry, Log, LogConfig};

const ENTRY_BYTES: usize = 1024;
const APPENDERS: u64 = 8;

fn open(dir: &tempfile::TempDir, syncs: Option<Arc<AtomicU64>>) -> Log {
    let config = LogConfig {
        durability: Durability::Always,
        on_sync: syncs.map(|syncs| {
            Arc::new(move |stats: ferry_log::SyncStats| {
                if !stats.duration.is_zero() {
                    syncs.fetch_add(1, Ordering::Relaxed);
                }
            }) as ferry_log::SyncObserver
        }),
        ..LogConfig::default()
    };
    Log::open(dir.path(), config).unwrap()
}

fn bench_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn group_commit(c: &mut Criterion) {
    let dir = bench_dir();
    let syncs = Arc::new(AtomicU64::new(0));
    let log = open(&dir, Some(Arc::clone(&syncs)));
    let entry = Entry::new(0, vec![0xab; ENTRY_BYTES]);
    let mut group = c.benchmark_group("group_commit");
    group.throughput(Throughput::Elements(1));
    let (mut entries, mut elapsed) = (0u64, Duration::ZERO);
    group.bench_function("8_appenders", |b| {
        b.iter_custom(|iters| {
            let per_thread = iters.div_ceil(APPENDERS);
            let start = Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..APPENDERS {
                    scope.spawn(|| {
                        for _ in 0..per_thread {
                            let appended = log.append(std::slice::from_ref(&entry)).unwrap();
                            log.wait_durable_blocking(appended.next_offset).unwrap();
                        }
                    });
                }
            });
            let took = start.elapsed();
            entries += per_thread * APPENDERS;
            elapsed += took;
            // Scale to exactly `iters` entries (per_thread was rounded up).
            took.mul_f64(iters as f64 / (per_thread * APPENDERS) as f64)
        });
        // Keep the log from growing without bound across samples.
        log.truncate_before(log.next_offset()).unwrap();
    });
    group.finish();
    let per_second = entries as f64 / elapsed.as_secs_f64();
    let fsyncs = syncs.load(Ordering::Relaxed).max(1);
    println!(
        "group_commit/8_appenders overall: {per_second:.0} entries/s, {:.1} MB/s of payload, \
         {:.1} entries per fdatasync",
        per_second * ENTRY_BYTES as f64 / 1e6,
        log.next_offset() as f64 / fsyncs as f64
    );
    log.close().unwrap();
}

fn append_durable_latency(c: &mut Criterion) {
    let dir = bench_dir();
    let log = open(&dir, None);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let entry = Entry::new(0, vec![0xcd; ENTRY_BYTES]);
    let mut group = c.benchmark_group("append_durable_latency");
    group.bench_function("1_appender", |b| {
        b.iter(|| {
            runtime
                .block_on(log.append_durable(std::slice::from_ref(&entry)))
                .unwrap()
        })
    });
    group.finish();
    log.close().unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    targets = group_commit, append_durable_latency
}
criterion_main!(benches);
