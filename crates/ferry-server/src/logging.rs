//! Structured logging with `tracing`, to stderr so stdout stays free for command output.
//!
//! The text format prints fields as `key=value`, which tests and operators rely on, for example
//! `listening door=http addr=127.0.0.1:43121`.

use std::io::IsTerminal;

use crate::config::LogFormat;

/// Installs the global subscriber. `filter` has been validated by the config module; an invalid
/// filter falls back to `info` rather than failing.
pub fn init(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) is harmless: the first subscriber stays.
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
