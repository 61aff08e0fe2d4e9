//! [`Target`] over Ferry's native HTTP/JSON API, with kept-alive connections.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, Context};
use serde::{Deserialize, Serialize};

use super::target::{push_json_entries, stamp_of, Delivery, Target};
use crate::client::encode_segment;

/// Longer than the longest long poll.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct HttpTarget {
    base: String,
    client: reqwest::Client,
    /// Set by `prepare`.
    urls: Arc<OnceLock<QueueUrls>>,
}

/// The queue's endpoints, parsed once.
struct QueueUrls {
    send: reqwest::Url,
    receive: reqwest::Url,
    delete: reqwest::Url,
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
struct Received<'a> {
    #[serde(borrow)]
    messages: Vec<ReceivedMessage<'a>>,
}

#[derive(Deserialize)]
struct ReceivedMessage<'a> {
    /// Borrowed from the answer unless it has escapes.
    #[serde(borrow)]
    body: Cow<'a, str>,
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
            urls: Arc::new(OnceLock::new()),
        })
    }

    fn url(&self, queue: &str, rest: &str) -> anyhow::Result<reqwest::Url> {
        let text = format!("{}/v1/queues/{}{rest}", self.base, encode_segment(queue));
        reqwest::Url::parse(&text).with_context(|| format!("{text:?} is not a URL"))
    }

    fn urls(&self) -> anyhow::Result<&QueueUrls> {
        self.urls
            .get()
            .ok_or_else(|| anyhow!("the queue was not prepared"))
    }

    /// POSTs a JSON body; returns the answer's bytes, or an error with its status and text.
    async fn post(&self, url: reqwest::Url, body: Vec<u8>) -> anyhow::Result<bytes::Bytes> {
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if !status.is_success() {
            return Err(anyhow!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        Ok(bytes)
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
        self.post(self.url(queue, "/purge")?, b"{}".to_vec())
            .await?;
        let urls = QueueUrls {
            send: self.url(queue, "/messages")?,
            receive: self.url(queue, "/receive")?,
            delete: self.url(queue, "/messages/delete")?,
        };
        self.urls
            .set(urls)
            .map_err(|_| anyhow!("the queue was prepared twice"))
    }

    async fn send(&self, body: &str, copies: usize) -> anyhow::Result<usize> {
        let mut json = b"{\"messages\":[".to_vec();
        push_json_entries(&mut json, body, copies, |out, _| {
            out.extend_from_slice(b"{\"body\":")
        });
        json.extend_from_slice(b"]}");
        let answer = self.post(self.urls()?.send.clone(), json).await?;
        let result: BatchResult = serde_json::from_slice(&answer)?;
        Ok(copies.saturating_sub(result.failed))
    }

    async fn receive(&self, max: usize, wait_seconds: u32) -> anyhow::Result<Vec<Delivery>> {
        let request = serde_json::to_vec(&ReceiveRequest {
            max,
            wait: wait_seconds,
        })?;
        let answer = self.post(self.urls()?.receive.clone(), request).await?;
        let received: Received<'_> = serde_json::from_slice(&answer)?;
        Ok(received
            .messages
            .into_iter()
            .map(|m| Delivery {
                sent_at_us: stamp_of(&m.body),
                ack_token: m.receipt_handle,
            })
            .collect())
    }

    async fn ack(&self, tokens: Vec<String>) -> anyhow::Result<usize> {
        let n = tokens.len();
        let request = serde_json::to_vec(&DeleteBatch {
            receipt_handles: tokens,
        })?;
        let answer = self.post(self.urls()?.delete.clone(), request).await?;
        let result: BatchResult = serde_json::from_slice(&answer)?;
        Ok(n.saturating_sub(result.failed))
    }
}
