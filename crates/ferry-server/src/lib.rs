//! Ferry's front doors: the native HTTP/JSON API, metrics, health and configuration.
//!
//! Architecture invariant: this crate holds no queue logic. Each door decodes its wire format,
//! calls [`ferry_broker::Broker`], and encodes the answer; the broker never sees a wire type.
//!
//! - [`config`]: the one place where settings are parsed (file, environment, flags).
//! - [`server`]: the lifecycle (bind, recover, serve, graceful shutdown).
//! - [`aws`]: the AWS door (SQS over the JSON 1.0 and query/XML protocols, SigV4).
//! - [`kafka`]: the Kafka door (Kafka wire protocol over the streams domain).
//! - [`http`]: the native `/v1` API, `/metrics`, `/healthz`, `/readyz`, `/v1/openapi.json`.
//! - [`metrics`]: every exported metric name.
//! - [`logging`]: structured logs.

pub mod aws;
pub mod config;
pub mod http;
pub mod kafka;
pub mod logging;
pub mod metrics;
pub mod server;

pub use config::{ServeArgs, ServerConfig};
pub use server::{run, shutdown_signal, Listening};
