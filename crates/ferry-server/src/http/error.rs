//! The one error shape of the native API, and the mapping of every broker error onto it.
//!
//! ```text
//! HTTP/1.1 404 Not Found
//! {"error":{"code":"QueueNotFound","message":"queue \"orders\" does not exist"}}
//! ```

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferry_broker::BrokerError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Machine-readable error codes. Clients match on these, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ErrorCode {
    /// Malformed JSON, a missing or unknown field, or a value out of range.
    InvalidRequest,
    /// The request body exceeds the size limit.
    RequestTooLarge,
    /// The request headers exceed the size limit.
    HeadersTooLarge,
    /// No route matches the path.
    RouteNotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// A batch has more entries than allowed, or none.
    InvalidBatch,
    QueueNotFound,
    QueueAlreadyExists,
    InvalidQueueName,
    InvalidAttributeValue,
    InvalidParameter,
    MessageTooLarge,
    InvalidReceiptHandle,
    MessageNotInflight,
    QueueFull,
    RedriveNotAllowed,
    MoveTaskNotFound,
    MoveTaskAlreadyRunning,
    NotADeadLetterQueue,
    TopicNotFound,
    SubscriptionNotFound,
    StreamNotFound,
    StreamAlreadyExists,
    /// The requested stream offset is before the log start or after the end.
    OffsetOutOfRange,
    /// The storage engine failed; the request may be retried.
    StorageError,
    /// Recovery has not finished yet; retry shortly.
    NotReady,
    /// The server is stopping; retry on another server or after restart.
    ShuttingDown,
    /// An unexpected server fault.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "InvalidRequest",
            ErrorCode::RequestTooLarge => "RequestTooLarge",
            ErrorCode::HeadersTooLarge => "HeadersTooLarge",
            ErrorCode::RouteNotFound => "RouteNotFound",
            ErrorCode::MethodNotAllowed => "MethodNotAllowed",
            ErrorCode::InvalidBatch => "InvalidBatch",
            ErrorCode::QueueNotFound => "QueueNotFound",
            ErrorCode::QueueAlreadyExists => "QueueAlreadyExists",
            ErrorCode::InvalidQueueName => "InvalidQueueName",
            ErrorCode::InvalidAttributeValue => "InvalidAttributeValue",
            ErrorCode::InvalidParameter => "InvalidParameter",
            ErrorCode::MessageTooLarge => "MessageTooLarge",
            ErrorCode::InvalidReceiptHandle => "InvalidReceiptHandle",
            ErrorCode::MessageNotInflight => "MessageNotInflight",
            ErrorCode::QueueFull => "QueueFull",
            ErrorCode::RedriveNotAllowed => "RedriveNotAllowed",
            ErrorCode::MoveTaskNotFound => "MoveTaskNotFound",
            ErrorCode::MoveTaskAlreadyRunning => "MoveTaskAlreadyRunning",
            ErrorCode::NotADeadLetterQueue => "NotADeadLetterQueue",
            ErrorCode::TopicNotFound => "TopicNotFound",
            ErrorCode::SubscriptionNotFound => "SubscriptionNotFound",
            ErrorCode::StreamNotFound => "StreamNotFound",
            ErrorCode::StreamAlreadyExists => "StreamAlreadyExists",
            ErrorCode::OffsetOutOfRange => "OffsetOutOfRange",
            ErrorCode::StorageError => "StorageError",
            ErrorCode::NotReady => "NotReady",
            ErrorCode::ShuttingDown => "ShuttingDown",
            ErrorCode::Internal => "Internal",
        }
    }
}

/// `{"code": "...", "message": "..."}`: the inside of every error response, and of each failed
/// entry in a batch result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// `{"error": {"code": "...", "message": "..."}}`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

/// An error on its way to the client: a status and a body.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                code,
                message: message.into(),
            },
        }
    }

    /// 400 `InvalidRequest`.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
    }

    pub fn not_ready() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotReady,
            "the server is recovering its data; retry shortly",
        )
    }

    pub fn shutting_down() -> ApiError {
        ApiError::from(BrokerError::ShuttingDown)
    }

    pub fn route_not_found(path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::RouteNotFound,
            format!("no route for {path}; see /v1/openapi.json"),
        )
    }
}

impl From<BrokerError> for ApiError {
    /// Every broker error, each to its own code. Exhaustive on purpose: a new variant must be
    /// mapped here before the server compiles.
    fn from(err: BrokerError) -> ApiError {
        let message = err.to_string();
        let (status, code) = match err {
            BrokerError::QueueNotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::QueueNotFound),
            BrokerError::QueueAlreadyExists(_) => {
                (StatusCode::CONFLICT, ErrorCode::QueueAlreadyExists)
            }
            BrokerError::InvalidQueueName { .. } => {
                (StatusCode::BAD_REQUEST, ErrorCode::InvalidQueueName)
            }
            BrokerError::InvalidAttributeValue { .. } => {
                (StatusCode::BAD_REQUEST, ErrorCode::InvalidAttributeValue)
            }
            BrokerError::InvalidParameter { .. } => {
                (StatusCode::BAD_REQUEST, ErrorCode::InvalidParameter)
            }
            BrokerError::MessageTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::MessageTooLarge)
            }
            BrokerError::InvalidReceiptHandle(_) => {
                (StatusCode::BAD_REQUEST, ErrorCode::InvalidReceiptHandle)
            }
            BrokerError::MessageNotInflight => {
                (StatusCode::CONFLICT, ErrorCode::MessageNotInflight)
            }
            BrokerError::QueueFull { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::QueueFull),
            BrokerError::RedriveNotAllowed(_) => {
                (StatusCode::CONFLICT, ErrorCode::RedriveNotAllowed)
            }
            BrokerError::MoveTaskNotFound(_) => {
                (StatusCode::NOT_FOUND, ErrorCode::MoveTaskNotFound)
            }
            BrokerError::MoveTaskAlreadyRunning(_) => {
                (StatusCode::CONFLICT, ErrorCode::MoveTaskAlreadyRunning)
            }
            BrokerError::NotADeadLetterQueue(_) => {
                (StatusCode::CONFLICT, ErrorCode::NotADeadLetterQueue)
            }
            BrokerError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::StorageError),
            BrokerError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ShuttingDown),
        };
        ApiError::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut response = (status, axum::Json(ErrorResponse { error: self.body })).into_response();
        // The unread rest of an oversize request makes the connection unusable; say so, so the
        // client opens a new one instead of failing its next request on this one.
        if status == StatusCode::PAYLOAD_TOO_LARGE
            || status == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_errors_map_to_distinct_codes_and_statuses() {
        let cases = [
            (BrokerError::QueueNotFound("q".into()), 404, "QueueNotFound"),
            (
                BrokerError::QueueAlreadyExists("q".into()),
                409,
                "QueueAlreadyExists",
            ),
            (
                BrokerError::InvalidReceiptHandle("h".into()),
                400,
                "InvalidReceiptHandle",
            ),
            (
                BrokerError::MessageTooLarge { size: 2, max: 1 },
                413,
                "MessageTooLarge",
            ),
            (
                BrokerError::QueueFull {
                    queue: "q".into(),
                    max_length: 1,
                },
                429,
                "QueueFull",
            ),
            (BrokerError::ShuttingDown, 503, "ShuttingDown"),
            (BrokerError::Storage("disk".into()), 500, "StorageError"),
        ];
        for (err, status, code) in cases {
            let api = ApiError::from(err);
            assert_eq!(api.status.as_u16(), status);
            assert_eq!(api.body.code.as_str(), code);
            assert_eq!(
                serde_json::to_value(api.body.code).unwrap(),
                serde_json::Value::String(code.into())
            );
        }
    }
}
