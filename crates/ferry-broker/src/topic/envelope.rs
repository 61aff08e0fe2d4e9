//! The SNS notification formats a subscriber receives: the JSON envelope (`Notification`,
//! `SubscriptionConfirmation`, `UnsubscribeConfirmation`) or the raw message.
//!
//! These are the *delivered message* formats of a topic (what lands in a queue or is POSTed to
//! an endpoint), the same whichever door published, so they live with the topic router.
//!
//! ```text
//! {"Type":"Notification","MessageId":"…","TopicArn":"arn:aws:sns:…:orders","Subject":"…",
//!  "Message":"…","Timestamp":"2026-12-05T15:00:00.000Z","SignatureVersion":"1",
//!  "Signature":"<base64>","SigningCertURL":"http://…/SimpleNotificationService-….pem",
//!  "UnsubscribeURL":"http://…/?Action=Unsubscribe&…",
//!  "MessageAttributes":{"k":{"Type":"String","Value":"v"}}}
//! ```
//!
//! [`notification`] and [`confirmation`] build an envelope without its signature fields; the
//! caller signs it with [`super::signing::Signer::sign_envelopes`] (off the async runtime), then
//! serialises it.

use crate::types::MessageAttributeValue;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// ISO-8601 UTC with milliseconds, as SNS writes `Timestamp`.
pub fn iso8601(ms: u64) -> String {
    let t = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms as i64);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// `MessageAttributes` of the envelope: `{"name": {"Type": "String", "Value": "…"}}`; binary
/// values are base64.
pub fn attributes_json(attributes: &BTreeMap<String, MessageAttributeValue>) -> Value {
    let mut m = Map::new();
    for (k, a) in attributes {
        let value = match (&a.string_value, &a.binary_value) {
            (Some(s), _) => s.clone(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD.encode(b),
            (None, None) => String::new(),
        };
        m.insert(k.clone(), json!({"Type": a.data_type, "Value": value}));
    }
    Value::Object(m)
}

/// Fields of one notification.
pub struct Notification<'a> {
    pub message_id: &'a str,
    pub topic_arn: &'a str,
    pub subject: Option<&'a str>,
    pub message: &'a str,
    pub timestamp_ms: u64,
    pub unsubscribe_url: &'a str,
    pub attributes: &'a BTreeMap<String, MessageAttributeValue>,
    pub sequence_number: Option<&'a str>,
}

/// A `Notification` envelope, not yet signed.
pub fn notification(n: &Notification<'_>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("Type".into(), json!("Notification"));
    m.insert("MessageId".into(), json!(n.message_id));
    if let Some(seq) = n.sequence_number {
        m.insert("SequenceNumber".into(), json!(seq));
    }
    m.insert("TopicArn".into(), json!(n.topic_arn));
    if let Some(s) = n.subject {
        m.insert("Subject".into(), json!(s));
    }
    m.insert("Message".into(), json!(n.message));
    m.insert("Timestamp".into(), json!(iso8601(n.timestamp_ms)));
    m.insert("UnsubscribeURL".into(), json!(n.unsubscribe_url));
    if !n.attributes.is_empty() {
        m.insert("MessageAttributes".into(), attributes_json(n.attributes));
    }
    m
}

/// Which handshake message a [`Confirmation`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmationKind {
    /// POSTed to a new HTTP(S) endpoint; visiting `SubscribeURL` confirms the subscription.
    Subscribe,
    /// POSTed to an HTTP(S) endpoint when its subscription is deleted.
    Unsubscribe,
}

impl ConfirmationKind {
    pub fn message_type(self) -> &'static str {
        match self {
            ConfirmationKind::Subscribe => "SubscriptionConfirmation",
            ConfirmationKind::Unsubscribe => "UnsubscribeConfirmation",
        }
    }
}

/// Fields of a `SubscriptionConfirmation` or `UnsubscribeConfirmation`.
pub struct Confirmation<'a> {
    pub kind: ConfirmationKind,
    pub message_id: &'a str,
    pub topic_arn: &'a str,
    pub subscription_arn: &'a str,
    pub token: &'a str,
    pub subscribe_url: &'a str,
    pub timestamp_ms: u64,
}

/// A `SubscriptionConfirmation` or `UnsubscribeConfirmation` envelope, not yet signed.
pub fn confirmation(c: &Confirmation<'_>) -> Map<String, Value> {
    let message = match c.kind {
        ConfirmationKind::Subscribe => format!(
            "You have chosen to subscribe to the topic {}.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
            c.topic_arn
        ),
        ConfirmationKind::Unsubscribe => format!(
            "You have chosen to deactivate subscription {}.\nTo cancel this operation and restore the subscription, visit the SubscribeURL included in this message.",
            c.subscription_arn
        ),
    };
    let mut m = Map::new();
    m.insert("Type".into(), json!(c.kind.message_type()));
    m.insert("MessageId".into(), json!(c.message_id));
    m.insert("Token".into(), json!(c.token));
    m.insert("TopicArn".into(), json!(c.topic_arn));
    m.insert("Message".into(), json!(message));
    m.insert("SubscribeURL".into(), json!(c.subscribe_url));
    m.insert("Timestamp".into(), json!(iso8601(c.timestamp_ms)));
    m
}

/// A random UUID (version 4) in text form.
pub fn uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    crate::uuid_text(&b)
}

/// Percent-encodes a query-string value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601(1_796_482_800_000), "2026-12-05T15:00:00.000Z");
    }

    #[test]
    fn uuids() {
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
