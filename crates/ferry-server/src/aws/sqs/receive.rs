//! ReceiveMessage (with long polling).

use std::collections::BTreeMap;

use base64::Engine;
use ferry_broker::{MessageAttributeValue, ReceiveRequest, ReceivedMessage};
use serde_json::{json, Map, Value};

use super::{Ctx, Input};
use crate::aws::errors::AwsError;
use crate::aws::md5;

/// Most messages one ReceiveMessage returns (SQS).
pub const MAX_MESSAGES: i64 = 10;
/// Longest long-poll wait (SQS).
pub const MAX_WAIT_SECONDS: i64 = 20;
/// Longest visibility timeout (SQS).
pub const MAX_VISIBILITY_TIMEOUT: i64 = 43_200;

/// System attributes a receive can ask for.
pub const SYSTEM_ATTRIBUTES: [&str; 10] = [
    "SenderId",
    "SentTimestamp",
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageDeduplicationId",
    "MessageGroupId",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
    "All",
];

fn wanted_attribute(selectors: &[String], name: &str) -> bool {
    selectors.iter().any(|s| {
        s == "All"
            || s == ".*"
            || s == name
            || s.strip_suffix(".*")
                .is_some_and(|p| name.starts_with(p) && name[p.len()..].starts_with('.'))
    })
}

fn attribute_json(v: &MessageAttributeValue) -> Value {
    let mut m = Map::new();
    m.insert("DataType".into(), Value::String(v.data_type.clone()));
    if let Some(s) = &v.string_value {
        m.insert("StringValue".into(), Value::String(s.clone()));
    }
    if let Some(b) = &v.binary_value {
        m.insert(
            "BinaryValue".into(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        );
    }
    Value::Object(m)
}

fn message_json(ctx: &Ctx, r: &ReceivedMessage, system: &[String], selectors: &[String]) -> Value {
    let m = &r.message;
    let all = system.iter().any(|s| s == "All");
    let want = |n: &str| all || system.iter().any(|s| s == n);
    let mut attrs = Map::new();
    let mut put = |n: &str, v: Option<String>| {
        if let Some(v) = v.filter(|_| want(n)) {
            attrs.insert(n.to_string(), Value::String(v));
        }
    };
    put(
        "SenderId",
        Some(
            m.sender_id
                .clone()
                .unwrap_or_else(|| ctx.account().to_string()),
        ),
    );
    put("SentTimestamp", Some(m.sent_timestamp_ms.to_string()));
    put("ApproximateReceiveCount", Some(m.receive_count.to_string()));
    put(
        "ApproximateFirstReceiveTimestamp",
        Some(m.first_receive_timestamp_ms.to_string()),
    );
    put(
        "SequenceNumber",
        m.sequence_number.map(|s| format!("{s:020}")),
    );
    put("MessageDeduplicationId", m.deduplication_id.clone());
    put("MessageGroupId", m.group_id.clone());
    put(
        "AWSTraceHeader",
        m.system_attributes
            .get("AWSTraceHeader")
            .and_then(|v| v.string_value.clone()),
    );
    put(
        "DeadLetterQueueSourceArn",
        m.dead_letter_source.as_ref().map(|s| ctx.queue_arn(s)),
    );
    let selected: BTreeMap<String, MessageAttributeValue> = m
        .attributes
        .iter()
        .filter(|(k, _)| wanted_attribute(selectors, k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Bodies sent through SQS are valid UTF-8; only a binary body sent through the native API
    // needs the lossy conversion.
    let body = match std::str::from_utf8(&m.body) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(&m.body).into_owned(),
    };
    let mut out = Map::new();
    out.insert("MessageId".into(), Value::String(m.message_id.clone()));
    out.insert(
        "ReceiptHandle".into(),
        Value::String(r.receipt_handle.clone()),
    );
    // Stored by an SQS send; computed for messages that came in through other doors.
    let body_md5 = m.body_md5.unwrap_or_else(|| md5::digest(&m.body));
    out.insert("MD5OfBody".into(), Value::String(md5::hex_of(body_md5)));
    out.insert("Body".into(), Value::String(body));
    if !attrs.is_empty() {
        out.insert("Attributes".into(), Value::Object(attrs));
    }
    if !selected.is_empty() {
        out.insert(
            "MD5OfMessageAttributes".into(),
            Value::String(md5::of_attributes(&selected)),
        );
        out.insert(
            "MessageAttributes".into(),
            Value::Object(
                selected
                    .iter()
                    .map(|(k, v)| (k.clone(), attribute_json(v)))
                    .collect(),
            ),
        );
    }
    Value::Object(out)
}

pub async fn receive(ctx: &Ctx, i: &Input<'_>) -> Result<Value, AwsError> {
    let name = ctx.queue(i)?;
    let max = i.int_in(
        "MaxNumberOfMessages",
        1,
        MAX_MESSAGES,
        "Must be between 1 and 10, if provided.",
    )?;
    let wait = i.int_in(
        "WaitTimeSeconds",
        0,
        MAX_WAIT_SECONDS,
        "Must be >= 0 and <= 20, if provided.",
    )?;
    let visibility = i.int_in(
        "VisibilityTimeout",
        0,
        MAX_VISIBILITY_TIMEOUT,
        "Must be >= 0 and <= 43200, if provided.",
    )?;
    let mut system = i.str_list("AttributeNames")?;
    system.extend(i.str_list("MessageSystemAttributeNames")?);
    for n in &system {
        if !SYSTEM_ATTRIBUTES.contains(&n.as_str()) {
            return Err(AwsError::unknown_attribute(n));
        }
    }
    let selectors = i.str_list("MessageAttributeNames")?;
    let attempt = i.str("ReceiveRequestAttemptId").map(str::to_string);
    if let Some(a) = &attempt {
        let ok = !a.is_empty() && a.len() <= 128 && a.chars().all(|c| c.is_ascii_graphic());
        if !ok {
            return Err(AwsError::invalid_value(
                "ReceiveRequestAttemptId",
                a,
                "must be 1 to 128 characters: alphanumeric and punctuation.",
            ));
        }
    }
    // A receive that may wait (an explicit wait, or the queue's default) is parked in a long
    // poll: shutdown does not wait for it before waking the polls.
    let _poll = (wait != Some(0)).then(|| ctx.door.long_poll_guard());
    let request = ReceiveRequest {
        max_messages: max.unwrap_or(1),
        visibility_timeout_seconds: visibility,
        wait_seconds: wait,
        receive_request_attempt_id: attempt,
    };
    let received = ctx.broker.receive(&name, request).await?;
    if received.is_empty() {
        return Ok(json!({}));
    }
    let messages: Vec<Value> = received
        .iter()
        .map(|r| message_json(ctx, r, &system, &selectors))
        .collect();
    Ok(json!({ "Messages": messages }))
}

#[cfg(test)]
mod tests {
    use super::wanted_attribute;

    #[test]
    fn attribute_selectors() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(wanted_attribute(&s(&["All"]), "a"));
        assert!(wanted_attribute(&s(&[".*"]), "a"));
        assert!(wanted_attribute(&s(&["bar.*"]), "bar.baz"));
        assert!(!wanted_attribute(&s(&["bar.*"]), "barbaz"));
        assert!(wanted_attribute(&s(&["x"]), "x"));
        assert!(!wanted_attribute(&s(&["x"]), "y"));
        assert!(!wanted_attribute(&[], "y"));
    }
}
