//! Durable HTTP(S) push delivery.
//!
//! Each HTTP(S) subscription has its own queue in the topic router's private broker
//! (`<data_dir>/topics/delivery`, queue [`delivery_queue_name`](super::delivery_queue_name)).
//! Publish appends the rendered notification there; a delivery loop per subscription receives
//! from it and POSTs through a [`Deliverer`] (the server implements it with an HTTP client: the
//! broker does no network I/O). So a slow or failing endpoint delays only its own subscription.
//!
//! ```text
//! receive (lease DELIVERY_LEASE_SECONDS) ─► POST ─► 2xx ─► delete
//!                                             └──► else: attempt < max ─► change visibility to
//!                                                   the backoff delay (the receive count is the
//!                                                   attempt number, kept durably by the queue)
//!                                                  attempt = max ─► subscription DLQ (RedrivePolicy),
//!                                                   then delete
//! ```
//!
//! Retries therefore survive restarts: the delay is the message's visibility deadline and the
//! attempt count its receive count, both durable queue state. A subscription's first message is
//! its SubscriptionConfirmation; Notifications are only enqueued once it is confirmed.
//!
//! Backoff follows the SNS delivery policy (`healthyRetryPolicy`: `numRetries`,
//! `minDelayTarget`, `maxDelayTarget`, `backoffFunction`), with ±25% jitter, in whole seconds
//! (the queue's visibility granularity).

use super::{delivery_queue_name, Protocol, Subscription, Topics};
use crate::types::{MessageAttributeValue, ReceiveRequest, SendMessage, VisibilityChange};
use crate::BrokerError;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Lease on a delivery while it is being POSTed (longer than any HTTP timeout).
pub const DELIVERY_LEASE_SECONDS: u32 = 60;
/// Timeout of one POST.
pub const POST_TIMEOUT: Duration = Duration::from_secs(15);
/// Deliveries in flight per subscription.
pub const MAX_IN_FLIGHT: u32 = 10;
/// Most retries a delivery policy may ask for (SNS: 100).
pub const MAX_RETRIES: u32 = 100;
/// Longest delay a delivery policy may ask for (SNS: 3600 s).
pub const MAX_DELAY_SECONDS: u32 = 3600;
/// How often the supervisor looks for new HTTP subscriptions.
const SUPERVISE_PERIOD: Duration = Duration::from_millis(200);
/// Message attributes of a delivery-queue message.
pub const ATTR_TYPE: &str = "ferry.sns.type";
pub const ATTR_RAW: &str = "ferry.sns.raw";
pub const ATTR_MESSAGE_ID: &str = "ferry.sns.message_id";

/// One HTTP POST for the server to make.
#[derive(Debug, Clone)]
pub struct HttpPost {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub timeout: Duration,
}

/// Makes the HTTP POSTs of push deliveries. Returns the response status, or an error text for a
/// connection failure or timeout.
pub trait Deliverer: Send + Sync + 'static {
    fn post(&self, request: HttpPost) -> Pin<Box<dyn Future<Output = Result<u16, String>> + Send>>;
}

/// Retry schedule of an HTTP subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub num_retries: u32,
    pub min_delay_seconds: u32,
    pub max_delay_seconds: u32,
    pub exponential: bool,
}

impl Default for RetryPolicy {
    /// SNS's default HTTP policy: 3 retries, 20 s apart.
    fn default() -> Self {
        RetryPolicy {
            num_retries: 3,
            min_delay_seconds: 20,
            max_delay_seconds: 20,
            exponential: false,
        }
    }
}

impl RetryPolicy {
    fn from_json(v: &serde_json::Value) -> Result<RetryPolicy, String> {
        let mut p = RetryPolicy::default();
        let get = |k: &str| -> Result<Option<u32>, String> {
            match v.get(k) {
                None => Ok(None),
                Some(x) => x
                    .as_u64()
                    .map(|n| Some(n as u32))
                    .ok_or_else(|| format!("{k} must be a non-negative integer")),
            }
        };
        if let Some(n) = get("numRetries")? {
            if n > MAX_RETRIES {
                return Err(format!("numRetries must be at most {MAX_RETRIES}"));
            }
            p.num_retries = n;
        }
        if let Some(n) = get("minDelayTarget")? {
            p.min_delay_seconds = n;
        }
        if let Some(n) = get("maxDelayTarget")? {
            p.max_delay_seconds = n;
        }
        if p.min_delay_seconds == 0
            || p.min_delay_seconds > p.max_delay_seconds
            || p.max_delay_seconds > MAX_DELAY_SECONDS
        {
            return Err(format!(
                "delays must satisfy 1 <= minDelayTarget <= maxDelayTarget <= {MAX_DELAY_SECONDS}"
            ));
        }
        match v.get("backoffFunction").and_then(|b| b.as_str()) {
            None | Some("linear") | Some("arithmetic") => {}
            Some("exponential") | Some("geometric") => p.exponential = true,
            Some(other) => return Err(format!("unknown backoffFunction {other}")),
        }
        Ok(p)
    }

    /// A subscription policy: `{"healthyRetryPolicy": {...}}`.
    pub fn from_subscription_policy(json: &str) -> Result<RetryPolicy, String> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("not valid JSON: {e}"))?;
        match v.get("healthyRetryPolicy") {
            Some(h) => RetryPolicy::from_json(h),
            None => Ok(RetryPolicy::default()),
        }
    }

    /// A topic policy: `{"http": {"defaultHealthyRetryPolicy": {...}}}`.
    pub fn from_topic_policy(json: &str) -> Result<RetryPolicy, String> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("not valid JSON: {e}"))?;
        match v
            .get("http")
            .and_then(|h| h.get("defaultHealthyRetryPolicy"))
        {
            Some(h) => RetryPolicy::from_json(h),
            None => Ok(RetryPolicy::default()),
        }
    }

    /// Attempts in all (the first delivery plus the retries).
    pub fn max_attempts(&self) -> u32 {
        self.num_retries + 1
    }

    /// Delay before retry number `retry` (1-based), with jitter, in whole seconds.
    pub fn delay_seconds(&self, retry: u32) -> u32 {
        let min = self.min_delay_seconds as f64;
        let max = self.max_delay_seconds as f64;
        let base = if self.exponential {
            (min * 2f64.powi(retry.saturating_sub(1).min(30) as i32)).min(max)
        } else if self.num_retries <= 1 {
            min
        } else {
            min + (max - min) * (retry.saturating_sub(1) as f64) / ((self.num_retries - 1) as f64)
        };
        let jitter: f64 = 0.75 + rand::random::<f64>() * 0.5;
        ((base * jitter).round() as u32).clamp(self.min_delay_seconds, self.max_delay_seconds)
    }
}

/// A message for a delivery queue.
pub fn delivery_message(body: impl Into<Bytes>, kind: &str, raw: bool) -> SendMessage {
    let s = |v: &str| MessageAttributeValue {
        data_type: "String".into(),
        string_value: Some(v.to_string()),
        binary_value: None,
    };
    let mut attributes = BTreeMap::new();
    attributes.insert(ATTR_TYPE.to_string(), s(kind));
    if raw {
        attributes.insert(ATTR_RAW.to_string(), s("true"));
    }
    SendMessage {
        body: body.into(),
        attributes,
        ..Default::default()
    }
}

/// Starts the task that runs one delivery loop per HTTP(S) subscription.
pub fn spawn_supervisor(topics: Topics, deliverer: Arc<dyn Deliverer>) {
    tokio::spawn(async move {
        let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
        loop {
            if topics.inner.stop.load(Ordering::Acquire) {
                for (_, h) in running.drain() {
                    h.abort();
                }
                return;
            }
            let subs: Vec<Subscription> = topics
                .list_subscriptions(None)
                .unwrap_or_default()
                .into_iter()
                .filter(|s| s.protocol != Protocol::Sqs)
                .collect();
            running.retain(|id, h| {
                let keep = subs.iter().any(|s| &s.id == id) && !h.is_finished();
                if !keep {
                    h.abort();
                }
                keep
            });
            for s in subs {
                if !running.contains_key(&s.id) {
                    let t = topics.clone();
                    let d = deliverer.clone();
                    let id = s.id.clone();
                    running.insert(
                        id,
                        tokio::spawn(async move { delivery_loop(t, d, s).await }),
                    );
                }
            }
            tokio::time::sleep(SUPERVISE_PERIOD).await;
        }
    });
}

fn current(topics: &Topics, s: &Subscription) -> Option<Subscription> {
    topics.get_subscription(&s.topic, &s.id).ok()
}

async fn delivery_loop(topics: Topics, deliverer: Arc<dyn Deliverer>, sub: Subscription) {
    let queue = delivery_queue_name(&sub.id);
    loop {
        if topics.inner.stop.load(Ordering::Acquire) {
            return;
        }
        let received = topics
            .inner
            .delivery
            .receive(
                &queue,
                ReceiveRequest {
                    max_messages: MAX_IN_FLIGHT,
                    visibility_timeout_seconds: Some(DELIVERY_LEASE_SECONDS),
                    wait_seconds: Some(1),
                    receive_request_attempt_id: None,
                },
            )
            .await;
        let batch = match received {
            Ok(b) => b,
            Err(BrokerError::QueueNotFound(_)) | Err(BrokerError::ShuttingDown) => return,
            Err(e) => {
                tracing::warn!(subscription = %sub.id, error = %e, "receiving from a delivery queue");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            continue;
        }
        // Re-read: attributes (delivery policy, DLQ, raw) may have changed.
        let Some(sub) = current(&topics, &sub) else {
            return;
        };
        let mut set = tokio::task::JoinSet::new();
        for m in batch {
            let topics = topics.clone();
            let deliverer = deliverer.clone();
            let sub = sub.clone();
            let queue = queue.clone();
            set.spawn(
                async move { deliver_one(&topics, deliverer.as_ref(), &sub, &queue, m).await },
            );
        }
        while set.join_next().await.is_some() {}
    }
}

fn retry_policy(topics: &Topics, sub: &Subscription) -> RetryPolicy {
    if let Some(p) = &sub.attributes.delivery_policy {
        if let Ok(p) = RetryPolicy::from_subscription_policy(p) {
            return p;
        }
    }
    topics
        .get_topic(&sub.topic)
        .ok()
        .and_then(|t| t.attributes.delivery_policy)
        .and_then(|p| RetryPolicy::from_topic_policy(&p).ok())
        .unwrap_or_default()
}

async fn deliver_one(
    topics: &Topics,
    deliverer: &dyn Deliverer,
    sub: &Subscription,
    queue: &str,
    m: crate::ReceivedMessage,
) {
    let attr = |k: &str| {
        m.message
            .attributes
            .get(k)
            .and_then(|a| a.string_value.clone())
    };
    let kind = attr(ATTR_TYPE).unwrap_or_else(|| "Notification".into());
    let raw = attr(ATTR_RAW).is_some();
    let mut headers = vec![
        (
            "content-type".to_string(),
            "text/plain; charset=UTF-8".to_string(),
        ),
        ("x-amz-sns-message-type".to_string(), kind.clone()),
        (
            "x-amz-sns-topic-arn".to_string(),
            topics.topic_arn(&sub.topic),
        ),
        (
            "user-agent".to_string(),
            "Amazon Simple Notification Service Agent (Ferry)".to_string(),
        ),
    ];
    if let Some(id) = attr(ATTR_MESSAGE_ID) {
        headers.push(("x-amz-sns-message-id".to_string(), id));
    }
    if kind == "Notification" {
        headers.push((
            "x-amz-sns-subscription-arn".to_string(),
            topics.subscription_arn(&sub.topic, &sub.id),
        ));
    }
    if raw {
        headers.push(("x-amz-sns-rawdelivery".to_string(), "true".to_string()));
    }
    let started = Instant::now();
    let result = deliverer
        .post(HttpPost {
            url: sub.endpoint.clone(),
            headers,
            body: m.message.body.clone(),
            timeout: POST_TIMEOUT,
        })
        .await;
    let counters = topics.counters(&sub.id);
    let ok = matches!(result, Ok(status) if (200..300).contains(&status));
    let broker = &topics.inner.delivery;
    if ok {
        if kind == "Notification" {
            if let Some(c) = &counters {
                c.delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
        tracing::debug!(subscription = %sub.id, ms = started.elapsed().as_millis() as u64, "delivered");
        if let Err(e) = broker.delete_messages(queue, vec![m.receipt_handle]).await {
            tracing::warn!(subscription = %sub.id, error = %e, "deleting a delivered message");
        }
        return;
    }
    let policy = retry_policy(topics, sub);
    let attempt = m.message.receive_count;
    tracing::info!(subscription = %sub.id, attempt, max = policy.max_attempts(), result = ?result, "HTTP delivery failed");
    if attempt < policy.max_attempts() {
        let delay = policy.delay_seconds(attempt);
        let change = VisibilityChange {
            receipt_handle: m.receipt_handle,
            visibility_timeout_seconds: delay,
        };
        if let Err(e) = broker.change_visibility(queue, vec![change]).await {
            tracing::warn!(subscription = %sub.id, error = %e, "scheduling a retry");
        }
        return;
    }
    if let Some(c) = &counters {
        c.failed.fetch_add(1, Ordering::Relaxed);
    }
    if kind == "Notification" {
        if let Some(dlq) = &sub.attributes.dead_letter_queue {
            let msg = SendMessage {
                body: m.message.body.clone(),
                ..Default::default()
            };
            match topics.inner.broker.send(dlq, vec![msg]).await {
                Ok(_) => {
                    if let Some(c) = &counters {
                        c.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    // Keep it: it is retried after the lease and dead-lettered then.
                    tracing::warn!(subscription = %sub.id, error = %e, "dead-lettering an HTTP delivery failed");
                    return;
                }
            }
        } else {
            tracing::warn!(subscription = %sub.id, "HTTP delivery failed after the last attempt and the subscription has no dead-letter queue; dropped");
        }
    }
    if let Err(e) = broker.delete_messages(queue, vec![m.receipt_handle]).await {
        tracing::warn!(subscription = %sub.id, error = %e, "deleting an exhausted delivery");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        let p = RetryPolicy::from_subscription_policy(r#"{"healthyRetryPolicy":{"numRetries":5,"minDelayTarget":1,"maxDelayTarget":16,"backoffFunction":"exponential"}}"#).unwrap();
        assert_eq!(p.max_attempts(), 6);
        for r in 1..=5 {
            let d = p.delay_seconds(r);
            let base = (1u32 << (r - 1)).min(16) as f64;
            assert!(
                d as f64 >= (base * 0.75).floor().max(1.0)
                    && d as f64 <= (base * 1.25).ceil().min(16.0),
                "retry {r}: {d}"
            );
        }
        assert!(RetryPolicy::from_subscription_policy(
            r#"{"healthyRetryPolicy":{"minDelayTarget":0}}"#
        )
        .is_err());
        assert!(RetryPolicy::from_subscription_policy(
            r#"{"healthyRetryPolicy":{"numRetries":101}}"#
        )
        .is_err());
        assert!(RetryPolicy::from_subscription_policy("nope").is_err());
        assert_eq!(RetryPolicy::from_topic_policy(r#"{"http":{"defaultHealthyRetryPolicy":{"numRetries":1,"minDelayTarget":2,"maxDelayTarget":2}}}"#).unwrap().max_attempts(), 2);
    }
}
