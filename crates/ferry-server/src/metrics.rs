//! Every Prometheus metric name the server exports, and the recorder that renders them.
//!
//! This module is the one place where metric names are spelled; `docs/metrics.md` documents
//! each of them. Queue gauges and counters are not updated on the hot path: they are copied
//! from [`Broker::stats`] when `/metrics` is scraped, so they cost nothing between scrapes.
//! Only request latency (and fsync latency, when the storage engine reports it) is recorded
//! as it happens.

use std::sync::OnceLock;
use std::time::Duration;

use ferry_broker::Broker;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

/// Histogram: HTTP request latency in seconds. Labels: `route` (matched path template, or
/// `unmatched`), `method`, `status`.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "ferry_http_request_duration_seconds";
/// Gauge: HTTP requests being handled, long polls included.
pub const HTTP_REQUESTS_IN_FLIGHT: &str = "ferry_http_requests_in_flight";
/// Gauge: HTTP receive calls parked in a long poll.
pub const HTTP_LONG_POLLS_WAITING: &str = "ferry_http_long_polls_waiting";
/// Gauge: messages that can be received now. Label: `queue`.
pub const QUEUE_MESSAGES_VISIBLE: &str = "ferry_queue_messages_visible";
/// Gauge: messages received and not yet deleted or visible again. Label: `queue`.
pub const QUEUE_MESSAGES_IN_FLIGHT: &str = "ferry_queue_messages_in_flight";
/// Gauge: messages whose delay has not yet passed. Label: `queue`.
pub const QUEUE_MESSAGES_DELAYED: &str = "ferry_queue_messages_delayed";
/// Gauge: age of the oldest live message in seconds, 0 when empty. Label: `queue`.
pub const QUEUE_OLDEST_MESSAGE_AGE_SECONDS: &str = "ferry_queue_oldest_message_age_seconds";
/// Counter: messages accepted by send. Label: `queue`.
pub const QUEUE_MESSAGES_SENT_TOTAL: &str = "ferry_queue_messages_sent_total";
/// Counter: deliveries (a message received twice counts twice). Label: `queue`.
pub const QUEUE_MESSAGES_RECEIVED_TOTAL: &str = "ferry_queue_messages_received_total";
/// Counter: messages deleted by their consumer. Label: `queue`.
pub const QUEUE_MESSAGES_DELETED_TOTAL: &str = "ferry_queue_messages_deleted_total";
/// Counter: messages removed by retention or time to live. Label: `queue`.
pub const QUEUE_MESSAGES_EXPIRED_TOTAL: &str = "ferry_queue_messages_expired_total";
/// Counter: messages moved to the dead-letter queue. Label: `queue` (the source).
pub const QUEUE_MESSAGES_DEAD_LETTERED_TOTAL: &str = "ferry_queue_messages_dead_lettered_total";
/// Counter: messages dropped by a bounded queue's overflow policy. Label: `queue`.
pub const QUEUE_MESSAGES_DROPPED_TOTAL: &str = "ferry_queue_messages_dropped_total";
/// Gauge: bytes on disk used by one queue. Label: `queue`.
pub const QUEUE_DISK_BYTES: &str = "ferry_queue_disk_bytes";
/// Gauge: bytes on disk used by all queue logs and checkpoints.
pub const DISK_BYTES: &str = "ferry_disk_bytes";
/// Gauge: 1 once recovery has finished and queue calls are served, else 0.
pub const READY: &str = "ferry_ready";
/// Histogram: duration of one `fdatasync` of a log in seconds (group commit: one per batch).
pub const LOG_FSYNC_DURATION_SECONDS: &str = "ferry_log_fsync_duration_seconds";

/// Counter: messages published to a topic. Label: `topic`.
pub const TOPIC_MESSAGES_PUBLISHED_TOTAL: &str = "ferry_topic_messages_published_total";
/// Counter: notifications delivered to a subscription (queue append, or HTTP 2xx). Labels:
/// `topic`, `subscription`, `protocol`.
pub const SUBSCRIPTION_DELIVERED_TOTAL: &str = "ferry_subscription_delivered_total";
/// Counter: publishes a subscription's filter policy rejected. Labels as above.
pub const SUBSCRIPTION_FILTERED_OUT_TOTAL: &str = "ferry_subscription_filtered_out_total";
/// Counter: notifications that could not be delivered (queue refused, or HTTP attempts
/// exhausted). Labels as above.
pub const SUBSCRIPTION_FAILED_TOTAL: &str = "ferry_subscription_failed_total";
/// Counter: undeliverable notifications moved to the subscription's dead-letter queue.
pub const SUBSCRIPTION_DEAD_LETTERED_TOTAL: &str = "ferry_subscription_dead_lettered_total";
/// Histogram: one HTTP push delivery attempt, in seconds. Label: `outcome` (`ok`, `failed`).
pub const SNS_HTTP_DELIVERY_DURATION_SECONDS: &str = "ferry_sns_http_delivery_duration_seconds";

/// Gauge: next offset of a stream partition (every record below it is durable). Labels:
/// `stream`, `partition`.
pub const STREAM_PARTITION_HIGH_WATERMARK: &str = "ferry_stream_partition_high_watermark";
/// Gauge: first offset still stored in a stream partition. Labels: `stream`, `partition`.
pub const STREAM_PARTITION_LOG_START_OFFSET: &str = "ferry_stream_partition_log_start_offset";
/// Gauge: bytes on disk of a stream partition's log. Labels: `stream`, `partition`.
pub const STREAM_PARTITION_DISK_BYTES: &str = "ferry_stream_partition_disk_bytes";
/// Gauge: committed offset of a consumer group. Labels: `group`, `stream`, `partition`.
pub const STREAM_GROUP_COMMITTED_OFFSET: &str = "ferry_stream_group_committed_offset";
/// Gauge: high watermark minus committed offset. Labels: `group`, `stream`, `partition`.
pub const STREAM_GROUP_LAG: &str = "ferry_stream_group_lag";

/// Gauge: memory held by the stream partitions' shared tail cache, in bytes.
pub const STREAM_CACHE_BYTES: &str = "ferry_stream_cache_bytes";
/// Gauge: the tail cache's budget (`stream_cache`), in bytes.
pub const STREAM_CACHE_LIMIT_BYTES: &str = "ferry_stream_cache_limit_bytes";
/// Counter: stream partition reads (Kafka fetches, native reads). Label: `result` (`hit`:
/// answered from the tail cache, `read_ahead`: from batches read ahead for a consumer reading
/// through the files, `miss`: read from the segment files).
pub const STREAM_CACHE_READS_TOTAL: &str = "ferry_stream_cache_reads_total";

/// Every exported name, for the test that checks `docs/metrics.md` and `/metrics` agree.
pub const ALL: &[&str] = &[
    STREAM_PARTITION_HIGH_WATERMARK,
    STREAM_PARTITION_LOG_START_OFFSET,
    STREAM_PARTITION_DISK_BYTES,
    STREAM_GROUP_COMMITTED_OFFSET,
    STREAM_GROUP_LAG,
    STREAM_CACHE_BYTES,
    STREAM_CACHE_LIMIT_BYTES,
    STREAM_CACHE_READS_TOTAL,
    TOPIC_MESSAGES_PUBLISHED_TOTAL,
    SUBSCRIPTION_DELIVERED_TOTAL,
    SUBSCRIPTION_FILTERED_OUT_TOTAL,
    SUBSCRIPTION_FAILED_TOTAL,
    SUBSCRIPTION_DEAD_LETTERED_TOTAL,
    SNS_HTTP_DELIVERY_DURATION_SECONDS,
    HTTP_REQUEST_DURATION_SECONDS,
    HTTP_REQUESTS_IN_FLIGHT,
    HTTP_LONG_POLLS_WAITING,
    QUEUE_MESSAGES_VISIBLE,
    QUEUE_MESSAGES_IN_FLIGHT,
    QUEUE_MESSAGES_DELAYED,
    QUEUE_OLDEST_MESSAGE_AGE_SECONDS,
    QUEUE_MESSAGES_SENT_TOTAL,
    QUEUE_MESSAGES_RECEIVED_TOTAL,
    QUEUE_MESSAGES_DELETED_TOTAL,
    QUEUE_MESSAGES_EXPIRED_TOTAL,
    QUEUE_MESSAGES_DEAD_LETTERED_TOTAL,
    QUEUE_MESSAGES_DROPPED_TOTAL,
    QUEUE_DISK_BYTES,
    DISK_BYTES,
    READY,
    LOG_FSYNC_DURATION_SECONDS,
];

/// Request latency buckets: 100 µs to 30 s (long polls last up to 20 s).
const REQUEST_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 20.0, 30.0,
];
/// Fsync latency buckets: 10 µs to 1 s.
const FSYNC_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 1.0,
];
/// Queue series not refreshed for this long (the queue was deleted) disappear.
const QUEUE_SERIES_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How often histogram samples are folded into buckets when nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns the handle that renders it.
///
/// A process has one global recorder; several servers in one process (tests) share it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new().idle_timeout(
                MetricKindMask::GAUGE | MetricKindMask::COUNTER,
                Some(QUEUE_SERIES_IDLE_TIMEOUT),
            );
            // Bucket lists are non-empty constants, so these cannot fail; keep the builder
            // unchanged rather than panic if they ever did.
            let builder = builder
                .set_buckets_for_metric(
                    Matcher::Full(HTTP_REQUEST_DURATION_SECONDS.into()),
                    REQUEST_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(LOG_FSYNC_DURATION_SECONDS.into()),
                        FSYNC_BUCKETS,
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "HTTP request latency by route template, method and status"
    );
    metrics::describe_gauge!(HTTP_REQUESTS_IN_FLIGHT, "HTTP requests being handled");
    metrics::describe_gauge!(
        HTTP_LONG_POLLS_WAITING,
        "HTTP receives parked in a long poll"
    );
    metrics::describe_gauge!(QUEUE_MESSAGES_VISIBLE, "Messages that can be received now");
    metrics::describe_gauge!(
        QUEUE_MESSAGES_IN_FLIGHT,
        "Messages received and not yet deleted"
    );
    metrics::describe_gauge!(
        QUEUE_MESSAGES_DELAYED,
        "Messages whose delay has not passed"
    );
    metrics::describe_gauge!(
        QUEUE_OLDEST_MESSAGE_AGE_SECONDS,
        metrics::Unit::Seconds,
        "Age of the oldest live message"
    );
    metrics::describe_counter!(QUEUE_MESSAGES_SENT_TOTAL, "Messages accepted by send");
    metrics::describe_counter!(QUEUE_MESSAGES_RECEIVED_TOTAL, "Message deliveries");
    metrics::describe_counter!(
        QUEUE_MESSAGES_DELETED_TOTAL,
        "Messages deleted by consumers"
    );
    metrics::describe_counter!(
        QUEUE_MESSAGES_EXPIRED_TOTAL,
        "Messages expired by retention or TTL"
    );
    metrics::describe_counter!(
        QUEUE_MESSAGES_DEAD_LETTERED_TOTAL,
        "Messages moved to the dead-letter queue"
    );
    metrics::describe_counter!(QUEUE_MESSAGES_DROPPED_TOTAL, "Messages dropped on overflow");
    metrics::describe_gauge!(
        QUEUE_DISK_BYTES,
        metrics::Unit::Bytes,
        "Bytes on disk per queue"
    );
    metrics::describe_gauge!(
        DISK_BYTES,
        metrics::Unit::Bytes,
        "Bytes on disk, all queues"
    );
    metrics::describe_gauge!(READY, "1 once recovery has finished");
    metrics::describe_histogram!(
        LOG_FSYNC_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Duration of one log fdatasync"
    );
}

/// Records one HTTP request's latency.
pub fn record_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    metrics::histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        "route" => route.to_string(),
        "method" => method.to_string(),
        "status" => status.to_string(),
    )
    .record(elapsed.as_secs_f64());
}

/// Records one HTTP push delivery attempt (called by the SNS deliverer).
pub fn record_sns_delivery(elapsed: Duration, ok: bool) {
    metrics::histogram!(SNS_HTTP_DELIVERY_DURATION_SECONDS, "outcome" => if ok { "ok" } else { "failed" })
        .record(elapsed.as_secs_f64());
}

/// Copies the topic router's counters into the recorder, just before rendering.
pub fn refresh_topics(topics: Option<&ferry_broker::topic::Topics>) {
    let Some(topics) = topics else { return };
    for t in topics.stats() {
        metrics::counter!(TOPIC_MESSAGES_PUBLISHED_TOTAL, "topic" => t.name.clone())
            .absolute(t.published);
        for s in &t.subscriptions {
            let counter = |name: &'static str, value: u64| {
                metrics::counter!(name, "topic" => t.name.clone(), "subscription" => s.id.clone(), "protocol" => s.protocol)
                    .absolute(value);
            };
            counter(SUBSCRIPTION_DELIVERED_TOTAL, s.delivered);
            counter(SUBSCRIPTION_FILTERED_OUT_TOTAL, s.filtered_out);
            counter(SUBSCRIPTION_FAILED_TOTAL, s.failed);
            counter(SUBSCRIPTION_DEAD_LETTERED_TOTAL, s.dead_lettered);
        }
    }
}

/// Copies stream partition offsets and sizes and group lag into the recorder, just before
/// rendering.
pub fn refresh_streams(streams: Option<&ferry_broker::stream::Streams>) {
    let Some(streams) = streams else { return };
    if let Some(cache) = streams.tail_cache_stats() {
        metrics::gauge!(STREAM_CACHE_BYTES).set(cache.used_bytes as f64);
        metrics::gauge!(STREAM_CACHE_LIMIT_BYTES).set(cache.limit_bytes as f64);
        metrics::counter!(STREAM_CACHE_READS_TOTAL, "result" => "hit").absolute(cache.hits);
        metrics::counter!(STREAM_CACHE_READS_TOTAL, "result" => "read_ahead")
            .absolute(cache.read_ahead_hits);
        metrics::counter!(STREAM_CACHE_READS_TOTAL, "result" => "miss").absolute(cache.misses);
    }
    for s in streams.list() {
        for p in &s.partitions {
            let gauge = |name: &'static str, value: f64| {
                metrics::gauge!(name, "stream" => s.name.clone(), "partition" => p.partition.to_string())
                    .set(value);
            };
            gauge(STREAM_PARTITION_HIGH_WATERMARK, p.high_watermark as f64);
            gauge(STREAM_PARTITION_LOG_START_OFFSET, p.log_start_offset as f64);
            gauge(STREAM_PARTITION_DISK_BYTES, p.size_bytes as f64);
        }
    }
    for (group, _, _) in streams.list_groups() {
        for (stream, partition, committed, _, lag) in streams.group_lag(&group) {
            let labels = [
                ("group", group.clone()),
                ("stream", stream),
                ("partition", partition.to_string()),
            ];
            metrics::gauge!(STREAM_GROUP_COMMITTED_OFFSET, &labels).set(committed as f64);
            metrics::gauge!(STREAM_GROUP_LAG, &labels).set(lag as f64);
        }
    }
}

/// Records one fsync's latency (called from the storage engine's sync hook).
pub fn record_fsync(elapsed: Duration) {
    metrics::histogram!(LOG_FSYNC_DURATION_SECONDS).record(elapsed.as_secs_f64());
}

/// The storage engine's sync hook: records every real fdatasync (batches written without one,
/// under relaxed durability, report a zero duration and are not recorded).
pub fn fsync_observer() -> ferry_log::SyncObserver {
    std::sync::Arc::new(|stats: ferry_log::SyncStats| {
        if !stats.duration.is_zero() {
            record_fsync(stats.duration);
        }
    })
}

/// Records the HTTP door's in-flight counts, just before rendering.
pub fn refresh_http(requests_in_flight: usize, long_polls_waiting: usize) {
    metrics::gauge!(HTTP_REQUESTS_IN_FLIGHT).set(requests_in_flight as f64);
    metrics::gauge!(HTTP_LONG_POLLS_WAITING).set(long_polls_waiting as f64);
}

/// Copies the broker's queue counts and counters into the recorder, just before rendering.
pub fn refresh(broker: Option<&Broker>) {
    let Some(broker) = broker else {
        metrics::gauge!(READY).set(0.0);
        return;
    };
    metrics::gauge!(READY).set(1.0);
    for (queue, stats) in broker.stats() {
        let gauge = |name: &'static str, value: f64| {
            metrics::gauge!(name, "queue" => queue.clone()).set(value);
        };
        gauge(QUEUE_MESSAGES_VISIBLE, stats.visible as f64);
        gauge(QUEUE_MESSAGES_IN_FLIGHT, stats.in_flight as f64);
        gauge(QUEUE_MESSAGES_DELAYED, stats.delayed as f64);
        gauge(
            QUEUE_OLDEST_MESSAGE_AGE_SECONDS,
            stats.oldest_age_ms as f64 / 1000.0,
        );
        gauge(QUEUE_DISK_BYTES, stats.disk_bytes as f64);
        let counter = |name: &'static str, value: u64| {
            metrics::counter!(name, "queue" => queue.clone()).absolute(value);
        };
        counter(QUEUE_MESSAGES_SENT_TOTAL, stats.sent_total);
        counter(QUEUE_MESSAGES_RECEIVED_TOTAL, stats.received_total);
        counter(QUEUE_MESSAGES_DELETED_TOTAL, stats.deleted_total);
        counter(QUEUE_MESSAGES_EXPIRED_TOTAL, stats.expired_total);
        counter(
            QUEUE_MESSAGES_DEAD_LETTERED_TOTAL,
            stats.dead_lettered_total,
        );
        counter(QUEUE_MESSAGES_DROPPED_TOTAL, stats.dropped_total);
    }
    metrics::gauge!(DISK_BYTES).set(broker.disk_bytes() as f64);
}

#[cfg(test)]
mod tests {
    /// Every exported name is documented, so the docs cannot silently fall behind.
    #[test]
    fn every_metric_is_documented() {
        let docs = include_str!("../../../docs/metrics.md");
        let missing: Vec<&str> = super::ALL
            .iter()
            .copied()
            .filter(|name| !docs.contains(&format!("`{name}`")))
            .collect();
        assert!(missing.is_empty(), "not in docs/metrics.md: {missing:?}");
    }
}
