//! OffsetCommit and OffsetFetch: committed offsets are durable before the commit is answered.
//!
//! A commit from a group member is checked against the group's generation (`ILLEGAL_GENERATION`,
//! `UNKNOWN_MEMBER_ID`, `REBALANCE_IN_PROGRESS`, `FENCED_INSTANCE_ID` for a replaced static
//! member); generation -1 is a standalone commit
//! (no group membership, as `assign()`-based consumers do).

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::*;

use super::{code, error_code, group_error_code, str_bytes, Conn};

pub async fn commit(conn: &Conn, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let streams = conn.streams();
    let group = req.group_id.to_string();
    let check = streams.coordinator().check_commit(
        &group,
        req.generation_id_or_member_epoch,
        (&req.member_id, req.group_instance_id.as_deref()),
        streams.now_ms().max(0) as u64,
    );
    let mut commits = Vec::new();
    let mut topics = Vec::new();
    for t in &req.topics {
        let name = t.name.to_string();
        let mut tr = OffsetCommitResponseTopic::default();
        tr.name = t.name.clone();
        for p in &t.partitions {
            let mut pr = OffsetCommitResponsePartition::default();
            pr.partition_index = p.partition_index;
            if let Err(e) = check {
                pr.error_code = group_error_code(e);
            } else if let Err(e) = streams.partition(&name, i64::from(p.partition_index)) {
                pr.error_code = error_code(&e);
            } else {
                commits.push((
                    name.clone(),
                    p.partition_index as u32,
                    p.committed_offset,
                    p.committed_metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                ));
            }
            tr.partitions.push(pr);
        }
        topics.push(tr);
    }
    if let Err(e) = streams
        .offsets()
        .commit(&group, &commits, streams.now_ms())
        .await
    {
        let c = error_code(&e);
        for t in &mut topics {
            for p in &mut t.partitions {
                if p.error_code == code::NONE {
                    p.error_code = c;
                }
            }
        }
    }
    let mut r = OffsetCommitResponse::default();
    r.topics = topics;
    r
}

pub fn fetch(conn: &Conn, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let streams = conn.streams();
    let group = req.group_id.to_string();
    let offsets = streams.offsets();
    let wanted: Vec<(String, Vec<i32>)> = match req.topics {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect(),
        None => {
            let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
            for (t, p, _) in offsets.group_offsets(&group) {
                by_topic.entry(t).or_default().push(p as i32);
            }
            by_topic.into_iter().collect()
        }
    };
    let mut r = OffsetFetchResponse::default();
    r.topics = wanted
        .into_iter()
        .map(|(name, parts)| {
            let mut tr = OffsetFetchResponseTopic::default();
            tr.partitions = parts
                .into_iter()
                .map(|p| {
                    let mut pr = OffsetFetchResponsePartition::default();
                    pr.partition_index = p;
                    pr.committed_leader_epoch = -1;
                    match offsets.get(&group, &name, p.max(0) as u32) {
                        Some(c) => {
                            pr.committed_offset = c.offset;
                            pr.metadata = Some(str_bytes(c.metadata));
                        }
                        None => {
                            pr.committed_offset = -1;
                            pr.metadata = Some(str_bytes(""));
                        }
                    }
                    pr
                })
                .collect();
            tr.name = TopicName(str_bytes(name));
            tr
        })
        .collect();
    r
}
