//! Fetch: stored batches from each requested offset, with long polling.
//!
//! The answer is sent when at least `min_bytes` are available or `max_wait_ms` has passed
//! (or at once on an error). Each partition gets at most `partition_max_bytes` and the whole
//! answer at most `max_bytes`, except that the first batch found is always included whole
//! (KIP-74) so an oversized batch cannot stall a consumer. Batches may start before the
//! fetch offset (a batch is stored as one unit); clients skip the records before it.
//! Fetch sessions (KIP-227) are not kept: every answer has session id 0, which tells the
//! client to send full requests. Only durable records are served (high watermark).
//!
//! The answer is encoded here rather than through `kafka-protocol`'s `FetchResponse`, so the
//! stored batches are never copied into the response: the encoded frame is a list of chunks
//! (the fields around each partition's records, and the records as read from the log) written
//! with one vectored write. `tests::matches_kafka_protocol_encoding` checks the bytes against
//! `kafka-protocol`'s encoder for every supported version.
//!
//! ```text
//! FetchResponse v4-v12 (v12 is flexible: compact arrays/strings/bytes and tagged fields)
//!   throttle_time_ms i32 | [v7+] error_code i16, session_id i32 | responses [
//!     topic string | partitions [
//!       partition_index i32 | error_code i16 | high_watermark i64 | last_stable_offset i64 |
//!       [v5+] log_start_offset i64 | aborted_transactions [] | [v11+] preferred_read_replica i32 |
//!       records bytes | [v12] tagged fields ] | [v12] tagged fields ] | [v12] tagged fields
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use ferry_broker::stream::{Partition, StoredBatches, StreamError};
use kafka_protocol::messages::{ApiKey, FetchRequest, ResponseHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::{code, error_code, Conn};

/// Longest long poll honoured.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// One partition's part of a Fetch answer.
#[derive(Clone, Debug)]
pub struct PartitionAnswer {
    pub index: i32,
    pub error_code: i16,
    /// Also the last stable offset (no transactions): -1 when the partition is unknown.
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Stored batches, in order, exactly as read from the log.
    pub batches: Vec<Bytes>,
}

/// One topic's part of a Fetch answer.
#[derive(Clone, Debug)]
pub struct TopicAnswer {
    pub name: StrBytes,
    pub partitions: Vec<PartitionAnswer>,
}

/// A Fetch answer, encoded by [`FetchAnswer::encode`].
#[derive(Clone, Debug, Default)]
pub struct FetchAnswer {
    pub topics: Vec<TopicAnswer>,
}

pub async fn handle(conn: &Conn, req: FetchRequest, _version: i16) -> FetchAnswer {
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
        let (answer, total, errored) = collect(conn, &req, max_bytes).await;
        let now = Instant::now();
        if total >= min_bytes.max(1) || errored || now >= deadline {
            return answer;
        }
        if tokio::time::timeout(deadline - now, changes.changed())
            .await
            .is_err()
        {
            // Deadline: one last read below.
            return collect(conn, &req, max_bytes).await.0;
        }
    }
}

/// Reads every requested partition once. Batches in a partition's tail cache are taken at
/// once; partitions whose batches must come from the disk are read afterwards, concurrently,
/// on blocking threads (so no runtime thread waits for the disk), each with the budget it
/// would have had in order: a pending read counts as using all of its budget.
async fn collect(conn: &Conn, req: &FetchRequest, max_bytes: usize) -> (FetchAnswer, usize, bool) {
    let streams = conn.streams();
    // Bytes answered so far plus the budgets of the disk reads still to come.
    let mut claimed = 0usize;
    let mut errored = false;
    let mut disk_reads = Vec::new();
    // Where each answered partition's consumer will read next, and how much it asked for.
    let mut read_on = Vec::new();
    let mut topics = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let name = topic.topic.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for fp in &topic.partitions {
            let mut pa = PartitionAnswer {
                index: fp.partition,
                error_code: code::NONE,
                high_watermark: -1,
                log_start_offset: -1,
                batches: Vec::new(),
            };
            match streams.partition(&name, i64::from(fp.partition)) {
                Err(e) => {
                    pa.error_code = error_code(&e);
                    errored = true;
                }
                Ok(part) => {
                    let budget = if claimed == 0 {
                        fp.partition_max_bytes.max(1) as usize
                    } else {
                        (fp.partition_max_bytes.max(0) as usize)
                            .min(max_bytes.saturating_sub(claimed))
                    };
                    let offset = fp.fetch_offset;
                    let result = if offset < 0 {
                        Err(StreamError::OffsetOutOfRange {
                            offset: 0,
                            start: part.log_start_offset(),
                            end: part.high_watermark(),
                        })
                    } else if budget == 0 {
                        Ok(None)
                    } else {
                        part.read_batches_in_memory(offset as u64, budget)
                    };
                    if let Ok(Some(read)) = &result {
                        read_on.push((Arc::clone(&part), read.next_offset, budget));
                    }
                    match result {
                        Ok(None) if offset >= 0 && budget > 0 => {
                            claimed += budget;
                            disk_reads.push((
                                topics.len(),
                                partitions.len(),
                                part,
                                offset as u64,
                                budget,
                            ));
                        }
                        result => {
                            claimed += answer_partition(&mut pa, &part, result, &mut errored);
                        }
                    }
                }
            }
            partitions.push(pa);
        }
        topics.push(TopicAnswer {
            name: topic.topic.0.clone(),
            partitions,
        });
    }
    let reads: Vec<_> = disk_reads
        .into_iter()
        .map(|(t, p, part, offset, budget)| {
            let reader = Arc::clone(&part);
            let read = tokio::task::spawn_blocking(move || reader.read_batches(offset, budget));
            (t, p, part, budget, read)
        })
        .collect();
    for (t, p, part, budget, read) in reads {
        let result = match read.await {
            Ok(result) => result.map(Some),
            Err(join) => Err(StreamError::Storage(format!("the read failed: {join}"))),
        };
        if let Ok(Some(read)) = &result {
            read_on.push((Arc::clone(&part), read.next_offset, budget));
        }
        answer_partition(&mut topics[t].partitions[p], &part, result, &mut errored);
    }
    read_ahead(read_on);
    let total = topics
        .iter()
        .flat_map(|t| &t.partitions)
        .flat_map(|p| &p.batches)
        .map(Bytes::len)
        .sum();
    (FetchAnswer { topics }, total, errored)
}

/// Starts reading ahead, on blocking threads, for the partitions whose next fetch would
/// otherwise wait for the disk (a consumer catching up on data no longer in the tail cache), so
/// the disk works while the answer travels and the client processes it.
fn read_ahead(next_reads: Vec<(Arc<Partition>, u64, usize)>) {
    for (part, from, bytes) in next_reads {
        if part.needs_prefetch(from) {
            tokio::task::spawn_blocking(move || {
                if let Err(error) = part.prefetch(from, bytes) {
                    tracing::debug!(%error, from, "read-ahead failed; the next fetch reads the files");
                }
            });
        }
    }
}

/// Fills a partition's answer from its read; returns the bytes it holds.
fn answer_partition(
    pa: &mut PartitionAnswer,
    part: &Partition,
    result: Result<Option<StoredBatches>, StreamError>,
    errored: &mut bool,
) -> usize {
    match result {
        Ok(Some(read)) => {
            pa.high_watermark = read.high_watermark as i64;
            pa.log_start_offset = read.log_start_offset as i64;
            pa.batches = read.batches;
            read.bytes
        }
        Ok(None) => {
            pa.high_watermark = part.high_watermark() as i64;
            pa.log_start_offset = part.log_start_offset() as i64;
            0
        }
        Err(e) => {
            pa.error_code = error_code(&e);
            pa.high_watermark = part.high_watermark() as i64;
            pa.log_start_offset = part.log_start_offset() as i64;
            *errored = true;
            0
        }
    }
}

impl FetchAnswer {
    /// Encodes the response frame body (header included, size prefix not) as chunks: the
    /// fields between records are small buffers, the records are the stored batches.
    pub fn encode(&self, correlation_id: i32, version: i16) -> Result<Vec<Bytes>, String> {
        let flexible = version >= 12;
        let mut chunks = Vec::new();
        let mut buf = BytesMut::with_capacity(64);
        let mut header = ResponseHeader::default();
        header.correlation_id = correlation_id;
        header
            .encode(&mut buf, ApiKey::Fetch.response_header_version(version))
            .map_err(|e| format!("cannot encode the response header: {e}"))?;
        buf.put_i32(0); // throttle_time_ms
        if version >= 7 {
            buf.put_i16(code::NONE);
            buf.put_i32(0); // session_id: sessions are not kept
        }
        put_len(&mut buf, flexible, self.topics.len())?;
        for topic in &self.topics {
            if flexible {
                put_uvarint(&mut buf, len_u32(topic.name.len() + 1)?);
            } else {
                let len = i16::try_from(topic.name.len())
                    .map_err(|_| format!("topic name of {} bytes", topic.name.len()))?;
                buf.put_i16(len);
            }
            buf.put_slice(topic.name.as_bytes());
            put_len(&mut buf, flexible, topic.partitions.len())?;
            for p in &topic.partitions {
                buf.put_i32(p.index);
                buf.put_i16(p.error_code);
                buf.put_i64(p.high_watermark);
                buf.put_i64(p.high_watermark); // last_stable_offset
                if version >= 5 {
                    buf.put_i64(p.log_start_offset);
                }
                put_len(&mut buf, flexible, 0)?; // aborted_transactions: none
                if version >= 11 {
                    buf.put_i32(-1); // preferred_read_replica
                }
                let records: usize = p.batches.iter().map(Bytes::len).sum();
                put_len(&mut buf, flexible, records)?;
                if records > 0 {
                    chunks.push(buf.split().freeze());
                    chunks.extend(p.batches.iter().cloned());
                }
                if flexible {
                    put_uvarint(&mut buf, 0); // partition tagged fields
                }
            }
            if flexible {
                put_uvarint(&mut buf, 0); // topic tagged fields
            }
        }
        if flexible {
            put_uvarint(&mut buf, 0); // response tagged fields
        }
        chunks.push(buf.freeze());
        Ok(chunks)
    }
}

fn len_u32(len: usize) -> Result<u32, String> {
    u32::try_from(len).map_err(|_| format!("length {len} does not fit the Fetch response"))
}

/// An array or bytes length: `i32`, or `len + 1` as an unsigned varint when flexible.
fn put_len(buf: &mut BytesMut, flexible: bool, len: usize) -> Result<(), String> {
    if flexible {
        put_uvarint(buf, len_u32(len)?.checked_add(1).ok_or("length overflow")?);
    } else {
        let len = i32::try_from(len).map_err(|_| format!("length {len} exceeds i32"))?;
        buf.put_i32(len);
    }
    Ok(())
}

fn put_uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{BrokerId, FetchResponse, TopicName};

    fn answer() -> FetchAnswer {
        let batch = |n: u8, len: usize| Bytes::from(vec![n; len]);
        FetchAnswer {
            topics: vec![
                TopicAnswer {
                    name: StrBytes::from_static_str("orders"),
                    partitions: vec![
                        PartitionAnswer {
                            index: 0,
                            error_code: code::NONE,
                            high_watermark: 42,
                            log_start_offset: 3,
                            batches: vec![batch(1, 100), batch(2, 300)],
                        },
                        PartitionAnswer {
                            index: 1,
                            error_code: code::NONE,
                            high_watermark: 0,
                            log_start_offset: 0,
                            batches: vec![],
                        },
                    ],
                },
                TopicAnswer {
                    name: StrBytes::from_static_str("missing"),
                    partitions: vec![PartitionAnswer {
                        index: 7,
                        error_code: code::UNKNOWN_TOPIC_OR_PARTITION,
                        high_watermark: -1,
                        log_start_offset: -1,
                        batches: vec![],
                    }],
                },
            ],
        }
    }

    /// The same answer as `kafka-protocol` types, as the door encoded it before.
    fn as_response(a: &FetchAnswer) -> FetchResponse {
        let mut r = FetchResponse::default();
        r.responses = a
            .topics
            .iter()
            .map(|t| {
                let mut ft = FetchableTopicResponse::default();
                ft.topic = TopicName(t.name.clone());
                ft.partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut pd = PartitionData::default();
                        pd.partition_index = p.index;
                        pd.error_code = p.error_code;
                        pd.high_watermark = p.high_watermark;
                        pd.last_stable_offset = p.high_watermark;
                        pd.log_start_offset = p.log_start_offset;
                        pd.preferred_read_replica = BrokerId(-1);
                        pd.records = Some(Bytes::from(p.batches.concat()));
                        pd
                    })
                    .collect();
                ft
            })
            .collect();
        r
    }

    #[test]
    fn matches_kafka_protocol_encoding() {
        let a = answer();
        for version in 4..=12 {
            let mut want = BytesMut::new();
            let mut header = ResponseHeader::default();
            header.correlation_id = 99;
            header
                .encode(&mut want, ApiKey::Fetch.response_header_version(version))
                .unwrap();
            as_response(&a).encode(&mut want, version).unwrap();
            let got = a.encode(99, version).unwrap().concat();
            assert_eq!(got, want.to_vec(), "Fetch v{version}");
        }
    }

    #[test]
    fn records_are_not_copied() {
        let a = answer();
        let chunks = a.encode(1, 12).unwrap();
        let stored = &a.topics[0].partitions[0].batches[1];
        assert!(chunks.iter().any(|c| c.as_ptr() == stored.as_ptr()));
    }

    #[test]
    fn varints() {
        let mut b = BytesMut::new();
        put_uvarint(&mut b, 300);
        assert_eq!(&b[..], &[0xac, 0x02]);
    }
}
