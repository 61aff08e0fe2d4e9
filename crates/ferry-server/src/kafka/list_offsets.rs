//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3, v7: the first record with the
//! partition's largest timestamp, KIP-734) and by timestamp (the first record with a timestamp
//! at or after it). Offset -1 when there is no such record.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::error_code;
use super::Conn;

pub const EARLIEST: i64 = -2;
pub const LATEST: i64 = -1;
pub const MAX_TIMESTAMP: i64 = -3;

pub fn handle(conn: &Conn, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let streams = conn.streams();
    let mut r = ListOffsetsResponse::default();
    r.topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.to_string();
            let mut tr = ListOffsetsTopicResponse::default();
            tr.partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut pr = ListOffsetsPartitionResponse::default();
                    pr.partition_index = p.partition_index;
                    pr.timestamp = -1;
                    pr.offset = -1;
                    pr.leader_epoch = -1;
                    let part = match streams.partition(&name, i64::from(p.partition_index)) {
                        Ok(part) => part,
                        Err(e) => {
                            pr.error_code = error_code(&e);
                            return pr;
                        }
                    };
                    let found = match p.timestamp {
                        EARLIEST => {
                            pr.offset = part.log_start_offset() as i64;
                            return pr;
                        }
                        MAX_TIMESTAMP => part.offset_of_max_timestamp(),
                        ts if ts < 0 => {
                            pr.offset = part.high_watermark() as i64;
                            return pr;
                        }
                        ts => part.offset_for_timestamp(ts),
                    };
                    match found {
                        Ok(Some((offset, ts))) => {
                            pr.offset = offset as i64;
                            pr.timestamp = ts;
                        }
                        Ok(None) => {}
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
