//! Door-level tests over a real socket: framing, malformed frames, produce and fetch.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ferry_broker::stream::{Streams, StreamsConfig};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{serve, KafkaDoor, KafkaSettings};

async fn start() -> (std::net::SocketAddr, tempfile::TempDir, watch::Sender<bool>) {
    let dir = tempfile::tempdir().unwrap();
    let streams = Streams::open(StreamsConfig::new(dir.path())).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let door = Arc::new(KafkaDoor {
        streams,
        settings: KafkaSettings {
            auto_create_topics: true,
            default_partitions: 2,
        },
    });
    let (tx, rx) = watch::channel(false);
    tokio::spawn(serve(listener, door, rx));
    (addr, dir, tx)
}

async fn call<Req: Encodable, Resp: Decodable>(
    sock: &mut TcpStream,
    key: ApiKey,
    version: i16,
    req: &Req,
) -> Resp {
    let mut header = RequestHeader::default();
    header.request_api_key = key as i16;
    header.request_api_version = version;
    header.correlation_id = 7;
    header.client_id = Some(StrBytes::from_static_str("test"));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, key.request_header_version(version))
        .unwrap();
    req.encode(&mut body, version).unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    sock.write_all(&frame).await.unwrap();
    let len = sock.read_i32().await.unwrap();
    let mut buf = vec![0u8; len as usize];
    sock.read_exact(&mut buf).await.unwrap();
    let mut buf = Bytes::from(buf);
    let rh = ResponseHeader::decode(&mut buf, key.response_header_version(version)).unwrap();
    assert_eq!(rh.correlation_id, 7);
    Resp::decode(&mut buf, version).unwrap()
}

#[tokio::test]
async fn api_versions_and_unsupported_version_answer() {
    let (addr, _dir, _stop) = start().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let r: ApiVersionsResponse = call(
        &mut s,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    )
    .await;
    assert_eq!(r.error_code, 0);
    assert!(r
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::Produce as i16 && k.max_version == 9));
    // ApiVersions v99: answered in v0 with UNSUPPORTED_VERSION.
    let mut frame = BytesMut::new();
    frame.put_i32(10);
    frame.put_i16(18);
    frame.put_i16(99);
    frame.put_i32(5);
    frame.put_i16(-1);
    s.write_all(&frame).await.unwrap();
    let len = s.read_i32().await.unwrap();
    let mut buf = vec![0u8; len as usize];
    s.read_exact(&mut buf).await.unwrap();
    let mut buf = Bytes::from(buf);
    assert_eq!(buf.get_i32(), 5);
    let r = ApiVersionsResponse::decode(&mut buf, 0).unwrap();
    assert_eq!(r.error_code, 35);
}

#[tokio::test]
async fn malformed_frames_close_only_their_connection() {
    let (addr, _dir, _stop) = start().await;
    let mut good = TcpStream::connect(addr).await.unwrap();
    for bad in [
        vec![0x7f, 0xff, 0xff, 0xff],                          // absurd length
        vec![0xff, 0xff, 0xff, 0xfe],                          // negative length
        vec![0, 0, 0, 10, 0x30, 0x39, 0, 0, 0, 0, 0, 1, 0, 0], // unknown API key 12345
        vec![0, 0, 0, 10, 0, 3, 0, 99, 0, 0, 0, 1, 0, 0],      // Metadata v99
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&bad).await.unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(s.read(&mut buf).await.unwrap(), 0, "connection closed");
    }
    let r: ApiVersionsResponse = call(
        &mut good,
        ApiKey::ApiVersions,
        0,
        &ApiVersionsRequest::default(),
    )
    .await;
    assert_eq!(r.error_code, 0);
}

#[tokio::test]
async fn produce_then_fetch_round_trip() {
    use ferry_broker::stream::batch::{encode_records, NewRecord};
    let (addr, _dir, _stop) = start().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let records = encode_records(
        &[NewRecord {
            value: Some(Bytes::from_static(b"hello")),
            ..Default::default()
        }],
        1,
    )
    .unwrap();
    let mut pd = produce_request::PartitionProduceData::default();
    pd.index = 1;
    pd.records = Some(records.clone());
    let mut td = produce_request::TopicProduceData::default();
    td.name = TopicName(StrBytes::from_static_str("t"));
    td.partition_data = vec![pd];
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 1000;
    req.topic_data = vec![td];
    let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &req).await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    // Invalid acks.
    req.acks = 2;
    let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &req).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 21);
    // Corrupt CRC.
    let mut bad = BytesMut::from(&records[..]);
    let n = bad.len();
    bad[n - 1] ^= 1;
    req.acks = 1;
    req.topic_data[0].partition_data[0].records = Some(bad.freeze());
    let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &req).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 2);

    let mut fp = fetch_request::FetchPartition::default();
    fp.partition = 1;
    fp.fetch_offset = 0;
    fp.partition_max_bytes = 1 << 20;
    let mut ft = fetch_request::FetchTopic::default();
    ft.topic = TopicName(StrBytes::from_static_str("t"));
    ft.partitions = vec![fp];
    let mut freq = FetchRequest::default();
    freq.max_wait_ms = 100;
    freq.min_bytes = 1;
    freq.max_bytes = 1 << 20;
    freq.topics = vec![ft];
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 11, &freq).await;
    let pd = &r.responses[0].partitions[0];
    assert_eq!(pd.error_code, 0);
    assert_eq!(pd.high_watermark, 1);
    let mut recs = pd.records.clone().unwrap();
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut recs).unwrap();
    assert_eq!(set.records[0].value.as_deref(), Some(&b"hello"[..]));
    // Out of range.
    freq.topics[0].partitions[0].fetch_offset = 5;
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 11, &freq).await;
    assert_eq!(r.responses[0].partitions[0].error_code, 1);
}

fn join_request(member_id: &str) -> JoinGroupRequest {
    let mut p = join_group_request::JoinGroupRequestProtocol::default();
    p.name = StrBytes::from_static_str("range");
    p.metadata = Bytes::from_static(b"meta");
    let mut j = JoinGroupRequest::default();
    j.group_id = GroupId(StrBytes::from_static_str("g"));
    j.session_timeout_ms = 10_000;
    j.rebalance_timeout_ms = 10_000;
    j.member_id = StrBytes::from_string(member_id.to_string());
    j.protocol_type = StrBytes::from_static_str("consumer");
    j.protocols = vec![p];
    j
}

#[tokio::test]
async fn join_group_v4_hands_out_the_member_id_first() {
    let (addr, _dir, _stop) = start().await;
    let mut sock = TcpStream::connect(addr).await.unwrap();
    // KIP-394: v4+ without a member id gets MEMBER_ID_REQUIRED and its id, and joins with it.
    let first: JoinGroupResponse = call(&mut sock, ApiKey::JoinGroup, 4, &join_request("")).await;
    assert_eq!(first.error_code, 79);
    assert!(
        first.member_id.starts_with("test-"),
        "{:?}",
        first.member_id
    );
    let joined: JoinGroupResponse = call(
        &mut sock,
        ApiKey::JoinGroup,
        4,
        &join_request(&first.member_id),
    )
    .await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.member_id, first.member_id);
    assert_eq!(joined.leader, first.member_id);
    assert_eq!(joined.generation_id, 1);
    // An id the coordinator never handed out is refused.
    let unknown: JoinGroupResponse = call(
        &mut sock,
        ApiKey::JoinGroup,
        4,
        &join_request("test-nobody"),
    )
    .await;
    assert_eq!(unknown.error_code, 25);
    // Before v4 a member joins at once.
    let mut other = TcpStream::connect(addr).await.unwrap();
    let mut old = join_request("");
    old.group_id = GroupId(StrBytes::from_static_str("g-old"));
    let v3: JoinGroupResponse = call(&mut other, ApiKey::JoinGroup, 3, &old).await;
    assert_eq!((v3.error_code, v3.generation_id), (0, 1));
}

async fn commit_offset(
    sock: &mut TcpStream,
    group: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) {
    let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
    p.partition_index = partition;
    p.committed_offset = offset;
    let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.partitions = vec![p];
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_string()));
    req.generation_id_or_member_epoch = -1;
    req.topics = vec![t];
    let r: OffsetCommitResponse = call(sock, ApiKey::OffsetCommit, 8, &req).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
}

async fn committed(sock: &mut TcpStream, group: &str, topic: &str, partition: i32) -> i64 {
    let mut t = offset_fetch_request::OffsetFetchRequestTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.partition_indexes = vec![partition];
    let mut req = OffsetFetchRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_string()));
    req.topics = Some(vec![t]);
    let r: OffsetFetchResponse = call(sock, ApiKey::OffsetFetch, 7, &req).await;
    r.topics[0].partitions[0].committed_offset
}

async fn delete_offsets(
    sock: &mut TcpStream,
    group: &str,
    topic: &str,
    parts: &[i32],
) -> OffsetDeleteResponse {
    let mut t = offset_delete_request::OffsetDeleteRequestTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.partitions = parts
        .iter()
        .map(|&i| {
            let mut p = offset_delete_request::OffsetDeleteRequestPartition::default();
            p.partition_index = i;
            p
        })
        .collect();
    let mut req = OffsetDeleteRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_string()));
    req.topics = vec![t];
    call(sock, ApiKey::OffsetDelete, 0, &req).await
}

#[tokio::test]
async fn offset_delete_forgets_offsets_of_topics_the_group_does_not_consume() {
    let (addr, _dir, _stop) = start().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut md = MetadataRequest::default();
    let mut mt = metadata_request::MetadataRequestTopic::default();
    mt.name = Some(TopicName(StrBytes::from_static_str("t")));
    md.topics = Some(vec![mt]);
    md.allow_auto_topic_creation = true;
    let _: MetadataResponse = call(&mut s, ApiKey::Metadata, 12, &md).await;
    commit_offset(&mut s, "od", "t", 0, 5).await;
    commit_offset(&mut s, "od", "t", 1, 7).await;

    let r = delete_offsets(&mut s, "od", "t", &[0, 9]).await;
    assert_eq!(r.error_code, 0);
    let codes: Vec<i16> = r.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, vec![0, 3], "deleted; unknown partition");
    assert_eq!(committed(&mut s, "od", "t", 0).await, -1);
    assert_eq!(committed(&mut s, "od", "t", 1).await, 7);
    assert_eq!(
        delete_offsets(&mut s, "nope", "t", &[0]).await.error_code,
        69
    );

    // A member consuming "t" keeps the group's offsets of "t".
    let mut sub = Vec::new();
    sub.extend_from_slice(&0i16.to_be_bytes()); // consumer protocol version 0
    let mut subscription = ConsumerProtocolSubscription::default();
    subscription.topics = vec![StrBytes::from_static_str("t")];
    let mut body = BytesMut::new();
    subscription.encode(&mut body, 0).unwrap();
    sub.extend_from_slice(&body);
    let mut join = join_request("");
    join.group_id = GroupId(StrBytes::from_static_str("od"));
    join.protocols[0].metadata = Bytes::from(sub);
    let joined: JoinGroupResponse = call(&mut s, ApiKey::JoinGroup, 3, &join).await;
    assert_eq!(joined.error_code, 0);
    let r = delete_offsets(&mut s, "od", "t", &[1]).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 86);
    assert_eq!(committed(&mut s, "od", "t", 1).await, 7);
}

#[tokio::test]
async fn describe_cluster_names_this_broker_as_cluster_and_controller() {
    let (addr, _dir, _stop) = start().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    for version in 0..=2 {
        let mut req = DescribeClusterRequest::default();
        req.include_cluster_authorized_operations = version == 1;
        let r: DescribeClusterResponse = call(&mut s, ApiKey::DescribeCluster, version, &req).await;
        assert_eq!(r.error_code, 0, "v{version}");
        assert_eq!(r.cluster_id.as_str(), super::CLUSTER_ID);
        assert_eq!(r.controller_id, BrokerId(super::NODE_ID));
        assert_eq!(r.brokers.len(), 1);
        assert_eq!(r.brokers[0].broker_id, BrokerId(super::NODE_ID));
        assert_eq!(r.brokers[0].host.as_str(), "127.0.0.1");
        assert_eq!(r.brokers[0].port, i32::from(addr.port()));
        if version == 1 {
            // No ACLs yet: every cluster operation, DESCRIBE (8) and ALTER (7) among them.
            assert_ne!(r.cluster_authorized_operations & (1 << 8), 0);
            assert_ne!(r.cluster_authorized_operations & (1 << 7), 0);
        } else {
            assert_eq!(r.cluster_authorized_operations, i32::MIN, "not asked for");
        }
    }
    // Controllers' endpoints are not a broker's to describe; unknown endpoint types are refused.
    for (endpoint_type, expected) in [(2, 114), (9, 115)] {
        let mut req = DescribeClusterRequest::default();
        req.endpoint_type = endpoint_type;
        let r: DescribeClusterResponse = call(&mut s, ApiKey::DescribeCluster, 1, &req).await;
        assert_eq!(r.error_code, expected, "endpoint type {endpoint_type}");
        assert!(r.error_message.is_some());
        assert!(r.brokers.is_empty());
    }
    // The connection is still good.
    let _: ApiVersionsResponse = call(
        &mut s,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    )
    .await;
}

#[tokio::test]
async fn describe_configs_describes_this_broker_and_refuses_another() {
    let (addr, _dir, _stop) = start().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let resources = ["0", "", "7"].map(|name| {
        let mut r = describe_configs_request::DescribeConfigsResource::default();
        r.resource_type = 4; // BROKER
        r.resource_name = StrBytes::from_static_str(name);
        r.configuration_keys = None; // all of them
        r
    });
    let mut req = DescribeConfigsRequest::default();
    req.resources = resources.to_vec();
    let r: DescribeConfigsResponse = call(&mut s, ApiKey::DescribeConfigs, 4, &req).await;
    let this = &r.results[0];
    assert_eq!(this.error_code, 0);
    let names: Vec<&str> = this.configs.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&"num.partitions") && names.contains(&"log.retention.ms"));
    assert!(this
        .configs
        .iter()
        .all(|c| c.read_only && c.config_source == 4));
    // "" asks for the cluster-wide dynamic defaults: there are none.
    assert_eq!(
        (r.results[1].error_code, r.results[1].configs.len()),
        (0, 0)
    );
    assert_eq!(r.results[2].error_code, 42, "INVALID_REQUEST for broker 7");
}

/// Produces one record (`acks=-1`) and returns its partition's answer.
async fn produce_one(
    sock: &mut TcpStream,
    topic: &'static str,
    partition: i32,
    value: &'static [u8],
) -> produce_response::PartitionProduceResponse {
    use ferry_broker::stream::batch::{encode_records, NewRecord};
    let records = encode_records(
        &[NewRecord {
            value: Some(Bytes::from_static(value)),
            ..Default::default()
        }],
        1,
    )
    .unwrap();
    let mut pd = produce_request::PartitionProduceData::default();
    pd.index = partition;
    pd.records = Some(records);
    let mut td = produce_request::TopicProduceData::default();
    td.name = TopicName(StrBytes::from_static_str(topic));
    td.partition_data = vec![pd];
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 1000;
    req.topic_data = vec![td];
    let r: ProduceResponse = call(sock, ApiKey::Produce, 9, &req).await;
    r.responses[0].partition_responses[0].clone()
}

#[tokio::test]
async fn describe_log_dirs_reports_partition_sizes_and_the_disk() {
    let (addr, dir, _stop) = start().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        produce_one(&mut s, "sized", 1, b"0123456789")
            .await
            .error_code,
        0
    );
    let mut all = DescribeLogDirsRequest::default();
    all.topics = None; // null: every topic
    for version in 1..=4 {
        let r: DescribeLogDirsResponse = call(&mut s, ApiKey::DescribeLogDirs, version, &all).await;
        assert_eq!(r.results.len(), 1, "v{version}");
        let d = &r.results[0];
        assert_eq!(d.error_code, 0);
        assert_eq!(
            d.log_dir.as_str(),
            std::fs::canonicalize(dir.path().join("streams"))
                .unwrap()
                .display()
                .to_string()
        );
        let t = d
            .topics
            .iter()
            .find(|t| t.name.as_str() == "sized")
            .unwrap();
        let sizes: Vec<(i32, i64)> = t
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.partition_size))
            .collect();
        assert_eq!(sizes.len(), 2, "both partitions of the auto-created topic");
        assert_eq!(sizes[0], (0, 0), "nothing produced to partition 0");
        assert!(
            sizes[1].0 == 1 && sizes[1].1 > 10,
            "partition 1 holds the batch: {sizes:?}"
        );
        if version >= 4 {
            assert!(d.total_bytes > 0 && d.usable_bytes > 0 && d.usable_bytes <= d.total_bytes);
        }
    }
    // Asked for one partition and a missing topic: only what exists is described.
    let mut wanted = describe_log_dirs_request::DescribableLogDirTopic::default();
    wanted.topic = TopicName(StrBytes::from_static_str("sized"));
    wanted.partitions = vec![1];
    let mut missing = describe_log_dirs_request::DescribableLogDirTopic::default();
    missing.topic = TopicName(StrBytes::from_static_str("no-such-topic"));
    missing.partitions = vec![0];
    let mut req = DescribeLogDirsRequest::default();
    req.topics = Some(vec![wanted, missing]);
    let r: DescribeLogDirsResponse = call(&mut s, ApiKey::DescribeLogDirs, 4, &req).await;
    let topics = &r.results[0].topics;
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0].partitions.len(), 1);
    assert_eq!(topics[0].partitions[0].partition_index, 1);
}
