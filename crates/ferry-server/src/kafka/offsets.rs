//! OffsetCommit, OffsetFetch and OffsetDelete: committed offsets are durable before the commit
//! (or delete) is answered.
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

/// The topics a group's members consume, from their consumer-protocol subscriptions (`None`
/// for a group of another protocol type, whose members' metadata Kafka does not define).
fn subscribed_topics(
    description: &ferry_broker::stream::group::GroupDescription,
) -> Option<std::collections::HashSet<String>> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    if description.protocol_type != "consumer" {
        return None;
    }
    let mut topics = std::collections::HashSet::new();
    for m in &description.members {
        let mut buf = m.metadata.clone();
        if buf.len() < 2 {
            continue;
        }
        let version = i16::from_be_bytes([buf[0], buf[1]]);
        bytes::Buf::advance(&mut buf, 2);
        // Later versions only append fields: read what version 3 knows.
        if let Ok(s) = ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3)) {
            topics.extend(s.topics.iter().map(|t| t.to_string()));
        }
    }
    Some(topics)
}

/// OffsetDelete: forgets a group's committed offsets for partitions of topics its members do
/// not consume (`GROUP_SUBSCRIBED_TO_TOPIC` for the others, as Kafka).
pub async fn delete(conn: &Conn, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    use kafka_protocol::messages::offset_delete_response::{
        OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
    };
    let streams = conn.streams();
    let group = req.group_id.to_string();
    let mut r = OffsetDeleteResponse::default();
    let subscribed = match streams.coordinator().describe(&group) {
        Some(d) if !d.members.is_empty() => match subscribed_topics(&d) {
            Some(topics) => topics,
            None => {
                r.error_code = code::NON_EMPTY_GROUP;
                return r;
            }
        },
        _ => Default::default(),
    };
    let mut wanted = Vec::new();
    for t in &req.topics {
        if subscribed.contains(t.name.as_str()) {
            continue;
        }
        for p in &t.partitions {
            wanted.push((t.name.to_string(), i64::from(p.partition_index)));
        }
    }
    let mut results = match streams.delete_offsets(&group, &wanted).await {
        Ok(results) => results.into_iter(),
        Err(e) => {
            r.error_code = error_code(&e);
            return r;
        }
    };
    r.topics = req
        .topics
        .iter()
        .map(|t| {
            let mut tr = OffsetDeleteResponseTopic::default();
            tr.name = t.name.clone();
            tr.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut pr = OffsetDeleteResponsePartition::default();
                    pr.partition_index = p.partition_index;
                    pr.error_code = if subscribed.contains(t.name.as_str()) {
                        code::GROUP_SUBSCRIBED_TO_TOPIC
                    } else {
                        match results.next() {
                            Some(Err(e)) => error_code(&e),
                            _ => code::NONE,
                        }
                    };
                    pr
                })
                .collect();
            tr
        })
        .collect();
    r
}
