//! Topics: publish/subscribe routers that fan a message out to queues, streams and HTTP
//! endpoints.
//!
//! # Layout
//!
//! ```text
//! <data_dir>/topics/catalog.json   topics, attributes, tags, subscriptions (atomic rewrite)
//! <data_dir>/topics/intents/       fan-out intent log (ferry-log)
//! <data_dir>/topics/delivery/      a private Broker: one queue per HTTP(S) subscription
//! <data_dir>/topics/signing/       the SNS message signing key and its certificate
//! ```
//!
//! # Publish and its guarantee
//!
//! `publish` evaluates every confirmed subscription's filter policy, then appends the message to
//! every matching target — the subscribed queue (an SQS subscription), the subscribed stream (a
//! `stream` subscription, a Ferry extension: one record per message, see `append_to_stream`) or
//! the subscription's private delivery queue (HTTP/HTTPS) — concurrently, so appends to different
//! logs share each log's group commit. It returns only once every append is durable.
//!
//! With two or more targets the fan-out is made all-or-nothing *eventually* by an intent record:
//!
//! 1. the message and its resolved target list are appended to the intent log and made durable;
//! 2. the appends to every target run concurrently;
//! 3. a `Done` record (not waited for) closes the intent.
//!
//! A publish whose call returned success is durable in every matching target. A publish whose
//! call failed *before* its intent was durable reached no target. A call that failed *after*
//! (a storage failure in one target) returns an error, but its intent stays open and is completed
//! by the retry task and at the next open: it reaches every remaining target. So after any crash
//! a publish reaches all matching targets or none — never some forever. Replay may deliver a
//! second copy to a target that had the message before the crash (at-least-once, as SNS);
//! FIFO queue targets drop such copies through their deduplication id.
//!
//! A target that refuses the message for good (its queue or stream was deleted, the queue is full,
//! or the message is too large for it) counts as a failed delivery and goes to the subscription's dead-letter
//! queue when it has one (SNS's RedrivePolicy); this does not fail the publish.
//!
//! FIFO topics serialise their fan-outs so that every FIFO queue sees each message group in the
//! same order as the publishes were acknowledged.

pub mod delivery;
pub mod envelope;
pub mod filter;
pub mod signing;

use crate::stream::{StreamError, Streams};
use crate::types::{MessageAttributeValue, QueueAttributes, SendMessage};
use crate::{Broker, BrokerConfig, BrokerError, Clock};
use bytes::Bytes;
use filter::{FilterPolicy, FilterPolicyScope};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use signing::{SignatureVersion, Signer, SigningKey};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Largest published message (body plus attributes), as SNS: 256 KiB.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Most message attributes per publish (SNS: 10).
pub const MAX_MESSAGE_ATTRIBUTES: usize = 10;
/// Most topics.
pub const MAX_TOPICS: usize = 100_000;
/// Most subscriptions per topic.
pub const MAX_SUBSCRIPTIONS_PER_TOPIC: usize = 10_000;
/// Most entries in one PublishBatch.
pub const MAX_BATCH: usize = 10;
/// Longest subject.
pub const MAX_SUBJECT_CHARS: usize = 100;
/// FIFO topic deduplication window.
pub const DEDUP_WINDOW_MS: u64 = 5 * 60 * 1000;
/// Most tags per topic (SNS: 50).
pub const MAX_TAGS: usize = 50;
const CATALOG_FILE: &str = "catalog.json";
const CATALOG_VERSION: u32 = 1;
/// How long an unsubscribed HTTP(S) endpoint can restore its subscription with the token of
/// its `UnsubscribeConfirmation` (SNS: confirmation tokens are valid for three days).
pub const RESTORE_WINDOW_MS: u64 = 3 * 24 * 3600 * 1000;
const TOPICS_DIR: &str = "topics";
/// Intent log segment size: small, because whole segments are dropped once closed.
const INTENT_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// How often open intents are retried and the intent log truncated.
const INTENT_RETRY_PERIOD: Duration = Duration::from_secs(1);

/// Why a topic call failed. Doors map each variant to their protocol's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("Topic does not exist")]
    TopicNotFound(String),
    #[error("Subscription does not exist")]
    SubscriptionNotFound(String),
    #[error("Invalid parameter: {parameter}: {reason}")]
    InvalidParameter { parameter: String, reason: String },
    #[error("Invalid parameter: FilterPolicy: {0}")]
    InvalidFilterPolicy(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("topic limit exceeded: {0}")]
    LimitExceeded(String),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

fn param(parameter: &str, reason: impl Into<String>) -> TopicError {
    TopicError::InvalidParameter {
        parameter: parameter.into(),
        reason: reason.into(),
    }
}

/// How the topic router is opened.
#[derive(Clone)]
pub struct TopicsConfig {
    /// The server's data directory; topics live under `<data_dir>/topics`.
    pub data_dir: PathBuf,
    /// Region and account used in ARNs (`arn:aws:sns:<region>:<account>:<topic>`).
    pub region: String,
    pub account_id: String,
    pub durability: ferry_log::Durability,
    pub clock: Arc<dyn Clock>,
}

impl TopicsConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> TopicsConfig {
        TopicsConfig {
            data_dir: data_dir.into(),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            durability: ferry_log::Durability::Always,
            clock: Arc::new(crate::SystemClock),
        }
    }
}

/// A topic's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TopicAttributes {
    /// Name ends in `.fifo`; fixed at creation.
    pub fifo: bool,
    pub content_based_deduplication: bool,
    pub display_name: String,
    /// SNS delivery policy JSON (`{"http": {"defaultHealthyRetryPolicy": {...}}}`).
    pub delivery_policy: Option<String>,
    /// Access policy JSON, stored and reported (not enforced).
    pub policy: Option<String>,
    /// Attributes stored and reported without interpretation (KmsMasterKeyId, TracingConfig, …),
    /// and `SignatureVersion` (validated; read through [`TopicAttributes::signature_version`]).
    pub opaque: BTreeMap<String, String>,
}

impl TopicAttributes {
    /// The topic attribute name of the signature version.
    pub const SIGNATURE_VERSION: &'static str = "SignatureVersion";

    /// How this topic's envelopes are signed (`SignatureVersion`, default 1).
    pub fn signature_version(&self) -> SignatureVersion {
        self.opaque
            .get(Self::SIGNATURE_VERSION)
            .and_then(|v| SignatureVersion::parse(v).ok())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Sqs,
    Http,
    Https,
    /// A Ferry stream (an extension to SNS): the endpoint is the stream's name.
    Stream,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Sqs => "sqs",
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Stream => "stream",
        }
    }

    /// HTTP(S): delivered by a delivery loop through a private queue, after a confirmation
    /// handshake. The other protocols are appended to during the publish and confirmed at once.
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Https)
    }
}

/// Record header carrying the SNS message id on a stream subscription's records.
pub const STREAM_HEADER_MESSAGE_ID: &str = "x-amz-sns-message-id";
/// Record header carrying the topic ARN on a stream subscription's records.
pub const STREAM_HEADER_TOPIC_ARN: &str = "x-amz-sns-topic-arn";

/// A subscription's settable attributes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubscriptionAttributes {
    pub raw_message_delivery: bool,
    pub filter_policy: Option<String>,
    pub filter_policy_scope: FilterPolicyScope,
    /// Dead-letter queue (a queue name) for messages that cannot be delivered.
    pub dead_letter_queue: Option<String>,
    /// The RedrivePolicy JSON as given.
    pub redrive_policy: Option<String>,
    /// HTTP retry policy JSON (`{"healthyRetryPolicy": {...}}`).
    pub delivery_policy: Option<String>,
    /// Stored and reported without interpretation (SubscriptionRoleArn, …).
    pub opaque: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// UUID; the ARN is `<topic arn>:<id>`.
    pub id: String,
    pub topic: String,
    pub protocol: Protocol,
    /// As given: an SQS queue ARN, a URL, or a stream's name.
    pub endpoint: String,
    /// SQS subscriptions: the target queue's name.
    pub queue: Option<String>,
    pub attributes: SubscriptionAttributes,
    pub confirmed: bool,
    /// HTTP(S): the confirmation token sent to the endpoint.
    pub token: Option<String>,
    pub created_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct TopicEntry {
    attributes: TopicAttributes,
    tags: BTreeMap<String, String>,
    created_ms: u64,
    subscriptions: BTreeMap<String, Subscription>,
    /// HTTP(S) subscriptions unsubscribed in the last [`RESTORE_WINDOW_MS`], by id: their
    /// `UnsubscribeConfirmation` is still being delivered, or their token can restore them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    unsubscribed: BTreeMap<String, Unsubscribed>,
}

/// An unsubscribed HTTP(S) subscription, kept so that its endpoint can restore it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Unsubscribed {
    subscription: Subscription,
    at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct TopicCatalog {
    version: u32,
    topics: BTreeMap<String, TopicEntry>,
}

impl Default for TopicCatalog {
    fn default() -> Self {
        TopicCatalog {
            version: CATALOG_VERSION,
            topics: BTreeMap::new(),
        }
    }
}

/// A topic as reported by `get_topic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub arn: String,
    pub attributes: TopicAttributes,
    pub tags: BTreeMap<String, String>,
    pub created_timestamp_ms: u64,
    pub subscriptions_confirmed: u64,
    pub subscriptions_pending: u64,
    /// Unsubscribed HTTP(S) subscriptions still restorable (see [`RESTORE_WINDOW_MS`]).
    pub subscriptions_deleted: u64,
}

/// What to publish.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRequest {
    pub message: String,
    pub subject: Option<String>,
    #[serde(with = "attrs_serde")]
    pub attributes: BTreeMap<String, MessageAttributeValue>,
    /// `MessageStructure=json`: `message` is a JSON object with a `default` string and optional
    /// per-protocol strings (`sqs`, `http`, `https`).
    pub message_structure_json: bool,
    pub group_id: Option<String>,
    pub deduplication_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOutcome {
    pub message_id: String,
    /// FIFO topics: a 20-digit sequence number.
    pub sequence_number: Option<String>,
}

/// Lifetime counters of one subscription.
#[derive(Debug, Default)]
pub struct SubscriptionCounters {
    pub delivered: AtomicU64,
    pub filtered_out: AtomicU64,
    pub failed: AtomicU64,
    pub dead_lettered: AtomicU64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SubscriptionStats {
    pub id: String,
    pub protocol: &'static str,
    pub delivered: u64,
    pub filtered_out: u64,
    pub failed: u64,
    pub dead_lettered: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TopicStats {
    pub name: String,
    pub published: u64,
    pub subscriptions: Vec<SubscriptionStats>,
}

/// A subscription ready for publishing: its compiled filter and counters.
struct LiveSubscription {
    sub: Subscription,
    filter: Option<FilterPolicy>,
    counters: Arc<SubscriptionCounters>,
}

struct LiveTopic {
    name: String,
    attributes: TopicAttributes,
    subscriptions: Vec<Arc<LiveSubscription>>,
    published: Arc<AtomicU64>,
    /// FIFO topics: held across a fan-out so every queue sees groups in the same order.
    order: Arc<tokio::sync::Mutex<()>>,
}

/// The topic router. Cheap to clone.
#[derive(Clone)]
pub struct Topics {
    inner: Arc<Inner>,
}

struct Inner {
    config: TopicsConfig,
    dir: PathBuf,
    broker: Broker,
    /// The streams that `stream` subscriptions append to; set by [`Topics::set_streams`].
    streams: RwLock<Option<Streams>>,
    /// Private broker holding one delivery queue per HTTP(S) subscription.
    delivery: Broker,
    catalog: Mutex<TopicCatalog>,
    live: RwLock<Arc<BTreeMap<String, Arc<LiveTopic>>>>,
    counters: Mutex<HashMap<String, Arc<SubscriptionCounters>>>,
    published: Mutex<HashMap<String, Arc<AtomicU64>>>,
    orders: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    intents: ferry_log::Log,
    /// Open intents: log offset → the intent (with the targets still to do).
    open_intents: Mutex<BTreeMap<u64, Intent>>,
    /// FIFO deduplication: (topic, dedup id) → (message id, sequence, expiry).
    dedup: Mutex<HashMap<DedupKey, DedupEntry>>,
    fifo_seq: AtomicU64,
    /// Base URL of the AWS door, for SubscribeURL, UnsubscribeURL and SigningCertURL.
    public_url: RwLock<String>,
    /// Loaded (or made) by `start`, or by the first envelope signed before it.
    signing_key: Mutex<Option<Arc<SigningKey>>>,
    stop: AtomicBool,
}

/// (topic, deduplication id)
type DedupKey = (String, String);
/// (message id, sequence number, expiry in ms, offset of the intent-log record that keeps it
/// across restarts)
type DedupEntry = (String, String, u64, u64);

/// One publish as recorded in the intent log.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Published {
    message_id: String,
    topic: String,
    timestamp_ms: u64,
    sequence_number: Option<String>,
    request: PublishRequest,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum IntentRecord {
    /// A fan-out about to start: the message and the subscriptions it goes to.
    Intent {
        published: Published,
        targets: Vec<String>,
    },
    /// The targets of the intent at `offset` that are done; `complete` closes it.
    Done {
        offset: u64,
        done: Vec<String>,
        complete: bool,
    },
    /// A FIFO publish with fewer than two targets (so no intent), kept for its deduplication
    /// id and answer during the deduplication window.
    Deduplicated { published: Published },
}

#[derive(Debug, Clone)]
struct Intent {
    published: Published,
    targets: Vec<String>,
    /// Its publish is still fanning out: the retry loop leaves it alone (retrying it then would
    /// deliver twice). Cleared when that fan-out fails.
    in_flight: bool,
}

/// What one target receives: the raw message with its attributes, or a signed envelope.
struct Rendered {
    body: Bytes,
    attributes: BTreeMap<String, MessageAttributeValue>,
}

/// The messages of a publish batch bound for one subscription: (message, target) positions,
/// in batch order.
struct SubscriptionShare {
    subscription: Arc<LiveSubscription>,
    items: Vec<(usize, usize)>,
}

/// Which broker a notification is sent through: the queues', or the private one holding HTTP
/// subscriptions' delivery queues.
#[derive(Clone, Copy)]
enum DeliveryBroker {
    Queues,
    HttpDelivery,
}

/// How a single target append ended.
enum TargetResult {
    Delivered,
    /// Refused for good (counted, dead-lettered when possible): not retried.
    Refused,
    /// Storage failure or shutdown: retried from the intent.
    Retry(BrokerError),
}

mod attrs_serde {
    use super::MessageAttributeValue;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize)]
    struct A {
        t: String,
        s: Option<String>,
        b: Option<String>,
    }

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<String, MessageAttributeValue>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let out: BTreeMap<&String, A> = m
            .iter()
            .map(|(k, v)| {
                (
                    k,
                    A {
                        t: v.data_type.clone(),
                        s: v.string_value.clone(),
                        b: v.binary_value
                            .as_ref()
                            .map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
                    },
                )
            })
            .collect();
        out.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, MessageAttributeValue>, D::Error> {
        let m: BTreeMap<String, A> = BTreeMap::deserialize(d)?;
        Ok(m.into_iter()
            .map(|(k, a)| {
                (
                    k,
                    MessageAttributeValue {
                        data_type: a.t,
                        string_value: a.s,
                        binary_value: a
                            .b
                            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                            .map(bytes::Bytes::from),
                    },
                )
            })
            .collect())
    }
}

/// Polls every future in the caller's task until all are ready; outputs in input order.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// The outcome of a one-message `Broker::send` (an empty answer means a deduplicated send).
fn one_sent(mut outcomes: Vec<Result<crate::SendOutcome, BrokerError>>) -> Result<(), BrokerError> {
    outcomes.pop().map_or(Ok(()), |o| o.map(|_| ()))
}

/// Name of the private delivery queue of an HTTP(S) subscription.
pub fn delivery_queue_name(subscription_id: &str) -> String {
    format!("sns_delivery_{subscription_id}")
}

/// Topic names: 1..=256 characters of A-Z a-z 0-9 - _, FIFO topics ending in `.fifo`.
pub fn validate_topic_name(name: &str, fifo: bool) -> Result<(), TopicError> {
    let bad = |r: &str| param("Name", r);
    if name.is_empty() || name.len() > 256 {
        return Err(bad("Topic Name must be 1 to 256 characters"));
    }
    let stem = name.strip_suffix(".fifo");
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    match (fifo, stem) {
        (true, Some(s)) if ok(s) => Ok(()),
        (true, _) => Err(bad("Fifo Topic names must end with .fifo and must be made up of only uppercase and lowercase ASCII letters, numbers, underscores, and hyphens")),
        (false, Some(_)) => Err(bad("Topic names ending in .fifo must have the FifoTopic attribute set to true")),
        (false, None) if ok(name) => Ok(()),
        (false, None) => Err(bad("Topic Name may contain only uppercase and lowercase ASCII letters, numbers, underscores, and hyphens")),
    }
}

fn validate_attributes(
    attrs: &BTreeMap<String, MessageAttributeValue>,
) -> Result<usize, TopicError> {
    if attrs.len() > MAX_MESSAGE_ATTRIBUTES {
        return Err(param("MessageAttributes", format!("Number of message attributes [{}] exceeds the allowed maximum [{MAX_MESSAGE_ATTRIBUTES}].", attrs.len())));
    }
    let mut size = 0;
    for (k, v) in attrs {
        if k.is_empty()
            || k.len() > 256
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            || k.starts_with('.')
            || k.ends_with('.')
            || k.contains("..")
            || k.to_ascii_lowercase().starts_with("aws.")
        {
            return Err(param(
                "MessageAttributes",
                format!("Invalid attribute name: {k}"),
            ));
        }
        let base = v.data_type.split('.').next().unwrap_or("");
        match base {
            "String" | "Number" => {
                let Some(s) = v.string_value.as_deref() else {
                    return Err(param("MessageAttributes", format!("The message attribute '{k}' must contain non-empty message attribute value for message attribute type '{}'.", v.data_type)));
                };
                if base == "Number" && !s.trim().parse::<f64>().is_ok_and(f64::is_finite) {
                    return Err(param("MessageAttributes", format!("Could not cast message attribute '{k}' value to number.")));
                }
                if v.data_type == "String.Array" && !serde_json::from_str::<serde_json::Value>(s).is_ok_and(|j| j.is_array()) {
                    return Err(param("MessageAttributes", format!("The message attribute '{k}' with type 'String.Array' has an invalid value '{s}'.")));
                }
                size += k.len() + v.data_type.len() + s.len();
            }
            "Binary" => {
                let Some(b) = &v.binary_value else {
                    return Err(param("MessageAttributes", format!("The message attribute '{k}' must contain non-empty message attribute value for message attribute type 'Binary'.")));
                };
                size += k.len() + v.data_type.len() + b.len();
            }
            _ => return Err(param("MessageAttributes", format!("The message attribute '{k}' has an invalid message attribute type, the set of supported type prefixes is Binary, Number, and String."))),
        }
    }
    Ok(size)
}

/// Parses an SQS queue ARN (`arn:aws:sqs:<region>:<account>:<name>`) into the queue name.
pub fn queue_name_from_arn(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() == 6 && parts[0] == "arn" && parts[2] == "sqs" && !parts[5].is_empty() {
        Some(parts[5])
    } else {
        None
    }
}

fn parse_redrive(json: &str) -> Result<String, TopicError> {
    let bad = |r: &str| param("RedrivePolicy", r);
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|_| bad("Invalid RedrivePolicy: not valid JSON"))?;
    let arn = v
        .get("deadLetterTargetArn")
        .and_then(|a| a.as_str())
        .ok_or_else(|| bad("deadLetterTargetArn is missing"))?;
    queue_name_from_arn(arn)
        .map(str::to_string)
        .ok_or_else(|| bad("Invalid deadLetterTargetArn: must be an SQS queue ARN"))
}

impl Topics {
    /// Opens the topic catalog and intent log under `<data_dir>/topics` and the private delivery
    /// broker. `broker` is the queue broker that SQS subscriptions deliver into. Blocking.
    pub fn open(config: TopicsConfig, broker: Broker) -> Result<Topics, TopicError> {
        let dir = config.data_dir.join(TOPICS_DIR);
        std::fs::create_dir_all(&dir)
            .map_err(|e| BrokerError::Storage(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join(CATALOG_FILE);
        let catalog: TopicCatalog = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                BrokerError::Storage(format!("topic catalog {} is corrupt: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TopicCatalog::default(),
            Err(e) => {
                return Err(BrokerError::Storage(format!("reading {}: {e}", path.display())).into())
            }
        };
        let delivery = Broker::open(BrokerConfig {
            default_durability: config.durability,
            segment_bytes: 16 * 1024 * 1024,
            clock: config.clock.clone(),
            ..BrokerConfig::new(dir.join("delivery"))
        })?;
        let intents = ferry_log::Log::open(
            dir.join("intents"),
            ferry_log::LogConfig {
                segment_bytes: INTENT_SEGMENT_BYTES,
                durability: config.durability,
                ..Default::default()
            },
        )
        .map_err(|e| BrokerError::Storage(format!("opening the topic intent log: {e}")))?;
        let now_ms = config.clock.now_ms();
        let (open_intents, dedup) = read_open_intents(&intents, now_ms)?;
        // Sequence numbers keep growing across restarts: past every one still remembered.
        let now_us = dedup
            .values()
            .filter_map(|(_, seq, _, _)| seq.parse::<u64>().ok())
            .map(|seq| seq + 1)
            .fold(now_ms * 1000, u64::max);
        let inner = Arc::new(Inner {
            config,
            dir,
            broker,
            streams: RwLock::new(None),
            delivery,
            catalog: Mutex::new(catalog),
            live: RwLock::new(Arc::new(BTreeMap::new())),
            counters: Mutex::new(HashMap::new()),
            published: Mutex::new(HashMap::new()),
            orders: Mutex::new(HashMap::new()),
            intents,
            open_intents: Mutex::new(open_intents),
            dedup: Mutex::new(dedup),
            fifo_seq: AtomicU64::new(now_us),
            public_url: RwLock::new("http://127.0.0.1:9324".into()),
            signing_key: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let topics = Topics { inner };
        {
            let catalog = topics.inner.catalog.lock();
            topics.rebuild(&catalog);
        }
        Ok(topics)
    }

    /// Gives the router the streams that `stream` subscriptions deliver into. Call before
    /// [`Topics::start`]: until then, a fan-out to a stream fails as a storage failure (its intent
    /// stays open and is retried) and `stream` subscriptions are refused.
    pub fn set_streams(&self, streams: Streams) {
        *self.inner.streams.write() = Some(streams);
    }

    fn streams(&self) -> Option<Streams> {
        self.inner.streams.read().clone()
    }

    /// Sets the base URL of the AWS door (for SubscribeURL and UnsubscribeURL).
    pub fn set_public_url(&self, url: &str) {
        *self.inner.public_url.write() = url.trim_end_matches('/').to_string();
    }

    pub fn public_url(&self) -> String {
        self.inner.public_url.read().clone()
    }

    /// The message signing key, loaded from `<data_dir>/topics/signing` or made there on first
    /// use. Blocking the first time.
    pub fn signing_key(&self) -> Result<Arc<SigningKey>, TopicError> {
        let mut slot = self.inner.signing_key.lock();
        if let Some(k) = &*slot {
            return Ok(k.clone());
        }
        let key = Arc::new(SigningKey::load_or_create(
            &self.inner.dir.join(signing::SIGNING_DIR),
        )?);
        *slot = Some(key.clone());
        Ok(key)
    }

    /// `SigningCertURL`: where the door serves the signing certificate.
    pub fn signing_cert_url(&self) -> Result<String, TopicError> {
        Ok(format!(
            "{}/{}",
            self.public_url(),
            self.signing_key()?.cert_file_name()
        ))
    }

    /// A signer for envelopes of a topic with `attributes`. Loads (or makes) the key on a
    /// blocking thread if `start` has not.
    async fn signer(&self, attributes: &TopicAttributes) -> Result<Signer, TopicError> {
        let loaded = self.inner.signing_key.lock().clone();
        let key = match loaded {
            Some(k) => k,
            None => {
                let this = self.clone();
                tokio::task::spawn_blocking(move || this.signing_key())
                    .await
                    .map_err(|e| {
                        BrokerError::Storage(format!("loading the SNS signing key: {e}"))
                    })??
            }
        };
        let cert_url = format!("{}/{}", self.public_url(), key.cert_file_name());
        Ok(Signer::new(key, attributes.signature_version(), cert_url))
    }

    pub fn region(&self) -> &str {
        &self.inner.config.region
    }

    pub fn account_id(&self) -> &str {
        &self.inner.config.account_id
    }

    pub fn topic_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:sns:{}:{}:{name}",
            self.inner.config.region, self.inner.config.account_id
        )
    }

    pub fn subscription_arn(&self, topic: &str, id: &str) -> String {
        format!("{}:{id}", self.topic_arn(topic))
    }

    pub fn queue_arn(&self, queue: &str) -> String {
        format!(
            "arn:aws:sqs:{}:{}:{queue}",
            self.inner.config.region, self.inner.config.account_id
        )
    }

    /// Topic name of a topic ARN (any region/account is accepted).
    pub fn topic_from_arn(arn: &str) -> Option<&str> {
        let parts: Vec<&str> = arn.split(':').collect();
        (parts.len() == 6 && parts[0] == "arn" && parts[2] == "sns" && !parts[5].is_empty())
            .then(|| parts[5])
    }

    /// (topic, subscription id) of a subscription ARN.
    pub fn subscription_from_arn(arn: &str) -> Option<(&str, &str)> {
        let parts: Vec<&str> = arn.split(':').collect();
        (parts.len() == 7 && parts[0] == "arn" && parts[2] == "sns" && !parts[6].is_empty())
            .then(|| (parts[5], parts[6]))
    }

    fn now(&self) -> u64 {
        self.inner.config.clock.now_ms()
    }

    /// The private broker holding the HTTP delivery queues (for inspection and tests).
    pub fn delivery_broker(&self) -> &Broker {
        &self.inner.delivery
    }

    fn save(&self, next: &TopicCatalog) -> Result<(), TopicError> {
        let bytes = serde_json::to_vec_pretty(next)
            .map_err(|e| BrokerError::Storage(format!("encoding the topic catalog: {e}")))?;
        crate::catalog::write_atomic(&self.inner.dir.join(CATALOG_FILE), &bytes)?;
        Ok(())
    }

    /// Rebuilds the publish-side view of the catalog.
    fn rebuild(&self, catalog: &TopicCatalog) {
        let mut counters = self.inner.counters.lock();
        let mut published = self.inner.published.lock();
        let mut orders = self.inner.orders.lock();
        let mut live = BTreeMap::new();
        for (name, entry) in &catalog.topics {
            let subscriptions = entry
                .subscriptions
                .values()
                .map(|s| {
                    let filter = s.attributes.filter_policy.as_deref().and_then(|p| {
                        FilterPolicy::parse(p, s.attributes.filter_policy_scope).ok()
                    });
                    Arc::new(LiveSubscription {
                        sub: s.clone(),
                        filter,
                        counters: counters.entry(s.id.clone()).or_default().clone(),
                    })
                })
                .collect();
            live.insert(
                name.clone(),
                Arc::new(LiveTopic {
                    name: name.clone(),
                    attributes: entry.attributes.clone(),
                    subscriptions,
                    published: published.entry(name.clone()).or_default().clone(),
                    order: orders.entry(name.clone()).or_default().clone(),
                }),
            );
        }
        counters.retain(|id, _| {
            catalog
                .topics
                .values()
                .any(|t| t.subscriptions.contains_key(id))
        });
        published.retain(|n, _| catalog.topics.contains_key(n));
        orders.retain(|n, _| catalog.topics.contains_key(n));
        *self.inner.live.write() = Arc::new(live);
    }

    /// Applies `f` to a copy of the catalog, saves it durably, then installs it.
    fn edit<T>(
        &self,
        f: impl FnOnce(&mut TopicCatalog) -> Result<T, TopicError>,
    ) -> Result<T, TopicError> {
        let mut catalog = self.inner.catalog.lock();
        let mut next = catalog.clone();
        let out = f(&mut next)?;
        if next != *catalog {
            self.save(&next)?;
            *catalog = next;
            self.rebuild(&catalog);
        }
        Ok(out)
    }

    // ------------------------------------------------------------------ topics

    /// Creates a topic; idempotent when the attributes are equal.
    pub fn create_topic(
        &self,
        name: &str,
        attributes: TopicAttributes,
        tags: BTreeMap<String, String>,
    ) -> Result<TopicInfo, TopicError> {
        validate_topic_name(name, attributes.fifo)?;
        validate_topic_attributes(&attributes)?;
        validate_tags(&tags)?;
        let now = self.now();
        self.edit(|c| {
            if let Some(e) = c.topics.get(name) {
                let plain = TopicAttributes {
                    fifo: e.attributes.fifo,
                    ..Default::default()
                };
                if e.attributes != attributes && attributes != plain {
                    return Err(param(
                        "Attributes",
                        "Topic already exists with different attributes",
                    ));
                }
                if !tags.is_empty() && e.tags != tags {
                    return Err(param("Tags", "Topic already exists with different tags"));
                }
                return Ok(());
            }
            if c.topics.len() >= MAX_TOPICS {
                return Err(TopicError::LimitExceeded(format!(
                    "at most {MAX_TOPICS} topics"
                )));
            }
            c.topics.insert(
                name.to_string(),
                TopicEntry {
                    attributes,
                    tags,
                    created_ms: now,
                    subscriptions: BTreeMap::new(),
                    unsubscribed: BTreeMap::new(),
                },
            );
            Ok(())
        })?;
        self.get_topic(name)
    }

    /// Deletes a topic and all its subscriptions. Deleting a missing topic succeeds (as SNS).
    pub fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        let removed = self.edit(|c| Ok(c.topics.remove(name)))?;
        if let Some(t) = removed {
            let gone = t.unsubscribed.values().map(|u| &u.subscription);
            for s in t.subscriptions.values().chain(gone) {
                self.drop_delivery_queue(s);
            }
        }
        Ok(())
    }

    pub fn list_topics(&self) -> Vec<String> {
        self.inner.catalog.lock().topics.keys().cloned().collect()
    }

    /// The topic's access policy text, if it has one set (None also for an unknown topic).
    pub fn topic_policy(&self, name: &str) -> Option<String> {
        let c = self.inner.catalog.lock();
        c.topics.get(name).and_then(|e| e.attributes.policy.clone())
    }

    pub fn topic_exists(&self, name: &str) -> bool {
        self.inner.catalog.lock().topics.contains_key(name)
    }

    pub fn get_topic(&self, name: &str) -> Result<TopicInfo, TopicError> {
        let c = self.inner.catalog.lock();
        let e = c
            .topics
            .get(name)
            .ok_or_else(|| TopicError::TopicNotFound(name.to_string()))?;
        let confirmed = e.subscriptions.values().filter(|s| s.confirmed).count() as u64;
        Ok(TopicInfo {
            name: name.to_string(),
            arn: self.topic_arn(name),
            attributes: e.attributes.clone(),
            tags: e.tags.clone(),
            created_timestamp_ms: e.created_ms,
            subscriptions_confirmed: confirmed,
            subscriptions_pending: e.subscriptions.len() as u64 - confirmed,
            subscriptions_deleted: e.unsubscribed.len() as u64,
        })
    }

    pub fn update_topic_attributes(
        &self,
        name: &str,
        change: impl FnOnce(&mut TopicAttributes) -> Result<(), TopicError>,
    ) -> Result<TopicInfo, TopicError> {
        self.edit(|c| {
            let e = c
                .topics
                .get_mut(name)
                .ok_or_else(|| TopicError::TopicNotFound(name.to_string()))?;
            let mut a = e.attributes.clone();
            change(&mut a)?;
            if a.fifo != e.attributes.fifo {
                return Err(param("AttributeName", "FifoTopic cannot be changed"));
            }
            validate_topic_attributes(&a)?;
            e.attributes = a;
            Ok(())
        })?;
        self.get_topic(name)
    }

    pub fn tag_topic(&self, name: &str, tags: BTreeMap<String, String>) -> Result<(), TopicError> {
        self.edit(|c| {
            let e = c
                .topics
                .get_mut(name)
                .ok_or_else(|| TopicError::TopicNotFound(name.to_string()))?;
            e.tags.extend(tags);
            validate_tags(&e.tags)
        })
    }

    pub fn untag_topic(&self, name: &str, keys: &[String]) -> Result<(), TopicError> {
        self.edit(|c| {
            let e = c
                .topics
                .get_mut(name)
                .ok_or_else(|| TopicError::TopicNotFound(name.to_string()))?;
            for k in keys {
                e.tags.remove(k);
            }
            Ok(())
        })
    }

    // ------------------------------------------------------------------ subscriptions

    /// Subscribes `endpoint` (an SQS queue ARN for `sqs`, a URL for `http`/`https`, the name of
    /// an existing stream for `stream`). SQS and stream subscriptions are confirmed at once;
    /// HTTP(S) ones get a SubscriptionConfirmation POST and stay pending until
    /// `confirm_subscription`. Subscribing the same endpoint again returns the
    /// existing subscription.
    pub fn subscribe(
        &self,
        topic: &str,
        protocol: &str,
        endpoint: &str,
        attributes: SubscriptionAttributes,
    ) -> Result<Subscription, TopicError> {
        let protocol = match protocol {
            "sqs" => Protocol::Sqs,
            "http" => Protocol::Http,
            "https" => Protocol::Https,
            "stream" => Protocol::Stream,
            "email" | "email-json" | "sms" | "application" | "lambda" | "firehose" => {
                return Err(TopicError::Unsupported(format!(
                    "Protocol {protocol} is not supported by Ferry (supported: sqs, http, https, stream)"
                )))
            }
            other => return Err(param("Protocol", format!("Invalid protocol type: {other}"))),
        };
        let queue = match protocol {
            Protocol::Sqs => Some(
                queue_name_from_arn(endpoint)
                    .ok_or_else(|| {
                        param(
                            "SQS endpoint ARN",
                            format!("Invalid SQS endpoint ARN: {endpoint}"),
                        )
                    })?
                    .to_string(),
            ),
            Protocol::Http if endpoint.starts_with("http://") => None,
            Protocol::Https if endpoint.starts_with("https://") => None,
            Protocol::Stream => {
                let Some(streams) = self.streams() else {
                    return Err(param(
                        "Protocol",
                        "streams are not available on this server",
                    ));
                };
                if !streams.exists(endpoint) {
                    return Err(param(
                        "Endpoint",
                        format!("Stream does not exist: {endpoint:?}"),
                    ));
                }
                None
            }
            _ => {
                return Err(param(
                    "Endpoint",
                    format!("Endpoint must match the specified protocol: {endpoint}"),
                ))
            }
        };
        let attributes = self.check_subscription_attributes(attributes)?;
        let (fifo, existing) = {
            let c = self.inner.catalog.lock();
            let t = c
                .topics
                .get(topic)
                .ok_or_else(|| TopicError::TopicNotFound(topic.to_string()))?;
            let existing = t
                .subscriptions
                .values()
                .find(|s| s.protocol == protocol && s.endpoint == endpoint)
                .cloned();
            (t.attributes.fifo, existing)
        };
        if let Some(s) = existing {
            if s.attributes != attributes && attributes != SubscriptionAttributes::default() {
                return Err(param(
                    "Attributes",
                    "Subscription already exists with different attributes",
                ));
            }
            return Ok(s);
        }
        if fifo && protocol.is_http() {
            return Err(param(
                "Protocol",
                "FIFO topics deliver only to SQS queues and streams",
            ));
        }
        if let Some(q) = &queue {
            if q.ends_with(".fifo") && !fifo {
                return Err(param(
                    "Endpoint",
                    "a FIFO queue can subscribe only to a FIFO topic",
                ));
            }
        }
        let id = envelope::uuid();
        let token = protocol
            .is_http()
            .then(|| hex::encode(rand::random::<[u8; 32]>()));
        let sub = Subscription {
            id: id.clone(),
            topic: topic.to_string(),
            protocol,
            endpoint: endpoint.to_string(),
            queue,
            attributes,
            confirmed: !protocol.is_http(),
            token: token.clone(),
            created_ms: self.now(),
        };
        if protocol.is_http() {
            self.create_delivery_queue(&id)?;
        }
        let created = self.edit(|c| {
            let t = c
                .topics
                .get_mut(topic)
                .ok_or_else(|| TopicError::TopicNotFound(topic.to_string()))?;
            if t.subscriptions.len() >= MAX_SUBSCRIPTIONS_PER_TOPIC {
                return Err(TopicError::LimitExceeded(format!(
                    "at most {MAX_SUBSCRIPTIONS_PER_TOPIC} subscriptions per topic"
                )));
            }
            t.subscriptions.insert(id.clone(), sub.clone());
            Ok(())
        });
        if let Err(e) = created {
            self.drop_delivery_queue(&sub);
            return Err(e);
        }
        if let Some(token) = token {
            self.enqueue_confirmation(&sub, &token, envelope::ConfirmationKind::Subscribe)?;
        }
        Ok(sub)
    }

    /// A signed `SubscriptionConfirmation` or `UnsubscribeConfirmation` for `sub`, and its id.
    async fn render_confirmation(
        &self,
        sub: &Subscription,
        token: &str,
        kind: envelope::ConfirmationKind,
        attributes: &TopicAttributes,
    ) -> Result<(String, String), TopicError> {
        let topic_arn = self.topic_arn(&sub.topic);
        let url = format!(
            "{}/?Action=ConfirmSubscription&TopicArn={}&Token={}",
            self.public_url(),
            envelope::url_encode(&topic_arn),
            token
        );
        let message_id = envelope::uuid();
        let mut body = envelope::confirmation(&envelope::Confirmation {
            kind,
            message_id: &message_id,
            topic_arn: &topic_arn,
            subscription_arn: &self.subscription_arn(&sub.topic, &sub.id),
            token,
            subscribe_url: &url,
            timestamp_ms: self.now(),
        });
        self.signer(attributes)
            .await?
            .sign_envelopes(vec![&mut body])
            .await?;
        Ok((serde_json::Value::Object(body).to_string(), message_id))
    }

    /// Queues a signed `SubscriptionConfirmation` or `UnsubscribeConfirmation` on the
    /// subscription's delivery queue, where it is POSTed and retried like a notification.
    fn enqueue_confirmation(
        &self,
        sub: &Subscription,
        token: &str,
        kind: envelope::ConfirmationKind,
    ) -> Result<(), TopicError> {
        let attributes = self.get_topic(&sub.topic)?.attributes;
        let this = self.clone();
        let (sub, token) = (sub.clone(), token.to_string());
        // Signed on a blocking thread, then appended; the caller does not wait for either.
        let fut = async move {
            let (body, message_id) = this
                .render_confirmation(&sub, &token, kind, &attributes)
                .await?;
            let mut msg = delivery::delivery_message(body, kind.message_type(), false);
            msg.attributes.insert(
                delivery::ATTR_MESSAGE_ID.into(),
                MessageAttributeValue {
                    data_type: "String".into(),
                    string_value: Some(message_id),
                    binary_value: None,
                },
            );
            let dq = delivery_queue_name(&sub.id);
            this.inner.delivery.send(&dq, vec![msg]).await?;
            Ok::<(), TopicError>(())
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move {
                    if let Err(e) = fut.await {
                        tracing::warn!(error = %e, kind = kind.message_type(), "enqueueing a subscription confirmation");
                    }
                });
                Ok(())
            }
            Err(_) => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| BrokerError::Storage(e.to_string()))?;
                rt.block_on(fut)?;
                Ok(())
            }
        }
    }

    fn check_subscription_attributes(
        &self,
        mut a: SubscriptionAttributes,
    ) -> Result<SubscriptionAttributes, TopicError> {
        if let Some(p) = &a.filter_policy {
            if p.trim().is_empty() || p.trim() == "{}" {
                a.filter_policy = None;
            } else {
                FilterPolicy::parse(p, a.filter_policy_scope)
                    .map_err(|e| TopicError::InvalidFilterPolicy(e.0))?;
            }
        }
        match &a.redrive_policy {
            Some(r) if !r.trim().is_empty() => a.dead_letter_queue = Some(parse_redrive(r)?),
            _ => {
                a.redrive_policy = None;
                a.dead_letter_queue = None;
            }
        }
        if let Some(d) = &a.delivery_policy {
            delivery::DeliveryPolicy::from_subscription_policy(d)
                .map_err(|r| param("DeliveryPolicy", r))?;
        }
        Ok(a)
    }

    /// Confirms the pending subscription of `topic` that was sent `token`, or restores an
    /// HTTP(S) subscription unsubscribed in the last [`RESTORE_WINDOW_MS`] with the token of its
    /// `UnsubscribeConfirmation` (same id and attributes, confirmed).
    pub fn confirm_subscription(
        &self,
        topic: &str,
        token: &str,
    ) -> Result<Subscription, TopicError> {
        let now = self.now();
        self.edit(|c| {
            let t = c
                .topics
                .get_mut(topic)
                .ok_or_else(|| TopicError::TopicNotFound(topic.to_string()))?;
            if let Some(s) = t
                .subscriptions
                .values_mut()
                .find(|s| s.token.as_deref() == Some(token))
            {
                s.confirmed = true;
                return Ok(s.clone());
            }
            let id = t
                .unsubscribed
                .iter()
                .find(|(_, u)| {
                    u.subscription.token.as_deref() == Some(token)
                        && now < u.at_ms.saturating_add(RESTORE_WINDOW_MS)
                })
                .map(|(id, _)| id.clone())
                .ok_or_else(|| param("Token", "Invalid token"))?;
            let mut sub = t
                .unsubscribed
                .remove(&id)
                .expect("found above")
                .subscription;
            // Subscribed again since: that subscription stands, and the old one's delivery
            // queue (a farewell may still be in it) goes with its record.
            if let Some(s) = t
                .subscriptions
                .values()
                .find(|s| s.protocol == sub.protocol && s.endpoint == sub.endpoint)
            {
                self.drop_delivery_queue(&sub);
                return Ok(s.clone());
            }
            if t.subscriptions.len() >= MAX_SUBSCRIPTIONS_PER_TOPIC {
                return Err(TopicError::LimitExceeded(format!(
                    "at most {MAX_SUBSCRIPTIONS_PER_TOPIC} subscriptions per topic"
                )));
            }
            // Under the catalog lock, so a finishing UnsubscribeConfirmation cannot drop the
            // queue after this (see `finish_unsubscribe`). A confirmation still queued there
            // is discarded by the delivery loop, the subscription being live again.
            if self
                .inner
                .delivery
                .queue_attributes(&delivery_queue_name(&id))
                .is_err()
            {
                self.create_delivery_queue(&id)?;
            }
            sub.confirmed = true;
            t.subscriptions.insert(id, sub.clone());
            Ok(sub)
        })
    }

    /// Deletes a subscription. An HTTP(S) endpoint is sent an `UnsubscribeConfirmation`
    /// through its delivery queue, retried by its delivery policy like a notification (the
    /// notifications still queued there are dropped), and can restore the subscription with
    /// its token for [`RESTORE_WINDOW_MS`].
    pub fn unsubscribe(&self, topic: &str, id: &str) -> Result<(), TopicError> {
        let now = self.now();
        let (removed, expired) = self.edit(|c| {
            let t = c
                .topics
                .get_mut(topic)
                .ok_or_else(|| TopicError::SubscriptionNotFound(id.to_string()))?;
            let removed = t
                .subscriptions
                .remove(id)
                .ok_or_else(|| TopicError::SubscriptionNotFound(id.to_string()))?;
            let (expired, kept): (BTreeMap<_, _>, BTreeMap<_, _>) =
                std::mem::take(&mut t.unsubscribed)
                    .into_iter()
                    .partition(|(_, u)| now >= u.at_ms.saturating_add(RESTORE_WINDOW_MS));
            t.unsubscribed = kept;
            if removed.protocol.is_http() && removed.token.is_some() {
                t.unsubscribed.insert(
                    id.to_string(),
                    Unsubscribed {
                        subscription: removed.clone(),
                        at_ms: now,
                    },
                );
            }
            Ok((removed, expired))
        })?;
        for u in expired.values() {
            self.drop_delivery_queue(&u.subscription);
        }
        match &removed.token {
            Some(token) if removed.protocol.is_http() => {
                self.enqueue_confirmation(&removed, token, envelope::ConfirmationKind::Unsubscribe)
            }
            _ => {
                self.drop_delivery_queue(&removed);
                Ok(())
            }
        }
    }

    /// The subscription a delivery loop serves: live (`false`) or unsubscribed and still
    /// delivering its `UnsubscribeConfirmation` (`true`).
    pub(crate) fn delivering_subscription(
        &self,
        topic: &str,
        id: &str,
    ) -> Option<(Subscription, bool)> {
        let c = self.inner.catalog.lock();
        let t = c.topics.get(topic)?;
        match t.subscriptions.get(id) {
            Some(s) => Some((s.clone(), false)),
            None => t
                .unsubscribed
                .get(id)
                .map(|u| (u.subscription.clone(), true)),
        }
    }

    /// HTTP(S) subscriptions with a delivery queue: the live ones and the unsubscribed ones
    /// whose `UnsubscribeConfirmation` is not yet delivered.
    pub(crate) fn http_deliveries(&self) -> Vec<Subscription> {
        let c = self.inner.catalog.lock();
        let mut out = Vec::new();
        for t in c.topics.values() {
            out.extend(
                t.subscriptions
                    .values()
                    .filter(|s| s.protocol.is_http())
                    .cloned(),
            );
            out.extend(
                t.unsubscribed
                    .values()
                    .map(|u| &u.subscription)
                    .filter(|s| {
                        self.inner
                            .delivery
                            .queue_attributes(&delivery_queue_name(&s.id))
                            .is_ok()
                    })
                    .cloned(),
            );
        }
        out
    }

    /// The `UnsubscribeConfirmation` of `sub` was delivered or gave up: its delivery queue
    /// goes, unless the subscription was restored meanwhile. Returns whether it went.
    pub(crate) fn finish_unsubscribe(&self, sub: &Subscription) -> bool {
        let c = self.inner.catalog.lock();
        let live = c
            .topics
            .get(&sub.topic)
            .is_some_and(|t| t.subscriptions.contains_key(&sub.id));
        if !live {
            self.drop_delivery_queue(sub);
        }
        !live
    }

    fn create_delivery_queue(&self, id: &str) -> Result<(), TopicError> {
        self.inner.delivery.create_queue(
            &delivery_queue_name(id),
            QueueAttributes {
                visibility_timeout_seconds: delivery::DELIVERY_LEASE_SECONDS,
                message_retention_seconds: 1_209_600,
                ..Default::default()
            },
            BTreeMap::new(),
        )?;
        Ok(())
    }

    fn drop_delivery_queue(&self, s: &Subscription) {
        if s.protocol.is_http() {
            if let Err(e) = self
                .inner
                .delivery
                .delete_queue(&delivery_queue_name(&s.id))
            {
                tracing::warn!(subscription = %s.id, error = %e, "deleting a delivery queue");
            }
        }
    }

    pub fn get_subscription(&self, topic: &str, id: &str) -> Result<Subscription, TopicError> {
        let c = self.inner.catalog.lock();
        c.topics
            .get(topic)
            .and_then(|t| t.subscriptions.get(id))
            .cloned()
            .ok_or_else(|| TopicError::SubscriptionNotFound(id.to_string()))
    }

    pub fn update_subscription(
        &self,
        topic: &str,
        id: &str,
        change: impl FnOnce(&mut SubscriptionAttributes),
    ) -> Result<Subscription, TopicError> {
        let current = self.get_subscription(topic, id)?;
        let mut a = current.attributes.clone();
        change(&mut a);
        let a = self.check_subscription_attributes(a)?;
        self.edit(|c| {
            let s = c
                .topics
                .get_mut(topic)
                .and_then(|t| t.subscriptions.get_mut(id))
                .ok_or_else(|| TopicError::SubscriptionNotFound(id.to_string()))?;
            s.attributes = a;
            Ok(s.clone())
        })
    }

    /// Every subscription, optionally of one topic, ordered by topic then id.
    pub fn list_subscriptions(&self, topic: Option<&str>) -> Result<Vec<Subscription>, TopicError> {
        let c = self.inner.catalog.lock();
        match topic {
            Some(t) => Ok(c
                .topics
                .get(t)
                .ok_or_else(|| TopicError::TopicNotFound(t.to_string()))?
                .subscriptions
                .values()
                .cloned()
                .collect()),
            None => Ok(c
                .topics
                .values()
                .flat_map(|t| t.subscriptions.values().cloned())
                .collect()),
        }
    }

    // ------------------------------------------------------------------ publish

    /// The live view of `topic` (its subscriptions and filters), or `TopicNotFound`.
    fn live_topic(&self, topic: &str) -> Result<Arc<LiveTopic>, TopicError> {
        self.inner
            .live
            .read()
            .get(topic)
            .cloned()
            .ok_or_else(|| TopicError::TopicNotFound(topic.to_string()))
    }

    /// Publishes one message; see the module docs for the guarantee.
    pub async fn publish(
        &self,
        topic: &str,
        request: PublishRequest,
    ) -> Result<PublishOutcome, TopicError> {
        let live = self.live_topic(topic)?;
        self.check_publish(&live, &request)?;
        let mut request = request;
        let now = self.now();
        let _order = if live.attributes.fifo {
            Some(live.order.clone().lock_owned().await)
        } else {
            None
        };
        let mut sequence_number = None;
        if live.attributes.fifo {
            if request.deduplication_id.is_none() {
                use sha2::Digest;
                request.deduplication_id = Some(hex::encode(sha2::Sha256::digest(
                    request.message.as_bytes(),
                )));
            }
            let key = (
                topic.to_string(),
                request.deduplication_id.clone().unwrap_or_default(),
            );
            // Expired entries are pruned by the periodic intent-log truncation, not here: a
            // scan of the whole window on every publish would cost O(window) per message.
            let dedup = self.inner.dedup.lock();
            if let Some((id, seq, _, _)) = dedup.get(&key).filter(|(_, _, exp, _)| *exp > now) {
                return Ok(PublishOutcome {
                    message_id: id.clone(),
                    sequence_number: Some(seq.clone()),
                });
            }
            let seq = self
                .inner
                .fifo_seq
                .fetch_add(1, Ordering::SeqCst)
                .max(now * 1000);
            self.inner.fifo_seq.fetch_max(seq + 1, Ordering::SeqCst);
            sequence_number = Some(format!("{seq:020}"));
        }
        let published = Published {
            message_id: envelope::uuid(),
            topic: topic.to_string(),
            timestamp_ms: now,
            sequence_number: sequence_number.clone(),
            request,
        };
        let targets = Self::matching_targets(&live, &published);
        let outcome = PublishOutcome {
            message_id: published.message_id.clone(),
            sequence_number: sequence_number.clone(),
        };
        if targets.is_empty() {
            self.remember_dedup(&live, &published, now, None).await?;
            return Ok(outcome);
        }
        // Rendered (and signed, off the runtime) before the intent is written.
        let signer = self.signer(&live.attributes).await?;
        let bodies = self.render_all(&targets, &published, &signer).await?;
        // One target: the append itself is atomic; no intent needed.
        if let ([target], [body]) = (&targets[..], &bodies[..]) {
            return match self.deliver(target, &published, body).await {
                TargetResult::Retry(e) => Err(e.into()),
                _ => {
                    self.remember_dedup(&live, &published, now, None).await?;
                    Ok(outcome)
                }
            };
        }
        let ids: Vec<String> = targets.iter().map(|t| t.sub.id.clone()).collect();
        let record = IntentRecord::Intent {
            published: published.clone(),
            targets: ids.clone(),
        };
        let offset = self.append_intent(&record, true).await?;
        self.inner.open_intents.lock().insert(
            offset,
            Intent {
                published: published.clone(),
                targets: ids,
                in_flight: true,
            },
        );
        let (done, failure) = self.fan_out(&targets, &published, &bodies).await;
        match failure {
            None => {
                self.inner.open_intents.lock().remove(&offset);
                let _ = self
                    .append_intent(
                        &IntentRecord::Done {
                            offset,
                            done: Vec::new(),
                            complete: true,
                        },
                        false,
                    )
                    .await;
                self.remember_dedup(&live, &published, now, Some(offset))
                    .await?;
                Ok(outcome)
            }
            Some(e) => {
                if let Some(i) = self.inner.open_intents.lock().get_mut(&offset) {
                    i.targets.retain(|t| !done.contains(t));
                    i.in_flight = false;
                }
                let _ = self
                    .append_intent(
                        &IntentRecord::Done {
                            offset,
                            done,
                            complete: false,
                        },
                        false,
                    )
                    .await;
                Err(e.into())
            }
        }
    }

    /// Publishes up to ten messages to a standard topic, with one outcome per message in
    /// order (SNS PublishBatch). Each message keeps [`Topics::publish`]'s guarantees (every
    /// matching subscription gets it, or, after a crash, its intent completes the fan-out),
    /// but the work is shared: the intents of the whole batch are one durable append, each
    /// queue gets the messages bound for it in one send, and the closing records are one
    /// append. A FIFO topic publishes the messages one after another, in order.
    pub async fn publish_batch(
        &self,
        topic: &str,
        requests: Vec<PublishRequest>,
    ) -> Result<Vec<Result<PublishOutcome, TopicError>>, TopicError> {
        let live = self.live_topic(topic)?;
        if live.attributes.fifo {
            let mut outcomes = Vec::with_capacity(requests.len());
            for request in requests {
                outcomes.push(self.publish(topic, request).await);
            }
            return Ok(outcomes);
        }
        let now = self.now();
        let mut outcomes: Vec<Option<Result<PublishOutcome, TopicError>>> =
            vec![None; requests.len()];
        // Messages with at least one target: (position in the batch, message, targets).
        let mut fanning = Vec::new();
        for (i, request) in requests.into_iter().enumerate() {
            if let Err(e) = self.check_publish(&live, &request) {
                outcomes[i] = Some(Err(e));
                continue;
            }
            let published = Published {
                message_id: envelope::uuid(),
                topic: topic.to_string(),
                timestamp_ms: now,
                sequence_number: None,
                request,
            };
            let targets = Self::matching_targets(&live, &published);
            if targets.is_empty() {
                outcomes[i] = Some(Ok(PublishOutcome {
                    message_id: published.message_id,
                    sequence_number: None,
                }));
            } else {
                fanning.push((i, published, targets));
            }
        }
        if !fanning.is_empty() {
            self.fan_out_batch(&live, fanning, &mut outcomes).await;
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every message of the batch has an outcome"))
            .collect())
    }

    /// The fan-out half of [`Topics::publish_batch`]: fills in the outcome of every message
    /// in `fanning`.
    async fn fan_out_batch(
        &self,
        live: &LiveTopic,
        fanning: Vec<(usize, Published, Vec<Arc<LiveSubscription>>)>,
        outcomes: &mut [Option<Result<PublishOutcome, TopicError>>],
    ) {
        let signer = match self.signer(&live.attributes).await {
            Ok(signer) => signer,
            Err(e) => {
                for (i, _, _) in &fanning {
                    outcomes[*i] = Some(Err(e.clone()));
                }
                return;
            }
        };
        // Rendered (and signed, off the runtime) before any intent is written.
        let mut ready = Vec::with_capacity(fanning.len());
        for (i, published, targets) in fanning {
            match self.render_all(&targets, &published, &signer).await {
                Ok(bodies) => ready.push((i, published, targets, bodies)),
                Err(e) => outcomes[i] = Some(Err(e)),
            }
        }
        // One intent record per message with two or more targets (one target needs none: the
        // append itself is atomic), all in one durable append.
        let records: Vec<IntentRecord> = ready
            .iter()
            .filter(|(_, _, targets, _)| targets.len() > 1)
            .map(|(_, published, targets, _)| IntentRecord::Intent {
                published: published.clone(),
                targets: targets.iter().map(|t| t.sub.id.clone()).collect(),
            })
            .collect();
        // The intent offset of each ready message, if it has one.
        let mut intent_offsets: Vec<Option<u64>> = vec![None; ready.len()];
        if !records.is_empty() {
            match self.append_intents(&records, true).await {
                Ok(base) => {
                    let mut offset = base;
                    let mut open = self.inner.open_intents.lock();
                    for (k, (_, published, targets, _)) in ready.iter().enumerate() {
                        if targets.len() > 1 {
                            open.insert(
                                offset,
                                Intent {
                                    published: published.clone(),
                                    targets: targets.iter().map(|t| t.sub.id.clone()).collect(),
                                    in_flight: true,
                                },
                            );
                            intent_offsets[k] = Some(offset);
                            offset += 1;
                        }
                    }
                }
                Err(e) => {
                    // No intent is durable: only the single-target messages go ahead.
                    let mut single = Vec::new();
                    for (i, published, targets, bodies) in ready {
                        if targets.len() > 1 {
                            outcomes[i] = Some(Err(e.clone()));
                        } else {
                            single.push((i, published, targets, bodies));
                        }
                    }
                    ready = single;
                    intent_offsets = vec![None; ready.len()];
                }
            }
        }
        // Each subscription gets its messages (in batch order) in one delivery.
        let mut per_subscription: Vec<SubscriptionShare> = Vec::new();
        for (k, (_, _, targets, _)) in ready.iter().enumerate() {
            for (t, target) in targets.iter().enumerate() {
                match per_subscription
                    .iter_mut()
                    .find(|share| Arc::ptr_eq(&share.subscription, target))
                {
                    Some(share) => share.items.push((k, t)),
                    None => per_subscription.push(SubscriptionShare {
                        subscription: target.clone(),
                        items: vec![(k, t)],
                    }),
                }
            }
        }
        let results = join_all(
            per_subscription
                .iter()
                .map(|share| {
                    let items: Vec<(&Published, &Rendered)> = share
                        .items
                        .iter()
                        .map(|&(k, t)| (&ready[k].1, &ready[k].3[t]))
                        .collect();
                    async move { self.deliver_many(&share.subscription, &items).await }
                })
                .collect(),
        )
        .await;
        let mut done: Vec<Vec<String>> = vec![Vec::new(); ready.len()];
        let mut failure: Vec<Option<BrokerError>> = vec![None; ready.len()];
        for (share, results) in per_subscription.iter().zip(results) {
            for (&(k, _), result) in share.items.iter().zip(results) {
                match result {
                    TargetResult::Delivered | TargetResult::Refused => {
                        done[k].push(share.subscription.sub.id.clone())
                    }
                    TargetResult::Retry(e) => {
                        failure[k].get_or_insert(e);
                    }
                }
            }
        }
        let mut closing = Vec::new();
        for (k, (i, published, _, _)) in ready.into_iter().enumerate() {
            let failed = failure[k].take();
            if let Some(offset) = intent_offsets[k] {
                let complete = failed.is_none();
                {
                    let mut open = self.inner.open_intents.lock();
                    if complete {
                        open.remove(&offset);
                    } else if let Some(intent) = open.get_mut(&offset) {
                        intent.targets.retain(|t| !done[k].contains(t));
                        intent.in_flight = false;
                    }
                }
                closing.push(IntentRecord::Done {
                    offset,
                    done: if complete {
                        Vec::new()
                    } else {
                        std::mem::take(&mut done[k])
                    },
                    complete,
                });
            }
            outcomes[i] = Some(match failed {
                None => Ok(PublishOutcome {
                    message_id: published.message_id,
                    sequence_number: None,
                }),
                Some(e) => Err(e.into()),
            });
        }
        if !closing.is_empty() {
            // Not waited for: an intent whose closing record is lost is completed again after
            // a restart, which only re-checks targets already done.
            let _ = self.append_intents(&closing, false).await;
        }
    }

    /// The confirmed subscriptions whose filter policy `published` passes (counting the
    /// ones it does not), and counts the publish.
    fn matching_targets(live: &LiveTopic, published: &Published) -> Vec<Arc<LiveSubscription>> {
        let body_json = if live.subscriptions.iter().any(|s| {
            s.filter
                .as_ref()
                .is_some_and(|f| f.scope() == FilterPolicyScope::MessageBody)
        }) {
            serde_json::from_str::<serde_json::Value>(&published.request.message).ok()
        } else {
            None
        };
        let mut targets = Vec::new();
        for s in &live.subscriptions {
            if !s.sub.confirmed {
                continue;
            }
            if let Some(f) = &s.filter {
                if !f.matches(&published.request.attributes, body_json.as_ref()) {
                    s.counters.filtered_out.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            targets.push(s.clone());
        }
        live.published.fetch_add(1, Ordering::Relaxed);
        targets
    }

    /// Remembers a delivered FIFO publish for the deduplication window, durably: `intent` is
    /// the offset of its intent record, which holds the message; a publish that had no intent
    /// (fewer than two targets) gets a `Deduplicated` record, made durable before the publish
    /// answers. The intent log keeps these records for the window, and opening reloads them.
    async fn remember_dedup(
        &self,
        live: &LiveTopic,
        p: &Published,
        now: u64,
        intent: Option<u64>,
    ) -> Result<(), TopicError> {
        if !live.attributes.fifo {
            return Ok(());
        }
        let (Some(d), Some(seq)) = (&p.request.deduplication_id, &p.sequence_number) else {
            return Ok(());
        };
        let offset = match intent {
            Some(offset) => offset,
            None => {
                self.append_intent(
                    &IntentRecord::Deduplicated {
                        published: p.clone(),
                    },
                    true,
                )
                .await?
            }
        };
        self.inner.dedup.lock().insert(
            (live.name.clone(), d.clone()),
            (
                p.message_id.clone(),
                seq.clone(),
                now + DEDUP_WINDOW_MS,
                offset,
            ),
        );
        Ok(())
    }

    /// Appends to every target concurrently. Returns the ids done and the first retryable error.
    async fn fan_out(
        &self,
        targets: &[Arc<LiveSubscription>],
        p: &Published,
        bodies: &[Rendered],
    ) -> (Vec<String>, Option<BrokerError>) {
        // Polled together in this task (no spawn per target): each queue append happens at
        // the first poll, then all wait for their logs' group commits at once.
        let results = join_all(
            targets
                .iter()
                .zip(bodies)
                .map(|(t, b)| async move { (t.sub.id.clone(), self.deliver(t, p, b).await) })
                .collect(),
        )
        .await;
        let mut done = Vec::new();
        let mut failure = None;
        for (id, r) in results {
            match r {
                TargetResult::Delivered | TargetResult::Refused => done.push(id),
                TargetResult::Retry(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        (done, failure)
    }

    async fn append_intent(&self, record: &IntentRecord, durable: bool) -> Result<u64, TopicError> {
        self.append_intents(std::slice::from_ref(record), durable)
            .await
    }

    /// Appends `records` to the intent log in one call, one entry (and offset) each, in
    /// order; returns the first one's offset.
    async fn append_intents(
        &self,
        records: &[IntentRecord],
        durable: bool,
    ) -> Result<u64, TopicError> {
        let now = self.now() as i64;
        let entries = records
            .iter()
            .map(|record| {
                serde_json::to_vec(record)
                    .map(|payload| ferry_log::Entry::new(now, payload))
                    .map_err(|e| BrokerError::Storage(format!("encoding an intent: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let storage = |e: ferry_log::LogError| {
            TopicError::Broker(BrokerError::Storage(format!("topic intent log: {e}")))
        };
        let appended = self.inner.intents.append(&entries).map_err(storage)?;
        if durable {
            self.inner
                .intents
                .wait_durable(appended.next_offset)
                .await
                .map_err(storage)?;
        }
        Ok(appended.base_offset)
    }

    /// The body a subscription receives: per-protocol text under MessageStructure=json.
    fn message_for(p: &Published, protocol: Protocol) -> String {
        if p.request.message_structure_json {
            if let Ok(serde_json::Value::Object(m)) =
                serde_json::from_str::<serde_json::Value>(&p.request.message)
            {
                if let Some(serde_json::Value::String(s)) =
                    m.get(protocol.as_str()).or_else(|| m.get("default"))
                {
                    return s.clone();
                }
            }
        }
        p.request.message.clone()
    }

    /// Renders the notification for each target, in order: raw, or an envelope signed by
    /// `signer` (each distinct string to sign once, on a blocking thread).
    async fn render_all(
        &self,
        targets: &[Arc<LiveSubscription>],
        p: &Published,
        signer: &Signer,
    ) -> Result<Vec<Rendered>, TopicError> {
        enum Draft {
            Raw(String),
            Envelope(serde_json::Map<String, serde_json::Value>),
        }
        let topic_arn = self.topic_arn(&p.topic);
        let public_url = self.public_url();
        let mut drafts: Vec<Draft> = targets
            .iter()
            .map(|t| {
                let sub = &t.sub;
                let message = Self::message_for(p, sub.protocol);
                if sub.attributes.raw_message_delivery {
                    return Draft::Raw(message);
                }
                let unsubscribe = format!(
                    "{public_url}/?Action=Unsubscribe&SubscriptionArn={}",
                    envelope::url_encode(&self.subscription_arn(&sub.topic, &sub.id))
                );
                Draft::Envelope(envelope::notification(&envelope::Notification {
                    message_id: &p.message_id,
                    topic_arn: &topic_arn,
                    subject: p.request.subject.as_deref(),
                    message: &message,
                    timestamp_ms: p.timestamp_ms,
                    unsubscribe_url: &unsubscribe,
                    attributes: &p.request.attributes,
                    sequence_number: p.sequence_number.as_deref(),
                }))
            })
            .collect();
        let envelopes = drafts
            .iter_mut()
            .filter_map(|d| match d {
                Draft::Envelope(m) => Some(m),
                Draft::Raw(_) => None,
            })
            .collect();
        signer.sign_envelopes(envelopes).await?;
        Ok(drafts
            .into_iter()
            .map(|d| match d {
                Draft::Raw(message) => Rendered {
                    body: Bytes::from(message),
                    attributes: p.request.attributes.clone(),
                },
                Draft::Envelope(m) => Rendered {
                    body: Bytes::from(serde_json::Value::Object(m).to_string()),
                    attributes: BTreeMap::new(),
                },
            })
            .collect())
    }

    /// Appends `p` to one subscription's target.
    async fn deliver(&self, s: &LiveSubscription, p: &Published, r: &Rendered) -> TargetResult {
        let result = match Self::queued_delivery(s, p, r) {
            Some((broker, queue, msg)) => self
                .broker_for(broker)
                .send(&queue, vec![msg])
                .await
                .and_then(one_sent),
            None => {
                self.append_to_stream(&s.sub.endpoint, p, r.body.clone())
                    .await
            }
        };
        self.settle(s, r, result).await
    }

    /// Delivers several messages to one subscription. A queue or HTTP subscription gets them
    /// in one send (one append to its queue's log), in order; each message still settles on
    /// its own (a refused one is dead-lettered or dropped, the others are delivered).
    async fn deliver_many(
        &self,
        s: &LiveSubscription,
        items: &[(&Published, &Rendered)],
    ) -> Vec<TargetResult> {
        let queued: Option<Vec<_>> = items
            .iter()
            .map(|(p, r)| Self::queued_delivery(s, p, r))
            .collect();
        let Some(queued) = queued.filter(|q| q.len() > 1) else {
            return join_all(items.iter().map(|(p, r)| self.deliver(s, p, r)).collect()).await;
        };
        let (broker, queue) = (queued[0].0, queued[0].1.clone());
        let messages = queued.into_iter().map(|(_, _, m)| m).collect();
        let results: Vec<Result<(), BrokerError>> =
            match self.broker_for(broker).send(&queue, messages).await {
                Ok(outcomes) => outcomes.into_iter().map(|o| o.map(|_| ())).collect(),
                Err(e) => vec![Err(e); items.len()],
            };
        let mut settled = Vec::with_capacity(items.len());
        for ((_, r), result) in items.iter().zip(results) {
            settled.push(self.settle(s, r, result).await);
        }
        settled
    }

    /// For a queue or HTTP(S) subscription: which broker and queue a notification is sent to,
    /// and the message. `None` for a stream subscription.
    fn queued_delivery(
        s: &LiveSubscription,
        p: &Published,
        r: &Rendered,
    ) -> Option<(DeliveryBroker, String, SendMessage)> {
        let (body, attributes) = (r.body.clone(), r.attributes.clone());
        match s.sub.protocol {
            Protocol::Sqs => {
                let queue = s.sub.queue.clone().unwrap_or_default();
                let fifo_queue = queue.ends_with(".fifo");
                let msg = SendMessage {
                    body,
                    attributes,
                    group_id: if fifo_queue {
                        p.request.group_id.clone()
                    } else {
                        None
                    },
                    deduplication_id: if fifo_queue {
                        p.request.deduplication_id.clone()
                    } else {
                        None
                    },
                    ..Default::default()
                };
                Some((DeliveryBroker::Queues, queue, msg))
            }
            Protocol::Http | Protocol::Https => {
                let mut msg = delivery::delivery_message(
                    body,
                    "Notification",
                    s.sub.attributes.raw_message_delivery,
                );
                msg.attributes.insert(
                    delivery::ATTR_MESSAGE_ID.into(),
                    MessageAttributeValue {
                        data_type: "String".into(),
                        string_value: Some(p.message_id.clone()),
                        binary_value: None,
                    },
                );
                Some((
                    DeliveryBroker::HttpDelivery,
                    delivery_queue_name(&s.sub.id),
                    msg,
                ))
            }
            Protocol::Stream => None,
        }
    }

    fn broker_for(&self, which: DeliveryBroker) -> &Broker {
        match which {
            DeliveryBroker::Queues => &self.inner.broker,
            DeliveryBroker::HttpDelivery => &self.inner.delivery,
        }
    }

    /// Counts how one target append ended and decides what becomes of the message: delivered,
    /// retried later (storage failure, shutdown), or refused for good (dead-lettered when the
    /// subscription has a dead-letter queue).
    async fn settle(
        &self,
        s: &LiveSubscription,
        r: &Rendered,
        result: Result<(), BrokerError>,
    ) -> TargetResult {
        match result {
            Ok(()) => {
                if !s.sub.protocol.is_http() {
                    s.counters.delivered.fetch_add(1, Ordering::Relaxed);
                }
                TargetResult::Delivered
            }
            Err(e @ (BrokerError::Storage(_) | BrokerError::ShuttingDown)) => {
                TargetResult::Retry(e)
            }
            Err(e) => {
                tracing::warn!(subscription = %s.sub.id, error = %e, "a subscription's queue refused a notification");
                s.counters.failed.fetch_add(1, Ordering::Relaxed);
                if let Some(dlq) = &s.sub.attributes.dead_letter_queue {
                    let msg = SendMessage {
                        body: r.body.clone(),
                        attributes: r.attributes.clone(),
                        ..Default::default()
                    };
                    match self.inner.broker.send(dlq, vec![msg]).await {
                        Ok(_) => {
                            s.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e @ (BrokerError::Storage(_) | BrokerError::ShuttingDown)) => {
                            return TargetResult::Retry(e)
                        }
                        Err(e) => {
                            tracing::warn!(subscription = %s.sub.id, error = %e, "dead-lettering a notification failed; dropped")
                        }
                    }
                }
                TargetResult::Refused
            }
        }
    }

    /// Appends `p` to a stream as one record and waits until it is durable.
    ///
    /// ```text
    /// value      the rendered notification: the message (raw delivery) or the SNS JSON envelope
    /// key        the MessageGroupId on FIFO topics; none otherwise
    /// headers    x-amz-sns-message-id, x-amz-sns-topic-arn, then one per message attribute
    ///            (String/Number/String.Array: the string value as UTF-8; Binary: the bytes)
    /// timestamp  the publish time
    /// partition  crc32c(key) % partitions, or crc32c(message id) % partitions without a key
    /// ```
    ///
    /// The partition depends only on the message, so a retried intent appends to the same one.
    /// A missing stream, or a record it refuses (too large), is a refusal
    /// (`BrokerError::InvalidParameter`); storage failures and shutdown are retried.
    async fn append_to_stream(
        &self,
        stream: &str,
        p: &Published,
        value: Bytes,
    ) -> Result<(), BrokerError> {
        let streams = self
            .streams()
            .ok_or_else(|| BrokerError::Storage("streams are not open yet".into()))?;
        let refused = |e: StreamError| match e {
            StreamError::Storage(m) => BrokerError::Storage(m),
            StreamError::Closed => BrokerError::ShuttingDown,
            other => BrokerError::InvalidParameter {
                parameter: "stream".into(),
                reason: other.to_string(),
            },
        };
        let key = p.request.group_id.clone().map(Bytes::from);
        let mut headers = vec![
            (
                STREAM_HEADER_MESSAGE_ID.to_string(),
                Some(Bytes::from(p.message_id.clone())),
            ),
            (
                STREAM_HEADER_TOPIC_ARN.to_string(),
                Some(Bytes::from(self.topic_arn(&p.topic))),
            ),
        ];
        for (name, v) in &p.request.attributes {
            let value = match (&v.binary_value, &v.string_value) {
                (Some(b), _) => Some(b.clone()),
                (None, Some(s)) => Some(Bytes::from(s.clone())),
                (None, None) => None,
            };
            headers.push((name.clone(), value));
        }
        let partitions = streams.get(stream).map_err(refused)?.partition_count();
        let hashed = key.as_deref().unwrap_or(p.message_id.as_bytes());
        let partition = crate::stream::partition_for_key(hashed, partitions);
        let batch = crate::stream::batch::encode_records(
            &[crate::stream::batch::NewRecord {
                key,
                value: Some(value),
                headers,
                timestamp_ms: Some(p.timestamp_ms as i64),
            }],
            p.timestamp_ms as i64,
        )
        .map_err(refused)?;
        let (part, appended) = streams
            .append(stream, i64::from(partition), batch)
            .map_err(refused)?;
        part.wait_durable(appended.durable_at)
            .await
            .map_err(refused)?;
        streams.notify_appended();
        Ok(())
    }

    fn check_publish(&self, live: &LiveTopic, r: &PublishRequest) -> Result<(), TopicError> {
        if r.message.is_empty() {
            return Err(param("Message", "Empty message"));
        }
        let size = r.message.len() + validate_attributes(&r.attributes)?;
        if size > MAX_MESSAGE_BYTES {
            return Err(param(
                "Message",
                format!("Message too long: {size} bytes (at most {MAX_MESSAGE_BYTES})"),
            ));
        }
        if let Some(s) = &r.subject {
            if s.is_empty()
                || s.chars().count() > MAX_SUBJECT_CHARS
                || s.chars().any(|c| c.is_control())
            {
                return Err(param(
                    "Subject",
                    "Subject must be 1 to 100 printable ASCII characters",
                ));
            }
        }
        if r.message_structure_json {
            match serde_json::from_str::<serde_json::Value>(&r.message) {
                Ok(serde_json::Value::Object(m))
                    if m.get("default").is_some_and(|d| d.is_string()) => {}
                Ok(serde_json::Value::Object(_)) => {
                    return Err(param(
                        "Message",
                        "Message Structure - No default entry in JSON message body",
                    ))
                }
                _ => {
                    return Err(param(
                        "Message",
                        "Message Structure - JSON message body failed to parse",
                    ))
                }
            }
        }
        let id_ok =
            |s: &str| !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_graphic());
        if live.attributes.fifo {
            match &r.group_id {
                Some(g) if id_ok(g) => {}
                Some(_) => return Err(param("MessageGroupId", "Invalid MessageGroupId")),
                None => {
                    return Err(param(
                        "MessageGroupId",
                        "The MessageGroupId parameter is required for FIFO topics",
                    ))
                }
            }
            match &r.deduplication_id {
                Some(d) if !id_ok(d) => return Err(param("MessageDeduplicationId", "Invalid MessageDeduplicationId")),
                None if !live.attributes.content_based_deduplication => {
                    return Err(param("MessageDeduplicationId", "The topic should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly"))
                }
                _ => {}
            }
        } else {
            if r.deduplication_id.is_some() {
                return Err(param("MessageDeduplicationId", "The request includes MessageDeduplicationId parameter that is not valid for this topic type"));
            }
            if r.group_id.is_some() {
                return Err(param("MessageGroupId", "The request includes MessageGroupId parameter that is not valid for this topic type"));
            }
        }
        Ok(())
    }

    /// Re-runs the fan-out of every open intent (after a crash or a storage failure).
    pub async fn complete_open_intents(&self) -> Result<usize, TopicError> {
        let open: Vec<(u64, Intent)> = self
            .inner
            .open_intents
            .lock()
            .iter()
            .filter(|(_, i)| !i.in_flight)
            .map(|(o, i)| (*o, i.clone()))
            .collect();
        let mut completed = 0;
        for (offset, intent) in open {
            let live = self.inner.live.read().get(&intent.published.topic).cloned();
            let targets: Vec<Arc<LiveSubscription>> = match &live {
                Some(l) => l
                    .subscriptions
                    .iter()
                    .filter(|s| intent.targets.contains(&s.sub.id))
                    .cloned()
                    .collect(),
                None => Vec::new(),
            };
            let signer = match &live {
                Some(l) => self.signer(&l.attributes).await?,
                None => self.signer(&TopicAttributes::default()).await?,
            };
            let bodies = self
                .render_all(&targets, &intent.published, &signer)
                .await?;
            let (done, failure) = self.fan_out(&targets, &intent.published, &bodies).await;
            let complete = failure.is_none();
            self.append_intent(
                &IntentRecord::Done {
                    offset,
                    done: done.clone(),
                    complete,
                },
                true,
            )
            .await?;
            let mut open = self.inner.open_intents.lock();
            if complete {
                open.remove(&offset);
                completed += 1;
            } else if let Some(i) = open.get_mut(&offset) {
                i.targets.retain(|t| !done.contains(t));
            }
        }
        Ok(completed)
    }

    /// The lowest intent-log offset still needed: the oldest open intent's, or the oldest record
    /// of a FIFO publish inside its deduplication window (expired ones are forgotten here),
    /// else the durable end.
    fn intent_log_floor(&self) -> u64 {
        let low = self
            .inner
            .open_intents
            .lock()
            .keys()
            .next()
            .copied()
            .unwrap_or_else(|| self.inner.intents.durable_offset());
        let now = self.now();
        let mut dedup = self.inner.dedup.lock();
        dedup.retain(|_, (_, _, exp, _)| *exp > now);
        dedup
            .values()
            .map(|(_, _, _, offset)| *offset)
            .fold(low, u64::min)
    }

    /// Drops intent-log segments that hold only closed intents and no FIFO publish still
    /// inside its deduplication window.
    fn truncate_intents(&self) {
        let low = self.intent_log_floor();
        if let Err(e) = self.inner.intents.truncate_before(low) {
            tracing::warn!(error = %e, "truncating the topic intent log");
        }
    }

    /// Loads (or makes) the signing key, completes open intents, then starts the background
    /// tasks: intent retry/truncation and one HTTP delivery loop per HTTP(S) subscription,
    /// POSTing through `deliverer`. Call once, from inside a tokio runtime.
    pub async fn start(&self, deliverer: Arc<dyn delivery::Deliverer>) -> Result<(), TopicError> {
        // Load (or make, on first start) the signing key before anything is signed.
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.signing_key())
            .await
            .map_err(|e| BrokerError::Storage(format!("loading the SNS signing key: {e}")))??;
        let n = self.inner.open_intents.lock().len();
        if n > 0 {
            tracing::info!(open = n, "completing topic fan-outs interrupted by a crash");
            self.complete_open_intents().await?;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(INTENT_RETRY_PERIOD).await;
                if this.inner.stop.load(Ordering::Acquire) {
                    return;
                }
                if !this.inner.open_intents.lock().is_empty() {
                    if let Err(e) = this.complete_open_intents().await {
                        tracing::warn!(error = %e, "retrying open topic fan-outs");
                    }
                }
                this.truncate_intents();
            }
        });
        delivery::spawn_supervisor(self.clone(), deliverer);
        Ok(())
    }

    /// Counters of every topic and subscription.
    pub fn stats(&self) -> Vec<TopicStats> {
        let live = self.inner.live.read().clone();
        live.values()
            .map(|t| TopicStats {
                name: t.name.clone(),
                published: t.published.load(Ordering::Relaxed),
                subscriptions: t
                    .subscriptions
                    .iter()
                    .map(|s| SubscriptionStats {
                        id: s.sub.id.clone(),
                        protocol: s.sub.protocol.as_str(),
                        delivered: s.counters.delivered.load(Ordering::Relaxed),
                        filtered_out: s.counters.filtered_out.load(Ordering::Relaxed),
                        failed: s.counters.failed.load(Ordering::Relaxed),
                        dead_lettered: s.counters.dead_lettered.load(Ordering::Relaxed),
                    })
                    .collect(),
            })
            .collect()
    }

    fn counters(&self, id: &str) -> Option<Arc<SubscriptionCounters>> {
        self.inner.counters.lock().get(id).cloned()
    }

    /// Stops the background tasks and closes the delivery broker and intent log.
    pub async fn shutdown(&self) -> Result<(), TopicError> {
        self.inner.stop.store(true, Ordering::Release);
        self.inner.delivery.shutdown().await?;
        let _ = self.inner.intents.close();
        Ok(())
    }
}

fn validate_topic_attributes(a: &TopicAttributes) -> Result<(), TopicError> {
    if a.display_name.chars().count() > 100 {
        return Err(param(
            "DisplayName",
            "DisplayName must be at most 100 characters",
        ));
    }
    if let Some(p) = &a.delivery_policy {
        delivery::DeliveryPolicy::from_topic_policy(p).map_err(|r| param("DeliveryPolicy", r))?;
    }
    if let Some(v) = a.opaque.get(TopicAttributes::SIGNATURE_VERSION) {
        SignatureVersion::parse(v).map_err(|r| param(TopicAttributes::SIGNATURE_VERSION, r))?;
    }
    if let Some(p) = &a.policy {
        if serde_json::from_str::<serde_json::Value>(p)
            .map(|v| !v.is_object())
            .unwrap_or(true)
        {
            return Err(param("Policy", "Policy must be a JSON object"));
        }
    }
    if a.content_based_deduplication && !a.fifo {
        return Err(param(
            "ContentBasedDeduplication",
            "Content-based deduplication can only be set for FIFO topics",
        ));
    }
    Ok(())
}

fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), TopicError> {
    if tags.len() > MAX_TAGS {
        return Err(param("Tags", format!("Could not complete request: tag quota of per resource exceeded (at most {MAX_TAGS})")));
    }
    for (k, v) in tags {
        if k.is_empty() || k.len() > 128 || v.len() > 256 {
            return Err(param(
                "Tags",
                "Tag keys must be 1 to 128 characters and values at most 256",
            ));
        }
    }
    Ok(())
}

/// Reads the intent log and returns the intents not closed by a `Done` record.
/// What replaying the intent log gives: the intents still open (by offset), and the FIFO
/// publishes still inside the deduplication window.
type ReplayedIntents = (BTreeMap<u64, Intent>, HashMap<DedupKey, DedupEntry>);

/// Replays the intent log: the intents still open, and the FIFO publishes still inside the
/// deduplication window at `now_ms`.
fn read_open_intents(log: &ferry_log::Log, now_ms: u64) -> Result<ReplayedIntents, TopicError> {
    let mut open: BTreeMap<u64, Intent> = BTreeMap::new();
    let mut dedup: HashMap<DedupKey, DedupEntry> = HashMap::new();
    let mut remember = |p: &Published, offset: u64| {
        let expiry = p.timestamp_ms + DEDUP_WINDOW_MS;
        if let (Some(d), Some(seq), true) = (
            &p.request.deduplication_id,
            &p.sequence_number,
            expiry > now_ms,
        ) {
            dedup.insert(
                (p.topic.clone(), d.clone()),
                (p.message_id.clone(), seq.clone(), expiry, offset),
            );
        }
    };
    let mut from = log.start_offset();
    let end = log.next_offset();
    while from < end {
        let entries = log
            .read(from, 4 * 1024 * 1024)
            .map_err(|e| BrokerError::Storage(format!("reading the topic intent log: {e}")))?;
        if entries.is_empty() {
            break;
        }
        for e in &entries {
            match serde_json::from_slice::<IntentRecord>(&e.payload) {
                Ok(IntentRecord::Intent { published, targets }) => {
                    remember(&published, e.offset);
                    open.insert(
                        e.offset,
                        Intent {
                            published,
                            targets,
                            in_flight: false,
                        },
                    );
                }
                Ok(IntentRecord::Done {
                    offset,
                    done,
                    complete,
                }) => {
                    if complete {
                        open.remove(&offset);
                    } else if let Some(i) = open.get_mut(&offset) {
                        i.targets.retain(|t| !done.contains(t));
                    }
                }
                Ok(IntentRecord::Deduplicated { published }) => remember(&published, e.offset),
                Err(err) => {
                    return Err(BrokerError::Storage(format!(
                        "topic intent log record at offset {} is not valid: {err}",
                        e.offset
                    ))
                    .into())
                }
            }
            from = e.next_offset();
        }
    }
    Ok((open, dedup))
}

#[cfg(test)]
mod tests;
