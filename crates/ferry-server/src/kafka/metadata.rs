//! Metadata and DescribeCluster: one broker (this node, at the address the client used) that is
//! also the cluster's controller; Metadata adds every topic the client asks for.
//!
//! A missing topic is created when the client allows it (`allow_auto_topic_creation`, always
//! true before v4) and the server has auto-creation on; otherwise it is reported as
//! `UNKNOWN_TOPIC_OR_PARTITION`. Leader epochs are reported as -1 so clients skip leader-epoch
//! validation (there is no replication).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse,
    TopicName,
};

use super::authorized::{self, Resource};
use super::{code, str_bytes, Conn, CLUSTER_ID, NODE_ID};

/// DescribeCluster's `endpoint_type` for brokers (v1+); 2 asks for the controllers.
const BROKER_ENDPOINT: i8 = 1;
const CONTROLLER_ENDPOINT: i8 = 2;

/// DescribeCluster (KIP-700; v2 adds fenced brokers, of which there are none). Asked for the
/// controllers' endpoints, it answers as a Kafka broker does: `MISMATCHED_ENDPOINT_TYPE`.
pub fn describe_cluster(conn: &Conn, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let mut r = DescribeClusterResponse::default();
    r.endpoint_type = req.endpoint_type;
    r.cluster_id = str_bytes(CLUSTER_ID);
    match req.endpoint_type {
        BROKER_ENDPOINT => {}
        CONTROLLER_ENDPOINT => {
            r.error_code = code::MISMATCHED_ENDPOINT_TYPE;
            r.error_message = Some(str_bytes(
                "this is a broker endpoint: Ferry has no separate controller endpoints",
            ));
            return r;
        }
        other => {
            r.error_code = code::UNSUPPORTED_ENDPOINT_TYPE;
            r.error_message = Some(str_bytes(format!("unknown endpoint type {other}")));
            return r;
        }
    }
    r.controller_id = BrokerId(NODE_ID);
    let mut broker = DescribeClusterBroker::default();
    broker.broker_id = BrokerId(NODE_ID);
    broker.host = conn.host();
    broker.port = conn.port();
    r.brokers = vec![broker];
    r.cluster_authorized_operations =
        authorized::operations(Resource::Cluster, req.include_cluster_authorized_operations);
    r
}

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
    r.cluster_authorized_operations =
        authorized::operations(Resource::Cluster, req.include_cluster_authorized_operations);
    let topic_operations =
        authorized::operations(Resource::Topic, req.include_topic_authorized_operations);
    r.topics = names
        .into_iter()
        .map(|name| {
            let mut t = MetadataResponseTopic::default();
            t.name = Some(TopicName(str_bytes(name.clone())));
            t.topic_authorized_operations = topic_operations;
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
