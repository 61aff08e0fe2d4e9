//! The broker's typed errors. Front doors map each variant to their protocol's error code.

/// Every way a broker call can fail. Each variant is distinct so doors can map it exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    #[error("queue {0:?} does not exist")]
    QueueNotFound(String),
    #[error("queue {0:?} already exists with different attributes")]
    QueueAlreadyExists(String),
    #[error("invalid queue name {name:?}: {reason}")]
    InvalidQueueName { name: String, reason: String },
    #[error("invalid value for attribute {attribute}: {reason}")]
    InvalidAttributeValue { attribute: String, reason: String },
    #[error("invalid value for parameter {parameter}: {reason}")]
    InvalidParameter { parameter: String, reason: String },
    #[error("message of {size} bytes exceeds the queue's maximum of {max} bytes")]
    MessageTooLarge { size: usize, max: usize },
    #[error("receipt handle {0:?} is not valid")]
    InvalidReceiptHandle(String),
    #[error("message is not in flight")]
    MessageNotInflight,
    #[error("queue {queue:?} is full ({max_length} messages) and its overflow policy rejects new messages")]
    QueueFull { queue: String, max_length: u64 },
    #[error(
        "queue {0:?} is a dead-letter target and its redrive allow policy refuses this source"
    )]
    RedriveNotAllowed(String),
    #[error("message move task {0:?} does not exist")]
    MoveTaskNotFound(String),
    #[error("a message move task is already running on {0:?}")]
    MoveTaskAlreadyRunning(String),
    #[error("queue {0:?} is not a dead-letter queue of any queue")]
    NotADeadLetterQueue(String),
    #[error("storage failure: {0}")]
    Storage(String),
    #[error("the broker is shutting down")]
    ShuttingDown,
}
