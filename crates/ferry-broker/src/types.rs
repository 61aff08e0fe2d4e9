//! Public value types of the broker API: queue attributes, messages, stats.

use bytes::Bytes;
use std::collections::BTreeMap;

/// Where a queue's dead letters go.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RedrivePolicy {
    /// Name of the dead-letter queue (same kind: FIFO to FIFO, standard to standard).
    pub dead_letter_queue: String,
    /// 1..=1000. A message received more than this many times moves on its next receive.
    pub max_receive_count: u32,
}

/// Which source queues may use this queue as their dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(
    tag = "permission",
    content = "source_queues",
    rename_all = "snake_case"
)]
pub enum RedriveAllowPolicy {
    AllowAll,
    DenyAll,
    ByQueue(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeduplicationScope {
    Queue,
    MessageGroup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FifoThroughputLimit {
    PerQueue,
    PerMessageGroupId,
}

/// What happens when a bounded queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    /// New sends fail with `QueueFull`.
    RejectNew,
    /// The oldest message is dropped (counted) to make room.
    DropOldest,
    /// The oldest message moves to the dead-letter queue (dropped when there is none).
    DeadLetterOldest,
}

/// Per-queue durability. `None` in attributes means "the server default".
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueDurability {
    Always,
    IntervalMs(u32),
    Never,
}

/// A queue's configuration. Limits are enforced by `validate` in the broker.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueAttributes {
    /// 0..=43200 s, default 30.
    pub visibility_timeout_seconds: u32,
    /// 0..=900 s, default 0.
    pub delay_seconds: u32,
    /// 60..=1_209_600 s, default 345_600 (4 days).
    pub message_retention_seconds: u32,
    /// 1024..=1_048_576 bytes, default 262_144.
    pub maximum_message_size: u32,
    /// 0..=20 s, default 0: the long-poll wait when a receive does not give one.
    pub receive_message_wait_seconds: u32,
    pub redrive_policy: Option<RedrivePolicy>,
    pub redrive_allow_policy: Option<RedriveAllowPolicy>,
    /// FIFO queue: name must end in `.fifo`. Fixed at creation.
    pub fifo: bool,
    pub content_based_deduplication: bool,
    pub deduplication_scope: DeduplicationScope,
    pub fifo_throughput_limit: FifoThroughputLimit,
    /// Bounded length (standard and FIFO queues): None = unbounded.
    pub max_length: Option<u64>,
    pub overflow_policy: OverflowPolicy,
    /// Default per-message time to live in seconds (None = only retention applies).
    pub message_ttl_seconds: Option<u32>,
    /// Temporary queue: deleted after this many seconds without any API call on it.
    pub idle_delete_seconds: Option<u32>,
    pub durability: Option<QueueDurability>,
    /// Attributes a front door stores and reports without the broker interpreting them
    /// (for example SQS `KmsMasterKeyId`, `SqsManagedSseEnabled`, `Policy`).
    pub opaque: BTreeMap<String, String>,
}

impl Default for QueueAttributes {
    fn default() -> Self {
        QueueAttributes {
            visibility_timeout_seconds: 30,
            delay_seconds: 0,
            message_retention_seconds: 345_600,
            maximum_message_size: 262_144,
            receive_message_wait_seconds: 0,
            redrive_policy: None,
            redrive_allow_policy: None,
            fifo: false,
            content_based_deduplication: false,
            deduplication_scope: DeduplicationScope::Queue,
            fifo_throughput_limit: FifoThroughputLimit::PerQueue,
            max_length: None,
            overflow_policy: OverflowPolicy::RejectNew,
            message_ttl_seconds: None,
            idle_delete_seconds: None,
            durability: None,
            opaque: BTreeMap::new(),
        }
    }
}

/// A typed message attribute (SQS semantics: `String`, `Number`, `Binary`, each with an
/// optional custom suffix such as `Number.float` or `Binary.jpg`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAttributeValue {
    pub data_type: String,
    pub string_value: Option<String>,
    pub binary_value: Option<Bytes>,
}

/// One message to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendMessage {
    pub body: Bytes,
    pub attributes: BTreeMap<String, MessageAttributeValue>,
    /// System attributes such as `AWSTraceHeader`.
    pub system_attributes: BTreeMap<String, MessageAttributeValue>,
    /// Per-message delay in seconds (0..=900); refused on FIFO queues.
    pub delay_seconds: Option<u32>,
    /// Required on FIFO queues.
    pub group_id: Option<String>,
    pub deduplication_id: Option<String>,
    /// 0..=9, higher first; standard queues only. Default 0.
    pub priority: Option<u8>,
    /// Per-message time to live in seconds.
    pub ttl_seconds: Option<u32>,
    /// Who sent it (principal or account id), reported as SenderId.
    pub sender_id: Option<String>,
    /// The MD5 of `body`, when the sender computed it (the SQS door does, for its answer): kept
    /// with the message so that receives need not compute it again. Never checked here: only
    /// a door that computed it from this very body sets it.
    pub body_md5: Option<[u8; 16]>,
}

/// The result of one accepted send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOutcome {
    /// UUID text, as SQS message ids are.
    pub message_id: String,
    /// FIFO queues: the monotonic sequence number.
    pub sequence_number: Option<u64>,
    /// FIFO queues: true when deduplication matched an earlier send (nothing was appended).
    pub deduplicated: bool,
}

/// A message as stored and delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub message_id: String,
    pub body: Bytes,
    pub attributes: BTreeMap<String, MessageAttributeValue>,
    pub system_attributes: BTreeMap<String, MessageAttributeValue>,
    pub sent_timestamp_ms: u64,
    /// Receive count including the current delivery.
    pub receive_count: u32,
    /// 0 when never received.
    pub first_receive_timestamp_ms: u64,
    pub sender_id: Option<String>,
    pub group_id: Option<String>,
    pub deduplication_id: Option<String>,
    pub sequence_number: Option<u64>,
    pub priority: u8,
    /// Set when the message was dead-lettered: the queue it came from.
    pub dead_letter_source: Option<String>,
    /// The MD5 of `body` if its sender supplied it (see [`SendMessage::body_md5`]).
    pub body_md5: Option<[u8; 16]>,
}

/// A delivered message with the handle that deletes it or changes its visibility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message: Message,
    pub receipt_handle: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiveRequest {
    /// 1..=10 through SQS; the broker accepts 1..=1000.
    pub max_messages: u32,
    /// Overrides the queue's visibility timeout for these deliveries.
    pub visibility_timeout_seconds: Option<u32>,
    /// Long-poll wait; None = the queue's `receive_message_wait_seconds`.
    pub wait_seconds: Option<u32>,
    /// FIFO: a retry with the same attempt id within 5 minutes returns the same messages.
    pub receive_request_attempt_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibilityChange {
    pub receipt_handle: String,
    pub visibility_timeout_seconds: u32,
}

/// Point-in-time counts and lifetime counters of one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    /// Age of the oldest live message, 0 when empty.
    pub oldest_age_ms: u64,
    pub sent_total: u64,
    pub received_total: u64,
    pub deleted_total: u64,
    pub expired_total: u64,
    pub dead_lettered_total: u64,
    pub dropped_total: u64,
    pub disk_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    pub name: String,
    pub attributes: QueueAttributes,
    pub tags: BTreeMap<String, String>,
    pub created_timestamp_ms: u64,
    pub last_modified_timestamp_ms: u64,
    pub stats: QueueStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MoveTaskStatus {
    Running,
    Completed,
    Cancelling,
    Cancelled,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MoveTaskInfo {
    pub task_handle: String,
    pub source: String,
    /// None: each message returns to the queue it was dead-lettered from.
    pub destination: Option<String>,
    pub max_per_second: Option<u32>,
    pub status: MoveTaskStatus,
    pub moved: u64,
    /// Messages in the source when the task started.
    pub to_move: u64,
    pub started_timestamp_ms: u64,
    pub failure_reason: Option<String>,
}
