//! Metadata: one broker (this node, at the address the client used), every topic it asks for.
//!
//! A missing topic is created when the client allows it (`allow_auto_topic_creation`, always
//! true before v4) and the server has auto-creation on; otherwise it is reported as
//! `UNKNOWN_TOPIC_OR_PARTITION`. Leader epochs are reported as -1 so clients skip leader-epoch
//! validation (there is no replication).

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

use super::{code, str_bytes, Conn, CLUSTER_ID, NODE_ID};

pub fn handle(conn: &Conn, req: MetadataRequest, version: i16) -> MetadataResponse {
    let streams = conn.streams();
    let allow_create = version < 4 || req.allow_auto_topic_creation;
    let names: Vec<String> = match req.topics {
        None => streams.names(),
        Some(t) if t.is_empty() && version == 0 => streams.names(),
        Some(t) => t
            .into_iter()
            .filter_map(|t| t.name.map(|n| n.to_string()))
            .collect(),
    };
    let mut r = MetadataResponse::default();
    let mut broker = MetadataResponseBroker::default();
    broker.node_id = BrokerId(NODE_ID);
    broker.host = conn.host();
    broker.port = conn.port();
    r.brokers = vec![broker];
    r.cluster_id = Some(str_bytes(CLUSTER_ID));
    r.controller_id = BrokerId(NODE_ID);
    r.cluster_authorized_operations = i32::MIN;
    r.topics = names
        .into_iter()
        .map(|name| {
            let mut t = MetadataResponseTopic::default();
            t.name = Some(TopicName(str_bytes(name.clone())));
            t.topic_authorized_operations = i32::MIN;
            if let Err(e) = ferry_broker::stream::validate_name(&name) {
                let _ = e;
                t.error_code = code::INVALID_TOPIC_EXCEPTION;
                return t;
            }
            if allow_create {
                conn.ensure_topic(&name);
            }
            match streams.get(&name) {
                Ok(stream) => {
                    t.topic_id = super::topic_id(&name);
                    t.partitions = (0..stream.partition_count())
                        .map(|p| {
                            let mut mp = MetadataResponsePartition::default();
                            mp.partition_index = p as i32;
                            mp.leader_id = BrokerId(NODE_ID);
                            mp.leader_epoch = -1;
                            mp.replica_nodes = vec![BrokerId(NODE_ID)];
                            mp.isr_nodes = vec![BrokerId(NODE_ID)];
                            mp
                        })
                        .collect();
                }
                Err(_) => t.error_code = code::UNKNOWN_TOPIC_OR_PARTITION,
            }
            t
        })
        .collect();
    r
}
