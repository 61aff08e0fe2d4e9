//! Queue benchmarks (in-process, no network). Plain `main`, printing results.
//!
//! ```text
//! cargo bench -p ferry-broker --bench queue_throughput -- [MODE] [--seconds N] [--messages N]
//!     [--body-bytes N] [--producers N] [--consumers N] [--dir PATH]
//!     [--durability always|never|interval:MS]   (throughput and latency; default always)
//!     [--prefill N] [--pipelined-deletes] [--max-backlog N]   (throughput)
//! MODE: throughput (default) | latency | memory | all
//! ```
//! - `throughput`: Durability::Always; 8 producers send batches of 10, 8 consumers receive
//!   batches of 10 and delete each batch; reports fully acknowledged (deleted) messages/s, the
//!   log's writes and syncs, how long each send, receive and delete call and each consumer's
//!   loop took (mean, p50, p99), and the process's CPU, all over the measured seconds.
//!   Producers are not paced unless `--max-backlog N` is given: then a producer waits while N
//!   or more messages are queued and not yet deleted (the run's steady state: the backlog
//!   stays flat, as a broker's flow control or a bounded queue keeps it), so the sustained
//!   rate is measured rather than consumers racing a backlog that grows without end.
//! - `latency`: Durability::Always; one producer paced at 1,000 sends/s, one message per call;
//!   reports p50/p99/p99.9/max of the send latency.
//! - `memory`: fills a queue with `--messages` (default 10,000,000) messages using
//!   Durability::Never (for filling speed; the memory of the index does not depend on it), prints
//!   the process RSS, then times a reopen; then the same with 1,000,000 messages.
//!
//! The data directory defaults to a temporary directory under `$TMPDIR` (or `--dir`).

use bytes::Bytes;
use ferry_broker::*;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The same allocator as the shipped `ferry` binary, so the engine is measured as it runs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    mode: String,
    seconds: u64,
    messages: u64,
    body_bytes: usize,
    producers: usize,
    consumers: usize,
    dir: Option<PathBuf>,
    durability: ferry_log::Durability,
    /// Messages sent before the clock starts (rounded up to whole batches of 1,000), so that
    /// `--producers 0` measures consumers alone.
    prefill: u64,
    /// Consumers overlap each batch's delete with their next receive (at most one delete
    /// outstanding per consumer), as asynchronous SQS consumers do.
    pipelined_deletes: bool,
    /// Producers wait while this many messages are queued and not yet deleted (0: never wait).
    max_backlog: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        mode: "throughput".into(),
        seconds: std::env::var("FERRY_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10),
        messages: 10_000_000,
        body_bytes: 1024,
        producers: 8,
        consumers: 8,
        dir: None,
        durability: ferry_log::Durability::Always,
        prefill: 0,
        pipelined_deletes: false,
        max_backlog: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let num = |it: &mut dyn Iterator<Item = String>| -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{x} needs a number"))
        };
        match x.as_str() {
            "--seconds" => a.seconds = num(&mut it),
            "--messages" => a.messages = num(&mut it),
            "--prefill" => a.prefill = num(&mut it),
            "--body-bytes" => a.body_bytes = num(&mut it) as usize,
            "--producers" => a.producers = num(&mut it) as usize,
            "--consumers" => a.consumers = num(&mut it) as usize,
            "--dir" => a.dir = it.next().map(PathBuf::from),
            "--durability" => {
                a.durability = match it.next().as_deref() {
                    Some("always") => ferry_log::Durability::Always,
                    Some("never") => ferry_log::Durability::Never,
                    Some(ms) => ferry_log::Durability::Interval(Duration::from_millis(
                        ms.trim_start_matches("interval:")
                            .parse()
                            .expect("--durability always|never|interval:MS"),
                    )),
                    None => panic!("--durability needs a value"),
                }
            }
            "--pipelined-deletes" => a.pipelined_deletes = true,
            "--max-backlog" => a.max_backlog = num(&mut it),
            "--bench" => {}
            m if !m.starts_with('-') => a.mode = m.to_string(),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn rss_kib() -> u64 {
    proc_status_kib("VmRSS:")
}

/// The highest RSS since the last [`reset_peak_rss`] (checkpoints included).
fn peak_rss_kib() -> u64 {
    proc_status_kib("VmHWM:")
}

fn reset_peak_rss() {
    // Linux: writing 5 to clear_refs resets the peak RSS to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn open(dir: &Path, durability: ferry_log::Durability) -> Broker {
    open_observed(dir, durability, None)
}

fn open_observed(
    dir: &Path,
    durability: ferry_log::Durability,
    on_sync: Option<ferry_log::SyncObserver>,
) -> Broker {
    let mut c = BrokerConfig::new(dir);
    c.default_durability = durability;
    c.on_sync = on_sync;
    Broker::open(c).expect("open broker")
}

/// What the queue logs' writers and syncers did (from `on_sync`), to say what limits a run.
struct LogWork {
    syncs: AtomicU64,
    sync_us: AtomicU64,
    writes: AtomicU64,
    bytes: AtomicU64,
    /// Each `fdatasync`'s duration (µs).
    sync_times: Mutex<Histogram<u64>>,
}

impl Default for LogWork {
    fn default() -> LogWork {
        LogWork {
            syncs: AtomicU64::new(0),
            sync_us: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            sync_times: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()),
        }
    }
}

impl LogWork {
    fn observer(self: &Arc<Self>) -> ferry_log::SyncObserver {
        let work = Arc::clone(self);
        Arc::new(move |stats: ferry_log::SyncStats| {
            if !stats.duration.is_zero() {
                work.syncs.fetch_add(1, Ordering::Relaxed);
                let us = stats.duration.as_micros() as u64;
                work.sync_us.fetch_add(us, Ordering::Relaxed);
                let _ = work.sync_times.lock().record(us.max(1));
            }
            if stats.bytes > 0 {
                work.writes.fetch_add(1, Ordering::Relaxed);
                work.bytes.fetch_add(stats.bytes, Ordering::Relaxed);
            }
        })
    }

    fn snapshot(&self) -> [u64; 4] {
        [&self.syncs, &self.sync_us, &self.writes, &self.bytes].map(|c| c.load(Ordering::Relaxed))
    }
}

fn body(n: usize) -> Bytes {
    Bytes::from((0..n).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>())
}

/// How long the broker calls of one task took while the clock ran (µs), and a consumer's
/// whole loop per batch (receive, delete and everything between).
struct CallTimes {
    send: Histogram<u64>,
    receive: Histogram<u64>,
    delete: Histogram<u64>,
    consumer_loop: Histogram<u64>,
}

impl CallTimes {
    fn new() -> CallTimes {
        let h = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        CallTimes {
            send: h(),
            receive: h(),
            delete: h(),
            consumer_loop: h(),
        }
    }

    fn add(&mut self, other: &CallTimes) {
        self.send.add(&other.send).unwrap();
        self.receive.add(&other.receive).unwrap();
        self.delete.add(&other.delete).unwrap();
        self.consumer_loop.add(&other.consumer_loop).unwrap();
    }
}

fn record(h: &mut Histogram<u64>, since: Instant) {
    h.saturating_record(since.elapsed().as_micros() as u64);
}

/// CPU seconds this process has used so far (user, system), from `/proc/self/stat`.
fn process_cpu() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which ends at the last ')'): state is field 3, utime 14.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let seconds = |i: usize| Some(fields.get(i - 3)?.parse::<f64>().ok()? / per_second);
    Some((seconds(14)?, seconds(15)?))
}

async fn throughput(a: &Args, dir: &Path) {
    let work = Arc::new(LogWork::default());
    let b = open_observed(dir, a.durability, Some(work.observer()));
    b.create_queue("bench", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Call times are recorded while the clock runs.
    let recording = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let payload = body(a.body_bytes);
    // Messages queued and not yet deleted, for `--max-backlog`; consumers notify after deletes.
    let backlog = Arc::new(AtomicU64::new(0));
    let drained = Arc::new(tokio::sync::Notify::new());
    if a.prefill > 0 {
        // 100 tasks of 10-message batches, untimed, so consumers start on a full queue.
        let per_task = a.prefill.div_ceil(100 * 10);
        let fills: Vec<_> = (0..100)
            .map(|_| {
                let (b, payload) = (b.clone(), payload.clone());
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        let batch = (0..10)
                            .map(|_| SendMessage {
                                body: payload.clone(),
                                ..Default::default()
                            })
                            .collect();
                        b.send("bench", batch).await.unwrap();
                    }
                })
            })
            .collect();
        for fill in fills {
            fill.await.unwrap();
        }
        backlog.store(per_task * 100 * 10, Ordering::Relaxed);
    }
    let mut tasks = Vec::new();
    for _ in 0..a.producers {
        let (b, stop, sent, payload) = (b.clone(), stop.clone(), sent.clone(), payload.clone());
        let recording = recording.clone();
        let (backlog, drained, max_backlog) = (backlog.clone(), drained.clone(), a.max_backlog);
        tasks.push(tokio::spawn(async move {
            let mut times = CallTimes::new();
            while !stop.load(Ordering::Relaxed) {
                while max_backlog > 0 && backlog.load(Ordering::Relaxed) >= max_backlog {
                    let notified = drained.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    if backlog.load(Ordering::Relaxed) < max_backlog {
                        break;
                    }
                    // The timeout lets the loop see `stop` when consumers have stopped.
                    let _ = tokio::time::timeout(Duration::from_millis(10), notified).await;
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                let batch = (0..10)
                    .map(|_| SendMessage {
                        body: payload.clone(),
                        ..Default::default()
                    })
                    .collect();
                let t = Instant::now();
                let r = b.send("bench", batch).await.unwrap();
                if recording.load(Ordering::Relaxed) {
                    record(&mut times.send, t);
                }
                sent.fetch_add(r.len() as u64, Ordering::Relaxed);
                backlog.fetch_add(r.len() as u64, Ordering::Relaxed);
            }
            times
        }));
    }
    for _ in 0..a.consumers {
        let (b, stop, acked) = (b.clone(), stop.clone(), acked.clone());
        let recording = recording.clone();
        let (backlog, drained) = (backlog.clone(), drained.clone());
        let pipelined = a.pipelined_deletes;
        tasks.push(tokio::spawn(async move {
            let mut times = CallTimes::new();
            let mut outstanding: Option<tokio::task::JoinHandle<Duration>> = None;
            let mut loop_start = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let got = b
                    .receive(
                        "bench",
                        ReceiveRequest {
                            max_messages: 10,
                            wait_seconds: Some(1),
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                let recorded = recording.load(Ordering::Relaxed);
                if recorded {
                    record(&mut times.receive, t);
                }
                if got.is_empty() {
                    continue;
                }
                let hs: Vec<String> = got.into_iter().map(|r| r.receipt_handle).collect();
                let n = hs.len() as u64;
                let delete = {
                    let (b, acked) = (b.clone(), acked.clone());
                    let (backlog, drained) = (backlog.clone(), drained.clone());
                    async move {
                        let t = Instant::now();
                        b.delete_messages("bench", hs).await.unwrap();
                        acked.fetch_add(n, Ordering::Relaxed);
                        backlog.fetch_sub(n, Ordering::Relaxed);
                        drained.notify_waiters();
                        t.elapsed()
                    }
                };
                let took = if pipelined {
                    let previous = match outstanding.take() {
                        Some(previous) => Some(previous.await.unwrap()),
                        None => None,
                    };
                    outstanding = Some(tokio::spawn(delete));
                    previous
                } else {
                    Some(delete.await)
                };
                if let Some(took) = took.filter(|_| recorded) {
                    times.delete.saturating_record(took.as_micros() as u64);
                    record(&mut times.consumer_loop, loop_start);
                }
                loop_start = Instant::now();
            }
            if let Some(previous) = outstanding {
                previous.await.unwrap();
            }
            times
        }));
    }
    // Warm up 1 s, then measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (s0, a0, t0) = (
        sent.load(Ordering::Relaxed),
        acked.load(Ordering::Relaxed),
        Instant::now(),
    );
    let w0 = work.snapshot();
    work.sync_times.lock().reset();
    let cpu0 = process_cpu();
    recording.store(true, Ordering::Relaxed);
    for i in 0..a.seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let el = t0.elapsed().as_secs_f64();
        println!(
            "  t={:>3}s sent {:>10.0}/s  acked {:>10.0}/s",
            i + 1,
            (sent.load(Ordering::Relaxed) - s0) as f64 / el,
            (acked.load(Ordering::Relaxed) - a0) as f64 / el
        );
    }
    let el = t0.elapsed().as_secs_f64();
    let (s1, a1) = (sent.load(Ordering::Relaxed), acked.load(Ordering::Relaxed));
    let w1 = work.snapshot();
    let cpu1 = process_cpu();
    recording.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let mut times = CallTimes::new();
    for t in tasks {
        if let Ok(task_times) = t.await {
            times.add(&task_times);
        }
    }
    let st = b.get_queue("bench").unwrap().stats;
    println!(
        "throughput: {} producers x batch 10{}, {} consumers x batch 10{}, {} B bodies, {:?}, {:.1} s",
        a.producers,
        if a.max_backlog > 0 {
            format!(" (waiting while {} are queued)", a.max_backlog)
        } else {
            String::new()
        },
        a.consumers,
        if a.pipelined_deletes {
            " (pipelined deletes)"
        } else {
            ""
        },
        a.body_bytes,
        a.durability,
        el
    );
    println!("  sent              {:>10.0} msgs/s", (s1 - s0) as f64 / el);
    println!(
        "  fully acknowledged {:>9.0} msgs/s (received and deleted)",
        (a1 - a0) as f64 / el
    );
    println!("  backlog at end    {:>10}", st.visible + st.in_flight);
    let [syncs, sync_us, writes, bytes] = [0, 1, 2, 3].map(|i| w1[i] - w0[i]);
    println!(
        "  log: {:.0} writes/s ({:.1} MB/s, {:.0} KB each), {:.0} fdatasyncs/s of {:.0} us on average",
        writes as f64 / el,
        bytes as f64 / el / 1e6,
        bytes as f64 / writes.max(1) as f64 / 1e3,
        syncs as f64 / el,
        sync_us as f64 / syncs.max(1) as f64
    );
    {
        let h = work.sync_times.lock();
        if !h.is_empty() {
            let slow: u64 = h
                .iter_recorded()
                .filter(|v| v.value_iterated_to() > 500)
                .map(|v| v.value_iterated_to() * v.count_at_value())
                .sum();
            println!(
                "  fdatasync      p50 {} us  p90 {} us  p99 {} us  max {} us; {} over 500 us, {:.1} ms/s in them",
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.9),
                h.value_at_quantile(0.99),
                h.max(),
                h.count_between(501, u64::MAX),
                slow as f64 / 1e3 / el
            );
        }
    }
    let show = |name: &str, h: &Histogram<u64>| {
        if !h.is_empty() {
            println!(
                "  {name:<14} mean {:>5.0} us  p50 {:>5} us  p99 {:>6} us  ({} calls)",
                h.mean(),
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.len()
            );
        }
    };
    show("send", &times.send);
    show("receive", &times.receive);
    show("delete", &times.delete);
    show("consumer loop", &times.consumer_loop);
    if let (Some((u0, s0)), Some((u1, s1))) = (cpu0, cpu1) {
        println!(
            "  process CPU   {:.2} cores (user {:.2} s, system {:.2} s)",
            (u1 - u0 + s1 - s0) / el,
            u1 - u0,
            s1 - s0
        );
    }
    b.shutdown().await.unwrap();
}

async fn latency(a: &Args, dir: &Path) {
    let b = open(dir, a.durability);
    b.create_queue("lat", QueueAttributes::default(), BTreeMap::new())
        .unwrap();
    let payload = body(a.body_bytes);
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let total = a.seconds * 1000;
    let start = Instant::now();
    for i in 0..total {
        let due = start + Duration::from_micros(i * 1000);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep(due - now).await;
        }
        let t = Instant::now();
        b.send(
            "lat",
            vec![SendMessage {
                body: payload.clone(),
                ..Default::default()
            }],
        )
        .await
        .unwrap();
        h.record(t.elapsed().as_micros() as u64).unwrap();
        if i % 10_000 == 9_999 {
            b.purge("lat").await.unwrap();
        }
    }
    println!(
        "latency: {} sends paced at 1,000/s, one {} B message per call, {:?}",
        total, a.body_bytes, a.durability
    );
    println!(
        "  p50 {} us  p90 {} us  p99 {} us  p99.9 {} us  max {} us",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
    b.shutdown().await.unwrap();
}

async fn fill(b: &Broker, queue: &str, n: u64, body_bytes: usize) -> f64 {
    let payload = body(body_bytes);
    let t = Instant::now();
    let workers = 4u64;
    let per = n / workers;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (b, payload, queue) = (b.clone(), payload.clone(), queue.to_string());
        let count = if w == workers - 1 {
            n - per * (workers - 1)
        } else {
            per
        };
        tasks.push(tokio::spawn(async move {
            let mut left = count;
            while left > 0 {
                let k = left.min(100);
                let batch = (0..k)
                    .map(|_| SendMessage {
                        body: payload.clone(),
                        ..Default::default()
                    })
                    .collect();
                b.send(&queue, batch).await.unwrap();
                left -= k;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    t.elapsed().as_secs_f64()
}

async fn memory(a: &Args, dir: &Path) {
    println!(
        "memory: Durability::Never for filling; {} B bodies",
        a.body_bytes
    );
    let rss0 = rss_kib();
    for (n, name) in [(a.messages, "big"), (1_000_000u64, "onem")] {
        let sub = dir.join(name);
        let mut b = open(&sub, ferry_log::Durability::Never);
        b.create_queue("fill", QueueAttributes::default(), BTreeMap::new())
            .unwrap();
        reset_peak_rss();
        let rss_at_start = rss_kib();
        let secs = fill(&b, "fill", n, a.body_bytes).await;
        let rss = rss_kib();
        let st = b.get_queue("fill").unwrap().stats;
        println!(
            "  {n} messages filled in {secs:.1} s ({:.0}/s); visible {}; RSS {} MiB (baseline {} MiB, delta {} MiB, {:.1} B/msg); disk {} MiB",
            n as f64 / secs,
            st.visible,
            rss / 1024,
            rss0 / 1024,
            rss.saturating_sub(rss0) / 1024,
            rss.saturating_sub(rss0) as f64 * 1024.0 / n as f64,
            b.disk_bytes() >> 20
        );
        let t = Instant::now();
        b.checkpoint_all().unwrap();
        println!(
            "  checkpoint (encode + write + fsync) {:.2} s; peak RSS while filling and checkpointing {} MiB (RSS at the start of the fill {} MiB)",
            t.elapsed().as_secs_f64(),
            peak_rss_kib() / 1024,
            rss_at_start / 1024
        );
        if name == "onem" {
            // Crash-like reopen: drop without shutdown (no final checkpoint), then replay the
            // log tail after the last periodic checkpoint.
            drop(b);
            let t = Instant::now();
            let sub2 = sub.clone();
            let b2 = tokio::task::spawn_blocking(move || open(&sub2, ferry_log::Durability::Never))
                .await
                .unwrap();
            println!(
                "  reopen without shutdown (last periodic checkpoint + log tail) with {} messages: {:.2} s",
                b2.get_queue("fill").unwrap().stats.visible,
                t.elapsed().as_secs_f64()
            );
            drop(b2);
            // Worst case: no checkpoint at all, the whole log is replayed.
            for e in std::fs::read_dir(sub.join("queues")).unwrap().flatten() {
                let _ = std::fs::remove_file(e.path().join("checkpoint"));
            }
            let t = Instant::now();
            let sub2 = sub.clone();
            let b2 = tokio::task::spawn_blocking(move || open(&sub2, ferry_log::Durability::Never))
                .await
                .unwrap();
            println!(
                "  reopen replaying the whole log (checkpoint deleted) with {} messages: {:.2} s",
                b2.get_queue("fill").unwrap().stats.visible,
                t.elapsed().as_secs_f64()
            );
            b = b2;
        }
        let t = Instant::now();
        b.shutdown().await.unwrap();
        println!(
            "  shutdown (checkpoint + close) {:.2} s",
            t.elapsed().as_secs_f64()
        );
        drop(b);
        let t = Instant::now();
        let sub2 = sub.clone();
        let b = tokio::task::spawn_blocking(move || open(&sub2, ferry_log::Durability::Never))
            .await
            .unwrap();
        let el = t.elapsed().as_secs_f64();
        let st = b.get_queue("fill").unwrap().stats;
        println!(
            "  reopen with {} messages: {el:.2} s (from checkpoint)",
            st.visible
        );
        // One receive proves the reopened queue serves.
        let got = b
            .receive(
                "fill",
                ReceiveRequest {
                    max_messages: 10,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(got.len(), 10);
        b.shutdown().await.unwrap();
        drop(b);
        let _ = std::fs::remove_dir_all(&sub);
    }
}

fn main() {
    let a = parse_args();
    let tmp;
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().unwrap();
            tmp.path().to_path_buf()
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let modes: Vec<&str> = if a.mode == "all" {
            vec!["throughput", "latency", "memory"]
        } else {
            vec![a.mode.as_str()]
        };
        for m in modes {
            let sub = dir.join(m);
            match m {
                "throughput" => throughput(&a, &sub).await,
                "latency" => latency(&a, &sub).await,
                "memory" => memory(&a, &sub).await,
                other => panic!("unknown mode {other}"),
            }
            let _ = std::fs::remove_dir_all(&sub);
        }
    });
}
