//! One queue: its log, its state machine and the durability ordering between them.
//!
//! Every state change follows one pattern, under the queue's mutex:
//! 1. decide (plan) with the pure state machine,
//! 2. append the resulting events to the log (offsets are assigned synchronously, in call order),
//! 3. apply them to the in-memory state with those offsets,
//!
//! then, with the mutex released, wait until the log is durable up to the appended offset
//! before answering. A receive waits for its own `Received` record, which implies the earlier
//! `Enqueued` record is durable too (the log is a prefix), so nothing un-durable is ever
//! delivered. When the log fails (I/O error, poisoned) the queue is *failed*: the in-memory state
//! may be ahead of the disk, so every later call returns `Storage` until a restart recovers.
//!
//! On disk: `<queue dir>/log/` (the event log) and `<queue dir>/checkpoint` (a snapshot of the
//! persistent state at some log offset; recovery = checkpoint + replay of the log after it).

pub mod event;
pub mod state;

use crate::catalog::AtomicFile;
use crate::error::BrokerError;
use crate::receipt::ReceiptHandle;
use crate::types::*;
use crate::Clock;
use event::{decode_enqueued, decode_record, encode_record, Enqueued, Event, RemoveReason};
use ferry_log::{Entry, Log, LogConfig, LogError};
use parking_lot::{Mutex, MutexGuard};
use state::{
    dedup_key, DedupEntry, HandleMatch, Meta, MsgState, Policy, QueueState, DEDUP_WINDOW_MS,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

pub const CHECKPOINT_FILE: &str = "checkpoint";
pub const LOG_DIR: &str = "log";
/// Largest log record: a maximal message (1 MiB counted) plus system attributes and ids.
pub const MAX_RECORD_BYTES: u32 = 4 * 1024 * 1024;
/// Bytes read per step while replaying the log.
const REPLAY_CHUNK_BYTES: usize = 8 * 1024 * 1024;
/// Most messages relocated by one compaction step.
pub const MAX_RELOCATE_PER_STEP: usize = 65_536;
const CHECKPOINT_MAGIC: &[u8; 4] = b"FQCK";

/// A message chosen for delivery, with what is needed to build the response.
pub struct Delivery {
    pub number: u64,
    pub meta: Meta,
}

/// A message moving out of this queue: number and the Enqueued record to copy elsewhere.
pub struct Outgoing {
    pub number: u64,
    pub message: Enqueued,
}

/// What dropping a queue's oldest log segment takes, once no live message is in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentReclaim {
    /// A live message is in it (or it is the only segment).
    Nothing,
    /// The last checkpoint still replays from it: a new checkpoint, then the truncation.
    Checkpoint,
    /// Only the truncation.
    Truncate,
}

pub struct Core {
    pub state: QueueState,
    pub attrs: Arc<QueueAttributes>,
    failed: Option<String>,
    pub checkpoint_offset: u64,
    pub checkpoint_bytes: u64,
    pub checkpoint_ms: u64,
}

pub struct Queue {
    pub name: String,
    pub incarnation: u64,
    pub dir: PathBuf,
    log: Log,
    core: Mutex<Core>,
    /// Wakes long polls when messages may have become visible (and at shutdown).
    pub notify: Notify,
    clock: Arc<dyn Clock>,
    pub last_activity_ms: AtomicU64,
    closed: AtomicBool,
    checkpoint_lock: Mutex<()>,
}

/// 16 bytes in the 8-4-4-4-12 hex form of a UUID (lower case). Written straight into its
/// buffer: every message id handed out goes through here.
pub fn uuid_text(id: &[u8; 16]) -> String {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::from_bytes(*id)
        .hyphenated()
        .encode_lower(&mut buf)
        .to_owned()
}

pub fn new_message_id() -> [u8; 16] {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    b
}

fn log_durability(
    attrs: &QueueAttributes,
    default: &ferry_log::Durability,
) -> ferry_log::Durability {
    match attrs.durability {
        None => *default,
        Some(QueueDurability::Always) => ferry_log::Durability::Always,
        Some(QueueDurability::IntervalMs(ms)) => {
            ferry_log::Durability::Interval(std::time::Duration::from_millis(ms as u64))
        }
        Some(QueueDurability::Never) => ferry_log::Durability::Never,
    }
}

/// Builds the public message from its stored record and current metadata.
pub fn to_message(e: Enqueued, meta: &Meta) -> Message {
    Message {
        message_id: uuid_text(&e.message_id),
        body: e.body,
        attributes: e.attributes,
        system_attributes: e.system_attributes,
        sent_timestamp_ms: e.sent_ms,
        receive_count: meta.receive_count,
        first_receive_timestamp_ms: meta.first_receive_ms(),
        sender_id: e.sender,
        group_id: e.group,
        deduplication_id: e.dedup_id,
        sequence_number: (e.sequence > 0).then_some(e.sequence),
        priority: e.priority,
        dead_letter_source: e.dead_letter_source,
        body_md5: e.body_md5,
    }
}

impl Queue {
    /// Opens (creating if needed) and recovers a queue: checkpoint, then replay of the log tail.
    pub fn open(
        name: &str,
        incarnation: u64,
        dir: PathBuf,
        attrs: QueueAttributes,
        clock: Arc<dyn Clock>,
        log_defaults: &LogConfig,
    ) -> Result<Queue, BrokerError> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| BrokerError::Storage(format!("creating {}: {e}", dir.display())))?;
        let cfg = LogConfig {
            durability: log_durability(&attrs, &log_defaults.durability),
            max_entry_bytes: MAX_RECORD_BYTES,
            ..log_defaults.clone()
        };
        let log = Log::open(dir.join(LOG_DIR), cfg)
            .map_err(|e| BrokerError::Storage(format!("queue {name:?}: opening its log: {e}")))?;
        let now = clock.now_ms();
        let cp_path = dir.join(CHECKPOINT_FILE);
        let (mut state, cp_offset, cp_bytes) = match std::fs::read(&cp_path) {
            Ok(bytes) => {
                let st = read_checkpoint(&bytes).map_err(|e| {
                    BrokerError::Storage(format!(
                        "checkpoint {} is corrupt: {e}",
                        cp_path.display()
                    ))
                })?;
                let off = st.applied_offset;
                (st, off, bytes.len() as u64)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (QueueState::new(attrs.fifo), 0, 0)
            }
            Err(e) => {
                return Err(BrokerError::Storage(format!(
                    "reading {}: {e}",
                    cp_path.display()
                )))
            }
        };
        if state.fifo != attrs.fifo {
            return Err(BrokerError::Storage(format!(
                "queue {name:?}: checkpoint {} disagrees with the catalog about FIFO",
                cp_path.display()
            )));
        }
        state.dedup_by_group = attrs.deduplication_scope == DeduplicationScope::MessageGroup;
        let next = log.next_offset();
        if state.applied_offset > next {
            // The log lost a tail the checkpoint had seen (only possible without fsync).
            tracing::warn!(
                queue = name,
                checkpoint = state.applied_offset,
                log_end = next,
                "log shorter than checkpoint; dropping messages beyond the log end"
            );
            state.forget_beyond(next);
        }
        let start = log.start_offset();
        if state.applied_offset < start {
            return Err(BrokerError::Storage(format!(
                "queue {name:?}: log {} starts at offset {start} but the checkpoint needs {}",
                dir.join(LOG_DIR).display(),
                state.applied_offset
            )));
        }
        // Replay.
        let mut from = state.applied_offset;
        while from < next {
            let entries = log.read(from, REPLAY_CHUNK_BYTES).map_err(|e| {
                BrokerError::Storage(format!("queue {name:?}: replaying its log at {from}: {e}"))
            })?;
            if entries.is_empty() {
                break;
            }
            for en in entries {
                let events = decode_record(&en.payload).map_err(|e| {
                    BrokerError::Storage(format!(
                        "queue {name:?}: record at offset {} of {} is corrupt: {e}",
                        en.offset,
                        dir.join(LOG_DIR).display()
                    ))
                })?;
                state.apply(en.offset, events, now);
                from = en.offset + en.offset_count.max(1) as u64;
            }
        }
        state.rebuild(now);
        state.prune_dedup(now);
        Ok(Queue {
            name: name.to_string(),
            incarnation,
            dir,
            log,
            core: Mutex::new(Core {
                state,
                attrs: Arc::new(attrs),
                failed: None,
                checkpoint_offset: cp_offset,
                checkpoint_bytes: cp_bytes,
                checkpoint_ms: now,
            }),
            notify: Notify::new(),
            clock,
            last_activity_ms: AtomicU64::new(now),
            closed: AtomicBool::new(false),
            checkpoint_lock: Mutex::new(()),
        })
    }

    pub fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn touch(&self) {
        self.last_activity_ms.store(self.now(), Ordering::Relaxed);
    }

    /// Locks the core; fails when the queue failed or was closed.
    pub fn lock(&self) -> Result<MutexGuard<'_, Core>, BrokerError> {
        let core = self.core.lock();
        if let Some(f) = &core.failed {
            return Err(BrokerError::Storage(f.clone()));
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(BrokerError::ShuttingDown);
        }
        Ok(core)
    }

    pub fn attrs(&self) -> Arc<QueueAttributes> {
        self.core.lock().attrs.clone()
    }

    pub fn set_attrs(&self, attrs: QueueAttributes) {
        let mut core = self.core.lock();
        core.state.dedup_by_group = attrs.deduplication_scope == DeduplicationScope::MessageGroup;
        core.attrs = Arc::new(attrs);
    }

    fn fail(&self, core: &mut Core, what: &str, e: &LogError) -> BrokerError {
        let msg = format!("queue {:?}: {what}: {e}", self.name);
        tracing::error!(queue = %self.name, error = %e, "{what}; the queue is failed until restart");
        core.failed = Some(msg.clone());
        BrokerError::Storage(msg)
    }

    /// Appends records and applies them. Returns the offset to wait for.
    pub fn commit(
        &self,
        core: &mut Core,
        records: Vec<Vec<Event>>,
        now: u64,
    ) -> Result<u64, BrokerError> {
        if records.is_empty() {
            return Ok(0);
        }
        let entries: Vec<Entry> = records
            .iter()
            .map(|r| Entry::new(now as i64, encode_record(r)))
            .collect();
        let appended = match self.log.append(&entries) {
            Ok(a) => a,
            Err(e) => return Err(self.fail(core, "appending to its log", &e)),
        };
        let mut offset = appended.base_offset;
        for (r, en) in records.into_iter().zip(&entries) {
            core.state.apply(offset, r, now);
            offset += en.offset_count.max(1) as u64;
        }
        Ok(appended.next_offset)
    }

    /// Waits until every record before `offset` is durable.
    pub async fn durable(&self, offset: u64) -> Result<(), BrokerError> {
        if offset == 0 {
            return Ok(());
        }
        match self.log.wait_durable(offset).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let mut core = self.core.lock();
                Err(self.fail(&mut core, "syncing its log", &e))
            }
        }
    }

    pub fn durable_blocking(&self, offset: u64) -> Result<(), BrokerError> {
        if offset == 0 {
            return Ok(());
        }
        self.log.wait_durable_blocking(offset).map_err(|e| {
            let mut core = self.core.lock();
            self.fail(&mut core, "syncing its log", &e)
        })
    }

    /// Reads the stored records of several messages, in the order given; `None` for a record
    /// that is gone. Records appended together (a sent batch) share one `pread`.
    pub fn read_messages(&self, locs: &[u64]) -> Result<Vec<Option<Enqueued>>, BrokerError> {
        let entries = self.log.read_entries(locs).map_err(|e| {
            BrokerError::Storage(format!("queue {:?}: reading messages: {e}", self.name))
        })?;
        entries
            .into_iter()
            .zip(locs)
            .map(|(entry, loc)| {
                entry
                    .map(|en| {
                        decode_enqueued(&en.payload).map_err(|e| {
                            BrokerError::Storage(format!(
                                "queue {:?}: message record at offset {loc} is corrupt: {e}",
                                self.name
                            ))
                        })
                    })
                    .transpose()
            })
            .collect()
    }

    // ------------------------------------------------------------------ timers

    /// Processes due leases and delays, and expirations. Returns the offset to wait for, whether
    /// messages became visible, and messages to dead-letter.
    pub fn tick_locked(
        &self,
        core: &mut Core,
        policy: &Policy,
        now: u64,
    ) -> Result<(u64, bool, Vec<u64>), BrokerError> {
        let woke = core.state.advance(now);
        let (drop, dead) = core.state.collect_expired(now, policy);
        let off = if drop.is_empty() {
            0
        } else {
            self.commit(core, vec![drop], now)?
        };
        Ok((off, woke, dead))
    }

    pub fn tick(&self, policy: &Policy) -> Result<(u64, bool, Vec<u64>), BrokerError> {
        let now = self.now();
        let mut core = self.lock()?;
        core.state.prune_dedup(now);
        core.state.prune_attempts(now);
        self.tick_locked(&mut core, policy, now)
    }

    /// The earliest pending lease/delay/TTL deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        self.core.lock().state.earliest_timer()
    }

    // ------------------------------------------------------------------ send

    /// Plans, appends and applies a batch of sends. `items` are pre-validated (`Err` entries are
    /// passed through untouched). Returns per-entry outcomes, the offset to wait for, and
    /// messages to dead-letter (DeadLetterOldest overflow, expiry).
    #[allow(clippy::type_complexity)]
    pub fn send(
        &self,
        items: Vec<Result<SendMessage, BrokerError>>,
        policy: &Policy,
    ) -> Result<(Vec<Result<SendOutcome, BrokerError>>, u64, Vec<u64>), BrokerError> {
        let now = self.now();
        let mut guard = self.lock()?;
        let core = &mut *guard;
        let (off0, _, mut dead) = self.tick_locked(core, policy, now)?;
        let attrs = core.attrs.clone();
        let fifo = attrs.fifo;
        let mut outcomes = Vec::with_capacity(items.len());
        let mut removals = Vec::new();
        let mut enqueues: Vec<Vec<Event>> = Vec::new();
        let mut flushed = 0;
        'items: for item in items {
            let m = match item {
                Ok(m) => m,
                Err(e) => {
                    outcomes.push(Err(e));
                    continue;
                }
            };
            let mut dedup_id = m.deduplication_id.clone();
            let mut key = None;
            if fifo {
                if dedup_id.is_none() {
                    use sha2::Digest;
                    dedup_id = Some(hex::encode(sha2::Sha256::digest(&m.body)));
                }
                let scope = if attrs.deduplication_scope == DeduplicationScope::MessageGroup {
                    m.group_id.as_deref()
                } else {
                    None
                };
                let k = dedup_key(scope, dedup_id.as_deref().unwrap_or(""));
                if let Some(e) = core.state.dedup_lookup(&k, now) {
                    outcomes.push(Ok(SendOutcome {
                        message_id: uuid_text(&e.message_id),
                        sequence_number: Some(e.sequence),
                        deduplicated: true,
                    }));
                    continue;
                }
                key = Some(k);
            }
            if let Some(max) = attrs.max_length {
                if core.state.length() + enqueues.len() as u64 >= max && !enqueues.is_empty() {
                    // Earlier entries of this batch may be the oldest: apply them first.
                    let mut records = Vec::with_capacity(enqueues.len() + 1);
                    if !removals.is_empty() {
                        records.push(std::mem::take(&mut removals));
                    }
                    records.append(&mut enqueues);
                    flushed = flushed.max(self.commit(core, records, now)?);
                }
                while core.state.length() >= max {
                    if attrs.overflow_policy == OverflowPolicy::RejectNew {
                        outcomes.push(Err(BrokerError::QueueFull {
                            queue: self.name.clone(),
                            max_length: max,
                        }));
                        continue 'items;
                    }
                    let Some(victim) = core.state.take_oldest() else {
                        outcomes.push(Err(BrokerError::QueueFull {
                            queue: self.name.clone(),
                            max_length: max,
                        }));
                        continue 'items;
                    };
                    if attrs.overflow_policy == OverflowPolicy::DeadLetterOldest
                        && policy.has_dead_letter_queue
                    {
                        dead.push(victim);
                    } else {
                        removals.push(Event::Removed {
                            number: victim,
                            reason: RemoveReason::Dropped,
                        });
                    }
                }
            }
            let message_id = new_message_id();
            let number = core.state.alloc_number();
            let sequence = if fifo { core.state.alloc_sequence() } else { 0 };
            if let Some(k) = key {
                core.state.dedup_reserve(
                    k,
                    DedupEntry {
                        message_id,
                        sequence,
                        expires_ms: now + DEDUP_WINDOW_MS,
                    },
                );
            }
            let delay = m.delay_seconds.unwrap_or(attrs.delay_seconds) as u64;
            let ttl = m
                .ttl_seconds
                .or(attrs.message_ttl_seconds)
                .map(|t| t as u64 * 1000);
            let ttl_expire_ms = match ttl {
                Some(t) if t < policy.retention_ms => now + t,
                _ => 0,
            };
            outcomes.push(Ok(SendOutcome {
                message_id: uuid_text(&message_id),
                sequence_number: fifo.then_some(sequence),
                deduplicated: false,
            }));
            enqueues.push(vec![Event::Enqueued(Box::new(Enqueued {
                number,
                message_id,
                sent_ms: now,
                visible_at_ms: if delay > 0 { now + delay * 1000 } else { 0 },
                ttl_expire_ms,
                priority: m.priority.unwrap_or(0),
                receive_count: 0,
                first_receive_ms: 0,
                sequence,
                relocated_from: 0,
                group: m.group_id,
                dedup_id: if fifo { dedup_id } else { None },
                sender: m.sender_id,
                dead_letter_source: None,
                attributes: m.attributes,
                system_attributes: m.system_attributes,
                body: m.body,
                body_md5: m.body_md5,
            }))]);
        }
        let mut records = Vec::with_capacity(enqueues.len() + 1);
        if !removals.is_empty() {
            records.push(removals);
        }
        records.extend(enqueues);
        let off = self.commit(core, records, now)?;
        Ok((outcomes, off.max(off0).max(flushed), dead))
    }

    /// Enqueues messages moved from another queue (dead-lettering, move tasks, overflow),
    /// keeping their id and body; no deduplication or length limit applies.
    pub fn enqueue_moved(&self, messages: Vec<Enqueued>) -> Result<u64, BrokerError> {
        let now = self.now();
        let mut core = self.lock()?;
        let fifo = core.state.fifo;
        let mut records = Vec::with_capacity(messages.len());
        for mut m in messages {
            m.number = core.state.alloc_number();
            m.sequence = if fifo { core.state.alloc_sequence() } else { 0 };
            if !fifo {
                m.dedup_id = None;
            } else if m.group.is_none() {
                m.group = Some("default".to_string());
            }
            if fifo {
                m.priority = 0;
            }
            m.relocated_from = 0;
            m.sent_ms = m.sent_ms.min(now);
            m.visible_at_ms = 0;
            records.push(vec![Event::Enqueued(Box::new(m))]);
        }
        self.commit(&mut core, records, now)
    }

    /// Reads the records of `Moving` messages for a move out of this queue. Messages that left
    /// meanwhile are skipped.
    pub fn outgoing(&self, numbers: &[u64]) -> Result<Vec<Outgoing>, BrokerError> {
        let locs: Vec<(u64, Meta)> = {
            let core = self.core.lock();
            numbers
                .iter()
                .filter_map(|&n| {
                    core.state
                        .meta(n)
                        .filter(|m| m.state == MsgState::Moving)
                        .map(|m| (n, *m))
                })
                .collect()
        };
        let records = self.read_messages(&locs.iter().map(|(_, m)| m.loc).collect::<Vec<_>>())?;
        Ok(locs
            .into_iter()
            .zip(records)
            .filter_map(|((n, meta), record)| {
                record.map(|mut message| {
                    message.receive_count = meta.receive_count;
                    message.first_receive_ms = meta.first_receive_ms();
                    Outgoing { number: n, message }
                })
            })
            .collect())
    }

    /// Records that moved messages left (after their copies are durable elsewhere).
    pub fn finish_move(&self, numbers: &[u64], reason: RemoveReason) -> Result<u64, BrokerError> {
        let now = self.now();
        let mut core = self.lock()?;
        let events: Vec<Event> = numbers
            .iter()
            .filter(|&&n| {
                core.state
                    .meta(n)
                    .is_some_and(|m| m.state == MsgState::Moving)
            })
            .map(|&n| Event::Removed { number: n, reason })
            .collect();
        if events.is_empty() {
            return Ok(0);
        }
        self.commit(&mut core, vec![events], now)
    }

    /// A move failed: the messages become deliverable again.
    pub fn abort_move(&self, numbers: &[u64]) {
        let now = self.now();
        let mut core = self.core.lock();
        for &n in numbers {
            core.state.abort_move(n, now);
        }
        drop(core);
        self.notify.notify_waiters();
    }

    /// Marks up to `max` deliverable messages as moving, for a move task.
    pub fn take_for_move(&self, max: usize) -> Result<Vec<u64>, BrokerError> {
        let now = self.now();
        let mut core = self.lock()?;
        core.state.advance(now);
        let policy = Policy {
            retention_ms: u64::MAX,
            max_receive_count: Some(0),
            has_dead_letter_queue: false,
        };
        // With max_receive_count 0 every ready candidate is routed to `dead` and marked Moving.
        let (events, dead) = core.state.plan_receive(max, now, 0, &policy);
        debug_assert!(events.is_empty());
        Ok(dead)
    }

    // ------------------------------------------------------------------ receive

    /// One receive attempt (no waiting). Returns deliveries, the offset to wait for, and
    /// messages to dead-letter.
    pub fn receive(
        &self,
        max: usize,
        visibility_ms: u64,
        attempt_id: Option<&str>,
        policy: &Policy,
    ) -> Result<(Vec<Delivery>, u64, Vec<u64>), BrokerError> {
        let now = self.now();
        let mut guard = self.lock()?;
        let core = &mut *guard;
        if let Some(id) = attempt_id {
            if let Some(a) = core.state.attempt(id, now) {
                let deliveries: Vec<Delivery> = a
                    .deliveries
                    .iter()
                    .filter(|&&(n, rc)| {
                        core.state.handle_match(n, rc, now) == HandleMatch::InFlight
                    })
                    .filter_map(|&(n, _)| {
                        core.state.meta(n).map(|m| Delivery {
                            number: n,
                            meta: *m,
                        })
                    })
                    .collect();
                if !deliveries.is_empty() {
                    return Ok((deliveries, core.state.applied_offset, Vec::new()));
                }
            }
        }
        let (off0, _, mut dead) = self.tick_locked(core, policy, now)?;
        let (mut events, dead2) = core.state.plan_receive(max, now, visibility_ms, policy);
        dead.extend(dead2);
        let delivered: Vec<(u64, u32)> = events
            .iter()
            .filter_map(|e| match e {
                Event::Received {
                    number,
                    receive_count,
                    ..
                } => Some((*number, *receive_count)),
                _ => None,
            })
            .collect();
        if let Some(id) = attempt_id.filter(|_| !delivered.is_empty()) {
            // Durable with the deliveries, so a retry after a restart gets them again.
            events.push(Event::Attempted {
                attempt_id: id.to_string(),
                expires_ms: now + DEDUP_WINDOW_MS,
                deliveries: delivered.clone(),
            });
        }
        let off = if events.is_empty() {
            0
        } else {
            self.commit(core, vec![events], now)?
        };
        let deliveries: Vec<Delivery> = delivered
            .iter()
            .filter_map(|&(n, _)| {
                core.state.meta(n).map(|m| Delivery {
                    number: n,
                    meta: *m,
                })
            })
            .collect();
        Ok((deliveries, off.max(off0), dead))
    }

    /// Reads bodies for deliveries (their `Received` records may still be syncing; the caller
    /// returns them only once those are durable).
    pub fn build_received(
        &self,
        deliveries: Vec<Delivery>,
    ) -> Result<Vec<ReceivedMessage>, BrokerError> {
        let locs: Vec<u64> = deliveries.iter().map(|d| d.meta.loc).collect();
        let records = self.read_messages(&locs)?;
        let mut out = Vec::with_capacity(deliveries.len());
        for (d, record) in deliveries.into_iter().zip(records) {
            if let Some(e) = record {
                let handle = ReceiptHandle {
                    incarnation: self.incarnation,
                    number: d.number,
                    receive_count: d.meta.receive_count,
                }
                .encode();
                out.push(ReceivedMessage {
                    message: to_message(e, &d.meta),
                    receipt_handle: handle,
                });
            }
        }
        Ok(out)
    }

    // ------------------------------------------------------------------ delete / visibility

    fn decode_handle(&self, text: &str) -> Result<ReceiptHandle, BrokerError> {
        match ReceiptHandle::decode(text) {
            Some(h) if h.incarnation == self.incarnation => Ok(h),
            _ => Err(BrokerError::InvalidReceiptHandle(
                text.chars().take(200).collect(),
            )),
        }
    }

    pub fn delete(
        &self,
        handles: &[String],
    ) -> Result<(Vec<Result<(), BrokerError>>, u64), BrokerError> {
        let now = self.now();
        let mut core = self.lock()?;
        let mut results = Vec::with_capacity(handles.len());
        let mut events = Vec::new();
        for text in handles {
            match self.decode_handle(text) {
                Err(e) => results.push(Err(e)),
                Ok(h) => {
                    if core.state.handle_match(h.number, h.receive_count, now) != HandleMatch::Stale
                    {
                        events.push(Event::Deleted { number: h.number });
                    }
                    results.push(Ok(()));
                }
            }
        }
        let off = if events.is_empty() {
            0
        } else {
            self.commit(&mut core, vec![events], now)?
        };
        Ok((results, off))
    }

    #[allow(clippy::type_complexity)]
    pub fn change_visibility(
        &self,
        changes: &[VisibilityChange],
    ) -> Result<(Vec<Result<(), BrokerError>>, u64, bool), BrokerError> {
        let now = self.now();
        let mut core = self.lock()?;
        let mut results = Vec::with_capacity(changes.len());
        let mut events = Vec::new();
        let mut wake = false;
        for c in changes {
            if c.visibility_timeout_seconds > crate::validate::MAX_VISIBILITY_TIMEOUT_SECONDS {
                results.push(Err(BrokerError::InvalidParameter {
                    parameter: "VisibilityTimeout".into(),
                    reason: format!("{} is outside 0..=43200", c.visibility_timeout_seconds),
                }));
                continue;
            }
            match self.decode_handle(&c.receipt_handle) {
                Err(e) => results.push(Err(e)),
                Ok(h) => match core.state.handle_match(h.number, h.receive_count, now) {
                    HandleMatch::InFlight => {
                        wake |= c.visibility_timeout_seconds == 0;
                        events.push(Event::Visibility {
                            number: h.number,
                            visible_at_ms: now + c.visibility_timeout_seconds as u64 * 1000,
                        });
                        results.push(Ok(()));
                    }
                    _ => results.push(Err(BrokerError::MessageNotInflight)),
                },
            }
        }
        let off = if events.is_empty() {
            0
        } else {
            self.commit(&mut core, vec![events], now)?
        };
        Ok((results, off, wake))
    }

    // ------------------------------------------------------------------ peek / purge / stats

    pub fn peek(&self, max: usize) -> Result<Vec<Message>, BrokerError> {
        let now = self.now();
        let picks: Vec<(u64, Meta)> = {
            let mut core = self.lock()?;
            core.state.advance(now);
            let numbers = core.state.peek(max);
            numbers
                .iter()
                .filter_map(|&n| core.state.meta(n).map(|m| (n, *m)))
                .collect()
        };
        let locs: Vec<u64> = picks.iter().map(|(_, meta)| meta.loc).collect();
        let records = self.read_messages(&locs)?;
        Ok(picks
            .into_iter()
            .zip(records)
            .filter_map(|((_, meta), record)| record.map(|e| to_message(e, &meta)))
            .collect())
    }

    pub fn purge(&self) -> Result<(u64, u64), BrokerError> {
        let now = self.now();
        let mut core = self.lock()?;
        let n = core.state.live();
        let off = self.commit(&mut core, vec![vec![Event::Purged]], now)?;
        Ok((n, off))
    }

    pub fn stats(&self) -> QueueStats {
        let now = self.now();
        let mut core = self.core.lock();
        core.state.advance(now);
        let c = core.state.counts();
        let k = core.state.counters;
        QueueStats {
            visible: c.visible,
            in_flight: c.in_flight + c.moving,
            delayed: c.delayed,
            oldest_age_ms: core
                .state
                .oldest()
                .map_or(0, |(_, m)| now.saturating_sub(m.sent_ms)),
            sent_total: k.sent,
            received_total: k.received,
            deleted_total: k.deleted,
            expired_total: k.expired,
            dead_lettered_total: k.dead_lettered,
            dropped_total: k.dropped,
            disk_bytes: self.log.size_bytes() + core.checkpoint_bytes,
        }
    }

    pub fn live(&self) -> u64 {
        self.core.lock().state.live()
    }

    pub fn disk_bytes(&self) -> u64 {
        self.log.size_bytes() + self.core.lock().checkpoint_bytes
    }

    // ------------------------------------------------------------------ maintenance

    /// Records appended since the last checkpoint.
    pub fn records_since_checkpoint(&self) -> (u64, u64) {
        let core = self.core.lock();
        (
            core.state
                .applied_offset
                .saturating_sub(core.checkpoint_offset),
            core.checkpoint_ms,
        )
    }

    /// What it takes to drop the log's oldest segment now.
    pub fn oldest_segment_reclaim(&self) -> SegmentReclaim {
        let Some(end) = self.log.oldest_segment_end() else {
            return SegmentReclaim::Nothing;
        };
        let core = self.core.lock();
        let applied = core.state.applied_offset;
        let needed = core.state.oldest_loc().map_or(applied, |l| l.min(applied));
        if needed < end {
            SegmentReclaim::Nothing
        } else if core.checkpoint_offset < end {
            SegmentReclaim::Checkpoint
        } else {
            SegmentReclaim::Truncate
        }
    }

    /// Writes a checkpoint (atomically), then drops log segments nothing needs any more.
    /// Blocking.
    pub fn checkpoint(&self) -> Result<(), BrokerError> {
        let _one = self.checkpoint_lock.lock();
        // The lock is held only to take the state's fields other than the messages and to
        // share the pages of the messages' slots (which the queue copies before changing one
        // the checkpoint still holds); they are encoded after it is released.
        let (copy, offset) = {
            let core = self.lock()?;
            (core.state.copy_for_checkpoint(), core.state.applied_offset)
        };
        // Never let a checkpoint get ahead of the durable log.
        self.durable_blocking(offset)?;
        // The file: magic, CRC32C and length of the body, then the body, streamed to the file
        // as it is encoded (so it is never in memory whole); the header is written last.
        let mut file = AtomicFile::create(&self.dir.join(CHECKPOINT_FILE))?;
        file.write(&[0; 16])?;
        let mut crc = 0;
        copy.encode_chunks(|chunk| {
            crc = crc32c::crc32c_append(crc, chunk);
            file.write(chunk)
        })?;
        let mut header = [0u8; 16];
        header[..4].copy_from_slice(CHECKPOINT_MAGIC);
        header[4..8].copy_from_slice(&crc.to_le_bytes());
        header[8..].copy_from_slice(&(file.len() as u64 - 16).to_le_bytes());
        file.write_at(&header, 0)?;
        let checkpoint_bytes = file.len() as u64;
        file.commit()?;
        {
            let mut core = self.core.lock();
            core.checkpoint_offset = offset;
            core.checkpoint_bytes = checkpoint_bytes;
            core.checkpoint_ms = self.now();
        }
        self.truncate_unneeded()
    }

    /// Drops the log segments that neither the checkpoint (recovery replays the log from its
    /// offset) nor a live message needs. Blocking.
    pub fn drop_unneeded_segments(&self) -> Result<(), BrokerError> {
        let _one = self.checkpoint_lock.lock();
        self.truncate_unneeded()
    }

    /// [`Self::drop_unneeded_segments`], the checkpoint lock held.
    fn truncate_unneeded(&self) -> Result<(), BrokerError> {
        let keep = {
            let core = self.core.lock();
            let offset = core.checkpoint_offset;
            core.state.oldest_loc().map_or(offset, |l| l.min(offset))
        };
        self.log.truncate_before(keep).map_err(|e| {
            BrokerError::Storage(format!("queue {:?}: truncating its log: {e}", self.name))
        })?;
        Ok(())
    }

    /// Compaction: when at most half of the oldest segment's records are live messages (so disk
    /// stays within about twice the live data), re-append them (same id,
    /// same receive count, new number and location) so the segment can be dropped. Only ready or
    /// delayed messages move, so no receipt handle in use changes. Returns whether it moved any.
    pub fn compact(&self, retention_ms: u64) -> Result<bool, BrokerError> {
        let segs = self.log.segments();
        if segs.len() < 2 {
            return Ok(false);
        }
        // The longest prefix of closed segments whose live messages are at most half of its
        // records (and few enough to move in one step).
        let start = segs[0].base_offset;
        let candidates = {
            let core = self.lock()?;
            let mut best = None;
            for seg in &segs[1..] {
                let boundary = seg.base_offset;
                let records = boundary.saturating_sub(start).max(1);
                match core
                    .state
                    .relocation_candidates(boundary, MAX_RELOCATE_PER_STEP)
                {
                    Some(c) if (c.len() as u64) * 2 <= records => best = Some(c),
                    Some(_) => {}
                    None => break,
                }
            }
            match (best, core.state.oldest_loc()) {
                (Some(c), Some(l)) if l < segs[1].base_offset => c
                    .into_iter()
                    .filter_map(|n| core.state.meta(n).map(|m| (n, *m)))
                    .collect::<Vec<_>>(),
                _ => return Ok(false),
            }
        };
        let records =
            self.read_messages(&candidates.iter().map(|(_, m)| m.loc).collect::<Vec<_>>())?;
        let moved: Vec<(u64, Meta, Enqueued)> = candidates
            .into_iter()
            .zip(records)
            .filter_map(|((n, meta), record)| record.map(|e| (n, meta, e)))
            .collect();
        let now = self.now();
        let off = {
            let mut core = self.lock()?;
            let mut records = Vec::new();
            for (n, meta, mut e) in moved {
                let Some(cur) = core.state.meta(n).copied() else {
                    continue;
                };
                if cur.loc != meta.loc || !matches!(cur.state, MsgState::Ready | MsgState::Delayed)
                {
                    continue;
                }
                e.relocated_from = n;
                e.number = core.state.alloc_number();
                e.receive_count = cur.receive_count;
                e.first_receive_ms = cur.first_receive_ms();
                e.visible_at_ms = if cur.state == MsgState::Delayed {
                    cur.visible_at_ms
                } else {
                    0
                };
                let retention_end = e.sent_ms.saturating_add(retention_ms);
                e.ttl_expire_ms = if e.ttl_expire_ms == 0 {
                    retention_end
                } else {
                    e.ttl_expire_ms.min(retention_end)
                };
                records.push(vec![Event::Enqueued(Box::new(e))]);
            }
            if records.is_empty() {
                return Ok(false);
            }
            self.commit(&mut core, records, now)?
        };
        self.durable_blocking(off)?;
        Ok(true)
    }

    /// Syncs and closes the log; later calls fail with `ShuttingDown`.
    pub fn close(&self) -> Result<(), BrokerError> {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
        self.log.close().map_err(|e| {
            BrokerError::Storage(format!("queue {:?}: closing its log: {e}", self.name))
        })
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

fn read_checkpoint(bytes: &[u8]) -> Result<QueueState, String> {
    if bytes.len() < 16 || &bytes[0..4] != CHECKPOINT_MAGIC {
        return Err("bad header".into());
    }
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let mut l = [0u8; 8];
    l.copy_from_slice(&bytes[8..16]);
    let len = u64::from_le_bytes(l) as usize;
    let body = &bytes[16..];
    if body.len() != len {
        return Err(format!("length {} but header says {len}", body.len()));
    }
    if crc32c::crc32c(body) != crc {
        return Err("checksum mismatch".into());
    }
    QueueState::decode_checkpoint(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_is_the_hyphenated_lower_case_form() {
        let id = [
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54,
            0x32, 0x10,
        ];
        assert_eq!(uuid_text(&id), "01234567-89ab-cdef-fedc-ba9876543210");
        let fresh = uuid_text(&new_message_id());
        assert_eq!(fresh.len(), 36);
        assert_eq!(&fresh[14..15], "4", "version 4: {fresh}");
    }
}
