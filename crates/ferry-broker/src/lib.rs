//! Ferry's domain: queues (and later topics, streams) over `ferry-log`.
//!
//! Architecture invariant: this crate performs no network I/O and knows no wire format.
//! Front doors translate their protocol into calls on [`Broker`].
//!
//! # Design
//!
//! - **A queue is an event-sourced state machine over its own log**
//!   (`<data_dir>/queues/<name>.<incarnation>/log/`). Events: enqueued (with body), received
//!   (lease deadline and receive count), visibility changed, deleted, removed (expired,
//!   dropped, dead-lettered, moved) and purged; see `queue/event.rs` for the encoding.
//! - **Durability by ordering**: under the queue's mutex an operation decides, appends its events
//!   (offsets assigned synchronously) and applies them; then, without the lock, it waits for the
//!   log to be durable up to its own records before answering. A receive therefore never hands
//!   out a message whose `Enqueued` record is not durable. Log failures fail the queue
//!   (`Storage` errors until restart); the broker never pretends.
//! - **Memory**: per live message a 40-byte `Meta` (log offset of its
//!   body, deadlines, receive count, priority, group) in a paged table, plus an 8-byte ready-queue
//!   slot. Bodies stay on disk and are read on delivery.
//! - **Message identity**: each message has a per-queue *number* (1, 2, …). Receipt handles carry
//!   (queue incarnation, number, receive count) with a checksum; the receive count is the lease
//!   nonce, so a handle from an earlier delivery neither deletes nor extends the message.
//! - **Recovery**: a checkpoint of the persistent state (written atomically, never ahead of the
//!   durable log) plus a replay of the log after it. Checkpoints are taken by the maintenance
//!   thread every [`CHECKPOINT_EVERY_RECORDS`] records (or half the live count, if more) or
//!   [`CHECKPOINT_INTERVAL_MS`], and at shutdown.
//! - **Space**: segments below `min(checkpoint offset, oldest live message)` are dropped after
//!   each checkpoint and by each maintenance round; when only the checkpoint still needs the
//!   oldest segment, the round takes a checkpoint early (once the records since the last are an
//!   eighth of the live count), so segments go (and the log reuses their files) as soon as
//!   consumers are past them. When the oldest segments hold few live messages (at most half of
//!   their records, so disk stays within about twice the live data), those ready or delayed
//!   messages are re-appended ("relocated": same message id, receive count and group position,
//!   new number and location) so the segments can go. In-flight
//!   messages are never relocated, so receipt handles in use stay valid; a stale handle of a
//!   relocated message behaves like any stale handle.
//! - **Dead letters and moves** are copy-then-remove: the copy is appended to the target queue
//!   and made durable, then the source records the removal. A crash in between may duplicate a
//!   message, never lose one.
//! - **Maintenance**: one background thread (with its own small tokio runtime) runs timers
//!   (expiry, dead-lettering of expired messages), checkpoints, compaction, deletion of idle
//!   temporary queues and message move tasks. Long polls do not depend on it: each waiter sleeps
//!   until the next lease/delay deadline of its queue or a notification.
//!
//! # Semantics decisions
//!
//! - Retention expiry drops messages (counted as expired); per-message/queue TTL expiry moves
//!   them to the dead-letter queue when one is configured, else drops them.
//! - Dead-lettered messages keep their message id, body, attributes and receive count, and
//!   remember their source queue; move tasks reset the receive count to 0.
//! - Moves (dead-letter, move task, overflow) ignore the target's deduplication and length limit.
//! - FIFO receive-attempt ids are remembered for 5 minutes (at most 10,000 per queue, oldest
//!   forgotten first) in an `Attempted` event written with the receive's `Received` events and
//!   in checkpoints, so a retry after a restart gets the same messages and receipt handles.
//! - A change of a queue's `durability` attribute takes effect when the broker next opens.
//! - `max_length` counts every live message (visible, delayed, in flight).
//!
//! # Known limits
//!
//! - A checkpoint is encoded under the queue's lock (the file is written after releasing it):
//!   under 0.1 s per million live messages (0.12 s measured for encode + write + fsync), during
//!   which that queue's calls wait.
//! - The batch-level limits of SQS (total payload of a batch) are the front door's to enforce.
//! - FIFO throughput limits (`fifo_throughput_limit`) are validated and stored, not enforced.

pub mod error;
pub mod types;

mod catalog;
mod queue;
mod receipt;
pub mod stream;
pub mod topic;
pub mod validate;

pub use error::BrokerError;
pub use queue::uuid_text;
pub use types::*;

use catalog::{Catalog, MoveTaskRecord, QueueEntry};
use parking_lot::{Mutex, RwLock};
use queue::event::{Enqueued, RemoveReason};
use queue::state::Policy;
use queue::{Queue, SegmentReclaim};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Checkpoint a queue after this many log records (or half its live messages, if more)...
pub const CHECKPOINT_EVERY_RECORDS: u64 = 200_000;
/// ...or this long after the last checkpoint when anything changed.
pub const CHECKPOINT_INTERVAL_MS: u64 = 30_000;
/// How often the maintenance thread runs.
const MAINTENANCE_PERIOD: Duration = Duration::from_millis(100);
/// Most messages in one receive.
pub const MAX_RECEIVE_MESSAGES: u32 = 1000;
/// Most messages in one send, delete or visibility call.
pub const MAX_BATCH: usize = 1000;
/// Most messages in one peek.
pub const MAX_PEEK: usize = 1000;
/// Move-task rate limit range (messages per second), as SQS.
pub const MAX_MOVE_RATE: u32 = 500;
/// Messages moved per step of a move task or a dead-letter sweep.
const MOVE_BATCH: usize = 100;
/// Finished move tasks remembered per source queue.
const MAX_FINISHED_TASKS_PER_SOURCE: usize = 10;
/// How long `open` waits for a lock held by an instance that is still shutting down.
const LOCK_WAIT: Duration = Duration::from_secs(2);
const LOCK_FILE: &str = "LOCK";
const QUEUES_DIR: &str = "queues";

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

/// A clock that moves only when told to (tests and simulations).
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicU64);

impl ManualClock {
    pub fn new(now_ms: u64) -> ManualClock {
        ManualClock(std::sync::atomic::AtomicU64::new(now_ms))
    }
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn set(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
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
    /// Called after each write/fdatasync batch of every queue log (the server records the
    /// fsync latency histogram with it). Runs on a log's writer thread: keep it short.
    pub on_sync: Option<ferry_log::SyncObserver>,
}

impl BrokerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        BrokerConfig {
            data_dir: data_dir.into(),
            default_durability: ferry_log::Durability::Always,
            segment_bytes: 64 * 1024 * 1024,
            clock: Arc::new(SystemClock),
            on_sync: None,
        }
    }

    /// The log settings every queue log starts from (a queue's own durability attribute
    /// overrides `durability`).
    pub fn queue_log_defaults(&self) -> ferry_log::LogConfig {
        ferry_log::LogConfig {
            segment_bytes: self.segment_bytes,
            durability: self.default_durability,
            on_sync: self.on_sync.clone(),
            // Queue appends are small and each waits for its sync: zero-filled space makes
            // every sync cheaper (see `LogConfig::preallocate_bytes`).
            preallocate_bytes: QUEUE_PREALLOCATE_BYTES,
            ..ferry_log::LogConfig::default()
        }
    }
}

/// Most zero-filled space kept ahead of a queue log's writer.
const QUEUE_PREALLOCATE_BYTES: u64 = 4 << 20;

/// The broker: the catalog of queues and every queue operation. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    config: BrokerConfig,
    catalog: Mutex<Catalog>,
    queues: RwLock<BTreeMap<String, Arc<Queue>>>,
    shutting_down: AtomicBool,
    stop: Arc<AtomicBool>,
    maintenance: Mutex<Option<std::thread::JoinHandle<()>>>,
    runtime: Mutex<Option<tokio::runtime::Handle>>,
    /// Cancel flags of running move tasks, by handle.
    tasks: Mutex<HashMap<String, Arc<AtomicBool>>>,
    /// The data directory lock. Declared last so it is released after every queue log closed.
    _lock: std::fs::File,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Where moved messages go.
#[derive(Clone)]
enum Target {
    /// Dead-lettering: keep the receive count, remember the source.
    DeadLetter(String),
    /// A move task to a named queue (receive count reset).
    Queue(String),
    /// A move task back to each message's dead-letter source.
    Source,
}

fn storage(what: String) -> BrokerError {
    BrokerError::Storage(what)
}

fn status_of(s: &str) -> MoveTaskStatus {
    match s {
        "RUNNING" => MoveTaskStatus::Running,
        "COMPLETED" => MoveTaskStatus::Completed,
        "CANCELLING" => MoveTaskStatus::Cancelling,
        "CANCELLED" => MoveTaskStatus::Cancelled,
        _ => MoveTaskStatus::Failed,
    }
}

fn task_info(r: &MoveTaskRecord) -> MoveTaskInfo {
    MoveTaskInfo {
        task_handle: r.handle.clone(),
        source: r.source.clone(),
        destination: r.destination.clone(),
        max_per_second: r.max_per_second,
        status: status_of(&r.status),
        moved: r.moved,
        to_move: r.to_move,
        started_timestamp_ms: r.started_ms,
        failure_reason: r.failure_reason.clone(),
    }
}

impl Broker {
    /// Opens (and recovers) every queue under `config.data_dir`. Blocking; may take seconds.
    pub fn open(config: BrokerConfig) -> Result<Broker, BrokerError> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(dir.join(QUEUES_DIR))
            .map_err(|e| storage(format!("creating data directory {}: {e}", dir.display())))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| storage(format!("opening {}: {e}", lock_path.display())))?;
        let started = Instant::now();
        loop {
            match fs2::FileExt::try_lock_exclusive(&lock) {
                Ok(()) => break,
                Err(_) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(_) => {
                    return Err(storage(format!(
                        "data directory {} is locked by another Ferry process",
                        dir.display()
                    )))
                }
            }
        }
        let catalog = Catalog::load(&dir)?;
        // Remove directories of queues the catalog does not know (a crash during create or
        // delete).
        let known: std::collections::HashSet<String> = catalog
            .queues
            .iter()
            .map(|(n, e)| format!("{n}.{}", e.incarnation))
            .collect();
        if let Ok(rd) = std::fs::read_dir(dir.join(QUEUES_DIR)) {
            for ent in rd.flatten() {
                let name = ent.file_name().to_string_lossy().to_string();
                if !known.contains(&name) {
                    tracing::info!(dir = %ent.path().display(), "removing the directory of a deleted queue");
                    let _ = std::fs::remove_dir_all(ent.path());
                }
            }
        }
        let mut queues = BTreeMap::new();
        for (name, entry) in &catalog.queues {
            let q = Queue::open(
                name,
                entry.incarnation,
                queue_dir(&dir, name, entry.incarnation),
                entry.attributes.clone(),
                config.clock.clone(),
                &config.queue_log_defaults(),
            )?;
            queues.insert(name.clone(), Arc::new(q));
        }
        let inner = Arc::new(Inner {
            config,
            _lock: lock,
            catalog: Mutex::new(catalog),
            queues: RwLock::new(queues),
            shutting_down: AtomicBool::new(false),
            stop: Arc::new(AtomicBool::new(false)),
            maintenance: Mutex::new(None),
            runtime: Mutex::new(None),
            tasks: Mutex::new(HashMap::new()),
        });
        let broker = Broker { inner };
        broker.start_maintenance()?;
        broker.resume_move_tasks();
        Ok(broker)
    }

    fn start_maintenance(&self) -> Result<(), BrokerError> {
        let weak = Arc::downgrade(&self.inner);
        let stop = self.inner.stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ferry-broker-maintenance".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = tx.send(Ok(rt.handle().clone()));
                rt.block_on(maintenance_loop(weak, stop));
            })
            .map_err(|e| storage(format!("starting the maintenance thread: {e}")))?;
        match rx.recv() {
            Ok(Ok(handle)) => *self.inner.runtime.lock() = Some(handle),
            Ok(Err(e)) => return Err(storage(format!("starting the maintenance runtime: {e}"))),
            Err(_) => return Err(storage("the maintenance thread died at start".into())),
        }
        *self.inner.maintenance.lock() = Some(thread);
        Ok(())
    }

    fn now(&self) -> u64 {
        self.inner.config.clock.now_ms()
    }

    fn check_running(&self) -> Result<(), BrokerError> {
        if self.inner.shutting_down.load(Ordering::Acquire) {
            Err(BrokerError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    fn queue(&self, name: &str) -> Result<Arc<Queue>, BrokerError> {
        self.check_running()?;
        let q = self
            .inner
            .queues
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::QueueNotFound(name.to_string()))?;
        q.touch();
        Ok(q)
    }

    /// Maps a closed-queue error to "not found" when the queue was deleted meanwhile.
    fn gone(&self, q: &Queue, e: BrokerError) -> BrokerError {
        if e == BrokerError::ShuttingDown && !self.inner.shutting_down.load(Ordering::Acquire) {
            BrokerError::QueueNotFound(q.name.clone())
        } else {
            e
        }
    }

    fn policy(&self, attrs: &QueueAttributes) -> Policy {
        let dlq = attrs
            .redrive_policy
            .as_ref()
            .filter(|r| self.inner.queues.read().contains_key(&r.dead_letter_queue));
        Policy {
            retention_ms: attrs.message_retention_seconds as u64 * 1000,
            max_receive_count: dlq.map(|r| r.max_receive_count),
            has_dead_letter_queue: dlq.is_some(),
        }
    }

    // ------------------------------------------------------------------ catalog

    /// Checks the parts of `attrs` that involve other queues.
    fn check_cross(
        &self,
        catalog: &Catalog,
        name: &str,
        attrs: &QueueAttributes,
    ) -> Result<(), BrokerError> {
        if let Some(r) = &attrs.redrive_policy {
            let bad = |reason: String| BrokerError::InvalidAttributeValue {
                attribute: "RedrivePolicy".into(),
                reason,
            };
            if r.dead_letter_queue == name {
                return Err(bad("a queue cannot be its own dead-letter queue".into()));
            }
            let Some(dlq) = catalog.queues.get(&r.dead_letter_queue) else {
                return Err(bad(format!(
                    "dead-letter queue {:?} does not exist",
                    r.dead_letter_queue
                )));
            };
            if dlq.attributes.fifo != attrs.fifo {
                return Err(bad("the dead-letter queue of a FIFO queue must be FIFO, of a standard queue standard".into()));
            }
            let allowed = match &dlq.attributes.redrive_allow_policy {
                None | Some(RedriveAllowPolicy::AllowAll) => true,
                Some(RedriveAllowPolicy::DenyAll) => false,
                Some(RedriveAllowPolicy::ByQueue(list)) => list.iter().any(|s| s == name),
            };
            if !allowed {
                return Err(BrokerError::RedriveNotAllowed(r.dead_letter_queue.clone()));
            }
        }
        Ok(())
    }

    /// Creates a queue. Idempotent when the attributes are equal; `QueueAlreadyExists` otherwise.
    pub fn create_queue(
        &self,
        name: &str,
        attributes: QueueAttributes,
        tags: BTreeMap<String, String>,
    ) -> Result<QueueInfo, BrokerError> {
        self.check_running()?;
        validate::queue_name(name, attributes.fifo)?;
        validate::attributes(&attributes)?;
        validate::tags(&tags)?;
        let mut catalog = self.inner.catalog.lock();
        if let Some(e) = catalog.queues.get(name) {
            if e.attributes == attributes {
                drop(catalog);
                return self.get_queue(name);
            }
            return Err(BrokerError::QueueAlreadyExists(name.to_string()));
        }
        self.check_cross(&catalog, name, &attributes)?;
        let incarnation = catalog.next_incarnation;
        let dir = queue_dir(&self.inner.config.data_dir, name, incarnation);
        let q = Queue::open(
            name,
            incarnation,
            dir.clone(),
            attributes.clone(),
            self.inner.config.clock.clone(),
            &self.inner.config.queue_log_defaults(),
        )?;
        let now = self.now();
        let mut next = catalog.clone();
        next.next_incarnation += 1;
        next.queues.insert(
            name.to_string(),
            QueueEntry {
                attributes,
                tags,
                created_ms: now,
                modified_ms: now,
                incarnation,
            },
        );
        if let Err(e) = next.save(&self.inner.config.data_dir) {
            let _ = q.close();
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        *catalog = next;
        self.inner
            .queues
            .write()
            .insert(name.to_string(), Arc::new(q));
        drop(catalog);
        self.get_queue(name)
    }

    pub fn delete_queue(&self, name: &str) -> Result<(), BrokerError> {
        self.check_running()?;
        let mut catalog = self.inner.catalog.lock();
        if !catalog.queues.contains_key(name) {
            return Err(BrokerError::QueueNotFound(name.to_string()));
        }
        let mut next = catalog.clone();
        next.queues.remove(name);
        for t in next.move_tasks.iter_mut() {
            if t.source == name && (t.status == "RUNNING" || t.status == "CANCELLING") {
                t.status = "FAILED".into();
                t.failure_reason = Some("the source queue was deleted".into());
                if let Some(flag) = self.inner.tasks.lock().get(&t.handle) {
                    flag.store(true, Ordering::Release);
                }
            }
        }
        next.save(&self.inner.config.data_dir)?;
        *catalog = next;
        let q = self.inner.queues.write().remove(name);
        drop(catalog);
        if let Some(q) = q {
            let _ = q.close();
            if let Err(e) = std::fs::remove_dir_all(q.path()) {
                tracing::warn!(dir = %q.path().display(), error = %e, "removing a deleted queue's directory");
            }
        }
        Ok(())
    }

    /// Queue names in lexicographic order, optionally filtered by prefix.
    pub fn list_queues(&self, prefix: Option<&str>) -> Vec<String> {
        self.inner
            .catalog
            .lock()
            .queues
            .keys()
            .filter(|n| prefix.is_none_or(|p| n.starts_with(p)))
            .cloned()
            .collect()
    }

    /// A queue's attributes alone: a shared copy, without the stats and tags `get_queue`
    /// computes. For per-request checks on hot paths (a door validating a send).
    pub fn queue_attributes(&self, name: &str) -> Result<Arc<QueueAttributes>, BrokerError> {
        Ok(self.queue(name)?.attrs())
    }

    pub fn get_queue(&self, name: &str) -> Result<QueueInfo, BrokerError> {
        let q = self.queue(name)?;
        let entry = self
            .inner
            .catalog
            .lock()
            .queues
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::QueueNotFound(name.to_string()))?;
        Ok(QueueInfo {
            name: name.to_string(),
            attributes: entry.attributes,
            tags: entry.tags,
            created_timestamp_ms: entry.created_ms,
            last_modified_timestamp_ms: entry.modified_ms,
            stats: q.stats(),
        })
    }

    /// Applies `change` to a copy of the attributes, validates the result, then stores it.
    pub fn update_queue_attributes(
        &self,
        name: &str,
        change: impl FnOnce(&mut QueueAttributes),
    ) -> Result<QueueInfo, BrokerError> {
        let q = self.queue(name)?;
        {
            let mut catalog = self.inner.catalog.lock();
            let entry = catalog
                .queues
                .get(name)
                .ok_or_else(|| BrokerError::QueueNotFound(name.to_string()))?;
            let mut attrs = entry.attributes.clone();
            change(&mut attrs);
            if attrs.fifo != entry.attributes.fifo {
                return Err(BrokerError::InvalidAttributeValue {
                    attribute: "FifoQueue".into(),
                    reason: "cannot be changed after creation".into(),
                });
            }
            validate::attributes(&attrs)?;
            self.check_cross(&catalog, name, &attrs)?;
            if attrs != entry.attributes {
                let mut next = catalog.clone();
                if let Some(e) = next.queues.get_mut(name) {
                    e.attributes = attrs.clone();
                    e.modified_ms = self.now();
                }
                next.save(&self.inner.config.data_dir)?;
                *catalog = next;
                q.set_attrs(attrs);
                q.notify.notify_waiters();
            }
        }
        self.get_queue(name)
    }

    fn edit_tags(
        &self,
        name: &str,
        f: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Result<(), BrokerError> {
        self.queue(name)?;
        let mut catalog = self.inner.catalog.lock();
        let mut next = catalog.clone();
        let entry = next
            .queues
            .get_mut(name)
            .ok_or_else(|| BrokerError::QueueNotFound(name.to_string()))?;
        f(&mut entry.tags);
        validate::tags(&entry.tags)?;
        next.save(&self.inner.config.data_dir)?;
        *catalog = next;
        Ok(())
    }

    pub fn tag_queue(&self, name: &str, tags: BTreeMap<String, String>) -> Result<(), BrokerError> {
        validate::tags(&tags)?;
        self.edit_tags(name, |t| t.extend(tags))
    }

    pub fn untag_queue(&self, name: &str, keys: &[String]) -> Result<(), BrokerError> {
        self.edit_tags(name, |t| {
            for k in keys {
                t.remove(k);
            }
        })
    }

    /// Queues whose redrive policy names `dead_letter_queue`.
    pub fn dead_letter_source_queues(
        &self,
        dead_letter_queue: &str,
    ) -> Result<Vec<String>, BrokerError> {
        self.queue(dead_letter_queue)?;
        Ok(self
            .inner
            .catalog
            .lock()
            .queues
            .iter()
            .filter(|(_, e)| {
                e.attributes
                    .redrive_policy
                    .as_ref()
                    .is_some_and(|r| r.dead_letter_queue == dead_letter_queue)
            })
            .map(|(n, _)| n.clone())
            .collect())
    }

    // ------------------------------------------------------------------ messages

    /// Sends messages. The outer error is for the whole call (missing queue, storage failure);
    /// each entry has its own result, in input order. Returns once every accepted entry is durable.
    pub async fn send(
        &self,
        queue: &str,
        messages: Vec<SendMessage>,
    ) -> Result<Vec<Result<SendOutcome, BrokerError>>, BrokerError> {
        let q = self.queue(queue)?;
        if messages.len() > MAX_BATCH {
            return Err(BrokerError::InvalidParameter {
                parameter: "Entries".into(),
                reason: format!("at most {MAX_BATCH} messages per call"),
            });
        }
        let attrs = q.attrs();
        let items: Vec<Result<SendMessage, BrokerError>> = messages
            .into_iter()
            .map(|m| validate::message(&m, &attrs).map(|_| m))
            .collect();
        let policy = self.policy(&attrs);
        let (outcomes, off, dead) = q.send(items, &policy).map_err(|e| self.gone(&q, e))?;
        if outcomes
            .iter()
            .any(|o| o.as_ref().is_ok_and(|o| !o.deduplicated))
        {
            q.notify.notify_waiters();
        }
        if !dead.is_empty() {
            self.dead_letter(&q, &attrs, dead).await;
        }
        q.durable(off).await?;
        Ok(outcomes)
    }

    /// Receives up to `max_messages`, waiting up to `wait` for the first one (long polling).
    pub async fn receive(
        &self,
        queue: &str,
        request: ReceiveRequest,
    ) -> Result<Vec<ReceivedMessage>, BrokerError> {
        let q = self.queue(queue)?;
        if request.max_messages == 0 || request.max_messages > MAX_RECEIVE_MESSAGES {
            return Err(BrokerError::InvalidParameter {
                parameter: "MaxNumberOfMessages".into(),
                reason: format!(
                    "{} is outside 1..={MAX_RECEIVE_MESSAGES}",
                    request.max_messages
                ),
            });
        }
        if let Some(w) = request.wait_seconds {
            if w > validate::MAX_WAIT_SECONDS {
                return Err(BrokerError::InvalidParameter {
                    parameter: "WaitTimeSeconds".into(),
                    reason: format!("{w} is outside 0..=20"),
                });
            }
        }
        if let Some(v) = request.visibility_timeout_seconds {
            if v > validate::MAX_VISIBILITY_TIMEOUT_SECONDS {
                return Err(BrokerError::InvalidParameter {
                    parameter: "VisibilityTimeout".into(),
                    reason: format!("{v} is outside 0..=43200"),
                });
            }
        }
        if let Some(a) = &request.receive_request_attempt_id {
            validate::id("ReceiveRequestAttemptId", a)?;
        }
        let attrs = q.attrs();
        let visibility_ms = request
            .visibility_timeout_seconds
            .unwrap_or(attrs.visibility_timeout_seconds) as u64
            * 1000;
        let wait = request
            .wait_seconds
            .unwrap_or(attrs.receive_message_wait_seconds);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait as u64);
        let attempt = if attrs.fifo {
            request.receive_request_attempt_id.as_deref()
        } else {
            None
        };
        loop {
            let notified = q.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.shutting_down.load(Ordering::Acquire) {
                return Ok(Vec::new());
            }
            let policy = self.policy(&attrs);
            let (deliveries, off, dead) = q
                .receive(
                    request.max_messages as usize,
                    visibility_ms,
                    attempt,
                    &policy,
                )
                .map_err(|e| self.gone(&q, e))?;
            let moved_some = !dead.is_empty();
            if moved_some {
                self.dead_letter(&q, &attrs, dead).await;
            }
            if !deliveries.is_empty() {
                // The bodies are read while the leases are being synced: their records are
                // durable already (the messages were visible), and nothing is returned before
                // the leases are.
                let received = q.build_received(deliveries);
                q.durable(off).await?;
                return received;
            }
            if moved_some {
                continue;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let mut until = deadline;
            if let Some(t) = q.next_deadline() {
                let ms = t.saturating_sub(q.now()).max(1);
                until = until.min(now + Duration::from_millis(ms));
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(until) => {}
            }
            if q.is_closed() {
                return if self.inner.shutting_down.load(Ordering::Acquire) {
                    Ok(Vec::new())
                } else {
                    Err(BrokerError::QueueNotFound(q.name.clone()))
                };
            }
        }
    }

    /// Deletes by receipt handle. A stale handle (from an earlier delivery) succeeds without deleting.
    pub async fn delete_messages(
        &self,
        queue: &str,
        receipt_handles: Vec<String>,
    ) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
        let q = self.queue(queue)?;
        if receipt_handles.len() > MAX_BATCH {
            return Err(BrokerError::InvalidParameter {
                parameter: "Entries".into(),
                reason: format!("at most {MAX_BATCH} entries per call"),
            });
        }
        let (results, off) = q.delete(&receipt_handles).map_err(|e| self.gone(&q, e))?;
        q.durable(off).await?;
        Ok(results)
    }

    /// Changes visibility timeouts (seconds, 0..=43200). 0 makes the message visible at once.
    pub async fn change_visibility(
        &self,
        queue: &str,
        changes: Vec<VisibilityChange>,
    ) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
        let q = self.queue(queue)?;
        if changes.len() > MAX_BATCH {
            return Err(BrokerError::InvalidParameter {
                parameter: "Entries".into(),
                reason: format!("at most {MAX_BATCH} entries per call"),
            });
        }
        let (results, off, wake) = q
            .change_visibility(&changes)
            .map_err(|e| self.gone(&q, e))?;
        q.durable(off).await?;
        if wake {
            q.notify.notify_waiters();
        }
        Ok(results)
    }

    /// Up to `max` messages in delivery order, without changing any state.
    pub fn peek(&self, queue: &str, max: usize) -> Result<Vec<Message>, BrokerError> {
        let q = self.queue(queue)?;
        q.peek(max.min(MAX_PEEK)).map_err(|e| self.gone(&q, e))
    }

    /// Deletes every message; returns how many were removed.
    pub async fn purge(&self, queue: &str) -> Result<u64, BrokerError> {
        let q = self.queue(queue)?;
        let (n, off) = q.purge().map_err(|e| self.gone(&q, e))?;
        q.durable(off).await?;
        Ok(n)
    }

    // ------------------------------------------------------------------ moving messages

    /// Dead-letters `numbers` (already `Moving` in `q`). Failures are logged and the messages
    /// return to the source queue.
    async fn dead_letter(&self, q: &Arc<Queue>, attrs: &QueueAttributes, numbers: Vec<u64>) {
        let Some(r) = &attrs.redrive_policy else {
            // No dead-letter queue any more (overflow with DeadLetterOldest): drop them.
            if let Ok(off) = q.finish_move(&numbers, RemoveReason::Dropped) {
                let _ = q.durable(off).await;
            }
            return;
        };
        if let Err(e) = move_out(
            &self.inner,
            q,
            numbers,
            Target::DeadLetter(r.dead_letter_queue.clone()),
            RemoveReason::DeadLettered,
        )
        .await
        {
            tracing::warn!(queue = %q.name, error = %e, "dead-lettering failed; the messages stay in the source");
        }
    }

    /// Starts moving messages out of a dead-letter queue: to each message's source queue, or to
    /// `destination` when given, at most `max_per_second` per second when given.
    pub fn start_move_task(
        &self,
        source: &str,
        destination: Option<&str>,
        max_per_second: Option<u32>,
    ) -> Result<MoveTaskInfo, BrokerError> {
        let src = self.queue(source)?;
        if let Some(d) = destination {
            self.queue(d)?;
            if d == source {
                return Err(BrokerError::InvalidParameter {
                    parameter: "DestinationArn".into(),
                    reason: "the destination must differ from the source".into(),
                });
            }
        }
        if let Some(r) = max_per_second {
            if r == 0 || r > MAX_MOVE_RATE {
                return Err(BrokerError::InvalidParameter {
                    parameter: "MaxNumberOfMessagesPerSecond".into(),
                    reason: format!("{r} is outside 1..={MAX_MOVE_RATE}"),
                });
            }
        }
        let mut catalog = self.inner.catalog.lock();
        let is_dlq = catalog.queues.values().any(|e| {
            e.attributes
                .redrive_policy
                .as_ref()
                .is_some_and(|r| r.dead_letter_queue == source)
        });
        if !is_dlq {
            return Err(BrokerError::NotADeadLetterQueue(source.to_string()));
        }
        if catalog
            .move_tasks
            .iter()
            .any(|t| t.source == source && (t.status == "RUNNING" || t.status == "CANCELLING"))
        {
            return Err(BrokerError::MoveTaskAlreadyRunning(source.to_string()));
        }
        let stats = src.stats();
        let record = MoveTaskRecord {
            handle: hex::encode(rand::random::<[u8; 16]>()),
            source: source.to_string(),
            destination: destination.map(str::to_string),
            max_per_second,
            status: "RUNNING".into(),
            moved: 0,
            to_move: stats.visible + stats.delayed + stats.in_flight,
            started_ms: self.now(),
            failure_reason: None,
        };
        let mut next = catalog.clone();
        // Keep a bounded history per source.
        let finished: Vec<usize> = next
            .move_tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.source == source)
            .map(|(i, _)| i)
            .collect();
        if finished.len() >= MAX_FINISHED_TASKS_PER_SOURCE {
            let drop_n = finished.len() + 1 - MAX_FINISHED_TASKS_PER_SOURCE;
            let victims: Vec<usize> = finished.into_iter().take(drop_n).collect();
            let mut i = 0;
            next.move_tasks.retain(|_| {
                let keep = !victims.contains(&i);
                i += 1;
                keep
            });
        }
        next.move_tasks.push(record.clone());
        next.save(&self.inner.config.data_dir)?;
        *catalog = next;
        drop(catalog);
        self.spawn_task(record.handle.clone());
        Ok(task_info(&record))
    }

    fn spawn_task(&self, handle: String) {
        let flag = Arc::new(AtomicBool::new(false));
        self.inner.tasks.lock().insert(handle.clone(), flag.clone());
        let weak = Arc::downgrade(&self.inner);
        if let Some(rt) = self.inner.runtime.lock().clone() {
            rt.spawn(run_move_task(weak, handle, flag));
        }
    }

    fn resume_move_tasks(&self) {
        let handles: Vec<String> = {
            let mut catalog = self.inner.catalog.lock();
            let mut changed = false;
            for t in catalog.move_tasks.iter_mut() {
                if t.status == "CANCELLING" {
                    t.status = "CANCELLED".into();
                    changed = true;
                }
            }
            if changed {
                if let Err(e) = catalog.save(&self.inner.config.data_dir) {
                    tracing::warn!(error = %e, "saving the catalog while resuming move tasks");
                }
            }
            catalog
                .move_tasks
                .iter()
                .filter(|t| t.status == "RUNNING")
                .map(|t| t.handle.clone())
                .collect()
        };
        for h in handles {
            self.spawn_task(h);
        }
    }

    pub fn list_move_tasks(&self, source: &str) -> Result<Vec<MoveTaskInfo>, BrokerError> {
        self.queue(source)?;
        let catalog = self.inner.catalog.lock();
        let mut out: Vec<MoveTaskInfo> = catalog
            .move_tasks
            .iter()
            .filter(|t| t.source == source)
            .map(task_info)
            .collect();
        out.reverse();
        Ok(out)
    }

    /// The source queue of the move task with this handle, if there is one.
    pub fn move_task_source(&self, task_handle: &str) -> Option<String> {
        let catalog = self.inner.catalog.lock();
        catalog
            .move_tasks
            .iter()
            .find(|t| t.handle == task_handle)
            .map(|t| t.source.clone())
    }

    pub fn cancel_move_task(&self, task_handle: &str) -> Result<MoveTaskInfo, BrokerError> {
        self.check_running()?;
        let mut catalog = self.inner.catalog.lock();
        let Some(i) = catalog
            .move_tasks
            .iter()
            .position(|t| t.handle == task_handle)
        else {
            return Err(BrokerError::MoveTaskNotFound(task_handle.to_string()));
        };
        if catalog.move_tasks[i].status != "RUNNING" {
            return Err(BrokerError::MoveTaskNotFound(task_handle.to_string()));
        }
        let mut next = catalog.clone();
        next.move_tasks[i].status = "CANCELLING".into();
        next.save(&self.inner.config.data_dir)?;
        *catalog = next;
        if let Some(flag) = self.inner.tasks.lock().get(task_handle) {
            flag.store(true, Ordering::Release);
        }
        Ok(task_info(&catalog.move_tasks[i]))
    }

    // ------------------------------------------------------------------ stats, shutdown

    /// Counts and counters of every queue, for metrics and dashboards.
    pub fn stats(&self) -> Vec<(String, QueueStats)> {
        self.inner
            .queues
            .read()
            .iter()
            .map(|(n, q)| (n.clone(), q.stats()))
            .collect()
    }

    /// Bytes used on disk by all queue logs and checkpoints.
    pub fn disk_bytes(&self) -> u64 {
        self.inner
            .queues
            .read()
            .values()
            .map(|q| q.disk_bytes())
            .sum()
    }

    /// Wakes every long poll (they return empty), refuses new work, flushes and checkpoints.
    pub async fn shutdown(&self) -> Result<(), BrokerError> {
        if self.inner.shutting_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let queues: Vec<Arc<Queue>> = self.inner.queues.read().values().cloned().collect();
        for q in &queues {
            q.notify.notify_waiters();
        }
        self.inner.stop.store(true, Ordering::Release);
        for flag in self.inner.tasks.lock().values() {
            flag.store(true, Ordering::Release);
        }
        let thread = self.inner.maintenance.lock().take();
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(t) = thread {
                let _ = t.join();
            }
            let mut first_err = None;
            for q in inner.queues.read().values() {
                if let Err(e) = q.checkpoint() {
                    tracing::warn!(queue = %q.name, error = %e, "checkpoint at shutdown");
                    first_err.get_or_insert(e);
                }
                if let Err(e) = q.close() {
                    first_err.get_or_insert(e);
                }
            }
            match first_err {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })
        .await
        .map_err(|e| storage(format!("shutdown task failed: {e}")))?
    }
}

fn queue_dir(data_dir: &Path, name: &str, incarnation: u64) -> PathBuf {
    data_dir
        .join(QUEUES_DIR)
        .join(format!("{name}.{incarnation}"))
}

/// Copies `numbers` (already `Moving` in `src`) to their target and then removes them from the
/// source. Returns how many moved. On failure the rest return to the source.
async fn move_out(
    inner: &Inner,
    src: &Arc<Queue>,
    numbers: Vec<u64>,
    target: Target,
    reason: RemoveReason,
) -> Result<u64, BrokerError> {
    let outgoing = match src.outgoing(&numbers) {
        Ok(o) => o,
        Err(e) => {
            src.abort_move(&numbers);
            return Err(e);
        }
    };
    let mut by_dest: BTreeMap<String, Vec<(u64, Enqueued)>> = BTreeMap::new();
    let mut unroutable = Vec::new();
    for o in outgoing {
        let dest = match &target {
            Target::DeadLetter(d) | Target::Queue(d) => Some(d.clone()),
            Target::Source => o.message.dead_letter_source.clone(),
        };
        let mut m = o.message;
        match &target {
            Target::DeadLetter(_) => m.dead_letter_source = Some(src.name.clone()),
            _ => {
                m.receive_count = 0;
                m.first_receive_ms = 0;
                m.dead_letter_source = None;
            }
        }
        m.ttl_expire_ms = 0;
        match dest {
            Some(d) => by_dest.entry(d).or_default().push((o.number, m)),
            None => unroutable.push(o.number),
        }
    }
    let mut moved = 0;
    let mut failure = None;
    for (dest, msgs) in by_dest {
        let numbers: Vec<u64> = msgs.iter().map(|(n, _)| *n).collect();
        let q = inner.queues.read().get(&dest).cloned();
        let result = match q {
            None => Err(BrokerError::QueueNotFound(dest.clone())),
            Some(q) => {
                let copied = async {
                    let off = q.enqueue_moved(msgs.into_iter().map(|(_, m)| m).collect())?;
                    q.notify.notify_waiters();
                    q.durable(off).await
                };
                match copied.await {
                    Ok(()) => {
                        let off = src.finish_move(&numbers, reason)?;
                        src.durable(off).await
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(()) => moved += numbers.len() as u64,
            Err(e) => {
                src.abort_move(&numbers);
                failure.get_or_insert(e);
            }
        }
    }
    if !unroutable.is_empty() {
        src.abort_move(&unroutable);
        failure.get_or_insert(BrokerError::InvalidParameter {
            parameter: "SourceArn".into(),
            reason: "a message has no dead-letter source queue to return to; give a destination"
                .into(),
        });
    }
    match failure {
        Some(e) if moved == 0 => Err(e),
        Some(e) => {
            tracing::warn!(queue = %src.name, error = %e, "part of a move failed");
            Ok(moved)
        }
        None => Ok(moved),
    }
}

async fn run_move_task(weak: Weak<Inner>, handle: String, cancel: Arc<AtomicBool>) {
    let mut last_save = Instant::now();
    let mut window_start = Instant::now();
    let mut in_window = 0u32;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let record = {
            let catalog = inner.catalog.lock();
            catalog
                .move_tasks
                .iter()
                .find(|t| t.handle == handle)
                .cloned()
        };
        let Some(record) = record else { return };
        if record.status != "RUNNING" && record.status != "CANCELLING" {
            return;
        }
        let finish = |status: &str, reason: Option<String>, moved: u64| {
            let mut catalog = inner.catalog.lock();
            let mut next = catalog.clone();
            if let Some(t) = next.move_tasks.iter_mut().find(|t| t.handle == handle) {
                t.status = status.to_string();
                t.failure_reason = reason;
                t.moved = moved;
            }
            if let Err(e) = next.save(&inner.config.data_dir) {
                tracing::warn!(error = %e, "saving a move task's status");
            }
            *catalog = next;
            inner.tasks.lock().remove(&handle);
        };
        if cancel.load(Ordering::Acquire) {
            if !inner.shutting_down.load(Ordering::Acquire) && !inner.stop.load(Ordering::Acquire) {
                finish("CANCELLED", None, record.moved);
            } else {
                // Shutdown: stays RUNNING in the catalog and resumes at the next open.
                let mut catalog = inner.catalog.lock();
                if let Some(t) = catalog.move_tasks.iter_mut().find(|t| t.handle == handle) {
                    t.moved = record.moved;
                }
            }
            return;
        }
        if record.moved >= record.to_move {
            finish("COMPLETED", None, record.moved);
            return;
        }
        let mut batch = (record.to_move - record.moved).min(MOVE_BATCH as u64) as usize;
        if let Some(rate) = record.max_per_second {
            if window_start.elapsed() >= Duration::from_secs(1) {
                window_start = Instant::now();
                in_window = 0;
            }
            let left = rate.saturating_sub(in_window) as usize;
            if left == 0 {
                drop(inner);
                tokio::time::sleep(Duration::from_secs(1).saturating_sub(window_start.elapsed()))
                    .await;
                continue;
            }
            batch = batch.min(left);
        }
        // Taken only now: the rate-limit sleep above must not keep the queue (and its log) open.
        let Some(src) = inner.queues.read().get(&record.source).cloned() else {
            finish(
                "FAILED",
                Some("the source queue was deleted".into()),
                record.moved,
            );
            return;
        };
        let numbers = match src.take_for_move(batch) {
            Ok(n) => n,
            Err(e) => {
                finish("FAILED", Some(e.to_string()), record.moved);
                return;
            }
        };
        if numbers.is_empty() {
            finish("COMPLETED", None, record.moved);
            return;
        }
        let target = match &record.destination {
            Some(d) => Target::Queue(d.clone()),
            None => Target::Source,
        };
        match move_out(&inner, &src, numbers, target, RemoveReason::Moved).await {
            Ok(n) => {
                in_window += n as u32;
                let mut catalog = inner.catalog.lock();
                let mut save = false;
                if let Some(t) = catalog.move_tasks.iter_mut().find(|t| t.handle == handle) {
                    t.moved += n;
                    save = last_save.elapsed() >= Duration::from_secs(1);
                }
                if save {
                    last_save = Instant::now();
                    if let Err(e) = catalog.save(&inner.config.data_dir) {
                        tracing::warn!(error = %e, "saving move task progress");
                    }
                }
            }
            Err(e) => {
                finish("FAILED", Some(e.to_string()), record.moved);
                return;
            }
        }
        drop(inner);
        tokio::task::yield_now().await;
    }
}

async fn maintenance_loop(weak: Weak<Inner>, stop: Arc<AtomicBool>) {
    loop {
        tokio::time::sleep(MAINTENANCE_PERIOD).await;
        if stop.load(Ordering::Acquire) {
            return;
        }
        let Some(inner) = weak.upgrade() else { return };
        let broker = Broker { inner };
        broker.maintain().await;
    }
}

impl Broker {
    /// One maintenance round over every queue.
    async fn maintain(&self) {
        let queues: Vec<Arc<Queue>> = self.inner.queues.read().values().cloned().collect();
        let now = self.now();
        for q in queues {
            if self.inner.stop.load(Ordering::Acquire) || q.is_closed() {
                return;
            }
            let attrs = q.attrs();
            if let Some(idle) = attrs.idle_delete_seconds {
                let last = q.last_activity_ms.load(Ordering::Relaxed);
                if now.saturating_sub(last) >= idle as u64 * 1000 {
                    tracing::info!(queue = %q.name, "deleting idle temporary queue");
                    if let Err(e) = self.delete_queue(&q.name) {
                        tracing::warn!(queue = %q.name, error = %e, "deleting idle queue");
                    }
                    continue;
                }
            }
            let policy = self.policy(&attrs);
            match q.tick(&policy) {
                Ok((_, woke, dead)) => {
                    if woke {
                        q.notify.notify_waiters();
                    }
                    if !dead.is_empty() {
                        self.dead_letter(&q, &attrs, dead).await;
                    }
                }
                Err(_) => continue,
            }
            let (records, last_ms) = q.records_since_checkpoint();
            // A checkpoint costs O(live messages): take one when the log tail to replay has
            // grown to half the live count (at least CHECKPOINT_EVERY_RECORDS), so checkpoint
            // work stays proportional to the write rate and replay stays short. Segments are
            // dropped as soon as no live message is in them (the log reuses their files for
            // its next segments instead of writing zeros): by a truncation alone, or by a
            // checkpoint once the tail is an eighth of the live count.
            let live = q.live();
            let reclaim = q.oldest_segment_reclaim();
            let checkpoint = records >= CHECKPOINT_EVERY_RECORDS.max(live / 2)
                || (records > 0 && now.saturating_sub(last_ms) >= CHECKPOINT_INTERVAL_MS)
                || (records > live / 8 && reclaim == SegmentReclaim::Checkpoint);
            if checkpoint || reclaim == SegmentReclaim::Truncate {
                let qc = q.clone();
                let retention_ms = policy.retention_ms;
                let r = tokio::task::spawn_blocking(move || {
                    if !checkpoint {
                        return qc.drop_unneeded_segments();
                    }
                    let _ = qc.compact(retention_ms);
                    qc.checkpoint()
                })
                .await;
                if let Ok(Err(e)) = r {
                    let what = if checkpoint {
                        "checkpoint failed"
                    } else {
                        "dropping log segments failed"
                    };
                    tracing::warn!(queue = %q.name, error = %e, "{what}");
                }
            }
        }
    }

    /// Forces a checkpoint (and log truncation) of every queue now. Blocking.
    pub fn checkpoint_all(&self) -> Result<(), BrokerError> {
        let queues: Vec<Arc<Queue>> = self.inner.queues.read().values().cloned().collect();
        for q in queues {
            let retention_ms = q.attrs().message_retention_seconds as u64 * 1000;
            q.compact(retention_ms)?;
            q.checkpoint()?;
        }
        Ok(())
    }

    /// Runs one maintenance round now (timers, expiry, dead-lettering, idle deletion,
    /// checkpoints when due). The background thread does this every 100 ms; tests with a
    /// [`ManualClock`] call it after moving the clock.
    pub async fn run_maintenance(&self) {
        self.maintain().await;
    }
}
