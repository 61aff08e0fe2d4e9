//! TagQueue, UntagQueue, ListQueueTags.

use serde_json::{json, Map, Value};

use super::{Ctx, Input};
use crate::aws::errors::AwsError;

pub fn tag(ctx: &Ctx, i: &Input) -> Result<Value, AwsError> {
    let name = ctx.queue(i)?;
    if i.get("Tags").is_none() {
        return Err(AwsError::missing("Tags"));
    }
    let tags = i.str_map("Tags")?;
    ctx.broker.tag_queue(&name, tags.into_iter().collect())?;
    Ok(json!({}))
}

pub fn untag(ctx: &Ctx, i: &Input) -> Result<Value, AwsError> {
    let name = ctx.queue(i)?;
    if i.get("TagKeys").is_none() {
        return Err(AwsError::missing("TagKeys"));
    }
    let keys = i.str_list("TagKeys")?;
    ctx.broker.untag_queue(&name, &keys)?;
    Ok(json!({}))
}

pub fn list(ctx: &Ctx, i: &Input) -> Result<Value, AwsError> {
    let name = ctx.queue(i)?;
    let info = ctx.broker.get_queue(&name)?;
    if info.tags.is_empty() {
        return Ok(json!({}));
    }
    let m: Map<String, Value> = info
        .tags
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    Ok(json!({ "Tags": m }))
}
