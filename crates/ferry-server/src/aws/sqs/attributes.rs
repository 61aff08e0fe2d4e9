//! GetQueueAttributes, SetQueueAttributes, and the mapping between SQS queue attributes and
//! the broker's [`QueueAttributes`].
//!
//! Attributes the broker does not interpret (`Policy`, `KmsMasterKeyId`,
//! `KmsDataKeyReusePeriodSeconds`, `SqsManagedSseEnabled`) are stored in its `opaque` map and
//! reported back unchanged.

use ferry_broker::{
    DeduplicationScope, FifoThroughputLimit, QueueAttributes, QueueInfo, RedriveAllowPolicy,
    RedrivePolicy,
};
use serde_json::{json, Map, Value};

use super::{Ctx, Input};
use crate::aws::errors::AwsError;

/// Attributes a client may set (at creation or later).
pub const SETTABLE: [&str; 16] = [
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "Policy",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "All",
];

/// Attributes only reported.
pub const READ_ONLY: [&str; 6] = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
];

const FIFO_ONLY: [&str; 4] = [
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
];

fn int_attr(name: &str, value: &str, lo: u32, hi: u32) -> Result<u32, AwsError> {
    match value.trim().parse::<u32>() {
        Ok(v) if v >= lo && v <= hi => Ok(v),
        _ => Err(AwsError::attribute_value(name)),
    }
}

fn bool_attr(name: &str, value: &str) -> Result<bool, AwsError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(AwsError::attribute_value(name)),
    }
}

/// Applies one attribute to `a`. `fifo` is the queue's kind (FIFO-only attributes are unknown
/// on standard queues, as in SQS).
pub fn apply(
    ctx: &Ctx,
    a: &mut QueueAttributes,
    name: &str,
    value: &str,
    creating: bool,
) -> Result<(), AwsError> {
    if FIFO_ONLY.contains(&name) && !a.fifo && !(name == "FifoQueue" && creating) {
        return Err(AwsError::unknown_attribute(name));
    }
    match name {
        "DelaySeconds" => a.delay_seconds = int_attr(name, value, 0, 900)?,
        "MaximumMessageSize" => a.maximum_message_size = int_attr(name, value, 1024, 1_048_576)?,
        "MessageRetentionPeriod" => {
            a.message_retention_seconds = int_attr(name, value, 60, 1_209_600)?
        }
        "ReceiveMessageWaitTimeSeconds" => {
            a.receive_message_wait_seconds = int_attr(name, value, 0, 20)?
        }
        "VisibilityTimeout" => a.visibility_timeout_seconds = int_attr(name, value, 0, 43_200)?,
        "RedrivePolicy" => a.redrive_policy = parse_redrive(ctx, value)?,
        "RedriveAllowPolicy" => a.redrive_allow_policy = parse_redrive_allow(ctx, value)?,
        "FifoQueue" => {
            if !creating {
                return Err(AwsError::attribute_value_reason(
                    name,
                    "FifoQueue cannot be changed after creation.",
                ));
            }
            a.fifo = bool_attr(name, value)?;
        }
        "ContentBasedDeduplication" => a.content_based_deduplication = bool_attr(name, value)?,
        "DeduplicationScope" => {
            a.deduplication_scope = match value {
                "messageGroup" => DeduplicationScope::MessageGroup,
                "queue" => DeduplicationScope::Queue,
                _ => return Err(AwsError::attribute_value(name)),
            }
        }
        "FifoThroughputLimit" => {
            a.fifo_throughput_limit = match value {
                "perMessageGroupId" => FifoThroughputLimit::PerMessageGroupId,
                "perQueue" => FifoThroughputLimit::PerQueue,
                _ => return Err(AwsError::attribute_value(name)),
            }
        }
        "Policy" => {
            if value.is_empty() {
                a.opaque.remove(name);
            } else {
                if let Err(reason) = crate::aws::policy::Policy::parse(value) {
                    return Err(AwsError::attribute_value_reason(name, &reason));
                }
                a.opaque.insert(name.into(), value.into());
            }
        }
        "KmsMasterKeyId" => {
            if value.is_empty() {
                a.opaque.remove(name);
            } else {
                a.opaque.insert(name.into(), value.into());
                a.opaque
                    .insert("SqsManagedSseEnabled".into(), "false".into());
            }
        }
        "KmsDataKeyReusePeriodSeconds" => {
            let v = int_attr(name, value, 60, 86_400)?;
            a.opaque.insert(name.into(), v.to_string());
        }
        "SqsManagedSseEnabled" => {
            let v = bool_attr(name, value)?;
            if v && a.opaque.contains_key("KmsMasterKeyId") {
                return Err(AwsError::attribute_value_reason(
                    name,
                    "SSE-SQS and SSE-KMS cannot both be enabled.",
                ));
            }
            a.opaque.insert(name.into(), v.to_string());
        }
        _ => return Err(AwsError::unknown_attribute(name)),
    }
    Ok(())
}

/// `{"deadLetterTargetArn": "arn:aws:sqs:...:dlq", "maxReceiveCount": "5"}`; "" removes it.
fn parse_redrive(ctx: &Ctx, value: &str) -> Result<Option<RedrivePolicy>, AwsError> {
    if value.is_empty() {
        return Ok(None);
    }
    let bad = |reason: &str| AwsError::invalid_value("RedrivePolicy", value, reason);
    let v: Value =
        serde_json::from_str(value).map_err(|_| bad("Redrive policy is not a valid JSON map."))?;
    let arn = v
        .get("deadLetterTargetArn")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad("Redrive policy does not contain mandatory attribute: deadLetterTargetArn.")
        })?;
    let count = match v.get("maxReceiveCount") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse::<u64>().ok(),
        _ => {
            return Err(bad(
                "Redrive policy does not contain mandatory attribute: maxReceiveCount.",
            ))
        }
    };
    let count = count.filter(|c| (1..=1000).contains(c)).ok_or_else(|| {
        bad("Invalid value for maxReceiveCount: must be an integer from 1 to 1000.")
    })?;
    let dlq = ctx
        .name_from_arn(arn)
        .ok_or_else(|| bad("Dead letter target does not exist."))?;
    if ctx.broker.get_queue(&dlq).is_err() {
        return Err(bad("Dead letter target does not exist."));
    }
    Ok(Some(RedrivePolicy {
        dead_letter_queue: dlq,
        max_receive_count: count as u32,
    }))
}

/// `{"redrivePermission": "allowAll|denyAll|byQueue", "sourceQueueArns": [...]}`; "" removes it.
fn parse_redrive_allow(ctx: &Ctx, value: &str) -> Result<Option<RedriveAllowPolicy>, AwsError> {
    if value.is_empty() {
        return Ok(None);
    }
    let bad = |reason: &str| AwsError::invalid_value("RedriveAllowPolicy", value, reason);
    let v: Value = serde_json::from_str(value)
        .map_err(|_| bad("Redrive allow policy is not a valid JSON map."))?;
    let sources = || -> Result<Vec<String>, AwsError> {
        let arns = v
            .get("sourceQueueArns")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("sourceQueueArns is required when redrivePermission is byQueue."))?;
        if arns.is_empty() || arns.len() > 10 {
            return Err(bad("sourceQueueArns must list 1 to 10 queues."));
        }
        arns.iter()
            .map(|a| {
                a.as_str()
                    .and_then(|a| ctx.name_from_arn(a))
                    .ok_or_else(|| bad("sourceQueueArns must be queue ARNs."))
            })
            .collect()
    };
    match v.get("redrivePermission").and_then(Value::as_str) {
        Some("allowAll") => Ok(Some(RedriveAllowPolicy::AllowAll)),
        Some("denyAll") => Ok(Some(RedriveAllowPolicy::DenyAll)),
        Some("byQueue") => Ok(Some(RedriveAllowPolicy::ByQueue(sources()?))),
        _ => Err(bad(
            "redrivePermission must be allowAll, denyAll or byQueue.",
        )),
    }
}

/// Every attribute name the queue reports under `All`.
fn all_names(info: &QueueInfo) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = vec![
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
        "CreatedTimestamp",
        "DelaySeconds",
        "LastModifiedTimestamp",
        "MaximumMessageSize",
        "MessageRetentionPeriod",
        "QueueArn",
        "ReceiveMessageWaitTimeSeconds",
        "VisibilityTimeout",
        "SqsManagedSseEnabled",
        "RedrivePolicy",
        "RedriveAllowPolicy",
        "Policy",
        "KmsMasterKeyId",
        "KmsDataKeyReusePeriodSeconds",
    ];
    if info.attributes.fifo {
        v.extend(FIFO_ONLY);
    }
    v
}

/// The value of one attribute, or None when the queue does not have it.
fn value_of(ctx: &Ctx, info: &QueueInfo, name: &str) -> Option<String> {
    let a = &info.attributes;
    let s = &info.stats;
    let kms = a.opaque.contains_key("KmsMasterKeyId");
    Some(match name {
        "ApproximateNumberOfMessages" => s.visible.to_string(),
        "ApproximateNumberOfMessagesNotVisible" => s.in_flight.to_string(),
        "ApproximateNumberOfMessagesDelayed" => s.delayed.to_string(),
        "CreatedTimestamp" => (info.created_timestamp_ms / 1000).to_string(),
        "LastModifiedTimestamp" => (info.last_modified_timestamp_ms / 1000).to_string(),
        "QueueArn" => ctx.queue_arn(&info.name),
        "DelaySeconds" => a.delay_seconds.to_string(),
        "MaximumMessageSize" => a.maximum_message_size.to_string(),
        "MessageRetentionPeriod" => a.message_retention_seconds.to_string(),
        "ReceiveMessageWaitTimeSeconds" => a.receive_message_wait_seconds.to_string(),
        "VisibilityTimeout" => a.visibility_timeout_seconds.to_string(),
        "RedrivePolicy" => {
            let r = a.redrive_policy.as_ref()?;
            json!({"deadLetterTargetArn": ctx.queue_arn(&r.dead_letter_queue), "maxReceiveCount": r.max_receive_count}).to_string()
        }
        "RedriveAllowPolicy" => match a.redrive_allow_policy.as_ref()? {
            RedriveAllowPolicy::AllowAll => json!({"redrivePermission": "allowAll"}).to_string(),
            RedriveAllowPolicy::DenyAll => json!({"redrivePermission": "denyAll"}).to_string(),
            RedriveAllowPolicy::ByQueue(q) => json!({
                "redrivePermission": "byQueue",
                "sourceQueueArns": q.iter().map(|n| ctx.queue_arn(n)).collect::<Vec<_>>()
            })
            .to_string(),
        },
        "Policy" | "KmsMasterKeyId" => a.opaque.get(name)?.clone(),
        "KmsDataKeyReusePeriodSeconds" if kms => a
            .opaque
            .get(name)
            .cloned()
            .unwrap_or_else(|| "300".to_string()),
        "KmsDataKeyReusePeriodSeconds" => return None,
        "SqsManagedSseEnabled" => a
            .opaque
            .get(name)
            .cloned()
            .unwrap_or_else(|| (!kms).to_string()),
        "FifoQueue" if a.fifo => "true".to_string(),
        "ContentBasedDeduplication" if a.fifo => a.content_based_deduplication.to_string(),
        "DeduplicationScope" if a.fifo => match a.deduplication_scope {
            DeduplicationScope::Queue => "queue",
            DeduplicationScope::MessageGroup => "messageGroup",
        }
        .to_string(),
        "FifoThroughputLimit" if a.fifo => match a.fifo_throughput_limit {
            FifoThroughputLimit::PerQueue => "perQueue",
            FifoThroughputLimit::PerMessageGroupId => "perMessageGroupId",
        }
        .to_string(),
        _ => return None,
    })
}

pub fn get(ctx: &Ctx, i: &Input) -> Result<Value, AwsError> {
    let name = ctx.queue(i)?;
    let info = ctx.broker.get_queue(&name)?;
    let requested = i.str_list("AttributeNames")?;
    for n in &requested {
        if !SETTABLE.contains(&n.as_str()) && !READ_ONLY.contains(&n.as_str()) {
            return Err(AwsError::unknown_attribute(n));
        }
    }
    let names: Vec<String> = if requested.iter().any(|n| n == "All") {
        all_names(&info).into_iter().map(str::to_string).collect()
    } else {
        requested
    };
    let mut m = Map::new();
    for n in names {
        if let Some(v) = value_of(ctx, &info, &n) {
            m.insert(n, Value::String(v));
        }
    }
    if m.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({ "Attributes": m }))
}

pub fn set(ctx: &Ctx, i: &Input) -> Result<Value, AwsError> {
    let name = ctx.queue(i)?;
    let info = ctx.broker.get_queue(&name)?;
    let attrs = i.str_map("Attributes")?;
    if i.get("Attributes").is_none() {
        return Err(AwsError::missing("Attributes"));
    }
    let mut a = info.attributes.clone();
    for (k, v) in &attrs {
        if READ_ONLY.contains(&k.as_str()) || k == "All" {
            return Err(AwsError::unknown_attribute(k));
        }
        apply(ctx, &mut a, k, v, false)?;
    }
    let before = info.attributes;
    ctx.broker
        .update_queue_attributes(&name, move |cur| merge(cur, &before, &a))?;
    Ok(json!({}))
}

/// Applies to `cur` only the fields that changed from `before` to `after`, so a concurrent
/// SetQueueAttributes of other attributes is not overwritten with stale values.
fn merge(cur: &mut QueueAttributes, before: &QueueAttributes, after: &QueueAttributes) {
    macro_rules! field {
        ($($f:ident),*) => {$(
            if before.$f != after.$f {
                cur.$f = after.$f.clone();
            }
        )*};
    }
    field!(
        visibility_timeout_seconds,
        delay_seconds,
        message_retention_seconds,
        maximum_message_size,
        receive_message_wait_seconds,
        redrive_policy,
        redrive_allow_policy,
        content_based_deduplication,
        deduplication_scope,
        fifo_throughput_limit
    );
    let keys: std::collections::BTreeSet<&String> =
        before.opaque.keys().chain(after.opaque.keys()).collect();
    for k in keys {
        match (before.opaque.get(k), after.opaque.get(k)) {
            (b, a) if b == a => {}
            (_, Some(a)) => {
                cur.opaque.insert(k.clone(), a.clone());
            }
            (_, None) => {
                cur.opaque.remove(k);
            }
        }
    }
}
