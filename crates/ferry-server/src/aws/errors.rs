//! AWS error codes, and the one exhaustive mapping from [`BrokerError`] to them.
//!
//! Each SQS error has two names: the JSON 1.0 shape (`__type`, for example
//! `com.amazonaws.sqs#QueueDoesNotExist`) and the query-protocol code (for example
//! `AWS.SimpleQueueService.NonExistentQueue`), which the JSON protocol also sends in the
//! `x-amzn-query-error: <code>;Sender` header so that SDKs report the same code on both.
//! Codes and statuses follow the SQS API model (botocore's `sqs/2012-11-05`).

use axum::http::StatusCode;
use ferry_broker::BrokerError;

/// Every error the AWS door returns. `shape` is the JSON `__type` suffix, `code` the query code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    QueueDoesNotExist,
    QueueNameExists,
    QueueDeletedRecently,
    PurgeQueueInProgress,
    InvalidAttributeName,
    InvalidAttributeValue,
    InvalidMessageContents,
    ReceiptHandleIsInvalid,
    MessageNotInflight,
    TooManyEntriesInBatchRequest,
    EmptyBatchRequest,
    BatchEntryIdsNotDistinct,
    BatchRequestTooLong,
    InvalidBatchEntryId,
    UnsupportedOperation,
    ResourceNotFound,
    OverLimit,
    InvalidParameterValue,
    MissingParameter,
    InvalidAction,
    SerializationException,
    InvalidClientTokenId,
    SignatureDoesNotMatch,
    IncompleteSignature,
    MissingAuthenticationToken,
    RequestExpired,
    AccessDenied,
    ServiceUnavailable,
    InternalFailure,
}

impl ErrorKind {
    /// (JSON shape namespace#name, query code, HTTP status, sender fault)
    fn spec(self) -> (&'static str, &'static str, StatusCode, bool) {
        use ErrorKind as K;
        const S: &str = "com.amazonaws.sqs#";
        let bad = StatusCode::BAD_REQUEST;
        let forbidden = StatusCode::FORBIDDEN;
        match self {
            K::QueueDoesNotExist => (S, "AWS.SimpleQueueService.NonExistentQueue", bad, true),
            K::QueueNameExists => (S, "QueueAlreadyExists", bad, true),
            K::QueueDeletedRecently => {
                (S, "AWS.SimpleQueueService.QueueDeletedRecently", bad, true)
            }
            K::PurgeQueueInProgress => (
                S,
                "AWS.SimpleQueueService.PurgeQueueInProgress",
                forbidden,
                true,
            ),
            K::InvalidAttributeName => (S, "InvalidAttributeName", bad, true),
            K::InvalidAttributeValue => (S, "InvalidAttributeValue", bad, true),
            K::InvalidMessageContents => (S, "InvalidMessageContents", bad, true),
            K::ReceiptHandleIsInvalid => (S, "ReceiptHandleIsInvalid", bad, true),
            K::MessageNotInflight => (S, "AWS.SimpleQueueService.MessageNotInflight", bad, true),
            K::TooManyEntriesInBatchRequest => (
                S,
                "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
                bad,
                true,
            ),
            K::EmptyBatchRequest => (S, "AWS.SimpleQueueService.EmptyBatchRequest", bad, true),
            K::BatchEntryIdsNotDistinct => (
                S,
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                bad,
                true,
            ),
            K::BatchRequestTooLong => (S, "AWS.SimpleQueueService.BatchRequestTooLong", bad, true),
            K::InvalidBatchEntryId => (S, "AWS.SimpleQueueService.InvalidBatchEntryId", bad, true),
            K::UnsupportedOperation => {
                (S, "AWS.SimpleQueueService.UnsupportedOperation", bad, true)
            }
            K::ResourceNotFound => (S, "ResourceNotFoundException", StatusCode::NOT_FOUND, true),
            K::OverLimit => (S, "OverLimit", forbidden, true),
            K::InvalidParameterValue => (S, "InvalidParameterValue", bad, true),
            K::MissingParameter => (S, "MissingParameter", bad, true),
            K::InvalidAction => ("com.amazon.coral.service#", "InvalidAction", bad, true),
            K::SerializationException => (
                "com.amazon.coral.service#",
                "SerializationException",
                bad,
                true,
            ),
            K::InvalidClientTokenId => (
                "com.amazon.coral.service#",
                "InvalidClientTokenId",
                forbidden,
                true,
            ),
            K::SignatureDoesNotMatch => (
                "com.amazon.coral.service#",
                "SignatureDoesNotMatch",
                forbidden,
                true,
            ),
            K::IncompleteSignature => (
                "com.amazon.coral.service#",
                "IncompleteSignature",
                bad,
                true,
            ),
            K::MissingAuthenticationToken => (
                "com.amazon.coral.service#",
                "MissingAuthenticationToken",
                forbidden,
                true,
            ),
            K::RequestExpired => ("com.amazon.coral.service#", "RequestExpired", bad, true),
            K::AccessDenied => ("com.amazon.coral.service#", "AccessDenied", forbidden, true),
            K::ServiceUnavailable => (
                "com.amazon.coral.availability#",
                "ServiceUnavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                false,
            ),
            K::InternalFailure => (
                "com.amazon.coral.service#",
                "InternalFailure",
                StatusCode::INTERNAL_SERVER_ERROR,
                false,
            ),
        }
    }

    /// The JSON 1.0 `__type`, for example `com.amazonaws.sqs#QueueDoesNotExist`.
    pub fn json_type(self) -> String {
        let (ns, code, _, _) = self.spec();
        let name = match self {
            ErrorKind::ResourceNotFound => "ResourceNotFoundException".to_string(),
            ErrorKind::InvalidParameterValue
            | ErrorKind::MissingParameter
            | ErrorKind::OverLimit
            | ErrorKind::InvalidAction
            | ErrorKind::SerializationException
            | ErrorKind::InvalidClientTokenId
            | ErrorKind::SignatureDoesNotMatch
            | ErrorKind::IncompleteSignature
            | ErrorKind::MissingAuthenticationToken
            | ErrorKind::RequestExpired
            | ErrorKind::AccessDenied
            | ErrorKind::ServiceUnavailable
            | ErrorKind::InternalFailure => code.to_string(),
            other => format!("{other:?}"),
        };
        format!("{ns}{name}")
    }

    /// The query-protocol code (also sent in `x-amzn-query-error`).
    pub fn code(self) -> &'static str {
        self.spec().1
    }

    pub fn status(self) -> StatusCode {
        self.spec().2
    }

    /// `Sender` or `Receiver`.
    pub fn fault(self) -> &'static str {
        if self.spec().3 {
            "Sender"
        } else {
            "Receiver"
        }
    }
}

/// An error answer of the AWS door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    pub kind: ErrorKind,
    pub message: String,
}

impl AwsError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> AwsError {
        AwsError {
            kind,
            message: message.into(),
        }
    }

    pub fn missing(parameter: &str) -> AwsError {
        AwsError::new(
            ErrorKind::MissingParameter,
            format!("The request must contain the parameter {parameter}."),
        )
    }

    /// `Value <v> for parameter <p> is invalid. Reason: <r>.` as SQS words it.
    pub fn invalid_value(parameter: &str, value: impl std::fmt::Display, reason: &str) -> AwsError {
        AwsError::new(
            ErrorKind::InvalidParameterValue,
            format!("Value {value} for parameter {parameter} is invalid. Reason: {reason}"),
        )
    }

    pub fn invalid_parameter(message: impl Into<String>) -> AwsError {
        AwsError::new(ErrorKind::InvalidParameterValue, message)
    }

    pub fn no_queue() -> AwsError {
        AwsError::new(
            ErrorKind::QueueDoesNotExist,
            "The specified queue does not exist.",
        )
    }

    pub fn unknown_attribute(name: &str) -> AwsError {
        AwsError::new(
            ErrorKind::InvalidAttributeName,
            format!("Unknown Attribute {name}."),
        )
    }

    pub fn attribute_value(name: &str) -> AwsError {
        AwsError::new(
            ErrorKind::InvalidAttributeValue,
            format!("Invalid value for the parameter {name}."),
        )
    }

    pub fn attribute_value_reason(name: &str, reason: &str) -> AwsError {
        AwsError::new(
            ErrorKind::InvalidAttributeValue,
            format!("Invalid value for the parameter {name}. Reason: {reason}"),
        )
    }
}

/// Maps every broker error to its AWS error. Exhaustive on purpose: a new broker error does
/// not compile until it has an AWS code.
pub fn from_broker(e: BrokerError) -> AwsError {
    use ErrorKind as K;
    match e {
        BrokerError::QueueNotFound(_) => AwsError::no_queue(),
        BrokerError::QueueAlreadyExists(name) => AwsError::new(
            K::QueueNameExists,
            format!("A queue already exists with the same name and a different value for attribute(s): {name}"),
        ),
        BrokerError::InvalidQueueName { name, reason } => AwsError::invalid_parameter(format!(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length ({name:?}: {reason})"
        )),
        BrokerError::InvalidAttributeValue { attribute, reason } => {
            AwsError::attribute_value_reason(&attribute, &reason)
        }
        BrokerError::InvalidParameter { parameter, reason } => {
            AwsError::invalid_parameter(format!("Invalid value for the parameter {parameter}. Reason: {reason}"))
        }
        BrokerError::MessageTooLarge { max, .. } => AwsError::invalid_parameter(format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {max} bytes."
        )),
        BrokerError::InvalidReceiptHandle(handle) => AwsError::new(
            K::ReceiptHandleIsInvalid,
            format!("The input receipt handle \"{handle}\" is not a valid receipt handle."),
        ),
        BrokerError::MessageNotInflight => AwsError::new(K::MessageNotInflight, "Message does not exist or is not available for visibility timeout change."),
        BrokerError::QueueFull { queue, max_length } => {
            AwsError::new(K::OverLimit, format!("Queue {queue} is full ({max_length} messages)."))
        }
        BrokerError::RedriveNotAllowed(dlq) => AwsError::attribute_value_reason(
            "RedrivePolicy",
            &format!("the RedriveAllowPolicy of the dead-letter queue {dlq} does not allow this source queue."),
        ),
        BrokerError::MoveTaskNotFound(_) => AwsError::new(K::ResourceNotFound, "Task does not exist."),
        BrokerError::MoveTaskAlreadyRunning(_) => AwsError::new(
            K::UnsupportedOperation,
            "There is already a task running. Only one active task is allowed for a source queue arn at a given time.",
        ),
        BrokerError::NotADeadLetterQueue(_) => {
            AwsError::new(K::UnsupportedOperation, "Source queue must be configured as a Dead Letter Queue.")
        }
        BrokerError::Storage(what) => {
            tracing::error!(error = %what, "storage failure behind the aws door");
            AwsError::new(K::InternalFailure, "The request processing has failed because of an unknown error.")
        }
        BrokerError::ShuttingDown => AwsError::new(K::ServiceUnavailable, "The server is shutting down."),
    }
}

impl From<BrokerError> for AwsError {
    fn from(e: BrokerError) -> Self {
        from_broker(e)
    }
}
