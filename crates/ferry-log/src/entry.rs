//! The values that go into and come out of a log.

use bytes::Bytes;

/// One entry to append. An entry occupies `offset_count` consecutive offsets (a Kafka record
/// batch spans one offset per record) and is stored, read and CRC-checked as a unit.
///
/// What is stored is `head` followed by `payload`, read back as one payload. A caller that
/// must change the first bytes of a buffer it shares (a Kafka batch's base offset, in a
/// request's buffer) passes the changed bytes as `head` and the rest as a slice of the buffer,
/// rather than copying the whole of it first: the log copies every entry into its write
/// batch anyway.
#[derive(Clone, Debug)]
pub struct Entry {
    pub timestamp_ms: i64,
    /// Number of offsets the entry spans; must be at least 1.
    pub offset_count: u32,
    /// Stored before `payload` (usually empty).
    pub head: Bytes,
    pub payload: Bytes,
}

impl Entry {
    /// An entry spanning a single offset.
    pub fn new(timestamp_ms: i64, payload: impl Into<Bytes>) -> Entry {
        Entry {
            timestamp_ms,
            offset_count: 1,
            head: Bytes::new(),
            payload: payload.into(),
        }
    }

    /// The length of the stored payload: `head` and `payload` together.
    pub fn len(&self) -> usize {
        self.head.len() + self.payload.len()
    }

    /// Whether the stored payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

/// The entries of `run` (which starts with the entry to read from) that a range read returns:
/// while their frame sizes (payload + header) fit in `max_bytes`, and at least the first.
pub(crate) fn within_budget<'a>(
    run: impl IntoIterator<Item = &'a StoredEntry>,
    max_bytes: usize,
) -> Vec<StoredEntry> {
    let mut out = Vec::new();
    let mut budget = max_bytes;
    for entry in run {
        let len = entry.payload.len() + crate::frame::HEADER_BYTES;
        if !out.is_empty() && len > budget {
            break;
        }
        out.push(entry.clone());
        budget = budget.saturating_sub(len);
        if budget == 0 {
            break;
        }
    }
    out
}
