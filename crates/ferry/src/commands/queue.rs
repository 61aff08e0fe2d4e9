//! `ferry queue create|list|describe|delete|purge`.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use ferry_server::http::queues::{PurgeResponse, QueueNames, QueueResponse};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::client::{ApiClient, CliError};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Create a queue (idempotent when the attributes are equal).
    Create(CreateArgs),
    /// List queues with their message counts.
    List {
        /// Only queues whose name starts with this.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Show a queue's attributes, tags and stats.
    Describe { name: String },
    /// Delete a queue and its messages.
    Delete { name: String },
    /// Delete every message of a queue.
    Purge { name: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Queue name: letters, digits, `-`, `_`; FIFO queues end in `.fifo`.
    pub name: String,
    /// Seconds a received message stays invisible (default 30).
    #[arg(long, value_name = "SECONDS")]
    pub visibility_timeout: Option<u32>,
    /// Seconds before a new message becomes visible (default 0).
    #[arg(long, value_name = "SECONDS")]
    pub delay: Option<u32>,
    /// Seconds a message is kept (default 345600, 4 days).
    #[arg(long, value_name = "SECONDS")]
    pub retention: Option<u32>,
    /// FIFO queue (the name must end in `.fifo`).
    #[arg(long)]
    pub fifo: bool,
    /// Dead-letter queue for messages received too often.
    #[arg(long, value_name = "QUEUE", requires = "max_receive_count")]
    pub dead_letter_queue: Option<String>,
    /// Receives after which a message moves to the dead-letter queue.
    #[arg(long, value_name = "N", requires = "dead_letter_queue")]
    pub max_receive_count: Option<u32>,
    /// Tag the queue (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// Any attributes as a JSON object (see docs/http-api.md); flags above win.
    #[arg(long, value_name = "JSON")]
    pub attributes: Option<String>,
}

pub fn run(client: &ApiClient, command: QueueCommand, json_output: bool) -> Result<(), CliError> {
    match command {
        QueueCommand::Create(args) => create(client, args, json_output),
        QueueCommand::List { prefix } => list(client, prefix, json_output),
        QueueCommand::Describe { name } => describe(client, &name, json_output),
        QueueCommand::Delete { name } => {
            client.call::<()>(Method::DELETE, &ApiClient::queue_path(&name, ""), None)?;
            if json_output {
                output::json(&json!({"deleted": name}));
            } else {
                println!("deleted queue {name}");
            }
            Ok(())
        }
        QueueCommand::Purge { name } => {
            let value =
                client.call::<()>(Method::POST, &ApiClient::queue_path(&name, "/purge"), None)?;
            if json_output {
                output::json(&value);
            } else {
                let purged: PurgeResponse = serde_json::from_value(value)
                    .map_err(|e| CliError::Other(format!("unexpected answer: {e}")))?;
                println!("purged {} messages from {name}", purged.purged);
            }
            Ok(())
        }
    }
}

fn create(client: &ApiClient, args: CreateArgs, json_output: bool) -> Result<(), CliError> {
    let mut attributes: Map<String, Value> = match &args.attributes {
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            _ => return Err(CliError::Usage("--attributes must be a JSON object".into())),
        },
        None => Map::new(),
    };
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            attributes.insert(key.to_string(), value);
        }
    };
    set(
        "visibility_timeout_seconds",
        args.visibility_timeout.map(Value::from),
    );
    set("delay_seconds", args.delay.map(Value::from));
    set("message_retention_seconds", args.retention.map(Value::from));
    set("fifo", args.fifo.then_some(Value::Bool(true)));
    if let (Some(dlq), Some(count)) = (&args.dead_letter_queue, args.max_receive_count) {
        set(
            "redrive_policy",
            Some(json!({"dead_letter_queue": dlq, "max_receive_count": count})),
        );
    }
    let mut tags = BTreeMap::new();
    for tag in &args.tags {
        let (k, v) = tag
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--tag {tag:?} is not KEY=VALUE")))?;
        tags.insert(k.to_string(), v.to_string());
    }
    let body = json!({"name": args.name, "attributes": attributes, "tags": tags});
    let value = client.call(Method::POST, "/v1/queues", Some(&body))?;
    if json_output {
        output::json(&value);
    } else {
        println!("queue {} ready", args.name);
    }
    Ok(())
}

fn list(client: &ApiClient, prefix: Option<String>, json_output: bool) -> Result<(), CliError> {
    let path = match &prefix {
        Some(p) => format!("/v1/queues?prefix={}", crate::client::encode_segment(p)),
        None => "/v1/queues".to_string(),
    };
    let value = client.call::<()>(Method::GET, &path, None)?;
    if json_output {
        output::json(&value);
        return Ok(());
    }
    let names: QueueNames = serde_json::from_value(value)
        .map_err(|e| CliError::Other(format!("unexpected answer: {e}")))?;
    let mut rows = Vec::new();
    for name in names.queues {
        // A queue deleted between the list and the describe is skipped.
        match client.call_as::<(), QueueResponse>(
            Method::GET,
            &ApiClient::queue_path(&name, ""),
            None,
        ) {
            Ok(q) => rows.push(vec![
                q.name,
                q.stats.visible.to_string(),
                q.stats.in_flight.to_string(),
                q.stats.delayed.to_string(),
                if q.attributes.fifo {
                    "fifo"
                } else {
                    "standard"
                }
                .to_string(),
            ]),
            Err(CliError::Api { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
    }
    output::table(&["NAME", "VISIBLE", "IN_FLIGHT", "DELAYED", "TYPE"], &rows);
    Ok(())
}

fn describe(client: &ApiClient, name: &str, json_output: bool) -> Result<(), CliError> {
    let value = client.call::<()>(Method::GET, &ApiClient::queue_path(name, ""), None)?;
    if json_output {
        output::json(&value);
        return Ok(());
    }
    let mut rows = vec![(
        "name".to_string(),
        value["name"].as_str().unwrap_or(name).to_string(),
    )];
    let mut flatten = |section: &str| {
        if let Some(map) = value[section].as_object() {
            for (k, v) in map {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => "-".to_string(),
                    other => other.to_string(),
                };
                rows.push((format!("{section}.{k}"), text));
            }
        }
    };
    flatten("stats");
    flatten("attributes");
    flatten("tags");
    output::pairs(&rows);
    Ok(())
}
