//! Produce: append record batches (stored as sent; the broker assigns offsets).
//!
//! - `acks=0`: no response; the append still happens and becomes durable in the background.
//! - `acks=1` and `acks=-1` (all): answered once the batch is durable (`fdatasync`ed under
//!   the default durability). With one replica, "all" and "leader" are the same.
//! - anything else: `INVALID_REQUIRED_ACKS` for every partition.
//!
//! All partitions of a request are appended first and awaited afterwards, so they share
//! group commits. The connection appends pipelined Produce requests as it reads them and lets
//! their durability waits overlap (see `kafka/mod.rs`), so one producer connection with many
//! requests in flight also shares group commits.

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use super::{code, error_code, Conn};

/// The part of a Produce that is answered later: durability waits, then the response.
pub type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = ProduceResponse> + Send>>;

/// Validates and appends every partition's batches now, in request order, and returns the
/// wait for durability (`None` for `acks=0`, which gets no response). Appending at read time
/// keeps pipelined requests in order while their fsync waits overlap (group commit).
pub fn start(conn: &Conn, req: ProduceRequest) -> Option<Pending> {
    let acks = req.acks;
    let streams = conn.streams();
    let valid_acks = matches!(acks, -1..=1);
    let transactional = req.transactional_id.is_some();
    let mut pending = Vec::new();
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let name = topic.name.to_string();
        let exists = valid_acks && conn.ensure_topic(&name);
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for pd in topic.partition_data {
            let mut pr = PartitionProduceResponse::default();
            pr.index = pd.index;
            pr.base_offset = -1;
            pr.log_append_time_ms = -1;
            pr.log_start_offset = -1;
            if !valid_acks {
                pr.error_code = code::INVALID_REQUIRED_ACKS;
            } else if transactional {
                pr.error_code = code::INVALID_REQUEST;
                pr.error_message =
                    Some(StrBytes::from_static_str("transactions are not supported"));
            } else if !exists {
                pr.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
            } else {
                let records = pd.records.unwrap_or_default();
                match streams.append(&name, i64::from(pd.index), records) {
                    Ok((part, appended)) => {
                        pr.base_offset = appended.base_offset as i64;
                        pr.log_append_time_ms = appended.log_append_time_ms;
                        pr.log_start_offset = part.log_start_offset() as i64;
                        pending.push((topics.len(), partitions.len(), part, appended.durable_at));
                    }
                    Err(e) => {
                        tracing::debug!(door = "kafka", stream = %name, partition = pd.index, error = %e, "produce refused");
                        pr.error_code = error_code(&e);
                        pr.error_message = Some(StrBytes::from_string(e.to_string()));
                    }
                }
            }
            partitions.push(pr);
        }
        let mut tr = TopicProduceResponse::default();
        tr.name = topic.name;
        tr.partition_responses = partitions;
        topics.push(tr);
    }
    let streams = streams.clone();
    if acks == 0 {
        if !pending.is_empty() {
            tokio::spawn(async move {
                for (_, _, part, at) in pending {
                    if let Err(e) = part.wait_durable(at).await {
                        tracing::warn!(door = "kafka", error = %e, "acks=0 append did not become durable");
                    }
                }
                streams.notify_appended();
            });
        }
        return None;
    }
    Some(Box::pin(async move {
        let mut any = false;
        for (t, p, part, at) in pending {
            if let Err(e) = part.wait_durable(at).await {
                let pr = &mut topics[t].partition_responses[p];
                pr.error_code = error_code(&e);
                pr.base_offset = -1;
                pr.error_message = Some(StrBytes::from_string(e.to_string()));
            } else {
                any = true;
            }
        }
        if any {
            streams.notify_appended();
        }
        let mut r = ProduceResponse::default();
        r.responses = topics;
        r
    }))
}
