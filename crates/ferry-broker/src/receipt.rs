//! Receipt handles: opaque text naming one delivery of one message.
//!
//! ```text
//! handle := base64url-nopad( version:u8=1 incarnation:u64 number:u64 receive_count:u32 crc32c:u32 )
//! ```
//! The incarnation tells queues (and a deleted then re-created queue) apart; the receive count
//! is the lease nonce: a handle from an earlier delivery no longer matches. The checksum rejects
//! garbage and typos; handles are not secrets (anyone who may delete may also receive).

use base64::Engine;

const VERSION: u8 = 1;
const LEN: usize = 1 + 8 + 8 + 4 + 4;
/// Longest text accepted before decoding.
pub const MAX_HANDLE_CHARS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptHandle {
    pub incarnation: u64,
    pub number: u64,
    pub receive_count: u32,
}

impl ReceiptHandle {
    pub fn encode(&self) -> String {
        let mut b = Vec::with_capacity(LEN);
        b.push(VERSION);
        b.extend_from_slice(&self.incarnation.to_le_bytes());
        b.extend_from_slice(&self.number.to_le_bytes());
        b.extend_from_slice(&self.receive_count.to_le_bytes());
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    pub fn decode(text: &str) -> Option<ReceiptHandle> {
        if text.len() > MAX_HANDLE_CHARS {
            return None;
        }
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim())
            .ok()?;
        if b.len() != LEN || b[0] != VERSION {
            return None;
        }
        let crc = u32::from_le_bytes(b[21..25].try_into().ok()?);
        if crc32c::crc32c(&b[..21]) != crc {
            return None;
        }
        Some(ReceiptHandle {
            incarnation: u64::from_le_bytes(b[1..9].try_into().ok()?),
            number: u64::from_le_bytes(b[9..17].try_into().ok()?),
            receive_count: u32::from_le_bytes(b[17..21].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_garbage() {
        let h = ReceiptHandle {
            incarnation: 3,
            number: 99,
            receive_count: 2,
        };
        let t = h.encode();
        assert_eq!(ReceiptHandle::decode(&t), Some(h));
        assert_eq!(ReceiptHandle::decode("garbage"), None);
        assert_eq!(ReceiptHandle::decode(""), None);
        let mut bad = t.into_bytes();
        bad[5] = if bad[5] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            ReceiptHandle::decode(std::str::from_utf8(&bad).unwrap()),
            None
        );
    }
}
