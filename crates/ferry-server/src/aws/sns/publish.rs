//! Publish and PublishBatch.

use std::collections::{BTreeMap, HashSet};

use axum::http::StatusCode;
use base64::Engine;
use ferry_broker::topic::{PublishRequest, Topics, MAX_BATCH, MAX_MESSAGE_BYTES};
use ferry_broker::MessageAttributeValue;

use super::{Ctx, Params, SnsError, X};

/// `MessageAttributes.entry.N.Name` / `.Value.DataType` / `.Value.StringValue` / `.Value.BinaryValue`.
fn message_attributes(p: &Params) -> Result<BTreeMap<String, MessageAttributeValue>, SnsError> {
    let mut out = BTreeMap::new();
    let Some(e) = p.node("MessageAttributes").and_then(|n| n.node("entry")) else {
        return Ok(out);
    };
    for item in e.items() {
        let name = item
            .get("Name")
            .ok_or_else(|| SnsError::invalid("Invalid parameter: MessageAttributes Name"))?;
        let v = item.node("Value").ok_or_else(|| {
            SnsError::invalid(format!(
                "Invalid parameter: MessageAttributes {name} has no value"
            ))
        })?;
        let data_type = v.get("DataType").unwrap_or("").to_string();
        let binary_value = match v.get("BinaryValue") {
            Some(b) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|_| {
                        SnsError::new(
                            "ParameterValueInvalid",
                            StatusCode::BAD_REQUEST,
                            format!("The message attribute '{name}' has an invalid binary value"),
                        )
                    })?
                    .into(),
            ),
            None => None,
        };
        out.insert(
            name.to_string(),
            MessageAttributeValue {
                data_type,
                string_value: v.get("StringValue").map(str::to_string),
                binary_value,
            },
        );
    }
    Ok(out)
}

fn request_of(p: &Params) -> Result<PublishRequest, SnsError> {
    let structure = match p.get("MessageStructure") {
        None | Some("") => false,
        Some("json") => true,
        Some(other) => {
            return Err(SnsError::invalid(format!(
                "Invalid parameter: MessageStructure Reason: {other} is not json"
            )))
        }
    };
    Ok(PublishRequest {
        message: p
            .get("Message")
            .ok_or_else(|| SnsError::missing("Message"))?
            .to_string(),
        subject: p.get("Subject").map(str::to_string),
        attributes: message_attributes(p)?,
        message_structure_json: structure,
        group_id: p.get("MessageGroupId").map(str::to_string),
        deduplication_id: p.get("MessageDeduplicationId").map(str::to_string),
    })
}

pub async fn publish(ctx: &Ctx, p: &Params) -> Result<Vec<X>, SnsError> {
    if p.get("PhoneNumber").is_some() {
        return Err(super::unsupported::error("Publish to a PhoneNumber (SMS)"));
    }
    let arn = p
        .get("TopicArn")
        .or_else(|| p.get("TargetArn"))
        .ok_or_else(|| SnsError::missing("TopicArn or TargetArn"))?;
    let topic = Topics::topic_from_arn(arn)
        .ok_or_else(|| SnsError::invalid("Invalid parameter: TopicArn"))?;
    let out = ctx.topics.publish(topic, request_of(p)?).await?;
    let mut x = vec![X::T("MessageId", out.message_id)];
    if let Some(s) = out.sequence_number {
        x.push(X::T("SequenceNumber", s));
    }
    Ok(x)
}

pub async fn publish_batch(ctx: &Ctx, p: &Params) -> Result<Vec<X>, SnsError> {
    let topic = ctx.topic_name(p, "TopicArn")?;
    ctx.topics.get_topic(&topic)?;
    let entries = p.members("PublishBatchRequestEntries");
    if entries.is_empty() {
        return Err(SnsError::new(
            "EmptyBatchRequest",
            StatusCode::BAD_REQUEST,
            "The batch request doesn't contain any entries",
        ));
    }
    if entries.len() > MAX_BATCH {
        return Err(SnsError::new(
            "TooManyEntriesInBatchRequest",
            StatusCode::BAD_REQUEST,
            format!("The batch request contains more entries than permissible ({MAX_BATCH})"),
        ));
    }
    let mut ids = HashSet::new();
    let mut total = 0;
    for e in &entries {
        let id = e.get("Id").unwrap_or("");
        if id.is_empty()
            || id.len() > 80
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(SnsError::new(
                "InvalidBatchEntryId",
                StatusCode::BAD_REQUEST,
                "The Id of a batch entry in a batch request doesn't abide by the specification",
            ));
        }
        if !ids.insert(id) {
            return Err(SnsError::new(
                "BatchEntryIdsNotDistinct",
                StatusCode::BAD_REQUEST,
                "Two or more batch entries in the request have the same Id",
            ));
        }
        total += e.get("Message").map_or(0, str::len);
    }
    if total > MAX_MESSAGE_BYTES {
        return Err(SnsError::new("BatchRequestTooLong", StatusCode::BAD_REQUEST, format!("The length of all the messages put together is more than the limit ({MAX_MESSAGE_BYTES} bytes)")));
    }
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    // Entries that parse go to the topic together (in order: FIFO topics keep the batch's
    // order within each group); the others keep their error, in place.
    // Each entry's id and parsing error, in place (`None`: it parsed and is published).
    let mut valid = Vec::with_capacity(entries.len());
    let parsed: Vec<(String, Option<SnsError>)> = entries
        .into_iter()
        .map(|e| {
            let id = e.get("Id").unwrap_or("").to_string();
            (id, request_of(e).map(|request| valid.push(request)).err())
        })
        .collect();
    let mut published = ctx.topics.publish_batch(&topic, valid).await?.into_iter();
    for (id, refusal) in parsed {
        let result = match refusal {
            None => published
                .next()
                .expect("one outcome per published entry")
                .map_err(SnsError::from),
            Some(err) => Err(err),
        };
        match result {
            Ok(o) => {
                let mut m = vec![X::T("Id", id), X::T("MessageId", o.message_id)];
                if let Some(s) = o.sequence_number {
                    m.push(X::T("SequenceNumber", s));
                }
                ok.push(X::N("member", m));
            }
            Err(err) => failed.push(X::N(
                "member",
                vec![
                    X::T("Id", id),
                    X::T("Code", err.code.to_string()),
                    X::T("Message", err.message.clone()),
                    X::T("SenderFault", (!err.status.is_server_error()).to_string()),
                ],
            )),
        }
    }
    Ok(vec![X::N("Successful", ok), X::N("Failed", failed)])
}
