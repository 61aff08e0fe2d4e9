//! TagResource, UntagResource, ListTagsForResource (topics only).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use ferry_broker::topic::Topics;

use super::{Ctx, Params, SnsError, X};

fn topic_of(ctx: &Ctx, p: &Params) -> Result<String, SnsError> {
    let arn = p.required("ResourceArn")?;
    let name = Topics::topic_from_arn(arn)
        .ok_or_else(|| SnsError::invalid("Invalid parameter: ResourceArn"))?;
    ctx.topics.get_topic(name).map_err(|_| {
        SnsError::new(
            "ResourceNotFound",
            StatusCode::NOT_FOUND,
            "Resource does not exist",
        )
    })?;
    Ok(name.to_string())
}

pub fn tag(ctx: &Ctx, p: &Params) -> Result<Vec<X>, SnsError> {
    let name = topic_of(ctx, p)?;
    let tags: BTreeMap<String, String> = p
        .members("Tags")
        .into_iter()
        .filter_map(|m| {
            Some((
                m.get("Key")?.to_string(),
                m.get("Value").unwrap_or("").to_string(),
            ))
        })
        .collect();
    if tags.is_empty() {
        return Err(SnsError::invalid("Invalid parameter: Tags"));
    }
    ctx.topics.tag_topic(&name, tags)?;
    Ok(vec![])
}

pub fn untag(ctx: &Ctx, p: &Params) -> Result<Vec<X>, SnsError> {
    let name = topic_of(ctx, p)?;
    let keys: Vec<String> = p
        .members("TagKeys")
        .into_iter()
        .filter_map(|m| m.value.clone())
        .collect();
    ctx.topics.untag_topic(&name, &keys)?;
    Ok(vec![])
}

pub fn list(ctx: &Ctx, p: &Params) -> Result<Vec<X>, SnsError> {
    let name = topic_of(ctx, p)?;
    let info = ctx.topics.get_topic(&name)?;
    Ok(vec![X::N(
        "Tags",
        info.tags
            .into_iter()
            .map(|(k, v)| X::N("member", vec![X::T("Key", k), X::T("Value", v)]))
            .collect(),
    )])
}
