//! Consumer groups: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! ListGroups, DescribeGroups, DeleteGroups. The state machine is
//! `ferry_broker::stream::group`; this file only translates.
//!
//! This node coordinates every group. JoinGroup and SyncGroup answer when the rebalance
//! phase completes (the connection waits, as with Kafka). Static members (`group.instance.id`,
//! JoinGroup v5+) keep their assignment across a restart; a replaced member id gets
//! `FENCED_INSTANCE_ID`.

use bytes::Bytes;
use ferry_broker::stream::group::JoinRequest;
use ferry_broker::stream::GroupError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::authorized::{self, Resource};
use super::{code, error_code, group_error_code, str_bytes, Conn, NODE_ID};

/// Key type of a transactional coordinator lookup (not supported).
const KEY_TYPE_TRANSACTION: i8 = 1;

fn now(conn: &Conn) -> u64 {
    conn.streams().now_ms().max(0) as u64
}

pub fn find_coordinator(
    conn: &Conn,
    req: FindCoordinatorRequest,
    _v: i16,
) -> FindCoordinatorResponse {
    let mut r = FindCoordinatorResponse::default();
    if req.key_type == KEY_TYPE_TRANSACTION {
        r.error_code = code::COORDINATOR_NOT_AVAILABLE;
        r.error_message = Some(StrBytes::from_static_str("transactions are not supported"));
        r.node_id = BrokerId(-1);
        r.port = -1;
        return r;
    }
    r.node_id = BrokerId(NODE_ID);
    r.host = conn.host();
    r.port = conn.port();
    r
}

/// JoinGroup v4+ with no member id (and no group instance id) first gets `MEMBER_ID_REQUIRED`
/// with its member id (KIP-394), and joins with it.
const MEMBER_ID_REQUIRED_SINCE: i16 = 4;

pub async fn join(conn: &Conn, req: JoinGroupRequest, version: i16) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default();
    r.generation_id = -1;
    r.member_id = req.member_id.clone();
    if version >= MEMBER_ID_REQUIRED_SINCE
        && req.member_id.is_empty()
        && req.group_instance_id.is_none()
    {
        let assigned = conn.streams().coordinator().new_pending_member(
            &req.group_id,
            &conn.client_id,
            req.session_timeout_ms.max(0) as u64,
            now(conn),
        );
        match assigned {
            Ok(id) => {
                r.error_code = code::MEMBER_ID_REQUIRED;
                r.member_id = str_bytes(id);
            }
            Err(e) => r.error_code = group_error_code(e),
        }
        return r;
    }
    let domain = JoinRequest {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        client_id: conn.client_id.clone(),
        client_host: format!("/{}", conn.peer.ip()),
        session_timeout_ms: req.session_timeout_ms.max(0) as u64,
        rebalance_timeout_ms: if req.rebalance_timeout_ms > 0 {
            req.rebalance_timeout_ms as u64
        } else {
            req.session_timeout_ms.max(0) as u64
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        group_instance_id: req.group_instance_id.map(|i| i.to_string()),
    };
    let waiter = match conn.streams().coordinator().join(domain, now(conn)) {
        Ok(w) => w,
        Err(e) => {
            r.error_code = group_error_code(e);
            return r;
        }
    };
    match waiter.await {
        Ok(Ok(j)) => {
            r.generation_id = j.generation;
            r.protocol_type = Some(str_bytes(j.protocol_type));
            r.protocol_name = Some(str_bytes(j.protocol_name));
            r.leader = str_bytes(j.leader);
            r.member_id = str_bytes(j.member_id);
            r.members = j
                .members
                .into_iter()
                .map(|(id, instance, meta)| {
                    let mut m = JoinGroupResponseMember::default();
                    m.member_id = str_bytes(id);
                    m.group_instance_id = instance.map(str_bytes);
                    m.metadata = meta;
                    m
                })
                .collect();
        }
        Ok(Err(e)) => r.error_code = group_error_code(e),
        Err(_) => r.error_code = code::COORDINATOR_NOT_AVAILABLE,
    }
    r
}

pub async fn sync(conn: &Conn, req: SyncGroupRequest) -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default();
    let group = req.group_id.to_string();
    let assignments: Vec<(String, Bytes)> = req
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let coordinator = conn.streams().coordinator();
    let waiter = match coordinator.sync(
        &group,
        req.generation_id,
        (&req.member_id, req.group_instance_id.as_deref()),
        assignments,
        now(conn),
    ) {
        Ok(w) => w,
        Err(e) => {
            r.error_code = group_error_code(e);
            return r;
        }
    };
    match waiter.await {
        Ok(Ok(assignment)) => {
            r.assignment = assignment;
            if let Some(d) = coordinator.describe(&group) {
                r.protocol_type = Some(str_bytes(d.protocol_type));
                r.protocol_name = Some(str_bytes(d.protocol));
            }
        }
        Ok(Err(e)) => r.error_code = group_error_code(e),
        Err(_) => r.error_code = code::COORDINATOR_NOT_AVAILABLE,
    }
    r
}

pub fn heartbeat(conn: &Conn, req: HeartbeatRequest) -> HeartbeatResponse {
    let mut r = HeartbeatResponse::default();
    if let Err(e) = conn.streams().coordinator().heartbeat(
        &req.group_id,
        req.generation_id,
        (&req.member_id, req.group_instance_id.as_deref()),
        now(conn),
    ) {
        r.error_code = group_error_code(e);
    }
    r
}

pub fn leave(conn: &Conn, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let mut r = LeaveGroupResponse::default();
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                let instance = m.group_instance_id.as_ref().map(|i| i.to_string());
                (m.member_id.to_string(), instance)
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let results = conn
        .streams()
        .coordinator()
        .leave(&req.group_id, &members, now(conn));
    if version >= 3 {
        r.members = members
            .into_iter()
            .zip(&results)
            .map(|((id, instance), res)| {
                let mut m = MemberResponse::default();
                m.member_id = str_bytes(id);
                m.group_instance_id = instance.map(str_bytes);
                m.error_code = res.err().map_or(code::NONE, group_error_code);
                m
            })
            .collect();
    } else if let Some(Err(e)) = results.first() {
        r.error_code = group_error_code(*e);
    }
    r
}

pub fn list(conn: &Conn, req: ListGroupsRequest) -> ListGroupsResponse {
    let mut r = ListGroupsResponse::default();
    let filter: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    r.groups = conn
        .streams()
        .list_groups()
        .into_iter()
        .filter(|(_, _, state)| {
            filter.is_empty() || filter.contains(&state.as_str().to_lowercase())
        })
        .map(|(id, protocol_type, state)| {
            let mut g = ListedGroup::default();
            g.group_id = GroupId(str_bytes(id));
            g.protocol_type = str_bytes(protocol_type);
            g.group_state = StrBytes::from_static_str(state.as_str());
            g.group_type = StrBytes::from_static_str("classic");
            g
        })
        .collect();
    r
}

pub fn describe(conn: &Conn, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let streams = conn.streams();
    let mut r = DescribeGroupsResponse::default();
    r.groups = req
        .groups
        .into_iter()
        .map(|gid| {
            let mut g = DescribedGroup::default();
            g.authorized_operations =
                authorized::operations(Resource::Group, req.include_authorized_operations);
            match streams.coordinator().describe(&gid) {
                Some(d) => {
                    g.group_state = StrBytes::from_static_str(d.state.as_str());
                    g.protocol_type = str_bytes(d.protocol_type);
                    g.protocol_data = str_bytes(d.protocol);
                    g.members = d
                        .members
                        .into_iter()
                        .map(|m| {
                            let mut dm = DescribedGroupMember::default();
                            dm.member_id = str_bytes(m.member_id);
                            dm.group_instance_id = m.group_instance_id.map(str_bytes);
                            dm.client_id = str_bytes(m.client_id);
                            dm.client_host = str_bytes(m.client_host);
                            dm.member_metadata = m.metadata;
                            dm.member_assignment = m.assignment;
                            dm
                        })
                        .collect();
                }
                None if streams
                    .list_groups()
                    .iter()
                    .any(|(id, _, _)| *id == *gid.as_str()) =>
                {
                    g.group_state = StrBytes::from_static_str("Empty");
                    g.protocol_type = StrBytes::from_static_str("consumer");
                }
                None => g.group_state = StrBytes::from_static_str("Dead"),
            }
            g.group_id = gid;
            g
        })
        .collect();
    r
}

pub async fn delete(conn: &Conn, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut r = DeleteGroupsResponse::default();
    let mut results = Vec::new();
    for gid in req.groups_names {
        let mut res = DeletableGroupResult::default();
        if let Err(e) = conn.streams().delete_group(&gid).await {
            res.error_code = match e {
                ferry_broker::stream::StreamError::Group(GroupError::GroupIdNotFound) => {
                    code::GROUP_ID_NOT_FOUND
                }
                other => error_code(&other),
            };
        }
        res.group_id = gid;
        results.push(res);
    }
    r.results = results;
    r
}
