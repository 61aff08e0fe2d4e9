//! The AWS JSON 1.0 protocol: `POST /` with `X-Amz-Target: AmazonSQS.<Action>` and a JSON
//! body; JSON results; errors as
//!
//! ```text
//! HTTP 400
//! x-amzn-query-error: AWS.SimpleQueueService.NonExistentQueue;Sender
//! {"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"The specified queue does not exist."}
//! ```

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::errors::{AwsError, ErrorKind};

pub const CONTENT_TYPE: &str = "application/x-amz-json-1.0";
/// The `X-Amz-Target` prefix of SQS.
pub const TARGET_PREFIX: &str = "AmazonSQS.";

/// Parses the request body; an empty body is an empty input.
pub fn parse_body(body: &[u8]) -> Result<Value, AwsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(AwsError::new(
            ErrorKind::SerializationException,
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(AwsError::new(
            ErrorKind::SerializationException,
            format!("The request body is not valid JSON: {e}"),
        )),
    }
}

pub fn ok(result: &Value, request_id: &str) -> Response {
    let body = serde_json::to_vec(result).unwrap_or_else(|_| b"{}".to_vec());
    with_headers((StatusCode::OK, body).into_response(), request_id)
}

pub fn error(e: &AwsError, request_id: &str) -> Response {
    let body = serde_json::json!({"__type": e.kind.json_type(), "message": e.message});
    let mut r = with_headers(
        (e.kind.status(), body.to_string()).into_response(),
        request_id,
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{};{}", e.kind.code(), e.kind.fault())) {
        r.headers_mut().insert("x-amzn-query-error", v);
    }
    r
}

fn with_headers(mut r: Response, request_id: &str) -> Response {
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}
