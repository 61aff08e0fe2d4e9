//! Topic resources: create, list, describe, delete, subscriptions (with filter policies) and
//! publish.
//!
//! ```text
//! POST   /v1/topics                                {"name","fifo"?,"content_based_deduplication"?,"display_name"?,"tags"?}
//! GET    /v1/topics                                {"topics":["a","b"]}
//! GET    /v1/topics/{name}                         attributes, counts, stats
//! DELETE /v1/topics/{name}
//! POST   /v1/topics/{name}/subscriptions           {"queue":"orders"}, {"stream":"events"} or {"protocol":"http","endpoint":"http://…"},
//!                                                  "filter_policy"?:{..},"filter_policy_scope"?,"raw_message_delivery"?,
//!                                                  "dead_letter_queue"?,"delivery_policy"?:{..}
//! GET    /v1/topics/{name}/subscriptions           {"subscriptions":[..]}
//! DELETE /v1/topics/{name}/subscriptions/{id}
//! POST   /v1/topics/{name}/publish                 {"message","subject"?,"attributes"?,"group_id"?,"deduplication_id"?}
//! POST   /v1/topics/{name}/publish-batch           {"messages":[{"message",..},..]} (1..=10, SNS PublishBatch's limits)
//!                                                  → {"results":[{"ok":true,"message_id"}|{"ok":false,"error"}],"failed":n}
//! ```

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine;
use ferry_broker::topic::filter::FilterPolicyScope;
use ferry_broker::topic::{
    Protocol, PublishOutcome, PublishRequest, Subscription, SubscriptionAttributes,
    TopicAttributes, TopicError, TopicInfo, TopicStats, MAX_BATCH, MAX_MESSAGE_BYTES,
};
use ferry_broker::MessageAttributeValue;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, ErrorCode, ErrorResponse};
use super::extract::{ApiJson, ApiPath};
use super::messages::MessageAttributeWire;
use super::AppState;

impl From<TopicError> for ApiError {
    fn from(e: TopicError) -> ApiError {
        let message = e.to_string();
        match e {
            TopicError::TopicNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::TopicNotFound, message)
            }
            TopicError::SubscriptionNotFound(_) => ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::SubscriptionNotFound,
                message,
            ),
            TopicError::InvalidParameter { .. }
            | TopicError::InvalidFilterPolicy(_)
            | TopicError::Unsupported(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidParameter,
                message,
            ),
            TopicError::LimitExceeded(_) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::InvalidParameter,
                message,
            ),
            TopicError::Broker(b) => ApiError::from(b),
        }
    }
}

/// `POST /v1/topics`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTopicRequest {
    pub name: String,
    /// Name must end in `.fifo`.
    #[serde(default)]
    pub fifo: bool,
    #[serde(default)]
    pub content_based_deduplication: bool,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A subscription as the native API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionWire {
    pub id: String,
    pub arn: String,
    /// `sqs`, `http`, `https` or `stream`.
    pub protocol: String,
    /// The queue ARN (sqs), URL (http, https) or stream name (stream).
    pub endpoint: String,
    /// sqs: the queue's name.
    pub queue: Option<String>,
    /// stream: the stream's name.
    pub stream: Option<String>,
    pub confirmed: bool,
    pub raw_message_delivery: bool,
    #[schema(value_type = Option<Object>)]
    pub filter_policy: Option<serde_json::Value>,
    /// `MessageAttributes` or `MessageBody`.
    pub filter_policy_scope: String,
    pub dead_letter_queue: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub delivery_policy: Option<serde_json::Value>,
}

/// Counters of one subscription.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionStatsWire {
    pub id: String,
    pub delivered: u64,
    pub filtered_out: u64,
    pub failed: u64,
    pub dead_lettered: u64,
}

/// A topic as the native API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TopicWire {
    pub name: String,
    pub arn: String,
    pub fifo: bool,
    pub content_based_deduplication: bool,
    pub display_name: String,
    pub tags: BTreeMap<String, String>,
    pub created_timestamp_ms: u64,
    pub subscriptions_confirmed: u64,
    pub subscriptions_pending: u64,
    pub published: u64,
    pub subscriptions: Vec<SubscriptionStatsWire>,
}

fn topic_wire(info: TopicInfo, stats: Option<TopicStats>) -> TopicWire {
    let stats = stats.unwrap_or_default();
    TopicWire {
        name: info.name,
        arn: info.arn,
        fifo: info.attributes.fifo,
        content_based_deduplication: info.attributes.content_based_deduplication,
        display_name: info.attributes.display_name,
        tags: info.tags,
        created_timestamp_ms: info.created_timestamp_ms,
        subscriptions_confirmed: info.subscriptions_confirmed,
        subscriptions_pending: info.subscriptions_pending,
        published: stats.published,
        subscriptions: stats
            .subscriptions
            .into_iter()
            .map(|s| SubscriptionStatsWire {
                id: s.id,
                delivered: s.delivered,
                filtered_out: s.filtered_out,
                failed: s.failed,
                dead_lettered: s.dead_lettered,
            })
            .collect(),
    }
}

fn subscription_wire(state_arn: String, s: Subscription) -> SubscriptionWire {
    let json = |t: &Option<String>| t.as_deref().and_then(|p| serde_json::from_str(p).ok());
    SubscriptionWire {
        id: s.id,
        arn: state_arn,
        protocol: s.protocol.as_str().to_string(),
        stream: (s.protocol == Protocol::Stream).then(|| s.endpoint.clone()),
        endpoint: s.endpoint,
        queue: s.queue,
        confirmed: s.confirmed,
        raw_message_delivery: s.attributes.raw_message_delivery,
        filter_policy: json(&s.attributes.filter_policy),
        filter_policy_scope: s.attributes.filter_policy_scope.as_str().to_string(),
        dead_letter_queue: s.attributes.dead_letter_queue,
        delivery_policy: json(&s.attributes.delivery_policy),
    }
}

/// `{"topics": ["a", "b"]}`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TopicListResponse {
    pub topics: Vec<String>,
}

/// `{"subscriptions": [..]}`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionListResponse {
    pub subscriptions: Vec<SubscriptionWire>,
}

/// `POST /v1/topics/{name}/subscriptions`: give `queue` (an SQS subscription to a Ferry queue),
/// `stream` (a stream subscription: one record per message) or `protocol` and `endpoint`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeRequest {
    pub queue: Option<String>,
    /// The name of an existing stream.
    pub stream: Option<String>,
    pub protocol: Option<String>,
    pub endpoint: Option<String>,
    /// An SNS filter policy (JSON object).
    #[schema(value_type = Option<Object>)]
    pub filter_policy: Option<serde_json::Value>,
    /// `MessageAttributes` (default) or `MessageBody`.
    pub filter_policy_scope: Option<String>,
    #[serde(default)]
    pub raw_message_delivery: bool,
    /// Queue for notifications that cannot be delivered.
    pub dead_letter_queue: Option<String>,
    /// HTTP retry policy: `{"healthyRetryPolicy": {"numRetries", "minDelayTarget", "maxDelayTarget", "backoffFunction"}}`.
    #[schema(value_type = Option<Object>)]
    pub delivery_policy: Option<serde_json::Value>,
}

/// `POST /v1/topics/{name}/publish`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishWire {
    pub message: String,
    pub subject: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, MessageAttributeWire>,
    /// FIFO topics.
    pub group_id: Option<String>,
    pub deduplication_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublishResponse {
    pub message_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<String>,
}

fn stats_of(state: &AppState, name: &str) -> Option<TopicStats> {
    state
        .topics_if_open()?
        .stats()
        .into_iter()
        .find(|t| t.name == name)
}

/// Creates a topic (idempotent with equal attributes).
#[utoipa::path(post, path = "/v1/topics", tag = "topics", request_body = CreateTopicRequest,
    responses((status = 201, body = TopicWire), (status = 400, body = ErrorResponse)))]
pub async fn create_topic(
    State(state): State<AppState>,
    ApiJson(r): ApiJson<CreateTopicRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let topics = state.topics()?;
    let attributes = TopicAttributes {
        fifo: r.fifo,
        content_based_deduplication: r.content_based_deduplication,
        display_name: r.display_name,
        ..Default::default()
    };
    let info = topics.create_topic(&r.name, attributes, r.tags)?;
    let stats = stats_of(&state, &r.name);
    Ok((StatusCode::CREATED, Json(topic_wire(info, stats))))
}

/// Topic names in lexicographic order.
#[utoipa::path(get, path = "/v1/topics", tag = "topics", responses((status = 200, body = TopicListResponse)))]
pub async fn list_topics(
    State(state): State<AppState>,
) -> Result<Json<TopicListResponse>, ApiError> {
    Ok(Json(TopicListResponse {
        topics: state.topics()?.list_topics(),
    }))
}

/// A topic's attributes and counters.
#[utoipa::path(get, path = "/v1/topics/{name}", tag = "topics",
    params(("name" = String, Path, description = "Topic name")),
    responses((status = 200, body = TopicWire), (status = 404, body = ErrorResponse)))]
pub async fn get_topic(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<TopicWire>, ApiError> {
    let info = state.topics()?.get_topic(&name)?;
    Ok(Json(topic_wire(info, stats_of(&state, &name))))
}

/// Deletes a topic and its subscriptions.
#[utoipa::path(delete, path = "/v1/topics/{name}", tag = "topics",
    params(("name" = String, Path, description = "Topic name")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_topic(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.topics()?.delete_topic(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Subscribes a queue, a stream or an HTTP(S) endpoint.
#[utoipa::path(post, path = "/v1/topics/{name}/subscriptions", tag = "topics", request_body = SubscribeRequest,
    params(("name" = String, Path, description = "Topic name")),
    responses((status = 201, body = SubscriptionWire), (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn subscribe(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(r): ApiJson<SubscribeRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let topics = state.topics()?;
    let (protocol, endpoint) = match (&r.queue, &r.stream, &r.protocol, &r.endpoint) {
        (Some(q), None, None, None) => ("sqs".to_string(), topics.queue_arn(q)),
        (None, Some(s), None, None) => ("stream".to_string(), s.clone()),
        (None, None, Some(p), Some(e)) => (p.clone(), e.clone()),
        _ => {
            return Err(ApiError::invalid(
                "give either \"queue\", \"stream\", or \"protocol\" and \"endpoint\"",
            ))
        }
    };
    let scope = match r.filter_policy_scope.as_deref() {
        None => FilterPolicyScope::MessageAttributes,
        Some(s) => FilterPolicyScope::parse(s).ok_or_else(|| {
            ApiError::invalid("filter_policy_scope must be MessageAttributes or MessageBody")
        })?,
    };
    let attributes = SubscriptionAttributes {
        raw_message_delivery: r.raw_message_delivery,
        filter_policy: r.filter_policy.map(|p| p.to_string()),
        filter_policy_scope: scope,
        redrive_policy: r
            .dead_letter_queue
            .as_ref()
            .map(|q| serde_json::json!({"deadLetterTargetArn": topics.queue_arn(q)}).to_string()),
        delivery_policy: r.delivery_policy.map(|p| p.to_string()),
        ..Default::default()
    };
    let s = topics.subscribe(&name, &protocol, &endpoint, attributes)?;
    let arn = topics.subscription_arn(&s.topic, &s.id);
    Ok((StatusCode::CREATED, Json(subscription_wire(arn, s))))
}

/// The topic's subscriptions.
#[utoipa::path(get, path = "/v1/topics/{name}/subscriptions", tag = "topics",
    params(("name" = String, Path, description = "Topic name")),
    responses((status = 200, body = SubscriptionListResponse), (status = 404, body = ErrorResponse)))]
pub async fn list_subscriptions(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<SubscriptionListResponse>, ApiError> {
    let topics = state.topics()?;
    let subscriptions = topics
        .list_subscriptions(Some(&name))?
        .into_iter()
        .map(|s| subscription_wire(topics.subscription_arn(&s.topic, &s.id), s))
        .collect();
    Ok(Json(SubscriptionListResponse { subscriptions }))
}

/// Removes a subscription.
#[utoipa::path(delete, path = "/v1/topics/{name}/subscriptions/{id}", tag = "topics",
    params(("name" = String, Path, description = "Topic name"), ("id" = String, Path, description = "Subscription id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorResponse)))]
pub async fn unsubscribe(
    State(state): State<AppState>,
    ApiPath((name, id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.topics()?.unsubscribe(&name, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

impl PublishWire {
    /// The broker's request; binary attribute values are base64 on the wire.
    fn decode(self) -> Result<PublishRequest, ApiError> {
        let mut attributes = BTreeMap::new();
        for (k, a) in self.attributes {
            let binary = a.data_type.starts_with("Binary");
            let value = if binary {
                let b = base64::engine::general_purpose::STANDARD
                    .decode(a.value.as_bytes())
                    .map_err(|e| {
                        ApiError::invalid(format!(
                            "attributes.{k}: binary value is not valid base64: {e}"
                        ))
                    })?;
                MessageAttributeValue {
                    data_type: a.data_type,
                    string_value: None,
                    binary_value: Some(b.into()),
                }
            } else {
                MessageAttributeValue {
                    data_type: a.data_type,
                    string_value: Some(a.value),
                    binary_value: None,
                }
            };
            attributes.insert(k, value);
        }
        Ok(PublishRequest {
            message: self.message,
            subject: self.subject,
            attributes,
            message_structure_json: false,
            group_id: self.group_id,
            deduplication_id: self.deduplication_id,
        })
    }
}

/// Publishes a message: every matching subscription has it durably when this returns.
#[utoipa::path(post, path = "/v1/topics/{name}/publish", tag = "topics", request_body = PublishWire,
    params(("name" = String, Path, description = "Topic name")),
    responses((status = 200, body = PublishResponse), (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn publish(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(r): ApiJson<PublishWire>,
) -> Result<Json<PublishResponse>, ApiError> {
    let topics = state.topics()?;
    let out = topics.publish(&name, r.decode()?).await?;
    Ok(Json(PublishResponse {
        message_id: out.message_id,
        sequence_number: out.sequence_number,
    }))
}

/// `POST /v1/topics/{name}/publish-batch`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBatchWire {
    /// 1..=10 messages whose `message`s total at most 256 KiB (SNS PublishBatch's limits).
    pub messages: Vec<PublishWire>,
}

/// One entry of a publish batch: `ok` with the message id, or the entry's error.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublishEntryResult {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// Batch results in input order; `failed` counts the entries with an error.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublishBatchResponse {
    pub results: Vec<PublishEntryResult>,
    pub failed: usize,
}

fn publish_entry(result: Result<PublishOutcome, ApiError>) -> PublishEntryResult {
    match result {
        Ok(out) => PublishEntryResult {
            ok: true,
            message_id: Some(out.message_id),
            sequence_number: out.sequence_number,
            error: None,
        },
        Err(err) => PublishEntryResult {
            ok: false,
            message_id: None,
            sequence_number: None,
            error: Some(err.body),
        },
    }
}

/// Publishes up to 10 messages with a result per entry, as SNS PublishBatch. Entries of a
/// standard topic are published concurrently, so they share group commits; a FIFO topic's are
/// published in input order. Each successful entry is durably in every matching subscription
/// when this returns; a failed entry does not stop the others.
#[utoipa::path(post, path = "/v1/topics/{name}/publish-batch", tag = "topics", request_body = PublishBatchWire,
    params(("name" = String, Path, description = "Topic name")),
    responses(
        (status = 200, description = "A result per entry, in input order; `failed` counts the failures.", body = PublishBatchResponse),
        (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn publish_batch(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(r): ApiJson<PublishBatchWire>,
) -> Result<Json<PublishBatchResponse>, ApiError> {
    let topics = state.topics()?;
    let n = r.messages.len();
    if n == 0 || n > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidBatch,
            format!("a publish batch holds 1 to {MAX_BATCH} messages, not {n}"),
        ));
    }
    let total: usize = r.messages.iter().map(|m| m.message.len()).sum();
    if total > MAX_MESSAGE_BYTES {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidBatch,
            format!(
                "the batch's messages total {total} bytes, more than the limit ({MAX_MESSAGE_BYTES})"
            ),
        ));
    }
    // Messages that decode go to the topic together (one intent append, one send per queue);
    // the others keep their decoding error, in place.
    // Each entry's decoding error, in place (`None`: it decoded and is published).
    let mut valid = Vec::with_capacity(n);
    let refused: Vec<Option<ApiError>> = r
        .messages
        .into_iter()
        .map(|m| m.decode().map(|request| valid.push(request)).err())
        .collect();
    let mut published = topics.publish_batch(&name, valid).await?.into_iter();
    let outcomes: Vec<Result<PublishOutcome, ApiError>> = refused
        .into_iter()
        .map(|refusal| match refusal {
            None => published
                .next()
                .expect("one outcome per published message")
                .map_err(ApiError::from),
            Some(e) => Err(e),
        })
        .collect();
    let results: Vec<PublishEntryResult> = outcomes.into_iter().map(publish_entry).collect();
    let failed = results.iter().filter(|r| !r.ok).count();
    Ok(Json(PublishBatchResponse { results, failed }))
}
