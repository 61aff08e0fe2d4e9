//! The pure state machine of one queue: no I/O, time passed in explicitly.
//!
//! Every message gets a *number* when it is enqueued (1, 2, 3, … in log order). Its metadata
//! ([`Meta`], 40 bytes) lives in a paged table indexed by number; its body stays on disk at
//! `Meta::loc`, the log offset of its `Enqueued` record.
//!
//! Two kinds of state:
//! - **persistent**: the metas, counters, FIFO groups (membership and order), the TTL timer set
//!   and the deduplication table. It changes only through [`QueueState::apply`] (replaying the
//!   log reproduces it) and is what a checkpoint stores;
//! - **transient**: ready queues, lease/delay timers, the round-robin of FIFO groups. It is
//!   rebuilt from the metas by [`QueueState::rebuild`] after recovery and maintained
//!   incrementally afterwards.
//!
//! Planning functions (`plan_*`, `take_*`) pop candidates from the transient structures and
//! return events; the caller appends those events to the log and applies them with their
//! offsets while still holding the queue's lock. If an append fails the queue is failed as a
//! whole, so a plan that was never applied cannot leave a visible inconsistency.
//!
//! Architecture invariant: this module performs no I/O and reads no clock.

use super::event::{Enqueued, Event, RemoveReason};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// Priority levels of standard queues: 0..=9, higher first.
pub const PRIORITY_LEVELS: usize = 10;
/// FIFO deduplication window, also how long a receive-attempt id is remembered.
pub const DEDUP_WINDOW_MS: u64 = 5 * 60 * 1000;
/// FIFO receive-attempt ids remembered per queue (the oldest is forgotten first).
pub const MAX_RECEIVE_ATTEMPTS: usize = 10_000;
/// Version byte of checkpoints written now (version 1 had no receive attempts).
const CHECKPOINT_VERSION: u8 = 2;
/// Most expirations processed by one `collect_expired` call, so one call stays short.
pub const MAX_EXPIRIES_PER_TICK: usize = 4096;
/// Slots per page of the meta table.
const PAGE: usize = 4096;
/// Meta::group of a message without a group.
pub const NO_GROUP: u32 = u32::MAX;

#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum MsgState {
    /// No such message (never existed, or gone).
    #[default]
    Dead,
    Ready,
    /// Waiting for its delay to elapse (`visible_at_ms`).
    Delayed,
    /// Leased to a consumer until `visible_at_ms`.
    InFlight,
    /// Being moved to another queue (dead-letter or overflow); not deliverable. Transient: after a
    /// crash the message is back in its previous state and the move happens again.
    Moving,
}

/// Bytes of one live message in a checkpoint: its number, `loc`, `sent_ms`, `visible_at_ms`,
/// `receive_count`, `group`, `first_receive_delta`, `priority` and `state`.
const CHECKPOINT_MESSAGE_BYTES: usize = 4 * 8 + 3 * 4 + 2;
/// The size of the pieces [`CheckpointCopy::encode_chunks`] encodes the messages in.
pub const CHECKPOINT_CHUNK_BYTES: usize = 256 << 10;

/// A checkpoint taken under the queue's lock, encoded after it is released (see
/// [`QueueState::copy_for_checkpoint`]).
pub struct CheckpointCopy {
    /// The encoded fields before the messages.
    head: Vec<u8>,
    /// The pages of the slot table holding numbers `first..end`, shared with the queue's table
    /// (which copies a page before changing it while this holds it); each is released as soon
    /// as it is encoded.
    pages: VecDeque<Arc<[Meta]>>,
    /// The number of `pages[0][0]`.
    page_base: u64,
    /// The numbers whose slots are encoded: from the oldest to one past the newest.
    first: u64,
    end: u64,
    /// How many of them are live (the encoding stops after the last).
    live: u64,
    /// The encoded fields after the messages.
    tail: Vec<u8>,
}

impl CheckpointCopy {
    /// Hands the checkpoint's encoding (see [`QueueState::decode_checkpoint`]) to `sink` a
    /// piece at a time (at most about [`CHECKPOINT_CHUNK_BYTES`] each, or the fields before or
    /// after the messages whole), so it can be written out without ever being in memory
    /// whole. Releases each page of slots once it is encoded.
    pub fn encode_chunks<E>(
        mut self,
        mut sink: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        sink(&self.head)?;
        let mut chunk = Vec::with_capacity(CHECKPOINT_CHUNK_BYTES);
        let mut written = 0;
        let mut page_base = self.page_base;
        'pages: while let Some(page) = self.pages.pop_front() {
            let from = self.first.max(page_base);
            let to = self.end.min(page_base + PAGE as u64);
            for n in from..to {
                let m = &page[(n - page_base) as usize];
                if written == self.live {
                    break 'pages;
                }
                if !m.is_live() {
                    continue;
                }
                chunk.extend_from_slice(&checkpoint_record(n, m));
                if chunk.len() + CHECKPOINT_MESSAGE_BYTES > CHECKPOINT_CHUNK_BYTES {
                    sink(&chunk)?;
                    chunk.clear();
                }
                written += 1;
            }
            page_base += PAGE as u64;
        }
        if !chunk.is_empty() {
            sink(&chunk)?;
        }
        sink(&self.tail)
    }
}

/// One live message in a checkpoint.
fn checkpoint_record(n: u64, m: &Meta) -> [u8; CHECKPOINT_MESSAGE_BYTES] {
    // A moving message is stored as ready: the move restarts after recovery.
    let state = if m.state == MsgState::Moving {
        MsgState::Ready
    } else {
        m.state
    };
    let mut record = [0u8; CHECKPOINT_MESSAGE_BYTES];
    for (i, v) in [n, m.loc, m.sent_ms, m.visible_at_ms]
        .into_iter()
        .enumerate()
    {
        record[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    for (i, v) in [m.receive_count, m.group, m.first_receive_delta]
        .into_iter()
        .enumerate()
    {
        record[32 + i * 4..36 + i * 4].copy_from_slice(&v.to_le_bytes());
    }
    record[44] = m.priority;
    record[45] = state as u8;
    record
}

/// Per-message metadata kept in memory. 40 bytes.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Log offset of the message's `Enqueued` record.
    pub loc: u64,
    pub sent_ms: u64,
    /// Deadline of a delay or a lease.
    pub visible_at_ms: u64,
    pub receive_count: u32,
    pub group: u32,
    /// First receive time as `sent_ms + delta - 1`; 0 = never received.
    pub first_receive_delta: u32,
    pub priority: u8,
    pub state: MsgState,
}

impl Meta {
    pub fn first_receive_ms(&self) -> u64 {
        if self.first_receive_delta == 0 {
            0
        } else {
            self.sent_ms + self.first_receive_delta as u64 - 1
        }
    }
    fn set_first_receive(&mut self, ms: u64) {
        self.first_receive_delta = if ms == 0 {
            0
        } else {
            (ms.saturating_sub(self.sent_ms) + 1).min(u32::MAX as u64) as u32
        };
    }
    pub fn is_live(&self) -> bool {
        self.state != MsgState::Dead
    }
}

/// Paged table of metas indexed by message number. Pages below the oldest live message are
/// freed, so memory follows the span between the oldest and the newest live message (kept close
/// to the live count by compaction, which renumbers stragglers). A checkpoint shares the pages
/// instead of copying them; a page still shared is copied before it changes (`get_mut`).
#[derive(Default)]
struct Slots {
    /// Number of the first slot of `pages[0]`.
    base: u64,
    pages: VecDeque<Arc<[Meta]>>,
}

impl Slots {
    fn get(&self, n: u64) -> Option<&Meta> {
        let i = n.checked_sub(self.base)? as usize;
        self.pages.get(i / PAGE).map(|p| &p[i % PAGE])
    }
    fn get_mut(&mut self, n: u64) -> Option<&mut Meta> {
        let i = n.checked_sub(self.base)? as usize;
        self.pages
            .get_mut(i / PAGE)
            .map(|p| &mut Arc::make_mut(p)[i % PAGE])
    }
    /// Makes room for number `n` (always at or above every earlier number).
    fn ensure(&mut self, n: u64) {
        if self.pages.is_empty() {
            self.base = n - n % PAGE as u64;
        }
        while n >= self.base + (self.pages.len() * PAGE) as u64 {
            self.pages
                .push_back(std::iter::repeat_n(Meta::default(), PAGE).collect());
        }
    }
    /// The pages holding numbers `from..to`, shared, and the number of the first one's first
    /// slot.
    fn share_range(&self, from: u64, to: u64) -> (VecDeque<Arc<[Meta]>>, u64) {
        let end = self.base + (self.pages.len() * PAGE) as u64;
        let (from, to) = (from.max(self.base), to.min(end));
        if from >= to {
            return (VecDeque::new(), from);
        }
        let first = ((from - self.base) as usize) / PAGE;
        let last = ((to - 1 - self.base) as usize) / PAGE;
        let pages = self.pages.range(first..=last).cloned().collect();
        (pages, self.base + (first * PAGE) as u64)
    }
    /// Frees pages that hold only numbers below `head`.
    fn trim(&mut self, head: u64) {
        while !self.pages.is_empty() && head >= self.base + PAGE as u64 {
            self.pages.pop_front();
            self.base += PAGE as u64;
        }
        if self.pages.is_empty() {
            self.base = head - head % PAGE as u64;
        }
    }
}

/// One FIFO message group.
#[derive(Debug, Default)]
pub struct Group {
    pub name: String,
    /// Live messages in delivery order: (sequence number, message number).
    pub msgs: VecDeque<(u64, u64)>,
    /// Messages of this group in flight or moving; the group is blocked while > 0.
    pub blocked: u32,
    /// Whether the group sits in the round-robin.
    scheduled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupEntry {
    pub message_id: [u8; 16],
    pub sequence: u64,
    pub expires_ms: u64,
}

/// Lifetime counters (persistent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent: u64,
    pub received: u64,
    pub deleted: u64,
    pub expired: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
}

/// Queue settings the state machine needs for its decisions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    pub retention_ms: u64,
    /// Set when a redrive policy names an existing dead-letter queue.
    pub max_receive_count: Option<u32>,
    /// Whether a dead-letter queue exists (TTL expiry and DeadLetterOldest go there).
    pub has_dead_letter_queue: bool,
}

/// What a delete or visibility change finds for a (number, receive count) handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleMatch {
    /// The handle is from the message's latest delivery and its lease still runs.
    InFlight,
    /// Latest delivery, but the lease ended (visible again, or being moved).
    NotInFlight,
    /// The message is gone or was delivered again since.
    Stale,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub visible: u64,
    pub delayed: u64,
    pub in_flight: u64,
    pub moving: u64,
}

/// What a FIFO receive with a `ReceiveRequestAttemptId` delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiveAttempt {
    pub expires_ms: u64,
    /// Message numbers and the receive counts they were delivered with.
    pub deliveries: Vec<(u64, u32)>,
}

pub struct QueueState {
    pub fifo: bool,
    /// FIFO deduplication scope is the message group (else the queue).
    pub dedup_by_group: bool,
    slots: Slots,
    /// Lowest number that may be live.
    head: u64,
    next_number: u64,
    next_sequence: u64,
    live: u64,
    counts: Counts,
    pub counters: Counters,
    groups: Vec<Group>,
    group_ids: HashMap<String, u32>,
    free_groups: Vec<u32>,
    dedup: HashMap<String, DedupEntry>,
    dedup_order: VecDeque<(u64, String)>,
    attempts: HashMap<String, ReceiveAttempt>,
    /// (expires_ms, id) of `attempts` in the order they were made (stale pairs are skipped).
    attempts_order: VecDeque<(u64, String)>,
    /// (expire_ms, number) of messages with a TTL (lazily validated).
    ttl: BTreeSet<(u64, u64)>,
    /// Log offset after the last applied record.
    pub applied_offset: u64,
    // ---- transient ----
    /// Standard queues: ready numbers per priority in ascending order...
    ready: Vec<VecDeque<u64>>,
    /// ...and messages that became ready again (lease or delay over), ascending.
    requeued: Vec<BTreeSet<u64>>,
    ready_groups: VecDeque<u32>,
    /// (deadline, number) of delayed and in-flight messages (lazily validated).
    timers: BTreeSet<(u64, u64)>,
    /// While replaying, transient structures are not maintained (rebuilt at the end).
    replaying: bool,
}

impl QueueState {
    pub fn new(fifo: bool) -> QueueState {
        QueueState {
            fifo,
            dedup_by_group: false,
            slots: Slots::default(),
            head: 1,
            next_number: 1,
            next_sequence: 1,
            live: 0,
            counts: Counts::default(),
            counters: Counters::default(),
            groups: Vec::new(),
            group_ids: HashMap::new(),
            free_groups: Vec::new(),
            dedup: HashMap::new(),
            dedup_order: VecDeque::new(),
            attempts: HashMap::new(),
            attempts_order: VecDeque::new(),
            ttl: BTreeSet::new(),
            applied_offset: 0,
            ready: (0..PRIORITY_LEVELS).map(|_| VecDeque::new()).collect(),
            requeued: (0..PRIORITY_LEVELS).map(|_| BTreeSet::new()).collect(),
            ready_groups: VecDeque::new(),
            timers: BTreeSet::new(),
            replaying: true,
        }
    }

    // ------------------------------------------------------------------ queries

    pub fn meta(&self, n: u64) -> Option<&Meta> {
        self.slots.get(n).filter(|m| m.is_live())
    }
    /// Live messages including those being moved out.
    pub fn live(&self) -> u64 {
        self.live
    }
    pub fn counts(&self) -> Counts {
        self.counts
    }
    #[cfg(test)]
    pub fn next_number(&self) -> u64 {
        self.next_number
    }
    /// The oldest live message (lowest number), if any.
    pub fn oldest(&self) -> Option<(u64, &Meta)> {
        if self.live == 0 {
            return None;
        }
        self.meta(self.head).map(|m| (self.head, m))
    }
    /// Lowest log offset any live message needs.
    pub fn oldest_loc(&self) -> Option<u64> {
        self.oldest().map(|(_, m)| m.loc)
    }
    pub fn earliest_timer(&self) -> Option<u64> {
        let t = self.timers.first().map(|t| t.0);
        let e = self.ttl.first().map(|t| t.0);
        match (t, e) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_match(&self, n: u64, receive_count: u32, now_ms: u64) -> HandleMatch {
        match self.meta(n) {
            Some(m) if m.receive_count == receive_count && receive_count > 0 => {
                if m.state == MsgState::InFlight && m.visible_at_ms > now_ms {
                    HandleMatch::InFlight
                } else {
                    HandleMatch::NotInFlight
                }
            }
            _ => HandleMatch::Stale,
        }
    }

    /// FIFO deduplication: the earlier message with this key, if within the window.
    pub fn dedup_lookup(&self, key: &str, now_ms: u64) -> Option<DedupEntry> {
        self.dedup
            .get(key)
            .filter(|e| e.expires_ms > now_ms)
            .copied()
    }

    /// Numbers of up to `max` messages in delivery order (no state change).
    pub fn peek(&self, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        if self.fifo {
            let mut served = std::collections::HashSet::new();
            for &g in &self.ready_groups {
                let group = &self.groups[g as usize];
                if group.blocked > 0 || !served.insert(g) {
                    continue;
                }
                for &(_, n) in &group.msgs {
                    if out.len() >= max || self.meta(n).map(|m| m.state) != Some(MsgState::Ready) {
                        break;
                    }
                    out.push(n);
                }
            }
            return out;
        }
        for p in (0..PRIORITY_LEVELS).rev() {
            let mut a = self.ready[p].iter().peekable();
            let mut b = self.requeued[p].iter().peekable();
            while out.len() < max {
                let n = match (a.peek(), b.peek()) {
                    (Some(&&x), Some(&&y)) => {
                        if x <= y {
                            a.next();
                            x
                        } else {
                            b.next();
                            y
                        }
                    }
                    (Some(&&x), None) => {
                        a.next();
                        x
                    }
                    (None, Some(&&y)) => {
                        b.next();
                        y
                    }
                    (None, None) => break,
                };
                if self.meta(n).map(|m| m.state) == Some(MsgState::Ready) && !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        out
    }

    // ------------------------------------------------------------------ planning

    /// Reserves the next message number.
    pub fn alloc_number(&mut self) -> u64 {
        let n = self.next_number;
        self.next_number += 1;
        n
    }
    /// Reserves the next FIFO sequence number.
    pub fn alloc_sequence(&mut self) -> u64 {
        let s = self.next_sequence;
        self.next_sequence += 1;
        s
    }
    /// Records a dedup key at planning time so later entries of the same batch see it.
    pub fn dedup_reserve(&mut self, key: String, entry: DedupEntry) {
        self.dedup_insert(key, entry);
    }

    /// Live messages that count toward a bounded queue's length.
    pub fn length(&self) -> u64 {
        self.live - self.counts.moving
    }

    /// Marks the oldest message that is not already moving as `Moving` and returns it, to be
    /// dropped or dead-lettered to make room.
    pub fn take_oldest(&mut self) -> Option<u64> {
        let mut n = self.head;
        while n < self.next_number {
            if let Some(m) = self.slots.get(n) {
                if m.is_live() && m.state != MsgState::Moving {
                    self.set_state(n, MsgState::Moving);
                    return Some(n);
                }
            }
            n += 1;
        }
        None
    }

    /// Ends a move that could not complete: the message becomes deliverable again.
    pub fn abort_move(&mut self, n: u64, now_ms: u64) {
        if self.meta(n).map(|m| m.state) == Some(MsgState::Moving) {
            let m = self.slots.get(n).copied().unwrap_or_default();
            if m.visible_at_ms > now_ms {
                let st = if m.receive_count > 0 {
                    MsgState::InFlight
                } else {
                    MsgState::Delayed
                };
                self.set_state(n, st);
                self.timers.insert((m.visible_at_ms, n));
            } else {
                self.make_ready(n);
            }
        }
    }

    /// Picks up to `max` deliverable messages. Returns the `Received` events to append and the
    /// numbers that reached the redrive policy's receive count (now `Moving`, to dead-letter).
    pub fn plan_receive(
        &mut self,
        max: usize,
        now_ms: u64,
        visibility_ms: u64,
        policy: &Policy,
    ) -> (Vec<Event>, Vec<u64>) {
        let mut events = Vec::new();
        let mut dead = Vec::new();
        // `max` bounds deliveries and dead-letterings together: the work of one call stays
        // bounded, and a move task (which dead-letters everything it takes) gets at most `max`.
        // A number can sit in more than one ready structure (lazy deletion), and its state only
        // changes when the events are applied: remember what this plan already took.
        let mut chosen = std::collections::HashSet::new();
        let mut deliver =
            |s: &mut QueueState, n: u64, events: &mut Vec<Event>, dead: &mut Vec<u64>| -> bool {
                let m = match s.slots.get(n) {
                    Some(m) if m.state == MsgState::Ready => *m,
                    _ => return false,
                };
                if !chosen.insert(n) {
                    return false;
                }
                if let Some(max_rc) = policy.max_receive_count {
                    if m.receive_count >= max_rc {
                        s.set_state(n, MsgState::Moving);
                        dead.push(n);
                        return false;
                    }
                }
                let first = if m.receive_count == 0 {
                    now_ms
                } else {
                    m.first_receive_ms()
                };
                events.push(Event::Received {
                    number: n,
                    receive_count: m.receive_count.saturating_add(1),
                    visible_at_ms: now_ms + visibility_ms,
                    first_receive_ms: first,
                });
                true
            };
        if self.fifo {
            let mut served = std::collections::HashSet::new();
            while events.len() + dead.len() < max {
                let Some(g) = self.ready_groups.pop_front() else {
                    break;
                };
                let group = &mut self.groups[g as usize];
                group.scheduled = false;
                if group.blocked > 0 || !served.insert(g) {
                    continue;
                }
                let candidates: Vec<u64> = group.msgs.iter().map(|&(_, n)| n).collect();
                for n in candidates {
                    if events.len() + dead.len() >= max {
                        break;
                    }
                    if self.meta(n).map(|m| m.state) != Some(MsgState::Ready) {
                        break;
                    }
                    if !deliver(self, n, &mut events, &mut dead) {
                        break;
                    }
                }
            }
        } else {
            'outer: for p in (0..PRIORITY_LEVELS).rev() {
                loop {
                    if events.len() + dead.len() >= max {
                        break 'outer;
                    }
                    let a = self.ready[p].front().copied();
                    let b = self.requeued[p].first().copied();
                    let n = match (a, b) {
                        (Some(x), Some(y)) if y < x => self.requeued[p].pop_first(),
                        (Some(_), _) => self.ready[p].pop_front(),
                        (None, Some(_)) => self.requeued[p].pop_first(),
                        (None, None) => break,
                    };
                    if let Some(n) = n {
                        deliver(self, n, &mut events, &mut dead);
                    }
                }
            }
        }
        (events, dead)
    }

    /// Processes due lease and delay timers (transient; no event needed: the deadlines are in
    /// the log). Returns whether some message became visible.
    pub fn advance(&mut self, now_ms: u64) -> bool {
        let mut woke = false;
        while let Some(&(t, n)) = self.timers.first() {
            if t > now_ms {
                break;
            }
            self.timers.pop_first();
            if let Some(m) = self.meta(n) {
                if matches!(m.state, MsgState::InFlight | MsgState::Delayed) && m.visible_at_ms == t
                {
                    self.make_ready(n);
                    woke = true;
                }
            }
        }
        woke
    }

    /// Messages past their retention or TTL. Returns `Removed{Expired}` events for messages to
    /// drop, and numbers (now `Moving`) to dead-letter (TTL expiry with a dead-letter queue).
    pub fn collect_expired(&mut self, now_ms: u64, policy: &Policy) -> (Vec<Event>, Vec<u64>) {
        let mut drop = Vec::new();
        let mut dead = Vec::new();
        let mut seen = std::collections::HashSet::new();
        // Per-message TTL.
        while drop.len() + dead.len() < MAX_EXPIRIES_PER_TICK {
            let Some(&(t, n)) = self.ttl.first() else {
                break;
            };
            if t > now_ms {
                break;
            }
            self.ttl.pop_first();
            match self.meta(n).map(|m| m.state) {
                None | Some(MsgState::Moving) => {}
                Some(_) => {
                    if policy.has_dead_letter_queue {
                        self.set_state(n, MsgState::Moving);
                        dead.push(n);
                    } else if seen.insert(n) {
                        drop.push(Event::Removed {
                            number: n,
                            reason: RemoveReason::Expired,
                        });
                    }
                }
            }
        }
        // Retention: sent times grow with numbers, so scan from the oldest.
        let mut n = self.head;
        while n < self.next_number && drop.len() + dead.len() < MAX_EXPIRIES_PER_TICK {
            let Some(m) = self.slots.get(n).copied() else {
                break;
            };
            if m.is_live() {
                if m.sent_ms.saturating_add(policy.retention_ms) > now_ms {
                    break;
                }
                if m.state != MsgState::Moving && seen.insert(n) {
                    drop.push(Event::Removed {
                        number: n,
                        reason: RemoveReason::Expired,
                    });
                }
            }
            n += 1;
        }
        (drop, dead)
    }

    /// Ready or delayed messages stored before log offset `boundary`, for compaction; `None`
    /// when one of them is in flight or moving (compaction waits), or when there are more than
    /// `max`.
    pub fn relocation_candidates(&self, boundary: u64, max: usize) -> Option<Vec<u64>> {
        let mut out = Vec::new();
        let mut n = self.head;
        while n < self.next_number {
            let Some(m) = self.slots.get(n) else { break };
            if m.is_live() {
                if m.loc >= boundary {
                    break;
                }
                if !matches!(m.state, MsgState::Ready | MsgState::Delayed) || out.len() >= max {
                    return None;
                }
                out.push(n);
            }
            n += 1;
        }
        Some(out)
    }

    // ------------------------------------------------------------------ applying

    /// Applies the events of the record at log `offset`. Replay and live operation both go
    /// through here.
    pub fn apply(&mut self, offset: u64, events: Vec<Event>, now_ms: u64) {
        for e in events {
            self.apply_event(offset, e, now_ms);
        }
        self.applied_offset = self.applied_offset.max(offset + 1);
    }

    fn apply_event(&mut self, offset: u64, e: Event, now_ms: u64) {
        match e {
            Event::Enqueued(m) => self.apply_enqueued(offset, *m),
            Event::Received {
                number,
                receive_count,
                visible_at_ms,
                first_receive_ms,
            } => {
                if let Some(m) = self.slots.get_mut(number).filter(|m| m.is_live()) {
                    m.receive_count = receive_count;
                    m.visible_at_ms = visible_at_ms;
                    m.set_first_receive(first_receive_ms);
                    self.counters.received += 1;
                    self.set_state(number, MsgState::InFlight);
                    if !self.replaying {
                        self.timers.insert((visible_at_ms, number));
                    }
                }
            }
            Event::Visibility {
                number,
                visible_at_ms,
            } => {
                if let Some(m) = self.slots.get_mut(number).filter(|m| m.is_live()) {
                    m.visible_at_ms = visible_at_ms;
                    if !self.replaying {
                        if visible_at_ms <= now_ms {
                            self.make_ready(number);
                        } else {
                            self.set_state(number, MsgState::InFlight);
                            self.timers.insert((visible_at_ms, number));
                        }
                    } else {
                        self.set_state(number, MsgState::InFlight);
                    }
                }
            }
            Event::Deleted { number } => {
                if self.remove(number) {
                    self.counters.deleted += 1;
                }
            }
            Event::Removed { number, reason } => {
                if self.remove(number) {
                    match reason {
                        RemoveReason::Expired => self.counters.expired += 1,
                        RemoveReason::Dropped => self.counters.dropped += 1,
                        RemoveReason::DeadLettered => self.counters.dead_lettered += 1,
                        RemoveReason::Moved => {}
                    }
                }
            }
            Event::Purged => {
                let mut n = self.head;
                while n < self.next_number && self.live > 0 {
                    self.remove(n);
                    n += 1;
                }
            }
            Event::Attempted {
                attempt_id,
                expires_ms,
                deliveries,
            } => self.attempt_insert(
                attempt_id,
                ReceiveAttempt {
                    expires_ms,
                    deliveries,
                },
            ),
        }
    }

    fn apply_enqueued(&mut self, offset: u64, e: Enqueued) {
        let n = e.number;
        if n < self.next_number && self.slots.get(n).is_some_and(|m| m.is_live()) {
            // Already applied (cannot happen with a consistent log); keep the first.
            debug_assert!(false, "message number {n} enqueued twice");
            return;
        }
        self.next_number = self.next_number.max(n + 1);
        if e.sequence > 0 {
            self.next_sequence = self.next_sequence.max(e.sequence + 1);
        }
        if e.relocated_from != 0 && self.meta(e.relocated_from).is_none() {
            // The message it moves is gone (cannot happen with a consistent log): nothing to do.
            return;
        }
        // Group membership (FIFO only): a relocated message keeps its place.
        let mut group = NO_GROUP;
        if let (Some(name), true) = (&e.group, self.fifo) {
            group = self.group_index(name);
        }
        if e.relocated_from != 0 {
            if let Some(old) = self.meta(e.relocated_from).copied() {
                if group != NO_GROUP {
                    if let Some(pos) = self.groups[group as usize]
                        .msgs
                        .iter()
                        .position(|&(_, x)| x == e.relocated_from)
                    {
                        self.groups[group as usize].msgs[pos].1 = n;
                    }
                }
                // Remove the old slot without touching the group (done above).
                self.kill_slot(e.relocated_from, old.state);
            }
        } else {
            self.counters.sent += 1;
            if group != NO_GROUP {
                let msgs = &mut self.groups[group as usize].msgs;
                // Sequence numbers grow, so this is a push_back except after relocation races.
                let pos = msgs.partition_point(|&(s, _)| s <= e.sequence);
                msgs.insert(pos, (e.sequence, n));
            }
            if let Some(id) = &e.dedup_id {
                if self.fifo {
                    let scope = if self.dedup_by_group {
                        e.group.as_deref()
                    } else {
                        None
                    };
                    let key = dedup_key(scope, id);
                    self.dedup_insert(
                        key,
                        DedupEntry {
                            message_id: e.message_id,
                            sequence: e.sequence,
                            expires_ms: e.sent_ms + DEDUP_WINDOW_MS,
                        },
                    );
                }
            }
        }
        if e.ttl_expire_ms > 0 {
            self.ttl.insert((e.ttl_expire_ms, n));
        }
        self.slots.ensure(n);
        let mut meta = Meta {
            loc: offset,
            sent_ms: e.sent_ms,
            visible_at_ms: e.visible_at_ms,
            receive_count: e.receive_count,
            group,
            first_receive_delta: 0,
            priority: e.priority.min(PRIORITY_LEVELS as u8 - 1),
            state: MsgState::Dead,
        };
        meta.set_first_receive(e.first_receive_ms);
        if let Some(slot) = self.slots.get_mut(n) {
            *slot = meta;
        }
        self.live += 1;
        if self.live == 1 {
            // Numbers only grow, so a new message is the oldest only when it is the only one.
            self.head = n;
        }
        if e.visible_at_ms > e.sent_ms {
            self.set_state(n, MsgState::Delayed);
            if !self.replaying {
                self.timers.insert((e.visible_at_ms, n));
            }
        } else if self.replaying {
            self.set_state(n, MsgState::Ready);
        } else {
            self.make_ready(n);
        }
    }

    /// The receive attempt `id`, unless it expired by `now_ms`.
    pub fn attempt(&self, id: &str, now_ms: u64) -> Option<&ReceiveAttempt> {
        self.attempts.get(id).filter(|a| a.expires_ms > now_ms)
    }

    /// Forgets receive attempts that expired by `now_ms`.
    pub fn prune_attempts(&mut self, now_ms: u64) {
        while self
            .attempts_order
            .front()
            .is_some_and(|(t, _)| *t <= now_ms)
        {
            self.forget_oldest_attempt();
        }
    }

    /// Remembers a receive attempt, keeping at most [`MAX_RECEIVE_ATTEMPTS`] (the oldest made
    /// goes first). Depends only on the events, so replay rebuilds the same set.
    fn attempt_insert(&mut self, id: String, attempt: ReceiveAttempt) {
        self.attempts_order
            .push_back((attempt.expires_ms, id.clone()));
        self.attempts.insert(id, attempt);
        while self.attempts.len() > MAX_RECEIVE_ATTEMPTS {
            self.forget_oldest_attempt();
        }
    }

    fn forget_oldest_attempt(&mut self) {
        if let Some((t, id)) = self.attempts_order.pop_front() {
            // Stale when the id was used again later.
            if self.attempts.get(&id).is_some_and(|a| a.expires_ms == t) {
                self.attempts.remove(&id);
            }
        }
    }

    fn dedup_insert(&mut self, key: String, entry: DedupEntry) {
        self.dedup_order.push_back((entry.expires_ms, key.clone()));
        self.dedup.insert(key, entry);
    }

    /// Forgets deduplication entries older than the window.
    pub fn prune_dedup(&mut self, now_ms: u64) {
        while let Some((t, _)) = self.dedup_order.front() {
            if *t > now_ms {
                break;
            }
            if let Some((t, key)) = self.dedup_order.pop_front() {
                if self.dedup.get(&key).is_some_and(|e| e.expires_ms <= t) {
                    self.dedup.remove(&key);
                }
            }
        }
    }

    fn group_index(&mut self, name: &str) -> u32 {
        if let Some(&g) = self.group_ids.get(name) {
            return g;
        }
        let g = match self.free_groups.pop() {
            Some(g) => {
                self.groups[g as usize] = Group {
                    name: name.to_string(),
                    ..Group::default()
                };
                g
            }
            None => {
                self.groups.push(Group {
                    name: name.to_string(),
                    ..Group::default()
                });
                (self.groups.len() - 1) as u32
            }
        };
        self.group_ids.insert(name.to_string(), g);
        g
    }

    /// Removes a live message; false when it was not live.
    fn remove(&mut self, n: u64) -> bool {
        let Some(m) = self.meta(n).copied() else {
            return false;
        };
        if m.group != NO_GROUP {
            let g = m.group as usize;
            if let Some(pos) = self.groups[g].msgs.iter().position(|&(_, x)| x == n) {
                self.groups[g].msgs.remove(pos);
            }
        }
        self.kill_slot(n, m.state);
        if m.group != NO_GROUP {
            let g = m.group;
            let group = &self.groups[g as usize];
            if group.msgs.is_empty() && group.blocked == 0 {
                self.group_ids.remove(&group.name);
                self.groups[g as usize] = Group::default();
                self.free_groups.push(g);
            } else {
                self.schedule_group(g);
            }
        }
        true
    }

    fn kill_slot(&mut self, n: u64, _state: MsgState) {
        self.set_state(n, MsgState::Dead);
        self.live -= 1;
        while self.head < self.next_number
            && !self.slots.get(self.head).is_some_and(|m| m.is_live())
        {
            self.head += 1;
        }
        self.slots.trim(self.head);
    }

    /// Changes a message's state, keeping the counts and group blocking right.
    fn set_state(&mut self, n: u64, new: MsgState) {
        let Some(m) = self.slots.get_mut(n) else {
            return;
        };
        let old = m.state;
        if old == new {
            return;
        }
        m.state = new;
        let group = m.group;
        match old {
            MsgState::Ready => self.counts.visible -= 1,
            MsgState::Delayed => self.counts.delayed -= 1,
            MsgState::InFlight => self.counts.in_flight -= 1,
            MsgState::Moving => self.counts.moving -= 1,
            MsgState::Dead => {}
        }
        match new {
            MsgState::Ready => self.counts.visible += 1,
            MsgState::Delayed => self.counts.delayed += 1,
            MsgState::InFlight => self.counts.in_flight += 1,
            MsgState::Moving => self.counts.moving += 1,
            MsgState::Dead => {}
        }
        if group != NO_GROUP {
            let blocking = |s: MsgState| matches!(s, MsgState::InFlight | MsgState::Moving);
            let gr = &mut self.groups[group as usize];
            match (blocking(old), blocking(new)) {
                (false, true) => gr.blocked += 1,
                (true, false) => {
                    gr.blocked -= 1;
                    if gr.blocked == 0 {
                        self.schedule_group(group);
                    }
                }
                _ => {}
            }
        }
    }

    fn make_ready(&mut self, n: u64) {
        self.set_state(n, MsgState::Ready);
        if self.replaying {
            return;
        }
        let Some(m) = self.slots.get(n).copied() else {
            return;
        };
        if m.group != NO_GROUP {
            self.schedule_group(m.group);
        } else {
            let p = m.priority as usize;
            if self.ready[p].back().is_none_or(|&b| b < n) {
                self.ready[p].push_back(n);
            } else {
                self.requeued[p].insert(n);
            }
        }
    }

    fn schedule_group(&mut self, g: u32) {
        if self.replaying {
            return;
        }
        let Some(group) = self.groups.get(g as usize) else {
            return;
        };
        if group.scheduled || group.blocked > 0 {
            return;
        }
        let Some(&(_, head)) = group.msgs.front() else {
            return;
        };
        if self.slots.get(head).map(|m| m.state) != Some(MsgState::Ready) {
            return;
        }
        self.groups[g as usize].scheduled = true;
        self.ready_groups.push_back(g);
    }

    /// Ends recovery: builds the transient structures from the metas as of `now_ms`.
    pub fn rebuild(&mut self, now_ms: u64) {
        self.replaying = false;
        for p in 0..PRIORITY_LEVELS {
            self.ready[p].clear();
            self.requeued[p].clear();
        }
        self.ready_groups.clear();
        self.timers.clear();
        for g in &mut self.groups {
            g.scheduled = false;
        }
        let mut n = self.head;
        while n < self.next_number {
            if let Some(m) = self.slots.get(n).copied() {
                match m.state {
                    MsgState::Dead => {}
                    MsgState::Moving => self.set_state(n, MsgState::Ready),
                    MsgState::Delayed | MsgState::InFlight if m.visible_at_ms > now_ms => {
                        self.timers.insert((m.visible_at_ms, n));
                    }
                    _ => self.set_state(n, MsgState::Ready),
                }
                if let Some(m) = self.slots.get(n).copied() {
                    if m.state == MsgState::Ready && m.group == NO_GROUP {
                        self.ready[m.priority as usize].push_back(n);
                    }
                }
            }
            n += 1;
        }
        for g in 0..self.groups.len() as u32 {
            self.schedule_group(g);
        }
    }

    // ------------------------------------------------------------------ checkpoint

    /// Serializes the persistent state.
    ///
    /// ```text
    /// magic "FQCP" version:u8=2 fifo:u8 applied_offset next_number next_sequence head
    /// counters(6 × u64) live:u64 (number loc sent visible_at rc:u32 group:u32 frd:u32 prio:u8 st:u8){live}
    /// groups:u32 (index:u32 name:str count:u32 (seq number){count}){groups}
    /// ttl:u64 (t n){ttl} dedup:u64 (key:str id:[16] seq expires){dedup}
    /// attempts:u64 (id:str expires count:u32 (number rc:u32){count}){attempts}
    /// ```
    /// Version 1 (still read) ends after `dedup`: it had no receive attempts.
    #[cfg(test)]
    pub fn encode_checkpoint(&self) -> Vec<u8> {
        let mut b = Vec::new();
        let copy = self.copy_for_checkpoint();
        let (head, tail) = (copy.head.clone(), copy.tail.clone());
        copy.encode_chunks(|chunk| {
            // Chunks stay within their bound: the file is written a chunk at a time.
            assert!(chunk.len() <= CHECKPOINT_CHUNK_BYTES || chunk == head || chunk == tail);
            b.extend_from_slice(chunk);
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap_or_else(|never| match never {});
        b
    }

    /// Takes what a checkpoint of this state needs: everything but the live messages encoded
    /// at once, and the pages of the messages' slots shared (not copied: the table copies a
    /// page it changes while the checkpoint holds it), to be encoded by
    /// [`CheckpointCopy::encode_chunks`] after the queue's lock is released.
    pub fn copy_for_checkpoint(&self) -> CheckpointCopy {
        let mut b = Vec::new();
        b.extend_from_slice(b"FQCP");
        b.push(CHECKPOINT_VERSION);
        b.push(self.fifo as u8);
        for v in [
            self.applied_offset,
            self.next_number,
            self.next_sequence,
            self.head,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let c = &self.counters;
        for v in [
            c.sent,
            c.received,
            c.deleted,
            c.expired,
            c.dead_lettered,
            c.dropped,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.live.to_le_bytes());
        let (pages, page_base) = self.slots.share_range(self.head, self.next_number);
        let head = b;
        let mut b = Vec::new();
        let live_groups: Vec<(u32, &Group)> = self
            .groups
            .iter()
            .enumerate()
            .filter(|(_, g)| !g.name.is_empty() || !g.msgs.is_empty())
            .map(|(i, g)| (i as u32, g))
            .collect();
        b.extend_from_slice(&(live_groups.len() as u32).to_le_bytes());
        for (i, g) in live_groups {
            b.extend_from_slice(&i.to_le_bytes());
            b.extend_from_slice(&(g.name.len() as u32).to_le_bytes());
            b.extend_from_slice(g.name.as_bytes());
            b.extend_from_slice(&(g.msgs.len() as u32).to_le_bytes());
            for &(s, n) in &g.msgs {
                b.extend_from_slice(&s.to_le_bytes());
                b.extend_from_slice(&n.to_le_bytes());
            }
        }
        let ttl: Vec<&(u64, u64)> = self
            .ttl
            .iter()
            .filter(|(_, n)| self.meta(*n).is_some())
            .collect();
        b.extend_from_slice(&(ttl.len() as u64).to_le_bytes());
        for &&(t, n) in &ttl {
            b.extend_from_slice(&t.to_le_bytes());
            b.extend_from_slice(&n.to_le_bytes());
        }
        b.extend_from_slice(&(self.dedup.len() as u64).to_le_bytes());
        for (k, e) in &self.dedup {
            b.extend_from_slice(&(k.len() as u32).to_le_bytes());
            b.extend_from_slice(k.as_bytes());
            b.extend_from_slice(&e.message_id);
            b.extend_from_slice(&e.sequence.to_le_bytes());
            b.extend_from_slice(&e.expires_ms.to_le_bytes());
        }
        b.extend_from_slice(&(self.attempts.len() as u64).to_le_bytes());
        for (id, a) in &self.attempts {
            b.extend_from_slice(&(id.len() as u32).to_le_bytes());
            b.extend_from_slice(id.as_bytes());
            b.extend_from_slice(&a.expires_ms.to_le_bytes());
            b.extend_from_slice(&(a.deliveries.len() as u32).to_le_bytes());
            for &(n, rc) in &a.deliveries {
                b.extend_from_slice(&n.to_le_bytes());
                b.extend_from_slice(&rc.to_le_bytes());
            }
        }
        CheckpointCopy {
            head,
            pages,
            page_base,
            first: self.head,
            end: self.next_number,
            live: self.live,
            tail: b,
        }
    }

    /// Restores the persistent state from a checkpoint (replay of the log tail follows, then
    /// [`rebuild`](Self::rebuild)).
    pub fn decode_checkpoint(buf: &[u8]) -> Result<QueueState, String> {
        let mut r = CpReader { buf, pos: 0 };
        if r.take(4)? != b"FQCP" {
            return Err("bad checkpoint magic".into());
        }
        let version = r.u8()?;
        if !(1..=CHECKPOINT_VERSION).contains(&version) {
            return Err(format!("unknown checkpoint version {version}"));
        }
        let mut s = QueueState::new(r.u8()? != 0);
        s.applied_offset = r.u64()?;
        s.next_number = r.u64()?;
        s.next_sequence = r.u64()?;
        s.head = r.u64()?;
        s.counters = Counters {
            sent: r.u64()?,
            received: r.u64()?,
            deleted: r.u64()?,
            expired: r.u64()?,
            dead_lettered: r.u64()?,
            dropped: r.u64()?,
        };
        let live = r.u64()?;
        if live > (buf.len() / 40) as u64 {
            return Err("live count exceeds checkpoint size".into());
        }
        s.slots.trim(s.head);
        let mut metas = Vec::with_capacity(live as usize);
        for _ in 0..live {
            let n = r.u64()?;
            let m = Meta {
                loc: r.u64()?,
                sent_ms: r.u64()?,
                visible_at_ms: r.u64()?,
                receive_count: r.u32()?,
                group: r.u32()?,
                first_receive_delta: r.u32()?,
                priority: r.u8()?.min(PRIORITY_LEVELS as u8 - 1),
                state: match r.u8()? {
                    1 => MsgState::Ready,
                    2 => MsgState::Delayed,
                    3 => MsgState::InFlight,
                    x => return Err(format!("bad message state {x}")),
                },
            };
            if n < s.head || n >= s.next_number {
                return Err(format!(
                    "message number {n} outside {}..{}",
                    s.head, s.next_number
                ));
            }
            metas.push((n, m));
        }
        let groups = r.u32()?;
        for _ in 0..groups {
            let i = r.u32()? as usize;
            let name = r.string()?;
            let count = r.u32()?;
            if i > 1 << 26 {
                return Err("group index too large".into());
            }
            while s.groups.len() <= i {
                s.groups.push(Group::default());
            }
            let mut msgs = VecDeque::new();
            for _ in 0..count {
                msgs.push_back((r.u64()?, r.u64()?));
            }
            s.group_ids.insert(name.clone(), i as u32);
            s.groups[i] = Group {
                name,
                msgs,
                blocked: 0,
                scheduled: false,
            };
        }
        for (i, g) in s.groups.iter().enumerate() {
            if g.name.is_empty() && g.msgs.is_empty() {
                s.free_groups.push(i as u32);
            }
        }
        for (n, mut m) in metas {
            if m.group != NO_GROUP && m.group as usize >= s.groups.len() {
                return Err(format!("message {n} names unknown group {}", m.group));
            }
            let st = m.state;
            m.state = MsgState::Dead;
            s.slots.ensure(n);
            if let Some(slot) = s.slots.get_mut(n) {
                *slot = m;
            }
            s.live += 1;
            s.set_state(n, st);
        }
        let ttl = r.u64()?;
        for _ in 0..ttl {
            let t = r.u64()?;
            let n = r.u64()?;
            s.ttl.insert((t, n));
        }
        let dedup = r.u64()?;
        for _ in 0..dedup {
            let key = r.string()?;
            let mut message_id = [0u8; 16];
            message_id.copy_from_slice(r.take(16)?);
            let sequence = r.u64()?;
            let expires_ms = r.u64()?;
            s.dedup_insert(
                key,
                DedupEntry {
                    message_id,
                    sequence,
                    expires_ms,
                },
            );
        }
        let attempts = if version >= 2 { r.u64()? } else { 0 };
        let mut restored_attempts = Vec::new();
        for _ in 0..attempts {
            let id = r.string()?;
            let expires_ms = r.u64()?;
            let count = r.u32()? as usize;
            if count > (buf.len() - r.pos) / 12 {
                return Err("receive attempt overruns the checkpoint".into());
            }
            let mut deliveries = Vec::with_capacity(count);
            for _ in 0..count {
                deliveries.push((r.u64()?, r.u32()?));
            }
            restored_attempts.push((
                id,
                ReceiveAttempt {
                    expires_ms,
                    deliveries,
                },
            ));
        }
        // Oldest first, so the order of expiry is rebuilt.
        restored_attempts.sort_by_key(|(_, a)| a.expires_ms);
        for (id, attempt) in restored_attempts {
            s.attempt_insert(id, attempt);
        }
        if r.pos != buf.len() {
            return Err("trailing bytes in checkpoint".into());
        }
        // Head may point at a dead slot if the checkpoint had none live.
        while s.head < s.next_number && !s.slots.get(s.head).is_some_and(|m| m.is_live()) {
            s.head += 1;
        }
        Ok(s)
    }

    /// Drops messages whose record lies at or beyond `end` (the log lost its tail after a crash
    /// in a relaxed durability mode, while an earlier checkpoint had seen it).
    pub fn forget_beyond(&mut self, end: u64) {
        let mut n = self.head;
        while n < self.next_number {
            if self.meta(n).is_some_and(|m| m.loc >= end) {
                self.remove(n);
            }
            n += 1;
        }
        self.applied_offset = self.applied_offset.min(end);
    }
}

/// The dedup table key: the id, prefixed by the group when the scope is per group.
pub fn dedup_key(group: Option<&str>, id: &str) -> String {
    match group {
        Some(g) => format!("{g}\u{0}{id}"),
        None => id.to_string(),
    }
}

struct CpReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> CpReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or("truncated checkpoint")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "bad utf-8 in checkpoint".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::event::Enqueued;
    use proptest::prelude::*;

    const POLICY: Policy = Policy {
        retention_ms: u64::MAX / 4,
        max_receive_count: None,
        has_dead_letter_queue: false,
    };

    struct Sim {
        s: QueueState,
        offset: u64,
    }

    impl Sim {
        fn new(fifo: bool) -> Sim {
            let mut s = QueueState::new(fifo);
            s.rebuild(0);
            Sim { s, offset: 0 }
        }
        fn commit(&mut self, events: Vec<Event>, now: u64) {
            self.s.apply(self.offset, events, now);
            self.offset += 1;
        }
        fn send(&mut self, now: u64, priority: u8, group: Option<String>, delay: u64) -> u64 {
            let number = self.s.alloc_number();
            let sequence = if self.s.fifo {
                self.s.alloc_sequence()
            } else {
                0
            };
            let e = Enqueued {
                number,
                sent_ms: now,
                visible_at_ms: if delay > 0 { now + delay } else { 0 },
                priority,
                sequence,
                group,
                ..Default::default()
            };
            self.commit(vec![Event::Enqueued(Box::new(e))], now);
            number
        }
        fn receive(&mut self, max: usize, now: u64, vis: u64) -> Vec<u64> {
            self.s.advance(now);
            let (events, _) = self.s.plan_receive(max, now, vis, &POLICY);
            let ns = events
                .iter()
                .map(|e| match e {
                    Event::Received { number, .. } => *number,
                    _ => unreachable!(),
                })
                .collect();
            if !events.is_empty() {
                self.commit(events, now);
            }
            ns
        }
    }

    #[test]
    fn a_checkpoint_of_many_chunks_round_trips() {
        let mut sim = Sim::new(false);
        for i in 0..20_000u64 {
            sim.send(1_000 + i, (i % 10) as u8, None, 0);
        }
        let leased = sim.receive(3_000, 50_000, 30_000);
        for &n in leased.iter().step_by(2) {
            sim.commit(vec![Event::Deleted { number: n }], 50_000);
        }
        let bytes = sim.s.encode_checkpoint();
        assert!(
            bytes.len() > 3 * CHECKPOINT_CHUNK_BYTES,
            "{} bytes",
            bytes.len()
        );
        let mut restored = QueueState::decode_checkpoint(&bytes).unwrap();
        restored.rebuild(50_000);
        assert_eq!(restored.live(), 20_000 - 1_500);
        assert_eq!(restored.counts(), sim.s.counts());
        for n in 0..sim.s.next_number() + 1 {
            assert_eq!(restored.meta(n), sim.s.meta(n), "message {n}");
        }
    }

    #[test]
    fn a_checkpoint_keeps_the_state_it_was_taken_of_while_the_queue_changes() {
        let mut sim = Sim::new(false);
        for i in 0..3 * PAGE as u64 {
            sim.send(1_000 + i, 0, None, 0);
        }
        let before: Vec<Option<Meta>> = (0..sim.s.next_number() + 1)
            .map(|n| sim.s.meta(n).copied())
            .collect();
        let copy = sim.s.copy_for_checkpoint();
        // After the copy: leases and deletes in every page, and a new page of sends.
        let leased = sim.receive(2 * PAGE + 10, 60_000, 30_000);
        for &n in leased.iter().step_by(3) {
            sim.commit(vec![Event::Deleted { number: n }], 60_000);
        }
        for i in 0..PAGE as u64 {
            sim.send(70_000 + i, 0, None, 0);
        }
        let mut bytes = Vec::new();
        copy.encode_chunks(|chunk| {
            bytes.extend_from_slice(chunk);
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap();
        let mut restored = QueueState::decode_checkpoint(&bytes).unwrap();
        restored.rebuild(60_000);
        assert_eq!(restored.live(), 3 * PAGE as u64);
        for (n, meta) in before.iter().enumerate() {
            assert_eq!(restored.meta(n as u64), meta.as_ref(), "message {n}");
        }
        // The queue itself kept every change.
        assert_eq!(
            sim.s.live(),
            4 * PAGE as u64 - leased.len().div_ceil(3) as u64
        );
        assert_eq!(sim.s.meta(leased[1]).unwrap().state, MsgState::InFlight);
        assert_eq!(sim.s.meta(leased[0]), None);
    }

    #[test]
    fn priorities_and_requeue_order() {
        let mut sim = Sim::new(false);
        let a = sim.send(0, 0, None, 0);
        let b = sim.send(0, 9, None, 0);
        let c = sim.send(0, 0, None, 0);
        assert_eq!(sim.receive(1, 0, 10), vec![b]);
        assert_eq!(sim.receive(1, 0, 10), vec![a]);
        // a's lease ends: it comes back before c (older first within a priority).
        assert_eq!(sim.receive(5, 10, 10), vec![b, a, c]);
    }

    #[test]
    fn one_plan_takes_at_most_max_including_dead_letters() {
        // A move task plans with max_receive_count 0: everything it takes is dead-lettered,
        // and its rate limit relies on getting no more than it asked for.
        let move_all = Policy {
            max_receive_count: Some(0),
            ..POLICY
        };
        for fifo in [false, true] {
            let mut sim = Sim::new(fifo);
            let sent: Vec<u64> = (0..10)
                .map(|i| sim.send(0, 0, fifo.then(|| format!("g{}", i % 2)), 0))
                .collect();
            let (events, dead) = sim.s.plan_receive(3, 0, 0, &move_all);
            assert!(events.is_empty());
            assert!(dead.iter().all(|n| sent.contains(n)));
            if fifo {
                // One message per group and pass: the two groups' heads.
                assert_eq!(dead, vec![sent[0], sent[1]]);
            } else {
                assert_eq!(dead, sent[..3].to_vec());
                // The rest stay deliverable.
                let (events, _) = sim.s.plan_receive(100, 0, 10, &POLICY);
                assert_eq!(events.len(), 7);
            }
        }
    }

    #[test]
    fn fifo_group_blocks_until_delete() {
        let mut sim = Sim::new(true);
        let a1 = sim.send(0, 0, Some("a".into()), 0);
        let a2 = sim.send(0, 0, Some("a".into()), 0);
        let b1 = sim.send(0, 0, Some("b".into()), 0);
        assert_eq!(sim.receive(1, 0, 100), vec![a1]);
        assert_eq!(sim.receive(10, 0, 100), vec![b1]);
        assert!(sim.receive(10, 0, 100).is_empty());
        sim.commit(vec![Event::Deleted { number: a1 }], 0);
        assert_eq!(sim.receive(10, 0, 100), vec![a2]);
    }

    #[test]
    fn memory_pages_are_freed() {
        let mut sim = Sim::new(false);
        for _ in 0..(PAGE * 3) {
            let n = sim.send(0, 0, None, 0);
            sim.receive(1, 0, 100);
            sim.commit(vec![Event::Deleted { number: n }], 0);
        }
        assert!(sim.s.slots.pages.len() <= 1);
        assert_eq!(sim.s.live(), 0);
    }

    fn attempted(id: &str, expires_ms: u64, deliveries: Vec<(u64, u32)>) -> Event {
        Event::Attempted {
            attempt_id: id.into(),
            expires_ms,
            deliveries,
        }
    }

    #[test]
    fn checkpoints_keep_receive_attempts_and_version_1_still_reads() {
        let mut s = QueueState::new(true);
        s.apply(0, vec![attempted("try-1", 5_000, vec![(1, 1), (2, 3)])], 0);
        let restored = QueueState::decode_checkpoint(&s.encode_checkpoint()).unwrap();
        let want = ReceiveAttempt {
            expires_ms: 5_000,
            deliveries: vec![(1, 1), (2, 3)],
        };
        assert_eq!(restored.attempt("try-1", 4_999), Some(&want));
        assert_eq!(restored.attempt("try-1", 5_000), None, "expired");
        // A version 1 checkpoint is this layout without the attempts section.
        let mut v1 = QueueState::new(true).encode_checkpoint();
        assert_eq!(v1[4], CHECKPOINT_VERSION);
        v1[4] = 1;
        v1.truncate(v1.len() - 8);
        let old = QueueState::decode_checkpoint(&v1).unwrap();
        assert_eq!(old.attempt("try-1", 0), None);
        let mut future = QueueState::new(true).encode_checkpoint();
        future[4] = CHECKPOINT_VERSION + 1;
        assert!(QueueState::decode_checkpoint(&future).is_err());
    }

    #[test]
    fn receive_attempts_are_bounded_oldest_first() {
        let mut s = QueueState::new(true);
        for i in 0..MAX_RECEIVE_ATTEMPTS as u64 {
            s.apply(
                i,
                vec![attempted(
                    &format!("a{i}"),
                    DEDUP_WINDOW_MS + i,
                    vec![(1, 1)],
                )],
                0,
            );
        }
        let newest = MAX_RECEIVE_ATTEMPTS as u64;
        s.apply(
            newest,
            vec![attempted("new", DEDUP_WINDOW_MS + newest, vec![(1, 1)])],
            0,
        );
        assert_eq!(s.attempts.len(), MAX_RECEIVE_ATTEMPTS);
        assert!(s.attempt("a0", 0).is_none(), "the oldest went");
        assert!(s.attempt("a1", 0).is_some() && s.attempt("new", 0).is_some());
        // Used again, an id counts from its newest use.
        s.apply(
            newest + 1,
            vec![attempted("a1", 2 * DEDUP_WINDOW_MS, vec![(2, 1)])],
            0,
        );
        s.prune_attempts(DEDUP_WINDOW_MS + newest);
        assert_eq!(s.attempts.len(), 1);
        assert_eq!(s.attempt("a1", 0).unwrap().deliveries, vec![(2, 1)]);
    }

    proptest! {
        /// A checkpoint restores exactly the state that produced it.
        #[test]
        fn checkpoint_roundtrip(ops in proptest::collection::vec((0u8..5, 0u8..10, 0u64..50), 1..200), fifo in any::<bool>()) {
            let mut sim = Sim::new(fifo);
            let mut now = 1_000;
            let mut held: Vec<u64> = Vec::new();
            for (op, x, y) in ops {
                match op {
                    0 | 1 => {
                        let g = fifo.then(|| format!("g{}", x % 3));
                        let p = if fifo { 0 } else { x };
                        sim.send(now, p, g, if fifo { 0 } else { y % 3 * 10 });
                    }
                    2 => held.extend(sim.receive((x as usize % 4) + 1, now, y)),
                    3 => {
                        if let Some(n) = held.pop() {
                            sim.commit(vec![Event::Deleted { number: n }], now);
                        }
                    }
                    _ => now += y,
                }
            }
            sim.s.advance(now);
            let bytes = sim.s.encode_checkpoint();
            let mut restored = QueueState::decode_checkpoint(&bytes).unwrap();
            restored.rebuild(now);
            prop_assert_eq!(restored.counts(), sim.s.counts());
            prop_assert_eq!(restored.counters, sim.s.counters);
            prop_assert_eq!(restored.live(), sim.s.live());
            prop_assert_eq!(restored.next_number(), sim.s.next_number());
            for n in 1..sim.s.next_number() {
                prop_assert_eq!(restored.meta(n), sim.s.meta(n));
            }
            let mut peek_a = restored.peek(1000);
            let mut peek_b = sim.s.peek(1000);
            if !fifo {
                // Same set; order may differ only between requeued and fresh entries.
                prop_assert_eq!(&peek_a, &peek_b);
            }
            peek_a.sort();
            peek_b.sort();
            prop_assert_eq!(peek_a, peek_b);
        }
    }
}
