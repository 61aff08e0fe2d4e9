//! Stream resources over HTTP/JSON: create, list, describe, alter, delete, produce, fetch,
//! live tail (Server-Sent Events) and consumer group lag.
//!
//! ```text
//! POST   /v1/streams                       {"name","partitions"?,"config"?:{"retention.ms":"60000",…}}
//! GET    /v1/streams                       {"streams":[StreamDescription]}
//! GET    /v1/streams/{name}                StreamDescription (partitions with offsets and sizes)
//! PATCH  /v1/streams/{name}                {"partitions"?,"config"?:{"key":"value"|null}}
//! DELETE /v1/streams/{name}
//! POST   /v1/streams/{name}/records        {"records":[{"key"?,"value"?,"headers"?,"partition"?,"timestamp_ms"?}],"encoding"?}
//! GET    /v1/streams/{name}/records        ?partition=0&offset=N | &since_ms=T | &from=end, &max_records, &wait_ms, &encoding
//! GET    /v1/streams/{name}/tail           SSE: one `record` event per record (all partitions by default)
//! POST   /v1/streams/{name}/compact        compact now: latest record per key in closed segments
//! GET    /v1/stream-groups                 {"groups":[{"group","state","protocol_type"}]}
//! GET    /v1/stream-groups/{group}         members, committed offsets and lag per partition
//! ```
//!
//! Keys, values and header values are UTF-8 text by default; with `"encoding":"base64"`
//! (body) or `encoding=base64` (query) they are base64. Records produced here are stored as
//! uncompressed record batches and are readable by Kafka clients, and the other way round.
//! A record without a partition goes to `crc32c(key) % partitions`, or round-robin without a key.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine;
use bytes::Bytes;
use ferry_broker::stream::batch::{decode_records, encode_records, NewRecord, StreamRecord};
use ferry_broker::stream::{StreamError, StreamInfo, Streams};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorCode, ErrorResponse};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::AppState;

/// Most records one produce call accepts.
pub const MAX_PRODUCE_RECORDS: usize = 10_000;
/// Most records one fetch call returns.
pub const MAX_FETCH_RECORDS: usize = 10_000;
/// Longest fetch long poll.
pub const MAX_WAIT_MS: u64 = 30_000;
/// Bytes read from a partition per step of a fetch or tail.
const READ_BYTES: usize = 1 << 20;

impl From<StreamError> for ApiError {
    fn from(e: StreamError) -> ApiError {
        let message = e.to_string();
        let (status, code) = match e {
            StreamError::UnknownStream(_) => (StatusCode::NOT_FOUND, ErrorCode::StreamNotFound),
            StreamError::UnknownPartition { .. } => {
                (StatusCode::NOT_FOUND, ErrorCode::InvalidParameter)
            }
            StreamError::StreamExists(_) => (StatusCode::CONFLICT, ErrorCode::StreamAlreadyExists),
            StreamError::InvalidName(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidParameter),
            StreamError::InvalidConfig(_) | StreamError::InvalidPartitions(_) => {
                (StatusCode::BAD_REQUEST, ErrorCode::InvalidAttributeValue)
            }
            StreamError::CorruptBatch(_) | StreamError::InvalidBatch(_) => {
                (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest)
            }
            StreamError::MessageTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::MessageTooLarge)
            }
            StreamError::OffsetOutOfRange { .. } => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::OffsetOutOfRange,
            ),
            StreamError::OutOfOrderSequence { .. } | StreamError::InvalidProducerEpoch => {
                (StatusCode::CONFLICT, ErrorCode::InvalidRequest)
            }
            StreamError::Group(_) => (StatusCode::CONFLICT, ErrorCode::InvalidParameter),
            StreamError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::StorageError),
            StreamError::Closed => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ShuttingDown),
        };
        ApiError::new(status, code, message)
    }
}

/// `POST /v1/streams`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStreamRequest {
    pub name: String,
    /// Default 1.
    #[serde(default)]
    pub partitions: Option<u32>,
    /// Kafka-style keys: retention.ms, retention.bytes, cleanup.policy,
    /// message.timestamp.type, max.message.bytes, segment.bytes, durability.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// `PATCH /v1/streams/{name}`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateStreamRequest {
    /// New (larger) partition count.
    #[serde(default)]
    pub partitions: Option<u32>,
    /// Keys to set; `null` resets a key to its default.
    #[serde(default)]
    pub config: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PartitionDescription {
    pub partition: u32,
    pub log_start_offset: u64,
    /// Next offset to be written; every record below it is durable.
    pub high_watermark: u64,
    pub size_bytes: u64,
    pub segments: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StreamDescription {
    pub name: String,
    pub partitions: Vec<PartitionDescription>,
    pub config: BTreeMap<String, String>,
    pub created_ms: i64,
}

impl From<StreamInfo> for StreamDescription {
    fn from(i: StreamInfo) -> Self {
        StreamDescription {
            name: i.name,
            partitions: i
                .partitions
                .into_iter()
                .map(|p| PartitionDescription {
                    partition: p.partition,
                    log_start_offset: p.log_start_offset,
                    high_watermark: p.high_watermark,
                    size_bytes: p.size_bytes,
                    segments: p.segments,
                })
                .collect(),
            config: i
                .config
                .entries()
                .into_iter()
                .map(|(k, v, _)| (k, v))
                .collect(),
            created_ms: i.created_ms,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StreamList {
    pub streams: Vec<StreamDescription>,
}

/// Text or base64 for keys, values and header values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Utf8,
    Base64,
}

impl Encoding {
    fn decode(self, s: &str, what: &str) -> Result<Bytes, ApiError> {
        match self {
            Encoding::Utf8 => Ok(Bytes::copy_from_slice(s.as_bytes())),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(Bytes::from)
                .map_err(|_| ApiError::invalid(format!("{what} is not valid base64"))),
        }
    }
    fn encode(self, b: &[u8]) -> String {
        match self {
            Encoding::Utf8 => String::from_utf8_lossy(b).into_owned(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(b),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordIn {
    #[serde(default)]
    pub key: Option<String>,
    /// `null` is a tombstone.
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub partition: Option<u32>,
    /// Create time; default now.
    #[serde(default)]
    pub timestamp_ms: Option<i64>,
}

/// `POST /v1/streams/{name}/records`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProduceRequest {
    pub records: Vec<RecordIn>,
    #[serde(default)]
    pub encoding: Encoding,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecordPosition {
    pub partition: u32,
    pub offset: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProduceResponse {
    /// One per record, in request order.
    pub offsets: Vec<RecordPosition>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecordOut {
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<String>,
    pub value: Option<String>,
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FetchResponse {
    pub records: Vec<RecordOut>,
    /// The offset to fetch next.
    pub next_offset: u64,
    pub high_watermark: u64,
}

/// Where to start reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    #[default]
    Beginning,
    End,
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FetchQuery {
    /// Default 0.
    pub partition: Option<u32>,
    /// Start at this offset...
    pub offset: Option<u64>,
    /// ...or at the first record with a timestamp at or after this (ms since the epoch)...
    pub since_ms: Option<i64>,
    /// ...or at the beginning (default) or the end.
    pub from: Option<StartAt>,
    /// Default 100, at most 10000.
    pub max_records: Option<usize>,
    /// Long poll: wait up to this long (ms, at most 30000) for a record.
    pub wait_ms: Option<u64>,
    pub encoding: Option<Encoding>,
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TailQuery {
    /// Only this partition (default: all).
    pub partition: Option<u32>,
    /// Start at this offset (needs `partition`)...
    pub offset: Option<u64>,
    /// ...or at the first record at or after this time...
    pub since_ms: Option<i64>,
    /// ...or at the beginning or the end (default).
    pub from: Option<StartAt>,
    pub encoding: Option<Encoding>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupSummary {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupList {
    pub groups: Vec<GroupSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupPartitionLag {
    pub stream: String,
    pub partition: u32,
    pub committed_offset: i64,
    pub high_watermark: u64,
    pub lag: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupDescription {
    pub group: String,
    pub state: String,
    pub generation: i32,
    pub members: Vec<GroupMember>,
    pub offsets: Vec<GroupPartitionLag>,
}

/// Create a stream.
#[utoipa::path(post, path = "/v1/streams", tag = "streams", request_body = CreateStreamRequest,
    responses((status = 201, body = StreamDescription), (status = 409, body = ErrorResponse), (status = 400, body = ErrorResponse)))]
pub async fn create_stream(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateStreamRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let streams = state.streams()?;
    let configs: Vec<(String, String)> = req.config.into_iter().collect();
    let info = streams.create(&req.name, req.partitions.unwrap_or(1), &configs)?;
    Ok((StatusCode::CREATED, Json(StreamDescription::from(info))))
}

/// List streams.
#[utoipa::path(get, path = "/v1/streams", tag = "streams", responses((status = 200, body = StreamList)))]
pub async fn list_streams(State(state): State<AppState>) -> Result<Json<StreamList>, ApiError> {
    let streams = state.streams()?;
    Ok(Json(StreamList {
        streams: streams.list().into_iter().map(Into::into).collect(),
    }))
}

/// Describe a stream.
#[utoipa::path(get, path = "/v1/streams/{name}", tag = "streams",
    params(("name" = String, Path, description = "Stream name")),
    responses((status = 200, body = StreamDescription), (status = 404, body = ErrorResponse)))]
pub async fn get_stream(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<StreamDescription>, ApiError> {
    Ok(Json(state.streams()?.describe(&name)?.into()))
}

/// Add partitions or change configuration.
#[utoipa::path(patch, path = "/v1/streams/{name}", tag = "streams", request_body = UpdateStreamRequest,
    params(("name" = String, Path, description = "Stream name")),
    responses((status = 200, body = StreamDescription), (status = 404, body = ErrorResponse), (status = 400, body = ErrorResponse)))]
pub async fn update_stream(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateStreamRequest>,
) -> Result<Json<StreamDescription>, ApiError> {
    let streams = state.streams()?;
    if !req.config.is_empty() {
        let changes: Vec<(String, Option<String>)> = req.config.into_iter().collect();
        streams.alter_config(&name, &changes, false, false)?;
    }
    if let Some(n) = req.partitions {
        streams.add_partitions(&name, n)?;
    }
    Ok(Json(streams.describe(&name)?.into()))
}

/// Delete a stream, its records and its committed offsets.
#[utoipa::path(delete, path = "/v1/streams/{name}", tag = "streams",
    params(("name" = String, Path, description = "Stream name")),
    responses((status = 204), (status = 404, body = ErrorResponse)))]
pub async fn delete_stream(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.streams()?.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

static ROUND_ROBIN: AtomicUsize = AtomicUsize::new(0);

/// Append records; answered once they are durable.
#[utoipa::path(post, path = "/v1/streams/{name}/records", tag = "streams", request_body = ProduceRequest,
    params(("name" = String, Path, description = "Stream name")),
    responses((status = 200, body = ProduceResponse), (status = 404, body = ErrorResponse), (status = 400, body = ErrorResponse)))]
pub async fn produce(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<ProduceRequest>,
) -> Result<Json<ProduceResponse>, ApiError> {
    let streams = state.streams()?;
    if req.records.is_empty() || req.records.len() > MAX_PRODUCE_RECORDS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidBatch,
            format!("send 1 to {MAX_PRODUCE_RECORDS} records"),
        ));
    }
    let count = streams.get(&name)?.partition_count();
    let now = streams.now_ms();
    // Records grouped by partition, remembering each one's index in the request.
    let mut by_partition: BTreeMap<u32, Vec<(usize, NewRecord)>> = BTreeMap::new();
    for (i, r) in req.records.iter().enumerate() {
        let key = r
            .key
            .as_deref()
            .map(|k| req.encoding.decode(k, "key"))
            .transpose()?;
        let partition = match (r.partition, &key) {
            (Some(p), _) => p,
            (None, Some(k)) => crc32c::crc32c(k) % count,
            (None, None) => (ROUND_ROBIN.fetch_add(1, Ordering::Relaxed) % count as usize) as u32,
        };
        let mut headers = Vec::new();
        for (k, v) in &r.headers {
            headers.push((k.clone(), Some(req.encoding.decode(v, "header value")?)));
        }
        by_partition.entry(partition).or_default().push((
            i,
            NewRecord {
                key,
                value: r
                    .value
                    .as_deref()
                    .map(|v| req.encoding.decode(v, "value"))
                    .transpose()?,
                headers,
                timestamp_ms: r.timestamp_ms,
            },
        ));
    }
    let mut offsets = vec![
        RecordPosition {
            partition: 0,
            offset: 0
        };
        req.records.len()
    ];
    for (partition, records) in by_partition {
        let batch: Vec<NewRecord> = records.iter().map(|(_, r)| r.clone()).collect();
        let bytes = encode_records(&batch, now)?;
        let appended = streams.produce(&name, i64::from(partition), bytes).await?;
        for (n, (i, _)) in records.iter().enumerate() {
            offsets[*i] = RecordPosition {
                partition,
                offset: appended.base_offset + n as u64,
            };
        }
    }
    Ok(Json(ProduceResponse { offsets }))
}

fn record_out(partition: u32, r: StreamRecord, encoding: Encoding) -> RecordOut {
    RecordOut {
        partition,
        offset: r.offset,
        timestamp_ms: r.timestamp_ms,
        key: r.key.map(|k| encoding.encode(&k)),
        value: r.value.map(|v| encoding.encode(&v)),
        headers: r
            .headers
            .into_iter()
            .map(|(k, v)| (k, v.map(|v| encoding.encode(&v)).unwrap_or_default()))
            .collect(),
    }
}

/// The start offset for a read: explicit offset, time, or beginning/end.
fn start_offset(
    streams: &Streams,
    name: &str,
    partition: u32,
    offset: Option<u64>,
    since_ms: Option<i64>,
    from: StartAt,
) -> Result<u64, ApiError> {
    let part = streams.partition(name, i64::from(partition))?;
    Ok(match (offset, since_ms) {
        (Some(o), _) => o,
        (None, Some(t)) => part
            .offset_for_timestamp(t)?
            .map_or(part.high_watermark(), |(o, _)| o),
        (None, None) => match from {
            StartAt::Beginning => part.log_start_offset(),
            StartAt::End => part.high_watermark(),
        },
    })
}

/// Reads up to `max` records of one partition from `offset`.
fn read_records(
    streams: &Streams,
    name: &str,
    partition: u32,
    offset: u64,
    max: usize,
) -> Result<(Vec<StreamRecord>, u64, u64), StreamError> {
    let part = streams.partition(name, i64::from(partition))?;
    let mut out = Vec::new();
    let mut next = offset;
    let mut hw = part.high_watermark();
    let start = part.log_start_offset();
    if offset < start || offset > hw {
        return Err(StreamError::OffsetOutOfRange {
            offset,
            start,
            end: hw,
        });
    }
    while out.len() < max && next < hw {
        let read = part.read(next, READ_BYTES)?;
        hw = read.high_watermark;
        if read.records.is_empty() {
            break;
        }
        let records = decode_records(&read.records)?;
        let mut advanced = false;
        for r in records {
            if r.offset >= next && out.len() < max {
                next = r.offset + 1;
                advanced = true;
                out.push(r);
            }
        }
        if !advanced {
            // A batch of only control records or already-seen ones: step past it.
            let header = ferry_broker::stream::batch::parse_header(&read.records)?;
            next = next.max(header.base_offset as u64 + u64::from(header.offset_count()));
        }
    }
    Ok((out, next, hw))
}

/// [`read_records`] on a blocking thread: records no longer in the partition's tail cache
/// are read from the disk, and no runtime thread waits for that.
async fn read_records_blocking(
    streams: &Streams,
    name: &str,
    partition: u32,
    offset: u64,
    max: usize,
) -> Result<(Vec<StreamRecord>, u64, u64), StreamError> {
    let (streams, name) = (streams.clone(), name.to_string());
    tokio::task::spawn_blocking(move || read_records(&streams, &name, partition, offset, max))
        .await
        .unwrap_or_else(|join| Err(StreamError::Storage(format!("the read failed: {join}"))))
}

/// Read records from one partition (optionally long-polling for new ones).
#[utoipa::path(get, path = "/v1/streams/{name}/records", tag = "streams",
    params(("name" = String, Path, description = "Stream name"), FetchQuery),
    responses((status = 200, body = FetchResponse), (status = 404, body = ErrorResponse), (status = 416, body = ErrorResponse)))]
pub async fn fetch(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<FetchQuery>,
) -> Result<Json<FetchResponse>, ApiError> {
    let streams = state.streams()?;
    let partition = q.partition.unwrap_or(0);
    let max = q.max_records.unwrap_or(100).clamp(1, MAX_FETCH_RECORDS);
    let encoding = q.encoding.unwrap_or_default();
    let offset = start_offset(
        &streams,
        &name,
        partition,
        q.offset,
        q.since_ms,
        q.from.unwrap_or_default(),
    )?;
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0).min(MAX_WAIT_MS));
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = streams.subscribe();
    let _poll = (!wait.is_zero()).then(|| state.long_poll_guard());
    loop {
        changes.borrow_and_update();
        let (records, next, hw) =
            read_records_blocking(&streams, &name, partition, offset, max).await?;
        if !records.is_empty()
            || tokio::time::Instant::now() >= deadline
            || state.is_shutting_down()
        {
            return Ok(Json(FetchResponse {
                records: records
                    .into_iter()
                    .map(|r| record_out(partition, r, encoding))
                    .collect(),
                next_offset: next,
                high_watermark: hw,
            }));
        }
        let _ = tokio::time::timeout_at(deadline, changes.changed()).await;
    }
}

/// Live tail as Server-Sent Events: `event: record`, `id: <partition>:<offset>`, JSON data.
#[utoipa::path(get, path = "/v1/streams/{name}/tail", tag = "streams",
    params(("name" = String, Path, description = "Stream name"), TailQuery),
    responses((status = 200, description = "text/event-stream of RecordOut", content_type = "text/event-stream"),
              (status = 404, body = ErrorResponse)))]
pub async fn tail(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<TailQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let streams = state.streams()?;
    let count = streams.get(&name)?.partition_count();
    let partitions: Vec<u32> = match q.partition {
        Some(p) if p < count => vec![p],
        Some(p) => {
            return Err(StreamError::UnknownPartition {
                stream: name,
                partition: i64::from(p),
            }
            .into())
        }
        None => (0..count).collect(),
    };
    if q.offset.is_some() && q.partition.is_none() {
        return Err(ApiError::invalid("offset needs partition"));
    }
    let from = q.from.unwrap_or(StartAt::End);
    let mut positions = Vec::new();
    for p in partitions {
        positions.push((
            p,
            start_offset(&streams, &name, p, q.offset, q.since_ms, from)?,
        ));
    }
    let encoding = q.encoding.unwrap_or_default();
    struct Tail {
        streams: Streams,
        name: String,
        positions: Vec<(u32, u64)>,
        buffered: VecDeque<RecordOut>,
        changes: tokio::sync::watch::Receiver<u64>,
        encoding: Encoding,
        state: AppState,
    }
    let changes = streams.subscribe();
    let tail = Tail {
        streams,
        name,
        positions,
        buffered: VecDeque::new(),
        changes,
        encoding,
        state,
    };
    let events = futures_util::stream::unfold(tail, |mut t| async move {
        loop {
            if let Some(r) = t.buffered.pop_front() {
                let event = Event::default()
                    .event("record")
                    .id(format!("{}:{}", r.partition, r.offset))
                    .json_data(&r)
                    .unwrap_or_else(|_| Event::default().comment("unencodable record"));
                return Some((Ok::<Event, Infallible>(event), t));
            }
            if t.state.is_shutting_down() {
                return None;
            }
            t.changes.borrow_and_update();
            for (partition, position) in t.positions.iter_mut() {
                match read_records_blocking(&t.streams, &t.name, *partition, *position, 1000).await
                {
                    Ok((records, next, _)) => {
                        *position = next;
                        t.buffered.extend(
                            records
                                .into_iter()
                                .map(|r| record_out(*partition, r, t.encoding)),
                        );
                    }
                    Err(StreamError::UnknownStream(_)) | Err(StreamError::Closed) => return None,
                    Err(e) => {
                        tracing::warn!(stream = %t.name, partition = *partition, error = %e, "tail read failed");
                        return None;
                    }
                }
            }
            if t.buffered.is_empty() {
                let _ = tokio::time::timeout(Duration::from_secs(1), t.changes.changed()).await;
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// List consumer groups (Kafka door groups and groups with committed offsets).
#[utoipa::path(get, path = "/v1/stream-groups", tag = "streams", responses((status = 200, body = GroupList)))]
pub async fn list_groups(State(state): State<AppState>) -> Result<Json<GroupList>, ApiError> {
    let streams = state.streams()?;
    Ok(Json(GroupList {
        groups: streams
            .list_groups()
            .into_iter()
            .map(|(group, protocol_type, s)| GroupSummary {
                group,
                state: s.as_str().to_string(),
                protocol_type,
            })
            .collect(),
    }))
}

/// A consumer group's members, committed offsets and lag.
#[utoipa::path(get, path = "/v1/stream-groups/{group}", tag = "streams",
    params(("group" = String, Path, description = "Group id")),
    responses((status = 200, body = GroupDescription), (status = 404, body = ErrorResponse)))]
pub async fn get_group(
    State(state): State<AppState>,
    ApiPath(group): ApiPath<String>,
) -> Result<Json<GroupDescription>, ApiError> {
    let streams = state.streams()?;
    let described = streams.coordinator().describe(&group);
    let offsets = streams.group_lag(&group);
    if described.is_none() && offsets.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::InvalidParameter,
            format!("consumer group {group:?} does not exist"),
        ));
    }
    Ok(Json(GroupDescription {
        state: described
            .as_ref()
            .map_or("Empty", |d| d.state.as_str())
            .to_string(),
        generation: described.as_ref().map_or(0, |d| d.generation),
        members: described
            .map(|d| {
                d.members
                    .into_iter()
                    .map(|m| GroupMember {
                        member_id: m.member_id,
                        client_id: m.client_id,
                        client_host: m.client_host,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        offsets: offsets
            .into_iter()
            .map(
                |(stream, partition, committed_offset, high_watermark, lag)| GroupPartitionLag {
                    stream,
                    partition,
                    committed_offset,
                    high_watermark,
                    lag,
                },
            )
            .collect(),
        group,
    }))
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CompactedPartition {
    pub partition: u32,
    /// Records in the closed segments before and after the pass.
    pub records_before: u64,
    pub records_after: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CompactResponse {
    /// Partitions where the pass removed records.
    pub partitions: Vec<CompactedPartition>,
}

/// Compact every partition now: keep the latest record per key in closed segments. Streams
/// with `cleanup.policy` `compact` are also compacted in the background.
#[utoipa::path(post, path = "/v1/streams/{name}/compact", tag = "streams",
    params(("name" = String, Path, description = "Stream name")),
    responses((status = 200, body = CompactResponse), (status = 404, body = ErrorResponse)))]
pub async fn compact(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<CompactResponse>, ApiError> {
    let streams = state.streams()?;
    let done = tokio::task::spawn_blocking(move || streams.compact(&name, streams.now_ms()))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                e.to_string(),
            )
        })??;
    Ok(Json(CompactResponse {
        partitions: done
            .into_iter()
            .map(
                |(partition, records_before, records_after)| CompactedPartition {
                    partition,
                    records_before,
                    records_after,
                },
            )
            .collect(),
    }))
}
