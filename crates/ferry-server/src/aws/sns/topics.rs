//! CreateTopic, DeleteTopic, ListTopics, GetTopicAttributes, SetTopicAttributes.

use std::collections::BTreeMap;

use ferry_broker::topic::{TopicAttributes, TopicInfo};

use super::{attribute_map, page, Ctx, Params, SnsError, X};

/// Attributes stored and reported without interpretation.
fn is_opaque(name: &str) -> bool {
    matches!(
        name,
        "KmsMasterKeyId"
            | "SignatureVersion"
            | "TracingConfig"
            | "ArchivePolicy"
            | "FifoThroughputScope"
            | "DataProtectionPolicy"
    ) || name.ends_with("FeedbackRoleArn")
        || name.ends_with("FeedbackSampleRate")
}

fn bool_attr(name: &str, v: &str) -> Result<bool, SnsError> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(SnsError::invalid(format!(
            "Invalid parameter: Attributes Reason: {name} must be true or false"
        ))),
    }
}

/// Applies one attribute to `a`. `creating` allows FifoTopic.
pub fn apply(
    a: &mut TopicAttributes,
    name: &str,
    value: &str,
    creating: bool,
) -> Result<(), SnsError> {
    match name {
        "DisplayName" => a.display_name = value.to_string(),
        "Policy" => {
            if !value.is_empty() {
                crate::aws::policy::Policy::parse(value).map_err(|reason| {
                    SnsError::invalid(format!("Invalid parameter: Policy Error: {reason}"))
                })?;
            }
            a.policy = (!value.is_empty()).then(|| value.to_string());
        }
        "DeliveryPolicy" => a.delivery_policy = (!value.is_empty()).then(|| value.to_string()),
        "ContentBasedDeduplication" => a.content_based_deduplication = bool_attr(name, value)?,
        "FifoTopic" if creating => a.fifo = bool_attr(name, value)?,
        "FifoTopic" => {
            return Err(SnsError::invalid(
                "Invalid parameter: AttributeName Reason: FifoTopic cannot be changed",
            ))
        }
        n if is_opaque(n) => {
            a.opaque.insert(n.to_string(), value.to_string());
        }
        other => {
            return Err(SnsError::invalid(format!(
                "Invalid parameter: AttributeName Reason: unknown attribute {other}"
            )))
        }
    }
    Ok(())
}

pub fn create(ctx: &Ctx, p: &Params) -> Result<Vec<X>, SnsError> {
    let name = p.required("Name")?;
    let mut a = TopicAttributes::default();
    let attrs = p.entries("Attributes");
    for (k, v) in &attrs {
        apply(&mut a, k, v, true)?;
    }
    if !attrs.contains_key("FifoTopic") && name.ends_with(".fifo") {
        return Err(SnsError::invalid("Invalid parameter: Topic Name Reason: Topic names ending in .fifo must have the FifoTopic attribute set to true"));
    }
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
    let info = ctx.topics.create_topic(name, a, tags)?;
    Ok(vec![X::T("TopicArn", info.arn)])
}

pub fn delete(ctx: &Ctx, p: &Params) -> Result<Vec<X>, SnsError> {
    let name = ctx.topic_name(p, "TopicArn")?;
    ctx.topics.delete_topic(&name)?;
    Ok(vec![])
}

pub fn list(ctx: &Ctx, p: &Params) -> Result<Vec<X>, SnsError> {
    let names = ctx.topics.list_topics();
    let (slice, next) = page(&names, p, 100)?;
    let mut out = vec![X::N(
        "Topics",
        slice
            .iter()
            .map(|n| X::N("member", vec![X::T("TopicArn", ctx.topics.topic_arn(n))]))
            .collect(),
    )];
    if let Some(n) = next {
        out.push(X::T("NextToken", n));
    }
    Ok(out)
}

fn default_policy(ctx: &Ctx, arn: &str) -> String {
    serde_json::json!({
        "Version": "2008-10-17",
        "Id": "__default_policy_ID",
        "Statement": [{
            "Sid": "__default_statement_ID",
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": ["SNS:GetTopicAttributes", "SNS:SetTopicAttributes", "SNS:AddPermission", "SNS:RemovePermission", "SNS:DeleteTopic", "SNS:Subscribe", "SNS:ListSubscriptionsByTopic", "SNS:Publish"],
            "Resource": arn,
            "Condition": {"StringEquals": {"AWS:SourceOwner": ctx.account()}}
        }]
    })
    .to_string()
}

const DEFAULT_DELIVERY_POLICY: &str = r#"{"http":{"defaultHealthyRetryPolicy":{"minDelayTarget":20,"maxDelayTarget":20,"numRetries":3,"numMaxDelayRetries":0,"numNoDelayRetries":0,"numMinDelayRetries":0,"backoffFunction":"linear"},"disableSubscriptionOverrides":false}}"#;

pub fn attributes_of(ctx: &Ctx, info: &TopicInfo) -> BTreeMap<String, String> {
    let a = &info.attributes;
    let mut m = BTreeMap::new();
    m.insert("TopicArn".into(), info.arn.clone());
    m.insert("Owner".into(), ctx.account().to_string());
    m.insert(
        "Policy".into(),
        a.policy
            .clone()
            .unwrap_or_else(|| default_policy(ctx, &info.arn)),
    );
    m.insert("DisplayName".into(), a.display_name.clone());
    m.insert(
        "SubscriptionsConfirmed".into(),
        info.subscriptions_confirmed.to_string(),
    );
    m.insert(
        "SubscriptionsPending".into(),
        info.subscriptions_pending.to_string(),
    );
    m.insert(
        "SubscriptionsDeleted".into(),
        info.subscriptions_deleted.to_string(),
    );
    if let Some(d) = &a.delivery_policy {
        m.insert("DeliveryPolicy".into(), d.clone());
    }
    m.insert(
        "EffectiveDeliveryPolicy".into(),
        a.delivery_policy
            .clone()
            .unwrap_or_else(|| DEFAULT_DELIVERY_POLICY.to_string()),
    );
    if a.fifo {
        m.insert("FifoTopic".into(), "true".into());
        m.insert(
            "ContentBasedDeduplication".into(),
            a.content_based_deduplication.to_string(),
        );
    }
    for (k, v) in &a.opaque {
        m.insert(k.clone(), v.clone());
    }
    m
}

pub fn get_attributes(ctx: &Ctx, p: &Params) -> Result<Vec<X>, SnsError> {
    let name = ctx.topic_name(p, "TopicArn")?;
    let info = ctx.topics.get_topic(&name)?;
    Ok(vec![attribute_map(
        "Attributes",
        &attributes_of(ctx, &info),
    )])
}

pub fn set_attributes(ctx: &Ctx, p: &Params) -> Result<Vec<X>, SnsError> {
    let name = ctx.topic_name(p, "TopicArn")?;
    let attr = p.required("AttributeName")?.to_string();
    let value = p.get("AttributeValue").unwrap_or("").to_string();
    let mut failure = None;
    let r = ctx.topics.update_topic_attributes(&name, |a| {
        if let Err(e) = apply(a, &attr, &value, false) {
            failure = Some(e);
        }
        Ok(())
    });
    if let Some(e) = failure {
        return Err(e);
    }
    r?;
    Ok(vec![])
}
