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
//! | `durability` | `--durability` | `FERRY_DURABILITY` | `always`         |
//! | `log_format` | `--log-format` | `FERRY_LOG_FORMAT` | `text`           |
//! | `log_level`  | `--log-level`  | `FERRY_LOG_LEVEL`  | `info`           |

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./ferry-data";
/// Default address of the native HTTP door.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:7070";
/// Config file read when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_FILE: &str = "./ferry.toml";
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
    /// When a write is fsynced: `always` (before success is returned), `interval:<ms>` (at most
    /// <ms> ms later) or `never` (left to the OS). Queues may override it.
    /// [env: FERRY_DURABILITY] [config: durability] [default: always]
    #[arg(long, value_name = "always|interval:<ms>|never")]
    pub durability: Option<String>,
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
    pub durability: Durability,
    pub log_format: LogFormat,
    pub log_level: String,
    /// The config file that was read, if any (logged at start).
    pub config_file: Option<PathBuf>,
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
    durability: Option<String>,
    log_format: Option<String>,
    log_level: Option<String>,
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
    durability: Option<Sourced>,
    log_format: Option<Sourced>,
    log_level: Option<Sourced>,
}

impl Layer {
    /// Later layers win, key by key.
    fn overlay(self, over: Layer) -> Layer {
        Layer {
            data_dir: over.data_dir.or(self.data_dir),
            http_addr: over.http_addr.or(self.http_addr),
            durability: over.durability.or(self.durability),
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
            durability: env_var("FERRY_DURABILITY"),
            log_format: env_var("FERRY_LOG_FORMAT"),
            log_level: env_var("FERRY_LOG_LEVEL"),
        };
        let flag = |value: &Option<String>, name: &str| {
            sourced(value.clone(), || format!("flag --{name}"))
        };
        let flag_layer = Layer {
            data_dir: flag(&args.data_dir, "data-dir"),
            http_addr: flag(&args.http_addr, "http-addr"),
            durability: flag(&args.durability, "durability"),
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
        let durability = match layer.durability {
            Some(s) => check(&s, parse_durability)?,
            None => Durability::Always,
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
            durability,
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
            durability: Durability::Always,
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
        durability: key(file.durability, "durability"),
        log_format: key(file.log_format, "log_format"),
        log_level: key(file.log_level, "log_level"),
    })
}

fn check<T>(s: &Sourced, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<T, ConfigError> {
    parse(&s.value).map_err(|reason| ConfigError::InvalidValue {
        origin: s.origin.clone(),
        reason: format!("{:?}: {reason}", s.value),
    })
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
        let (_dir, path) = write_config("http_adr = \"127.0.0.1:1\"\n");
        let args = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        let err = ServerConfig::load(&args, no_env).unwrap_err().to_string();
        assert!(err.contains("http_adr"), "{err}");
    }

    #[test]
    fn invalid_values_name_their_origin_and_reason() {
        let (_dir, path) = write_config("durability = \"sometimes\"\n");
        let args = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        let err = ServerConfig::load(&args, no_env).unwrap_err().to_string();
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
}
