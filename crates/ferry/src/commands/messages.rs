//! `ferry send`, `ferry receive`, `ferry peek`.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ferry_server::http::limits::{MAX_BATCH_ENTRIES, MAX_WAIT_SECONDS};
use ferry_server::http::messages::{
    BatchResponse, BodyEncoding, MessageWire, MessagesResponse, SendBatchResponse, SendMessageWire,
};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::json;

use crate::client::{ApiClient, CliError};
use crate::output;

#[derive(Debug, Args)]
pub struct SendArgs {
    pub queue: String,
    /// The message body (UTF-8 text; base64 with --base64).
    #[arg(conflicts_with = "file")]
    pub body: Option<String>,
    /// Send every line of a JSON-lines file, each a message object such as
    /// {"body":"hi","attributes":{"k":{"type":"String","value":"v"}}}; `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// BODY is base64 of a binary body.
    #[arg(long)]
    pub base64: bool,
    /// FIFO message group.
    #[arg(long)]
    pub group_id: Option<String>,
    /// FIFO deduplication id.
    #[arg(long)]
    pub deduplication_id: Option<String>,
    /// Seconds before the message becomes visible.
    #[arg(long, value_name = "SECONDS")]
    pub delay: Option<u32>,
    /// 0..=9, higher first.
    #[arg(long)]
    pub priority: Option<u8>,
    /// Messages per request with --file (1..=100).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=MAX_BATCH_ENTRIES as i64))]
    pub batch: u16,
}

#[derive(Debug, Args)]
pub struct ReceiveArgs {
    pub queue: String,
    /// Most messages to receive (1..=100).
    #[arg(long, default_value_t = 1)]
    pub max: u32,
    /// Seconds to wait for a message (long polling, 0..=20).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=MAX_WAIT_SECONDS as i64))]
    pub wait: u32,
    /// Seconds the received messages stay invisible (default: the queue's).
    #[arg(long, value_name = "SECONDS")]
    pub visibility_timeout: Option<u32>,
    /// Delete the messages after printing them.
    #[arg(long)]
    pub delete: bool,
}

#[derive(Debug, Args)]
pub struct PeekArgs {
    pub queue: String,
    /// Most messages to show (1..=100).
    #[arg(long, default_value_t = 10)]
    pub max: usize,
}

pub fn send(client: &ApiClient, args: SendArgs, json_output: bool) -> Result<(), CliError> {
    let path = ApiClient::queue_path(&args.queue, "/messages");
    if let Some(file) = &args.file {
        return send_file(client, &path, file, args.batch as usize, json_output);
    }
    let Some(body) = args.body else {
        return Err(CliError::Usage(
            "give a message BODY or --file FILE (see `ferry send --help`)".into(),
        ));
    };
    let message = SendMessageWire {
        body,
        body_encoding: if args.base64 {
            BodyEncoding::Base64
        } else {
            BodyEncoding::Text
        },
        attributes: Default::default(),
        delay_seconds: args.delay,
        group_id: args.group_id,
        deduplication_id: args.deduplication_id,
        priority: args.priority,
        ttl_seconds: None,
    };
    let value = client.call(Method::POST, &path, Some(&message))?;
    if json_output {
        output::json(&value);
    } else {
        println!("{}", value["message_id"].as_str().unwrap_or("sent"));
    }
    Ok(())
}

fn read_messages(file: &PathBuf) -> Result<Vec<(usize, SendMessageWire)>, CliError> {
    let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(file)
            .map_err(|e| CliError::Usage(format!("cannot open {}: {e}", file.display())))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut messages = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line =
            line.map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        let message: SendMessageWire = serde_json::from_str(&line).map_err(|e| {
            CliError::Usage(format!(
                "{}:{}: expected a message object like {{\"body\":\"...\"}}: {e}",
                file.display(),
                i + 1
            ))
        })?;
        messages.push((i + 1, message));
    }
    Ok(messages)
}

fn send_file(
    client: &ApiClient,
    path: &str,
    file: &PathBuf,
    batch: usize,
    json_output: bool,
) -> Result<(), CliError> {
    let messages = read_messages(file)?;
    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(messages.len() as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} messages {per_sec} eta {eta}")
        {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let (mut sent, mut failed) = (0usize, 0usize);
    for chunk in messages.chunks(batch) {
        let body = json!({"messages": chunk.iter().map(|(_, m)| m).collect::<Vec<_>>()});
        let response: SendBatchResponse = client.call_as(Method::POST, path, Some(&body))?;
        for ((line, _), result) in chunk.iter().zip(&response.results) {
            if result.ok {
                sent += 1;
            } else {
                failed += 1;
                if let Some(err) = &result.error {
                    progress.suspend(|| {
                        eprintln!("line {line}: {}: {}", err.code.as_str(), err.message)
                    });
                }
            }
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    if json_output {
        output::json(&json!({"sent": sent, "failed": failed}));
    } else {
        println!("sent {sent} messages, {failed} failed");
    }
    if failed > 0 {
        return Err(CliError::Other(format!("{failed} messages were not sent")));
    }
    Ok(())
}

pub fn receive(client: &ApiClient, args: ReceiveArgs, json_output: bool) -> Result<(), CliError> {
    let mut body = json!({"max": args.max, "wait": args.wait});
    if let Some(v) = args.visibility_timeout {
        body["visibility_timeout"] = json!(v);
    }
    let timeout = Duration::from_secs(args.wait as u64 + 30);
    let value = client.call_with_timeout(
        Method::POST,
        &ApiClient::queue_path(&args.queue, "/receive"),
        Some(&body),
        timeout,
    )?;
    let response: MessagesResponse = serde_json::from_value(value.clone())
        .map_err(|e| CliError::Other(format!("unexpected answer: {e}")))?;
    if json_output {
        output::json(&value);
    } else {
        print_messages(&response.messages);
    }
    if args.delete && !response.messages.is_empty() {
        let handles: Vec<&str> = response
            .messages
            .iter()
            .filter_map(|m| m.receipt_handle.as_deref())
            .collect();
        let result: BatchResponse = client.call_as(
            Method::POST,
            &ApiClient::queue_path(&args.queue, "/messages/delete"),
            Some(&json!({"receipt_handles": handles})),
        )?;
        if result.failed > 0 {
            return Err(CliError::Other(format!(
                "{} of {} messages could not be deleted",
                result.failed,
                handles.len()
            )));
        }
        if !json_output {
            eprintln!("deleted {} messages", handles.len());
        }
    }
    Ok(())
}

pub fn peek(client: &ApiClient, args: PeekArgs, json_output: bool) -> Result<(), CliError> {
    let value = client.call::<()>(
        Method::GET,
        &ApiClient::queue_path(&args.queue, &format!("/messages?max={}", args.max)),
        None,
    )?;
    if json_output {
        output::json(&value);
        return Ok(());
    }
    let response: MessagesResponse = serde_json::from_value(value)
        .map_err(|e| CliError::Other(format!("unexpected answer: {e}")))?;
    print_messages(&response.messages);
    Ok(())
}

fn print_messages(messages: &[MessageWire]) {
    if messages.is_empty() {
        eprintln!("no messages");
        return;
    }
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            let body = match m.body_encoding {
                BodyEncoding::Text => m.body.clone(),
                BodyEncoding::Base64 => format!("base64:{}", m.body),
            };
            vec![m.message_id.clone(), m.receive_count.to_string(), body]
        })
        .collect();
    output::table(&["MESSAGE_ID", "RECEIVES", "BODY"], &rows);
}
