//! The values that go into and come out of a log.

use bytes::Bytes;

/// One entry to append. An entry occupies `offset_count` consecutive offsets (a Kafka record
/// batch spans one offset per record) and is stored, read and CRC-checked as a unit.
#[derive(Clone, Debug)]
pub struct Entry {
    pub timestamp_ms: i64,
    /// Number of offsets the entry spans; must be at least 1.
    pub offset_count: u32,
    pub payload: Bytes,
}

impl Entry {
    /// An entry spanning a single offset.
    pub fn new(timestamp_ms: i64, payload: impl Into<Bytes>) -> Entry {
        Entry {
            timestamp_ms,
            offset_count: 1,
            payload: payload.into(),
        }
    }
}

/// An entry read back from the log, with the first offset it occupies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    pub offset: u64,
    pub offset_count: u32,
    pub timestamp_ms: i64,
    pub payload: Bytes,
}

impl StoredEntry {
    /// The offset just past this entry.
    pub fn next_offset(&self) -> u64 {
        self.offset + u64::from(self.offset_count)
    }

    /// Whether `offset` is one of the offsets this entry occupies.
    pub fn contains(&self, offset: u64) -> bool {
        self.offset <= offset && offset < self.next_offset()
    }
}

/// The offsets `[base_offset, next_offset)` assigned to one `append` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: u64,
    pub next_offset: u64,
}
