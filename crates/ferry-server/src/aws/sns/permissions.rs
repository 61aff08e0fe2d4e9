//! AddPermission, RemovePermission: statements kept in the topic's Policy document, which
//! `access.rs` enforces when keys are configured.

use serde_json::{json, Value};

use super::{Ctx, Params, SnsError, X};

fn policy_of(ctx: &Ctx, topic: &str) -> Result<Value, SnsError> {
    let info = ctx.topics.get_topic(topic)?;
    let text = super::topics::attributes_of(ctx, &info)
        .remove("Policy")
        .unwrap_or_default();
    Ok(serde_json::from_str(&text)
        .unwrap_or_else(|_| json!({"Version": "2008-10-17", "Statement": []})))
}

fn save(ctx: &Ctx, topic: &str, policy: Value) -> Result<(), SnsError> {
    let text = policy.to_string();
    ctx.topics.update_topic_attributes(topic, |a| {
        a.policy = Some(text);
        Ok(())
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

pub fn add(ctx: &Ctx, p: &Params) -> Result<Vec<X>, SnsError> {
    let topic = ctx.topic_name(p, "TopicArn")?;
    let label = p.required("Label")?.to_string();
    let accounts: Vec<String> = p
        .members("AWSAccountId")
        .into_iter()
        .filter_map(|m| m.value.clone())
        .collect();
    let actions: Vec<String> = p
        .members("ActionName")
        .into_iter()
        .filter_map(|m| m.value.clone())
        .collect();
    if accounts.is_empty() || accounts.iter().any(|a| !crate::config::is_account_id(a)) {
        return Err(SnsError::invalid("Invalid parameter: AWSAccountId"));
    }
    if actions.is_empty()
        || actions
            .iter()
            .any(|a| a != "*" && !super::ACTIONS.contains(&a.as_str()))
    {
        return Err(SnsError::invalid("Invalid parameter: ActionName"));
    }
    let mut policy = policy_of(ctx, &topic)?;
    let st = statements(&mut policy);
    if st
        .iter()
        .any(|s| s.get("Sid").and_then(Value::as_str) == Some(label.as_str()))
    {
        return Err(SnsError::invalid(
            "Invalid parameter: Statement already exists",
        ));
    }
    let principals: Vec<String> = accounts
        .iter()
        .map(|a| format!("arn:aws:iam::{a}:root"))
        .collect();
    st.push(json!({
        "Sid": label,
        "Effect": "Allow",
        "Principal": {"AWS": principals},
        "Action": actions.iter().map(|a| format!("SNS:{a}")).collect::<Vec<_>>(),
        "Resource": ctx.topics.topic_arn(&topic),
    }));
    save(ctx, &topic, policy)?;
    Ok(vec![])
}

pub fn remove(ctx: &Ctx, p: &Params) -> Result<Vec<X>, SnsError> {
    let topic = ctx.topic_name(p, "TopicArn")?;
    let label = p.required("Label")?.to_string();
    let mut policy = policy_of(ctx, &topic)?;
    let st = statements(&mut policy);
    let before = st.len();
    st.retain(|s| s.get("Sid").and_then(Value::as_str) != Some(label.as_str()));
    if st.len() == before {
        return Err(SnsError::invalid(
            "Invalid parameter: Label Reason: can't find label",
        ));
    }
    save(ctx, &topic, policy)?;
    Ok(vec![])
}
