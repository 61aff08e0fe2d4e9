//! Server configuration: the one place where settings are parsed, layered and validated.
//!
//! Every setting can come from three layers. Later layers win:
//!
//! ```text
//! ferry.toml (--config FILE, $FERRY_CONFIG, or ./ferry.toml when present)
//!   < FERRY_* environment variables
//!     < command-line flags
//! ```
//!
//! Each layer is parsed into a [`Layer`] of optional raw strings, then the layers are merged and
//! every value is validated by the same function, so an invalid value is refused at start with a
//! message naming where it came from (file key, variable or flag) and why.
//!
//! | key          | flag           | env                | default          |
//! |--------------|----------------|--------------------|------------------|
//! | `data_dir`   | `--data-dir`   | `FERRY_DATA_DIR`   | `./ferry-data`   |
//! | `http_addr`  | `--http-addr`  | `FERRY_HTTP_ADDR`  | `127.0.0.1:7070` |
//! | `aws_addr`   | `--aws-addr`   | `FERRY_AWS_ADDR`   | `127.0.0.1:9324` |
//! | `kafka_addr` | `--kafka-addr` | `FERRY_KAFKA_ADDR` | `127.0.0.1:9092` |
//! | `kafka_auto_create_topics` | `--kafka-auto-create-topics` | `FERRY_KAFKA_AUTO_CREATE_TOPICS` | `true` |
//! | `kafka_default_partitions` | `--kafka-default-partitions` | `FERRY_KAFKA_DEFAULT_PARTITIONS` | `1` |
//! | `durability` | `--durability` | `FERRY_DURABILITY` | `always`         |
//! | `stream_cache` | `--stream-cache` | `FERRY_STREAM_CACHE` | `256MiB`         |
//! | `log_format` | `--log-format` | `FERRY_LOG_FORMAT` | `text`           |
//! | `log_level`  | `--log-level`  | `FERRY_LOG_LEVEL`  | `info`           |
//!
//! The AWS door's identity settings come from the file only:
//!
//! ```toml
//! [aws]
//! region = "us-east-1"          # default
//! account_id = "000000000000"   # default; 12 digits
//! [[aws.credentials]]           # none: open mode (unsigned requests, loopback peers only)
//! access_key_id = "AKIA..."
//! secret_access_key = "..."
//! account_id = "111122223333"   # optional: the key's own account (default: the door's)
//! user = "alice"                # optional: an IAM user name (principal arn:aws:iam::<account>:user/alice)
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./ferry-data";
/// Default address of the native HTTP door.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:7070";
/// Default address of the AWS (SQS) door.
pub const DEFAULT_AWS_ADDR: &str = "127.0.0.1:9324";
/// Default address of the Kafka door.
pub const DEFAULT_KAFKA_ADDR: &str = "127.0.0.1:9092";
/// Partitions of streams the Kafka door creates implicitly.
pub const DEFAULT_KAFKA_PARTITIONS: u32 = 1;
/// Default AWS region reported in queue ARNs.
pub const DEFAULT_AWS_REGION: &str = "us-east-1";
/// Default AWS account id used in queue URLs and ARNs.
pub const DEFAULT_AWS_ACCOUNT_ID: &str = "000000000000";
/// Config file read when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_FILE: &str = "./ferry.toml";
/// Default size of the stream partitions' shared tail cache.
pub const DEFAULT_STREAM_CACHE_BYTES: u64 = 256 << 20;

/// Longest accepted `interval:<ms>` durability interval (one minute).
pub const MAX_DURABILITY_INTERVAL_MS: u64 = 60_000;

/// `ferry serve` flags. Each flag has a `FERRY_*` variable and a `ferry.toml` key.
///
/// Values are kept as raw strings here so that flags, variables and file keys are validated by
/// the same code in [`ServerConfig::load`].
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeArgs {
    /// Configuration file (TOML). Default: ./ferry.toml when it exists.
    /// [env: FERRY_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory holding all queue data; locked while the server runs.
    /// [env: FERRY_DATA_DIR] [config: data_dir] [default: ./ferry-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Address of the native HTTP/JSON door (/v1, /metrics, /healthz). Port 0 picks a free port;
    /// the chosen address is logged as `listening door=http addr=...`.
    /// [env: FERRY_HTTP_ADDR] [config: http_addr] [default: 127.0.0.1:7070]
    #[arg(long, value_name = "HOST:PORT")]
    pub http_addr: Option<String>,
    /// Address of the AWS door (SQS JSON and query protocols). Port 0 picks a free port; the
    /// chosen address is logged as `listening door=aws addr=...`.
    /// [env: FERRY_AWS_ADDR] [config: aws_addr] [default: 127.0.0.1:9324]
    #[arg(long, value_name = "HOST:PORT")]
    pub aws_addr: Option<String>,
    /// Address of the Kafka door (Kafka wire protocol). Port 0 picks a free port; the chosen
    /// address is logged as `listening door=kafka addr=...` and advertised in Metadata.
    /// [env: FERRY_KAFKA_ADDR] [config: kafka_addr] [default: 127.0.0.1:9092]
    #[arg(long, value_name = "HOST:PORT")]
    pub kafka_addr: Option<String>,
    /// Create a missing stream when a Kafka client produces to it or asks for its metadata.
    /// [env: FERRY_KAFKA_AUTO_CREATE_TOPICS] [config: kafka_auto_create_topics] [default: true]
    #[arg(long, value_name = "true|false")]
    pub kafka_auto_create_topics: Option<String>,
    /// Partitions of streams created implicitly (auto-create, or CreateTopics with -1).
    /// [env: FERRY_KAFKA_DEFAULT_PARTITIONS] [config: kafka_default_partitions] [default: 1]
    #[arg(long, value_name = "N")]
    pub kafka_default_partitions: Option<String>,
    /// When a write is fsynced: `always` (before success is returned), `interval:<ms>` (at most
    /// <ms> ms later) or `never` (left to the OS). Queues may override it.
    /// [env: FERRY_DURABILITY] [config: durability] [default: always]
    #[arg(long, value_name = "always|interval:<ms>|never")]
    pub durability: Option<String>,
    /// Memory for the newest records of every stream partition, shared by all of them, so
    /// consumers near the end of a partition read from memory instead of the disk: bytes, or
    /// with a unit (`512MiB`, `2GiB`, `1.5GB`); `0` turns the cache off.
    /// [env: FERRY_STREAM_CACHE] [config: stream_cache] [default: 256MiB]
    #[arg(long, value_name = "SIZE")]
    pub stream_cache: Option<String>,
    /// Log line format: `text` for people, `json` for log collectors.
    /// [env: FERRY_LOG_FORMAT] [config: log_format] [default: text]
    #[arg(long, value_name = "text|json")]
    pub log_format: Option<String>,
    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives such as
    /// `info,ferry_server=debug`.
    /// [env: FERRY_LOG_LEVEL] [config: log_level] [default: info]
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// Server-wide durability default, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every acknowledged write has been fsynced.
    Always,
    /// Writes are fsynced at most this long after they are acknowledged.
    Interval(Duration),
    /// Fsync is left to the operating system.
    Never,
}

/// Format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated, merged configuration the server runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    /// `HOST:PORT`; resolved when the door binds.
    pub http_addr: String,
    /// `HOST:PORT` of the AWS door.
    pub aws_addr: String,
    /// Region, account and credentials of the AWS door.
    pub aws: AwsSettings,
    /// `HOST:PORT` of the Kafka door.
    pub kafka_addr: String,
    pub kafka_auto_create_topics: bool,
    pub kafka_default_partitions: u32,
    pub durability: Durability,
    /// Bytes of the stream partitions' shared tail cache (0: off).
    pub stream_cache_bytes: u64,
    pub log_format: LogFormat,
    pub log_level: String,
    /// The config file that was read, if any (logged at start).
    pub config_file: Option<PathBuf>,
}

/// The AWS door's identity: the region and account in queue URLs and ARNs, and the keys whose
/// SigV4 signatures it accepts. With no credentials the door is open (loopback peers only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    pub region: String,
    pub account_id: String,
    pub credentials: Vec<AwsCredential>,
    /// Seconds after an SQS DeleteQueue during which CreateQueue of the same name answers
    /// `QueueDeletedRecently` (SQS: 60). 0, the default, allows reuse at once.
    pub queue_name_reuse_delay_seconds: u64,
}

/// Longest `aws.queue_name_reuse_delay_seconds`.
pub const MAX_QUEUE_NAME_REUSE_DELAY_SECONDS: u64 = 3600;

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            region: DEFAULT_AWS_REGION.to_string(),
            account_id: DEFAULT_AWS_ACCOUNT_ID.to_string(),
            credentials: Vec::new(),
            queue_name_reuse_delay_seconds: 0,
        }
    }
}

/// One access key of the AWS door.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsCredential {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The account the key belongs to. None: the door's own account, whose keys own every
    /// queue and topic. A key of another account reaches only what a resource policy grants it.
    #[serde(default)]
    pub account_id: Option<String>,
    /// An IAM user name. None: the key acts as its account's root principal.
    #[serde(default)]
    pub user: Option<String>,
}

impl fmt::Debug for AwsCredential {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredential")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("account_id", &self.account_id)
            .field("user", &self.user)
            .finish()
    }
}

/// The `[aws]` table of `ferry.toml`.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AwsFileSection {
    region: Option<String>,
    account_id: Option<String>,
    #[serde(default)]
    credentials: Vec<AwsCredential>,
    queue_name_reuse_delay_seconds: Option<u64>,
}

/// A configuration that cannot be used. The message names the setting's origin and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("invalid {origin}: {reason}")]
    InvalidValue { origin: String, reason: String },
}

/// The keys of `ferry.toml`. Unknown keys are refused so typos do not go unnoticed.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLayer {
    data_dir: Option<String>,
    http_addr: Option<String>,
    aws_addr: Option<String>,
    aws: Option<AwsFileSection>,
    kafka_addr: Option<String>,
    kafka_auto_create_topics: Option<bool>,
    kafka_default_partitions: Option<u32>,
    durability: Option<String>,
    stream_cache: Option<SizeValue>,
    log_format: Option<String>,
    log_level: Option<String>,
}

/// A size in `ferry.toml`: a number of bytes or a string with a unit.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl SizeValue {
    fn into_string(self) -> String {
        match self {
            SizeValue::Bytes(n) => n.to_string(),
            SizeValue::Text(s) => s,
        }
    }
}

/// One value and where it came from, for error messages.
#[derive(Debug, Clone)]
struct Sourced {
    value: String,
    origin: String,
}

/// Raw values of one configuration layer.
#[derive(Debug, Default)]
struct Layer {
    data_dir: Option<Sourced>,
    http_addr: Option<Sourced>,
    aws_addr: Option<Sourced>,
    kafka_addr: Option<Sourced>,
    kafka_auto_create_topics: Option<Sourced>,
    kafka_default_partitions: Option<Sourced>,
    /// File only: `[aws]`, with the file's path for error messages.
    aws: Option<(AwsFileSection, String)>,
    durability: Option<Sourced>,
    stream_cache: Option<Sourced>,
    log_format: Option<Sourced>,
    log_level: Option<Sourced>,
}

impl Layer {
    /// Later layers win, key by key.
    fn overlay(self, over: Layer) -> Layer {
        Layer {
            data_dir: over.data_dir.or(self.data_dir),
            http_addr: over.http_addr.or(self.http_addr),
            aws_addr: over.aws_addr.or(self.aws_addr),
            kafka_addr: over.kafka_addr.or(self.kafka_addr),
            kafka_auto_create_topics: over
                .kafka_auto_create_topics
                .or(self.kafka_auto_create_topics),
            kafka_default_partitions: over
                .kafka_default_partitions
                .or(self.kafka_default_partitions),
            aws: over.aws.or(self.aws),
            durability: over.durability.or(self.durability),
            stream_cache: over.stream_cache.or(self.stream_cache),
            log_format: over.log_format.or(self.log_format),
            log_level: over.log_level.or(self.log_level),
        }
    }
}

fn sourced(value: Option<String>, origin: impl FnOnce() -> String) -> Option<Sourced> {
    value.map(|value| Sourced {
        value,
        origin: origin(),
    })
}

impl ServerConfig {
    /// Loads the configuration from the file, the environment (through `env`, so tests need not
    /// touch the process environment) and the flags.
    pub fn load(
        args: &ServeArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ServerConfig, ConfigError> {
        let (config_file, file_layer) = match explicit_config_path(args, &env) {
            Some(path) => (Some(path.clone()), read_file_layer(&path)?),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                let path = PathBuf::from(DEFAULT_CONFIG_FILE);
                (Some(path.clone()), read_file_layer(&path)?)
            }
            None => (None, Layer::default()),
        };
        let env_var = |name: &str| sourced(env(name), || format!("environment variable {name}"));
        let env_layer = Layer {
            data_dir: env_var("FERRY_DATA_DIR"),
            http_addr: env_var("FERRY_HTTP_ADDR"),
            aws_addr: env_var("FERRY_AWS_ADDR"),
            kafka_addr: env_var("FERRY_KAFKA_ADDR"),
            kafka_auto_create_topics: env_var("FERRY_KAFKA_AUTO_CREATE_TOPICS"),
            kafka_default_partitions: env_var("FERRY_KAFKA_DEFAULT_PARTITIONS"),
            aws: None,
            durability: env_var("FERRY_DURABILITY"),
            stream_cache: env_var("FERRY_STREAM_CACHE"),
            log_format: env_var("FERRY_LOG_FORMAT"),
            log_level: env_var("FERRY_LOG_LEVEL"),
        };
        let flag = |value: &Option<String>, name: &str| {
            sourced(value.clone(), || format!("flag --{name}"))
        };
        let flag_layer = Layer {
            data_dir: flag(&args.data_dir, "data-dir"),
            http_addr: flag(&args.http_addr, "http-addr"),
            aws_addr: flag(&args.aws_addr, "aws-addr"),
            kafka_addr: flag(&args.kafka_addr, "kafka-addr"),
            kafka_auto_create_topics: flag(
                &args.kafka_auto_create_topics,
                "kafka-auto-create-topics",
            ),
            kafka_default_partitions: flag(
                &args.kafka_default_partitions,
                "kafka-default-partitions",
            ),
            aws: None,
            durability: flag(&args.durability, "durability"),
            stream_cache: flag(&args.stream_cache, "stream-cache"),
            log_format: flag(&args.log_format, "log-format"),
            log_level: flag(&args.log_level, "log-level"),
        };
        let merged = file_layer.overlay(env_layer).overlay(flag_layer);
        ServerConfig::validate(merged, config_file)
    }

    fn validate(layer: Layer, config_file: Option<PathBuf>) -> Result<ServerConfig, ConfigError> {
        let data_dir = match layer.data_dir {
            Some(s) => {
                check(&s, |v| {
                    if v.trim().is_empty() {
                        Err("must not be empty".to_string())
                    } else {
                        Ok(())
                    }
                })?;
                PathBuf::from(s.value)
            }
            None => PathBuf::from(DEFAULT_DATA_DIR),
        };
        let http_addr = match layer.http_addr {
            Some(s) => {
                check(&s, parse_host_port)?;
                s.value
            }
            None => DEFAULT_HTTP_ADDR.to_string(),
        };
        let aws_addr = match layer.aws_addr {
            Some(s) => {
                check(&s, parse_host_port)?;
                s.value
            }
            None => DEFAULT_AWS_ADDR.to_string(),
        };
        let kafka_addr = match layer.kafka_addr {
            Some(s) => {
                check(&s, parse_host_port)?;
                s.value
            }
            None => DEFAULT_KAFKA_ADDR.to_string(),
        };
        let kafka_auto_create_topics = match layer.kafka_auto_create_topics {
            Some(s) => check(&s, |v| match v {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err("expected `true` or `false`".to_string()),
            })?,
            None => true,
        };
        let kafka_default_partitions = match layer.kafka_default_partitions {
            Some(s) => check(&s, |v| match v.parse::<u32>() {
                Ok(n) if (1..=ferry_broker::stream::MAX_PARTITIONS).contains(&n) => Ok(n),
                _ => Err(format!(
                    "expected 1 to {}",
                    ferry_broker::stream::MAX_PARTITIONS
                )),
            })?,
            None => DEFAULT_KAFKA_PARTITIONS,
        };
        let aws = match layer.aws {
            Some((section, file)) => validate_aws(section, &file)?,
            None => AwsSettings::default(),
        };
        let durability = match layer.durability {
            Some(s) => check(&s, parse_durability)?,
            None => Durability::Always,
        };
        let stream_cache_bytes = match layer.stream_cache {
            Some(s) => check(&s, parse_size)?,
            None => DEFAULT_STREAM_CACHE_BYTES,
        };
        let log_format = match layer.log_format {
            Some(s) => check(&s, parse_log_format)?,
            None => LogFormat::Text,
        };
        let log_level = match layer.log_level {
            Some(s) => {
                check(&s, |v| {
                    tracing_subscriber::EnvFilter::try_new(v)
                        .map(|_| ())
                        .map_err(|e| format!("not a log level or filter ({e})"))
                })?;
                s.value
            }
            None => "info".to_string(),
        };
        Ok(ServerConfig {
            data_dir,
            http_addr,
            aws_addr,
            aws,
            kafka_addr,
            kafka_auto_create_topics,
            kafka_default_partitions,
            durability,
            stream_cache_bytes,
            log_format,
            log_level,
            config_file,
        })
    }
}

impl Default for ServerConfig {
    /// The zero-configuration server.
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            http_addr: DEFAULT_HTTP_ADDR.to_string(),
            aws_addr: DEFAULT_AWS_ADDR.to_string(),
            aws: AwsSettings::default(),
            kafka_addr: DEFAULT_KAFKA_ADDR.to_string(),
            kafka_auto_create_topics: true,
            kafka_default_partitions: DEFAULT_KAFKA_PARTITIONS,
            durability: Durability::Always,
            stream_cache_bytes: DEFAULT_STREAM_CACHE_BYTES,
            log_format: LogFormat::Text,
            log_level: "info".to_string(),
            config_file: None,
        }
    }
}

fn explicit_config_path(args: &ServeArgs, env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    args.config
        .clone()
        .or_else(|| env("FERRY_CONFIG").map(PathBuf::from))
}

fn read_file_layer(path: &Path) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let file: FileLayer = toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
        path: path.to_path_buf(),
        message: e.to_string().trim().replace('\n', " "),
    })?;
    let key = |value: Option<String>, name: &str| {
        sourced(value, || format!("key `{name}` in {}", path.display()))
    };
    Ok(Layer {
        data_dir: key(file.data_dir, "data_dir"),
        http_addr: key(file.http_addr, "http_addr"),
        aws_addr: key(file.aws_addr, "aws_addr"),
        kafka_addr: key(file.kafka_addr, "kafka_addr"),
        kafka_auto_create_topics: key(
            file.kafka_auto_create_topics.map(|b| b.to_string()),
            "kafka_auto_create_topics",
        ),
        kafka_default_partitions: key(
            file.kafka_default_partitions.map(|n| n.to_string()),
            "kafka_default_partitions",
        ),
        aws: file.aws.map(|a| (a, path.display().to_string())),
        durability: key(file.durability, "durability"),
        stream_cache: key(
            file.stream_cache.map(SizeValue::into_string),
            "stream_cache",
        ),
        log_format: key(file.log_format, "log_format"),
        log_level: key(file.log_level, "log_level"),
    })
}

/// Checks the `[aws]` table: a non-empty region, a 12-digit account id, and distinct,
/// non-empty access keys.
fn validate_aws(section: AwsFileSection, file: &str) -> Result<AwsSettings, ConfigError> {
    let invalid = |key: &str, reason: String| ConfigError::InvalidValue {
        origin: format!("key `aws.{key}` in {file}"),
        reason,
    };
    let region = section
        .region
        .unwrap_or_else(|| DEFAULT_AWS_REGION.to_string());
    if region.is_empty()
        || !region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(invalid(
            "region",
            format!("{region:?}: expected a region such as us-east-1"),
        ));
    }
    let account_id = section
        .account_id
        .unwrap_or_else(|| DEFAULT_AWS_ACCOUNT_ID.to_string());
    if !is_account_id(&account_id) {
        return Err(invalid(
            "account_id",
            format!("{account_id:?}: expected 12 digits"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for c in &section.credentials {
        if c.access_key_id.is_empty() || c.secret_access_key.is_empty() {
            return Err(invalid(
                "credentials",
                "access_key_id and secret_access_key must not be empty".into(),
            ));
        }
        if !seen.insert(c.access_key_id.clone()) {
            return Err(invalid(
                "credentials",
                format!("access key {:?} is listed twice", c.access_key_id),
            ));
        }
        if let Some(a) = &c.account_id {
            if !is_account_id(a) {
                return Err(invalid(
                    "credentials",
                    format!(
                        "account_id {a:?} of access key {:?}: expected 12 digits",
                        c.access_key_id
                    ),
                ));
            }
        }
        if let Some(u) = &c.user {
            if !is_iam_user_name(u) {
                return Err(invalid(
                    "credentials",
                    format!(
                        "user {u:?} of access key {:?}: expected 1 to 64 of A-Z a-z 0-9 + = , . @ _ -",
                        c.access_key_id
                    ),
                ));
            }
        }
    }
    let queue_name_reuse_delay_seconds = section.queue_name_reuse_delay_seconds.unwrap_or(0);
    if queue_name_reuse_delay_seconds > MAX_QUEUE_NAME_REUSE_DELAY_SECONDS {
        return Err(invalid(
            "queue_name_reuse_delay_seconds",
            format!(
                "{queue_name_reuse_delay_seconds}: at most {MAX_QUEUE_NAME_REUSE_DELAY_SECONDS}"
            ),
        ));
    }
    Ok(AwsSettings {
        region,
        account_id,
        credentials: section.credentials,
        queue_name_reuse_delay_seconds,
    })
}

/// An AWS account id: 12 digits.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// IAM's user name rule.
fn is_iam_user_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

fn check<T>(s: &Sourced, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<T, ConfigError> {
    parse(&s.value).map_err(|reason| ConfigError::InvalidValue {
        origin: s.origin.clone(),
        reason: format!("{:?}: {reason}", s.value),
    })
}

/// A size: bytes, or a number with a unit (`B`, `KB`, `MB`, `GB`, `TB` in powers of 1000;
/// `KiB`, `MiB`, `GiB`, `TiB` in powers of 1024; case-insensitive). Fractions are allowed
/// with a unit (`1.5GiB`).
pub fn parse_size(value: &str) -> Result<u64, String> {
    const UNITS: [(&str, u64); 9] = [
        ("b", 1),
        ("kb", 1_000),
        ("mb", 1_000_000),
        ("gb", 1_000_000_000),
        ("tb", 1_000_000_000_000),
        ("kib", 1 << 10),
        ("mib", 1 << 20),
        ("gib", 1 << 30),
        ("tib", 1 << 40),
    ];
    let expected = || "expected bytes or a size such as 512MiB, 2GiB or 1.5GB".to_string();
    let text = value.trim().to_ascii_lowercase();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = (text[..split].trim(), text[split..].trim());
    if number.is_empty() {
        return Err(expected());
    }
    if unit.is_empty() {
        return number.parse::<u64>().map_err(|_| expected());
    }
    let (_, multiplier) = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .ok_or_else(expected)?;
    let amount: f64 = number.parse().map_err(|_| expected())?;
    let bytes = amount * *multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err("too large".to_string());
    }
    Ok(bytes as u64)
}

/// `HOST:PORT` (IPv6 as `[::1]:7070`). The host is resolved when the door binds.
pub fn parse_host_port(value: &str) -> Result<(), String> {
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| "expected HOST:PORT, for example 127.0.0.1:7070".to_string())?;
    if host.is_empty() {
        return Err("the host is missing (use 0.0.0.0 to listen on every interface)".into());
    }
    port.parse::<u16>()
        .map_err(|_| format!("port {port:?} is not a number between 0 and 65535"))?;
    Ok(())
}

/// `always`, `interval:<ms>` or `never`.
pub fn parse_durability(value: &str) -> Result<Durability, String> {
    match value {
        "always" => Ok(Durability::Always),
        "never" => Ok(Durability::Never),
        other => {
            let ms = other
                .strip_prefix("interval:")
                .ok_or_else(|| "expected `always`, `interval:<ms>` or `never`".to_string())?;
            let ms: u64 = ms
                .parse()
                .map_err(|_| format!("interval {ms:?} is not a number of milliseconds"))?;
            if ms == 0 || ms > MAX_DURABILITY_INTERVAL_MS {
                return Err(format!(
                    "interval must be between 1 and {MAX_DURABILITY_INTERVAL_MS} ms"
                ));
            }
            Ok(Durability::Interval(Duration::from_millis(ms)))
        }
    }
}

fn parse_log_format(value: &str) -> Result<LogFormat, String> {
    match value {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected `text` or `json`".into()),
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::Always => f.write_str("always"),
            Durability::Interval(d) => write!(f, "interval:{}", d.as_millis()),
            Durability::Never => f.write_str("never"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// Loads a configuration from a `ferry.toml` holding `text`, with no flags or environment.
    fn load_file(text: &str) -> Result<ServerConfig, ConfigError> {
        let (_dir, path) = write_config(text);
        let args = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        ServerConfig::load(&args, no_env)
    }

    fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn zero_configuration_uses_defaults() {
        // Tests run in the crate directory, which has no ferry.toml.
        let config = ServerConfig::load(&ServeArgs::default(), no_env).unwrap();
        assert_eq!(config, ServerConfig::default());
    }

    #[test]
    fn flags_win_over_env_which_wins_over_file() {
        let (_dir, path) = write_config(
            "data_dir = \"/from/file\"\nhttp_addr = \"127.0.0.1:1\"\ndurability = \"never\"\n",
        );
        let env: HashMap<&str, &str> = [
            ("FERRY_HTTP_ADDR", "127.0.0.1:2"),
            ("FERRY_DURABILITY", "interval:5"),
        ]
        .into();
        let args = ServeArgs {
            config: Some(path.clone()),
            durability: Some("always".into()),
            ..Default::default()
        };
        let config = ServerConfig::load(&args, |k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/from/file"));
        assert_eq!(config.http_addr, "127.0.0.1:2");
        assert_eq!(config.durability, Durability::Always);
        assert_eq!(config.config_file, Some(path));
    }

    #[test]
    fn unknown_file_key_is_refused_with_its_name() {
        let err = load_file("http_adr = \"127.0.0.1:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("http_adr"), "{err}");
    }

    #[test]
    fn invalid_values_name_their_origin_and_reason() {
        let err = load_file("durability = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("key `durability`") && err.contains("expected"),
            "{err}"
        );

        let err = ServerConfig::load(&ServeArgs::default(), |k| {
            (k == "FERRY_HTTP_ADDR").then(|| "localhost".to_string())
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("FERRY_HTTP_ADDR") && err.contains("HOST:PORT"),
            "{err}"
        );

        let args = ServeArgs {
            log_format: Some("xml".into()),
            ..Default::default()
        };
        let err = ServerConfig::load(&args, no_env).unwrap_err().to_string();
        assert!(err.contains("--log-format"), "{err}");
    }

    #[test]
    fn durability_syntax() {
        assert_eq!(parse_durability("always"), Ok(Durability::Always));
        assert_eq!(parse_durability("never"), Ok(Durability::Never));
        assert_eq!(
            parse_durability("interval:250"),
            Ok(Durability::Interval(Duration::from_millis(250)))
        );
        assert!(parse_durability("interval:0").is_err());
        assert!(parse_durability("interval:x").is_err());
        assert_eq!(
            parse_durability(&Durability::Interval(Duration::from_millis(7)).to_string()),
            Ok(Durability::Interval(Duration::from_millis(7)))
        );
    }

    #[test]
    fn size_syntax() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("2 gib"), Ok(2 << 30));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("10b"), Ok(10));
        for bad in [
            "",
            "lots",
            "MiB",
            "1.5",
            "-1",
            "3 parsecs",
            "99999999999TiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_stream_cache_comes_from_every_layer() {
        assert_eq!(
            ServerConfig::load(&ServeArgs::default(), no_env)
                .unwrap()
                .stream_cache_bytes,
            DEFAULT_STREAM_CACHE_BYTES
        );
        for (text, bytes) in [
            ("stream_cache = 1024\n", 1024),
            ("stream_cache = \"1GiB\"\n", 1 << 30),
        ] {
            let (_dir, path) = write_config(text);
            let args = ServeArgs {
                config: Some(path),
                ..Default::default()
            };
            assert_eq!(
                ServerConfig::load(&args, no_env)
                    .unwrap()
                    .stream_cache_bytes,
                bytes
            );
        }
        let env = |k: &str| (k == "FERRY_STREAM_CACHE").then(|| "0".to_string());
        assert_eq!(
            ServerConfig::load(&ServeArgs::default(), env)
                .unwrap()
                .stream_cache_bytes,
            0
        );
        let flagged = ServeArgs {
            stream_cache: Some("lots".into()),
            ..Default::default()
        };
        let err = ServerConfig::load(&flagged, env).unwrap_err().to_string();
        assert!(
            err.contains("--stream-cache") && err.contains("512MiB"),
            "{err}"
        );
    }

    #[test]
    fn aws_settings_come_from_the_file_and_the_address_from_every_layer() {
        let (_dir, path) = write_config(
            "aws_addr = \"127.0.0.1:1\"\n[aws]\nregion = \"eu-west-1\"\naccount_id = \"123456789012\"\n\
             [[aws.credentials]]\naccess_key_id = \"AKID\"\nsecret_access_key = \"sekrit-value\"\n",
        );
        let args = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        let config = ServerConfig::load(&args, no_env).unwrap();
        assert_eq!(config.aws_addr, "127.0.0.1:1");
        assert_eq!(config.aws.region, "eu-west-1");
        assert_eq!(config.aws.account_id, "123456789012");
        assert_eq!(config.aws.credentials.len(), 1);
        assert_eq!(config.aws.credentials[0].access_key_id, "AKID");
        assert!(!format!("{config:?}").contains("sekrit-value"));
        let env = |k: &str| (k == "FERRY_AWS_ADDR").then(|| "127.0.0.1:2".to_string());
        assert_eq!(
            ServerConfig::load(&args, env).unwrap().aws_addr,
            "127.0.0.1:2"
        );
        let flagged = ServeArgs {
            aws_addr: Some("127.0.0.1:3".into()),
            ..args
        };
        assert_eq!(
            ServerConfig::load(&flagged, env).unwrap().aws_addr,
            "127.0.0.1:3"
        );
        assert_eq!(ServerConfig::default().aws_addr, DEFAULT_AWS_ADDR);
        assert!(ServerConfig::default().aws.credentials.is_empty());

        let err = load_file("[aws]\naccount_id = \"12\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("aws.account_id"), "{err}");

        assert_eq!(
            ServerConfig::default().aws.queue_name_reuse_delay_seconds,
            0
        );
        let config = load_file("[aws]\nqueue_name_reuse_delay_seconds = 60\n").unwrap();
        assert_eq!(config.aws.queue_name_reuse_delay_seconds, 60);
        let err = load_file("[aws]\nqueue_name_reuse_delay_seconds = 3601\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("aws.queue_name_reuse_delay_seconds"), "{err}");
    }

    #[test]
    fn a_credential_may_name_its_account_and_user() {
        let key = "[[aws.credentials]]\naccess_key_id = \"K\"\nsecret_access_key = \"S\"\n";
        let config = load_file(&format!(
            "{key}account_id = \"210987654321\"\nuser = \"alice.b@x\"\n"
        ))
        .unwrap();
        let c = &config.aws.credentials[0];
        assert_eq!(c.account_id.as_deref(), Some("210987654321"));
        assert_eq!(c.user.as_deref(), Some("alice.b@x"));
        let plain = load_file(key).unwrap();
        assert_eq!(plain.aws.credentials[0].account_id, None);
        assert_eq!(plain.aws.credentials[0].user, None);
        for bad in [
            "account_id = \"2109\"\n",
            "user = \"a/b\"\n",
            "user = \"\"\n",
        ] {
            let err = load_file(&format!("{key}{bad}")).unwrap_err().to_string();
            assert!(err.contains("aws.credentials"), "{bad}: {err}");
        }
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let args = ServeArgs {
            config: Some(PathBuf::from("/nonexistent/ferry.toml")),
            ..Default::default()
        };
        assert!(matches!(
            ServerConfig::load(&args, no_env),
            Err(ConfigError::ReadFile { .. })
        ));
    }

    #[test]
    fn kafka_settings_from_every_layer_and_validated() {
        let defaults = ServerConfig::load(&ServeArgs::default(), no_env).unwrap();
        assert_eq!(defaults.kafka_addr, DEFAULT_KAFKA_ADDR);
        assert!(defaults.kafka_auto_create_topics);
        assert_eq!(defaults.kafka_default_partitions, DEFAULT_KAFKA_PARTITIONS);
        let (_dir, path) = write_config(
            "kafka_addr = \"127.0.0.1:1\"\nkafka_auto_create_topics = false\nkafka_default_partitions = 3\n",
        );
        let args = ServeArgs {
            config: Some(path),
            kafka_addr: Some("127.0.0.1:0".into()),
            ..Default::default()
        };
        let env = |k: &str| (k == "FERRY_KAFKA_DEFAULT_PARTITIONS").then(|| "5".to_string());
        let config = ServerConfig::load(&args, env).unwrap();
        assert_eq!(config.kafka_addr, "127.0.0.1:0");
        assert!(!config.kafka_auto_create_topics);
        assert_eq!(config.kafka_default_partitions, 5);
        for (args, needle) in [
            (
                ServeArgs {
                    kafka_addr: Some("nope".into()),
                    ..Default::default()
                },
                "--kafka-addr",
            ),
            (
                ServeArgs {
                    kafka_auto_create_topics: Some("yes".into()),
                    ..Default::default()
                },
                "--kafka-auto-create-topics",
            ),
            (
                ServeArgs {
                    kafka_default_partitions: Some("0".into()),
                    ..Default::default()
                },
                "--kafka-default-partitions",
            ),
        ] {
            let err = ServerConfig::load(&args, no_env).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
