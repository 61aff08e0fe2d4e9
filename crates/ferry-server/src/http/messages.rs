//! Message resources: send (single or batch), receive (long polling), delete and change
//! visibility (single or batch), peek.
//!
//! ```text
//! POST /v1/queues/{name}/messages             {"body":"hi"} | {"messages":[{"body":"hi"},..]}
//! GET  /v1/queues/{name}/messages?max=10      peek, changes nothing
//! POST /v1/queues/{name}/receive              {"max":10,"wait":20,"visibility_timeout":30}
//! POST /v1/queues/{name}/messages/delete      {"receipt_handle":".."} | {"receipt_handles":[..]}
//! POST /v1/queues/{name}/messages/visibility  {"receipt_handle":"..","visibility_timeout":0}
//!                                             | {"changes":[{"receipt_handle","visibility_timeout"}]}
//! ```
//!
//! Bodies are UTF-8 text by default. Binary bodies travel base64 encoded with
//! `"body_encoding":"base64"`, in both directions: a delivered body that is not valid UTF-8 is
//! always sent base64 encoded, and a receive or peek may ask for base64 for every body.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use ferry_broker::{
    BrokerError, Message, MessageAttributeValue, ReceiveRequest, ReceivedMessage, SendMessage,
    SendOutcome, VisibilityChange,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody, ErrorCode, ErrorResponse};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::limits::{
    DEFAULT_PEEK_MESSAGES, MAX_BATCH_ENTRIES, MAX_PEEK_MESSAGES, MAX_RECEIVE_MESSAGES,
    MAX_WAIT_SECONDS,
};
use super::AppState;

/// How a body (or binary attribute) is written in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BodyEncoding {
    /// The body is the UTF-8 text itself.
    #[default]
    Text,
    /// The body is base64 (standard alphabet, padded) of the bytes.
    Base64,
}

/// A typed message attribute: `{"type": "String" | "Number" | "Binary" (optionally with a
/// custom suffix such as `Number.float`), "value": "..."}`. Binary values are base64.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageAttributeWire {
    #[serde(rename = "type")]
    pub data_type: String,
    pub value: String,
}

/// One message to send.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessageWire {
    pub body: String,
    #[serde(default)]
    pub body_encoding: BodyEncoding,
    #[serde(default)]
    pub attributes: BTreeMap<String, MessageAttributeWire>,
    /// 0..=900; standard queues only.
    pub delay_seconds: Option<u32>,
    /// Required on FIFO queues.
    pub group_id: Option<String>,
    pub deduplication_id: Option<String>,
    /// 0..=9, higher first; standard queues only.
    pub priority: Option<u8>,
    pub ttl_seconds: Option<u32>,
}

/// `{"messages": [..]}`: 1 to 100 messages.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBatchWire {
    pub messages: Vec<SendMessageWire>,
}

/// A send request: one message, or a batch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SendRequest {
    Batch(SendBatchWire),
    Single(SendMessageWire),
}

/// What a send request decodes from: the fields of one message, or `messages`. Parsed in one
/// pass (an untagged enum would hide the reason a request is malformed).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequestRaw {
    messages: Option<Vec<SendMessageWire>>,
    body: Option<String>,
    #[serde(default)]
    body_encoding: BodyEncoding,
    #[serde(default)]
    attributes: BTreeMap<String, MessageAttributeWire>,
    delay_seconds: Option<u32>,
    group_id: Option<String>,
    deduplication_id: Option<String>,
    priority: Option<u8>,
    ttl_seconds: Option<u32>,
}

/// The result of a single send.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SendResult {
    pub message_id: String,
    /// FIFO queues only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<u64>,
    /// FIFO queues: true when deduplication matched an earlier send.
    pub deduplicated: bool,
}

/// One entry of a batch result: `ok` with the message id, or the entry's error.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SendEntryResult {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deduplicated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// Batch results in input order; `failed` counts the entries with an error.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SendBatchResponse {
    pub results: Vec<SendEntryResult>,
    pub failed: usize,
}

/// The answer to a send: a [`SendResult`] for one message, a [`SendBatchResponse`] for a batch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SendResponse {
    Batch(SendBatchResponse),
    Single(SendResult),
}

/// A message as delivered by receive (with its receipt handle) or shown by peek (without).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageWire {
    pub message_id: String,
    /// Deletes the message or changes its visibility; receive only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_handle: Option<String>,
    pub body: String,
    pub body_encoding: BodyEncoding,
    pub attributes: BTreeMap<String, MessageAttributeWire>,
    pub sent_timestamp_ms: u64,
    /// Including this delivery.
    pub receive_count: u32,
    pub first_receive_timestamp_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deduplication_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<u64>,
    pub priority: u8,
    /// The queue it was dead-lettered from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_source: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessagesResponse {
    pub messages: Vec<MessageWire>,
}

/// Receive parameters; every field is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiveRequestWire {
    /// 1..=100, default 1.
    pub max: Option<u32>,
    /// Long-poll wait in seconds, 0..=20; default: the queue's `receive_message_wait_seconds`.
    pub wait: Option<u32>,
    /// Overrides the queue's visibility timeout for these deliveries (seconds).
    pub visibility_timeout: Option<u32>,
    /// FIFO: a retry with the same attempt id returns the same messages.
    pub attempt_id: Option<String>,
    /// `base64` to get every body base64 encoded.
    pub body_encoding: Option<BodyEncoding>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PeekQuery {
    /// 1..=100, default 10.
    pub max: Option<usize>,
    /// `base64` to get every body base64 encoded.
    pub body_encoding: Option<BodyEncoding>,
}

/// `{"receipt_handle": ".."}` or `{"receipt_handles": [..]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_handle: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_handles: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisibilityChangeWire {
    pub receipt_handle: String,
    /// Seconds from now, 0..=43200; 0 makes the message visible at once.
    pub visibility_timeout: u32,
}

/// One change (`receipt_handle` and `visibility_timeout`) or a batch (`changes`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisibilityRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_handle: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility_timeout: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<VisibilityChangeWire>>,
}

/// One entry of a delete or visibility batch result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EntryResult {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// Batch results in input order; `failed` counts the entries with an error.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    pub results: Vec<EntryResult>,
    pub failed: usize,
}

fn check_batch_size(len: usize) -> Result<(), ApiError> {
    if len == 0 || len > MAX_BATCH_ENTRIES {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidBatch,
            format!("a batch has 1 to {MAX_BATCH_ENTRIES} entries, this one has {len}"),
        ));
    }
    Ok(())
}

fn invalid_parameter(parameter: &str, reason: impl Into<String>) -> ApiError {
    ApiError::from(BrokerError::InvalidParameter {
        parameter: parameter.into(),
        reason: reason.into(),
    })
}

fn decode_body(body: String, encoding: BodyEncoding) -> Result<Bytes, ApiError> {
    match encoding {
        BodyEncoding::Text => Ok(Bytes::from(body)),
        BodyEncoding::Base64 => BASE64
            .decode(body.as_bytes())
            .map(Bytes::from)
            .map_err(|e| invalid_parameter("body", format!("not valid base64: {e}"))),
    }
}

fn decode_attribute(
    name: &str,
    wire: MessageAttributeWire,
) -> Result<MessageAttributeValue, ApiError> {
    let base = wire.data_type.split('.').next().unwrap_or_default();
    match base {
        "String" | "Number" => Ok(MessageAttributeValue {
            data_type: wire.data_type,
            string_value: Some(wire.value),
            binary_value: None,
        }),
        "Binary" => {
            let bytes = BASE64.decode(wire.value.as_bytes()).map_err(|e| {
                invalid_parameter(
                    &format!("attributes.{name}"),
                    format!("binary value is not valid base64: {e}"),
                )
            })?;
            Ok(MessageAttributeValue {
                data_type: wire.data_type,
                string_value: None,
                binary_value: Some(Bytes::from(bytes)),
            })
        }
        _ => Err(invalid_parameter(
            &format!("attributes.{name}"),
            format!(
                "type {:?} is not String, Number or Binary (optionally with a .suffix)",
                wire.data_type
            ),
        )),
    }
}

fn encode_attribute(value: &MessageAttributeValue) -> MessageAttributeWire {
    let value_text = match (&value.binary_value, &value.string_value) {
        (Some(bytes), _) => BASE64.encode(bytes),
        (None, Some(text)) => text.clone(),
        (None, None) => String::new(),
    };
    MessageAttributeWire {
        data_type: value.data_type.clone(),
        value: value_text,
    }
}

impl SendMessageWire {
    /// Decodes the wire message; the broker validates sizes and ranges.
    fn decode(self) -> Result<SendMessage, ApiError> {
        let attributes = self
            .attributes
            .into_iter()
            .map(|(name, wire)| decode_attribute(&name, wire).map(|v| (name, v)))
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        Ok(SendMessage {
            body: decode_body(self.body, self.body_encoding)?,
            attributes,
            system_attributes: BTreeMap::new(),
            delay_seconds: self.delay_seconds,
            group_id: self.group_id,
            deduplication_id: self.deduplication_id,
            priority: self.priority,
            ttl_seconds: self.ttl_seconds,
            sender_id: None,
            body_md5: None,
        })
    }
}

impl SendRequestRaw {
    /// One message (`Ok(Err(..))`) or a batch (`Ok(Ok(..))`).
    #[allow(clippy::type_complexity)]
    fn split(self) -> Result<Result<Vec<SendMessageWire>, SendMessageWire>, ApiError> {
        let single_fields = self.body.is_some()
            || self.body_encoding != BodyEncoding::Text
            || !self.attributes.is_empty()
            || self.delay_seconds.is_some()
            || self.group_id.is_some()
            || self.deduplication_id.is_some()
            || self.priority.is_some()
            || self.ttl_seconds.is_some();
        match (self.messages, self.body) {
            (Some(_), _) if single_fields => Err(ApiError::invalid(
                "give either one message (`body`, ...) or a batch (`messages`), not both",
            )),
            (Some(messages), _) => Ok(Ok(messages)),
            (None, Some(body)) => Ok(Err(SendMessageWire {
                body,
                body_encoding: self.body_encoding,
                attributes: self.attributes,
                delay_seconds: self.delay_seconds,
                group_id: self.group_id,
                deduplication_id: self.deduplication_id,
                priority: self.priority,
                ttl_seconds: self.ttl_seconds,
            })),
            (None, None) => Err(ApiError::invalid(
                "missing field `body` (or `messages` for a batch)",
            )),
        }
    }
}

fn encode_message(
    message: Message,
    receipt_handle: Option<String>,
    force_base64: bool,
) -> MessageWire {
    let (body, body_encoding) = match (force_base64, std::str::from_utf8(&message.body)) {
        (false, Ok(text)) => (text.to_string(), BodyEncoding::Text),
        _ => (BASE64.encode(&message.body), BodyEncoding::Base64),
    };
    MessageWire {
        message_id: message.message_id,
        receipt_handle,
        body,
        body_encoding,
        attributes: message
            .attributes
            .iter()
            .map(|(name, value)| (name.clone(), encode_attribute(value)))
            .collect(),
        sent_timestamp_ms: message.sent_timestamp_ms,
        receive_count: message.receive_count,
        first_receive_timestamp_ms: message.first_receive_timestamp_ms,
        sender_id: message.sender_id,
        group_id: message.group_id,
        deduplication_id: message.deduplication_id,
        sequence_number: message.sequence_number,
        priority: message.priority,
        dead_letter_source: message.dead_letter_source,
    }
}

fn send_entry(result: Result<SendOutcome, ApiError>) -> SendEntryResult {
    match result {
        Ok(outcome) => SendEntryResult {
            ok: true,
            message_id: Some(outcome.message_id),
            sequence_number: outcome.sequence_number,
            deduplicated: Some(outcome.deduplicated),
            error: None,
        },
        Err(err) => SendEntryResult {
            ok: false,
            message_id: None,
            sequence_number: None,
            deduplicated: None,
            error: Some(err.body),
        },
    }
}

fn entry(result: Result<(), BrokerError>) -> EntryResult {
    match result {
        Ok(()) => EntryResult {
            ok: true,
            error: None,
        },
        Err(err) => EntryResult {
            ok: false,
            error: Some(ApiError::from(err).body),
        },
    }
}

/// The broker returns one result per entry; a missing one is a broker fault, reported per entry.
fn nth_result<T>(results: Vec<Result<T, BrokerError>>) -> Result<T, ApiError> {
    results
        .into_iter()
        .next()
        .unwrap_or_else(|| {
            Err(BrokerError::Storage(
                "the broker returned no result for the entry".into(),
            ))
        })
        .map_err(ApiError::from)
}

/// Sends one message, or a batch of up to 100 with a result per entry. Entries that fail
/// (malformed, too large, ...) do not stop the others.
#[utoipa::path(post, path = "/v1/queues/{name}/messages", tag = "messages",
    params(("name" = String, Path, description = "Queue name")),
    request_body = SendRequest,
    responses(
        (status = 200, description = "One message: its id. A batch: a result per entry, in input order; `failed` counts the failures.", body = SendResponse),
        (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse),
        (status = 413, body = ErrorResponse)))]
pub async fn send(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<SendRequestRaw>,
) -> Result<Response, ApiError> {
    let broker = state.broker()?;
    match request.split()? {
        Err(single) => {
            let message = single.decode()?;
            let outcome = nth_result(broker.send(&name, vec![message]).await?)?;
            Ok(Json(SendResult {
                message_id: outcome.message_id,
                sequence_number: outcome.sequence_number,
                deduplicated: outcome.deduplicated,
            })
            .into_response())
        }
        Ok(batch) => {
            check_batch_size(batch.len())?;
            // Decode every entry; only the valid ones go to the broker, and the broker's
            // results are put back in their input positions.
            let decoded: Vec<Result<SendMessage, ApiError>> =
                batch.into_iter().map(SendMessageWire::decode).collect();
            let mut valid = Vec::with_capacity(decoded.len());
            let mut slots: Vec<Option<Result<SendOutcome, ApiError>>> =
                Vec::with_capacity(decoded.len());
            for item in decoded {
                match item {
                    Ok(message) => {
                        valid.push(message);
                        slots.push(None);
                    }
                    Err(err) => slots.push(Some(Err(err))),
                }
            }
            let mut sent = if valid.is_empty() {
                Vec::new()
            } else {
                broker.send(&name, valid).await?
            }
            .into_iter();
            let results: Vec<SendEntryResult> = slots
                .into_iter()
                .map(|slot| {
                    send_entry(slot.unwrap_or_else(|| {
                        sent.next()
                            .unwrap_or_else(|| {
                                Err(BrokerError::Storage(
                                    "the broker returned no result for the entry".into(),
                                ))
                            })
                            .map_err(ApiError::from)
                    }))
                })
                .collect();
            let failed = results.iter().filter(|r| !r.ok).count();
            Ok(Json(SendBatchResponse { results, failed }).into_response())
        }
    }
}

/// Receives up to `max` messages, waiting up to `wait` seconds for the first (long polling).
/// Returns an empty list when none arrived in time, or when the server shuts down.
#[utoipa::path(post, path = "/v1/queues/{name}/receive", tag = "messages",
    params(("name" = String, Path, description = "Queue name")),
    request_body = ReceiveRequestWire,
    responses((status = 200, body = MessagesResponse), (status = 400, body = ErrorResponse),
        (status = 404, body = ErrorResponse)))]
pub async fn receive(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<ReceiveRequestWire>,
) -> Result<Json<MessagesResponse>, ApiError> {
    let broker = state.broker()?;
    let max = request.max.unwrap_or(1);
    if !(1..=MAX_RECEIVE_MESSAGES).contains(&max) {
        return Err(invalid_parameter(
            "max",
            format!("must be between 1 and {MAX_RECEIVE_MESSAGES}"),
        ));
    }
    if request.wait.is_some_and(|w| w > MAX_WAIT_SECONDS) {
        return Err(invalid_parameter(
            "wait",
            format!("must be between 0 and {MAX_WAIT_SECONDS} seconds"),
        ));
    }
    let _poll = (request.wait != Some(0)).then(|| state.long_poll_guard());
    let received = broker
        .receive(
            &name,
            ReceiveRequest {
                max_messages: max,
                visibility_timeout_seconds: request.visibility_timeout,
                wait_seconds: request.wait,
                receive_request_attempt_id: request.attempt_id,
            },
        )
        .await;
    let received = match received {
        Ok(messages) => messages,
        // A poll woken by shutdown returns empty rather than an error.
        Err(BrokerError::ShuttingDown) => Vec::new(),
        Err(err) => return Err(err.into()),
    };
    let force_base64 = request.body_encoding == Some(BodyEncoding::Base64);
    Ok(Json(MessagesResponse {
        messages: received
            .into_iter()
            .map(
                |ReceivedMessage {
                     message,
                     receipt_handle,
                 }| { encode_message(message, Some(receipt_handle), force_base64) },
            )
            .collect(),
    }))
}

/// Up to `max` messages in delivery order, without receiving them.
#[utoipa::path(get, path = "/v1/queues/{name}/messages", tag = "messages",
    params(("name" = String, Path, description = "Queue name"), PeekQuery),
    responses((status = 200, body = MessagesResponse), (status = 404, body = ErrorResponse)))]
pub async fn peek(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<PeekQuery>,
) -> Result<Json<MessagesResponse>, ApiError> {
    let broker = state.broker()?;
    let max = query.max.unwrap_or(DEFAULT_PEEK_MESSAGES);
    if !(1..=MAX_PEEK_MESSAGES).contains(&max) {
        return Err(invalid_parameter(
            "max",
            format!("must be between 1 and {MAX_PEEK_MESSAGES}"),
        ));
    }
    let force_base64 = query.body_encoding == Some(BodyEncoding::Base64);
    Ok(Json(MessagesResponse {
        messages: broker
            .peek(&name, max)?
            .into_iter()
            .map(|m| encode_message(m, None, force_base64))
            .collect(),
    }))
}

/// Deletes received messages by receipt handle. A handle from an earlier delivery of a message
/// that was received again succeeds without deleting.
#[utoipa::path(post, path = "/v1/queues/{name}/messages/delete", tag = "messages",
    params(("name" = String, Path, description = "Queue name")),
    request_body = DeleteRequest,
    responses((status = 204, description = "Single handle deleted"),
        (status = 200, description = "Batch: a result per entry", body = BatchResponse),
        (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<DeleteRequest>,
) -> Result<Response, ApiError> {
    let broker = state.broker()?;
    match (request.receipt_handle, request.receipt_handles) {
        (Some(handle), None) => {
            nth_result(broker.delete_messages(&name, vec![handle]).await?)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (None, Some(handles)) => {
            check_batch_size(handles.len())?;
            let results: Vec<EntryResult> = broker
                .delete_messages(&name, handles)
                .await?
                .into_iter()
                .map(entry)
                .collect();
            let failed = results.iter().filter(|r| !r.ok).count();
            Ok(Json(BatchResponse { results, failed }).into_response())
        }
        _ => Err(ApiError::invalid(
            "give exactly one of `receipt_handle` or `receipt_handles`",
        )),
    }
}

/// Changes how long received messages stay invisible.
#[utoipa::path(post, path = "/v1/queues/{name}/messages/visibility", tag = "messages",
    params(("name" = String, Path, description = "Queue name")),
    request_body = VisibilityRequest,
    responses((status = 204, description = "Single change applied"),
        (status = 200, description = "Batch: a result per entry", body = BatchResponse),
        (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn change_visibility(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<VisibilityRequest>,
) -> Result<Response, ApiError> {
    let broker = state.broker()?;
    match (
        request.receipt_handle,
        request.visibility_timeout,
        request.changes,
    ) {
        (Some(receipt_handle), Some(visibility_timeout_seconds), None) => {
            let change = VisibilityChange {
                receipt_handle,
                visibility_timeout_seconds,
            };
            nth_result(broker.change_visibility(&name, vec![change]).await?)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (None, None, Some(changes)) => {
            check_batch_size(changes.len())?;
            let changes = changes
                .into_iter()
                .map(|c| VisibilityChange {
                    receipt_handle: c.receipt_handle,
                    visibility_timeout_seconds: c.visibility_timeout,
                })
                .collect();
            let results: Vec<EntryResult> = broker
                .change_visibility(&name, changes)
                .await?
                .into_iter()
                .map(entry)
                .collect();
            let failed = results.iter().filter(|r| !r.ok).count();
            Ok(Json(BatchResponse { results, failed }).into_response())
        }
        _ => Err(ApiError::invalid(
            "give `receipt_handle` and `visibility_timeout`, or `changes`",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_bodies_round_trip_as_base64() {
        let wire = SendMessageWire {
            body: BASE64.encode([0xff, 0x00, 0x10]),
            body_encoding: BodyEncoding::Base64,
            attributes: BTreeMap::from([(
                "blob".to_string(),
                MessageAttributeWire {
                    data_type: "Binary.png".into(),
                    value: BASE64.encode([1, 2, 3]),
                },
            )]),
            delay_seconds: None,
            group_id: None,
            deduplication_id: None,
            priority: None,
            ttl_seconds: None,
        };
        let message = wire.decode().unwrap();
        assert_eq!(&message.body[..], &[0xff, 0x00, 0x10]);
        let stored = Message {
            message_id: "m".into(),
            body: message.body.clone(),
            attributes: message.attributes.clone(),
            system_attributes: BTreeMap::new(),
            sent_timestamp_ms: 1,
            receive_count: 1,
            first_receive_timestamp_ms: 1,
            sender_id: None,
            group_id: None,
            deduplication_id: None,
            sequence_number: None,
            priority: 0,
            dead_letter_source: None,
            body_md5: None,
        };
        let out = encode_message(stored.clone(), None, false);
        assert_eq!(out.body_encoding, BodyEncoding::Base64);
        assert_eq!(BASE64.decode(out.body).unwrap(), vec![0xff, 0x00, 0x10]);
        assert_eq!(out.attributes["blob"].value, BASE64.encode([1, 2, 3]));

        let text = Message {
            body: Bytes::from_static(b"hello"),
            ..stored
        };
        let out = encode_message(text, None, false);
        assert_eq!(
            (out.body.as_str(), out.body_encoding),
            ("hello", BodyEncoding::Text)
        );
    }

    #[test]
    fn bad_attribute_types_and_base64_are_refused() {
        let bad_type = MessageAttributeWire {
            data_type: "Blob".into(),
            value: "x".into(),
        };
        assert_eq!(
            decode_attribute("a", bad_type).unwrap_err().body.code,
            ErrorCode::InvalidParameter
        );
        assert!(decode_body("!!".into(), BodyEncoding::Base64).is_err());
    }

    #[test]
    fn send_request_is_single_or_batch_not_both() {
        let parse = |json: &str| {
            serde_json::from_str::<SendRequestRaw>(json)
                .unwrap()
                .split()
        };
        assert!(matches!(parse(r#"{"body":"x"}"#), Ok(Err(_))));
        assert!(matches!(parse(r#"{"messages":[{"body":"x"}]}"#), Ok(Ok(_))));
        assert!(parse(r#"{"messages":[],"body":"x"}"#).is_err());
        assert!(parse(r#"{}"#).is_err());
    }
}
