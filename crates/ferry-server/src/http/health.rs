//! Liveness and readiness probes.
//!
//! `/healthz` answers 200 as soon as the HTTP door listens (the process is alive).
//! `/readyz` answers 200 only once recovery has finished and until shutdown begins, so a load
//! balancer sends traffic only to a server that can serve queue calls.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorResponse};
use super::AppState;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Status {
    /// `ok` (healthz) or `ready` (readyz).
    pub status: String,
}

/// Liveness: 200 while the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Status)))]
pub async fn healthz() -> Json<Status> {
    Json(Status {
        status: "ok".into(),
    })
}

/// Readiness: 200 once recovery has finished, 503 `NotReady` before and `ShuttingDown` after.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Status), (status = 503, body = ErrorResponse)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    state.broker()?;
    Ok(Json(Status {
        status: "ready".into(),
    }))
}
