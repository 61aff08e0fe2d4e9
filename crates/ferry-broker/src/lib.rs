//! Ferry's domain: queues (and later topics, streams) over `ferry-log`.
//!
//! Architecture invariant: this crate performs no network I/O and knows no wire format.
//! Front doors translate their protocol into calls on [`Broker`].
//!
//! CONTRACT SCAFFOLD: the public types and method signatures below are the agreed API between
//! the broker and the front doors. Bodies marked `todo!()` are being implemented.

pub mod error;
pub mod types;

pub use error::BrokerError;
pub use types::*;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Wall-clock source, injectable so tests and simulations control time.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// How the broker is opened.
#[derive(Clone)]
pub struct BrokerConfig {
    /// Root data directory (`./ferry-data` by default in the server).
    pub data_dir: PathBuf,
    /// Durability for queues that do not override it.
    pub default_durability: ferry_log::Durability,
    /// Segment size for queue logs.
    pub segment_bytes: u64,
    pub clock: Arc<dyn Clock>,
}

impl BrokerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        BrokerConfig {
            data_dir: data_dir.into(),
            default_durability: ferry_log::Durability::Always,
            segment_bytes: 64 * 1024 * 1024,
            clock: Arc::new(SystemClock),
        }
    }
}

/// The broker: the catalog of queues and every queue operation. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    _inner: Arc<()>,
}

impl Broker {
    /// Opens (and recovers) every queue under `config.data_dir`. Blocking; may take seconds.
    pub fn open(_config: BrokerConfig) -> Result<Broker, BrokerError> {
        todo!()
    }

    /// Creates a queue. Idempotent when the attributes are equal; `QueueAlreadyExists` otherwise.
    pub fn create_queue(
        &self,
        _name: &str,
        _attributes: QueueAttributes,
        _tags: BTreeMap<String, String>,
    ) -> Result<QueueInfo, BrokerError> {
        todo!()
    }
    pub fn delete_queue(&self, _name: &str) -> Result<(), BrokerError> {
        todo!()
    }
    /// Queue names in lexicographic order, optionally filtered by prefix.
    pub fn list_queues(&self, _prefix: Option<&str>) -> Vec<String> {
        todo!()
    }
    pub fn get_queue(&self, _name: &str) -> Result<QueueInfo, BrokerError> {
        todo!()
    }
    /// Applies `change` to a copy of the attributes, validates the result, then stores it.
    pub fn update_queue_attributes(
        &self,
        _name: &str,
        _change: impl FnOnce(&mut QueueAttributes),
    ) -> Result<QueueInfo, BrokerError> {
        todo!()
    }
    pub fn tag_queue(&self, _name: &str, _tags: BTreeMap<String, String>) -> Result<(), BrokerError> {
        todo!()
    }
    pub fn untag_queue(&self, _name: &str, _keys: &[String]) -> Result<(), BrokerError> {
        todo!()
    }
    /// Queues whose redrive policy names `dead_letter_queue`.
    pub fn dead_letter_source_queues(&self, _dead_letter_queue: &str) -> Result<Vec<String>, BrokerError> {
        todo!()
    }

    /// Sends messages. The outer error is for the whole call (missing queue, storage failure);
    /// each entry has its own result, in input order. Returns once every accepted entry is durable.
    pub async fn send(
        &self,
        _queue: &str,
        _messages: Vec<SendMessage>,
    ) -> Result<Vec<Result<SendOutcome, BrokerError>>, BrokerError> {
        todo!()
    }
    /// Receives up to `max_messages`, waiting up to `wait` for the first one (long polling).
    pub async fn receive(
        &self,
        _queue: &str,
        _request: ReceiveRequest,
    ) -> Result<Vec<ReceivedMessage>, BrokerError> {
        todo!()
    }
    /// Deletes by receipt handle. A stale handle (from an earlier delivery) succeeds without deleting.
    pub async fn delete_messages(
        &self,
        _queue: &str,
        _receipt_handles: Vec<String>,
    ) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
        todo!()
    }
    /// Changes visibility timeouts (seconds, 0..=43200). 0 makes the message visible at once.
    pub async fn change_visibility(
        &self,
        _queue: &str,
        _changes: Vec<VisibilityChange>,
    ) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
        todo!()
    }
    /// Up to `max` messages in delivery order, without changing any state.
    pub fn peek(&self, _queue: &str, _max: usize) -> Result<Vec<Message>, BrokerError> {
        todo!()
    }
    /// Deletes every message; returns how many were removed.
    pub async fn purge(&self, _queue: &str) -> Result<u64, BrokerError> {
        todo!()
    }

    /// Starts moving messages out of a dead-letter queue: to each message's source queue, or to
    /// `destination` when given, at most `max_per_second` per second when given.
    pub fn start_move_task(
        &self,
        _source: &str,
        _destination: Option<&str>,
        _max_per_second: Option<u32>,
    ) -> Result<MoveTaskInfo, BrokerError> {
        todo!()
    }
    pub fn list_move_tasks(&self, _source: &str) -> Result<Vec<MoveTaskInfo>, BrokerError> {
        todo!()
    }
    pub fn cancel_move_task(&self, _task_handle: &str) -> Result<MoveTaskInfo, BrokerError> {
        todo!()
    }

    /// Counts and counters of every queue, for metrics and dashboards.
    pub fn stats(&self) -> Vec<(String, QueueStats)> {
        todo!()
    }
    /// Bytes used on disk by all queue logs and checkpoints.
    pub fn disk_bytes(&self) -> u64 {
        todo!()
    }
    /// Wakes every long poll (they return empty), refuses new work, flushes and checkpoints.
    pub async fn shutdown(&self) -> Result<(), BrokerError> {
        todo!()
    }
}

#[allow(dead_code)]
fn _unused(_: Duration) {}
