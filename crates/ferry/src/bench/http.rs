//! [`Target`] over Ferry's native HTTP/JSON API, with kept-alive connections.

use std::time::Duration;

use anyhow::{anyhow, Context};
use serde::{Deserialize, Serialize};

use super::target::{Delivery, Target};
use crate::client::encode_segment;

/// Longer than the longest long poll.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct HttpTarget {
    base: String,
    client: reqwest::Client,
}

#[derive(Serialize)]
struct Outgoing<'a> {
    body: &'a str,
}

#[derive(Serialize)]
struct SendBatch<'a> {
    messages: Vec<Outgoing<'a>>,
}

#[derive(Deserialize)]
struct BatchResult {
    failed: usize,
}

#[derive(Serialize)]
struct ReceiveRequest {
    max: usize,
    wait: u32,
}

#[derive(Deserialize)]
struct Received {
    messages: Vec<ReceivedMessage>,
}

#[derive(Deserialize)]
struct ReceivedMessage {
    body: String,
    receipt_handle: String,
}

#[derive(Serialize)]
struct DeleteBatch {
    receipt_handles: Vec<String>,
}

impl HttpTarget {
    pub fn new(server: &str) -> anyhow::Result<HttpTarget> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(HttpTarget {
            base: server.trim_end_matches('/').to_string(),
            client,
        })
    }

    fn url(&self, queue: &str, rest: &str) -> String {
        format!("{}/v1/queues/{}{rest}", self.base, encode_segment(queue))
    }

    async fn post<B: Serialize, T: for<'de> Deserialize<'de>>(
        &self,
        url: String,
        body: &B,
    ) -> anyhow::Result<T> {
        let response = self.client.post(url).json(body).send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if !status.is_success() {
            return Err(anyhow!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        Ok(serde_json::from_slice(&bytes)?)
    }
}

impl Target for HttpTarget {
    async fn prepare(&self, queue: &str) -> anyhow::Result<()> {
        let response = self
            .client
            .post(format!("{}/v1/queues", self.base))
            .json(&serde_json::json!({"name": queue}))
            .send()
            .await?;
        // 409: the queue exists with other attributes; it is used as it is.
        let status = response.status();
        if !status.is_success() && status.as_u16() != 409 {
            return Err(anyhow!(
                "cannot create queue {queue}: HTTP {status}: {}",
                response.text().await.unwrap_or_default()
            ));
        }
        let _: serde_json::Value = self.post(self.url(queue, "/purge"), &()).await?;
        Ok(())
    }

    async fn send(&self, queue: &str, bodies: Vec<String>) -> anyhow::Result<usize> {
        let batch = SendBatch {
            messages: bodies.iter().map(|b| Outgoing { body: b }).collect(),
        };
        let result: BatchResult = self.post(self.url(queue, "/messages"), &batch).await?;
        Ok(bodies.len().saturating_sub(result.failed))
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait_seconds: u32,
    ) -> anyhow::Result<Vec<Delivery>> {
        let received: Received = self
            .post(
                self.url(queue, "/receive"),
                &ReceiveRequest {
                    max,
                    wait: wait_seconds,
                },
            )
            .await?;
        Ok(received
            .messages
            .into_iter()
            .map(|m| Delivery {
                body: m.body,
                ack_token: m.receipt_handle,
            })
            .collect())
    }

    async fn ack(&self, queue: &str, tokens: Vec<String>) -> anyhow::Result<usize> {
        let n = tokens.len();
        let result: BatchResult = self
            .post(
                self.url(queue, "/messages/delete"),
                &DeleteBatch {
                    receipt_handles: tokens,
                },
            )
            .await?;
        Ok(n.saturating_sub(result.failed))
    }
}
