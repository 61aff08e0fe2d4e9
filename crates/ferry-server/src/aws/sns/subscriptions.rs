//! Subscribe, ConfirmSubscription, Unsubscribe, ListSubscriptions(ByTopic),
//! Get/SetSubscriptionAttributes.

use std::collections::BTreeMap;

use ferry_broker::topic::filter::FilterPolicyScope;
use ferry_broker::topic::{Subscription, SubscriptionAttributes, Topics};

use super::{attribute_map, page, Ctx, Params, SnsError, X};

/// Applies one subscription attribute.
fn apply(a: &mut SubscriptionAttributes, name: &str, value: &str) -> Result<(), SnsError> {
    match name {
        "RawMessageDelivery" => {
            a.raw_message_delivery = match value.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(SnsError::invalid("Invalid parameter: Attributes Reason: RawMessageDelivery: Invalid value [".to_string() + value + "]. Must be true or false.")),
            }
        }
        "FilterPolicy" => a.filter_policy = (!value.is_empty()).then(|| value.to_string()),
        "FilterPolicyScope" => {
            a.filter_policy_scope = FilterPolicyScope::parse(value)
                .ok_or_else(|| SnsError::invalid(format!("Invalid parameter: Attributes Reason: FilterPolicyScope: Invalid value [{value}]. Please use either MessageBody or MessageAttributes")))?
        }
        "RedrivePolicy" => a.redrive_policy = (!value.is_empty()).then(|| value.to_string()),
        "DeliveryPolicy" => a.delivery_policy = (!value.is_empty()).then(|| value.to_string()),
        "SubscriptionRoleArn" | "ReplayPolicy" => {
            a.opaque.insert(name.to_string(), value.to_string());
        }
        other => return Err(SnsError::invalid(format!("Invalid parameter: AttributeName Reason: unknown attribute {other}"))),
    }
    Ok(())
}

fn arn_of(ctx: &Ctx, s: &Subscription) -> String {
    ctx.topics.subscription_arn(&s.topic, &s.id)
}

pub fn subscribe(ctx: &Ctx, p: &Params) -> Result<Vec<X>, SnsError> {
    let topic = ctx.topic_name(p, "TopicArn")?;
    let protocol = p.required("Protocol")?.to_ascii_lowercase();
    let endpoint = p.get("Endpoint").unwrap_or("");
    if endpoint.is_empty() {
        return Err(SnsError::invalid("Invalid parameter: Endpoint"));
    }
    let mut a = SubscriptionAttributes::default();
    let attrs = p.entries("Attributes");
    // Scope first: FilterPolicy is validated against it.
    if let Some(s) = attrs.get("FilterPolicyScope") {
        apply(&mut a, "FilterPolicyScope", s)?;
    }
    for (k, v) in &attrs {
        if k != "FilterPolicyScope" {
            apply(&mut a, k, v)?;
        }
    }
    let s = ctx.topics.subscribe(&topic, &protocol, endpoint, a)?;
    let return_arn = p
        .get("ReturnSubscriptionArn")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let arn = if s.confirmed || return_arn {
        arn_of(ctx, &s)
    } else {
        "pending confirmation".to_string()
    };
    Ok(vec![X::T("SubscriptionArn", arn)])
}

pub fn confirm(ctx: &Ctx, p: &Params) -> Result<Vec<X>, SnsError> {
    let topic = ctx.topic_name(p, "TopicArn")?;
    let token = p.required("Token")?;
    let s = ctx.topics.confirm_subscription(&topic, token)?;
    Ok(vec![X::T("SubscriptionArn", arn_of(ctx, &s))])
}

fn sub_of(ctx: &Ctx, p: &Params) -> Result<Subscription, SnsError> {
    let arn = p.required("SubscriptionArn")?;
    let (topic, id) = Topics::subscription_from_arn(arn)
        .ok_or_else(|| SnsError::invalid("Invalid parameter: SubscriptionArn"))?;
    Ok(ctx.topics.get_subscription(topic, id)?)
}

pub fn unsubscribe(ctx: &Ctx, p: &Params) -> Result<Vec<X>, SnsError> {
    let s = sub_of(ctx, p)?;
    ctx.topics.unsubscribe(&s.topic, &s.id)?;
    Ok(vec![])
}

pub fn list(ctx: &Ctx, p: &Params, by_topic: bool) -> Result<Vec<X>, SnsError> {
    let subs = if by_topic {
        let topic = ctx.topic_name(p, "TopicArn")?;
        ctx.topics.list_subscriptions(Some(&topic))?
    } else {
        ctx.topics.list_subscriptions(None)?
    };
    let (slice, next) = page(&subs, p, 100)?;
    let members = slice
        .iter()
        .map(|s| {
            X::N(
                "member",
                vec![
                    X::T(
                        "SubscriptionArn",
                        if s.confirmed {
                            arn_of(ctx, s)
                        } else {
                            "PendingConfirmation".into()
                        },
                    ),
                    X::T("Owner", ctx.account().to_string()),
                    X::T("Protocol", s.protocol.as_str().to_string()),
                    X::T("Endpoint", s.endpoint.clone()),
                    X::T("TopicArn", ctx.topics.topic_arn(&s.topic)),
                ],
            )
        })
        .collect();
    let mut out = vec![X::N("Subscriptions", members)];
    if let Some(n) = next {
        out.push(X::T("NextToken", n));
    }
    Ok(out)
}

pub fn get_attributes(ctx: &Ctx, p: &Params) -> Result<Vec<X>, SnsError> {
    let s = sub_of(ctx, p)?;
    let a = &s.attributes;
    let mut m = BTreeMap::new();
    m.insert("SubscriptionArn".to_string(), arn_of(ctx, &s));
    m.insert("TopicArn".into(), ctx.topics.topic_arn(&s.topic));
    m.insert("Owner".into(), ctx.account().to_string());
    m.insert(
        "SubscriptionPrincipal".into(),
        format!("arn:aws:iam::{}:root", ctx.account()),
    );
    m.insert("Protocol".into(), s.protocol.as_str().to_string());
    m.insert("Endpoint".into(), s.endpoint.clone());
    m.insert(
        "ConfirmationWasAuthenticated".into(),
        (!s.protocol.is_http()).to_string(),
    );
    m.insert("PendingConfirmation".into(), (!s.confirmed).to_string());
    m.insert(
        "RawMessageDelivery".into(),
        a.raw_message_delivery.to_string(),
    );
    if let Some(f) = &a.filter_policy {
        m.insert("FilterPolicy".into(), f.clone());
        m.insert(
            "FilterPolicyScope".into(),
            a.filter_policy_scope.as_str().to_string(),
        );
    }
    if let Some(r) = &a.redrive_policy {
        m.insert("RedrivePolicy".into(), r.clone());
    }
    if let Some(d) = &a.delivery_policy {
        m.insert("DeliveryPolicy".into(), d.clone());
    }
    for (k, v) in &a.opaque {
        m.insert(k.clone(), v.clone());
    }
    Ok(vec![attribute_map("Attributes", &m)])
}

pub fn set_attributes(ctx: &Ctx, p: &Params) -> Result<Vec<X>, SnsError> {
    let s = sub_of(ctx, p)?;
    let name = p.required("AttributeName")?.to_string();
    let value = p.get("AttributeValue").unwrap_or("").to_string();
    let mut a = s.attributes.clone();
    apply(&mut a, &name, &value)?;
    ctx.topics
        .update_subscription(&s.topic, &s.id, |cur| *cur = a)?;
    Ok(vec![])
}
