//! Router tests that need no broker: error shapes, limits, readiness, and the OpenAPI document
//! against the registered routes.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt;
use utoipa::OpenApi;

use super::limits::MAX_REQUEST_BODY_BYTES;
use super::openapi::ApiDoc;
use super::{route_table, router, AppState};

fn app() -> axum::Router {
    router(AppState::new(crate::metrics::install()))
}

async fn call(method: Method, uri: &str, body: impl Into<Body>) -> (StatusCode, serde_json::Value) {
    let response = app()
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(body.into())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json)
}

fn code(json: &serde_json::Value) -> &str {
    json["error"]["code"].as_str().unwrap_or("<no error code>")
}

#[tokio::test]
async fn healthz_is_ok_before_recovery_and_readyz_is_not() {
    let (status, json) = call(Method::GET, "/healthz", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["status"], "ok");
    let (status, json) = call(Method::GET, "/readyz", Body::empty()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code(&json), "NotReady");
}

#[tokio::test]
async fn queue_calls_before_recovery_get_not_ready() {
    let (status, json) = call(Method::GET, "/v1/queues", Body::empty()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code(&json), "NotReady");
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_error_shape() {
    let (status, json) = call(Method::GET, "/v1/nope", Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&json), "RouteNotFound");
    let (status, json) = call(Method::PUT, "/v1/queues", Body::empty()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(code(&json), "MethodNotAllowed");
}

#[tokio::test]
async fn malformed_and_incomplete_bodies_are_invalid_requests() {
    let (status, json) = call(Method::POST, "/v1/queues", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&json), "InvalidRequest");
    let (status, json) = call(Method::POST, "/v1/queues", r#"{"attributes":{}}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(json["error"]["message"].as_str().unwrap().contains("name"));
    let (status, json) = call(Method::POST, "/v1/queues", r#"{"name":"a","colour":1}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
}

#[tokio::test]
async fn oversize_bodies_get_413() {
    let body = vec![b' '; MAX_REQUEST_BODY_BYTES + 1];
    let (status, json) = call(Method::POST, "/v1/queues/q/messages", body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code(&json), "RequestTooLarge");
}

#[tokio::test]
async fn oversize_headers_get_431() {
    let response = app()
        .oneshot(
            Request::builder()
                .uri("/healthz")
                .header("x-big", "a".repeat(super::limits::MAX_HEADER_BYTES + 1))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
}

/// Every registered route is documented, and every documented operation is registered.
#[test]
fn openapi_document_matches_the_registered_routes() {
    let registered: BTreeSet<(String, String)> = route_table()
        .routes()
        .iter()
        .map(|(method, path)| (method.as_str().to_lowercase(), path.to_string()))
        .collect();
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete", "head", "options"]
                .contains(&method.as_str())
            {
                documented.insert((method.clone(), path.clone()));
            }
        }
    }
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let unregistered: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from OpenAPI: {undocumented:?}"
    );
    assert!(
        unregistered.is_empty(),
        "OpenAPI paths with no route: {unregistered:?}"
    );
}

#[tokio::test]
async fn metrics_render_before_recovery() {
    let response = app()
        .oneshot(
            Request::builder()
                .uri("/metrics")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains(crate::metrics::READY), "{text}");
}
