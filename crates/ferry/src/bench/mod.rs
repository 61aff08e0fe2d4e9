//! `ferry bench`: a load generator against a running server, with three workloads.
//!
//! ```text
//! ferry bench [queue]  N producers ─► queue ─► N consumers   native HTTP API (http.rs)
//! ferry bench sqs      the same workload through the SQS JSON protocol (sqs.rs, sigv4.rs)
//! ferry bench topic    N publishers ─► topic ─► 10 queue subscriptions, 5 filtered (topic.rs)
//! ferry bench kafka    N producers ─► stream partitions (acks=all), then a cold consume (kafka.rs)
//! ```
//!
//! Queue workloads: producers send batches whose bodies start with the send time (16 hex digits
//! of microseconds since the Unix epoch) padded to `--size`. Consumers receive in batches,
//! record the end-to-end latency of each message from that timestamp, and delete each batch.
//! "Acknowledged" means deleted: the figure that matters for a work queue. The protocol is a
//! [`Target`]; the load generator does not know which one it drives.
//!
//! Every workload counts only the measurement window (after `--warmup`, for `--duration`).

mod conn;
mod http;
mod kafka;
mod sigv4;
mod sqs;
mod target;
mod topic;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::client::CliError;
use target::Target;

/// Width of the timestamp prefix of every body.
const STAMP_LEN: usize = 16;
/// Highest latency the histograms track (60 s, in µs).
const MAX_LATENCY_US: u64 = 60_000_000;
/// Pause after a failed request so a failing server is not hammered.
const ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// What `ferry bench` drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Producers and consumers on one queue through the native HTTP API (`--server`).
    Queue,
    /// Publishers to a topic with queue subscriptions, through the native HTTP API (`--server`).
    Topic,
    /// Producers and consumers on one queue through the AWS SQS JSON protocol (`--endpoint`).
    Sqs,
    /// Producers to a stream through the Kafka protocol (`--bootstrap`), then a cold consume of
    /// everything produced.
    Kafka,
}

/// Most entries in one SQS SendMessageBatch or DeleteMessageBatch, and one topic publish batch.
const MAX_AWS_BATCH: u32 = 10;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The workload.
    #[arg(value_enum, default_value_t = Workload::Queue)]
    pub workload: Workload,
    /// Concurrent producers (topic: concurrent publishers; kafka: producer connections).
    #[arg(long, default_value_t = 4)]
    pub producers: usize,
    /// Concurrent consumers (kafka: consumer connections of the cold consume).
    #[arg(long, default_value_t = 4)]
    pub consumers: usize,
    /// Message body size in bytes (at least 16).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(16..=1_048_576))]
    pub size: u32,
    /// Messages per send, receive and delete request (1..=100; sqs and topic: 1..=10).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub batch: u32,
    /// Length of the measurement, e.g. 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Load before measuring starts (not counted).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Cap on the total send (topic: publish) rate in messages per second (default: as fast as
    /// possible).
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub rate: Option<u64>,
    /// Queue to use (queue, sqs); created if missing and purged before the run.
    #[arg(long, default_value = "bench")]
    pub queue: String,
    /// Consumers' long-poll wait in seconds.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=20))]
    pub wait: u32,
    /// Deletes each consumer may have outstanding while it receives the next batch; 0 deletes
    /// each batch before receiving the next.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub ack_inflight: u32,
    /// Topic (topic workload); deleted and created afresh, with queues `<topic>-0`, `<topic>-1`, ….
    #[arg(long, default_value = "bench-topic")]
    pub topic: String,
    /// Queue subscriptions of the topic (topic workload).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub subscriptions: u32,
    /// How many of the subscriptions have a filter policy that half the messages match (topic
    /// workload).
    #[arg(long, default_value_t = 5)]
    pub filtered: u32,
    /// Deliver in the SNS JSON envelope instead of raw (topic workload).
    #[arg(long)]
    pub envelope: bool,
    /// The Kafka door (kafka workload).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Partitions of the stream (kafka workload); it is deleted and created afresh as `--topic`.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub partitions: u32,
    /// Bytes of records per batch (kafka workload; each Produce request carries one batch per
    /// partition, as librdkafka's `batch.size`).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..=16_000_000))]
    pub batch_bytes: u32,
    /// Produce requests each producer connection keeps unanswered (kafka workload; librdkafka's
    /// `max.in.flight`).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub inflight: u32,
    /// A configuration of the topic the kafka workload creates (repeatable), as for
    /// `ferry stream create --config`, for example `direct.io=false`.
    #[arg(long = "topic-config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub topic_configs: Vec<(String, String)>,
    /// Kafka workload: skip the produce and time only a cold consume of the existing `--topic`,
    /// from each partition's first offset to its end (for data another producer wrote, such as
    /// librdkafka's).
    #[arg(long)]
    pub consume_only: bool,
    /// The AWS door (sqs workload).
    #[arg(long, default_value = "http://127.0.0.1:9324")]
    pub endpoint: String,
    /// Region in the SigV4 credential scope (sqs workload).
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Access key to sign with (sqs workload); unsigned when absent, which a server without
    /// configured credentials accepts from loopback clients.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", requires = "secret_access_key")]
    pub access_key_id: Option<String>,
    /// Secret of `--access-key-id`.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_access_key: Option<String>,
}

/// `KEY=VALUE`.
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 10s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit {unit:?}; use ms, s or m")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// Phases of a run, shared by every worker.
const WARMUP: u8 = 0;
const MEASURING: u8 = 1;
const STOPPED: u8 = 2;

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    acknowledged: AtomicU64,
    errors: AtomicU64,
}

struct Shared {
    phase: AtomicU8,
    counters: Counters,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            phase: AtomicU8::new(WARMUP),
            counters: Counters::default(),
            first_error: Mutex::new(None),
        }
    }

    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Relaxed)
    }

    /// Lets the workers warm up, then measures for `duration` and stops them. Returns the
    /// measured seconds.
    async fn run_window(&self, warmup: Duration, duration: Duration) -> f64 {
        tokio::time::sleep(warmup).await;
        self.phase.store(MEASURING, Ordering::SeqCst);
        let start = Instant::now();
        tokio::time::sleep(duration).await;
        self.phase.store(STOPPED, Ordering::SeqCst);
        start.elapsed().as_secs_f64()
    }

    fn error(&self, e: anyhow::Error) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert_with(|| format!("{e:#}"));
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub count: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            count: h.len(),
        }
    }
}

/// The result of a queue or sqs run; `--json` prints it as one line.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `http` (the queue workload) or `sqs`.
    pub target: &'static str,
    pub producers: usize,
    pub consumers: usize,
    pub size: u32,
    pub batch: u32,
    pub duration_s: f64,
    pub sent_per_sec: f64,
    pub received_per_sec: f64,
    /// Fully acknowledged (deleted) messages per second.
    pub acknowledged_per_sec: f64,
    pub sent: u64,
    pub received: u64,
    pub acknowledged: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Per send request (one batch).
    pub publish_latency_us: Percentiles,
    /// From the send timestamp in the body to receipt.
    pub end_to_end_latency_us: Percentiles,
}

pub fn run(server: &str, args: BenchArgs, json_output: bool) -> Result<(), CliError> {
    if args.producers == 0 || args.consumers == 0 {
        return Err(CliError::Usage(
            "--producers and --consumers must be at least 1".into(),
        ));
    }
    if matches!(args.workload, Workload::Sqs | Workload::Topic) && args.batch > MAX_AWS_BATCH {
        return Err(CliError::Usage(format!(
            "--batch is at most {MAX_AWS_BATCH} for the sqs and topic workloads"
        )));
    }
    if args.filtered > args.subscriptions {
        return Err(CliError::Usage(
            "--filtered cannot exceed --subscriptions".into(),
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))?;
    let report = match args.workload {
        Workload::Topic => return topic::run(&runtime, server, &args, json_output),
        Workload::Kafka => return kafka::run(&runtime, &args, json_output),
        Workload::Queue => {
            let target =
                http::HttpTarget::new(server).map_err(|e| CliError::Other(e.to_string()))?;
            runtime.block_on(drive(target, "http", &args, server))?
        }
        Workload::Sqs => {
            let credentials = match (&args.access_key_id, &args.secret_access_key) {
                (Some(id), Some(secret)) => Some(sigv4::Credentials {
                    access_key_id: id.clone(),
                    secret_access_key: secret.clone(),
                }),
                _ => None,
            };
            let target = sqs::SqsTarget::new(&args.endpoint, &args.region, credentials)
                .map_err(|e| CliError::Other(format!("{e:#}")))?;
            runtime.block_on(drive(target, "sqs", &args, &args.endpoint))?
        }
    };
    emit(&report, json_output, || print_report(&report, &args));
    if report.acknowledged == 0 {
        return Err(nothing_done(
            "no message was acknowledged",
            report.first_error.as_deref(),
        ));
    }
    Ok(())
}

/// Prints a report: one JSON line with `--json`, else the human-readable `print`.
fn emit<R: Serialize>(report: &R, json_output: bool, print: impl FnOnce()) {
    if json_output {
        println!(
            "{}",
            serde_json::to_string(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
    } else {
        print();
    }
}

/// The error of a run in which nothing succeeded, with the first error seen.
fn nothing_done(what: &str, first_error: Option<&str>) -> CliError {
    CliError::Other(format!(
        "{what}{}",
        first_error
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default()
    ))
}

/// A failed preparation: "cannot connect" (exit code 3) when the server is not there.
fn prepare_error(e: anyhow::Error, server: &str) -> CliError {
    let connect = e.downcast_ref::<conn::ConnectError>().is_some()
        || e.downcast_ref::<reqwest::Error>()
            .is_some_and(|r| r.is_connect());
    if connect {
        CliError::Connect {
            server: server.to_string(),
            reason: e.root_cause().to_string(),
        }
    } else {
        CliError::Other(format!("{e:#}"))
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn histogram() -> Result<Histogram<u64>, CliError> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
        .map_err(|e| CliError::Other(format!("cannot create a latency histogram: {e}")))
}

async fn drive<T: Target>(
    target: T,
    name: &'static str,
    args: &BenchArgs,
    server: &str,
) -> Result<Report, CliError> {
    target
        .prepare(&args.queue)
        .await
        .map_err(|e| prepare_error(e, server))?;
    let shared = Arc::new(Shared::new());
    let padding: Arc<str> = "x".repeat(args.size as usize).into();
    let per_producer_rate = args
        .rate
        .map(|r| (r as f64 / args.producers as f64).max(0.001));

    let empty = histogram()?;
    let mut producers = Vec::new();
    for _ in 0..args.producers {
        producers.push(tokio::spawn(produce(
            empty.clone(),
            target.clone(),
            shared.clone(),
            padding.clone(),
            args.batch as usize,
            per_producer_rate,
        )));
    }
    let mut consumers = Vec::new();
    for _ in 0..args.consumers {
        consumers.push(tokio::spawn(consume(
            empty.clone(),
            target.clone(),
            shared.clone(),
            args.batch as usize,
            args.wait,
            args.ack_inflight as usize,
        )));
    }

    let elapsed = shared.run_window(args.warmup, args.duration).await;

    let mut publish = empty.clone();
    for p in producers {
        if let Ok(h) = p.await {
            let _ = publish.add(&h);
        }
    }
    let mut end_to_end = empty.clone();
    for c in consumers {
        if let Ok(h) = c.await {
            let _ = end_to_end.add(&h);
        }
    }
    let c = &shared.counters;
    let (sent, received, acknowledged) = (
        c.sent.load(Ordering::SeqCst),
        c.received.load(Ordering::SeqCst),
        c.acknowledged.load(Ordering::SeqCst),
    );
    let first_error = shared.first_error.lock().ok().and_then(|e| e.clone());
    Ok(Report {
        target: name,
        producers: args.producers,
        consumers: args.consumers,
        size: args.size,
        batch: args.batch,
        duration_s: elapsed,
        sent_per_sec: sent as f64 / elapsed,
        received_per_sec: received as f64 / elapsed,
        acknowledged_per_sec: acknowledged as f64 / elapsed,
        sent,
        received,
        acknowledged,
        errors: c.errors.load(Ordering::SeqCst),
        first_error,
        publish_latency_us: Percentiles::of(&publish),
        end_to_end_latency_us: Percentiles::of(&end_to_end),
    })
}

/// Sends batches until stopped; returns its publish-latency histogram.
async fn produce<T: Target>(
    mut latency: Histogram<u64>,
    target: T,
    shared: Arc<Shared>,
    padding: Arc<str>,
    batch: usize,
    rate: Option<f64>,
) -> Histogram<u64> {
    let mut pacer = rate.map(|r| {
        let mut interval = tokio::time::interval(Duration::from_secs_f64(batch as f64 / r));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    // Every body of a batch starts with the batch's send time, padded to `--size`.
    let mut body = format!("{:016x}{}", 0, &padding[STAMP_LEN.min(padding.len())..]);
    while shared.phase() != STOPPED {
        if let Some(pacer) = pacer.as_mut() {
            pacer.tick().await;
        }
        let stamp = format!("{:016x}", now_us());
        body.replace_range(..STAMP_LEN, &stamp);
        let started = Instant::now();
        match target.send(&body, batch).await {
            Ok(accepted) => {
                if shared.phase() == MEASURING {
                    shared
                        .counters
                        .sent
                        .fetch_add(accepted as u64, Ordering::Relaxed);
                    let _ = latency.record((started.elapsed().as_micros() as u64).max(1));
                }
            }
            Err(e) => {
                shared.error(e);
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
    latency
}

/// Receives and deletes batches until stopped; returns its end-to-end latency histogram.
async fn consume<T: Target>(
    mut latency: Histogram<u64>,
    target: T,
    shared: Arc<Shared>,
    batch: usize,
    wait: u32,
    ack_inflight: usize,
) -> Histogram<u64> {
    let mut acks = tokio::task::JoinSet::new();
    while shared.phase() != STOPPED {
        let deliveries = match target.receive(batch, wait).await {
            Ok(d) => d,
            Err(e) => {
                shared.error(e);
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        if deliveries.is_empty() {
            continue;
        }
        let measuring = shared.phase() == MEASURING;
        if measuring {
            let now = now_us();
            for d in &deliveries {
                if let Some(sent_at) = d.sent_at_us {
                    let _ = latency.record(now.saturating_sub(sent_at).max(1));
                }
            }
            shared
                .counters
                .received
                .fetch_add(deliveries.len() as u64, Ordering::Relaxed);
        }
        let tokens = deliveries.into_iter().map(|d| d.ack_token).collect();
        let ack = acknowledge(target.clone(), shared.clone(), tokens);
        if ack_inflight == 0 {
            ack.await;
        } else {
            while acks.len() >= ack_inflight {
                let _ = acks.join_next().await;
            }
            acks.spawn(ack);
        }
    }
    while acks.join_next().await.is_some() {}
    latency
}

/// Deletes one batch and counts it when it completes inside the measurement window.
async fn acknowledge<T: Target>(target: T, shared: Arc<Shared>, tokens: Vec<String>) {
    match target.ack(tokens).await {
        Ok(n) => {
            if shared.phase() == MEASURING {
                shared
                    .counters
                    .acknowledged
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        Err(e) => shared.error(e),
    }
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn print_report(r: &Report, args: &BenchArgs) {
    println!(
        "ferry bench {}: {} producers, {} consumers, {}-byte messages, batches of {}, {:.1}s measured after {:.1}s warmup, queue {}{}",
        if r.target == "sqs" { "sqs" } else { "queue" },
        r.producers,
        r.consumers,
        r.size,
        r.batch,
        r.duration_s,
        args.warmup.as_secs_f64(),
        args.queue,
        args.rate.map(|x| format!(", rate cap {x} msg/s")).unwrap_or_default()
    );
    println!(
        "  sent          {:>12.0} msg/s  ({} messages)",
        r.sent_per_sec, r.sent
    );
    println!(
        "  received      {:>12.0} msg/s  ({} messages)",
        r.received_per_sec, r.received
    );
    println!(
        "  acknowledged  {:>12.0} msg/s  ({} messages deleted)",
        r.acknowledged_per_sec, r.acknowledged
    );
    for (name, p) in [
        ("publish latency (per batch)", &r.publish_latency_us),
        ("end-to-end latency", &r.end_to_end_latency_us),
    ] {
        println!(
            "  {name:<28} p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            ms(p.p50),
            ms(p.p90),
            ms(p.p99),
            ms(p.p999),
            ms(p.max)
        );
    }
    if r.errors > 0 {
        println!(
            "  errors        {} (first: {})",
            r.errors,
            r.first_error.as_deref().unwrap_or("?")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
