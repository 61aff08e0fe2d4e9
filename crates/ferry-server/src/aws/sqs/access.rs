//! Who may do what to a queue: each action's permissions, checked against the queue's policy
//! before the action runs. Applies only when keys are configured (in open mode there are no
//! principals, and every loopback request acts as the owner).
//!
//! The rules are SQS's for a queue policy:
//! - a key of the door's own account owns every queue: it may do anything a `Deny` statement
//!   of the queue's policy does not forbid;
//! - a key of another account may use a queue only as far as an `Allow` statement grants (and
//!   no `Deny` forbids), and never for the owner-only actions (CreateQueue, DeleteQueue,
//!   ListQueues, SetQueueAttributes, AddPermission, RemovePermission, TagQueue, UntagQueue,
//!   ListQueueTags), to which cross-account permissions do not apply.

use serde_json::Value;

use super::{Ctx, Input};
use crate::aws::errors::{AwsError, ErrorKind};
use crate::aws::policy::{decide, Request};

/// Actions only the owning account may call.
const OWNER_ONLY: [&str; 9] = [
    "CreateQueue",
    "DeleteQueue",
    "ListQueues",
    "SetQueueAttributes",
    "AddPermission",
    "RemovePermission",
    "TagQueue",
    "UntagQueue",
    "ListQueueTags",
];

/// The permissions a message move task needs on its source queue, besides its own.
const MOVE_SOURCE: [&str; 3] = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
];

/// The permissions `action` needs, each with the queue it applies to. Queues the input does
/// not name, or that do not exist, are left out: the action itself then answers with SQS's
/// error for that.
fn needs(ctx: &Ctx, action: &str, input: &Value) -> Vec<(String, String)> {
    let i = Input(input);
    let by_url = || i.str("QueueUrl").and_then(|u| ctx.name_from_url(u).ok());
    let by_arn = |field: &str| i.str(field).and_then(|a| ctx.name_from_arn(a));
    let on = |queue: Option<String>, perms: &[&str]| -> Vec<(String, String)> {
        queue
            .map(|q| perms.iter().map(|p| (p.to_string(), q.clone())).collect())
            .unwrap_or_default()
    };
    let own = |name: &str| format!("sqs:{name}");
    match action {
        "SendMessage" | "SendMessageBatch" => on(by_url(), &["sqs:SendMessage"]),
        "DeleteMessage" | "DeleteMessageBatch" => on(by_url(), &["sqs:DeleteMessage"]),
        "ChangeMessageVisibility" | "ChangeMessageVisibilityBatch" => {
            on(by_url(), &["sqs:ChangeMessageVisibility"])
        }
        "GetQueueUrl" => {
            let queue = i.str("QueueName").map(str::to_string);
            on(queue, &["sqs:GetQueueUrl"])
        }
        "StartMessageMoveTask" | "ListMessageMoveTasks" => {
            let mut out = on(by_arn("SourceArn"), &[&own(action)]);
            out.extend(on(by_arn("SourceArn"), &MOVE_SOURCE));
            out.extend(on(by_arn("DestinationArn"), &["sqs:SendMessage"]));
            out
        }
        "CancelMessageMoveTask" => {
            let source = i
                .str("TaskHandle")
                .and_then(|h| ctx.broker.move_task_source(h));
            let mut out = on(source.clone(), &[&own(action)]);
            out.extend(on(source, &MOVE_SOURCE));
            out
        }
        "CreateQueue" => on(i.str("QueueName").map(str::to_string), &[&own(action)]),
        // Every other action names its queue by URL and needs its own permission.
        _ => on(by_url(), &[&own(action)]),
    }
}

/// Refuses the request when the caller may not call `action` with `input`.
pub fn authorize(ctx: &Ctx, action: &str, input: &Value) -> Result<(), AwsError> {
    let Some(principal) = &ctx.principal else {
        return Ok(());
    };
    let owner = principal.account == ctx.account();
    if !owner && OWNER_ONLY.contains(&action) {
        return Err(AwsError::new(
            ErrorKind::AccessDenied,
            format!(
                "{action} is reserved to the queues' owner, account {}; a principal of account {} may use only what a queue's policy grants it.",
                ctx.account(),
                principal.account
            ),
        ));
    }
    for (permission, queue) in needs(ctx, action, input) {
        let Ok(attributes) = ctx.broker.queue_attributes(&queue) else {
            continue; // the action answers that the queue does not exist
        };
        let policy = attributes
            .opaque
            .get("Policy")
            .and_then(|text| ctx.door.parsed_policy(&queue, text));
        let arn = ctx.queue_arn(&queue);
        let request = Request {
            principal,
            action: &permission,
            resource: &arn,
            source_ip: ctx.peer,
            now_secs: crate::aws::now_secs(),
            secure_transport: false,
        };
        if !decide(policy.as_deref(), &request).permits(owner) {
            return Err(denied(ctx, &queue));
        }
    }
    Ok(())
}

fn denied(ctx: &Ctx, queue: &str) -> AwsError {
    AwsError::new(
        ErrorKind::AccessDenied,
        format!("Access to the resource {} is denied.", ctx.queue_url(queue)),
    )
}
