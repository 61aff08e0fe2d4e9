//! AddPermission and RemovePermission. The queue's access policy is kept as the `Policy`
//! attribute (in the broker's opaque attributes); each permission is one statement whose `Sid`
//! is the label. The policy is enforced by `access.rs` when keys are configured.

use serde_json::{json, Value};

use super::{Ctx, Input};
use crate::aws::errors::AwsError;

/// Actions a permission may grant (SQS).
const ACTIONS: [&str; 9] = [
    "*",
    "SendMessage",
    "ReceiveMessage",
    "DeleteMessage",
    "ChangeMessageVisibility",
    "GetQueueAttributes",
    "GetQueueUrl",
    "ListDeadLetterSourceQueues",
    "PurgeQueue",
];

fn policy_of(ctx: &Ctx, name: &str) -> Result<Value, AwsError> {
    let info = ctx.broker.get_queue(name)?;
    Ok(
        match info
            .attributes
            .opaque
            .get("Policy")
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
        {
            Some(v) if v.is_object() => v,
            _ => json!({
                "Version": "2012-10-17",
                "Id": format!("{}/SQSDefaultPolicy", ctx.queue_arn(name)),
                "Statement": []
            }),
        },
    )
}

fn store(ctx: &Ctx, name: &str, policy: Option<Value>) -> Result<(), AwsError> {
    let text = policy.map(|p| p.to_string());
    ctx.broker
        .update_queue_attributes(name, move |a| match text {
            Some(t) => {
                a.opaque.insert("Policy".into(), t);
            }
            None => {
                a.opaque.remove("Policy");
            }
        })?;
    Ok(())
}

fn statements(policy: &mut Value) -> &mut Vec<Value> {
    if !policy.get("Statement").is_some_and(Value::is_array) {
        policy["Statement"] = json!([]);
    }
    match policy.get_mut("Statement") {
        Some(Value::Array(a)) => a,
        _ => unreachable!("Statement was just made an array"),
    }
}

pub fn add(ctx: &Ctx, i: &Input) -> Result<Value, AwsError> {
    let name = ctx.queue(i)?;
    let label = i.req_str("Label")?;
    if label.is_empty()
        || label.len() > 80
        || !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(AwsError::invalid_value(
            "Label",
            label,
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length.",
        ));
    }
    let accounts = i.str_list("AWSAccountIds")?;
    if accounts.is_empty() {
        return Err(AwsError::missing("AWSAccountIds"));
    }
    for a in &accounts {
        if !crate::config::is_account_id(a) {
            return Err(AwsError::invalid_value(
                "AWSAccountIds",
                a,
                "An AWS account id is 12 digits.",
            ));
        }
    }
    let actions = i.str_list("Actions")?;
    if actions.is_empty() {
        return Err(AwsError::missing("Actions"));
    }
    for a in &actions {
        if !ACTIONS.contains(&a.as_str()) {
            return Err(AwsError::invalid_value(
                "ActionName.1",
                a,
                "Only the queue owner is allowed to invoke this action.",
            ));
        }
    }
    let mut policy = policy_of(ctx, &name)?;
    let arn = ctx.queue_arn(&name);
    let st = statements(&mut policy);
    if st
        .iter()
        .any(|s| s.get("Sid").and_then(Value::as_str) == Some(label))
    {
        return Err(AwsError::invalid_value("Label", label, "Already exists."));
    }
    let principals: Vec<String> = accounts
        .iter()
        .map(|a| format!("arn:aws:iam::{a}:root"))
        .collect();
    let actions: Vec<String> = actions.iter().map(|a| format!("SQS:{a}")).collect();
    st.push(json!({
        "Sid": label,
        "Effect": "Allow",
        "Principal": {"AWS": if principals.len() == 1 { json!(principals[0]) } else { json!(principals) }},
        "Action": if actions.len() == 1 { json!(actions[0]) } else { json!(actions) },
        "Resource": arn,
    }));
    store(ctx, &name, Some(policy))?;
    Ok(json!({}))
}

pub fn remove(ctx: &Ctx, i: &Input) -> Result<Value, AwsError> {
    let name = ctx.queue(i)?;
    let label = i.req_str("Label")?;
    let mut policy = policy_of(ctx, &name)?;
    let st = statements(&mut policy);
    let before = st.len();
    st.retain(|s| s.get("Sid").and_then(Value::as_str) != Some(label));
    if st.len() == before {
        return Err(AwsError::invalid_value(
            "Label",
            label,
            "can't find label on existing policy.",
        ));
    }
    let empty = st.is_empty();
    store(ctx, &name, if empty { None } else { Some(policy) })?;
    Ok(json!({}))
}
