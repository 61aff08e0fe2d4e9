//! SendMessage and SendMessageBatch.

use std::collections::BTreeMap;

use base64::Engine;
use bytes::Bytes;
use ferry_broker::{validate, MessageAttributeValue, QueueAttributes, SendMessage, SendOutcome};
use serde_json::{json, Value};

use super::{batch_ids, failed_entry, Ctx, Input};
use crate::aws::errors::{AwsError, ErrorKind};
use crate::aws::md5;

/// Most message attributes per message (SQS).
pub const MAX_MESSAGE_ATTRIBUTES: usize = 10;

/// SQS's allowed body characters: #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF.
pub fn allowed_char(c: char) -> bool {
    matches!(c as u32, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

/// The first character of `text` that SQS does not allow, if any. Run on every message body,
/// so it first scans the bytes: a `str` cannot hold surrogates, so the only characters refused
/// are control characters below 0x20 (other than tab, LF and CR) and U+FFFE and U+FFFF, whose
/// UTF-8 starts with 0xEF. Text without such bytes (nearly all) is never decoded.
fn first_disallowed(text: &str) -> Option<char> {
    let suspicious = text.as_bytes().iter().fold(false, |found, &b| {
        found | ((b < 0x20 && !matches!(b, 0x9 | 0xA | 0xD)) || b == 0xEF)
    });
    if !suspicious {
        return None;
    }
    text.chars().find(|c| !allowed_char(*c))
}

fn check_body(body: &str) -> Result<(), AwsError> {
    if let Some(c) = first_disallowed(body) {
        return Err(AwsError::new(
            ErrorKind::InvalidMessageContents,
            format!(
                "Invalid binary character '#x{:X}' was found in the message body, the set of allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
                c as u32
            ),
        ));
    }
    Ok(())
}

/// Parses a `MessageAttributes` (or `MessageSystemAttributes`) map.
pub fn parse_attributes(
    v: Option<&Value>,
    system: bool,
) -> Result<BTreeMap<String, MessageAttributeValue>, AwsError> {
    let mut out = BTreeMap::new();
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let m = v
        .as_object()
        .ok_or_else(|| AwsError::invalid_parameter("MessageAttributes must be a map."))?;
    if !system && m.len() > MAX_MESSAGE_ATTRIBUTES {
        return Err(AwsError::invalid_parameter(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [{MAX_MESSAGE_ATTRIBUTES}].",
            m.len()
        )));
    }
    for (name, a) in m {
        let data_type = a.get("DataType").and_then(Value::as_str).unwrap_or("");
        if data_type.is_empty() {
            return Err(AwsError::invalid_parameter(format!(
                "The message attribute '{name}' must contain non-empty message attribute type."
            )));
        }
        let base = data_type.split('.').next().unwrap_or("");
        let string_value = a
            .get("StringValue")
            .and_then(Value::as_str)
            .map(str::to_string);
        let binary_value = match a.get("BinaryValue").and_then(Value::as_str) {
            Some(b) => Some(Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|_| {
                        AwsError::invalid_parameter(format!(
                            "The message attribute '{name}' has an invalid base64 BinaryValue."
                        ))
                    })?,
            )),
            None => None,
        };
        match base {
            "String" | "Number" if string_value.as_deref().is_none_or(str::is_empty) => {
                return Err(AwsError::invalid_parameter(format!(
                    "The message attribute '{name}' must contain non-empty message attribute value for message attribute type '{data_type}'."
                )))
            }
            "Binary" if binary_value.as_ref().is_none_or(|b| b.is_empty()) => {
                return Err(AwsError::invalid_parameter(format!(
                    "The message attribute '{name}' must contain non-empty message attribute value for message attribute type '{data_type}'."
                )))
            }
            "String" | "Number" | "Binary" => {}
            _ => {
                return Err(AwsError::invalid_parameter(format!(
                    "The type of message (user) attribute '{name}' is invalid. You must use only the following supported type prefixes: Binary, Number, String."
                )))
            }
        }
        if let Some(s) = &string_value {
            if first_disallowed(s).is_some() {
                return Err(AwsError::invalid_parameter(format!(
                    "Message (user) attribute '{name}' value contains invalid character."
                )));
            }
        }
        out.insert(
            name.clone(),
            MessageAttributeValue {
                data_type: data_type.to_string(),
                string_value: if base == "Binary" { None } else { string_value },
                binary_value: if base == "Binary" { binary_value } else { None },
            },
        );
    }
    Ok(out)
}

/// Decodes and checks one message against its queue, as SQS words each failure.
fn decode(ctx: &Ctx, e: &Input, q: &QueueAttributes) -> Result<SendMessage, AwsError> {
    let body = e.req_str("MessageBody")?;
    if body.is_empty() {
        return Err(AwsError::missing("MessageBody"));
    }
    check_body(body)?;
    let attributes = parse_attributes(e.get("MessageAttributes"), false)?;
    let system_attributes = parse_attributes(e.get("MessageSystemAttributes"), true)?;
    for k in system_attributes.keys() {
        if k != "AWSTraceHeader" {
            return Err(AwsError::invalid_parameter(format!(
                "Message system attribute name '{k}' is invalid."
            )));
        }
    }
    let delay = e.int_in(
        "DelaySeconds",
        0,
        900,
        "DelaySeconds must be >= 0 and <= 900.",
    )?;
    if q.fifo && delay.is_some_and(|d| d > 0) {
        return Err(AwsError::invalid_value(
            "DelaySeconds",
            delay.unwrap_or(0),
            "The request include parameter that is not valid for this queue type.",
        ));
    }
    let group_id = e.str("MessageGroupId").map(str::to_string);
    let dedup_id = e.str("MessageDeduplicationId").map(str::to_string);
    if q.fifo {
        if group_id.is_none() {
            return Err(AwsError::missing("MessageGroupId"));
        }
        if dedup_id.is_none() && !q.content_based_deduplication {
            return Err(AwsError::invalid_parameter(
                "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
            ));
        }
    } else if let Some(d) = &dedup_id {
        return Err(AwsError::invalid_value(
            "MessageDeduplicationId",
            d,
            "The request include parameter that is not valid for this queue type.",
        ));
    }
    let m = SendMessage {
        body: Bytes::copy_from_slice(body.as_bytes()),
        attributes,
        system_attributes,
        delay_seconds: if q.fifo { None } else { delay },
        group_id,
        deduplication_id: dedup_id,
        priority: None,
        ttl_seconds: None,
        sender_id: Some(ctx.sender_id.clone()),
        body_md5: None,
    };
    let size = validate::message_size(&m);
    if size > q.maximum_message_size as usize {
        return Err(AwsError::invalid_parameter(format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {} bytes.",
            q.maximum_message_size
        )));
    }
    Ok(m)
}

/// The checksums SQS returns for a message, computed before the message moves to the broker.
/// The body's digest is computed here once: answered now as `MD5OfMessageBody` and stored with
/// the message for every `ReceiveMessage`.
struct Checksums {
    body: String,
    attributes: Option<String>,
    system_attributes: Option<String>,
}

impl Checksums {
    fn of(m: &mut SendMessage) -> Checksums {
        let body = md5::digest(&m.body);
        m.body_md5 = Some(body);
        Checksums {
            body: md5::hex_of(body),
            attributes: (!m.attributes.is_empty()).then(|| md5::of_attributes(&m.attributes)),
            system_attributes: (!m.system_attributes.is_empty())
                .then(|| md5::of_attributes(&m.system_attributes)),
        }
    }

    /// The result of an accepted send: ids and checksums.
    fn result(self, o: SendOutcome) -> Vec<(&'static str, Option<Value>)> {
        vec![
            ("MessageId", Some(Value::String(o.message_id))),
            ("MD5OfMessageBody", Some(Value::String(self.body))),
            ("MD5OfMessageAttributes", self.attributes.map(Value::String)),
            (
                "MD5OfMessageSystemAttributes",
                self.system_attributes.map(Value::String),
            ),
            (
                "SequenceNumber",
                o.sequence_number.map(|s| Value::String(format!("{s:020}"))),
            ),
        ]
    }
}

pub async fn send_one(ctx: &Ctx, i: &Input<'_>) -> Result<Value, AwsError> {
    let name = ctx.queue(i)?;
    let q = ctx.broker.queue_attributes(&name)?;
    let mut m = decode(ctx, i, &q)?;
    let sums = Checksums::of(&mut m);
    let mut outcomes = ctx.broker.send(&name, vec![m]).await?;
    let o = outcomes.pop().ok_or_else(|| {
        AwsError::new(ErrorKind::InternalFailure, "the broker returned no outcome")
    })??;
    Ok(super::object(sums.result(o)))
}

pub async fn send_batch(ctx: &Ctx, i: &Input<'_>) -> Result<Value, AwsError> {
    let name = ctx.queue(i)?;
    let entries = i.entries()?;
    let ids = batch_ids(entries, "SendMessageBatchRequestEntry")?;
    let q = ctx.broker.queue_attributes(&name)?;
    let mut failed = Vec::new();
    let mut accepted: Vec<(String, SendMessage)> = Vec::new();
    let mut total = 0usize;
    for (id, e) in ids.iter().zip(entries) {
        match decode(ctx, &Input(e), &q) {
            Ok(m) => {
                total += validate::message_size(&m);
                accepted.push((id.clone(), m));
            }
            Err(err) => failed.push(failed_entry(id, &err)),
        }
    }
    let limit = q.maximum_message_size as usize;
    if total > limit {
        return Err(AwsError::new(
            ErrorKind::BatchRequestTooLong,
            format!(
                "Batch requests cannot be longer than {limit} bytes. You have sent {total} bytes."
            ),
        ));
    }
    let mut successful = Vec::new();
    if !accepted.is_empty() {
        let mut sent = Vec::with_capacity(accepted.len());
        let mut messages = Vec::with_capacity(accepted.len());
        for (id, mut m) in accepted {
            sent.push((id, Checksums::of(&mut m)));
            messages.push(m);
        }
        let outcomes = ctx.broker.send(&name, messages).await?;
        for ((id, sums), o) in sent.into_iter().zip(outcomes) {
            match o {
                Ok(o) => {
                    let mut r = super::object(sums.result(o));
                    if let Value::Object(map) = &mut r {
                        map.insert("Id".into(), Value::String(id.clone()));
                    }
                    successful.push(r);
                }
                Err(e) => failed.push(failed_entry(&id, &e.into())),
            }
        }
    }
    Ok(json!({ "Successful": successful, "Failed": failed }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_chars(text: &str) -> Option<char> {
        text.chars().find(|c| !allowed_char(*c))
    }

    #[test]
    fn the_byte_scan_finds_what_decoding_every_character_finds() {
        let cases = [
            "plain ascii text with \t tabs \n and \r returns",
            "",
            "bell \u{7} inside",
            "nul \u{0} inside",
            "del \u{7f} is allowed",
            "accents é and 日本語 and emoji 🦀 are allowed",
            "U+FFFD \u{fffd} is allowed, U+FFFE \u{fffe} is not",
            "U+FFFF at the end \u{ffff}",
            "U+EFFF \u{efff} starts with 0xEE; U+F000 \u{f000} with 0xEF and is allowed",
            "\u{1f}",
        ];
        for text in cases {
            assert_eq!(first_disallowed(text), by_chars(text), "{text:?}");
        }
        assert_eq!(first_disallowed("a\u{fffe}b\u{1}"), Some('\u{fffe}'));
        assert_eq!(first_disallowed("a\u{1}b\u{fffe}"), Some('\u{1}'));
        // Every character of the Basic Multilingual Plane and a few beyond, one at a time.
        for code in (0..0x11000u32).chain([0x10FFFF]) {
            if let Some(c) = char::from_u32(code) {
                let text = format!("x{c}y");
                assert_eq!(first_disallowed(&text), by_chars(&text), "U+{code:04X}");
            }
        }
    }
}
