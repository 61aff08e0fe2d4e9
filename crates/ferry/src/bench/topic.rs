//! `ferry bench topic`: publish throughput to a topic with queue subscriptions, over the native
//! HTTP API.
//!
//! ```text
//! prepare:  DELETE /v1/topics/T, POST /v1/topics, POST /v1/queues (T-0 … T-{n-1}),
//!           POST /v1/topics/T/subscriptions (T-1, T-3, … filtered on bench_match = yes),
//!           POST /v1/queues/T-i/purge
//! run:      publishers POST /v1/topics/T/publish (--batch 1) or /publish-batch (--batch 2..=10);
//!           entries carry bench_match = yes and no in turn
//! check:    every queue holds exactly the deliveries counted for it (GET /v1/queues/T-i)
//! ```
//!
//! A publish answers only when every matching subscription has the message durably, so the
//! deliveries of a successful publish are known exactly: every unfiltered subscription, plus
//! every filtered one when the entry carried `yes`. Deliveries per second is the headline
//! figure. Nothing consumes; the queues are purged before the run (so they do not grow across
//! runs) and again after the check.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{
    emit, histogram, ms, nothing_done, prepare_error, BenchArgs, Percentiles, Shared,
    ERROR_BACKOFF, MEASURING, STOPPED,
};
use crate::client::{encode_segment, CliError};

/// Longer than any publish should take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The message attribute the filter policies look at.
const MATCH_ATTRIBUTE: &str = "bench_match";

/// The topic and its queues, as prepared.
#[derive(Clone)]
struct Fixture {
    base: String,
    client: reqwest::Client,
    topic: String,
    /// Queue names with whether their subscription is filtered.
    queues: Vec<(String, bool)>,
}

/// Counts of successful publishes over the whole run (warm-up and tail included), for the
/// check against the queues.
#[derive(Default)]
struct Totals {
    published: AtomicU64,
    matched: AtomicU64,
}

/// Counts inside the measurement window.
#[derive(Default)]
struct Window {
    published: AtomicU64,
    matched: AtomicU64,
    deliveries: AtomicU64,
}

/// One queue's check: what the counts say it must hold, and what it holds.
#[derive(Debug, Serialize)]
pub struct QueueCheck {
    pub queue: String,
    pub filtered: bool,
    pub expected: u64,
    pub found: u64,
}

/// The result of a topic run; `--json` prints it as one line.
#[derive(Debug, Serialize)]
pub struct TopicReport {
    pub target: &'static str,
    pub publishers: usize,
    pub subscriptions: u32,
    pub filtered: u32,
    pub size: u32,
    /// Messages per publish request (1: `/publish`, more: `/publish-batch`).
    pub batch: u32,
    pub raw: bool,
    pub duration_s: f64,
    pub publishes_per_sec: f64,
    /// Queue deliveries per second: the sum over publishes of the subscriptions they matched.
    pub deliveries_per_sec: f64,
    pub publishes: u64,
    /// Publishes that carried the value the filtered subscriptions match.
    pub matched: u64,
    pub deliveries: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Per publish request.
    pub publish_latency_us: Percentiles,
    /// Successful publishes over the whole run, warm-up included.
    pub total_publishes: u64,
    /// Of those, the ones the filtered subscriptions match.
    pub total_matched: u64,
    /// True when every queue holds exactly the deliveries counted for it.
    pub deliveries_check_ok: bool,
    /// Deliveries counted but not in their queue, summed over the queues (a broken guarantee).
    pub missing: u64,
    /// Messages in the queues beyond the deliveries counted (duplicate deliveries).
    pub duplicates: u64,
    pub queues: Vec<QueueCheck>,
}

#[derive(Serialize)]
struct Attribute {
    #[serde(rename = "type")]
    data_type: &'static str,
    value: &'static str,
}

#[derive(Serialize)]
struct Attributes {
    /// [`MATCH_ATTRIBUTE`].
    bench_match: Attribute,
}

#[derive(Serialize)]
struct Publish<'a> {
    message: &'a str,
    attributes: Attributes,
}

#[derive(Deserialize)]
struct EntryResult {
    ok: bool,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct BatchResult {
    results: Vec<EntryResult>,
}

async fn answer(response: reqwest::Response, what: &str) -> anyhow::Result<Value> {
    let status = response.status();
    let bytes = response.bytes().await?;
    if !status.is_success() {
        return Err(anyhow!(
            "{what}: HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&bytes)?)
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn topic_url(&self, rest: &str) -> String {
        self.url(&format!("/v1/topics/{}{rest}", encode_segment(&self.topic)))
    }

    fn queue_url(&self, queue: &str, rest: &str) -> String {
        self.url(&format!("/v1/queues/{}{rest}", encode_segment(queue)))
    }

    async fn post(&self, url: String, body: Value, what: &str) -> anyhow::Result<Value> {
        answer(self.client.post(url).json(&body).send().await?, what).await
    }

    /// A fresh topic with fresh subscriptions to empty queues.
    async fn prepare(&self, raw: bool) -> anyhow::Result<()> {
        let response = self.client.delete(self.topic_url("")).send().await?;
        if response.status().as_u16() != 404 {
            answer(response, &format!("cannot delete topic {}", self.topic)).await?;
        }
        self.post(
            self.url("/v1/topics"),
            json!({"name": self.topic}),
            &format!("cannot create topic {}", self.topic),
        )
        .await?;
        for (queue, filtered) in &self.queues {
            let response = self
                .client
                .post(self.url("/v1/queues"))
                .json(&json!({"name": queue}))
                .send()
                .await?;
            // 409: the queue exists with other attributes; it is used as it is.
            if response.status().as_u16() != 409 {
                answer(response, &format!("cannot create queue {queue}")).await?;
            }
            let mut subscription = json!({"queue": queue, "raw_message_delivery": raw});
            if *filtered {
                subscription["filter_policy"] = json!({ MATCH_ATTRIBUTE: ["yes"] });
            }
            self.post(
                self.topic_url("/subscriptions"),
                subscription,
                &format!("cannot subscribe queue {queue}"),
            )
            .await?;
        }
        self.purge().await
    }

    async fn purge(&self) -> anyhow::Result<()> {
        for (queue, _) in &self.queues {
            self.post(
                self.queue_url(queue, "/purge"),
                json!({}),
                &format!("cannot purge queue {queue}"),
            )
            .await?;
        }
        Ok(())
    }

    /// Messages a queue holds: visible, in flight and delayed.
    async fn held(&self, queue: &str) -> anyhow::Result<u64> {
        let response = self.client.get(self.queue_url(queue, "")).send().await?;
        let q = answer(response, &format!("cannot describe queue {queue}")).await?;
        let stat = |k: &str| q["stats"][k].as_u64().unwrap_or(0);
        Ok(stat("visible") + stat("in_flight") + stat("delayed"))
    }

    /// Publishes `matches.len()` messages in one request; returns, per entry, whether it was
    /// published, and the first entry error.
    async fn publish(
        &self,
        body: &str,
        matches: &[bool],
    ) -> anyhow::Result<(Vec<bool>, Option<String>)> {
        let entry = |m: bool| Publish {
            message: body,
            attributes: Attributes {
                bench_match: Attribute {
                    data_type: "String",
                    value: if m { "yes" } else { "no" },
                },
            },
        };
        if let [m] = matches {
            let response = self
                .client
                .post(self.topic_url("/publish"))
                .json(&entry(*m))
                .send()
                .await?;
            answer(response, "publish").await?;
            return Ok((vec![true], None));
        }
        let entries: Vec<Publish<'_>> = matches.iter().map(|m| entry(*m)).collect();
        let response = self
            .client
            .post(self.topic_url("/publish-batch"))
            .json(&json!({ "messages": entries }))
            .send()
            .await?;
        let result: BatchResult = serde_json::from_value(answer(response, "publish-batch").await?)
            .context("publish-batch: unexpected answer")?;
        if result.results.len() != matches.len() {
            return Err(anyhow!(
                "publish-batch answered {} results for {} entries",
                result.results.len(),
                matches.len()
            ));
        }
        let first_error = result
            .results
            .iter()
            .find_map(|r| r.error.as_ref().map(Value::to_string));
        Ok((result.results.iter().map(|r| r.ok).collect(), first_error))
    }
}

pub fn run(
    runtime: &tokio::runtime::Runtime,
    server: &str,
    args: &BenchArgs,
    json_output: bool,
) -> Result<(), CliError> {
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| CliError::Other(format!("cannot build the HTTP client: {e}")))?;
    // Filtered subscriptions are spread among the unfiltered ones: 1, 3, 5, ….
    let mut queues = Vec::new();
    let mut filtered_left = args.filtered;
    for i in 0..args.subscriptions {
        let unfiltered_left = args.subscriptions - i - filtered_left;
        let filtered = filtered_left > 0 && (i % 2 == 1 || unfiltered_left == 0);
        if filtered {
            filtered_left -= 1;
        }
        queues.push((format!("{}-{i}", args.topic), filtered));
    }
    let fixture = Fixture {
        base: server.trim_end_matches('/').to_string(),
        client,
        topic: args.topic.clone(),
        queues,
    };
    let report = runtime.block_on(drive(fixture, args, server))?;
    emit(&report, json_output, || print_report(&report, args));
    if report.publishes == 0 {
        return Err(nothing_done(
            "no message was published",
            report.first_error.as_deref(),
        ));
    }
    if !report.deliveries_check_ok {
        let wrong: Vec<String> = report
            .queues
            .iter()
            .filter(|q| q.expected != q.found)
            .map(|q| format!("{} holds {}, expected {}", q.queue, q.found, q.expected))
            .collect();
        return Err(CliError::Other(format!(
            "the queues do not hold the deliveries counted ({} missing, {} duplicate): {}",
            report.missing,
            report.duplicates,
            wrong.join("; ")
        )));
    }
    Ok(())
}

async fn drive(fixture: Fixture, args: &BenchArgs, server: &str) -> Result<TopicReport, CliError> {
    fixture
        .prepare(!args.envelope)
        .await
        .map_err(|e| prepare_error(e, server))?;
    let shared = Arc::new(Shared::new());
    let totals = Arc::new(Totals::default());
    let window = Arc::new(Window::default());
    let body: Arc<str> = "x".repeat(args.size as usize).into();
    let unfiltered = u64::from(args.subscriptions - args.filtered);
    let filtered = u64::from(args.filtered);
    let per_publisher_rate = args
        .rate
        .map(|r| (r as f64 / args.producers as f64).max(0.001));

    let empty = histogram()?;
    let mut publishers = Vec::new();
    for p in 0..args.producers {
        let (fixture, shared, totals, window, body) = (
            fixture.clone(),
            shared.clone(),
            totals.clone(),
            window.clone(),
            body.clone(),
        );
        let mut latency = empty.clone();
        let batch = args.batch as usize;
        publishers.push(tokio::spawn(async move {
            let mut pacer = per_publisher_rate.map(|r| {
                let mut interval = tokio::time::interval(Duration::from_secs_f64(batch as f64 / r));
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                interval
            });
            // Entries alternate yes, no, yes, …; publishers start at different phases.
            let mut next_match = p % 2 == 0;
            while shared.phase() != STOPPED {
                if let Some(pacer) = pacer.as_mut() {
                    pacer.tick().await;
                }
                let matches: Vec<bool> = (0..batch)
                    .map(|_| {
                        let m = next_match;
                        next_match = !next_match;
                        m
                    })
                    .collect();
                let started = Instant::now();
                match fixture.publish(&body, &matches).await {
                    Ok((published, entry_error)) => {
                        let ok = published.iter().filter(|ok| **ok).count() as u64;
                        let matched = published
                            .iter()
                            .zip(&matches)
                            .filter(|(ok, m)| **ok && **m)
                            .count() as u64;
                        totals.published.fetch_add(ok, Ordering::Relaxed);
                        totals.matched.fetch_add(matched, Ordering::Relaxed);
                        if shared.phase() == MEASURING {
                            window.published.fetch_add(ok, Ordering::Relaxed);
                            window.matched.fetch_add(matched, Ordering::Relaxed);
                            window
                                .deliveries
                                .fetch_add(ok * unfiltered + matched * filtered, Ordering::Relaxed);
                            let _ = latency.record((started.elapsed().as_micros() as u64).max(1));
                        }
                        if let Some(e) = entry_error {
                            for _ in 0..(published.len() as u64 - ok) {
                                shared.error(anyhow!("publish-batch entry failed: {e}"));
                            }
                        }
                    }
                    Err(e) => {
                        shared.error(e);
                        tokio::time::sleep(ERROR_BACKOFF).await;
                    }
                }
            }
            latency
        }));
    }

    let elapsed = shared.run_window(args.warmup, args.duration).await;

    let mut publish_latency = empty.clone();
    for p in publishers {
        if let Ok(h) = p.await {
            let _ = publish_latency.add(&h);
        }
    }
    // Every publish has answered: the queues hold exactly what was counted.
    let total_publishes = totals.published.load(Ordering::SeqCst);
    let total_matched = totals.matched.load(Ordering::SeqCst);
    let mut queues = Vec::new();
    for (queue, is_filtered) in &fixture.queues {
        let found = fixture
            .held(queue)
            .await
            .map_err(|e| CliError::Other(format!("{e:#}")))?;
        queues.push(QueueCheck {
            queue: queue.clone(),
            filtered: *is_filtered,
            expected: if *is_filtered {
                total_matched
            } else {
                total_publishes
            },
            found,
        });
    }
    let deliveries_check_ok = queues.iter().all(|q| q.expected == q.found);
    let missing = queues
        .iter()
        .map(|q| q.expected.saturating_sub(q.found))
        .sum();
    let duplicates = queues
        .iter()
        .map(|q| q.found.saturating_sub(q.expected))
        .sum();
    if let Err(e) = fixture.purge().await {
        shared.error(e.context("after the run"));
    }
    report(
        args,
        &shared,
        &window,
        elapsed,
        &publish_latency,
        (total_publishes, total_matched),
        Check {
            ok: deliveries_check_ok,
            missing,
            duplicates,
            queues,
        },
    )
}

/// The queues against the counts.
struct Check {
    ok: bool,
    missing: u64,
    duplicates: u64,
    queues: Vec<QueueCheck>,
}

fn report(
    args: &BenchArgs,
    shared: &Shared,
    window: &Window,
    elapsed: f64,
    publish_latency: &Histogram<u64>,
    (total_publishes, total_matched): (u64, u64),
    check: Check,
) -> Result<TopicReport, CliError> {
    let publishes = window.published.load(Ordering::SeqCst);
    let deliveries = window.deliveries.load(Ordering::SeqCst);
    Ok(TopicReport {
        target: "topic",
        publishers: args.producers,
        subscriptions: args.subscriptions,
        filtered: args.filtered,
        size: args.size,
        batch: args.batch,
        raw: !args.envelope,
        duration_s: elapsed,
        publishes_per_sec: publishes as f64 / elapsed,
        deliveries_per_sec: deliveries as f64 / elapsed,
        publishes,
        matched: window.matched.load(Ordering::SeqCst),
        deliveries,
        errors: shared.counters.errors.load(Ordering::SeqCst),
        first_error: shared.first_error.lock().ok().and_then(|e| e.clone()),
        publish_latency_us: Percentiles::of(publish_latency),
        total_publishes,
        total_matched,
        deliveries_check_ok: check.ok,
        missing: check.missing,
        duplicates: check.duplicates,
        queues: check.queues,
    })
}

fn print_report(r: &TopicReport, args: &BenchArgs) {
    println!(
        "ferry bench topic: {} publishers, {} subscriptions ({} filtered, half the messages match), {}-byte messages, {} per publish request, {}, {:.1}s measured after {:.1}s warmup, topic {}{}",
        r.publishers,
        r.subscriptions,
        r.filtered,
        r.size,
        r.batch,
        if r.raw { "raw delivery" } else { "SNS envelope" },
        r.duration_s,
        args.warmup.as_secs_f64(),
        args.topic,
        args.rate.map(|x| format!(", rate cap {x} msg/s")).unwrap_or_default()
    );
    println!(
        "  published     {:>12.0} msg/s  ({} messages, {} matching the filter)",
        r.publishes_per_sec, r.publishes, r.matched
    );
    println!(
        "  delivered     {:>12.0} msg/s  ({} queue deliveries)",
        r.deliveries_per_sec, r.deliveries
    );
    let p = &r.publish_latency_us;
    println!(
        "  publish latency (per request) p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        ms(p.p50),
        ms(p.p90),
        ms(p.p99),
        ms(p.p999),
        ms(p.max)
    );
    let held: u64 = r.queues.iter().map(|q| q.found).sum();
    if r.deliveries_check_ok {
        println!(
            "  check         every queue held exactly the deliveries counted for it ({} publishes in the whole run, {held} messages)",
            r.total_publishes
        );
    } else {
        println!(
            "  check         MISMATCH: {} deliveries missing, {} duplicate ({} publishes in the whole run, {held} messages in the queues)",
            r.missing, r.duplicates, r.total_publishes
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
