//! The consumer group coordinator: membership, generations and rebalances.
//!
//! This is Kafka's classic group protocol as a state machine. Time is passed in by the caller
//! (`now_ms`), so tests drive it deterministically; the server calls [`Coordinator::tick`]
//! every [`TICK_INTERVAL_MS`].
//!
//! ```text
//!            join                      all members rejoined          leader's sync
//!  Empty ─────────► PreparingRebalance ─────────────────► Completing ─────────────► Stable
//!    ▲                 ▲    (or rebalance timeout:             │                       │
//!    │                 │     absentees removed)                │                       │
//!    └── last member ──┴──── join / leave / session timeout ───┴───────────────────────┘
//! ```
//!
//! - A join answers only when the rebalance completes: every member answers in the new
//!   generation, the leader (first member) also gets every member's protocol metadata.
//! - Sync waits for the leader's assignment, then every member gets its own share.
//! - Heartbeats keep a member alive; during a rebalance they answer `RebalanceInProgress`
//!   so the member rejoins. A member unheard for its session timeout is removed.
//! - Static members (KIP-345) carry a `group.instance.id`. When one rejoins without its member
//!   id (its process restarted), it takes over its old member: the old id is fenced
//!   (`FencedInstanceId`), and in a stable group whose chosen protocol and this member's
//!   metadata are unchanged, it gets its old assignment back without a rebalance (unless it
//!   was the leader, which must see every member: then the group rebalances). Every call that
//!   names an instance id with another member id is fenced.
//! - A new dynamic member may first be given its member id without joining (KIP-394,
//!   [`Coordinator::new_pending_member`]): it then joins with that id, so a join the client
//!   retried after a timeout cannot leave a second member behind. A pending id unused for its
//!   session timeout is forgotten.
//! - Stable groups are saved (`groups.json` beside the streams, written atomically at most
//!   every tick after a change, and at shutdown) and loaded as stable on open, with every
//!   member's session timer restarted, so a broker restart does not rebalance the groups: their
//!   members reconnect and heartbeat on. A group that was rebalancing is not saved; its
//!   members rejoin. Committed offsets are durable on their own (`offsets.rs`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// How often the server should call [`Coordinator::tick`].
pub const TICK_INTERVAL_MS: u64 = 100;
/// Accepted session timeouts.
pub const MIN_SESSION_TIMEOUT_MS: u64 = 1_000;
pub const MAX_SESSION_TIMEOUT_MS: u64 = 30 * 60_000;
/// Largest group.
pub const MAX_GROUP_MEMBERS: usize = 1_000;
/// Longest group id and member metadata accepted.
pub const MAX_GROUP_ID_LEN: usize = 255;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("unknown member id")]
    UnknownMemberId,
    #[error("illegal generation")]
    IllegalGeneration,
    #[error("rebalance in progress")]
    RebalanceInProgress,
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    #[error("invalid session timeout")]
    InvalidSessionTimeout,
    #[error("group is not empty")]
    NonEmptyGroup,
    #[error("group id not found")]
    GroupIdNotFound,
    #[error("invalid group id")]
    InvalidGroupId,
    #[error("group is full")]
    GroupMaxSizeReached,
    #[error("coordinator is shutting down")]
    CoordinatorNotAvailable,
    #[error("another member holds this group instance id")]
    FencedInstanceId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// Kafka's name for the state (ListGroups, DescribeGroups).
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// A JoinGroup call.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty for a new member.
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub protocol_type: String,
    /// (protocol name, member metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinResult {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol_name: String,
    pub leader: String,
    pub member_id: String,
    /// Every member's id, group instance id and metadata for the chosen protocol: only for
    /// the leader.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

pub type JoinWaiter = oneshot::Receiver<Result<JoinResult, GroupError>>;
pub type SyncWaiter = oneshot::Receiver<Result<Bytes, GroupError>>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub generation: i32,
    pub members: Vec<MemberDescription>,
}

struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: u64,
    rebalance_timeout_ms: u64,
    protocols: Vec<(String, Bytes)>,
    last_heard_ms: u64,
    joined_seq: u64,
    assignment: Bytes,
    join_waiter: Option<oneshot::Sender<Result<JoinResult, GroupError>>>,
    sync_waiter: Option<oneshot::Sender<Result<Bytes, GroupError>>>,
}

struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: String,
    protocol: String,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Static members: group instance id → member id.
    instances: HashMap<String, String>,
    /// Member ids handed out before their first join (KIP-394) → when they expire.
    pending: HashMap<String, u64>,
    rebalance_deadline_ms: u64,
}

impl Group {
    fn new() -> Group {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: None,
            members: BTreeMap::new(),
            instances: HashMap::new(),
            pending: HashMap::new(),
            rebalance_deadline_ms: 0,
        }
    }

    fn prepare_rebalance(&mut self, now_ms: u64) {
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(Err(GroupError::RebalanceInProgress));
                }
            }
        }
        if self.state != GroupState::PreparingRebalance {
            let timeout = self
                .members
                .values()
                .map(|m| m.rebalance_timeout_ms)
                .max()
                .unwrap_or(0);
            self.rebalance_deadline_ms = now_ms + timeout;
            self.state = GroupState::PreparingRebalance;
        }
    }

    /// Completes the join phase if every member rejoined, or the deadline passed.
    fn try_complete_join(&mut self, now_ms: u64) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.join_waiter.is_some());
        if !all_joined && now_ms < self.rebalance_deadline_ms {
            return;
        }
        self.members.retain(|_, m| m.join_waiter.is_some());
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.leader = None;
            self.protocol.clear();
            return;
        }
        // The first protocol of the longest-standing member that every member supports.
        let first = self
            .members
            .iter()
            .min_by_key(|(_, m)| m.joined_seq)
            .map(|(id, _)| id.clone());
        let leader = match &self.leader {
            Some(l) if self.members.contains_key(l) => l.clone(),
            _ => first.unwrap_or_default(),
        };
        let protocol = self.select_protocol(&leader);
        self.protocol = protocol.clone();
        self.leader = Some(leader.clone());
        self.state = GroupState::CompletingRebalance;
        let mut ordered: Vec<(&String, &Member)> = self.members.iter().collect();
        ordered.sort_by_key(|(_, m)| m.joined_seq);
        let all: Vec<(String, Option<String>, Bytes)> = ordered
            .iter()
            .map(|(id, m)| {
                let meta = m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol)
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default();
                ((*id).clone(), m.instance_id.clone(), meta)
            })
            .collect();
        for (id, m) in self.members.iter_mut() {
            m.last_heard_ms = now_ms;
            m.assignment = Bytes::new();
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(Ok(JoinResult {
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: protocol.clone(),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    members: if *id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                }));
            }
        }
    }

    /// The first protocol of `leader`'s list that every member supports.
    fn select_protocol(&self, leader: &str) -> String {
        self.members
            .get(leader)
            .into_iter()
            .flat_map(|l| l.protocols.iter())
            .map(|(name, _)| name.clone())
            .find(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
            .unwrap_or_default()
    }

    /// `FencedInstanceId` when `instance_id` belongs to a member other than `member_id`.
    fn check_instance(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), GroupError> {
        match instance_id.and_then(|i| self.instances.get(i)) {
            Some(owner) if owner != member_id => Err(GroupError::FencedInstanceId),
            _ => Ok(()),
        }
    }

    /// A static member rejoining without its member id: `new_id` takes over the member
    /// `instance_id` held. Answers on `tx` at once when the group can stay stable; otherwise
    /// the group rebalances and the answer comes when the join phase completes.
    fn replace_static_member(
        &mut self,
        instance_id: &str,
        new_id: String,
        req: JoinRequest,
        tx: oneshot::Sender<Result<JoinResult, GroupError>>,
        now_ms: u64,
    ) {
        let Some((old_id, mut member)) = self
            .instances
            .get(instance_id)
            .cloned()
            .and_then(|old_id| self.members.remove(&old_id).map(|m| (old_id, m)))
        else {
            let _ = tx.send(Err(GroupError::UnknownMemberId));
            return;
        };
        if let Some(w) = member.join_waiter.take() {
            let _ = w.send(Err(GroupError::FencedInstanceId));
        }
        if let Some(w) = member.sync_waiter.take() {
            let _ = w.send(Err(GroupError::FencedInstanceId));
        }
        let metadata = |protocols: &[(String, Bytes)], name: &str| {
            protocols
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, b)| b.clone())
        };
        let unchanged =
            metadata(&member.protocols, &self.protocol) == metadata(&req.protocols, &self.protocol);
        let was_leader = self.leader.as_deref() == Some(old_id.as_str());
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms.max(req.session_timeout_ms);
        member.protocols = req.protocols;
        member.last_heard_ms = now_ms;
        self.members.insert(new_id.clone(), member);
        self.instances
            .insert(instance_id.to_string(), new_id.clone());
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        let keeps_protocol = self
            .leader
            .as_deref()
            .is_some_and(|l| self.select_protocol(l) == self.protocol);
        if self.state == GroupState::Stable && unchanged && keeps_protocol && !was_leader {
            // Its old assignment stands: SyncGroup hands it over.
            let _ = tx.send(Ok(JoinResult {
                generation: self.generation,
                protocol_type: self.protocol_type.clone(),
                protocol_name: self.protocol.clone(),
                leader: self.leader.clone().unwrap_or_default(),
                member_id: new_id,
                members: Vec::new(),
            }));
            return;
        }
        if let Some(m) = self.members.get_mut(&new_id) {
            m.join_waiter = Some(tx);
        }
        self.prepare_rebalance(now_ms);
        self.try_complete_join(now_ms);
    }

    fn remove_member(&mut self, member_id: &str, now_ms: u64) {
        let Some(mut m) = self.members.remove(member_id) else {
            return;
        };
        if let Some(instance) = &m.instance_id {
            if self
                .instances
                .get(instance)
                .is_some_and(|id| id == member_id)
            {
                self.instances.remove(instance);
            }
        }
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(Err(GroupError::UnknownMemberId));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(Err(GroupError::UnknownMemberId));
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms);
                self.try_complete_join(now_ms);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms),
            GroupState::Empty => {}
        }
    }
}

/// A new member id: the client id (or "member") and 64 random bits.
fn new_member_id(client_id: &str) -> String {
    let prefix = if client_id.is_empty() {
        "member"
    } else {
        client_id
    };
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

/// Every group of the broker.
pub struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
    seq: Mutex<u64>,
    /// Where stable groups are saved; `None` keeps them in memory only.
    store: Option<PathBuf>,
    /// A group changed since the last save.
    changed: AtomicBool,
}

/// A stable group as saved in the store.
#[derive(Serialize, Deserialize)]
struct SavedGroup {
    id: String,
    generation: i32,
    protocol_type: String,
    protocol: String,
    leader: String,
    members: Vec<SavedMember>,
}

#[derive(Serialize, Deserialize)]
struct SavedMember {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: u64,
    rebalance_timeout_ms: u64,
    /// (protocol name, base64 metadata).
    protocols: Vec<(String, String)>,
    /// Base64.
    assignment: String,
    joined_seq: u64,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Result<Bytes, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

impl SavedGroup {
    fn of(id: &str, g: &Group) -> Option<SavedGroup> {
        if g.state != GroupState::Stable {
            return None;
        }
        Some(SavedGroup {
            id: id.to_string(),
            generation: g.generation,
            protocol_type: g.protocol_type.clone(),
            protocol: g.protocol.clone(),
            leader: g.leader.clone().unwrap_or_default(),
            members: g
                .members
                .iter()
                .map(|(id, m)| SavedMember {
                    id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: m
                        .protocols
                        .iter()
                        .map(|(n, b)| (n.clone(), b64(b)))
                        .collect(),
                    assignment: b64(&m.assignment),
                    joined_seq: m.joined_seq,
                })
                .collect(),
        })
    }

    /// The group, stable, its members last heard at `now_ms`.
    fn restore(self, now_ms: u64) -> Result<(String, Group), String> {
        let mut g = Group::new();
        g.state = GroupState::Stable;
        g.generation = self.generation;
        g.protocol_type = self.protocol_type;
        g.protocol = self.protocol;
        g.leader = Some(self.leader);
        for m in self.members {
            if let Some(i) = &m.instance_id {
                g.instances.insert(i.clone(), m.id.clone());
            }
            let protocols = m
                .protocols
                .iter()
                .map(|(n, b)| Ok((n.clone(), unb64(b)?)))
                .collect::<Result<Vec<_>, String>>()?;
            g.members.insert(
                m.id,
                Member {
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols,
                    last_heard_ms: now_ms,
                    joined_seq: m.joined_seq,
                    assignment: unb64(&m.assignment)?,
                    join_waiter: None,
                    sync_waiter: None,
                },
            );
        }
        if g.members.is_empty() || !g.leader.as_ref().is_some_and(|l| g.members.contains_key(l)) {
            return Err(format!("group {:?}: no members or no leader", self.id));
        }
        Ok((self.id, g))
    }
}

impl Default for Coordinator {
    fn default() -> Self {
        Coordinator::new()
    }
}

impl Coordinator {
    /// A coordinator that keeps its groups in memory only.
    pub fn new() -> Coordinator {
        Coordinator {
            groups: Mutex::new(HashMap::new()),
            seq: Mutex::new(0),
            store: None,
            changed: AtomicBool::new(false),
        }
    }

    /// A coordinator that saves its stable groups in `store` and starts with those saved
    /// there. An unreadable store is logged and ignored: its groups' members rejoin.
    pub fn open(store: &Path, now_ms: u64) -> Coordinator {
        let mut groups = HashMap::new();
        let mut seq = 0;
        match std::fs::read(store) {
            Ok(bytes) => {
                let restored = serde_json::from_slice::<Vec<SavedGroup>>(&bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|saved| {
                        saved
                            .into_iter()
                            .map(|g| g.restore(now_ms))
                            .collect::<Result<Vec<_>, String>>()
                    });
                match restored {
                    Ok(restored) => {
                        for (id, g) in restored {
                            seq = g.members.values().map(|m| m.joined_seq).fold(seq, u64::max);
                            groups.insert(id, g);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(path = %store.display(), %error, "ignoring unreadable consumer group store; its members rejoin")
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(path = %store.display(), %error, "cannot read the consumer group store; its members rejoin")
            }
        }
        Coordinator {
            groups: Mutex::new(groups),
            seq: Mutex::new(seq),
            store: Some(store.to_path_buf()),
            changed: AtomicBool::new(false),
        }
    }

    /// Whether a group changed since the last save.
    pub fn has_unsaved_changes(&self) -> bool {
        self.store.is_some() && self.changed.load(Ordering::Acquire)
    }

    /// Saves the stable groups if any group changed since the last save (the server calls it
    /// after each tick that left changes, and it runs at shutdown). Blocking: it syncs the
    /// file. A failure is logged and retried at the next call.
    pub fn save(&self) {
        let Some(store) = &self.store else { return };
        if !self.changed.swap(false, Ordering::AcqRel) {
            return;
        }
        let saved: Vec<SavedGroup> = {
            let groups = self.groups.lock();
            let mut saved: Vec<SavedGroup> = groups
                .iter()
                .filter_map(|(id, g)| SavedGroup::of(id, g))
                .collect();
            saved.sort_by(|a, b| a.id.cmp(&b.id));
            saved
        };
        let written = serde_json::to_vec(&saved)
            .map_err(|e| crate::error::BrokerError::Storage(e.to_string()))
            .and_then(|bytes| crate::catalog::write_atomic(store, &bytes));
        if let Err(error) = written {
            tracing::warn!(path = %store.display(), %error, "cannot save consumer groups");
            self.changed.store(true, Ordering::Release);
        }
    }

    fn mark_changed(&self) {
        self.changed.store(true, Ordering::Release);
    }

    fn next_seq(&self) -> u64 {
        let mut s = self.seq.lock();
        *s += 1;
        *s
    }

    /// Joins (or rejoins) a group. The answer arrives on the returned channel when the
    /// rebalance completes.
    pub fn join(&self, req: JoinRequest, now_ms: u64) -> Result<JoinWaiter, GroupError> {
        if req.group_id.is_empty() || req.group_id.len() > MAX_GROUP_ID_LEN {
            return Err(GroupError::InvalidGroupId);
        }
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&req.session_timeout_ms) {
            return Err(GroupError::InvalidSessionTimeout);
        }
        if req.protocols.is_empty() {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        let seq = self.next_seq();
        self.mark_changed();
        let mut groups = self.groups.lock();
        let group = groups
            .entry(req.group_id.clone())
            .or_insert_with(Group::new);
        if !group.members.is_empty() {
            let compatible = group.protocol_type == req.protocol_type
                && group
                    .members
                    .iter()
                    .filter(|(id, m)| {
                        **id != req.member_id
                            && (m.instance_id.is_none() || m.instance_id != req.group_instance_id)
                    })
                    .all(|(_, m)| {
                        m.protocols
                            .iter()
                            .any(|(n, _)| req.protocols.iter().any(|(rn, _)| rn == n))
                    });
            if !compatible {
                return Err(GroupError::InconsistentGroupProtocol);
            }
        } else {
            group.protocol_type = req.protocol_type.clone();
        }
        let instance = req.group_instance_id.clone();
        let pending = group.pending.remove(&req.member_id).is_some();
        let member_id = if req.member_id.is_empty() || pending {
            let new_id = if pending {
                req.member_id.clone()
            } else {
                new_member_id(&req.client_id)
            };
            if let Some(i) = instance
                .as_deref()
                .filter(|i| group.instances.contains_key(*i))
            {
                let (tx, rx) = oneshot::channel();
                group.replace_static_member(i, new_id, req, tx, now_ms);
                return Ok(rx);
            }
            if group.members.len() + group.pending.len() >= MAX_GROUP_MEMBERS {
                return Err(GroupError::GroupMaxSizeReached);
            }
            let id = new_id;
            if let Some(i) = &instance {
                group.instances.insert(i.clone(), id.clone());
            }
            group.members.insert(
                id.clone(),
                Member {
                    instance_id: instance.clone(),
                    client_id: req.client_id.clone(),
                    client_host: req.client_host.clone(),
                    session_timeout_ms: req.session_timeout_ms,
                    rebalance_timeout_ms: req.rebalance_timeout_ms.max(req.session_timeout_ms),
                    protocols: Vec::new(),
                    last_heard_ms: now_ms,
                    joined_seq: seq,
                    assignment: Bytes::new(),
                    join_waiter: None,
                    sync_waiter: None,
                },
            );
            id
        } else if group.members.contains_key(&req.member_id) {
            group.check_instance(&req.member_id, instance.as_deref())?;
            req.member_id.clone()
        } else if instance
            .as_deref()
            .is_some_and(|i| group.instances.contains_key(i))
        {
            return Err(GroupError::FencedInstanceId);
        } else {
            return Err(GroupError::UnknownMemberId);
        };
        let (tx, rx) = oneshot::channel();
        let member = group
            .members
            .get_mut(&member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        member.protocols = req.protocols;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms.max(req.session_timeout_ms);
        member.last_heard_ms = now_ms;
        if let Some(old) = member.join_waiter.replace(tx) {
            let _ = old.send(Err(GroupError::RebalanceInProgress));
        }
        group.prepare_rebalance(now_ms);
        group.try_complete_join(now_ms);
        Ok(rx)
    }

    /// KIP-394: hands a new dynamic member its member id without joining it; its JoinGroup
    /// with that id (within its session timeout) joins it. The group is created if missing.
    pub fn new_pending_member(
        &self,
        group_id: &str,
        client_id: &str,
        session_timeout_ms: u64,
        now_ms: u64,
    ) -> Result<String, GroupError> {
        if group_id.is_empty() || group_id.len() > MAX_GROUP_ID_LEN {
            return Err(GroupError::InvalidGroupId);
        }
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&session_timeout_ms) {
            return Err(GroupError::InvalidSessionTimeout);
        }
        let mut groups = self.groups.lock();
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(Group::new);
        if group.members.len() + group.pending.len() >= MAX_GROUP_MEMBERS {
            return Err(GroupError::GroupMaxSizeReached);
        }
        let id = new_member_id(client_id);
        group
            .pending
            .insert(id.clone(), now_ms + session_timeout_ms);
        Ok(id)
    }

    /// SyncGroup: the leader passes every member's assignment; everyone gets their own.
    pub fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member: (&str, Option<&str>),
        assignments: Vec<(String, Bytes)>,
        now_ms: u64,
    ) -> Result<SyncWaiter, GroupError> {
        let (member_id, instance_id) = member;
        let mut groups = self.groups.lock();
        let group = groups
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        group.check_instance(member_id, instance_id)?;
        if !group.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation != group.generation {
            return Err(GroupError::IllegalGeneration);
        }
        let (tx, rx) = oneshot::channel();
        match group.state {
            GroupState::Empty => return Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => return Err(GroupError::RebalanceInProgress),
            GroupState::Stable => {
                let m = &group.members[member_id];
                let _ = tx.send(Ok(m.assignment.clone()));
            }
            GroupState::CompletingRebalance => {
                let is_leader = group.leader.as_deref() == Some(member_id);
                if let Some(m) = group.members.get_mut(member_id) {
                    m.sync_waiter = Some(tx);
                    m.last_heard_ms = now_ms;
                }
                if is_leader {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for (id, m) in group.members.iter_mut() {
                        m.assignment = given.remove(id).unwrap_or_default();
                        if let Some(w) = m.sync_waiter.take() {
                            let _ = w.send(Ok(m.assignment.clone()));
                        }
                    }
                    group.state = GroupState::Stable;
                    self.mark_changed();
                }
            }
        }
        Ok(rx)
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member: (&str, Option<&str>),
        now_ms: u64,
    ) -> Result<(), GroupError> {
        let (member_id, instance_id) = member;
        let mut groups = self.groups.lock();
        let group = groups
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        group.check_instance(member_id, instance_id)?;
        let state = group.state;
        let current = group.generation;
        let member = group
            .members
            .get_mut(member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        member.last_heard_ms = now_ms;
        if state == GroupState::PreparingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        if generation != current {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    /// LeaveGroup: each (member id, group instance id) is removed; unknown ones are reported
    /// per member. A static member may be named by its instance id alone (empty member id).
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now_ms: u64,
    ) -> Vec<Result<(), GroupError>> {
        let mut groups = self.groups.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return members
                .iter()
                .map(|_| Err(GroupError::UnknownMemberId))
                .collect();
        };
        members
            .iter()
            .map(|(id, instance)| {
                let owner = instance.as_ref().and_then(|i| group.instances.get(i));
                let id = match owner {
                    Some(owner) if id.is_empty() || id == owner => owner.clone(),
                    Some(_) => return Err(GroupError::FencedInstanceId),
                    None => id.clone(),
                };
                if group.members.contains_key(&id) {
                    group.remove_member(&id, now_ms);
                    self.mark_changed();
                    Ok(())
                } else {
                    Err(GroupError::UnknownMemberId)
                }
            })
            .collect()
    }

    /// Validates a commit from a group member (generation -1 = a simple, member-less commit).
    pub fn check_commit(
        &self,
        group_id: &str,
        generation: i32,
        member: (&str, Option<&str>),
        now_ms: u64,
    ) -> Result<(), GroupError> {
        let (member_id, instance_id) = member;
        let mut groups = self.groups.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return if generation < 0 {
                Ok(())
            } else {
                Err(GroupError::IllegalGeneration)
            };
        };
        if generation < 0 && group.members.is_empty() {
            return Ok(());
        }
        group.check_instance(member_id, instance_id)?;
        let state = group.state;
        let current = group.generation;
        let member = group
            .members
            .get_mut(member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        member.last_heard_ms = now_ms;
        if generation != current {
            return Err(GroupError::IllegalGeneration);
        }
        if state == GroupState::PreparingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Expires members past their session timeout and completes overdue rebalances.
    pub fn tick(&self, now_ms: u64) {
        let mut groups = self.groups.lock();
        for (group_id, group) in groups.iter_mut() {
            let before = (group.state, group.generation, group.members.len());
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join_waiter.is_none()
                        && now_ms.saturating_sub(m.last_heard_ms) > m.session_timeout_ms
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                tracing::info!(group = %group_id, member = %id, "consumer group member session expired");
                group.remove_member(&id, now_ms);
            }
            group.pending.retain(|_, expires_ms| *expires_ms > now_ms);
            group.try_complete_join(now_ms);
            if (group.state, group.generation, group.members.len()) != before {
                self.mark_changed();
            }
        }
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let groups = self.groups.lock();
        let g = groups.get(group_id)?;
        let mut members: Vec<(&String, &Member)> = g.members.iter().collect();
        members.sort_by_key(|(_, m)| m.joined_seq);
        Some(GroupDescription {
            group_id: group_id.to_string(),
            state: g.state,
            protocol_type: g.protocol_type.clone(),
            protocol: g.protocol.clone(),
            generation: g.generation,
            members: members
                .into_iter()
                .map(|(id, m)| MemberDescription {
                    member_id: id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == g.protocol)
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// (group id, protocol type, state) of every group with members or history.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        let groups = self.groups.lock();
        let mut out: Vec<_> = groups
            .iter()
            .map(|(id, g)| (id.clone(), g.protocol_type.clone(), g.state))
            .collect();
        out.sort();
        out
    }

    /// Forgets an empty group. `NonEmptyGroup` if it has members.
    pub fn delete(&self, group_id: &str) -> Result<(), GroupError> {
        let mut groups = self.groups.lock();
        match groups.get(group_id) {
            Some(g) if !g.members.is_empty() => Err(GroupError::NonEmptyGroup),
            Some(_) => {
                groups.remove(group_id);
                self.mark_changed();
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Answers every waiting call with `CoordinatorNotAvailable` and saves the stable groups
    /// (shutdown).
    pub fn shutdown(&self) {
        {
            let mut groups = self.groups.lock();
            for g in groups.values_mut() {
                for m in g.members.values_mut() {
                    if let Some(w) = m.join_waiter.take() {
                        let _ = w.send(Err(GroupError::CoordinatorNotAvailable));
                    }
                    if let Some(w) = m.sync_waiter.take() {
                        let _ = w.send(Err(GroupError::CoordinatorNotAvailable));
                    }
                }
            }
        }
        self.save();
    }
}

impl PartialOrd for GroupState {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for GroupState {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join_req(member: &str) -> JoinRequest {
        JoinRequest {
            group_id: "g".into(),
            member_id: member.into(),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 20_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
            group_instance_id: None,
        }
    }

    fn static_req(member: &str, instance: &str, meta: &'static [u8]) -> JoinRequest {
        JoinRequest {
            group_instance_id: Some(instance.into()),
            protocols: vec![("range".into(), Bytes::from_static(meta))],
            ..join_req(member)
        }
    }

    /// Group "g" made stable in generation 2: static member "ia" (the leader, share "A") and
    /// the member `b` joins as (share "B"). Returns both join answers.
    fn stable_pair(c: &Coordinator, b: JoinRequest) -> (JoinResult, JoinResult) {
        let a = ready(&mut c.join(static_req("", "ia", b"m"), 0).unwrap()).unwrap();
        let a_id = a.member_id.as_str();
        ready(&mut c.sync("g", 1, (a_id, Some("ia")), vec![], 0).unwrap()).unwrap();
        let b_instance = b.group_instance_id.clone();
        let mut b_rx = c.join(b, 10).unwrap();
        let a2 = ready(&mut c.join(static_req(a_id, "ia", b"m"), 20).unwrap()).unwrap();
        let b = ready(&mut b_rx).unwrap();
        assert_eq!((a2.generation, b.generation), (2, 2));
        let shares = vec![
            (a_id.to_string(), Bytes::from_static(b"A")),
            (b.member_id.clone(), Bytes::from_static(b"B")),
        ];
        let b_member = (b.member_id.as_str(), b_instance.as_deref());
        let mut b_sync = c.sync("g", 2, b_member, vec![], 30).unwrap();
        ready(&mut c.sync("g", 2, (a_id, Some("ia")), shares, 30).unwrap()).unwrap();
        assert_eq!(ready(&mut b_sync).unwrap(), Bytes::from_static(b"B"));
        (a2, b)
    }

    #[test]
    fn a_static_member_that_restarts_keeps_its_assignment_without_a_rebalance() {
        let c = Coordinator::new();
        let (a, b) = stable_pair(&c, static_req("", "ib", b"m"));
        let a_id = a.member_id.as_str();

        // b's process restarts: a new member id takes over, answered at once, same generation.
        let b2 = ready(&mut c.join(static_req("", "ib", b"m"), 40).unwrap()).unwrap();
        assert_ne!(b2.member_id, b.member_id);
        assert_eq!((b2.generation, b2.leader.as_str()), (2, a_id));
        assert!(b2.members.is_empty());
        let d = c.describe("g").unwrap();
        assert_eq!(d.state, GroupState::Stable);
        let b2_sync = c.sync("g", 2, (&b2.member_id, Some("ib")), vec![], 50);
        assert_eq!(
            ready(&mut b2_sync.unwrap()).unwrap(),
            Bytes::from_static(b"B")
        );
        // The old member id is fenced; the others see no rebalance.
        assert_eq!(
            c.heartbeat("g", 2, (&b.member_id, Some("ib")), 60),
            Err(GroupError::FencedInstanceId)
        );
        assert_eq!(
            c.check_commit("g", 2, (&b.member_id, Some("ib")), 60),
            Err(GroupError::FencedInstanceId)
        );
        assert_eq!(
            c.join(static_req(&b.member_id, "ib", b"m"), 60).err(),
            Some(GroupError::FencedInstanceId)
        );
        assert_eq!(c.heartbeat("g", 2, (a_id, Some("ia")), 60), Ok(()));
        let described: Vec<Option<String>> = c
            .describe("g")
            .unwrap()
            .members
            .into_iter()
            .map(|m| m.group_instance_id)
            .collect();
        assert_eq!(described, vec![Some("ia".into()), Some("ib".into())]);

        // A restart with other metadata (a changed subscription) rebalances.
        let mut b3_rx = c.join(static_req("", "ib", b"other"), 70).unwrap();
        assert!(b3_rx.try_recv().is_err(), "waits for the rebalance");
        assert_eq!(
            c.heartbeat("g", 2, (a_id, Some("ia")), 80),
            Err(GroupError::RebalanceInProgress)
        );
        let a3 = ready(&mut c.join(static_req(a_id, "ia", b"m"), 90).unwrap()).unwrap();
        let b3 = ready(&mut b3_rx).unwrap();
        assert_eq!((a3.generation, b3.generation), (3, 3));

        // The leader's restart rebalances too: the new leader must see every member.
        let mut a4_rx = c.join(static_req("", "ia", b"m"), 100).unwrap();
        assert!(a4_rx.try_recv().is_err(), "waits for the rebalance");
        ready(
            &mut c
                .join(static_req(&b3.member_id, "ib", b"other"), 110)
                .unwrap(),
        )
        .unwrap();
        let a4 = ready(&mut a4_rx).unwrap();
        assert_eq!(a4.generation, 4);
        assert_eq!(a4.leader, a4.member_id);
        let instances: Vec<Option<&str>> =
            a4.members.iter().map(|(_, i, _)| i.as_deref()).collect();
        assert_eq!(
            instances,
            vec![Some("ia"), Some("ib")],
            "the leader sees instance ids"
        );

        // A static member can be removed by its instance id alone.
        let left = c.leave("g", &[(String::new(), Some("ib".into()))], 120);
        assert_eq!(left, vec![Ok(())]);
        assert_eq!(
            c.leave("g", &[(String::new(), Some("ib".into()))], 130),
            vec![Err(GroupError::UnknownMemberId)]
        );
    }

    #[test]
    fn a_pending_member_id_joins_once_and_expires_with_its_session_timeout() {
        let c = Coordinator::new();
        let id = c.new_pending_member("g", "c", 10_000, 0).unwrap();
        assert!(id.starts_with("c-"));
        assert_eq!(c.describe("g").unwrap().state, GroupState::Empty);
        let j = ready(&mut c.join(join_req(&id), 100).unwrap()).unwrap();
        assert_eq!((j.member_id.as_str(), j.generation), (id.as_str(), 1));
        // Used: it is a member now, and another pending id expires unused.
        let late = c.new_pending_member("g", "c", 10_000, 200).unwrap();
        c.tick(10_200);
        assert_eq!(
            c.join(join_req(&late), 10_300).err(),
            Some(GroupError::UnknownMemberId)
        );
        assert_eq!(
            c.new_pending_member("g", "c", 10, 0),
            Err(GroupError::InvalidSessionTimeout)
        );
        assert_eq!(
            c.new_pending_member("", "c", 10_000, 0),
            Err(GroupError::InvalidGroupId)
        );
    }

    #[test]
    fn stable_groups_are_saved_and_restored_with_fresh_session_timers() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("groups.json");
        let c = Coordinator::open(&store, 0);
        let (a, b) = stable_pair(&c, join_req(""));
        let a_id = a.member_id.clone();
        // Group "h" is still rebalancing: not saved.
        let h = JoinRequest {
            group_id: "h".into(),
            ..join_req("")
        };
        ready(&mut c.join(h, 40).unwrap()).unwrap();
        assert!(c.has_unsaved_changes());
        c.save();
        assert!(!c.has_unsaved_changes());
        drop(c);

        let c = Coordinator::open(&store, 100_000);
        // Session timers restart at the load (they were last heard at 30 before it).
        c.tick(109_999);
        let d = c.describe("g").unwrap();
        assert_eq!(d.members.len(), 2);
        assert_eq!((d.state, d.generation), (GroupState::Stable, 2));
        assert!(
            c.describe("h").is_none(),
            "a rebalancing group is not saved"
        );
        assert_eq!(c.heartbeat("g", 2, (&a_id, Some("ia")), 100_001), Ok(()));
        assert_eq!(c.heartbeat("g", 2, (&b.member_id, None), 100_001), Ok(()));
        let again = c.sync("g", 2, (&b.member_id, None), vec![], 100_002);
        assert_eq!(
            ready(&mut again.unwrap()).unwrap(),
            Bytes::from_static(b"B")
        );
        // Instance ids came back too: another member id under "ia" is fenced.
        assert_eq!(
            c.heartbeat("g", 2, (&b.member_id, Some("ia")), 100_003),
            Err(GroupError::FencedInstanceId)
        );
        // Silent for a session timeout after their last heartbeat, both go.
        c.tick(120_000);
        assert_eq!(c.describe("g").unwrap().state, GroupState::Empty);
        drop(c);

        std::fs::write(&store, b"not json").unwrap();
        let c = Coordinator::open(&store, 0);
        assert!(c.describe("g").is_none(), "an unreadable store is ignored");
    }

    fn ready<T>(rx: &mut oneshot::Receiver<T>) -> T {
        rx.try_recv().expect("answer ready")
    }

    #[test]
    fn single_member_join_sync_heartbeat() {
        let c = Coordinator::new();
        let mut rx = c.join(join_req(""), 0).unwrap();
        let j = ready(&mut rx).unwrap();
        assert_eq!(j.generation, 1);
        assert_eq!(j.leader, j.member_id);
        assert_eq!(j.members.len(), 1);
        let mut s = c
            .sync(
                "g",
                1,
                (&j.member_id, None),
                vec![(j.member_id.clone(), Bytes::from_static(b"a"))],
                1,
            )
            .unwrap();
        assert_eq!(ready(&mut s).unwrap(), Bytes::from_static(b"a"));
        assert!(c.heartbeat("g", 1, (&j.member_id, None), 2).is_ok());
        assert_eq!(
            c.heartbeat("g", 0, (&j.member_id, None), 2),
            Err(GroupError::IllegalGeneration)
        );
        assert_eq!(
            c.heartbeat("g", 1, ("nobody", None), 2),
            Err(GroupError::UnknownMemberId)
        );
        assert_eq!(c.describe("g").unwrap().state, GroupState::Stable);
    }

    #[test]
    fn second_member_triggers_rebalance() {
        let c = Coordinator::new();
        let a = ready(&mut c.join(join_req(""), 0).unwrap()).unwrap();
        ready(&mut c.sync("g", 1, (&a.member_id, None), vec![], 0).unwrap()).unwrap();
        // B joins: pending until A rejoins.
        let mut b_rx = c.join(join_req(""), 100).unwrap();
        assert!(b_rx.try_recv().is_err());
        assert_eq!(
            c.heartbeat("g", 1, (&a.member_id, None), 200),
            Err(GroupError::RebalanceInProgress)
        );
        let mut a_rx = c.join(join_req(&a.member_id), 300).unwrap();
        let a2 = ready(&mut a_rx).unwrap();
        let b2 = ready(&mut b_rx).unwrap();
        assert_eq!(a2.generation, 2);
        assert_eq!(b2.generation, 2);
        assert_eq!(a2.leader, a.member_id);
        assert_eq!(a2.members.len(), 2);
        assert!(b2.members.is_empty());
        // Follower syncs first and waits for the leader.
        let mut bs = c.sync("g", 2, (&b2.member_id, None), vec![], 400).unwrap();
        assert!(bs.try_recv().is_err());
        let mut as_ = c
            .sync(
                "g",
                2,
                (&a.member_id, None),
                vec![
                    (a.member_id.clone(), Bytes::from_static(b"p0")),
                    (b2.member_id.clone(), Bytes::from_static(b"p1")),
                ],
                500,
            )
            .unwrap();
        assert_eq!(ready(&mut bs).unwrap(), Bytes::from_static(b"p1"));
        assert_eq!(ready(&mut as_).unwrap(), Bytes::from_static(b"p0"));
    }

    #[test]
    fn session_timeout_removes_member_and_rebalances() {
        let c = Coordinator::new();
        let a = ready(&mut c.join(join_req(""), 0).unwrap()).unwrap();
        ready(&mut c.sync("g", 1, (&a.member_id, None), vec![], 0).unwrap()).unwrap();
        let mut b_rx = c.join(join_req(""), 0).unwrap();
        let a2 = ready(&mut c.join(join_req(&a.member_id), 0).unwrap()).unwrap();
        let b2 = ready(&mut b_rx).unwrap();
        let _bs = c.sync("g", 2, (&b2.member_id, None), vec![], 0).unwrap();
        let _as = c.sync("g", 2, (&a2.member_id, None), vec![], 0).unwrap();
        // Only A heartbeats; B's session (10 s) expires.
        for t in (1_000..=11_000).step_by(1_000) {
            let _ = c.heartbeat("g", 2, (&a.member_id, None), t);
            c.tick(t);
        }
        assert_eq!(c.describe("g").unwrap().members.len(), 1);
        assert_eq!(
            c.heartbeat("g", 2, (&a.member_id, None), 11_500),
            Err(GroupError::RebalanceInProgress)
        );
        let a3 = ready(&mut c.join(join_req(&a.member_id), 11_600).unwrap()).unwrap();
        assert_eq!(a3.generation, 3);
        assert_eq!(
            c.heartbeat("g", 3, (&b2.member_id, None), 11_700),
            Err(GroupError::UnknownMemberId)
        );
    }

    #[test]
    fn rebalance_timeout_drops_members_that_do_not_rejoin() {
        let c = Coordinator::new();
        let a = ready(&mut c.join(join_req(""), 0).unwrap()).unwrap();
        ready(&mut c.sync("g", 1, (&a.member_id, None), vec![], 0).unwrap()).unwrap();
        let mut b_rx = c.join(join_req(""), 1_000).unwrap();
        // A keeps heartbeating but never rejoins: the rebalance completes at the deadline.
        for t in [5_000, 10_000, 14_000] {
            let _ = c.heartbeat("g", 1, (&a.member_id, None), t);
        }
        c.tick(15_000);
        assert!(b_rx.try_recv().is_err());
        let _ = c.heartbeat("g", 1, (&a.member_id, None), 19_000);
        c.tick(21_001);
        let b = ready(&mut b_rx).unwrap();
        assert_eq!(b.generation, 2);
        assert_eq!(b.leader, b.member_id);
        assert_eq!(c.describe("g").unwrap().members.len(), 1);
    }

    #[test]
    fn leave_and_delete() {
        let c = Coordinator::new();
        let a = ready(&mut c.join(join_req(""), 0).unwrap()).unwrap();
        assert_eq!(c.delete("g"), Err(GroupError::NonEmptyGroup));
        assert_eq!(
            c.leave("g", &[(a.member_id.clone(), None)], 1),
            vec![Ok(())]
        );
        assert_eq!(c.describe("g").unwrap().state, GroupState::Empty);
        assert_eq!(c.delete("g"), Ok(()));
        assert!(c.describe("g").is_none());
    }

    #[test]
    fn incompatible_protocols_are_refused() {
        let c = Coordinator::new();
        let _a = c.join(join_req(""), 0).unwrap();
        let mut r = join_req("");
        r.protocols = vec![("other".into(), Bytes::new())];
        assert_eq!(
            c.join(r, 0).err(),
            Some(GroupError::InconsistentGroupProtocol)
        );
        let mut r = join_req("");
        r.session_timeout_ms = 1;
        assert_eq!(c.join(r, 0).err(), Some(GroupError::InvalidSessionTimeout));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        JoinNew,
        /// A static member with instance id `i{n}` joins without a member id: the first time
        /// a new member, later a restart that takes over the old one.
        JoinStatic(u8),
        Rejoin(usize),
        Sync(usize),
        Heartbeat(usize),
        Leave(usize),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            2 => Just(Op::JoinNew),
            2 => (0..3u8).prop_map(Op::JoinStatic),
            3 => (0..4usize).prop_map(Op::Rejoin),
            3 => (0..4usize).prop_map(Op::Sync),
            3 => (0..4usize).prop_map(Op::Heartbeat),
            1 => (0..4usize).prop_map(Op::Leave),
            2 => (1..8_000u64).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// A random schedule of joins, syncs, heartbeats, leaves and time passing never
        /// breaks the coordinator's invariants: generations only grow, every join answer names
        /// a leader that is a member of that generation, only the leader receives the member
        /// list, a Stable group answers heartbeats of its members in its generation, and each
        /// instance id belongs to at most one member.
        #[test]
        fn coordinator_invariants(ops in proptest::collection::vec(op(), 1..150)) {
            let c = Coordinator::new();
            let mut now = 0u64;
            let mut members: Vec<(String, i32)> = Vec::new(); // (member id, generation known)
            let mut joins: Vec<JoinWaiter> = Vec::new();
            let mut last_generation = 0;
            let req = |id: &str| JoinRequest {
                group_id: "g".into(),
                member_id: id.into(),
                client_id: "c".into(),
                client_host: "h".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 15_000,
                protocol_type: "consumer".into(),
                protocols: vec![("range".into(), Bytes::from_static(b"m"))],
                group_instance_id: None,
            };
            for op in ops {
                match op {
                    Op::JoinNew => {
                        if let Ok(w) = c.join(req(""), now) { joins.push(w); }
                    }
                    Op::JoinStatic(n) => {
                        let r = JoinRequest { group_instance_id: Some(format!("i{n}")), ..req("") };
                        if let Ok(w) = c.join(r, now) { joins.push(w); }
                    }
                    Op::Rejoin(i) => {
                        if let Some((id, _)) = members.get(i) {
                            if let Ok(w) = c.join(req(id), now) { joins.push(w); }
                        }
                    }
                    Op::Sync(i) => {
                        if let Some((id, generation)) = members.get(i) {
                            let assignment = vec![(id.clone(), Bytes::from_static(b"a"))];
                            let _ = c.sync("g", *generation, (id, None), assignment, now);
                        }
                    }
                    Op::Heartbeat(i) => {
                        if let Some((id, generation)) = members.get(i) {
                            let _ = c.heartbeat("g", *generation, (id, None), now);
                        }
                    }
                    Op::Leave(i) => {
                        if i < members.len() {
                            let (id, _) = members.remove(i);
                            let _ = c.leave("g", &[(id, None)], now);
                        }
                    }
                    Op::Advance(ms) => {
                        now += ms;
                        c.tick(now);
                    }
                }
                // Collect answered joins.
                let mut pending = Vec::new();
                for mut w in joins.drain(..) {
                    match w.try_recv() {
                        Ok(Ok(j)) => {
                            prop_assert!(j.generation >= last_generation);
                            last_generation = j.generation;
                            let d = c.describe("g").expect("group exists");
                            prop_assert!(j.generation <= d.generation);
                            if j.member_id == j.leader {
                                prop_assert!(j.members.iter().any(|(id, _, _)| *id == j.leader));
                            } else {
                                prop_assert!(j.members.is_empty());
                            }
                            members.retain(|(id, _)| *id != j.member_id);
                            members.push((j.member_id, j.generation));
                        }
                        Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => {}
                        Err(oneshot::error::TryRecvError::Empty) => pending.push(w),
                    }
                }
                joins = pending;
                if let Some(d) = c.describe("g") {
                    prop_assert!(d.generation >= last_generation);
                    if d.state == GroupState::Stable {
                        for m in &d.members {
                            prop_assert_eq!(c.heartbeat("g", d.generation, (&m.member_id, None), now), Ok(()));
                        }
                    }
                    if d.state == GroupState::Empty {
                        prop_assert!(d.members.is_empty());
                    }
                    let mut instances: Vec<&String> =
                        d.members.iter().filter_map(|m| m.group_instance_id.as_ref()).collect();
                    let held = instances.len();
                    instances.sort();
                    instances.dedup();
                    prop_assert_eq!(instances.len(), held);
                }
            }
        }
    }
}
