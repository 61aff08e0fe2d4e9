//! Who may do what to a topic: each action's permission, checked against the topic's policy
//! before the action runs. Applies only when keys are configured (open mode has no principals).
//!
//! As for queues (`sqs/access.rs`): keys of the door's own account own every topic and may do
//! what no `Deny` statement of its policy forbids; keys of another account may call the
//! topic actions an `Allow` statement grants them (GetTopicAttributes, SetTopicAttributes,
//! DeleteTopic, AddPermission, RemovePermission, Subscribe, ListSubscriptionsByTopic, Publish
//! and PublishBatch as `sns:Publish`) and nothing else: account-wide listings, topic creation,
//! tags and subscription-level actions stay the owner's. A topic without a `Policy` of its own
//! reports SNS's default policy, which grants only the owner, and grants nothing further here.

use axum::http::StatusCode;

use super::{Ctx, Params, SnsError};
use crate::aws::policy::{decide, Request};
use ferry_broker::topic::Topics;

/// Topic actions a policy may grant to another account, and the permission each needs.
fn grantable(action: &str) -> Option<&'static str> {
    Some(match action {
        "GetTopicAttributes" => "sns:GetTopicAttributes",
        "SetTopicAttributes" => "sns:SetTopicAttributes",
        "DeleteTopic" => "sns:DeleteTopic",
        "AddPermission" => "sns:AddPermission",
        "RemovePermission" => "sns:RemovePermission",
        "Subscribe" => "sns:Subscribe",
        "ListSubscriptionsByTopic" => "sns:ListSubscriptionsByTopic",
        "Publish" | "PublishBatch" => "sns:Publish",
        _ => return None,
    })
}

/// Refuses the request when the caller may not call `action`.
pub fn authorize(ctx: &Ctx, action: &str, p: &Params) -> Result<(), SnsError> {
    let Some(principal) = &ctx.principal else {
        return Ok(());
    };
    let owner = principal.account == ctx.account();
    let Some(permission) = grantable(action) else {
        if owner || action == "ConfirmSubscription" {
            return Ok(());
        }
        return Err(SnsError::new(
            "AuthorizationError",
            StatusCode::FORBIDDEN,
            format!(
                "User: {} is not authorized to perform: SNS:{action}: it is reserved to the topics' owner, account {}.",
                principal.arn(),
                ctx.account()
            ),
        ));
    };
    let arn = p.get("TopicArn").or_else(|| p.get("TargetArn"));
    let Some(topic) = arn.and_then(Topics::topic_from_arn) else {
        return Ok(()); // the action reports the missing or malformed ARN
    };
    if !ctx.topics.topic_exists(topic) {
        return Ok(()); // the action answers NotFound
    }
    let topic_arn = ctx.topics.topic_arn(topic);
    let policy = ctx
        .topics
        .topic_policy(topic)
        .and_then(|text| ctx.door.parsed_policy(&topic_arn, &text));
    let request = Request {
        principal,
        action: permission,
        resource: &topic_arn,
        source_ip: ctx.peer,
        now_secs: crate::aws::now_secs(),
        secure_transport: false,
    };
    if decide(policy.as_deref(), &request).permits(owner) {
        Ok(())
    } else {
        Err(SnsError::new(
            "AuthorizationError",
            StatusCode::FORBIDDEN,
            format!(
                "User: {} is not authorized to perform: SNS:{} on resource: {topic_arn}",
                principal.arn(),
                &permission[4..]
            ),
        ))
    }
}
