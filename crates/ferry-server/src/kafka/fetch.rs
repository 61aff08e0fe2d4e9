//! Fetch: stored batches from each requested offset, with long polling.
//!
//! The answer is sent when at least `min_bytes` are available or `max_wait_ms` has passed
//! (or at once on an error). Each partition gets at most `partition_max_bytes` and the whole
//! answer at most `max_bytes`, except that the first batch found is always included whole
//! (KIP-74) so an oversized batch cannot stall a consumer. Batches may start before the
//! fetch offset (a batch is stored as one unit); clients skip the records before it.
//! Fetch sessions (KIP-227) are not kept: every answer has session id 0, which tells the
//! client to send full requests. Only durable records are served (high watermark).

use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use super::{code, error_code, Conn};

/// Longest long poll honoured.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

pub async fn handle(conn: &Conn, req: FetchRequest, _version: i16) -> FetchResponse {
    let streams = conn.streams();
    let deadline =
        Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_bytes = if req.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        req.max_bytes as usize
    };
    let mut changes = streams.subscribe();
    loop {
        changes.borrow_and_update();
        let (response, total, errored) = collect(conn, &req, max_bytes);
        let now = Instant::now();
        if total >= min_bytes.max(1) || errored || now >= deadline {
            return response;
        }
        if tokio::time::timeout(deadline - now, changes.changed())
            .await
            .is_err()
        {
            // Deadline: one last read below.
            return collect(conn, &req, max_bytes).0;
        }
    }
}

fn collect(conn: &Conn, req: &FetchRequest, max_bytes: usize) -> (FetchResponse, usize, bool) {
    let streams = conn.streams();
    let mut total = 0usize;
    let mut errored = false;
    let mut topics = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let name = topic.topic.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for fp in &topic.partitions {
            let mut pd = PartitionData::default();
            pd.partition_index = fp.partition;
            pd.high_watermark = -1;
            pd.last_stable_offset = -1;
            pd.log_start_offset = -1;
            pd.preferred_read_replica = kafka_protocol::messages::BrokerId(-1);
            match streams.partition(&name, i64::from(fp.partition)) {
                Err(e) => {
                    pd.error_code = error_code(&e);
                    errored = true;
                }
                Ok(part) => {
                    let budget = if total == 0 {
                        fp.partition_max_bytes.max(1) as usize
                    } else {
                        (fp.partition_max_bytes.max(0) as usize)
                            .min(max_bytes.saturating_sub(total))
                    };
                    let offset = fp.fetch_offset;
                    let result = if offset < 0 {
                        Err(ferry_broker::stream::StreamError::OffsetOutOfRange {
                            offset: 0,
                            start: part.log_start_offset(),
                            end: part.high_watermark(),
                        })
                    } else if budget == 0 {
                        Ok(None)
                    } else {
                        part.read(offset as u64, budget).map(Some)
                    };
                    match result {
                        Ok(read) => {
                            pd.high_watermark = part.high_watermark() as i64;
                            pd.last_stable_offset = pd.high_watermark;
                            pd.log_start_offset = part.log_start_offset() as i64;
                            if let Some(read) = read {
                                pd.high_watermark = read.high_watermark as i64;
                                pd.last_stable_offset = pd.high_watermark;
                                pd.log_start_offset = read.log_start_offset as i64;
                                total += read.records.len();
                                pd.records = Some(read.records);
                            } else {
                                pd.records = Some(Default::default());
                            }
                        }
                        Err(e) => {
                            pd.error_code = error_code(&e);
                            pd.high_watermark = part.high_watermark() as i64;
                            pd.last_stable_offset = pd.high_watermark;
                            pd.log_start_offset = part.log_start_offset() as i64;
                            errored = true;
                        }
                    }
                }
            }
            if pd.error_code != code::NONE {
                pd.records = Some(Default::default());
            }
            partitions.push(pd);
        }
        let mut t = FetchableTopicResponse::default();
        t.topic = topic.topic.clone();
        t.topic_id = topic.topic_id;
        t.partitions = partitions;
        topics.push(t);
    }
    let mut r = FetchResponse::default();
    r.responses = topics;
    (r, total, errored)
}
