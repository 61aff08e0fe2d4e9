//! `ferry serve`: load the configuration, start logging, run the server until a signal.

use std::process::ExitCode;
use std::time::Duration;

use ferry_server::{ServeArgs, ServerConfig};

/// Exit code when the configuration is invalid.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code when the server cannot start or fails (port taken, data directory locked, ...).
pub const EXIT_FAILURE: u8 = 1;

pub fn run(args: ServeArgs) -> ExitCode {
    let config = match ServerConfig::load(&args, |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    ferry_server::logging::init(config.log_format, &config.log_level);
    if let Some(file) = &config.config_file {
        tracing::info!(file = %file.display(), "configuration file read");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ferry-worker")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(ferry_server::run(
        config,
        ferry_server::shutdown_signal(),
        |_| {},
    ));
    // A recovery still running on a blocking thread (shutdown during start) is abandoned.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "server failed");
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
