//! CreateQueue, DeleteQueue, GetQueueUrl, ListQueues, PurgeQueue.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use ferry_broker::{BrokerError, QueueAttributes};
use serde_json::{json, Value};

use super::{attributes, Ctx, Input};
use crate::aws::errors::{AwsError, ErrorKind};

/// SQS allows one PurgeQueue per queue every 60 seconds.
pub const PURGE_WINDOW: Duration = Duration::from_secs(60);
/// ListQueues and ListDeadLetterSourceQueues page sizes.
pub const MAX_LIST_RESULTS: i64 = 1000;

/// Creates a queue, or returns the URL of an existing one whose attributes equal the given ones
/// (only the attributes given are compared, as SQS does).
pub fn create(ctx: &Ctx, i: &Input) -> Result<Value, AwsError> {
    let name = i.req_str("QueueName")?;
    let given = i.str_map("Attributes")?;
    let tags: BTreeMap<String, String> = i.str_map("tags")?.into_iter().collect();
    let fifo_requested = given
        .iter()
        .any(|(k, v)| k == "FifoQueue" && v.eq_ignore_ascii_case("true"));
    if name.ends_with(".fifo") != fifo_requested || name.is_empty() || name.len() > 80 {
        let stem = name.strip_suffix(".fifo").unwrap_or(name);
        let chars_ok = !stem.is_empty()
            && stem
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if fifo_requested || name.ends_with(".fifo") {
            return Err(AwsError::invalid_parameter(
                "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length.",
            ));
        }
        if !chars_ok || name.len() > 80 {
            return Err(AwsError::invalid_parameter(
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
            ));
        }
    }
    let build = |base: QueueAttributes| -> Result<QueueAttributes, AwsError> {
        let mut a = base;
        a.fifo = fifo_requested || a.fifo;
        // FifoQueue first, so FIFO-only attributes are known.
        for (k, v) in given
            .iter()
            .filter(|(k, _)| k == "FifoQueue")
            .chain(given.iter().filter(|(k, _)| k != "FifoQueue"))
        {
            if attributes::READ_ONLY.contains(&k.as_str()) || k == "All" {
                return Err(AwsError::unknown_attribute(k));
            }
            attributes::apply(ctx, &mut a, k, v, true)?;
        }
        Ok(a)
    };
    match ctx.broker.get_queue(name) {
        Ok(existing) => {
            let wanted = build(existing.attributes.clone())?;
            if wanted != existing.attributes {
                return Err(AwsError::new(
                    ErrorKind::QueueNameExists,
                    "A queue already exists with the same name and a different value for attribute(s).",
                ));
            }
            Ok(json!({ "QueueUrl": ctx.queue_url(name) }))
        }
        Err(BrokerError::QueueNotFound(_)) => {
            if ctx.door.deleted_recently(name) {
                let delay = ctx.door.settings().queue_name_reuse_delay_seconds;
                return Err(AwsError::new(
                    ErrorKind::QueueDeletedRecently,
                    format!("You must wait {delay} seconds after deleting a queue before you can create another with the same name."),
                ));
            }
            let attrs = build(QueueAttributes::default())?;
            match ctx.broker.create_queue(name, attrs, tags) {
                Ok(_) => Ok(json!({ "QueueUrl": ctx.queue_url(name) })),
                Err(BrokerError::QueueAlreadyExists(_)) => Err(AwsError::new(
                    ErrorKind::QueueNameExists,
                    "A queue already exists with the same name and a different value for attribute(s).",
                )),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

pub fn delete(ctx: &Ctx, i: &Input) -> Result<Value, AwsError> {
    let name = ctx.queue(i)?;
    ctx.broker.delete_queue(&name)?;
    ctx.door.forget_purge(&name);
    ctx.door.note_deleted(&name);
    Ok(json!({}))
}

pub fn get_url(ctx: &Ctx, i: &Input) -> Result<Value, AwsError> {
    let name = i.req_str("QueueName")?;
    if let Some(owner) = i.str("QueueOwnerAWSAccountId") {
        if owner != ctx.account() {
            return Err(AwsError::no_queue());
        }
    }
    ctx.broker.get_queue(name)?;
    Ok(json!({ "QueueUrl": ctx.queue_url(name) }))
}

/// A page of `names` after the position a NextToken encodes, and the next token.
pub fn page(i: &Input, names: Vec<String>) -> Result<(Vec<String>, Option<String>), AwsError> {
    let max = match i.int("MaxResults")? {
        None => None,
        Some(m) if (1..=MAX_LIST_RESULTS).contains(&m) => Some(m as usize),
        Some(m) => {
            return Err(AwsError::invalid_value(
                "MaxResults",
                m,
                "MaxResults must be an integer between 1 and 1000.",
            ))
        }
    };
    let after = match i.str("NextToken") {
        None | Some("") => None,
        Some(t) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| AwsError::invalid_parameter("Invalid NextToken value."))?,
        ),
    };
    let rest: Vec<String> = names
        .into_iter()
        .filter(|n| after.as_ref().is_none_or(|a| n > a))
        .collect();
    match max {
        Some(m) if rest.len() > m => {
            let page: Vec<String> = rest.into_iter().take(m).collect();
            let token = page
                .last()
                .map(|l| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(l));
            Ok((page, token))
        }
        Some(_) => Ok((rest, None)),
        None => Ok((
            rest.into_iter().take(MAX_LIST_RESULTS as usize).collect(),
            None,
        )),
    }
}

pub fn list(ctx: &Ctx, i: &Input) -> Result<Value, AwsError> {
    let names = ctx.broker.list_queues(i.str("QueueNamePrefix"));
    let (page, token) = page(i, names)?;
    let urls: Vec<Value> = page
        .iter()
        .map(|n| Value::String(ctx.queue_url(n)))
        .collect();
    Ok(super::object(vec![
        (
            "QueueUrls",
            (!urls.is_empty()).then_some(Value::Array(urls)),
        ),
        ("NextToken", token.map(Value::String)),
    ]))
}

pub async fn purge(ctx: &Ctx, i: &Input<'_>) -> Result<Value, AwsError> {
    let name = ctx.queue(i)?;
    ctx.broker.get_queue(&name)?;
    if !ctx.door.try_purge(&name, PURGE_WINDOW) {
        return Err(AwsError::new(
            ErrorKind::PurgeQueueInProgress,
            format!("Only one PurgeQueue operation on {name} is allowed every 60 seconds."),
        ));
    }
    ctx.broker.purge(&name).await?;
    Ok(json!({}))
}
