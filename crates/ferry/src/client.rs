//! A small blocking client of the native HTTP API for the CLI commands.
//!
//! It turns the three ways a call can fail into [`CliError`]s with distinct exit codes:
//! the server answered with an API error (1), the server could not be reached (3), or the
//! answer was not what the API documents (1).

use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Exit code when the server answered with an error (printed as `error: Code: message`).
pub const EXIT_API_ERROR: u8 = 1;
/// Exit code for usage errors (clap uses it for bad arguments too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code when the server cannot be reached.
pub const EXIT_CONNECT: u8 = 3;

/// How long a CLI call may take, beyond any long-poll wait it asked for.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed CLI command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot connect to {server}: {reason}")]
    Connect { server: String, reason: String },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Other(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Api { .. } | CliError::Other(_) => EXIT_API_ERROR,
            CliError::Connect { .. } => EXIT_CONNECT,
            CliError::Usage(_) => EXIT_USAGE,
        }
    }
}

/// The API's error shape.
#[derive(serde::Deserialize)]
struct ErrorEnvelope {
    error: ErrorInner,
}

#[derive(serde::Deserialize)]
struct ErrorInner {
    code: String,
    message: String,
}

/// The server's base URL and a kept-alive connection pool.
pub struct ApiClient {
    base: String,
    http: Client,
}

impl ApiClient {
    pub fn new(server: &str) -> Result<ApiClient, CliError> {
        let http = Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| CliError::Other(format!("cannot build HTTP client: {e}")))?;
        Ok(ApiClient {
            base: server.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// `/v1/queues/{name}{rest}` with the name percent-encoded.
    pub fn queue_path(name: &str, rest: &str) -> String {
        format!("/v1/queues/{}{rest}", encode_segment(name))
    }

    /// Sends a request and returns the JSON answer (`null` for 204).
    pub fn call<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<serde_json::Value, CliError> {
        self.call_with_timeout(method, path, body, REQUEST_TIMEOUT)
    }

    pub fn call_with_timeout<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<serde_json::Value, CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).timeout(timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().map_err(|e| self.transport_error(e))?;
        decode(response)
    }

    /// Like [`call`](Self::call), decoding the answer into `T`.
    pub fn call_as<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, CliError> {
        let value = self.call(method, path, body)?;
        serde_json::from_value(value)
            .map_err(|e| CliError::Other(format!("unexpected answer from the server: {e}")))
    }

    fn transport_error(&self, e: reqwest::Error) -> CliError {
        if e.is_connect() || e.is_timeout() && e.is_connect() {
            CliError::Connect {
                server: self.base.clone(),
                reason: root_cause(&e),
            }
        } else if e.is_builder() {
            CliError::Usage(format!(
                "invalid server URL {:?}: {}",
                self.base,
                root_cause(&e)
            ))
        } else {
            CliError::Other(format!(
                "request to {} failed: {}",
                self.base,
                root_cause(&e)
            ))
        }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn decode(response: Response) -> Result<serde_json::Value, CliError> {
    let status = response.status();
    let bytes = response
        .bytes()
        .map_err(|e| CliError::Other(format!("cannot read the server's answer: {e}")))?;
    if status.is_success() {
        if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        return serde_json::from_slice(&bytes)
            .map_err(|e| CliError::Other(format!("the server's answer is not JSON: {e}")));
    }
    match serde_json::from_slice::<ErrorEnvelope>(&bytes) {
        Ok(envelope) => Err(CliError::Api {
            status: status.as_u16(),
            code: envelope.error.code,
            message: envelope.error.message,
        }),
        Err(_) => Err(CliError::Api {
            status: status.as_u16(),
            code: format!("HTTP{}", status.as_u16()),
            message: String::from_utf8_lossy(&bytes).into_owned(),
        }),
    }
}

/// Percent-encodes one path segment (queue names are `[A-Za-z0-9_-]` plus `.fifo`, but the
/// server decides what is valid, so encode anything else rather than guess).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
