//! The on-disk frame of one entry: encoding, header parsing and CRC verification.
//!
//! ```text
//! byte  size  field          meaning
//!    0     4  length         u32 LE: bytes after this field (24 + payload length)
//!    4     4  crc32c         u32 LE: CRC32C (Castagnoli) of bytes 8 .. 4 + length
//!    8     8  base_offset    u64 LE: first offset the entry occupies
//!   16     8  timestamp_ms   i64 LE
//!   24     4  offset_count   u32 LE: offsets the entry spans (>= 1)
//!   28     n  payload
//! ```
//!
//! The CRC covers the offset, so a frame copied to the wrong place (or read through a stale
//! index) fails verification instead of returning another entry's data.

/// Bytes before the payload.
pub(crate) const HEADER_BYTES: usize = 28;
/// Bytes counted by the length field that are not payload (crc, offset, timestamp, count).
const LENGTH_OVERHEAD: u32 = (HEADER_BYTES - 4) as u32;
/// Hard ceiling on a payload, whatever the configuration says. It bounds the buffer a reader
/// allocates for one frame, so a garbage length field cannot make us allocate gigabytes.
pub(crate) const MAX_ENTRY_BYTES_LIMIT: u32 = 256 << 20;

/// Size on disk of an entry with a payload of `payload_len` bytes.
pub(crate) fn frame_len(payload_len: usize) -> usize {
    HEADER_BYTES + payload_len
}

/// Appends the frame of one entry to `buf`; its payload is the `parts` one after the other.
pub(crate) fn encode<const N: usize>(
    buf: &mut Vec<u8>,
    offset: u64,
    timestamp_ms: i64,
    offset_count: u32,
    parts: [&[u8]; N],
) {
    let payload_len: usize = parts.iter().map(|p| p.len()).sum();
    debug_assert!(payload_len <= MAX_ENTRY_BYTES_LIMIT as usize);
    debug_assert!(offset_count >= 1);
    let start = buf.len();
    let length = LENGTH_OVERHEAD + payload_len as u32;
    buf.reserve(frame_len(payload_len));
    buf.extend_from_slice(&length.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&timestamp_ms.to_le_bytes());
    buf.extend_from_slice(&offset_count.to_le_bytes());
    for part in parts {
        buf.extend_from_slice(part);
    }
    let crc = crc32c::crc32c(&buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The fixed-size part of a frame, parsed but not yet CRC-checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    length: u32,
    crc: u32,
    pub offset: u64,
    pub timestamp_ms: i64,
    pub offset_count: u32,
}

impl FrameHeader {
    /// Parses and sanity-checks a header. The error says why the bytes cannot be a frame.
    pub(crate) fn parse(bytes: &[u8; HEADER_BYTES]) -> Result<FrameHeader, String> {
        let u32_at =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let header = FrameHeader {
            length: u32_at(0),
            crc: u32_at(4),
            offset: u64_at(8),
            timestamp_ms: u64_at(16) as i64,
            offset_count: u32_at(24),
        };
        if header.length < LENGTH_OVERHEAD
            || header.length - LENGTH_OVERHEAD > MAX_ENTRY_BYTES_LIMIT
        {
            return Err(format!("invalid frame length {}", header.length));
        }
        if header.offset_count == 0 {
            return Err("frame spans zero offsets".to_string());
        }
        if header
            .offset
            .checked_add(u64::from(header.offset_count))
            .is_none()
        {
            return Err(format!("frame offset {} overflows", header.offset));
        }
        Ok(header)
    }

    /// Total bytes of the frame on disk.
    pub(crate) fn frame_len(&self) -> u64 {
        4 + u64::from(self.length)
    }

    /// The offset just past this entry.
    pub(crate) fn next_offset(&self) -> u64 {
        self.offset + u64::from(self.offset_count)
    }

    /// Checks the CRC of the complete frame `frame` (header included) against the header.
    pub(crate) fn verify(&self, frame: &[u8]) -> Result<(), String> {
        debug_assert_eq!(frame.len() as u64, self.frame_len());
        let actual = crc32c::crc32c(&frame[8..]);
        if actual == self.crc {
            Ok(())
        } else {
            Err(format!(
                "CRC mismatch for the entry at offset {}: stored {:#010x}, computed {actual:#010x}",
                self.offset, self.crc
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(buf: &[u8]) -> Result<FrameHeader, String> {
        let mut h = [0; HEADER_BYTES];
        h.copy_from_slice(&buf[..HEADER_BYTES]);
        FrameHeader::parse(&h)
    }

    #[test]
    fn round_trip() {
        let mut buf = vec![];
        encode(&mut buf, 42, -7, 3, [&b"hel"[..], &b"lo"[..]]);
        assert_eq!(buf.len(), frame_len(5));
        let h = header_of(&buf).unwrap();
        assert_eq!((h.offset, h.timestamp_ms, h.offset_count), (42, -7, 3));
        assert_eq!(h.frame_len(), buf.len() as u64);
        assert_eq!(h.next_offset(), 45);
        h.verify(&buf).unwrap();
        assert_eq!(&buf[HEADER_BYTES..], b"hello");
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut buf = vec![];
        encode(&mut buf, 1, 2, 1, [&b"payload"[..]]);
        for i in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let detected = match header_of(&bad) {
                Err(_) => true,
                Ok(h) => h.frame_len() != bad.len() as u64 || h.verify(&bad).is_err(),
            };
            assert!(detected, "flip of bit {i} went unnoticed");
        }
    }

    #[test]
    fn rejects_impossible_headers() {
        let mut buf = vec![];
        encode(&mut buf, 1, 2, 1, [&b""[..]]);
        let mut zero_count = buf.clone();
        zero_count[24..28].copy_from_slice(&0u32.to_le_bytes());
        assert!(header_of(&zero_count).is_err());
        let zeros = [0u8; HEADER_BYTES];
        assert!(FrameHeader::parse(&zeros).is_err());
        let mut huge = buf.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(header_of(&huge).is_err());
    }
}
