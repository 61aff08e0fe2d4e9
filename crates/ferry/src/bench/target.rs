//! What `ferry bench` drives: a [`Target`] is one protocol's way to send, receive and
//! acknowledge. The native HTTP API is the first and SQS the second; an AMQP target plugs in here
//! without touching the load generator.
//!
//! The load generator shares the machine with the server it measures, so targets keep their own
//! cost low: a batch's body is escaped once and copied into the request, and answers are parsed
//! without copying the bodies out (only their send-time stamp is kept).

use std::future::Future;

use super::STAMP_LEN;

/// One delivered message: the send time its body starts with, and whatever acknowledges it.
pub struct Delivery {
    /// Microseconds since the Unix epoch, from the body's first 16 hex digits.
    pub sent_at_us: Option<u64>,
    pub ack_token: String,
}

impl Delivery {
    /// A delivered bench `body` (only its send-time stamp is kept) and its `ack_token`.
    pub fn of(body: &str, ack_token: String) -> Delivery {
        Delivery {
            sent_at_us: stamp_of(body),
            ack_token,
        }
    }
}

/// A messaging system under test. Cheap to clone; clones share connections.
pub trait Target: Clone + Send + Sync + 'static {
    /// Makes `queue` exist and empty before the run; later calls use that queue.
    fn prepare(&self, queue: &str) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Sends a batch of `copies` messages with the same `body`; returns how many were accepted.
    fn send(&self, body: &str, copies: usize)
        -> impl Future<Output = anyhow::Result<usize>> + Send;
    /// Receives up to `max`, waiting up to `wait_seconds` for the first.
    fn receive(
        &self,
        max: usize,
        wait_seconds: u32,
    ) -> impl Future<Output = anyhow::Result<Vec<Delivery>>> + Send;
    /// Acknowledges (deletes) deliveries; returns how many were acknowledged.
    fn ack(&self, tokens: Vec<String>) -> impl Future<Output = anyhow::Result<usize>> + Send;
}

/// The send time a bench body starts with (16 hex digits of microseconds since the epoch).
pub fn stamp_of(body: &str) -> Option<u64> {
    body.get(..STAMP_LEN)
        .and_then(|s| u64::from_str_radix(s, 16).ok())
}

/// Appends `text` to `out` as a JSON string literal. Text without quotes, backslashes or
/// control characters (every body the bench makes) is copied as it is.
pub fn push_json_str(out: &mut Vec<u8>, text: &str) {
    if needs_escaping(text.as_bytes()) {
        serde_json::to_writer(&mut *out, text).expect("writing JSON to a Vec cannot fail");
    } else {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

/// Appends `copies` comma-separated JSON objects that differ only in their leading fields:
/// each is what `head` writes for its index (an opening brace and the fields before the
/// body), then `body` as a JSON string (escaped once for all), then the closing brace.
pub fn push_json_entries(
    out: &mut Vec<u8>,
    body: &str,
    copies: usize,
    mut head: impl FnMut(&mut Vec<u8>, usize),
) {
    let mut quoted = Vec::with_capacity(body.len() + 2);
    push_json_str(&mut quoted, body);
    out.reserve(copies * (quoted.len() + 32));
    for i in 0..copies {
        if i > 0 {
            out.push(b',');
        }
        head(out, i);
        out.extend_from_slice(&quoted);
        out.push(b'}');
    }
}

/// Whether a JSON string literal of `bytes` needs escapes. Branch-free within each chunk, so
/// the compiler vectorizes it.
fn needs_escaping(bytes: &[u8]) -> bool {
    bytes.chunks(64).any(|chunk| {
        chunk.iter().fold(false, |bad, &b| {
            bad | (b < 0x20) | (b == b'"') | (b == b'\\')
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(text: &str) -> String {
        let mut out = Vec::new();
        push_json_str(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_strings_match_serde_json_with_and_without_escapes() {
        let long_plain = format!("{:016x}{}", 1u64 << 50, "x".repeat(1000));
        let late_quote = format!("{}\"", "y".repeat(200));
        for text in [
            "",
            "plain",
            long_plain.as_str(),
            late_quote.as_str(),
            "tab\there",
            "back\\slash",
            "new\nline",
            "\u{1}",
            "ünïcødé ✓",
        ] {
            let ours = quoted(text);
            assert_eq!(ours, serde_json::to_string(text).unwrap(), "{text:?}");
            assert_eq!(serde_json::from_str::<String>(&ours).unwrap(), text);
        }
    }

    #[test]
    fn batch_entries_repeat_the_escaped_body_after_each_head() {
        let mut out = b"[".to_vec();
        push_json_entries(&mut out, "a\"b", 3, |out, i| {
            out.extend_from_slice(format!("{{\"id\":{i},\"body\":").as_bytes())
        });
        out.push(b']');
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!([
                {"id": 0, "body": "a\"b"},
                {"id": 1, "body": "a\"b"},
                {"id": 2, "body": "a\"b"},
            ])
        );
        let mut none = Vec::new();
        push_json_entries(&mut none, "x", 0, |_, _| unreachable!());
        assert!(none.is_empty());
    }

    #[test]
    fn stamps_are_read_from_the_first_sixteen_hex_digits() {
        assert_eq!(stamp_of("000000000000002axxxx"), Some(42));
        assert_eq!(stamp_of("0000000000002a"), None);
        assert_eq!(stamp_of("zz00000000000000xxxx"), None);
    }
}
