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
//! Backoff follows the SNS delivery policy ([`RetryPolicy`]: the immediate, pre-backoff,
//! backoff and post-backoff phases of `healthyRetryPolicy`), with ±25% jitter, in whole seconds
//! (the queue's visibility granularity). `throttlePolicy.maxReceivesPerSecond` caps how many
//! deliveries to the endpoint start per second ([`Throttle`]).

use super::{delivery_queue_name, Subscription, Topics};
use crate::types::{MessageAttributeValue, ReceiveRequest, SendMessage, VisibilityChange};
use crate::BrokerError;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, VecDeque};
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
/// The `ATTR_TYPE` of the farewell message an unsubscribed endpoint is sent.
const UNSUBSCRIBE_CONFIRMATION: &str = "UnsubscribeConfirmation";

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

/// Retry schedule of an HTTP subscription (SNS `healthyRetryPolicy`).
///
/// Retry `r` (1-based, `r <= num_retries`) falls in one of four phases, in this order:
///
/// ```text
/// immediate     numNoDelayRetries    delay 0
/// pre-backoff   numMinDelayRetries   delay minDelayTarget
/// backoff       the rest             minDelayTarget → maxDelayTarget by backoffFunction
/// post-backoff  numMaxDelayRetries   delay maxDelayTarget
/// ```
///
/// In the backoff phase of `n` retries, retry `i` (1-based) is at `t = (i-1)/(n-1)` of the way
/// (`t = 0` when `n = 1`): `linear`/`arithmetic` give `min + (max-min)·t`,
/// `exponential`/`geometric` give `min·(max/min)^t`. So the phase starts at the minimum delay
/// and ends at the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// All retries, of every phase.
    pub num_retries: u32,
    pub num_no_delay_retries: u32,
    pub num_min_delay_retries: u32,
    pub num_max_delay_retries: u32,
    pub min_delay_seconds: u32,
    pub max_delay_seconds: u32,
    pub exponential: bool,
}

impl Default for RetryPolicy {
    /// SNS's default HTTP policy: 3 retries, 20 s apart.
    fn default() -> Self {
        RetryPolicy {
            num_retries: 3,
            num_no_delay_retries: 0,
            num_min_delay_retries: 0,
            num_max_delay_retries: 0,
            min_delay_seconds: 20,
            max_delay_seconds: 20,
            exponential: false,
        }
    }
}

/// Reads an optional non-negative integer field of a policy object.
fn count(v: &serde_json::Value, k: &str) -> Result<Option<u32>, String> {
    match v.get(k) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(x) => x
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("{k} must be a non-negative integer")),
    }
}

impl RetryPolicy {
    fn from_json(v: &serde_json::Value) -> Result<RetryPolicy, String> {
        if !v.is_object() {
            return Err("healthyRetryPolicy must be a JSON object".into());
        }
        let mut p = RetryPolicy::default();
        if let Some(n) = count(v, "numRetries")? {
            if n > MAX_RETRIES {
                return Err(format!("numRetries must be at most {MAX_RETRIES}"));
            }
            p.num_retries = n;
        }
        p.num_no_delay_retries = count(v, "numNoDelayRetries")?.unwrap_or(0);
        p.num_min_delay_retries = count(v, "numMinDelayRetries")?.unwrap_or(0);
        p.num_max_delay_retries = count(v, "numMaxDelayRetries")?.unwrap_or(0);
        let phases = p.num_no_delay_retries as u64
            + p.num_min_delay_retries as u64
            + p.num_max_delay_retries as u64;
        if phases > p.num_retries as u64 {
            return Err(format!(
                "numNoDelayRetries + numMinDelayRetries + numMaxDelayRetries ({phases}) must be at most numRetries ({})",
                p.num_retries
            ));
        }
        if let Some(n) = count(v, "minDelayTarget")? {
            p.min_delay_seconds = n;
        }
        if let Some(n) = count(v, "maxDelayTarget")? {
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
        match v.get("backoffFunction") {
            None | Some(serde_json::Value::Null) => {}
            Some(b) => match b.as_str() {
                Some("linear") | Some("arithmetic") => {}
                Some("exponential") | Some("geometric") => p.exponential = true,
                _ => {
                    return Err(format!(
                        "backoffFunction must be one of linear, arithmetic, geometric, exponential, got {b}"
                    ))
                }
            },
        }
        Ok(p)
    }

    /// Attempts in all (the first delivery plus the retries).
    pub fn max_attempts(&self) -> u32 {
        self.num_retries + 1
    }

    /// Retries in the backoff phase.
    fn backoff_retries(&self) -> u32 {
        self.num_retries
            .saturating_sub(self.num_no_delay_retries)
            .saturating_sub(self.num_min_delay_retries)
            .saturating_sub(self.num_max_delay_retries)
    }

    /// Delay before retry number `retry` (1-based), before jitter, in whole seconds.
    pub fn base_delay_seconds(&self, retry: u32) -> u32 {
        let min = self.min_delay_seconds;
        let max = self.max_delay_seconds;
        let immediate_end = self.num_no_delay_retries;
        let pre_end = immediate_end + self.num_min_delay_retries;
        let backoff = self.backoff_retries();
        let backoff_end = pre_end + backoff;
        if retry <= immediate_end {
            0
        } else if retry <= pre_end {
            min
        } else if retry <= backoff_end {
            let i = retry - pre_end;
            let t = if backoff <= 1 {
                0.0
            } else {
                (i - 1) as f64 / (backoff - 1) as f64
            };
            let (lo, hi) = (min as f64, max as f64);
            let d = if self.exponential {
                lo * (hi / lo).powf(t)
            } else {
                lo + (hi - lo) * t
            };
            (d.round() as u32).clamp(min, max)
        } else {
            max
        }
    }

    /// Delay before retry number `retry` (1-based), with ±25% jitter, in whole seconds, kept
    /// within the policy's bounds (an immediate retry stays immediate).
    pub fn delay_seconds(&self, retry: u32) -> u32 {
        let base = self.base_delay_seconds(retry);
        if base == 0 {
            return 0;
        }
        let jitter: f64 = 0.75 + rand::random::<f64>() * 0.5;
        ((base as f64 * jitter).round() as u32)
            .clamp(self.min_delay_seconds, self.max_delay_seconds)
    }
}

/// The effective HTTP(S) delivery policy of a subscription: its retry schedule and throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryPolicy {
    pub retry: RetryPolicy,
    /// `throttlePolicy.maxReceivesPerSecond`: most deliveries started per second; `None` is
    /// unthrottled.
    pub max_receives_per_second: Option<u32>,
}

/// The two sections of a delivery policy document, each present or not.
#[derive(Debug, Default)]
struct PolicySections {
    retry: Option<RetryPolicy>,
    max_receives_per_second: Option<u32>,
}

fn parse_sections(
    healthy: Option<&serde_json::Value>,
    throttle: Option<&serde_json::Value>,
) -> Result<PolicySections, String> {
    let retry = healthy.map(RetryPolicy::from_json).transpose()?;
    let max_receives_per_second = match throttle {
        None | Some(serde_json::Value::Null) => None,
        Some(t) if !t.is_object() => return Err("throttlePolicy must be a JSON object".into()),
        Some(t) => match count(t, "maxReceivesPerSecond")? {
            Some(0) => return Err("maxReceivesPerSecond must be at least 1".into()),
            n => n,
        },
    };
    Ok(PolicySections {
        retry,
        max_receives_per_second,
    })
}

fn parse_json(json: &str) -> Result<serde_json::Value, String> {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err("must be a JSON object".into()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

impl DeliveryPolicy {
    /// A subscription policy: `{"healthyRetryPolicy": {...}, "throttlePolicy": {...}}`.
    fn subscription_sections(json: &str) -> Result<PolicySections, String> {
        let v = parse_json(json)?;
        parse_sections(v.get("healthyRetryPolicy"), v.get("throttlePolicy"))
    }

    /// A topic policy: `{"http": {"defaultHealthyRetryPolicy": {...},
    /// "defaultThrottlePolicy": {...}, "disableSubscriptionOverrides": bool}}`.
    fn topic_sections(json: &str) -> Result<(PolicySections, bool), String> {
        let v = parse_json(json)?;
        let http = v.get("http");
        let sections = parse_sections(
            http.and_then(|h| h.get("defaultHealthyRetryPolicy")),
            http.and_then(|h| h.get("defaultThrottlePolicy")),
        )?;
        let no_overrides = http
            .and_then(|h| h.get("disableSubscriptionOverrides"))
            .and_then(|d| d.as_bool())
            .unwrap_or(false);
        Ok((sections, no_overrides))
    }

    /// Validates and reads a subscription's `DeliveryPolicy` on its own.
    pub fn from_subscription_policy(json: &str) -> Result<DeliveryPolicy, String> {
        Self::effective(Some(json), None)
    }

    /// Validates and reads a topic's `DeliveryPolicy` on its own.
    pub fn from_topic_policy(json: &str) -> Result<DeliveryPolicy, String> {
        Self::effective(None, Some(json))
    }

    /// The policy a subscription delivers by: each section (retry, throttle) from the
    /// subscription when it sets it, else from the topic's `http` defaults, else SNS's
    /// defaults. A topic with `disableSubscriptionOverrides` ignores the subscription's.
    pub fn effective(
        subscription: Option<&str>,
        topic: Option<&str>,
    ) -> Result<DeliveryPolicy, String> {
        let (topic, no_overrides) = match topic {
            Some(t) => Self::topic_sections(t)?,
            None => (PolicySections::default(), false),
        };
        let sub = match subscription {
            Some(s) if !no_overrides => Self::subscription_sections(s)?,
            _ => PolicySections::default(),
        };
        Ok(DeliveryPolicy {
            retry: sub.retry.or(topic.retry).unwrap_or_default(),
            max_receives_per_second: sub
                .max_receives_per_second
                .or(topic.max_receives_per_second),
        })
    }
}

/// Keeps a subscription within `maxReceivesPerSecond`: at most `limit` deliveries start in any
/// one-second window. Pure (times are passed in) so the schedule is testable.
#[derive(Debug)]
pub struct Throttle {
    limit: u32,
    /// Start times of the last `limit` deliveries, oldest first.
    starts: VecDeque<Instant>,
}

impl Throttle {
    pub fn new(limit: u32) -> Throttle {
        let limit = limit.max(1);
        Throttle {
            limit,
            starts: VecDeque::with_capacity(limit.min(MAX_IN_FLIGHT) as usize),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Books the next delivery that may start at or after `now`, and returns its start time.
    pub fn reserve(&mut self, now: Instant) -> Instant {
        let mut at = now;
        if self.starts.len() as u32 >= self.limit {
            if let Some(oldest) = self.starts.pop_front() {
                at = at.max(oldest + Duration::from_secs(1));
            }
        }
        if let Some(last) = self.starts.back() {
            at = at.max(*last);
        }
        self.starts.push_back(at);
        at
    }
}

/// The headers of one POST to an endpoint.
pub fn headers(
    kind: &str,
    topic_arn: &str,
    subscription_arn: &str,
    message_id: Option<String>,
    raw: bool,
) -> Vec<(String, String)> {
    let mut headers = vec![
        (
            "content-type".to_string(),
            "text/plain; charset=UTF-8".to_string(),
        ),
        ("x-amz-sns-message-type".to_string(), kind.to_string()),
        ("x-amz-sns-topic-arn".to_string(), topic_arn.to_string()),
        (
            "user-agent".to_string(),
            "Amazon Simple Notification Service Agent (Ferry)".to_string(),
        ),
    ];
    if let Some(id) = message_id {
        headers.push(("x-amz-sns-message-id".to_string(), id));
    }
    if kind != "SubscriptionConfirmation" {
        headers.push((
            "x-amz-sns-subscription-arn".to_string(),
            subscription_arn.to_string(),
        ));
    }
    if raw {
        headers.push(("x-amz-sns-rawdelivery".to_string(), "true".to_string()));
    }
    headers
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
            let subs = topics.http_deliveries();
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

async fn delivery_loop(topics: Topics, deliverer: Arc<dyn Deliverer>, sub: Subscription) {
    let queue = delivery_queue_name(&sub.id);
    let mut throttle: Option<Throttle> = None;
    let mut policy = delivery_policy(&topics, &sub);
    loop {
        if topics.inner.stop.load(Ordering::Acquire) {
            return;
        }
        // A throttled subscription takes no more than a second's worth at a time, so no
        // message waits for its turn anywhere near its lease.
        let max_messages = policy
            .max_receives_per_second
            .map_or(MAX_IN_FLIGHT, |n| n.min(MAX_IN_FLIGHT));
        let received = topics
            .inner
            .delivery
            .receive(
                &queue,
                ReceiveRequest {
                    max_messages,
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
        // Re-read: attributes (delivery policy, DLQ, raw) may have changed, or the
        // subscription been unsubscribed (or restored).
        let Some((sub, unsubscribed)) = topics.delivering_subscription(&sub.topic, &sub.id) else {
            return;
        };
        policy = delivery_policy(&topics, &sub);
        throttle = match (policy.max_receives_per_second, throttle) {
            (None, _) => None,
            (Some(n), Some(t)) if t.limit() == n => Some(t),
            (Some(n), _) => Some(Throttle::new(n)),
        };
        let mut set = tokio::task::JoinSet::new();
        for m in batch {
            let topics = topics.clone();
            let deliverer = deliverer.clone();
            let sub = sub.clone();
            let queue = queue.clone();
            let start = throttle.as_mut().map(|t| t.reserve(Instant::now()));
            set.spawn(async move {
                if let Some(at) = start {
                    tokio::time::sleep_until(at.into()).await;
                }
                let sub = Delivering {
                    sub: &sub,
                    unsubscribed,
                };
                deliver_one(&topics, deliverer.as_ref(), sub, &policy.retry, &queue, m).await
            });
        }
        while set.join_next().await.is_some() {}
    }
}

/// The subscription's effective policy. Both documents were validated when set; should one
/// not parse, SNS's defaults apply.
fn delivery_policy(topics: &Topics, sub: &Subscription) -> DeliveryPolicy {
    let topic = topics
        .get_topic(&sub.topic)
        .ok()
        .and_then(|t| t.attributes.delivery_policy);
    DeliveryPolicy::effective(sub.attributes.delivery_policy.as_deref(), topic.as_deref())
        .unwrap_or_default()
}

/// The subscription a delivery is for, and whether it has been unsubscribed.
#[derive(Clone, Copy)]
struct Delivering<'a> {
    sub: &'a Subscription,
    unsubscribed: bool,
}

async fn deliver_one(
    topics: &Topics,
    deliverer: &dyn Deliverer,
    delivering: Delivering<'_>,
    policy: &RetryPolicy,
    queue: &str,
    m: crate::ReceivedMessage,
) {
    let sub = delivering.sub;
    let attr = |k: &str| {
        m.message
            .attributes
            .get(k)
            .and_then(|a| a.string_value.clone())
    };
    let kind = attr(ATTR_TYPE).unwrap_or_else(|| "Notification".into());
    let raw = attr(ATTR_RAW).is_some();
    let farewell = kind == UNSUBSCRIBE_CONFIRMATION;
    // An unsubscribed endpoint gets only its UnsubscribeConfirmation; a restored one not that.
    if farewell != delivering.unsubscribed {
        if let Err(e) = topics
            .inner
            .delivery
            .delete_messages(queue, vec![m.receipt_handle])
            .await
        {
            tracing::warn!(subscription = %sub.id, error = %e, "discarding a delivery");
        }
        return;
    }
    let headers = headers(
        &kind,
        &topics.topic_arn(&sub.topic),
        &topics.subscription_arn(&sub.topic, &sub.id),
        attr(ATTR_MESSAGE_ID),
        raw,
    );
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
        if farewell && topics.finish_unsubscribe(sub) {
            return;
        }
        if let Err(e) = broker.delete_messages(queue, vec![m.receipt_handle]).await {
            tracing::warn!(subscription = %sub.id, error = %e, "deleting a delivered message");
        }
        return;
    }
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
    if farewell && topics.finish_unsubscribe(sub) {
        tracing::info!(subscription = %sub.id, "UnsubscribeConfirmation not accepted after the last attempt; dropped");
        return;
    }
    if let Err(e) = broker.delete_messages(queue, vec![m.receipt_handle]).await {
        tracing::warn!(subscription = %sub.id, error = %e, "deleting an exhausted delivery");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub_policy(json: &str) -> Result<RetryPolicy, String> {
        DeliveryPolicy::from_subscription_policy(json).map(|p| p.retry)
    }

    fn schedule(p: &RetryPolicy) -> Vec<u32> {
        (1..=p.num_retries)
            .map(|r| p.base_delay_seconds(r))
            .collect()
    }

    #[test]
    fn policies() {
        let p = sub_policy(r#"{"healthyRetryPolicy":{"numRetries":5,"minDelayTarget":1,"maxDelayTarget":16,"backoffFunction":"exponential"}}"#).unwrap();
        assert_eq!(p.max_attempts(), 6);
        assert_eq!(schedule(&p), [1, 2, 4, 8, 16]);
        for r in 1..=5 {
            let d = p.delay_seconds(r);
            let base = (1u32 << (r - 1)).min(16) as f64;
            assert!(
                d as f64 >= (base * 0.75).floor().max(1.0)
                    && d as f64 <= (base * 1.25).ceil().min(16.0),
                "retry {r}: {d}"
            );
        }
        assert!(sub_policy(r#"{"healthyRetryPolicy":{"minDelayTarget":0}}"#).is_err());
        assert!(sub_policy(r#"{"healthyRetryPolicy":{"numRetries":101}}"#).is_err());
        assert!(sub_policy("nope").is_err());
        assert_eq!(
            DeliveryPolicy::from_topic_policy(r#"{"http":{"defaultHealthyRetryPolicy":{"numRetries":1,"minDelayTarget":2,"maxDelayTarget":2}}}"#)
                .unwrap()
                .retry
                .max_attempts(),
            2
        );
    }

    #[test]
    fn default_schedule_is_three_retries_twenty_seconds_apart() {
        assert_eq!(schedule(&RetryPolicy::default()), [20, 20, 20]);
        assert_eq!(sub_policy("{}").unwrap(), RetryPolicy::default());
    }

    #[test]
    fn four_phases_in_order() {
        // 2 immediate, 2 at min, 5 backing off linearly from 10 to 50, 3 at max.
        let p = sub_policy(r#"{"healthyRetryPolicy":{"numRetries":12,"numNoDelayRetries":2,"numMinDelayRetries":2,"numMaxDelayRetries":3,"minDelayTarget":10,"maxDelayTarget":50,"backoffFunction":"linear"}}"#).unwrap();
        assert_eq!(schedule(&p), [0, 0, 10, 10, 10, 20, 30, 40, 50, 50, 50, 50]);
        // The same with exponential backoff: 10·5^(i/4).
        let p = RetryPolicy {
            exponential: true,
            ..p
        };
        assert_eq!(schedule(&p), [0, 0, 10, 10, 10, 15, 22, 33, 50, 50, 50, 50]);
        // arithmetic is linear, geometric is exponential.
        let q = sub_policy(r#"{"healthyRetryPolicy":{"numRetries":3,"minDelayTarget":1,"maxDelayTarget":9,"backoffFunction":"arithmetic"}}"#).unwrap();
        assert_eq!(schedule(&q), [1, 5, 9]);
        let q = sub_policy(r#"{"healthyRetryPolicy":{"numRetries":3,"minDelayTarget":1,"maxDelayTarget":9,"backoffFunction":"geometric"}}"#).unwrap();
        assert_eq!(schedule(&q), [1, 3, 9]);
    }

    #[test]
    fn phases_without_a_backoff_phase() {
        // Every retry is in a fixed phase: no backoff phase at all.
        let p = sub_policy(r#"{"healthyRetryPolicy":{"numRetries":4,"numNoDelayRetries":1,"numMinDelayRetries":1,"numMaxDelayRetries":2,"minDelayTarget":3,"maxDelayTarget":7}}"#).unwrap();
        assert_eq!(schedule(&p), [0, 3, 7, 7]);
        // Only immediate retries.
        let p =
            sub_policy(r#"{"healthyRetryPolicy":{"numRetries":3,"numNoDelayRetries":3}}"#).unwrap();
        assert_eq!(schedule(&p), [0, 0, 0]);
        for r in 1..=3 {
            assert_eq!(p.delay_seconds(r), 0, "an immediate retry gets no jitter");
        }
        // A one-retry backoff phase is at the minimum delay.
        let p = sub_policy(r#"{"healthyRetryPolicy":{"numRetries":2,"numMaxDelayRetries":1,"minDelayTarget":4,"maxDelayTarget":8}}"#).unwrap();
        assert_eq!(schedule(&p), [4, 8]);
    }

    #[test]
    fn jitter_stays_within_the_bounds() {
        let p = sub_policy(r#"{"healthyRetryPolicy":{"numRetries":6,"numNoDelayRetries":1,"minDelayTarget":8,"maxDelayTarget":40}}"#).unwrap();
        for _ in 0..200 {
            for r in 2..=6 {
                let base = p.base_delay_seconds(r) as f64;
                let d = p.delay_seconds(r) as f64;
                assert!(d >= (base * 0.75).floor().max(8.0) && d <= (base * 1.25).ceil().min(40.0));
            }
        }
    }

    #[test]
    fn invalid_policies_are_refused_with_the_reason() {
        let refused = |policy: &str, reason: &str| {
            let e = sub_policy(policy).unwrap_err();
            assert!(e.contains(reason), "{policy}: {e}");
        };
        refused(
            r#"{"healthyRetryPolicy":{"numRetries":3,"numNoDelayRetries":2,"numMinDelayRetries":2}}"#,
            "must be at most numRetries (3)",
        );
        refused(
            r#"{"healthyRetryPolicy":{"numRetries":5,"numNoDelayRetries":1,"numMinDelayRetries":1,"numMaxDelayRetries":4}}"#,
            "(6) must be at most numRetries (5)",
        );
        refused(
            r#"{"healthyRetryPolicy":{"numNoDelayRetries":-1}}"#,
            "numNoDelayRetries must be a non-negative integer",
        );
        refused(
            r#"{"healthyRetryPolicy":{"numMinDelayRetries":1.5}}"#,
            "numMinDelayRetries must be a non-negative integer",
        );
        refused(
            r#"{"healthyRetryPolicy":{"numMaxDelayRetries":"2"}}"#,
            "numMaxDelayRetries must be a non-negative integer",
        );
        refused(
            r#"{"healthyRetryPolicy":{"minDelayTarget":30,"maxDelayTarget":20}}"#,
            "minDelayTarget <= maxDelayTarget",
        );
        refused(
            r#"{"healthyRetryPolicy":{"maxDelayTarget":3601}}"#,
            "<= 3600",
        );
        refused(
            r#"{"healthyRetryPolicy":{"backoffFunction":"cubic"}}"#,
            "backoffFunction must be one of",
        );
        refused(
            r#"{"healthyRetryPolicy":[]}"#,
            "healthyRetryPolicy must be a JSON object",
        );
        refused(
            r#"{"throttlePolicy":{"maxReceivesPerSecond":0}}"#,
            "maxReceivesPerSecond must be at least 1",
        );
        refused(
            r#"{"throttlePolicy":{"maxReceivesPerSecond":-3}}"#,
            "maxReceivesPerSecond must be a non-negative integer",
        );
        refused("[]", "must be a JSON object");
        // The boundaries themselves are accepted.
        sub_policy(r#"{"healthyRetryPolicy":{"numRetries":100,"numNoDelayRetries":100,"minDelayTarget":3600,"maxDelayTarget":3600}}"#).unwrap();
        sub_policy(
            r#"{"healthyRetryPolicy":{"numRetries":0,"minDelayTarget":1,"maxDelayTarget":1}}"#,
        )
        .unwrap();
    }

    #[test]
    fn subscription_sections_override_the_topics() {
        let topic = r#"{"http":{"defaultHealthyRetryPolicy":{"numRetries":7,"minDelayTarget":2,"maxDelayTarget":2},"defaultThrottlePolicy":{"maxReceivesPerSecond":5}}}"#;
        let p = DeliveryPolicy::effective(None, Some(topic)).unwrap();
        assert_eq!(
            (p.retry.num_retries, p.max_receives_per_second),
            (7, Some(5))
        );
        // The subscription sets only a throttle: the topic's retry policy stays.
        let sub = r#"{"throttlePolicy":{"maxReceivesPerSecond":2}}"#;
        let p = DeliveryPolicy::effective(Some(sub), Some(topic)).unwrap();
        assert_eq!(
            (p.retry.num_retries, p.max_receives_per_second),
            (7, Some(2))
        );
        // It sets only a retry policy: the topic's throttle stays.
        let sub = r#"{"healthyRetryPolicy":{"numRetries":1}}"#;
        let p = DeliveryPolicy::effective(Some(sub), Some(topic)).unwrap();
        assert_eq!(
            (p.retry.num_retries, p.max_receives_per_second),
            (1, Some(5))
        );
        // disableSubscriptionOverrides: the topic's policy wins.
        let locked = r#"{"http":{"defaultHealthyRetryPolicy":{"numRetries":7,"minDelayTarget":2,"maxDelayTarget":2},"disableSubscriptionOverrides":true}}"#;
        let p = DeliveryPolicy::effective(Some(sub), Some(locked)).unwrap();
        assert_eq!((p.retry.num_retries, p.max_receives_per_second), (7, None));
        // Nothing set: SNS's defaults, unthrottled.
        assert_eq!(
            DeliveryPolicy::effective(None, None).unwrap(),
            DeliveryPolicy::default()
        );
    }

    #[test]
    fn throttle_starts_at_most_the_limit_per_second() {
        let t0 = Instant::now();
        let mut t = Throttle::new(3);
        // A burst of 7 at t0: 3 now, 3 a second later, 1 two seconds later.
        let starts: Vec<Duration> = (0..7).map(|_| t.reserve(t0) - t0).collect();
        let s = Duration::from_secs;
        assert_eq!(starts, [s(0), s(0), s(0), s(1), s(1), s(1), s(2)]);
        // Later arrivals after a quiet spell start at once.
        assert_eq!(t.reserve(t0 + s(10)) - t0, s(10));
        // Any one-second window of a long run holds at most 3 starts.
        let mut t = Throttle::new(3);
        let mut all = Vec::new();
        for i in 0..50u64 {
            all.push(t.reserve(t0 + Duration::from_millis(i * 70)));
        }
        for (i, a) in all.iter().enumerate() {
            let in_window = all[i..].iter().take_while(|b| **b < *a + s(1)).count();
            assert!(
                in_window <= 3,
                "{in_window} starts in the second from start {i}"
            );
        }
        // Starts never go backwards.
        assert!(all.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn headers_by_message_type() {
        let h = headers(
            "SubscriptionConfirmation",
            "arn:t",
            "arn:t:s",
            Some("m".into()),
            false,
        );
        let has = |h: &[(String, String)], k: &str| h.iter().any(|(n, _)| n == k);
        assert!(!has(&h, "x-amz-sns-subscription-arn"));
        assert!(has(&h, "x-amz-sns-message-id"));
        let h = headers("Notification", "arn:t", "arn:t:s", None, true);
        assert!(has(&h, "x-amz-sns-subscription-arn") && has(&h, "x-amz-sns-rawdelivery"));
        let h = headers("UnsubscribeConfirmation", "arn:t", "arn:t:s", None, false);
        assert!(has(&h, "x-amz-sns-subscription-arn"));
    }
}
