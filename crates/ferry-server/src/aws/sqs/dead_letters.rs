//! ListDeadLetterSourceQueues and the message move tasks (StartMessageMoveTask,
//! ListMessageMoveTasks, CancelMessageMoveTask).

use ferry_broker::{BrokerError, MoveTaskInfo, MoveTaskStatus};
use serde_json::{json, Value};

use super::queues::page;
use super::{object, Ctx, Input};
use crate::aws::errors::{AwsError, ErrorKind};

/// Most move tasks ListMessageMoveTasks returns (SQS).
pub const MAX_MOVE_TASK_RESULTS: i64 = 10;

pub fn list_sources(ctx: &Ctx, i: &Input) -> Result<Value, AwsError> {
    let name = ctx.queue(i)?;
    let sources = ctx.broker.dead_letter_source_queues(&name)?;
    let (page, token) = page(i, sources)?;
    let urls: Vec<Value> = page
        .iter()
        .map(|n| Value::String(ctx.queue_url(n)))
        .collect();
    Ok(object(vec![
        ("queueUrls", Some(Value::Array(urls))),
        ("NextToken", token.map(Value::String)),
    ]))
}

/// A queue named by ARN; a missing or foreign one is `ResourceNotFoundException`.
fn queue_by_arn(ctx: &Ctx, parameter: &str, arn: &str) -> Result<String, AwsError> {
    let name = ctx.name_from_arn(arn).ok_or_else(|| {
        AwsError::new(
            ErrorKind::ResourceNotFound,
            format!("The resource that you specified for the {parameter} parameter doesn't exist."),
        )
    })?;
    match ctx.broker.get_queue(&name) {
        Ok(_) => Ok(name),
        Err(BrokerError::QueueNotFound(_)) => Err(AwsError::new(
            ErrorKind::ResourceNotFound,
            format!("The resource that you specified for the {parameter} parameter doesn't exist."),
        )),
        Err(e) => Err(e.into()),
    }
}

fn not_found(e: BrokerError, parameter: &str) -> AwsError {
    match e {
        BrokerError::QueueNotFound(_) => AwsError::new(
            ErrorKind::ResourceNotFound,
            format!("The resource that you specified for the {parameter} parameter doesn't exist."),
        ),
        other => other.into(),
    }
}

pub fn start_move(ctx: &Ctx, i: &Input) -> Result<Value, AwsError> {
    let source = queue_by_arn(ctx, "SourceArn", i.req_str("SourceArn")?)?;
    let destination = match i.str("DestinationArn") {
        Some(d) => Some(queue_by_arn(ctx, "DestinationArn", d)?),
        None => None,
    };
    let rate = i.int_in(
        "MaxNumberOfMessagesPerSecond",
        1,
        ferry_broker::MAX_MOVE_RATE as i64,
        "MaxNumberOfMessagesPerSecond must be between 1 and 500.",
    )?;
    let task = ctx
        .broker
        .start_move_task(&source, destination.as_deref(), rate)
        .map_err(|e| not_found(e, "SourceArn"))?;
    Ok(json!({ "TaskHandle": task.task_handle }))
}

fn status_text(s: MoveTaskStatus) -> &'static str {
    match s {
        MoveTaskStatus::Running => "RUNNING",
        MoveTaskStatus::Completed => "COMPLETED",
        MoveTaskStatus::Cancelling => "CANCELLING",
        MoveTaskStatus::Cancelled => "CANCELLED",
        MoveTaskStatus::Failed => "FAILED",
    }
}

fn task_json(ctx: &Ctx, t: &MoveTaskInfo) -> Value {
    object(vec![
        (
            "TaskHandle",
            (t.status == MoveTaskStatus::Running).then(|| Value::String(t.task_handle.clone())),
        ),
        ("Status", Some(Value::String(status_text(t.status).into()))),
        ("SourceArn", Some(Value::String(ctx.queue_arn(&t.source)))),
        (
            "DestinationArn",
            t.destination
                .as_ref()
                .map(|d| Value::String(ctx.queue_arn(d))),
        ),
        (
            "MaxNumberOfMessagesPerSecond",
            t.max_per_second.map(|r| json!(r)),
        ),
        ("ApproximateNumberOfMessagesMoved", Some(json!(t.moved))),
        ("ApproximateNumberOfMessagesToMove", Some(json!(t.to_move))),
        (
            "FailureReason",
            t.failure_reason.as_ref().map(|r| Value::String(r.clone())),
        ),
        ("StartedTimestamp", Some(json!(t.started_timestamp_ms))),
    ])
}

pub fn list_moves(ctx: &Ctx, i: &Input) -> Result<Value, AwsError> {
    let source = queue_by_arn(ctx, "SourceArn", i.req_str("SourceArn")?)?;
    let max = i
        .int_in(
            "MaxResults",
            1,
            MAX_MOVE_TASK_RESULTS,
            "MaxResults must be between 1 and 10.",
        )?
        .unwrap_or(1) as usize;
    let tasks = ctx
        .broker
        .list_move_tasks(&source)
        .map_err(|e| not_found(e, "SourceArn"))?;
    let results: Vec<Value> = tasks.iter().take(max).map(|t| task_json(ctx, t)).collect();
    Ok(json!({ "Results": results }))
}

pub fn cancel_move(ctx: &Ctx, i: &Input) -> Result<Value, AwsError> {
    let handle = i.req_str("TaskHandle")?;
    let task = ctx.broker.cancel_move_task(handle)?;
    Ok(json!({ "ApproximateNumberOfMessagesMoved": task.moved }))
}
