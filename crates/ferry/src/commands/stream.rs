//! `ferry stream create|list|describe|delete|produce|consume|tail` over `/v1/streams`.
//!
//! `consume` reads once (up to `--max` records per partition, long-polling up to `--wait`);
//! `tail` follows new records as Server-Sent Events until interrupted. Both start at the end
//! unless given `--from-beginning`, `--offset N` (with `--partition`) or `--since 10m`.

use std::io::{BufRead, BufReader};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use ferry_server::http::streams::{FetchResponse, RecordOut, StreamDescription, StreamList};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::client::{encode_segment, ApiClient, CliError};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// Create a stream.
    Create(CreateArgs),
    /// List streams with their partitions and sizes.
    List,
    /// Show a stream's partitions (offsets, sizes) and configuration.
    Describe { name: String },
    /// Delete a stream, its records and its committed offsets.
    Delete { name: String },
    /// Append a record, or one record per line of standard input.
    Produce(ProduceArgs),
    /// Read records once and exit.
    Consume(ConsumeArgs),
    /// Follow new records as they arrive (Ctrl-C stops).
    Tail(TailArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Stream name: 1-249 of [A-Za-z0-9._-].
    pub name: String,
    /// Number of partitions (default 1).
    #[arg(long, short = 'p', value_name = "N")]
    pub partitions: Option<u32>,
    /// A configuration key (repeatable): retention.ms, retention.bytes, cleanup.policy,
    /// message.timestamp.type, max.message.bytes, segment.bytes, durability, delete.retention.ms,
    /// direct.io.
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
    pub config: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    pub name: String,
    /// The value; without it every line of standard input is one record.
    pub value: Option<String>,
    /// Record key (for a single value).
    #[arg(long, short = 'k')]
    pub key: Option<String>,
    /// With standard input: split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Partition (default: by key hash, or round-robin without a key).
    #[arg(long, short = 'p')]
    pub partition: Option<u32>,
    /// A header (repeatable).
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
}

/// Where to start reading.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Only this partition (default: all).
    #[arg(long, short = 'p')]
    pub partition: Option<u32>,
    /// Start at the first offset still stored.
    #[arg(long, conflicts_with_all = ["offset", "since"])]
    pub from_beginning: bool,
    /// Start at this offset (needs --partition).
    #[arg(long, requires = "partition", conflicts_with = "since")]
    pub offset: Option<u64>,
    /// Start at the first record of this long ago: 30s, 10m, 2h, 1d.
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub name: String,
    #[command(flatten)]
    pub start: StartArgs,
    /// Most records to print per partition.
    #[arg(long, default_value_t = 100)]
    pub max: usize,
    /// Seconds to wait for a first record when there is none yet.
    #[arg(long, default_value_t = 1)]
    pub wait: u64,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    pub name: String,
    #[command(flatten)]
    pub start: StartArgs,
}

pub fn run(
    client: &ApiClient,
    server: &str,
    command: StreamCommand,
    json_output: bool,
) -> Result<(), CliError> {
    match command {
        StreamCommand::Create(args) => create(client, args, json_output),
        StreamCommand::List => list(client, json_output),
        StreamCommand::Describe { name } => describe(client, &name, json_output),
        StreamCommand::Delete { name } => {
            client.call::<()>(Method::DELETE, &path(&name, ""), None)?;
            if json_output {
                output::json(&json!({ "deleted": name }));
            } else {
                println!("deleted stream {name}");
            }
            Ok(())
        }
        StreamCommand::Produce(args) => produce(client, args, json_output),
        StreamCommand::Consume(args) => consume(client, args, json_output),
        StreamCommand::Tail(args) => tail(server, args, json_output),
    }
}

fn path(name: &str, rest: &str) -> String {
    format!("/v1/streams/{}{rest}", encode_segment(name))
}

fn key_value(s: &str, what: &str) -> Result<(String, String), CliError> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| CliError::Usage(format!("{what} {s:?} is not KEY=VALUE")))
}

/// `30s`, `10m`, `2h`, `1d` (or plain milliseconds) before now, in ms since the epoch.
pub fn since_ms(spec: &str) -> Result<i64, CliError> {
    let bad = || {
        CliError::Usage(format!(
            "--since {spec:?}: use a duration such as 30s, 10m, 2h, 1d"
        ))
    };
    let (digits, unit) = spec.split_at(
        spec.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(spec.len()),
    );
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let ms = match unit {
        "" | "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => return Err(bad()),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Ok(now - ms)
}

fn create(client: &ApiClient, args: CreateArgs, json_output: bool) -> Result<(), CliError> {
    let mut config = Map::new();
    for c in &args.config {
        let (k, v) = key_value(c, "--config")?;
        config.insert(k, Value::String(v));
    }
    let mut body = json!({ "name": args.name, "config": config });
    if let Some(p) = args.partitions {
        body["partitions"] = json!(p);
    }
    let value = client.call(Method::POST, "/v1/streams", Some(&body))?;
    if json_output {
        output::json(&value);
    } else {
        println!("created stream {}", args.name);
    }
    Ok(())
}

fn list(client: &ApiClient, json_output: bool) -> Result<(), CliError> {
    let value = client.call::<()>(Method::GET, "/v1/streams", None)?;
    if json_output {
        output::json(&value);
        return Ok(());
    }
    let list: StreamList = serde_json::from_value(value)
        .map_err(|e| CliError::Other(format!("unexpected answer from the server: {e}")))?;
    let rows: Vec<Vec<String>> = list
        .streams
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.partitions.len().to_string(),
                s.partitions
                    .iter()
                    .map(|p| p.high_watermark - p.log_start_offset)
                    .sum::<u64>()
                    .to_string(),
                s.partitions
                    .iter()
                    .map(|p| p.size_bytes)
                    .sum::<u64>()
                    .to_string(),
            ]
        })
        .collect();
    output::table(&["NAME", "PARTITIONS", "RECORDS", "BYTES"], &rows);
    Ok(())
}

fn describe(client: &ApiClient, name: &str, json_output: bool) -> Result<(), CliError> {
    let value = client.call::<()>(Method::GET, &path(name, ""), None)?;
    if json_output {
        output::json(&value);
        return Ok(());
    }
    let d: StreamDescription = serde_json::from_value(value)
        .map_err(|e| CliError::Other(format!("unexpected answer from the server: {e}")))?;
    println!("stream {}", d.name);
    output::pairs(
        &d.config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>(),
    );
    println!();
    let rows: Vec<Vec<String>> = d
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                p.log_start_offset.to_string(),
                p.high_watermark.to_string(),
                p.size_bytes.to_string(),
                p.segments.to_string(),
            ]
        })
        .collect();
    output::table(&["PARTITION", "START", "END", "BYTES", "SEGMENTS"], &rows);
    Ok(())
}

fn produce(client: &ApiClient, args: ProduceArgs, json_output: bool) -> Result<(), CliError> {
    let mut headers = Map::new();
    for h in &args.headers {
        let (k, v) = key_value(h, "--header")?;
        headers.insert(k, Value::String(v));
    }
    let record = |key: Option<String>, value: String| {
        let mut r = json!({ "value": value, "headers": headers.clone() });
        if let Some(k) = key {
            r["key"] = json!(k);
        }
        if let Some(p) = args.partition {
            r["partition"] = json!(p);
        }
        r
    };
    let mut records = Vec::new();
    match &args.value {
        Some(v) => records.push(record(args.key.clone(), v.clone())),
        None => {
            for line in std::io::stdin().lock().lines() {
                let line =
                    line.map_err(|e| CliError::Other(format!("reading standard input: {e}")))?;
                let (key, value) = match &args.key_separator {
                    Some(sep) => match line.split_once(sep.as_str()) {
                        Some((k, v)) => (Some(k.to_string()), v.to_string()),
                        None => (args.key.clone(), line),
                    },
                    None => (args.key.clone(), line),
                };
                records.push(record(key, value));
            }
        }
    }
    let mut produced = Vec::new();
    for chunk in records.chunks(1000) {
        let value = client.call(
            Method::POST,
            &path(&args.name, "/records"),
            Some(&json!({ "records": chunk })),
        )?;
        if let Some(offsets) = value.get("offsets").and_then(Value::as_array) {
            produced.extend(offsets.iter().cloned());
        }
    }
    if json_output {
        output::json(&json!({ "offsets": produced }));
    } else {
        for o in &produced {
            println!("partition {} offset {}", o["partition"], o["offset"]);
        }
    }
    Ok(())
}

/// The query parameters for a start position.
fn start_query(start: &StartArgs) -> Result<Vec<(String, String)>, CliError> {
    let mut q = Vec::new();
    if let Some(p) = start.partition {
        q.push(("partition".to_string(), p.to_string()));
    }
    if let Some(o) = start.offset {
        q.push(("offset".to_string(), o.to_string()));
    } else if let Some(s) = &start.since {
        q.push(("since_ms".to_string(), since_ms(s)?.to_string()));
    } else if start.from_beginning {
        q.push(("from".to_string(), "beginning".to_string()));
    } else {
        q.push(("from".to_string(), "end".to_string()));
    }
    Ok(q)
}

fn query_string(q: &[(String, String)]) -> String {
    q.iter()
        .map(|(k, v)| format!("{k}={}", encode_segment(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn print_record(r: &RecordOut, json_output: bool) {
    if json_output {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
    } else {
        println!(
            "{}:{}\t{}\t{}",
            r.partition,
            r.offset,
            r.key.as_deref().unwrap_or("-"),
            r.value.as_deref().unwrap_or("<null>")
        );
    }
}

fn consume(client: &ApiClient, args: ConsumeArgs, json_output: bool) -> Result<(), CliError> {
    let partitions: Vec<u32> = match args.start.partition {
        Some(p) => vec![p],
        None => {
            let d: StreamDescription =
                client.call_as::<(), _>(Method::GET, &path(&args.name, ""), None)?;
            d.partitions.iter().map(|p| p.partition).collect()
        }
    };
    for p in partitions {
        let mut q = start_query(&StartArgs {
            partition: Some(p),
            from_beginning: args.start.from_beginning,
            offset: args.start.offset,
            since: args.start.since.clone(),
        })?;
        q.push(("max_records".to_string(), args.max.min(10_000).to_string()));
        q.push((
            "wait_ms".to_string(),
            (args.wait.min(30) * 1000).to_string(),
        ));
        let url = format!("{}?{}", path(&args.name, "/records"), query_string(&q));
        let value = client.call_with_timeout::<()>(
            Method::GET,
            &url,
            None,
            Duration::from_secs(args.wait.min(30) + 30),
        )?;
        let fetched: FetchResponse = serde_json::from_value(value)
            .map_err(|e| CliError::Other(format!("unexpected answer from the server: {e}")))?;
        for r in &fetched.records {
            print_record(r, json_output);
        }
    }
    Ok(())
}

fn tail(server: &str, args: TailArgs, json_output: bool) -> Result<(), CliError> {
    let q = start_query(&args.start)?;
    let base = server.trim_end_matches('/');
    let url = format!("{base}{}?{}", path(&args.name, "/tail"), query_string(&q));
    let response = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .and_then(|c| c.get(&url).send())
        .map_err(|e| CliError::Connect {
            server: base.to_string(),
            reason: e.to_string(),
        })?;
    if !response.status().is_success() {
        let status = response.status().as_u16();
        let body: Value = response.json().unwrap_or(Value::Null);
        return Err(CliError::Api {
            status,
            code: body["error"]["code"].as_str().unwrap_or("HTTP").to_string(),
            message: body["error"]["message"].as_str().unwrap_or("").to_string(),
        });
    }
    for line in BufReader::new(response).lines() {
        let line = line.map_err(|e| CliError::Other(format!("the stream ended: {e}")))?;
        if let Some(data) = line.strip_prefix("data:") {
            if let Ok(r) = serde_json::from_str::<RecordOut>(data.trim()) {
                print_record(&r, json_output);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_parses_durations() {
        let now = since_ms("0s").unwrap();
        assert!((now - since_ms("10m").unwrap() - 600_000).abs() < 1000);
        assert!((now - since_ms("1d").unwrap() - 86_400_000).abs() < 1000);
        assert!(since_ms("ten").is_err());
        assert!(since_ms("5y").is_err());
    }
}
