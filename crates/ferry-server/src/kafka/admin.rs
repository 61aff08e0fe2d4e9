//! Admin APIs: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs, AlterConfigs,
//! IncrementalAlterConfigs, DeleteRecords, DescribeLogDirs.
//!
//! Topic configuration keys are the stream keys (`retention.ms`, `retention.bytes`,
//! `cleanup.policy`, `message.timestamp.type`, `max.message.bytes`, `segment.bytes`,
//! `durability`). Replication factors other than 1 (or -1, the default) are refused with
//! `INVALID_REPLICATION_FACTOR`: Ferry is a single node. DescribeConfigs of this broker
//! reports its settings under Kafka's broker config names, read-only.

use ferry_broker::stream::{StreamConfig, StreamError};
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{code, error_code, str_bytes, Conn, NODE_ID};

/// Resource types of the config APIs.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Config sources (DescribeConfigs v1+).
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

fn message(e: &StreamError) -> Option<StrBytes> {
    Some(StrBytes::from_string(e.to_string()))
}

pub fn create_topics(conn: &Conn, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let streams = conn.streams();
    let mut r = CreateTopicsResponse::default();
    r.topics = req
        .topics
        .into_iter()
        .map(|t| {
            let mut res = CreatableTopicResult::default();
            res.name = t.name.clone();
            res.num_partitions = -1;
            res.replication_factor = -1;
            let name = t.name.to_string();
            if t.replication_factor > 1 {
                res.error_code = code::INVALID_REPLICATION_FACTOR;
                res.error_message = Some(StrBytes::from_static_str(
                    "Ferry is a single node: the replication factor must be 1",
                ));
                return res;
            }
            let partitions = if !t.assignments.is_empty() {
                t.assignments.len() as i32
            } else if t.num_partitions < 0 {
                conn.door.settings.default_partitions as i32
            } else {
                t.num_partitions
            };
            let configs: Vec<(String, String)> = t
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect();
            let result = if req.validate_only {
                ferry_broker::stream::validate_name(&name).and_then(|_| {
                    let mut cfg = ferry_broker::stream::StreamConfig::default();
                    for (k, v) in &configs {
                        cfg.set(k, Some(v))?;
                    }
                    if partitions < 1 {
                        return Err(StreamError::InvalidPartitions(partitions.to_string()));
                    }
                    if streams.exists(&name) {
                        return Err(StreamError::StreamExists(name.clone()));
                    }
                    Ok(())
                })
            } else {
                if partitions < 1 {
                    Err(StreamError::InvalidPartitions(partitions.to_string()))
                } else {
                    streams
                        .create(&name, partitions as u32, &configs)
                        .map(|_| ())
                }
            };
            match result {
                Ok(()) => {
                    res.num_partitions = partitions;
                    res.replication_factor = 1;
                    res.topic_id = super::topic_id(&name);
                    if let Ok(s) = streams.get(&name) {
                        res.configs = Some(
                            s.config()
                                .entries()
                                .into_iter()
                                .map(|(k, v, default)| {
                                    let mut c = CreatableTopicConfigs::default();
                                    c.name = str_bytes(k);
                                    c.value = Some(str_bytes(v));
                                    c.config_source = if default {
                                        SOURCE_DEFAULT
                                    } else {
                                        SOURCE_TOPIC
                                    };
                                    c
                                })
                                .collect(),
                        );
                    }
                }
                Err(e) => {
                    res.error_code = error_code(&e);
                    res.error_message = message(&e);
                }
            }
            res
        })
        .collect();
    r
}

pub async fn delete_topics(conn: &Conn, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut names: Vec<TopicName> = req.topic_names;
    names.extend(req.topics.into_iter().filter_map(|t| t.name));
    let mut responses = Vec::new();
    for name in names {
        let mut res = DeletableTopicResult::default();
        if let Err(e) = conn.streams().delete(&name).await {
            res.error_code = error_code(&e);
            res.error_message = message(&e);
        }
        res.name = Some(name);
        responses.push(res);
    }
    let mut r = DeleteTopicsResponse::default();
    r.responses = responses;
    r
}

pub fn create_partitions(conn: &Conn, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut r = CreatePartitionsResponse::default();
    r.results = req
        .topics
        .into_iter()
        .map(|t| {
            let mut res = CreatePartitionsTopicResult::default();
            let result = if t.count < 1 {
                Err(StreamError::InvalidPartitions(t.count.to_string()))
            } else if req.validate_only {
                conn.streams().get(&t.name).and_then(|s| {
                    if (t.count as u32) > s.partition_count() {
                        Ok(())
                    } else {
                        Err(StreamError::InvalidPartitions(format!(
                            "topic has {} partitions",
                            s.partition_count()
                        )))
                    }
                })
            } else {
                conn.streams().add_partitions(&t.name, t.count as u32)
            };
            if let Err(e) = result {
                res.error_code = error_code(&e);
                res.error_message = message(&e);
            }
            res.name = t.name;
            res
        })
        .collect();
    r
}

pub fn describe_configs(conn: &Conn, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let mut r = DescribeConfigsResponse::default();
    r.results = req
        .resources
        .into_iter()
        .map(|res| {
            let mut out = DescribeConfigsResult::default();
            out.resource_type = res.resource_type;
            out.resource_name = res.resource_name.clone();
            let keys: Option<Vec<String>> = res
                .configuration_keys
                .map(|k| k.iter().map(|k| k.to_string()).collect());
            let wanted = |k: &String| !matches!(&keys, Some(ks) if !ks.contains(k));
            match res.resource_type {
                RESOURCE_TOPIC => match conn.streams().get(&res.resource_name) {
                    Ok(s) => {
                        out.configs = s
                            .config()
                            .entries()
                            .into_iter()
                            .filter(|(k, _, _)| wanted(k))
                            .map(|(k, v, default)| {
                                let source = if default {
                                    SOURCE_DEFAULT
                                } else {
                                    SOURCE_TOPIC
                                };
                                config_result(k, v, source, false)
                            })
                            .collect();
                    }
                    Err(e) => {
                        out.error_code = error_code(&e);
                        out.error_message = message(&e);
                    }
                },
                // The cluster-wide dynamic defaults: Ferry has none.
                RESOURCE_BROKER if res.resource_name.is_empty() => {}
                RESOURCE_BROKER if res.resource_name.as_str() == NODE_ID.to_string() => {
                    out.configs = broker_configs(conn)
                        .into_iter()
                        .filter(|(k, _)| wanted(k))
                        .map(|(k, v)| config_result(k, v, SOURCE_STATIC_BROKER, true))
                        .collect();
                }
                RESOURCE_BROKER => {
                    out.error_code = code::INVALID_REQUEST;
                    out.error_message = Some(str_bytes(format!(
                        "unexpected broker id {:?}: this broker is {NODE_ID}",
                        res.resource_name.as_str()
                    )));
                }
                _ => {
                    out.error_code = code::INVALID_REQUEST;
                    out.error_message =
                        Some(StrBytes::from_static_str("unsupported resource type"));
                }
            }
            out
        })
        .collect();
    r
}

fn config_result(
    name: String,
    value: String,
    source: i8,
    read_only: bool,
) -> DescribeConfigsResourceResult {
    let mut c = DescribeConfigsResourceResult::default();
    c.name = str_bytes(name);
    c.value = Some(str_bytes(value));
    c.config_source = source;
    c.read_only = read_only;
    c
}

/// This broker's configs under Kafka's broker config names: the settings that shape its
/// topics, with the topic defaults as `log.*` keys. Read-only: they come from `ferry.toml`
/// and flags, not from the Kafka protocol.
fn broker_configs(conn: &Conn) -> Vec<(String, String)> {
    let settings = &conn.door.settings;
    let mut out = vec![
        ("broker.id".to_string(), NODE_ID.to_string()),
        (
            "auto.create.topics.enable".to_string(),
            settings.auto_create_topics.to_string(),
        ),
        (
            "num.partitions".to_string(),
            settings.default_partitions.to_string(),
        ),
        ("default.replication.factor".to_string(), "1".to_string()),
    ];
    for (key, value, _) in StreamConfig::default().entries() {
        let broker_key = match key.as_str() {
            "retention.ms" => "log.retention.ms",
            "retention.bytes" => "log.retention.bytes",
            "cleanup.policy" => "log.cleanup.policy",
            "message.timestamp.type" => "log.message.timestamp.type",
            "max.message.bytes" => "message.max.bytes",
            "segment.bytes" => "log.segment.bytes",
            "delete.retention.ms" => "log.cleaner.delete.retention.ms",
            // Ferry's own keys (`durability`, whose default is the server's setting, and
            // `direct.io`) have no broker-level name.
            _ => continue,
        };
        out.push((broker_key.to_string(), value));
    }
    out
}

/// Applies config changes to a topic resource; returns the error code and message.
fn alter(
    conn: &Conn,
    resource_type: i8,
    name: &str,
    changes: Vec<(String, Option<String>)>,
    replace: bool,
    validate_only: bool,
) -> (i16, Option<StrBytes>) {
    if resource_type != RESOURCE_TOPIC {
        return (
            code::INVALID_REQUEST,
            Some(StrBytes::from_static_str(
                "only topic configs can be altered",
            )),
        );
    }
    match conn
        .streams()
        .alter_config(name, &changes, replace, validate_only)
    {
        Ok(()) => (code::NONE, None),
        Err(e) => (error_code(&e), message(&e)),
    }
}

pub fn alter_configs(conn: &Conn, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut r = AlterConfigsResponse::default();
    r.responses = req
        .resources
        .into_iter()
        .map(|res| {
            let changes = res
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect();
            let (ec, msg) = alter(
                conn,
                res.resource_type,
                &res.resource_name,
                changes,
                true,
                req.validate_only,
            );
            let mut out = alter_configs_response::AlterConfigsResourceResponse::default();
            out.error_code = ec;
            out.error_message = msg;
            out.resource_type = res.resource_type;
            out.resource_name = res.resource_name;
            out
        })
        .collect();
    r
}

pub fn incremental_alter_configs(
    conn: &Conn,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut r = IncrementalAlterConfigsResponse::default();
    r.responses =
        req.resources
            .into_iter()
            .map(|res| {
                let mut out =
                    incremental_alter_configs_response::AlterConfigsResourceResponse::default();
                out.resource_type = res.resource_type;
                out.resource_name = res.resource_name.clone();
                let mut changes = Vec::new();
                for c in &res.configs {
                    match c.config_operation {
                        OP_SET => changes
                            .push((c.name.to_string(), c.value.as_ref().map(|v| v.to_string()))),
                        OP_DELETE => changes.push((c.name.to_string(), None)),
                        _ => {
                            out.error_code = code::INVALID_REQUEST;
                            out.error_message = Some(StrBytes::from_static_str(
                                "APPEND and SUBTRACT are not supported for these configs",
                            ));
                        }
                    }
                }
                if out.error_code == code::NONE {
                    let (ec, msg) = alter(
                        conn,
                        res.resource_type,
                        &res.resource_name,
                        changes,
                        false,
                        req.validate_only,
                    );
                    out.error_code = ec;
                    out.error_message = msg;
                }
                out
            })
            .collect();
    r
}

pub fn delete_records(conn: &Conn, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut r = DeleteRecordsResponse::default();
    r.topics = req
        .topics
        .into_iter()
        .map(|t| {
            let mut tr = DeleteRecordsTopicResult::default();
            tr.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut pr = DeleteRecordsPartitionResult::default();
                    pr.partition_index = p.partition_index;
                    pr.low_watermark = -1;
                    let result = conn
                        .streams()
                        .partition(&t.name, i64::from(p.partition_index))
                        .and_then(|part| {
                            let offset = if p.offset < 0 {
                                part.high_watermark()
                            } else {
                                p.offset as u64
                            };
                            part.delete_records_before(offset)
                        });
                    match result {
                        Ok(low) => pr.low_watermark = low as i64,
                        Err(e) => pr.error_code = error_code(&e),
                    }
                    pr
                })
                .collect();
            tr.name = t.name;
            tr
        })
        .collect();
    r
}

/// DescribeLogDirs: the one log directory (`<data_dir>/streams`) with the size of every
/// partition asked for (all when `topics` is null; topics and partitions that do not exist are
/// left out, as Kafka leaves out those not on the broker), and, from v4, the file system's
/// total and usable bytes.
pub fn describe_log_dirs(conn: &Conn, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let streams = conn.streams();
    let wanted: Vec<(String, Option<Vec<i32>>)> = match req.topics {
        None => streams.names().into_iter().map(|n| (n, None)).collect(),
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.topic.to_string(), Some(t.partitions)))
            .collect(),
    };
    let mut result = DescribeLogDirsResult::default();
    // Absolute, as Kafka reports it (the data directory may be given relative).
    let dir = std::fs::canonicalize(streams.dir()).unwrap_or_else(|_| streams.dir().into());
    result.log_dir = str_bytes(dir.display().to_string());
    result.topics = wanted
        .into_iter()
        .filter_map(|(name, partitions)| {
            let stream = streams.get(&name).ok()?;
            let mut topic = DescribeLogDirsTopic::default();
            topic.partitions = stream
                .partitions()
                .iter()
                .filter(|p| {
                    partitions
                        .as_ref()
                        .is_none_or(|wanted| wanted.contains(&(p.index as i32)))
                })
                .map(|p| {
                    let mut out = DescribeLogDirsPartition::default();
                    out.partition_index = p.index as i32;
                    out.partition_size = p.size_bytes() as i64;
                    out
                })
                .collect();
            topic.name = TopicName(str_bytes(name));
            Some(topic)
        })
        .collect();
    // -1 when the file system cannot say, as Kafka reports unknown sizes.
    result.total_bytes = fs2::total_space(&dir).map_or(-1, |b| b as i64);
    result.usable_bytes = fs2::available_space(&dir).map_or(-1, |b| b as i64);
    let mut r = DescribeLogDirsResponse::default();
    r.results = vec![result];
    r
}
