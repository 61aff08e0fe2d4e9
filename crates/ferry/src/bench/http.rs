//! [`Target`] over Ferry's native HTTP/JSON API, with kept-alive connections.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, Context};
use serde::{Deserialize, Serialize};

use super::conn::ConnPool;
use super::target::{push_json_entries, Delivery, Target};
use crate::client::encode_segment;

const JSON: &str = "application/json";

#[derive(Clone)]
pub struct HttpTarget {
    pool: Arc<ConnPool>,
    /// The path of `--server` (usually empty), which every route is under.
    base_path: String,
    /// Set by `prepare`.
    urls: Arc<OnceLock<QueueUrls>>,
}

/// The paths of the queue's endpoints, built once.
struct QueueUrls {
    send: String,
    receive: String,
    delete: String,
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
        let url = reqwest::Url::parse(server)
            .with_context(|| format!("--server {server:?} is not a URL"))?;
        Ok(HttpTarget {
            pool: Arc::new(ConnPool::for_url(&url)?),
            base_path: url.path().trim_end_matches('/').to_string(),
            urls: Arc::new(OnceLock::new()),
        })
    }

    fn path(&self, queue: &str, rest: &str) -> String {
        format!(
            "{}/v1/queues/{}{rest}",
            self.base_path,
            encode_segment(queue)
        )
    }

    fn urls(&self) -> anyhow::Result<&QueueUrls> {
        self.urls
            .get()
            .ok_or_else(|| anyhow!("the queue was not prepared"))
    }

    /// POSTs a JSON body; returns the answer's bytes, or an error with its status and text.
    async fn post(&self, path: &str, body: Vec<u8>) -> anyhow::Result<bytes::Bytes> {
        let (status, bytes) = self.pool.post(path, JSON, &[], body).await?;
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
        let create = serde_json::to_vec(&serde_json::json!({ "name": queue }))?;
        let path = format!("{}/v1/queues", self.base_path);
        let (status, answer) = self.pool.post(&path, JSON, &[], create).await?;
        // 409: the queue exists with other attributes; it is used as it is.
        if !status.is_success() && status.as_u16() != 409 {
            return Err(anyhow!(
                "cannot create queue {queue}: HTTP {status}: {}",
                String::from_utf8_lossy(&answer)
            ));
        }
        self.post(&self.path(queue, "/purge"), b"{}".to_vec())
            .await?;
        let urls = QueueUrls {
            send: self.path(queue, "/messages"),
            receive: self.path(queue, "/receive"),
            delete: self.path(queue, "/messages/delete"),
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
        let answer = self.post(&self.urls()?.send, json).await?;
        let result: BatchResult = serde_json::from_slice(&answer)?;
        Ok(copies.saturating_sub(result.failed))
    }

    async fn receive(&self, max: usize, wait_seconds: u32) -> anyhow::Result<Vec<Delivery>> {
        let request = serde_json::to_vec(&ReceiveRequest {
            max,
            wait: wait_seconds,
        })?;
        let answer = self.post(&self.urls()?.receive, request).await?;
        let received: Received<'_> = serde_json::from_slice(&answer)?;
        Ok(received
            .messages
            .into_iter()
            .map(|m| Delivery::of(&m.body, m.receipt_handle))
            .collect())
    }

    async fn ack(&self, tokens: Vec<String>) -> anyhow::Result<usize> {
        let n = tokens.len();
        let request = serde_json::to_vec(&DeleteBatch {
            receipt_handles: tokens,
        })?;
        let answer = self.post(&self.urls()?.delete, request).await?;
        let result: BatchResult = serde_json::from_slice(&answer)?;
        Ok(n.saturating_sub(result.failed))
    }
}
