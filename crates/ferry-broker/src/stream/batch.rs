//! Record batches (format v2), the unit a stream partition stores.
//!
//! A stream stores each batch exactly as the producer sent it (compressed or not), one log
//! entry per batch spanning one offset per record. The broker touches only the header:
//!
//! ```text
//! byte  size  field                  (big-endian)
//!    0     8  base_offset            patched by the broker on append
//!    8     4  batch_length           bytes after this field
//!   12     4  partition_leader_epoch
//!   16     1  magic                  must be 2
//!   17     4  crc                    CRC32C of bytes 21..end (so patching base_offset keeps it valid)
//!   21     2  attributes             bits 0-2 compression, 3 timestamp type, 4 transactional, 5 control
//!   23     4  last_offset_delta      offsets spanned - 1
//!   27     8  base_timestamp
//!   35     8  max_timestamp
//!   43     8  producer_id            -1 when not idempotent
//!   51     2  producer_epoch
//!   53     4  base_sequence
//!   57     4  record_count
//!   61     …  records
//! ```
//!
//! This is a storage format, not a wire type: the native HTTP API produces and reads the
//! same batches through [`encode_records`] and [`decode_records`].

use bytes::{Bytes, BytesMut};

use super::StreamError;

/// Size of the batch header.
pub const HEADER_BYTES: usize = 61;
const CRC_START: usize = 21;
const ATTR_TIMESTAMP_TYPE: i16 = 1 << 3;
const ATTR_TRANSACTIONAL: i16 = 1 << 4;
const ATTR_CONTROL: i16 = 1 << 5;

/// The parsed header of one validated batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub last_offset_delta: i32,
    pub attributes: i16,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Offsets the batch spans.
    pub fn offset_count(&self) -> u32 {
        (self.last_offset_delta as u32).wrapping_add(1)
    }
    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
    /// The sequence number of the last record (sequences wrap at `i32::MAX`).
    pub fn last_sequence(&self) -> i32 {
        add_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// `seq + delta` with Kafka's wrap-around at `i32::MAX`.
pub fn add_sequence(seq: i32, delta: i32) -> i32 {
    let sum = seq as i64 + delta as i64;
    if sum > i32::MAX as i64 {
        (sum - i32::MAX as i64 - 1) as i32
    } else {
        sum as i32
    }
}

/// Splits a produce payload into its batches (slices of `data`, not copies), validating each
/// header and CRC.
pub fn split_batches(mut data: Bytes) -> Result<Vec<(BatchHeader, Bytes)>, StreamError> {
    let mut out = Vec::new();
    if data.is_empty() {
        return Err(StreamError::InvalidBatch("no record batch".into()));
    }
    while !data.is_empty() {
        if data.len() < HEADER_BYTES {
            return Err(StreamError::CorruptBatch(format!(
                "truncated batch header: {} bytes",
                data.len()
            )));
        }
        let length = i32::from_be_bytes(data[8..12].try_into().unwrap_or([0; 4]));
        if length < (HEADER_BYTES - 12) as i32 || (length as usize + 12) > data.len() {
            return Err(StreamError::CorruptBatch(format!(
                "batch length {length} does not fit the {} bytes sent",
                data.len()
            )));
        }
        let batch = data.split_to(length as usize + 12);
        let header = parse_header(&batch)?;
        out.push((header, batch));
    }
    Ok(out)
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Parses and checks one whole batch (header fields, magic, CRC).
pub fn parse_header(batch: &[u8]) -> Result<BatchHeader, StreamError> {
    if batch.len() < HEADER_BYTES {
        return Err(StreamError::CorruptBatch("truncated batch header".into()));
    }
    let magic = batch[16] as i8;
    if magic != 2 {
        return Err(StreamError::InvalidBatch(format!(
            "record batch magic {magic} is not supported (only v2)"
        )));
    }
    let crc = u32::from_be_bytes([batch[17], batch[18], batch[19], batch[20]]);
    let actual = crc32c::crc32c(&batch[CRC_START..]);
    if crc != actual {
        return Err(StreamError::CorruptBatch(format!(
            "batch CRC mismatch: header says {crc:#010x}, data gives {actual:#010x}"
        )));
    }
    let header = BatchHeader {
        base_offset: be_i64(batch, 0),
        attributes: be_i16(batch, 21),
        last_offset_delta: be_i32(batch, 23),
        base_timestamp: be_i64(batch, 27),
        max_timestamp: be_i64(batch, 35),
        producer_id: be_i64(batch, 43),
        producer_epoch: be_i16(batch, 51),
        base_sequence: be_i32(batch, 53),
        record_count: be_i32(batch, 57),
    };
    if header.last_offset_delta < 0 || header.record_count < 0 {
        return Err(StreamError::CorruptBatch(
            "negative record count or offset delta".into(),
        ));
    }
    if header.record_count == 0 {
        return Err(StreamError::InvalidBatch("empty record batch".into()));
    }
    Ok(header)
}

/// Sets the base offset (outside the CRC).
/// The first [`HEADER_BYTES`] of a validated `batch` as the broker stores them: with the base
/// offset it assigned and, under log-append time, the timestamp-type bit and `now_ms` as the
/// max timestamp, the CRC recomputed (it covers those fields and the records after the header,
/// which stay as they are). The rest of the batch is stored unchanged, so it is never copied
/// to be patched (see `ferry_log::Entry::head`).
pub fn stored_head(batch: &[u8], base_offset: u64, log_append_time_ms: Option<i64>) -> Bytes {
    let mut head = [0u8; HEADER_BYTES];
    head.copy_from_slice(&batch[..HEADER_BYTES]);
    head[0..8].copy_from_slice(&(base_offset as i64).to_be_bytes());
    if let Some(now_ms) = log_append_time_ms {
        let attributes = be_i16(&head, 21) | ATTR_TIMESTAMP_TYPE;
        head[21..23].copy_from_slice(&attributes.to_be_bytes());
        head[35..43].copy_from_slice(&now_ms.to_be_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&head[CRC_START..]), &batch[HEADER_BYTES..]);
        head[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    Bytes::copy_from_slice(&head)
}

/// Recomputes the CRC after header fields it covers (from `attributes` on) were changed.
pub fn reseal(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// One record, as the native API and compaction see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRecord {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Decodes (and decompresses) every record of the stored batches in `data`.
pub fn decode_records(data: &Bytes) -> Result<Vec<StreamRecord>, StreamError> {
    use kafka_protocol::records::RecordBatchDecoder;
    let mut buf = data.clone();
    let sets = RecordBatchDecoder::decode_all(&mut buf)
        .map_err(|e| StreamError::CorruptBatch(format!("cannot decode records: {e}")))?;
    let mut out = Vec::new();
    for set in sets {
        for r in set.records {
            if r.control {
                continue;
            }
            out.push(StreamRecord {
                offset: r.offset as u64,
                timestamp_ms: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            });
        }
    }
    Ok(out)
}

/// A record to append through the native API.
#[derive(Clone, Debug, Default)]
pub struct NewRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub timestamp_ms: Option<i64>,
}

/// Encodes records into one uncompressed v2 batch (base offset 0; the partition patches it).
pub fn encode_records(records: &[NewRecord], now_ms: i64) -> Result<Bytes, StreamError> {
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let encoded: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Constant offset - sequence keeps all records in one batch; base sequence -1.
            sequence: i as i32 - 1,
            timestamp: r.timestamp_ms.unwrap_or(now_ms),
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        encoded.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| StreamError::InvalidBatch(format!("cannot encode records: {e}")))?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Bytes {
        let recs: Vec<NewRecord> = (0..n)
            .map(|i| NewRecord {
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("v{i}"))),
                headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
                timestamp_ms: Some(1000 + i as i64),
            })
            .collect();
        encode_records(&recs, 0).unwrap()
    }

    /// A batch as stored: its patched head, then the rest unchanged.
    fn stored(batch: &Bytes, base_offset: u64, log_append_time_ms: Option<i64>) -> Bytes {
        let mut out = BytesMut::from(&stored_head(batch, base_offset, log_append_time_ms)[..]);
        out.extend_from_slice(&batch[HEADER_BYTES..]);
        out.freeze()
    }

    #[test]
    fn parse_patch_and_decode_round_trip() {
        let data = sample(3);
        let batches = split_batches(data.clone()).unwrap();
        assert_eq!(batches.len(), 1);
        let (header, bytes) = &batches[0];
        assert_eq!(bytes, &data, "the one batch is the whole payload");
        assert_eq!(header.offset_count(), 3);
        assert_eq!(header.max_timestamp, 1002);
        let patched_bytes = stored(bytes, 42, None);
        let patched = parse_header(&patched_bytes).unwrap();
        assert_eq!(patched.base_offset, 42);
        assert_eq!(patched.max_timestamp, 1002);
        assert_eq!(
            &patched_bytes[8..],
            &data[8..],
            "only the base offset changes"
        );
        let records = decode_records(&patched_bytes).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[2].offset, 44);
        assert_eq!(records[1].value.as_deref(), Some(&b"v1"[..]));
        assert_eq!(records[0].headers[0].0, "h");
    }

    #[test]
    fn crc_mismatch_is_corrupt() {
        let mut data = BytesMut::from(&sample(1)[..]);
        let last = data.len() - 1;
        data[last] ^= 0xff;
        assert!(matches!(
            split_batches(data.freeze()),
            Err(StreamError::CorruptBatch(_))
        ));
    }

    #[test]
    fn truncated_is_corrupt() {
        let data = sample(2);
        assert!(matches!(
            split_batches(data.slice(..data.len() - 3)),
            Err(StreamError::CorruptBatch(_))
        ));
        assert!(split_batches(data.slice(..10)).is_err());
    }

    #[test]
    fn log_append_time_keeps_crc_valid() {
        let b = stored(&sample(2), 7, Some(99));
        let h = parse_header(&b).unwrap();
        assert_eq!((h.base_offset, h.max_timestamp), (7, 99));
        assert_ne!(h.attributes & ATTR_TIMESTAMP_TYPE, 0);
    }

    #[test]
    fn sequences_wrap() {
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(add_sequence(5, 3), 8);
    }
}
