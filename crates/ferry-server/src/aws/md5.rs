//! The MD5 checksums SQS returns so clients can verify what the server stored.
//!
//! `MD5OfMessageBody` is the MD5 of the body's UTF-8 bytes. `MD5OfMessageAttributes` (and
//! `MD5OfMessageSystemAttributes`) is the MD5 of this encoding of the attributes, sorted by
//! name (byte order):
//!
//! ```text
//! for each attribute:
//!   u32 BE length of name      | name bytes
//!   u32 BE length of data type | data type bytes
//!   u8 transport type: 1 = String (String, Number), 2 = Binary
//!   u32 BE length of value     | value bytes (UTF-8 for String/Number, raw for Binary)
//! ```

use std::collections::BTreeMap;

use ferry_broker::MessageAttributeValue;
use md5::{Digest, Md5};

/// MD5 of bytes.
pub fn digest(b: &[u8]) -> [u8; 16] {
    Md5::digest(b).into()
}

/// Lower-case hex of a digest, written into its buffer (`hex::encode` collects `char`s one by
/// one, a visible cost at two checksums per message).
pub fn hex_of(digest: [u8; 16]) -> String {
    let mut out = [0u8; 32];
    hex::encode_to_slice(digest, &mut out).expect("32 bytes hold 16 in hex");
    String::from_utf8(out.to_vec()).expect("hex is ASCII")
}

/// Hex MD5 of the attribute encoding above. `BTreeMap` iteration is already name order.
pub fn of_attributes(attributes: &BTreeMap<String, MessageAttributeValue>) -> String {
    let mut h = Md5::new();
    let field = |h: &mut Md5, b: &[u8]| {
        h.update((b.len() as u32).to_be_bytes());
        h.update(b);
    };
    for (name, v) in attributes {
        field(&mut h, name.as_bytes());
        field(&mut h, v.data_type.as_bytes());
        match &v.binary_value {
            Some(b) if v.data_type.starts_with("Binary") => {
                h.update([2u8]);
                field(&mut h, b);
            }
            _ => {
                h.update([1u8]);
                field(&mut h, v.string_value.as_deref().unwrap_or("").as_bytes());
            }
        }
    }
    hex_of(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_md5_is_plain_md5() {
        assert_eq!(hex_of(digest(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex_of(digest(b"hello")), "5d41402abc4b2a76b9719d911017c592");
    }

    #[test]
    fn attribute_encoding_matches_the_documented_layout() {
        let mut m = BTreeMap::new();
        m.insert(
            "b".to_string(),
            MessageAttributeValue {
                data_type: "Binary".into(),
                string_value: None,
                binary_value: Some(vec![1, 2].into()),
            },
        );
        m.insert(
            "a".to_string(),
            MessageAttributeValue {
                data_type: "String".into(),
                string_value: Some("x".into()),
                binary_value: None,
            },
        );
        let mut expected = Vec::new();
        for (n, t, tt, v) in [
            ("a", "String", 1u8, &b"x"[..]),
            ("b", "Binary", 2u8, &[1u8, 2][..]),
        ] {
            expected.extend((n.len() as u32).to_be_bytes());
            expected.extend(n.as_bytes());
            expected.extend((t.len() as u32).to_be_bytes());
            expected.extend(t.as_bytes());
            expected.push(tt);
            expected.extend((v.len() as u32).to_be_bytes());
            expected.extend(v);
        }
        assert_eq!(of_attributes(&m), hex_of(digest(&expected)));
    }
}
