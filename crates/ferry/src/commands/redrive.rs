//! `ferry redrive DLQ [--to QUEUE]`: start a message move task and follow it to the end.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;
use ferry_server::http::move_tasks::{MoveTask, MoveTaskStatusWire, MoveTasks};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::json;

use crate::client::{ApiClient, CliError};
use crate::output;

/// How often the task's progress is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, Args)]
pub struct RedriveArgs {
    /// The dead-letter queue to empty.
    pub dead_letter_queue: String,
    /// Move every message here instead of back to the queue it came from.
    #[arg(long = "to", value_name = "QUEUE")]
    pub destination: Option<String>,
    /// Rate cap in messages per second.
    #[arg(long, value_name = "N")]
    pub max_per_second: Option<u32>,
    /// Start the task and return without following it.
    #[arg(long)]
    pub no_wait: bool,
}

pub fn run(client: &ApiClient, args: RedriveArgs, json_output: bool) -> Result<(), CliError> {
    let path = ApiClient::queue_path(&args.dead_letter_queue, "/move-tasks");
    let mut body = json!({});
    if let Some(d) = &args.destination {
        body["destination"] = json!(d);
    }
    if let Some(r) = args.max_per_second {
        body["max_per_second"] = json!(r);
    }
    let started: MoveTask = client.call_as(Method::POST, &path, Some(&body))?;
    let mut task = started.clone();
    if !args.no_wait {
        let progress = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(task.to_move);
            if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} moved {per_sec}")
            {
                bar.set_style(style);
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        while task.status == MoveTaskStatusWire::Running
            || task.status == MoveTaskStatusWire::Cancelling
        {
            std::thread::sleep(POLL_INTERVAL);
            let tasks: MoveTasks = client.call_as::<(), _>(Method::GET, &path, None)?;
            match tasks
                .tasks
                .into_iter()
                .find(|t| t.task_handle == started.task_handle)
            {
                Some(t) => task = t,
                None => {
                    return Err(CliError::Other(format!(
                        "move task {} disappeared",
                        started.task_handle
                    )))
                }
            }
            progress.set_length(task.to_move);
            progress.set_position(task.moved);
        }
        progress.finish_and_clear();
    }
    if json_output {
        output::json(&serde_json::to_value(&task).unwrap_or_default());
    } else {
        let target = task.destination.as_deref().unwrap_or("their source queues");
        println!(
            "{:?}: moved {} of {} messages from {} to {target}",
            task.status, task.moved, task.to_move, task.source
        );
    }
    match task.status {
        MoveTaskStatusWire::Failed => Err(CliError::Other(format!(
            "move task failed: {}",
            task.failure_reason.unwrap_or_default()
        ))),
        _ => Ok(()),
    }
}
