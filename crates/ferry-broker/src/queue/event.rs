//! The events of a queue's log and their binary encoding.
//!
//! Every log entry of a queue holds one *record*: a version byte, an event count, then the
//! events. An `Enqueued` event is always alone in its record, so the record's log offset is the
//! message's location on disk (`read_entry(loc)` returns its body). Other events are batched,
//! one record per API call.
//!
//! ```text
//! record   := version:u8 (=2; 1 still reads) count:u32 event{count}
//! event    := tag:u8 fields
//! Enqueued  (1) number:u64 message_id:[16] sent_ms:u64 visible_at_ms:u64 ttl_expire_ms:u64
//!               priority:u8 receive_count:u32 first_receive_ms:u64 sequence:u64
//!               relocated_from:u64 group:str? dedup_id:str? sender:str? dead_letter_source:str?
//!               attributes:attrs system_attributes:attrs body:bytes
//!               body_md5:md5?                           (version 2 only)
//! Received  (2) number:u64 receive_count:u32 visible_at_ms:u64 first_receive_ms:u64
//! Visibility(3) number:u64 visible_at_ms:u64
//! Deleted   (4) number:u64
//! Removed   (5) number:u64 reason:u8
//! Purged    (6)
//! Attempted (7) attempt_id:str expires_ms:u64 count:u32 (number:u64 receive_count:u32){count}
//! str?     := 0 | 1 len:u32 utf8[len]       bytes := len:u32 byte[len]
//! md5?     := 0 | 1 byte[16]
//! attrs    := count:u32 (name:str data_type:str string_value:str? binary_value:bytes?){count}
//! ```
//! Integers are little endian. `sequence == 0` means "no sequence number"; message numbers start
//! at 1 so `relocated_from == 0` means "a new message".

use crate::types::MessageAttributeValue;
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::BTreeMap;

/// Version byte of every record written. Version 1 (no `body_md5` in `Enqueued`) still reads.
pub const RECORD_VERSION: u8 = 2;

/// Why a message left the queue other than by a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RemoveReason {
    /// Retention period or per-message TTL elapsed (dropped, or dead-lettered when configured).
    Expired = 1,
    /// Dropped to make room in a bounded queue.
    Dropped = 2,
    /// Moved to the dead-letter queue (receive count or overflow or TTL).
    DeadLettered = 3,
    /// Moved out by a message move task.
    Moved = 4,
}

impl RemoveReason {
    fn from_u8(v: u8) -> Option<RemoveReason> {
        Some(match v {
            1 => RemoveReason::Expired,
            2 => RemoveReason::Dropped,
            3 => RemoveReason::DeadLettered,
            4 => RemoveReason::Moved,
            _ => return None,
        })
    }
}

/// A message as written in its `Enqueued` event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Enqueued {
    pub number: u64,
    pub message_id: [u8; 16],
    pub sent_ms: u64,
    /// 0 or a past time: visible at once.
    pub visible_at_ms: u64,
    /// 0: no per-message TTL.
    pub ttl_expire_ms: u64,
    pub priority: u8,
    pub receive_count: u32,
    pub first_receive_ms: u64,
    /// 0: none.
    pub sequence: u64,
    /// 0: a new message; otherwise the number this message had before compaction moved it.
    pub relocated_from: u64,
    pub group: Option<String>,
    pub dedup_id: Option<String>,
    pub sender: Option<String>,
    pub dead_letter_source: Option<String>,
    pub attributes: BTreeMap<String, MessageAttributeValue>,
    pub system_attributes: BTreeMap<String, MessageAttributeValue>,
    pub body: Bytes,
    /// See [`crate::SendMessage::body_md5`].
    pub body_md5: Option<[u8; 16]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Enqueued(Box<Enqueued>),
    Received {
        number: u64,
        receive_count: u32,
        visible_at_ms: u64,
        first_receive_ms: u64,
    },
    Visibility {
        number: u64,
        visible_at_ms: u64,
    },
    Deleted {
        number: u64,
    },
    Removed {
        number: u64,
        reason: RemoveReason,
    },
    Purged,
    /// A FIFO receive with a `ReceiveRequestAttemptId` delivered these messages (numbers and
    /// the receive counts they were delivered with); a retry with the same id until
    /// `expires_ms` gets those still in flight again. Follows its `Received` events.
    Attempted {
        attempt_id: String,
        expires_ms: u64,
        deliveries: Vec<(u64, u32)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable queue record: {0}")]
pub struct DecodeError(pub String);

/// Encodes one record holding `events`.
pub fn encode_record(events: &[Event]) -> Bytes {
    let mut size = 5;
    for e in events {
        size += match e {
            Event::Enqueued(m) => {
                128 + m.body.len() + attrs_size(&m.attributes) + attrs_size(&m.system_attributes)
            }
            Event::Attempted {
                attempt_id,
                deliveries,
                ..
            } => 32 + attempt_id.len() + deliveries.len() * 12,
            _ => 32,
        };
    }
    let mut b = BytesMut::with_capacity(size);
    b.put_u8(RECORD_VERSION);
    b.put_u32_le(events.len() as u32);
    for e in events {
        encode_event(&mut b, e);
    }
    b.freeze()
}

fn attrs_size(a: &BTreeMap<String, MessageAttributeValue>) -> usize {
    a.iter()
        .map(|(k, v)| {
            16 + k.len()
                + v.data_type.len()
                + v.string_value.as_ref().map_or(0, |s| s.len())
                + v.binary_value.as_ref().map_or(0, |s| s.len())
        })
        .sum()
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_u32_le(s.len() as u32);
    b.put_slice(s.as_bytes());
}
fn put_opt_str(b: &mut BytesMut, s: &Option<String>) {
    match s {
        None => b.put_u8(0),
        Some(s) => {
            b.put_u8(1);
            put_str(b, s);
        }
    }
}
fn put_attrs(b: &mut BytesMut, a: &BTreeMap<String, MessageAttributeValue>) {
    b.put_u32_le(a.len() as u32);
    for (k, v) in a {
        put_str(b, k);
        put_str(b, &v.data_type);
        put_opt_str(b, &v.string_value);
        match &v.binary_value {
            None => b.put_u8(0),
            Some(x) => {
                b.put_u8(1);
                b.put_u32_le(x.len() as u32);
                b.put_slice(x);
            }
        }
    }
}

fn encode_event(b: &mut BytesMut, e: &Event) {
    match e {
        Event::Enqueued(m) => {
            b.put_u8(1);
            b.put_u64_le(m.number);
            b.put_slice(&m.message_id);
            b.put_u64_le(m.sent_ms);
            b.put_u64_le(m.visible_at_ms);
            b.put_u64_le(m.ttl_expire_ms);
            b.put_u8(m.priority);
            b.put_u32_le(m.receive_count);
            b.put_u64_le(m.first_receive_ms);
            b.put_u64_le(m.sequence);
            b.put_u64_le(m.relocated_from);
            put_opt_str(b, &m.group);
            put_opt_str(b, &m.dedup_id);
            put_opt_str(b, &m.sender);
            put_opt_str(b, &m.dead_letter_source);
            put_attrs(b, &m.attributes);
            put_attrs(b, &m.system_attributes);
            b.put_u32_le(m.body.len() as u32);
            b.put_slice(&m.body);
            match &m.body_md5 {
                None => b.put_u8(0),
                Some(d) => {
                    b.put_u8(1);
                    b.put_slice(d);
                }
            }
        }
        Event::Received {
            number,
            receive_count,
            visible_at_ms,
            first_receive_ms,
        } => {
            b.put_u8(2);
            b.put_u64_le(*number);
            b.put_u32_le(*receive_count);
            b.put_u64_le(*visible_at_ms);
            b.put_u64_le(*first_receive_ms);
        }
        Event::Visibility {
            number,
            visible_at_ms,
        } => {
            b.put_u8(3);
            b.put_u64_le(*number);
            b.put_u64_le(*visible_at_ms);
        }
        Event::Deleted { number } => {
            b.put_u8(4);
            b.put_u64_le(*number);
        }
        Event::Removed { number, reason } => {
            b.put_u8(5);
            b.put_u64_le(*number);
            b.put_u8(*reason as u8);
        }
        Event::Purged => b.put_u8(6),
        Event::Attempted {
            attempt_id,
            expires_ms,
            deliveries,
        } => {
            b.put_u8(7);
            put_str(b, attempt_id);
            b.put_u64_le(*expires_ms);
            b.put_u32_le(deliveries.len() as u32);
            for (number, receive_count) in deliveries {
                b.put_u64_le(*number);
                b.put_u32_le(*receive_count);
            }
        }
    }
}

/// A bounds-checked reader over a record. Slices of the body share the record's buffer.
struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(DecodeError(format!(
                "truncated at byte {} (need {n})",
                self.pos
            ))),
        }
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u32()? as usize;
        let start = self.pos;
        self.take(n)?;
        Ok(self.buf.slice(start..start + n))
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        let n = self.u32()? as usize;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| DecodeError("invalid UTF-8 string".into()))
    }
    fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            t => Err(DecodeError(format!("bad option tag {t}"))),
        }
    }
    fn opt_md5(&mut self) -> Result<Option<[u8; 16]>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.take(16)?.try_into().expect("took 16 bytes"))),
            t => Err(DecodeError(format!("bad option tag {t}"))),
        }
    }
    fn attrs(&mut self) -> Result<BTreeMap<String, MessageAttributeValue>, DecodeError> {
        let n = self.u32()?;
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let name = self.string()?;
            let data_type = self.string()?;
            let string_value = self.opt_string()?;
            let binary_value = match self.u8()? {
                0 => None,
                1 => Some(self.bytes()?),
                t => return Err(DecodeError(format!("bad option tag {t}"))),
            };
            m.insert(
                name,
                MessageAttributeValue {
                    data_type,
                    string_value,
                    binary_value,
                },
            );
        }
        Ok(m)
    }
}

/// Decodes a record into its events.
pub fn decode_record(buf: &Bytes) -> Result<Vec<Event>, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let version = r.u8()?;
    if !(1..=RECORD_VERSION).contains(&version) {
        return Err(DecodeError(format!("unknown record version {version}")));
    }
    let n = r.u32()? as usize;
    // Each event is at least one byte: refuse counts the record cannot hold.
    if n > buf.len() {
        return Err(DecodeError(format!("event count {n} exceeds record size")));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let tag = r.u8()?;
        out.push(match tag {
            1 => {
                let number = r.u64()?;
                let mut message_id = [0u8; 16];
                message_id.copy_from_slice(r.take(16)?);
                Event::Enqueued(Box::new(Enqueued {
                    number,
                    message_id,
                    sent_ms: r.u64()?,
                    visible_at_ms: r.u64()?,
                    ttl_expire_ms: r.u64()?,
                    priority: r.u8()?,
                    receive_count: r.u32()?,
                    first_receive_ms: r.u64()?,
                    sequence: r.u64()?,
                    relocated_from: r.u64()?,
                    group: r.opt_string()?,
                    dedup_id: r.opt_string()?,
                    sender: r.opt_string()?,
                    dead_letter_source: r.opt_string()?,
                    attributes: r.attrs()?,
                    system_attributes: r.attrs()?,
                    body: r.bytes()?,
                    body_md5: if version >= 2 { r.opt_md5()? } else { None },
                }))
            }
            2 => Event::Received {
                number: r.u64()?,
                receive_count: r.u32()?,
                visible_at_ms: r.u64()?,
                first_receive_ms: r.u64()?,
            },
            3 => Event::Visibility {
                number: r.u64()?,
                visible_at_ms: r.u64()?,
            },
            4 => Event::Deleted { number: r.u64()? },
            5 => {
                let number = r.u64()?;
                let reason = r.u8()?;
                let reason = RemoveReason::from_u8(reason)
                    .ok_or_else(|| DecodeError(format!("unknown remove reason {reason}")))?;
                Event::Removed { number, reason }
            }
            6 => Event::Purged,
            7 => {
                let attempt_id = r.string()?;
                let expires_ms = r.u64()?;
                let count = r.u32()? as usize;
                // 12 bytes each: a corrupt count cannot ask for more than the record holds.
                if count > (buf.len() - r.pos) / 12 {
                    return Err(DecodeError(format!(
                        "{count} deliveries overrun the record"
                    )));
                }
                let mut deliveries = Vec::with_capacity(count);
                for _ in 0..count {
                    deliveries.push((r.u64()?, r.u32()?));
                }
                Event::Attempted {
                    attempt_id,
                    expires_ms,
                    deliveries,
                }
            }
            t => return Err(DecodeError(format!("unknown event tag {t}"))),
        });
    }
    if r.pos != buf.len() {
        return Err(DecodeError(format!("{} trailing bytes", buf.len() - r.pos)));
    }
    Ok(out)
}

/// Decodes the single `Enqueued` event of a message record.
pub fn decode_enqueued(buf: &Bytes) -> Result<Enqueued, DecodeError> {
    let mut events = decode_record(buf)?;
    match (events.pop(), events.is_empty()) {
        (Some(Event::Enqueued(m)), true) => Ok(*m),
        _ => Err(DecodeError("record is not a single Enqueued event".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Enqueued {
        let mut attributes = BTreeMap::new();
        attributes.insert(
            "a".to_string(),
            MessageAttributeValue {
                data_type: "String".into(),
                string_value: Some("x".into()),
                binary_value: None,
            },
        );
        attributes.insert(
            "b".to_string(),
            MessageAttributeValue {
                data_type: "Binary.jpg".into(),
                string_value: None,
                binary_value: Some(Bytes::from_static(b"\x00\x01")),
            },
        );
        Enqueued {
            number: 7,
            message_id: [9; 16],
            sent_ms: 1,
            visible_at_ms: 2,
            ttl_expire_ms: 3,
            priority: 4,
            receive_count: 5,
            first_receive_ms: 6,
            sequence: 8,
            relocated_from: 0,
            group: Some("g".into()),
            dedup_id: None,
            sender: Some("me".into()),
            dead_letter_source: Some("src".into()),
            attributes,
            system_attributes: BTreeMap::new(),
            body: Bytes::from_static(b"hello"),
            body_md5: Some([0x5d; 16]),
        }
    }

    #[test]
    fn roundtrip_all_events() {
        let events = vec![
            Event::Enqueued(Box::new(sample())),
            Event::Received {
                number: 1,
                receive_count: 2,
                visible_at_ms: 3,
                first_receive_ms: 4,
            },
            Event::Visibility {
                number: 5,
                visible_at_ms: 6,
            },
            Event::Deleted { number: 7 },
            Event::Removed {
                number: 8,
                reason: RemoveReason::DeadLettered,
            },
            Event::Purged,
            Event::Attempted {
                attempt_id: "retry-1".into(),
                expires_ms: 9,
                deliveries: vec![(10, 1), (11, 2)],
            },
        ];
        let rec = encode_record(&events);
        assert_eq!(decode_record(&rec).unwrap(), events);
    }

    #[test]
    fn version_1_records_still_read_without_a_body_digest() {
        // A version 1 record is a version 2 one without the digest's option byte.
        let without = Enqueued {
            body_md5: None,
            ..sample()
        };
        let v2 = encode_record(&[Event::Enqueued(Box::new(without.clone()))]);
        assert_eq!((v2[0], v2[v2.len() - 1]), (2, 0));
        let mut v1 = v2[..v2.len() - 1].to_vec();
        v1[0] = 1;
        assert_eq!(decode_enqueued(&Bytes::from(v1)).unwrap(), without);
        // Other events are the same in both versions.
        let mut deleted = encode_record(&[Event::Deleted { number: 3 }]).to_vec();
        deleted[0] = 1;
        assert_eq!(
            decode_record(&Bytes::from(deleted)).unwrap(),
            vec![Event::Deleted { number: 3 }]
        );
        let mut future = encode_record(&[Event::Purged]).to_vec();
        future[0] = 3;
        assert!(decode_record(&Bytes::from(future)).is_err());
    }

    #[test]
    fn decode_enqueued_requires_single_event() {
        let rec = encode_record(&[Event::Enqueued(Box::new(sample()))]);
        assert_eq!(decode_enqueued(&rec).unwrap(), sample());
        let rec = encode_record(&[Event::Deleted { number: 1 }]);
        assert!(decode_enqueued(&rec).is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_record(&Bytes::from(data));
        }

        #[test]
        fn truncation_is_detected(cut in 0usize..100) {
            let rec = encode_record(&[Event::Enqueued(Box::new(sample()))]);
            let cut = cut.min(rec.len() - 1);
            prop_assert!(decode_record(&rec.slice(..cut)).is_err());
        }
    }
}
