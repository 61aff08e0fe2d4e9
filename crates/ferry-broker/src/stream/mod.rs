//! Streams: partitioned, replayable append-only logs with Kafka semantics.
//!
//! Architecture invariant: nothing here knows a wire protocol. Front doors (the Kafka door, the
//! native HTTP API) translate their requests into calls on [`Streams`]. The one format the
//! domain does know is the record batch v2 ([`batch`]), because that is how partitions *store*
//! records: batches are kept as the producer sent them (compression included) and served
//! to consumers without re-encoding.
//!
//! ```text
//! <data_dir>/streams/
//!   topics/<name>/stream.json        partitions and configuration (written atomically)
//!   topics/<name>/<partition>/log/   one ferry-log per partition; one entry per batch
//!   offsets/                         committed group offsets (a ferry-log, see offsets.rs)
//!   producer_ids                     producer id reservation (see producer.rs)
//!   trash/                           deleted streams, removed in the background
//! ```
//!
//! - [`partition`]: append (sequence checks, offset assignment), read, time lookup.
//! - [`group`]: the consumer group coordinator (injectable time; stable groups saved in
//!   [`GROUPS_FILE`]).
//! - [`offsets`]: durable committed offsets.
//! - [`producer`]: idempotent producer state and producer ids.
//! - [`retention`]: time and size retention.
//! - [`compaction`]: latest record per key (`cleanup.policy=compact`).

pub mod batch;
pub mod compaction;
pub mod group;
pub mod offsets;
pub mod partition;
pub mod producer;
pub mod retention;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use ferry_log::{Durability, LogConfig, LogError, TailCache};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use group::{Coordinator, GroupError, GroupState};
pub use offsets::{CommittedOffset, OffsetStore};
pub use partition::{Appended, Partition, ReadBatches, StoredBatches, TimestampType};

/// Most partitions a stream may have.
pub const MAX_PARTITIONS: u32 = 1024;
/// The consumer group coordinator's saved stable groups, in the streams directory.
pub const GROUPS_FILE: &str = "groups.json";
/// Longest stream name (Kafka's limit).
pub const MAX_NAME_LEN: usize = 249;
/// Default largest record batch accepted (Kafka's `max.message.bytes` default).
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 1_048_588;
/// Hard ceiling for `max.message.bytes`.
pub const MAX_MESSAGE_BYTES_LIMIT: u64 = 16 << 20;
/// Default time retention: 7 days.
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Default tombstone retention under compaction: 1 day (Kafka's default).
pub const DEFAULT_DELETE_RETENTION_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("stream {0:?} does not exist")]
    UnknownStream(String),
    #[error("stream {stream:?} has no partition {partition}")]
    UnknownPartition { stream: String, partition: i64 },
    #[error("stream {0:?} already exists")]
    StreamExists(String),
    #[error("invalid stream name {0:?}: use 1-249 of [A-Za-z0-9._-]")]
    InvalidName(String),
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    #[error("invalid record batch: {0}")]
    InvalidBatch(String),
    #[error("record batch of {size} bytes exceeds the maximum of {max}")]
    MessageTooLarge { size: usize, max: usize },
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: u64, start: u64, end: u64 },
    #[error("out of order sequence number: expected {expected}, got {got}")]
    OutOfOrderSequence { expected: i32, got: i32 },
    #[error("the producer epoch is older than the current one")]
    InvalidProducerEpoch,
    #[error("{0}")]
    Group(#[from] GroupError),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("streams are shutting down")]
    Closed,
}

impl StreamError {
    pub(crate) fn io(path: &Path, e: std::io::Error) -> StreamError {
        StreamError::Storage(format!("{}: {e}", path.display()))
    }
}

impl From<LogError> for StreamError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::EntryTooLarge { size, max } => StreamError::MessageTooLarge { size, max },
            LogError::OffsetOutOfRange {
                offset,
                start,
                next,
            } => StreamError::OffsetOutOfRange {
                offset,
                start,
                end: next,
            },
            LogError::Closed => StreamError::Closed,
            other => StreamError::Storage(other.to_string()),
        }
    }
}

/// `cleanup.policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanupPolicy {
    Delete,
    Compact,
    CompactDelete,
}

/// A stream's configuration. Keys use Kafka's names so both doors share them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamConfig {
    /// `retention.ms`: -1 keeps forever.
    pub retention_ms: i64,
    /// `retention.bytes` per partition: -1 is unlimited.
    pub retention_bytes: i64,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `max.message.bytes`: largest record batch.
    pub max_message_bytes: u64,
    /// `segment.bytes`.
    pub segment_bytes: u64,
    /// `durability`: `always`, `interval:<ms>` or `never`; `None` = the server default.
    #[serde(default)]
    pub durability: Option<String>,
    /// `delete.retention.ms`: how long compaction keeps tombstones.
    #[serde(default = "default_delete_retention_ms")]
    pub delete_retention_ms: i64,
    /// `direct.io`: partitions write and read with direct I/O, bypassing the page cache (see
    /// `ferry_log::LogConfig::direct_io`); recent batches are read from the tail cache.
    #[serde(default = "default_direct_io")]
    pub direct_io: bool,
}

fn default_delete_retention_ms() -> i64 {
    DEFAULT_DELETE_RETENTION_MS
}

/// Streams write with direct I/O unless configured otherwise.
pub const DEFAULT_DIRECT_IO: bool = true;

fn default_direct_io() -> bool {
    DEFAULT_DIRECT_IO
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            retention_ms: DEFAULT_RETENTION_MS,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy::Delete,
            timestamp_type: TimestampType::CreateTime,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            durability: None,
            delete_retention_ms: DEFAULT_DELETE_RETENTION_MS,
            direct_io: DEFAULT_DIRECT_IO,
        }
    }
}

/// The configuration keys a stream accepts.
pub const CONFIG_KEYS: &[&str] = &[
    "retention.ms",
    "retention.bytes",
    "cleanup.policy",
    "message.timestamp.type",
    "max.message.bytes",
    "segment.bytes",
    "durability",
    "delete.retention.ms",
    "direct.io",
];

impl StreamConfig {
    /// Sets one key (`None` resets it to the default).
    pub fn set(&mut self, key: &str, value: Option<&str>) -> Result<(), StreamError> {
        let d = StreamConfig::default();
        let bad = |v: &str| StreamError::InvalidConfig(format!("invalid value {v:?} for {key}"));
        let int = |v: &str| v.trim().parse::<i64>().map_err(|_| bad(v));
        match (key, value) {
            ("retention.ms", None) => self.retention_ms = d.retention_ms,
            ("retention.ms", Some(v)) => {
                let n = int(v)?;
                if n < -1 {
                    return Err(bad(v));
                }
                self.retention_ms = n;
            }
            ("retention.bytes", None) => self.retention_bytes = d.retention_bytes,
            ("retention.bytes", Some(v)) => {
                let n = int(v)?;
                if n < -1 {
                    return Err(bad(v));
                }
                self.retention_bytes = n;
            }
            ("cleanup.policy", None) => self.cleanup_policy = d.cleanup_policy,
            ("cleanup.policy", Some(v)) => {
                let mut parts: Vec<&str> = v.split(',').map(str::trim).collect();
                parts.sort();
                self.cleanup_policy = match parts.as_slice() {
                    ["delete"] => CleanupPolicy::Delete,
                    ["compact"] => CleanupPolicy::Compact,
                    ["compact", "delete"] => CleanupPolicy::CompactDelete,
                    _ => return Err(bad(v)),
                };
            }
            ("message.timestamp.type", None) => self.timestamp_type = d.timestamp_type,
            ("message.timestamp.type", Some(v)) => {
                self.timestamp_type = match v {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => return Err(bad(v)),
                }
            }
            ("max.message.bytes", None) => self.max_message_bytes = d.max_message_bytes,
            ("max.message.bytes", Some(v)) => {
                let n = int(v)?;
                if n < 1 || n as u64 > MAX_MESSAGE_BYTES_LIMIT {
                    return Err(bad(v));
                }
                self.max_message_bytes = n as u64;
            }
            ("segment.bytes", None) => self.segment_bytes = d.segment_bytes,
            ("segment.bytes", Some(v)) => {
                let n = int(v)?;
                if n < 1024 || n as u64 > ferry_log::MAX_SEGMENT_BYTES {
                    return Err(bad(v));
                }
                self.segment_bytes = n as u64;
            }
            ("delete.retention.ms", None) => self.delete_retention_ms = d.delete_retention_ms,
            ("delete.retention.ms", Some(v)) => {
                let n = int(v)?;
                if n < 0 {
                    return Err(bad(v));
                }
                self.delete_retention_ms = n;
            }
            ("direct.io", None) => self.direct_io = d.direct_io,
            ("direct.io", Some(v)) => {
                self.direct_io = match v {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad(v)),
                }
            }
            ("durability", None) => self.durability = None,
            ("durability", Some(v)) => {
                parse_durability(v).ok_or_else(|| bad(v))?;
                self.durability = Some(v.to_string());
            }
            _ => {
                return Err(StreamError::InvalidConfig(format!(
                    "unknown configuration key {key:?}"
                )))
            }
        }
        Ok(())
    }

    /// Every key with its value and whether it is the default.
    pub fn entries(&self) -> Vec<(String, String, bool)> {
        let d = StreamConfig::default();
        let policy = |p: CleanupPolicy| match p {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        };
        let ts = |t: TimestampType| match t {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        };
        vec![
            (
                "retention.ms".into(),
                self.retention_ms.to_string(),
                self.retention_ms == d.retention_ms,
            ),
            (
                "retention.bytes".into(),
                self.retention_bytes.to_string(),
                self.retention_bytes == d.retention_bytes,
            ),
            (
                "cleanup.policy".into(),
                policy(self.cleanup_policy).into(),
                self.cleanup_policy == d.cleanup_policy,
            ),
            (
                "message.timestamp.type".into(),
                ts(self.timestamp_type).into(),
                self.timestamp_type == d.timestamp_type,
            ),
            (
                "max.message.bytes".into(),
                self.max_message_bytes.to_string(),
                self.max_message_bytes == d.max_message_bytes,
            ),
            (
                "segment.bytes".into(),
                self.segment_bytes.to_string(),
                self.segment_bytes == d.segment_bytes,
            ),
            (
                "durability".into(),
                self.durability.clone().unwrap_or_else(|| "default".into()),
                self.durability.is_none(),
            ),
            (
                "delete.retention.ms".into(),
                self.delete_retention_ms.to_string(),
                self.delete_retention_ms == d.delete_retention_ms,
            ),
            (
                "direct.io".into(),
                self.direct_io.to_string(),
                self.direct_io == d.direct_io,
            ),
        ]
    }
}

/// Parses `always`, `interval:<ms>` or `never`.
pub fn parse_durability(v: &str) -> Option<Durability> {
    match v {
        "always" => Some(Durability::Always),
        "never" => Some(Durability::Never),
        _ => {
            let ms = v.strip_prefix("interval:")?.parse::<u64>().ok()?;
            (1..=60_000)
                .contains(&ms)
                .then(|| Durability::Interval(std::time::Duration::from_millis(ms)))
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StreamFile {
    name: String,
    partitions: u32,
    created_ms: i64,
    config: StreamConfig,
}

/// One stream: its configuration and partitions.
pub struct Stream {
    pub name: String,
    dir: PathBuf,
    created_ms: i64,
    config: RwLock<StreamConfig>,
    partitions: RwLock<Vec<Arc<Partition>>>,
}

impl Stream {
    pub fn config(&self) -> StreamConfig {
        self.config.read().clone()
    }
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().clone()
    }
    pub fn partition_count(&self) -> u32 {
        self.partitions.read().len() as u32
    }
    fn persist(&self) -> Result<(), StreamError> {
        let file = StreamFile {
            name: self.name.clone(),
            partitions: self.partition_count(),
            created_ms: self.created_ms,
            config: self.config(),
        };
        let data =
            serde_json::to_vec_pretty(&file).map_err(|e| StreamError::Storage(e.to_string()))?;
        producer::write_atomic(&self.dir.join("stream.json"), &data)
    }
}

/// A partition's state, for describe calls and metrics.
#[derive(Clone, Debug, Serialize)]
pub struct PartitionInfo {
    pub partition: u32,
    pub log_start_offset: u64,
    pub high_watermark: u64,
    pub size_bytes: u64,
    pub segments: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct StreamInfo {
    pub name: String,
    pub partitions: Vec<PartitionInfo>,
    pub config: StreamConfig,
    pub created_ms: i64,
}

/// Settings of the streams domain.
#[derive(Clone)]
pub struct StreamsConfig {
    /// `<data_dir>/streams`.
    pub dir: PathBuf,
    pub default_durability: Durability,
    /// Where time comes from (timestamps, retention, group timeouts).
    pub clock: Arc<dyn crate::Clock>,
    /// Memory shared by every partition for its newest record batches, from which fetches
    /// near the end of a partition are served (`None`: every read goes to the files).
    pub tail_cache: Option<Arc<TailCache>>,
}

impl std::fmt::Debug for StreamsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsConfig")
            .field("dir", &self.dir)
            .field("default_durability", &self.default_durability)
            .field("tail_cache", &self.tail_cache)
            .finish_non_exhaustive()
    }
}

/// The tail cache of [`StreamsConfig::new`] (the server sizes its own, see `stream_cache`).
pub const DEFAULT_TAIL_CACHE_BYTES: u64 = 64 << 20;

impl StreamsConfig {
    pub fn new(data_dir: impl AsRef<Path>) -> StreamsConfig {
        StreamsConfig {
            dir: data_dir.as_ref().join("streams"),
            default_durability: Durability::Always,
            clock: Arc::new(crate::SystemClock),
            tail_cache: Some(TailCache::new(DEFAULT_TAIL_CACHE_BYTES)),
        }
    }
}

/// The registry of streams, group coordinator and committed offsets. Cheap to clone.
#[derive(Clone)]
pub struct Streams {
    inner: Arc<Inner>,
}

struct Inner {
    config: StreamsConfig,
    streams: RwLock<BTreeMap<String, Arc<Stream>>>,
    coordinator: Coordinator,
    offsets: OffsetStore,
    producer_ids: producer::ProducerIds,
    /// Bumped whenever new records become durable (fetch long polls wait on it). Partition
    /// logs bump it themselves after every write and sync (see [`partition_log_config`]).
    appended: Arc<watch::Sender<u64>>,
}

/// The partition of a keyed record whose producer did not choose one: `crc32c(key) % partitions`
/// (what the native produce API does).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    debug_assert!(partitions > 0);
    crc32c::crc32c(key) % partitions.max(1)
}

pub fn validate_name(name: &str) -> Result<(), StreamError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StreamError::InvalidName(name.to_string()))
    }
}

impl Streams {
    /// Opens (recovers) every stream under `config.dir`.
    pub fn open(config: StreamsConfig) -> Result<Streams, StreamError> {
        let topics = config.dir.join("topics");
        std::fs::create_dir_all(&topics).map_err(|e| StreamError::io(&topics, e))?;
        let trash = config.dir.join("trash");
        let _ = std::fs::remove_dir_all(&trash);
        // Committed offsets are read back only when the store opens: no cache, no direct I/O.
        let offsets = OffsetStore::open(
            &config.dir,
            LogConfig {
                tail_cache: None,
                direct_io: false,
                ..log_config(&config, &StreamConfig::default())
            },
        )?;
        let appended = Arc::new(watch::channel(0).0);
        let producer_ids = producer::ProducerIds::open(&config.dir)?;
        let mut streams = BTreeMap::new();
        let dirs = std::fs::read_dir(&topics).map_err(|e| StreamError::io(&topics, e))?;
        for dir in dirs {
            let dir = dir.map_err(|e| StreamError::io(&topics, e))?.path();
            let file = dir.join("stream.json");
            let data = match std::fs::read(&file) {
                Ok(d) => d,
                // Created but never finished: remove.
                Err(_) => {
                    tracing::warn!(dir = %dir.display(), "removing an incomplete stream directory");
                    let _ = std::fs::remove_dir_all(&dir);
                    continue;
                }
            };
            let meta: StreamFile = serde_json::from_slice(&data)
                .map_err(|e| StreamError::Storage(format!("{}: {e}", file.display())))?;
            let mut partitions = Vec::new();
            for p in 0..meta.partitions {
                partitions.push(Arc::new(Partition::open(
                    &dir.join(p.to_string()),
                    p,
                    partition_log_config(&config, &meta.config, &appended),
                )?));
            }
            streams.insert(
                meta.name.clone(),
                Arc::new(Stream {
                    name: meta.name,
                    dir,
                    created_ms: meta.created_ms,
                    config: RwLock::new(meta.config),
                    partitions: RwLock::new(partitions),
                }),
            );
        }
        let coordinator = Coordinator::open(&config.dir.join(GROUPS_FILE), config.clock.now_ms());
        Ok(Streams {
            inner: Arc::new(Inner {
                config,
                streams: RwLock::new(streams),
                coordinator,
                offsets,
                producer_ids,
                appended,
            }),
        })
    }

    /// Creates a stream. `configs` are (key, value) pairs, see [`CONFIG_KEYS`].
    pub fn create(
        &self,
        name: &str,
        partitions: u32,
        configs: &[(String, String)],
    ) -> Result<StreamInfo, StreamError> {
        validate_name(name)?;
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(StreamError::InvalidPartitions(format!(
                "{partitions} (allowed 1..={MAX_PARTITIONS})"
            )));
        }
        let mut config = StreamConfig::default();
        for (k, v) in configs {
            config.set(k, Some(v))?;
        }
        let mut streams = self.inner.streams.write();
        if streams.contains_key(name) {
            return Err(StreamError::StreamExists(name.to_string()));
        }
        let dir = self.inner.config.dir.join("topics").join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| StreamError::io(&dir, e))?;
        }
        let mut parts = Vec::new();
        for p in 0..partitions {
            parts.push(Arc::new(Partition::open(
                &dir.join(p.to_string()),
                p,
                partition_log_config(&self.inner.config, &config, &self.inner.appended),
            )?));
        }
        let stream = Arc::new(Stream {
            name: name.to_string(),
            dir,
            created_ms: self.now_ms(),
            config: RwLock::new(config),
            partitions: RwLock::new(parts),
        });
        stream.persist()?;
        streams.insert(name.to_string(), Arc::clone(&stream));
        drop(streams);
        tracing::info!(stream = name, partitions, "stream created");
        Ok(info(&stream))
    }

    /// Deletes a stream and its data, and forgets its committed offsets.
    pub async fn delete(&self, name: &str) -> Result<(), StreamError> {
        let stream = self
            .inner
            .streams
            .write()
            .remove(name)
            .ok_or_else(|| StreamError::UnknownStream(name.to_string()))?;
        for p in stream.partitions() {
            let _ = p.close();
        }
        let trash = self.inner.config.dir.join("trash");
        std::fs::create_dir_all(&trash).map_err(|e| StreamError::io(&trash, e))?;
        let target = trash.join(format!("{name}.{}", self.now_ms()));
        std::fs::rename(&stream.dir, &target).map_err(|e| StreamError::io(&stream.dir, e))?;
        if let Ok(d) = std::fs::File::open(self.inner.config.dir.join("topics")) {
            let _ = d.sync_all();
        }
        let _ = std::fs::remove_dir_all(&target);
        self.inner.offsets.drop_stream(name).await?;
        tracing::info!(stream = name, "stream deleted");
        Ok(())
    }

    /// The directory every stream lives under (`<data_dir>/streams`).
    pub fn dir(&self) -> &Path {
        &self.inner.config.dir
    }

    pub fn get(&self, name: &str) -> Result<Arc<Stream>, StreamError> {
        self.inner
            .streams
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| StreamError::UnknownStream(name.to_string()))
    }

    pub fn exists(&self, name: &str) -> bool {
        self.inner.streams.read().contains_key(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.inner.streams.read().keys().cloned().collect()
    }

    pub fn list(&self) -> Vec<StreamInfo> {
        let streams: Vec<Arc<Stream>> = self.inner.streams.read().values().cloned().collect();
        streams.iter().map(|s| info(s)).collect()
    }

    pub fn describe(&self, name: &str) -> Result<StreamInfo, StreamError> {
        let stream = self.get(name)?;
        Ok(info(&stream))
    }

    pub fn partition(&self, name: &str, partition: i64) -> Result<Arc<Partition>, StreamError> {
        let stream = self.get(name)?;
        let parts = stream.partitions.read();
        usize::try_from(partition)
            .ok()
            .and_then(|i| parts.get(i).cloned())
            .ok_or_else(|| StreamError::UnknownPartition {
                stream: name.to_string(),
                partition,
            })
    }

    /// Grows a stream to `total` partitions.
    pub fn add_partitions(&self, name: &str, total: u32) -> Result<(), StreamError> {
        let stream = self.get(name)?;
        let mut parts = stream.partitions.write();
        let current = parts.len() as u32;
        if total <= current || total > MAX_PARTITIONS {
            return Err(StreamError::InvalidPartitions(format!(
                "stream {name:?} has {current} partitions; new count {total} must be larger (at most {MAX_PARTITIONS})"
            )));
        }
        let config = stream.config();
        for p in current..total {
            parts.push(Arc::new(Partition::open(
                &stream.dir.join(p.to_string()),
                p,
                partition_log_config(&self.inner.config, &config, &self.inner.appended),
            )?));
        }
        drop(parts);
        stream.persist()?;
        tracing::info!(stream = name, partitions = total, "stream partitions added");
        Ok(())
    }

    /// Applies configuration changes: `Some(v)` sets, `None` resets to the default.
    /// With `replace`, keys not mentioned are reset (AlterConfigs semantics).
    pub fn alter_config(
        &self,
        name: &str,
        changes: &[(String, Option<String>)],
        replace: bool,
        validate_only: bool,
    ) -> Result<(), StreamError> {
        let stream = self.get(name)?;
        let mut config = if replace {
            StreamConfig::default()
        } else {
            stream.config()
        };
        for (k, v) in changes {
            config.set(k, v.as_deref())?;
        }
        if validate_only {
            return Ok(());
        }
        *stream.config.write() = config;
        stream.persist()
    }

    /// Appends record batches to a partition and waits until they are durable.
    pub async fn produce(
        &self,
        name: &str,
        partition: i64,
        records: Bytes,
    ) -> Result<Appended, StreamError> {
        let (part, appended) = self.append(name, partition, records)?;
        part.wait_durable(appended.durable_at).await?;
        self.notify_appended();
        Ok(appended)
    }

    /// Appends without waiting: the caller awaits `wait_durable` (or not, for acks=0) and
    /// then calls [`Streams::notify_appended`].
    pub fn append(
        &self,
        name: &str,
        partition: i64,
        records: Bytes,
    ) -> Result<(Arc<Partition>, Appended), StreamError> {
        let stream = self.get(name)?;
        let config = stream.config();
        let part = self.partition(name, partition)?;
        let appended = part.append(
            records,
            config.timestamp_type,
            config.max_message_bytes as usize,
            self.now_ms(),
        )?;
        Ok((part, appended))
    }

    /// Milliseconds since the Unix epoch, from the configured clock.
    pub fn now_ms(&self) -> i64 {
        self.inner.config.clock.now_ms() as i64
    }

    /// Wakes fetch long polls (call after an append became durable). Partition logs also do
    /// this themselves as soon as a sync completes; this call covers any path that bypasses
    /// that (and costs one spurious wake-up otherwise).
    pub fn notify_appended(&self) {
        bump(&self.inner.appended);
    }

    /// A receiver that changes whenever records become durable anywhere.
    /// How the partitions' shared tail cache is used (`None`: the streams have none).
    pub fn tail_cache_stats(&self) -> Option<ferry_log::TailCacheStats> {
        self.inner.config.tail_cache.as_ref().map(|c| c.stats())
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.appended.subscribe()
    }

    pub fn coordinator(&self) -> &Coordinator {
        &self.inner.coordinator
    }

    pub fn offsets(&self) -> &OffsetStore {
        &self.inner.offsets
    }

    pub fn next_producer_id(&self) -> Result<i64, StreamError> {
        self.inner.producer_ids.next()
    }

    /// Every known group: coordinator groups and groups with committed offsets.
    pub fn list_groups(&self) -> Vec<(String, String, GroupState)> {
        let mut groups: BTreeMap<String, (String, GroupState)> = self
            .inner
            .coordinator
            .list()
            .into_iter()
            .map(|(g, t, s)| (g, (t, s)))
            .collect();
        for g in self.inner.offsets.groups() {
            groups
                .entry(g)
                .or_insert_with(|| ("consumer".to_string(), GroupState::Empty));
        }
        groups.into_iter().map(|(g, (t, s))| (g, t, s)).collect()
    }

    /// Whether `group` has members or committed offsets.
    fn group_known(&self, group: &str) -> bool {
        self.inner.coordinator.describe(group).is_some()
            || self.inner.offsets.groups().iter().any(|g| g == group)
    }

    /// Deletes an empty group and its committed offsets.
    pub async fn delete_group(&self, group: &str) -> Result<(), StreamError> {
        if !self.group_known(group) {
            return Err(GroupError::GroupIdNotFound.into());
        }
        self.inner.coordinator.delete(group)?;
        self.inner.offsets.delete_group(group).await
    }

    /// Forgets `group`'s committed offsets for these (stream, partition)s (Kafka's
    /// OffsetDelete; the caller refuses partitions of streams the group's members consume).
    /// `GroupIdNotFound` for a group without members or offsets; otherwise one result per
    /// partition, an unknown one refused, the rest deleted durably.
    pub async fn delete_offsets(
        &self,
        group: &str,
        partitions: &[(String, i64)],
    ) -> Result<Vec<Result<(), StreamError>>, StreamError> {
        if !self.group_known(group) {
            return Err(GroupError::GroupIdNotFound.into());
        }
        let mut results = Vec::with_capacity(partitions.len());
        let mut doomed = Vec::new();
        for (stream, partition) in partitions {
            match self.partition(stream, *partition) {
                Ok(p) => {
                    doomed.push((stream.clone(), p.index));
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        self.inner.offsets.delete_offsets(group, &doomed).await?;
        Ok(results)
    }

    /// Per (stream, partition) of a group: committed offset and lag to the high watermark.
    pub fn group_lag(&self, group: &str) -> Vec<(String, u32, i64, u64, i64)> {
        self.inner
            .offsets
            .group_offsets(group)
            .into_iter()
            .filter_map(|(t, p, c)| {
                let part = self.partition(&t, p as i64).ok()?;
                let hw = part.high_watermark();
                Some((t, p, c.offset, hw, (hw as i64 - c.offset).max(0)))
            })
            .collect()
    }

    /// Runs retention and compaction once over every stream, refreshes producer snapshots
    /// where a segment has rolled, and rewrites the committed offsets log when it has grown
    /// (called periodically by the server).
    pub fn enforce_retention(&self, now_ms: i64) {
        if let Err(e) = self.inner.offsets.maybe_rewrite() {
            tracing::warn!(error = %e, "rewriting the committed offsets log failed");
        }
        let streams: Vec<Arc<Stream>> = self.inner.streams.read().values().cloned().collect();
        for s in streams {
            let config = s.config();
            for p in s.partitions() {
                if let Err(e) = retention::enforce(&p, &config, now_ms) {
                    tracing::warn!(stream = %s.name, partition = p.index, error = %e, "retention failed");
                }
                if let Err(e) = p.snapshot_producers(false) {
                    tracing::warn!(stream = %s.name, partition = p.index, error = %e, "writing the producer snapshot failed");
                }
            }
            if config.cleanup_policy != CleanupPolicy::Delete {
                if let Err(e) = self.compact(&s.name, now_ms) {
                    tracing::warn!(stream = %s.name, error = %e, "compaction failed");
                }
            }
        }
    }

    /// Compacts every partition of a stream now (any cleanup policy). Returns, per partition
    /// compacted, (partition, records before, records after) among the closed segments.
    pub fn compact(&self, name: &str, now_ms: i64) -> Result<Vec<(u32, u64, u64)>, StreamError> {
        let stream = self.get(name)?;
        let config = stream.config();
        let mut out = Vec::new();
        for p in stream.partitions() {
            if let Some((before, after)) = p.compact(now_ms, config.delete_retention_ms)? {
                tracing::info!(
                    stream = name,
                    partition = p.index,
                    before,
                    after,
                    "compacted"
                );
                out.push((p.index, before, after));
            }
        }
        Ok(out)
    }

    /// Answers waiting group calls and closes every log (flushing it).
    pub fn close(&self) -> Result<(), StreamError> {
        self.inner.coordinator.shutdown();
        let streams: Vec<Arc<Stream>> = self.inner.streams.read().values().cloned().collect();
        let mut result = Ok(());
        for s in streams {
            for p in s.partitions() {
                if let Err(e) = p.close() {
                    result = Err(e);
                }
            }
        }
        self.inner.offsets.close()?;
        result
    }
}

fn bump(appended: &watch::Sender<u64>) {
    appended.send_modify(|n| *n = n.wrapping_add(1));
}

/// A partition log's configuration: [`log_config`] plus a sync observer that wakes fetch long
/// polls from the log's own writer and syncer threads, as soon as the durable offset moves,
/// rather than after the producing connection's task has noticed and run. (The observer is
/// also called after writes not yet durable; a fetch woken early finds nothing new and waits
/// again.)
fn partition_log_config(
    streams: &StreamsConfig,
    config: &StreamConfig,
    appended: &Arc<watch::Sender<u64>>,
) -> LogConfig {
    let appended = Arc::clone(appended);
    LogConfig {
        on_sync: Some(Arc::new(move |_| bump(&appended))),
        ..log_config(streams, config)
    }
}

fn log_config(streams: &StreamsConfig, config: &StreamConfig) -> LogConfig {
    LogConfig {
        segment_bytes: config.segment_bytes,
        durability: config
            .durability
            .as_deref()
            .and_then(parse_durability)
            .unwrap_or(streams.default_durability),
        max_entry_bytes: MAX_MESSAGE_BYTES_LIMIT as u32,
        direct_io: config.direct_io,
        tail_cache: streams.tail_cache.clone(),
        ..LogConfig::default()
    }
}

fn info(stream: &Stream) -> StreamInfo {
    StreamInfo {
        name: stream.name.clone(),
        partitions: stream
            .partitions()
            .iter()
            .map(|p| PartitionInfo {
                partition: p.index,
                log_start_offset: p.log_start_offset(),
                high_watermark: p.high_watermark(),
                size_bytes: p.size_bytes(),
                segments: p.segments().len(),
            })
            .collect(),
        config: stream.config(),
        created_ms: stream.created_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use batch::{encode_records, NewRecord};

    fn recs(n: usize) -> Bytes {
        let r: Vec<NewRecord> = (0..n)
            .map(|i| NewRecord {
                value: Some(Bytes::from(format!("v{i}"))),
                ..Default::default()
            })
            .collect();
        encode_records(&r, 1).unwrap()
    }

    #[tokio::test]
    async fn create_produce_reopen_delete() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Streams::open(StreamsConfig::new(dir.path())).unwrap();
            s.create("orders", 3, &[("retention.ms".into(), "1000".into())])
                .unwrap();
            assert!(matches!(
                s.create("orders", 1, &[]),
                Err(StreamError::StreamExists(_))
            ));
            assert!(matches!(
                s.create("bad/name", 1, &[]),
                Err(StreamError::InvalidName(_))
            ));
            assert!(matches!(
                s.create("x", 1, &[("nope".into(), "1".into())]),
                Err(StreamError::InvalidConfig(_))
            ));
            let a = s.produce("orders", 1, recs(4)).await.unwrap();
            assert_eq!(a.base_offset, 0);
            assert!(matches!(
                s.produce("orders", 3, recs(1)).await,
                Err(StreamError::UnknownPartition { .. })
            ));
            s.add_partitions("orders", 5).unwrap();
            s.alter_config(
                "orders",
                &[("cleanup.policy".into(), Some("compact".into()))],
                false,
                false,
            )
            .unwrap();
            s.offsets()
                .commit("g", &[("orders".into(), 1, 4, String::new())], 0)
                .await
                .unwrap();
            s.close().unwrap();
        }
        let s = Streams::open(StreamsConfig::new(dir.path())).unwrap();
        let info = s.describe("orders").unwrap();
        assert_eq!(info.partitions.len(), 5);
        assert_eq!(info.partitions[1].high_watermark, 4);
        assert_eq!(info.config.retention_ms, 1000);
        assert_eq!(info.config.cleanup_policy, CleanupPolicy::Compact);
        assert_eq!(s.group_lag("g"), vec![("orders".into(), 1, 4, 4, 0)]);
        assert_eq!(s.list_groups().len(), 1);
        s.delete("orders").await.unwrap();
        assert!(s.describe("orders").is_err());
        assert!(s.group_lag("g").is_empty());
        s.create("orders", 1, &[]).unwrap();
        assert_eq!(
            s.describe("orders").unwrap().partitions[0].high_watermark,
            0
        );
    }

    /// A long poll is woken by the partition log itself once an append is durable, even when
    /// the appender never calls `notify_appended` (so it does not wait for the producer's task).
    #[tokio::test]
    async fn durable_appends_wake_long_polls_without_notify() {
        let dir = tempfile::tempdir().unwrap();
        let s = Streams::open(StreamsConfig::new(dir.path())).unwrap();
        s.create("orders", 1, &[]).unwrap();
        let mut changes = s.subscribe();
        changes.borrow_and_update();
        let (part, appended) = s.append("orders", 0, recs(2)).unwrap();
        loop {
            // Generous bound: this checks that the wake-up happens at all, not its speed.
            tokio::time::timeout(std::time::Duration::from_secs(30), changes.changed())
                .await
                .expect("no wake-up from the partition log")
                .unwrap();
            if part.high_watermark() >= appended.durable_at {
                break;
            }
        }
        assert_eq!(part.read_batches(0, 1 << 20).unwrap().batches.len(), 1);
    }
}
