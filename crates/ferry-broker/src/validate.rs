//! Validation of queue names, queue attributes and messages, with the limits as constants.
//! Each failure names the attribute or parameter at fault.

use crate::error::BrokerError;
use crate::types::{
    DeduplicationScope, FifoThroughputLimit, MessageAttributeValue, QueueAttributes,
    QueueDurability, RedriveAllowPolicy, SendMessage,
};
use std::collections::BTreeMap;

pub const MAX_QUEUE_NAME_CHARS: usize = 80;
pub const MAX_VISIBILITY_TIMEOUT_SECONDS: u32 = 43_200;
pub const MAX_DELAY_SECONDS: u32 = 900;
pub const MIN_RETENTION_SECONDS: u32 = 60;
pub const MAX_RETENTION_SECONDS: u32 = 1_209_600;
pub const MIN_MESSAGE_SIZE_LIMIT: u32 = 1024;
pub const MAX_MESSAGE_SIZE_LIMIT: u32 = 1_048_576;
pub const MAX_WAIT_SECONDS: u32 = 20;
pub const MAX_MAX_RECEIVE_COUNT: u32 = 1000;
pub const MAX_REDRIVE_ALLOW_SOURCES: usize = 10;
pub const MAX_PRIORITY: u8 = 9;
/// Longest bounded length a queue may be given.
pub const MAX_MAX_LENGTH: u64 = 1_000_000_000;
pub const MAX_TTL_SECONDS: u32 = MAX_RETENTION_SECONDS;
pub const MIN_IDLE_DELETE_SECONDS: u32 = 60;
pub const MAX_IDLE_DELETE_SECONDS: u32 = MAX_RETENTION_SECONDS;
pub const MAX_DURABILITY_INTERVAL_MS: u32 = 60_000;
/// Message attributes per message (SQS).
pub const MAX_MESSAGE_ATTRIBUTES: usize = 10;
pub const MAX_ATTRIBUTE_NAME_CHARS: usize = 256;
pub const MAX_ATTRIBUTE_TYPE_CHARS: usize = 256;
/// Group ids, dedup ids, attempt ids (SQS).
pub const MAX_ID_CHARS: usize = 128;
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_KEY_CHARS: usize = 128;
pub const MAX_TAG_VALUE_CHARS: usize = 256;
pub const MAX_SENDER_ID_CHARS: usize = 256;
pub const MAX_OPAQUE_ATTRIBUTES: usize = 64;
pub const MAX_OPAQUE_VALUE_BYTES: usize = 20_480;

fn attr_err(attribute: &str, reason: impl Into<String>) -> BrokerError {
    BrokerError::InvalidAttributeValue {
        attribute: attribute.to_string(),
        reason: reason.into(),
    }
}
fn param_err(parameter: &str, reason: impl Into<String>) -> BrokerError {
    BrokerError::InvalidParameter {
        parameter: parameter.to_string(),
        reason: reason.into(),
    }
}

pub fn queue_name(name: &str, fifo: bool) -> Result<(), BrokerError> {
    let bad = |reason: &str| BrokerError::InvalidQueueName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() || name.chars().count() > MAX_QUEUE_NAME_CHARS {
        return Err(bad("must be 1 to 80 characters"));
    }
    let stem = name.strip_suffix(".fifo");
    let chars_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    match (fifo, stem) {
        (true, Some(stem)) if chars_ok(stem) => Ok(()),
        (true, _) => Err(bad(
            "a FIFO queue name must end in .fifo, other characters A-Z a-z 0-9 - _",
        )),
        (false, Some(_)) => Err(bad("only FIFO queues may end in .fifo")),
        (false, None) if chars_ok(name) => Ok(()),
        (false, None) => Err(bad("may contain only A-Z a-z 0-9 - _")),
    }
}

fn range(attribute: &str, v: u32, lo: u32, hi: u32) -> Result<(), BrokerError> {
    if v < lo || v > hi {
        return Err(attr_err(attribute, format!("{v} is outside {lo}..={hi}")));
    }
    Ok(())
}

/// Checks the attributes on their own (cross-queue checks such as the dead-letter queue's
/// existence are done by the broker).
pub fn attributes(a: &QueueAttributes) -> Result<(), BrokerError> {
    range(
        "VisibilityTimeout",
        a.visibility_timeout_seconds,
        0,
        MAX_VISIBILITY_TIMEOUT_SECONDS,
    )?;
    range("DelaySeconds", a.delay_seconds, 0, MAX_DELAY_SECONDS)?;
    range(
        "MessageRetentionPeriod",
        a.message_retention_seconds,
        MIN_RETENTION_SECONDS,
        MAX_RETENTION_SECONDS,
    )?;
    range(
        "MaximumMessageSize",
        a.maximum_message_size,
        MIN_MESSAGE_SIZE_LIMIT,
        MAX_MESSAGE_SIZE_LIMIT,
    )?;
    range(
        "ReceiveMessageWaitTimeSeconds",
        a.receive_message_wait_seconds,
        0,
        MAX_WAIT_SECONDS,
    )?;
    if let Some(r) = &a.redrive_policy {
        range(
            "RedrivePolicy",
            r.max_receive_count,
            1,
            MAX_MAX_RECEIVE_COUNT,
        )
        .map_err(|_| {
            attr_err(
                "RedrivePolicy",
                format!(
                    "maxReceiveCount {} is outside 1..=1000",
                    r.max_receive_count
                ),
            )
        })?;
        if r.dead_letter_queue.is_empty() {
            return Err(attr_err("RedrivePolicy", "deadLetterTargetArn is empty"));
        }
    }
    if let Some(RedriveAllowPolicy::ByQueue(list)) = &a.redrive_allow_policy {
        if list.is_empty() || list.len() > MAX_REDRIVE_ALLOW_SOURCES {
            return Err(attr_err(
                "RedriveAllowPolicy",
                "byQueue needs 1 to 10 source queues",
            ));
        }
    }
    if !a.fifo {
        if a.content_based_deduplication {
            return Err(attr_err(
                "ContentBasedDeduplication",
                "only FIFO queues deduplicate",
            ));
        }
        if a.deduplication_scope != DeduplicationScope::Queue {
            return Err(attr_err(
                "DeduplicationScope",
                "only FIFO queues deduplicate",
            ));
        }
        if a.fifo_throughput_limit != FifoThroughputLimit::PerQueue {
            return Err(attr_err(
                "FifoThroughputLimit",
                "only FIFO queues have a throughput limit",
            ));
        }
    } else if a.fifo_throughput_limit == FifoThroughputLimit::PerMessageGroupId
        && a.deduplication_scope != DeduplicationScope::MessageGroup
    {
        return Err(attr_err(
            "FifoThroughputLimit",
            "perMessageGroupId requires DeduplicationScope messageGroup",
        ));
    }
    if let Some(m) = a.max_length {
        if m == 0 || m > MAX_MAX_LENGTH {
            return Err(attr_err(
                "MaxLength",
                format!("{m} is outside 1..={MAX_MAX_LENGTH}"),
            ));
        }
    }
    if let Some(t) = a.message_ttl_seconds {
        range("MessageTtl", t, 1, MAX_TTL_SECONDS)?;
    }
    if let Some(t) = a.idle_delete_seconds {
        range(
            "IdleDeleteSeconds",
            t,
            MIN_IDLE_DELETE_SECONDS,
            MAX_IDLE_DELETE_SECONDS,
        )?;
    }
    if let Some(QueueDurability::IntervalMs(ms)) = a.durability {
        range("Durability", ms, 1, MAX_DURABILITY_INTERVAL_MS)?;
    }
    if a.opaque.len() > MAX_OPAQUE_ATTRIBUTES {
        return Err(attr_err(
            "opaque",
            format!("at most {MAX_OPAQUE_ATTRIBUTES} opaque attributes"),
        ));
    }
    for (k, v) in &a.opaque {
        if v.len() > MAX_OPAQUE_VALUE_BYTES {
            return Err(attr_err(
                k,
                format!("value longer than {MAX_OPAQUE_VALUE_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

pub fn tags(tags: &BTreeMap<String, String>) -> Result<(), BrokerError> {
    if tags.len() > MAX_TAGS {
        return Err(param_err("Tags", format!("at most {MAX_TAGS} tags")));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > MAX_TAG_KEY_CHARS {
            return Err(param_err(
                "Tags",
                format!("tag key {k:?} must be 1 to 128 characters"),
            ));
        }
        if v.chars().count() > MAX_TAG_VALUE_CHARS {
            return Err(param_err(
                "Tags",
                format!("value of tag {k:?} is longer than 256 characters"),
            ));
        }
    }
    Ok(())
}

fn id_chars_ok(s: &str) -> bool {
    // SQS: alphanumeric and punctuation !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~
    !s.is_empty() && s.len() <= MAX_ID_CHARS && s.chars().all(|c| c.is_ascii_graphic())
}

pub fn id(parameter: &str, s: &str) -> Result<(), BrokerError> {
    if !id_chars_ok(s) {
        return Err(param_err(
            parameter,
            "must be 1 to 128 printable ASCII characters",
        ));
    }
    Ok(())
}

fn attribute_name(name: &str) -> Result<(), BrokerError> {
    let p = |r: &str| param_err("MessageAttributeName", format!("{name:?}: {r}"));
    if name.is_empty() || name.chars().count() > MAX_ATTRIBUTE_NAME_CHARS {
        return Err(p("must be 1 to 256 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return Err(p("may contain only A-Z a-z 0-9 _ - ."));
    }
    if name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        return Err(p(
            "must not start or end with a period or contain two in a row",
        ));
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("aws.") || lower.starts_with("amazon.") {
        return Err(p("names starting with AWS. or Amazon. are reserved"));
    }
    Ok(())
}

fn attribute_value(name: &str, v: &MessageAttributeValue) -> Result<(), BrokerError> {
    let p = |r: &str| param_err("MessageAttributeValue", format!("{name:?}: {r}"));
    if v.data_type.is_empty() || v.data_type.len() > MAX_ATTRIBUTE_TYPE_CHARS {
        return Err(p("data type must be 1 to 256 characters"));
    }
    let base = v.data_type.split('.').next().unwrap_or("");
    match base {
        "String" | "Number" => {
            let s = v
                .string_value
                .as_deref()
                .ok_or_else(|| p("String and Number attributes need a string value"))?;
            if v.binary_value.is_some() {
                return Err(p("String and Number attributes take no binary value"));
            }
            if base == "Number" {
                let ok = s.trim().parse::<f64>().is_ok_and(|f| f.is_finite()) && s.len() <= 40;
                if !ok {
                    return Err(p("not a valid number"));
                }
            }
        }
        "Binary" => {
            if v.binary_value.is_none() || v.string_value.is_some() {
                return Err(p("Binary attributes need a binary value only"));
            }
        }
        _ => {
            return Err(p(
                "data type must be String, Number or Binary, optionally with a .suffix",
            ))
        }
    }
    Ok(())
}

/// Size as SQS counts it: body plus each attribute's name, data type and value.
pub fn message_size(m: &SendMessage) -> usize {
    m.body.len()
        + m.attributes
            .iter()
            .map(|(k, v)| {
                k.len()
                    + v.data_type.len()
                    + v.string_value.as_ref().map_or(0, |s| s.len())
                    + v.binary_value.as_ref().map_or(0, |b| b.len())
            })
            .sum::<usize>()
}

/// Checks one message against its queue's attributes.
pub fn message(m: &SendMessage, a: &QueueAttributes) -> Result<(), BrokerError> {
    if m.body.is_empty() {
        return Err(param_err("MessageBody", "must not be empty"));
    }
    let size = message_size(m);
    if size > a.maximum_message_size as usize {
        return Err(BrokerError::MessageTooLarge {
            size,
            max: a.maximum_message_size as usize,
        });
    }
    if m.attributes.len() > MAX_MESSAGE_ATTRIBUTES {
        return Err(param_err(
            "MessageAttributes",
            format!("at most {MAX_MESSAGE_ATTRIBUTES} attributes"),
        ));
    }
    for (k, v) in &m.attributes {
        attribute_name(k)?;
        attribute_value(k, v)?;
    }
    for (k, v) in &m.system_attributes {
        if k != "AWSTraceHeader" {
            return Err(param_err(
                "MessageSystemAttributes",
                format!("unknown system attribute {k:?}"),
            ));
        }
        if v.data_type != "String" || v.string_value.is_none() {
            return Err(param_err(
                "MessageSystemAttributes",
                "AWSTraceHeader must be a String",
            ));
        }
        if v.string_value.as_ref().map_or(0, |s| s.len()) > 16 * 1024 {
            return Err(param_err(
                "MessageSystemAttributes",
                "AWSTraceHeader too long",
            ));
        }
    }
    if let Some(d) = m.delay_seconds {
        if a.fifo {
            return Err(param_err(
                "DelaySeconds",
                "FIFO queues take no per-message delay; set the queue's DelaySeconds",
            ));
        }
        if d > MAX_DELAY_SECONDS {
            return Err(param_err("DelaySeconds", format!("{d} is outside 0..=900")));
        }
    }
    if let Some(t) = m.ttl_seconds {
        if t == 0 || t > MAX_TTL_SECONDS {
            return Err(param_err(
                "TimeToLive",
                format!("{t} is outside 1..={MAX_TTL_SECONDS}"),
            ));
        }
    }
    if let Some(p) = m.priority {
        if a.fifo {
            return Err(param_err(
                "Priority",
                "FIFO queues order by group; priorities apply to standard queues",
            ));
        }
        if p > MAX_PRIORITY {
            return Err(param_err("Priority", format!("{p} is outside 0..=9")));
        }
    }
    if let Some(s) = &m.sender_id {
        if s.len() > MAX_SENDER_ID_CHARS {
            return Err(param_err("SenderId", "too long"));
        }
    }
    if a.fifo {
        match &m.group_id {
            None => return Err(param_err("MessageGroupId", "required on FIFO queues")),
            Some(g) => id("MessageGroupId", g)?,
        }
        match &m.deduplication_id {
            Some(d) => id("MessageDeduplicationId", d)?,
            None if !a.content_based_deduplication => {
                return Err(param_err(
                    "MessageDeduplicationId",
                    "required unless the queue has ContentBasedDeduplication",
                ))
            }
            None => {}
        }
    } else {
        // SQS accepts a group id on standard queues (fair queues) and ignores it for ordering;
        // a deduplication id is refused.
        if let Some(g) = &m.group_id {
            id("MessageGroupId", g)?;
        }
        if m.deduplication_id.is_some() {
            return Err(param_err(
                "MessageDeduplicationId",
                "only FIFO queues deduplicate",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn names() {
        assert!(queue_name("orders", false).is_ok());
        assert!(queue_name("orders-1_x", false).is_ok());
        assert!(queue_name("orders.fifo", true).is_ok());
        assert!(queue_name("orders.fifo", false).is_err());
        assert!(queue_name("orders", true).is_err());
        assert!(queue_name("", false).is_err());
        assert!(queue_name(".fifo", true).is_err());
        assert!(queue_name("a b", false).is_err());
        assert!(queue_name(&"a".repeat(80), false).is_ok());
        assert!(queue_name(&"a".repeat(81), false).is_err());
    }

    #[test]
    fn attribute_ranges_name_the_attribute() {
        let check = |f: &dyn Fn(&mut QueueAttributes), name: &str| {
            let mut a = QueueAttributes::default();
            f(&mut a);
            match attributes(&a) {
                Err(BrokerError::InvalidAttributeValue { attribute, .. }) => {
                    assert_eq!(attribute, name)
                }
                other => panic!("{name}: {other:?}"),
            }
        };
        check(
            &|a| a.visibility_timeout_seconds = 43_201,
            "VisibilityTimeout",
        );
        check(&|a| a.delay_seconds = 901, "DelaySeconds");
        check(
            &|a| a.message_retention_seconds = 59,
            "MessageRetentionPeriod",
        );
        check(
            &|a| a.message_retention_seconds = 1_209_601,
            "MessageRetentionPeriod",
        );
        check(&|a| a.maximum_message_size = 1023, "MaximumMessageSize");
        check(
            &|a| a.maximum_message_size = 1_048_577,
            "MaximumMessageSize",
        );
        check(
            &|a| a.receive_message_wait_seconds = 21,
            "ReceiveMessageWaitTimeSeconds",
        );
        check(
            &|a| a.content_based_deduplication = true,
            "ContentBasedDeduplication",
        );
        check(&|a| a.max_length = Some(0), "MaxLength");
        check(&|a| a.message_ttl_seconds = Some(0), "MessageTtl");
        check(
            &|a| {
                a.redrive_policy = Some(crate::types::RedrivePolicy {
                    dead_letter_queue: "d".into(),
                    max_receive_count: 0,
                })
            },
            "RedrivePolicy",
        );
        assert!(attributes(&QueueAttributes::default()).is_ok());
    }

    #[test]
    fn message_checks() {
        let a = QueueAttributes {
            maximum_message_size: 1024,
            ..Default::default()
        };
        let m = SendMessage {
            body: Bytes::from(vec![b'x'; 1024]),
            ..Default::default()
        };
        assert!(message(&m, &a).is_ok());
        let mut big = m.clone();
        big.attributes.insert(
            "k".into(),
            MessageAttributeValue {
                data_type: "String".into(),
                string_value: Some("v".into()),
                binary_value: None,
            },
        );
        assert_eq!(
            message(&big, &a),
            Err(BrokerError::MessageTooLarge {
                size: 1024 + 1 + 6 + 1,
                max: 1024
            })
        );
        let empty = SendMessage::default();
        assert!(matches!(
            message(&empty, &a),
            Err(BrokerError::InvalidParameter { .. })
        ));
        let mut bad_num = SendMessage {
            body: Bytes::from_static(b"x"),
            ..Default::default()
        };
        bad_num.attributes.insert(
            "n".into(),
            MessageAttributeValue {
                data_type: "Number".into(),
                string_value: Some("abc".into()),
                binary_value: None,
            },
        );
        assert!(matches!(
            message(&bad_num, &a),
            Err(BrokerError::InvalidParameter { .. })
        ));
        let fifo = QueueAttributes {
            fifo: true,
            ..Default::default()
        };
        let no_group = SendMessage {
            body: Bytes::from_static(b"x"),
            ..Default::default()
        };
        assert!(
            matches!(message(&no_group, &fifo), Err(BrokerError::InvalidParameter { ref parameter, .. }) if parameter == "MessageGroupId")
        );
        let delayed = SendMessage {
            body: Bytes::from_static(b"x"),
            group_id: Some("g".into()),
            deduplication_id: Some("d".into()),
            delay_seconds: Some(1),
            ..Default::default()
        };
        assert!(
            matches!(message(&delayed, &fifo), Err(BrokerError::InvalidParameter { ref parameter, .. }) if parameter == "DelaySeconds")
        );
    }
}
