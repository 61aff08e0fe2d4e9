//! `GET /metrics`: Prometheus text exposition, refreshed from the broker on each scrape.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;

/// Prometheus metrics; names are listed in `docs/metrics.md`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let (requests, polls) = state.in_flight();
    crate::metrics::refresh_http(requests, polls);
    let state2 = state.clone();
    // Stats walk every queue; keep that off the async workers.
    let refreshed = tokio::task::spawn_blocking(move || {
        crate::metrics::refresh(state2.broker_if_open());
        crate::metrics::refresh_topics(state2.topics_if_open());
        crate::metrics::refresh_streams(state2.streams_if_open());
    })
    .await;
    if let Err(e) = refreshed {
        tracing::warn!(error = %e, "refreshing queue metrics failed");
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics().render(),
    )
}
