//! `ferry topic create|list|describe|delete|subscribe|subscriptions|unsubscribe|publish` over
//! `/v1/topics`.
//!
//! ```text
//! ferry topic create orders
//! ferry topic subscribe orders --queue paid --filter '{"status": ["paid"]}'
//! ferry topic subscribe orders --stream order-events
//! ferry topic subscribe orders --endpoint http://127.0.0.1:8080/hook
//! ferry topic publish orders 'hello' -a status=paid
//! ```

use clap::{Args, Subcommand};
use ferry_server::http::topics::{SubscriptionListResponse, TopicListResponse, TopicWire};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::client::{encode_segment, ApiClient, CliError};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic (idempotent).
    Create(CreateArgs),
    /// List topics.
    List,
    /// Show a topic's attributes and delivery counters.
    Describe { name: String },
    /// Delete a topic and its subscriptions.
    Delete { name: String },
    /// Subscribe a queue (--queue), a stream (--stream) or an HTTP endpoint (--endpoint).
    Subscribe(SubscribeArgs),
    /// List a topic's subscriptions.
    Subscriptions { name: String },
    /// Remove a subscription by id.
    Unsubscribe { name: String, id: String },
    /// Publish a message to every matching subscription.
    Publish(PublishArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Topic name: 1-256 of [A-Za-z0-9_-] (FIFO topics end in .fifo).
    pub name: String,
    /// A FIFO topic (the name must end in .fifo).
    #[arg(long)]
    pub fifo: bool,
    /// FIFO: deduplicate by a hash of the message when no deduplication id is given.
    #[arg(long)]
    pub content_based_deduplication: bool,
}

#[derive(Debug, Args)]
pub struct SubscribeArgs {
    pub name: String,
    /// Deliver to this queue.
    #[arg(
        long,
        conflicts_with_all = ["endpoint", "stream"],
        required_unless_present_any = ["endpoint", "stream"]
    )]
    pub queue: Option<String>,
    /// Append each message as a record to this stream (it must exist).
    #[arg(long, conflicts_with = "endpoint")]
    pub stream: Option<String>,
    /// Deliver by HTTP POST to this URL (it must confirm the subscription first).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// SNS filter policy (JSON), e.g. '{"status": ["paid"]}'.
    #[arg(long)]
    pub filter: Option<String>,
    /// Match the filter against the message body (JSON) instead of its attributes.
    #[arg(long)]
    pub filter_body: bool,
    /// Deliver the message as published instead of the SNS JSON envelope.
    #[arg(long)]
    pub raw: bool,
    /// Queue for notifications that cannot be delivered.
    #[arg(long, value_name = "QUEUE")]
    pub dead_letter_queue: Option<String>,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    pub name: String,
    pub message: String,
    #[arg(long)]
    pub subject: Option<String>,
    /// A String attribute (repeatable); NAME:Number=5 for a number.
    #[arg(long = "attribute", short = 'a', value_name = "NAME=VALUE")]
    pub attributes: Vec<String>,
    /// FIFO topics.
    #[arg(long)]
    pub group_id: Option<String>,
    #[arg(long)]
    pub deduplication_id: Option<String>,
}

pub fn run(client: &ApiClient, command: TopicCommand, json_output: bool) -> Result<(), CliError> {
    match command {
        TopicCommand::Create(a) => {
            let body = json!({"name": a.name, "fifo": a.fifo, "content_based_deduplication": a.content_based_deduplication});
            let value = client.call(Method::POST, "/v1/topics", Some(&body))?;
            done(json_output, &value, || {
                format!(
                    "created topic {} ({})",
                    a.name,
                    value["arn"].as_str().unwrap_or("")
                )
            })
        }
        TopicCommand::List => {
            let value = client.call::<()>(Method::GET, "/v1/topics", None)?;
            if json_output {
                output::json(&value);
                return Ok(());
            }
            let list: TopicListResponse = decode(value)?;
            output::table(
                &["NAME"],
                &list.topics.into_iter().map(|t| vec![t]).collect::<Vec<_>>(),
            );
            Ok(())
        }
        TopicCommand::Describe { name } => {
            let value = client.call::<()>(Method::GET, &path(&name, ""), None)?;
            if json_output {
                output::json(&value);
                return Ok(());
            }
            let t: TopicWire = decode(value)?;
            output::pairs(&[
                ("name".into(), t.name.clone()),
                ("arn".into(), t.arn.clone()),
                ("fifo".into(), t.fifo.to_string()),
                (
                    "subscriptions confirmed".into(),
                    t.subscriptions_confirmed.to_string(),
                ),
                (
                    "subscriptions pending".into(),
                    t.subscriptions_pending.to_string(),
                ),
                ("published".into(), t.published.to_string()),
            ]);
            let rows: Vec<Vec<String>> = t
                .subscriptions
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        s.delivered.to_string(),
                        s.filtered_out.to_string(),
                        s.failed.to_string(),
                        s.dead_lettered.to_string(),
                    ]
                })
                .collect();
            if !rows.is_empty() {
                println!();
                output::table(
                    &[
                        "SUBSCRIPTION",
                        "DELIVERED",
                        "FILTERED OUT",
                        "FAILED",
                        "DEAD-LETTERED",
                    ],
                    &rows,
                );
            }
            Ok(())
        }
        TopicCommand::Delete { name } => {
            client.call::<()>(Method::DELETE, &path(&name, ""), None)?;
            done(json_output, &json!({"deleted": name}), || {
                format!("deleted topic {name}")
            })
        }
        TopicCommand::Subscribe(a) => subscribe(client, a, json_output),
        TopicCommand::Subscriptions { name } => {
            let value = client.call::<()>(Method::GET, &path(&name, "/subscriptions"), None)?;
            if json_output {
                output::json(&value);
                return Ok(());
            }
            let list: SubscriptionListResponse = decode(value)?;
            let rows: Vec<Vec<String>> = list
                .subscriptions
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        s.protocol.clone(),
                        s.queue.clone().unwrap_or_else(|| s.endpoint.clone()),
                        if s.confirmed { "confirmed" } else { "pending" }.to_string(),
                        s.filter_policy
                            .as_ref()
                            .map(Value::to_string)
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            output::table(&["ID", "PROTOCOL", "TARGET", "STATE", "FILTER"], &rows);
            Ok(())
        }
        TopicCommand::Unsubscribe { name, id } => {
            client.call::<()>(
                Method::DELETE,
                &path(&name, &format!("/subscriptions/{}", encode_segment(&id))),
                None,
            )?;
            done(json_output, &json!({"unsubscribed": id}), || {
                format!("removed subscription {id}")
            })
        }
        TopicCommand::Publish(a) => publish(client, a, json_output),
    }
}

fn path(name: &str, rest: &str) -> String {
    format!("/v1/topics/{}{rest}", encode_segment(name))
}

fn decode<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, CliError> {
    serde_json::from_value(value)
        .map_err(|e| CliError::Other(format!("unexpected answer from the server: {e}")))
}

fn done(json_output: bool, value: &Value, text: impl FnOnce() -> String) -> Result<(), CliError> {
    if json_output {
        output::json(value);
    } else {
        println!("{}", text());
    }
    Ok(())
}

fn subscribe(client: &ApiClient, a: SubscribeArgs, json_output: bool) -> Result<(), CliError> {
    let mut body = Map::new();
    match (&a.queue, &a.stream, &a.endpoint) {
        (Some(q), _, _) => {
            body.insert("queue".into(), json!(q));
        }
        (None, Some(s), _) => {
            body.insert("stream".into(), json!(s));
        }
        (None, None, Some(e)) => {
            let protocol = if e.starts_with("https://") {
                "https"
            } else {
                "http"
            };
            body.insert("protocol".into(), json!(protocol));
            body.insert("endpoint".into(), json!(e));
        }
        (None, None, None) => {
            return Err(CliError::Usage(
                "give --queue, --stream or --endpoint".into(),
            ))
        }
    }
    if let Some(f) = &a.filter {
        let policy: Value = serde_json::from_str(f)
            .map_err(|e| CliError::Usage(format!("--filter is not JSON: {e}")))?;
        body.insert("filter_policy".into(), policy);
    }
    if a.filter_body {
        body.insert("filter_policy_scope".into(), json!("MessageBody"));
    }
    if a.raw {
        body.insert("raw_message_delivery".into(), json!(true));
    }
    if let Some(d) = &a.dead_letter_queue {
        body.insert("dead_letter_queue".into(), json!(d));
    }
    let value = client.call(
        Method::POST,
        &path(&a.name, "/subscriptions"),
        Some(&Value::Object(body)),
    )?;
    done(json_output, &value, || {
        let state = if value["confirmed"].as_bool() == Some(true) {
            ""
        } else {
            " (pending confirmation by the endpoint)"
        };
        format!("subscribed {}{state}", value["id"].as_str().unwrap_or(""))
    })
}

fn publish(client: &ApiClient, a: PublishArgs, json_output: bool) -> Result<(), CliError> {
    let mut attributes = Map::new();
    for spec in &a.attributes {
        let (k, v) = spec
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--attribute {spec:?} is not NAME=VALUE")))?;
        let (name, data_type) = match k.split_once(':') {
            Some((n, t)) => (n, t),
            None => (k, "String"),
        };
        attributes.insert(name.to_string(), json!({"type": data_type, "value": v}));
    }
    let mut body = json!({"message": a.message, "attributes": attributes});
    for (key, v) in [
        ("subject", &a.subject),
        ("group_id", &a.group_id),
        ("deduplication_id", &a.deduplication_id),
    ] {
        if let Some(v) = v {
            body[key] = json!(v);
        }
    }
    let value = client.call(Method::POST, &path(&a.name, "/publish"), Some(&body))?;
    done(json_output, &value, || {
        format!("published {}", value["message_id"].as_str().unwrap_or(""))
    })
}
