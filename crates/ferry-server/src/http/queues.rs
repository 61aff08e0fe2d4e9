//! Queue resources: create, list, describe, update attributes, delete, purge, tags and
//! dead-letter source queues.
//!
//! ```text
//! POST   /v1/queues                              {"name","attributes":{..},"tags":{..}}
//! GET    /v1/queues?prefix=                      {"queues":["a","b"]}
//! GET    /v1/queues/{name}                       attributes, tags and stats
//! PATCH  /v1/queues/{name}                       {"attributes":{..}}
//! DELETE /v1/queues/{name}
//! POST   /v1/queues/{name}/purge                 {"purged": n}
//! GET    /v1/queues/{name}/tags                  {"tags":{..}}
//! POST   /v1/queues/{name}/tags                  {"tags":{..}} (merged)
//! DELETE /v1/queues/{name}/tags/{key}
//! GET    /v1/queues/{name}/dead-letter-sources   {"queues":[..]}
//! ```

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use ferry_broker::{
    DeduplicationScope, FifoThroughputLimit, OverflowPolicy, QueueAttributes, QueueDurability,
    QueueInfo, QueueStats, RedriveAllowPolicy, RedrivePolicy,
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorResponse};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::AppState;

/// `{"dead_letter_queue": "orders-dlq", "max_receive_count": 5}`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedrivePolicyWire {
    pub dead_letter_queue: String,
    /// 1..=1000.
    pub max_receive_count: u32,
}

/// `{"permission": "allow_all" | "deny_all" | "by_queue", "source_queues": [..]}`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveAllowPolicyWire {
    pub permission: RedrivePermission,
    /// Only with `by_queue`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_queues: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RedrivePermission {
    AllowAll,
    DenyAll,
    ByQueue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeduplicationScopeWire {
    Queue,
    MessageGroup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FifoThroughputLimitWire {
    PerQueue,
    PerMessageGroupId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicyWire {
    RejectNew,
    DropOldest,
    DeadLetterOldest,
}

/// Attributes given on create or update. Absent fields keep their default (create) or current
/// value (update); `null` clears the optional ones.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueAttributesInput {
    /// 0..=43200, default 30.
    pub visibility_timeout_seconds: Option<u32>,
    /// 0..=900, default 0.
    pub delay_seconds: Option<u32>,
    /// 60..=1209600, default 345600 (4 days).
    pub message_retention_seconds: Option<u32>,
    /// 1024..=1048576, default 262144.
    pub maximum_message_size: Option<u32>,
    /// 0..=20, default 0: the long-poll wait when a receive gives none.
    pub receive_message_wait_seconds: Option<u32>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<RedrivePolicyWire>, nullable)]
    pub redrive_policy: Option<Option<RedrivePolicyWire>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<RedriveAllowPolicyWire>, nullable)]
    pub redrive_allow_policy: Option<Option<RedriveAllowPolicyWire>>,
    /// FIFO queue (name must end in `.fifo`); fixed at creation.
    pub fifo: Option<bool>,
    pub content_based_deduplication: Option<bool>,
    pub deduplication_scope: Option<DeduplicationScopeWire>,
    pub fifo_throughput_limit: Option<FifoThroughputLimitWire>,
    /// Most messages the queue holds; `null` = unbounded.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>, nullable)]
    pub max_length: Option<Option<u64>>,
    pub overflow_policy: Option<OverflowPolicyWire>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>, nullable)]
    pub message_ttl_seconds: Option<Option<u32>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>, nullable)]
    pub idle_delete_seconds: Option<Option<u32>>,
    /// `always`, `interval:<ms>` or `never`; `null` = the server default.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    pub durability: Option<Option<String>>,
    /// Attributes stored and reported but not interpreted.
    pub opaque: Option<BTreeMap<String, String>>,
}

/// A queue's complete attributes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueAttributesOutput {
    pub visibility_timeout_seconds: u32,
    pub delay_seconds: u32,
    pub message_retention_seconds: u32,
    pub maximum_message_size: u32,
    pub receive_message_wait_seconds: u32,
    pub redrive_policy: Option<RedrivePolicyWire>,
    pub redrive_allow_policy: Option<RedriveAllowPolicyWire>,
    pub fifo: bool,
    pub content_based_deduplication: bool,
    pub deduplication_scope: DeduplicationScopeWire,
    pub fifo_throughput_limit: FifoThroughputLimitWire,
    pub max_length: Option<u64>,
    pub overflow_policy: OverflowPolicyWire,
    pub message_ttl_seconds: Option<u32>,
    pub idle_delete_seconds: Option<u32>,
    /// `null` = the server default.
    pub durability: Option<String>,
    pub opaque: BTreeMap<String, String>,
}

/// Counts and lifetime counters of a queue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueStatsWire {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub oldest_age_ms: u64,
    pub sent_total: u64,
    pub received_total: u64,
    pub deleted_total: u64,
    pub expired_total: u64,
    pub dead_lettered_total: u64,
    pub dropped_total: u64,
    pub disk_bytes: u64,
}

/// A queue as described by `GET /v1/queues/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueResponse {
    pub name: String,
    pub attributes: QueueAttributesOutput,
    pub tags: BTreeMap<String, String>,
    pub created_timestamp_ms: u64,
    pub last_modified_timestamp_ms: u64,
    pub stats: QueueStatsWire,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateQueueRequest {
    pub name: String,
    #[serde(default)]
    pub attributes: QueueAttributesInput,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateQueueRequest {
    pub attributes: QueueAttributesInput,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQueuesQuery {
    /// Only queues whose name starts with this.
    pub prefix: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueNames {
    pub queues: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PurgeResponse {
    pub purged: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tags {
    pub tags: BTreeMap<String, String>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl QueueAttributesInput {
    /// Applies the given fields onto `attrs`. Fails only on values the wire format itself
    /// rejects (the durability syntax); ranges are validated by the broker.
    fn apply(self, attrs: &mut QueueAttributes) -> Result<(), ApiError> {
        let durability = match self.durability {
            Some(Some(text)) => Some(Some(parse_queue_durability(&text)?)),
            Some(None) => Some(None),
            None => None,
        };
        if let Some(v) = self.visibility_timeout_seconds {
            attrs.visibility_timeout_seconds = v;
        }
        if let Some(v) = self.delay_seconds {
            attrs.delay_seconds = v;
        }
        if let Some(v) = self.message_retention_seconds {
            attrs.message_retention_seconds = v;
        }
        if let Some(v) = self.maximum_message_size {
            attrs.maximum_message_size = v;
        }
        if let Some(v) = self.receive_message_wait_seconds {
            attrs.receive_message_wait_seconds = v;
        }
        if let Some(v) = self.redrive_policy {
            attrs.redrive_policy = v.map(|p| RedrivePolicy {
                dead_letter_queue: p.dead_letter_queue,
                max_receive_count: p.max_receive_count,
            });
        }
        if let Some(v) = self.redrive_allow_policy {
            attrs.redrive_allow_policy = v.map(|p| match p.permission {
                RedrivePermission::AllowAll => RedriveAllowPolicy::AllowAll,
                RedrivePermission::DenyAll => RedriveAllowPolicy::DenyAll,
                RedrivePermission::ByQueue => RedriveAllowPolicy::ByQueue(p.source_queues),
            });
        }
        if let Some(v) = self.fifo {
            attrs.fifo = v;
        }
        if let Some(v) = self.content_based_deduplication {
            attrs.content_based_deduplication = v;
        }
        if let Some(v) = self.deduplication_scope {
            attrs.deduplication_scope = match v {
                DeduplicationScopeWire::Queue => DeduplicationScope::Queue,
                DeduplicationScopeWire::MessageGroup => DeduplicationScope::MessageGroup,
            };
        }
        if let Some(v) = self.fifo_throughput_limit {
            attrs.fifo_throughput_limit = match v {
                FifoThroughputLimitWire::PerQueue => FifoThroughputLimit::PerQueue,
                FifoThroughputLimitWire::PerMessageGroupId => {
                    FifoThroughputLimit::PerMessageGroupId
                }
            };
        }
        if let Some(v) = self.max_length {
            attrs.max_length = v;
        }
        if let Some(v) = self.overflow_policy {
            attrs.overflow_policy = match v {
                OverflowPolicyWire::RejectNew => OverflowPolicy::RejectNew,
                OverflowPolicyWire::DropOldest => OverflowPolicy::DropOldest,
                OverflowPolicyWire::DeadLetterOldest => OverflowPolicy::DeadLetterOldest,
            };
        }
        if let Some(v) = self.message_ttl_seconds {
            attrs.message_ttl_seconds = v;
        }
        if let Some(v) = self.idle_delete_seconds {
            attrs.idle_delete_seconds = v;
        }
        if let Some(v) = durability {
            attrs.durability = v;
        }
        if let Some(v) = self.opaque {
            attrs.opaque = v;
        }
        Ok(())
    }
}

/// Same syntax as the server's `--durability`.
fn parse_queue_durability(text: &str) -> Result<QueueDurability, ApiError> {
    let invalid = |reason: String| {
        ApiError::from(ferry_broker::BrokerError::InvalidAttributeValue {
            attribute: "durability".into(),
            reason,
        })
    };
    match crate::config::parse_durability(text).map_err(invalid)? {
        crate::config::Durability::Always => Ok(QueueDurability::Always),
        crate::config::Durability::Never => Ok(QueueDurability::Never),
        crate::config::Durability::Interval(d) => u32::try_from(d.as_millis())
            .map(QueueDurability::IntervalMs)
            .map_err(|_| invalid("interval too long".into())),
    }
}

fn durability_text(d: QueueDurability) -> String {
    match d {
        QueueDurability::Always => "always".into(),
        QueueDurability::IntervalMs(ms) => format!("interval:{ms}"),
        QueueDurability::Never => "never".into(),
    }
}

impl From<&QueueAttributes> for QueueAttributesOutput {
    fn from(a: &QueueAttributes) -> Self {
        QueueAttributesOutput {
            visibility_timeout_seconds: a.visibility_timeout_seconds,
            delay_seconds: a.delay_seconds,
            message_retention_seconds: a.message_retention_seconds,
            maximum_message_size: a.maximum_message_size,
            receive_message_wait_seconds: a.receive_message_wait_seconds,
            redrive_policy: a.redrive_policy.as_ref().map(|p| RedrivePolicyWire {
                dead_letter_queue: p.dead_letter_queue.clone(),
                max_receive_count: p.max_receive_count,
            }),
            redrive_allow_policy: a.redrive_allow_policy.as_ref().map(|p| match p {
                RedriveAllowPolicy::AllowAll => RedriveAllowPolicyWire {
                    permission: RedrivePermission::AllowAll,
                    source_queues: vec![],
                },
                RedriveAllowPolicy::DenyAll => RedriveAllowPolicyWire {
                    permission: RedrivePermission::DenyAll,
                    source_queues: vec![],
                },
                RedriveAllowPolicy::ByQueue(queues) => RedriveAllowPolicyWire {
                    permission: RedrivePermission::ByQueue,
                    source_queues: queues.clone(),
                },
            }),
            fifo: a.fifo,
            content_based_deduplication: a.content_based_deduplication,
            deduplication_scope: match a.deduplication_scope {
                DeduplicationScope::Queue => DeduplicationScopeWire::Queue,
                DeduplicationScope::MessageGroup => DeduplicationScopeWire::MessageGroup,
            },
            fifo_throughput_limit: match a.fifo_throughput_limit {
                FifoThroughputLimit::PerQueue => FifoThroughputLimitWire::PerQueue,
                FifoThroughputLimit::PerMessageGroupId => {
                    FifoThroughputLimitWire::PerMessageGroupId
                }
            },
            max_length: a.max_length,
            overflow_policy: match a.overflow_policy {
                OverflowPolicy::RejectNew => OverflowPolicyWire::RejectNew,
                OverflowPolicy::DropOldest => OverflowPolicyWire::DropOldest,
                OverflowPolicy::DeadLetterOldest => OverflowPolicyWire::DeadLetterOldest,
            },
            message_ttl_seconds: a.message_ttl_seconds,
            idle_delete_seconds: a.idle_delete_seconds,
            durability: a.durability.map(durability_text),
            opaque: a.opaque.clone(),
        }
    }
}

impl From<&QueueStats> for QueueStatsWire {
    fn from(s: &QueueStats) -> Self {
        QueueStatsWire {
            visible: s.visible,
            in_flight: s.in_flight,
            delayed: s.delayed,
            oldest_age_ms: s.oldest_age_ms,
            sent_total: s.sent_total,
            received_total: s.received_total,
            deleted_total: s.deleted_total,
            expired_total: s.expired_total,
            dead_lettered_total: s.dead_lettered_total,
            dropped_total: s.dropped_total,
            disk_bytes: s.disk_bytes,
        }
    }
}

impl From<QueueInfo> for QueueResponse {
    fn from(info: QueueInfo) -> Self {
        QueueResponse {
            attributes: QueueAttributesOutput::from(&info.attributes),
            stats: QueueStatsWire::from(&info.stats),
            name: info.name,
            tags: info.tags,
            created_timestamp_ms: info.created_timestamp_ms,
            last_modified_timestamp_ms: info.last_modified_timestamp_ms,
        }
    }
}

/// Creates a queue. Idempotent: creating an existing queue with the same attributes returns
/// 200 and the queue; different attributes get 409 `QueueAlreadyExists`.
#[utoipa::path(post, path = "/v1/queues", tag = "queues",
    request_body = CreateQueueRequest,
    responses(
        (status = 201, description = "Created", body = QueueResponse),
        (status = 200, description = "Already existed with the same attributes", body = QueueResponse),
        (status = 400, body = ErrorResponse),
        (status = 409, description = "Exists with different attributes", body = ErrorResponse),
    ))]
pub async fn create_queue(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateQueueRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let broker = state.broker()?;
    let mut attributes = QueueAttributes::default();
    request.attributes.apply(&mut attributes)?;
    let existed = broker.get_queue(&request.name).is_ok();
    let info = broker.create_queue(&request.name, attributes, request.tags)?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(QueueResponse::from(info))))
}

/// Queue names in lexicographic order.
#[utoipa::path(get, path = "/v1/queues", tag = "queues", params(ListQueuesQuery),
    responses((status = 200, body = QueueNames)))]
pub async fn list_queues(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQueuesQuery>,
) -> Result<Json<QueueNames>, ApiError> {
    let broker = state.broker()?;
    Ok(Json(QueueNames {
        queues: broker.list_queues(query.prefix.as_deref()),
    }))
}

/// A queue's attributes, tags and current stats.
#[utoipa::path(get, path = "/v1/queues/{name}", tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, body = QueueResponse), (status = 404, body = ErrorResponse)))]
pub async fn get_queue(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<QueueResponse>, ApiError> {
    let broker = state.broker()?;
    Ok(Json(broker.get_queue(&name)?.into()))
}

/// Changes some attributes; the others keep their values.
#[utoipa::path(patch, path = "/v1/queues/{name}", tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    request_body = UpdateQueueRequest,
    responses((status = 200, body = QueueResponse), (status = 400, body = ErrorResponse),
        (status = 404, body = ErrorResponse)))]
pub async fn update_queue(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<UpdateQueueRequest>,
) -> Result<Json<QueueResponse>, ApiError> {
    let broker = state.broker()?;
    // Validate the wire-level syntax first, so the broker's closure cannot fail.
    let mut probe = QueueAttributes::default();
    request.attributes.clone().apply(&mut probe)?;
    let info = broker.update_queue_attributes(&name, move |attrs| {
        // Cannot fail: the same input was applied successfully above.
        let _ = request.attributes.apply(attrs);
    })?;
    Ok(Json(info.into()))
}

/// Deletes a queue and its messages.
#[utoipa::path(delete, path = "/v1/queues/{name}", tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorResponse)))]
pub async fn delete_queue(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let broker = state.broker()?;
    broker.delete_queue(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes every message of a queue.
#[utoipa::path(post, path = "/v1/queues/{name}/purge", tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, body = PurgeResponse), (status = 404, body = ErrorResponse)))]
pub async fn purge_queue(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<PurgeResponse>, ApiError> {
    let broker = state.broker()?;
    let purged = broker.purge(&name).await?;
    Ok(Json(PurgeResponse { purged }))
}

/// A queue's tags.
#[utoipa::path(get, path = "/v1/queues/{name}/tags", tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, body = Tags), (status = 404, body = ErrorResponse)))]
pub async fn get_tags(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Tags>, ApiError> {
    let broker = state.broker()?;
    Ok(Json(Tags {
        tags: broker.get_queue(&name)?.tags,
    }))
}

/// Adds or replaces tags; tags not named keep their values.
#[utoipa::path(post, path = "/v1/queues/{name}/tags", tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    request_body = Tags,
    responses((status = 200, body = Tags), (status = 404, body = ErrorResponse)))]
pub async fn tag_queue(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<Tags>,
) -> Result<Json<Tags>, ApiError> {
    let broker = state.broker()?;
    broker.tag_queue(&name, request.tags)?;
    Ok(Json(Tags {
        tags: broker.get_queue(&name)?.tags,
    }))
}

/// Removes one tag.
#[utoipa::path(delete, path = "/v1/queues/{name}/tags/{key}", tag = "queues",
    params(("name" = String, Path, description = "Queue name"),
        ("key" = String, Path, description = "Tag key")),
    responses((status = 204, description = "Removed"), (status = 404, body = ErrorResponse)))]
pub async fn untag_queue(
    State(state): State<AppState>,
    ApiPath((name, key)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let broker = state.broker()?;
    broker.untag_queue(&name, &[key])?;
    Ok(StatusCode::NO_CONTENT)
}

/// Queues whose redrive policy sends their dead letters to this queue.
#[utoipa::path(get, path = "/v1/queues/{name}/dead-letter-sources", tag = "dead letters",
    params(("name" = String, Path, description = "Dead-letter queue name")),
    responses((status = 200, body = QueueNames), (status = 404, body = ErrorResponse)))]
pub async fn dead_letter_sources(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<QueueNames>, ApiError> {
    let broker = state.broker()?;
    Ok(Json(QueueNames {
        queues: broker.dead_letter_source_queues(&name)?,
    }))
}
