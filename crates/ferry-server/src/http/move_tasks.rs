//! Dead-letter redrive: message move tasks.
//!
//! ```text
//! POST /v1/queues/{dlq}/move-tasks          {"destination": "orders"?, "max_per_second": 100?}
//! GET  /v1/queues/{dlq}/move-tasks          {"tasks": [..]}
//! POST /v1/queues/{dlq}/move-tasks/cancel   {"task_handle": ".."}
//! ```
//!
//! Without a destination each message returns to the queue it was dead-lettered from.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ferry_broker::{MoveTaskInfo, MoveTaskStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorResponse};
use super::extract::{ApiJson, ApiPath};
use super::AppState;

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartMoveTaskRequest {
    /// Where to move the messages; default: each message's source queue.
    pub destination: Option<String>,
    /// Rate cap; default: as fast as possible.
    pub max_per_second: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelMoveTaskRequest {
    pub task_handle: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MoveTaskStatusWire {
    Running,
    Completed,
    Cancelling,
    Cancelled,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MoveTask {
    pub task_handle: String,
    pub source: String,
    /// `null`: each message returns to the queue it was dead-lettered from.
    pub destination: Option<String>,
    pub max_per_second: Option<u32>,
    pub status: MoveTaskStatusWire,
    pub moved: u64,
    /// Messages in the source when the task started.
    pub to_move: u64,
    pub started_timestamp_ms: u64,
    pub failure_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MoveTasks {
    pub tasks: Vec<MoveTask>,
}

impl From<MoveTaskInfo> for MoveTask {
    fn from(t: MoveTaskInfo) -> Self {
        MoveTask {
            task_handle: t.task_handle,
            source: t.source,
            destination: t.destination,
            max_per_second: t.max_per_second,
            status: match t.status {
                MoveTaskStatus::Running => MoveTaskStatusWire::Running,
                MoveTaskStatus::Completed => MoveTaskStatusWire::Completed,
                MoveTaskStatus::Cancelling => MoveTaskStatusWire::Cancelling,
                MoveTaskStatus::Cancelled => MoveTaskStatusWire::Cancelled,
                MoveTaskStatus::Failed => MoveTaskStatusWire::Failed,
            },
            moved: t.moved,
            to_move: t.to_move,
            started_timestamp_ms: t.started_timestamp_ms,
            failure_reason: t.failure_reason,
        }
    }
}

/// Starts moving the messages of a dead-letter queue back (or to `destination`).
#[utoipa::path(post, path = "/v1/queues/{name}/move-tasks", tag = "dead letters",
    params(("name" = String, Path, description = "Dead-letter queue name")),
    request_body = StartMoveTaskRequest,
    responses((status = 201, body = MoveTask), (status = 404, body = ErrorResponse),
        (status = 409, description = "A task is already running, or the queue is not a dead-letter queue", body = ErrorResponse)))]
pub async fn start(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<StartMoveTaskRequest>,
) -> Result<(StatusCode, Json<MoveTask>), ApiError> {
    let broker = state.broker()?;
    let task = broker.start_move_task(
        &name,
        request.destination.as_deref(),
        request.max_per_second,
    )?;
    Ok((StatusCode::CREATED, Json(task.into())))
}

/// The move tasks of a dead-letter queue, most recent first.
#[utoipa::path(get, path = "/v1/queues/{name}/move-tasks", tag = "dead letters",
    params(("name" = String, Path, description = "Dead-letter queue name")),
    responses((status = 200, body = MoveTasks), (status = 404, body = ErrorResponse)))]
pub async fn list(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<MoveTasks>, ApiError> {
    let broker = state.broker()?;
    Ok(Json(MoveTasks {
        tasks: broker
            .list_move_tasks(&name)?
            .into_iter()
            .map(MoveTask::from)
            .collect(),
    }))
}

/// Cancels a running move task; messages already moved stay moved.
#[utoipa::path(post, path = "/v1/queues/{name}/move-tasks/cancel", tag = "dead letters",
    params(("name" = String, Path, description = "Dead-letter queue name")),
    request_body = CancelMoveTaskRequest,
    responses((status = 200, body = MoveTask), (status = 404, body = ErrorResponse)))]
pub async fn cancel(
    State(state): State<AppState>,
    ApiPath(_name): ApiPath<String>,
    ApiJson(request): ApiJson<CancelMoveTaskRequest>,
) -> Result<Json<MoveTask>, ApiError> {
    let broker = state.broker()?;
    Ok(Json(broker.cancel_move_task(&request.task_handle)?.into()))
}
