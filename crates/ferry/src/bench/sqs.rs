//! [`Target`] over the AWS SQS JSON protocol (the AWS door), with kept-alive connections.
//!
//! ```text
//! POST / HTTP/1.1
//! X-Amz-Target: AmazonSQS.SendMessageBatch
//! Content-Type: application/x-amz-json-1.0
//!
//! {"QueueUrl":"http://127.0.0.1:9324/000000000000/bench","Entries":[{"Id":"0","MessageBody":"…"}]}
//! ```
//!
//! Send is SendMessageBatch, receive is ReceiveMessage, acknowledge is DeleteMessageBatch (each
//! at most 10 entries, as SQS). Requests are signed with SigV4 when credentials are given;
//! a server without configured credentials accepts unsigned requests from loopback clients.

use std::borrow::Cow;
use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use hyper::header::HeaderValue;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::conn::ConnPool;
use super::sigv4::{self, Credentials};
use super::target::{push_json_entries, push_json_str, Delivery, Target};

const CONTENT_TYPE: &str = "application/x-amz-json-1.0";
const SERVICE: &str = "sqs";

#[derive(Clone)]
pub struct SqsTarget {
    /// Connections to `--endpoint`'s server; every call is a POST to `/`.
    pool: Arc<ConnPool>,
    region: String,
    credentials: Option<Credentials>,
    /// Set by `prepare` from CreateQueue's answer.
    queue_url: Arc<OnceLock<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteEntry {
    id: String,
    receipt_handle: String,
}

/// SendMessageBatch and DeleteMessageBatch answers; only the successes are counted.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchResult {
    #[serde(default)]
    successful: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Received<'a> {
    #[serde(default, borrow)]
    messages: Vec<ReceivedMessage<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceivedMessage<'a> {
    /// Borrowed from the answer unless it has escapes.
    #[serde(borrow)]
    body: Cow<'a, str>,
    receipt_handle: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueUrl {
    queue_url: String,
}

/// An SQS error answer: HTTP status, `__type` and message.
#[derive(Debug)]
struct SqsError {
    status: u16,
    kind: String,
    message: String,
}

impl std::fmt::Display for SqsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}: {}", self.status, self.kind, self.message)
    }
}

impl std::error::Error for SqsError {}

impl SqsTarget {
    pub fn new(
        endpoint: &str,
        region: &str,
        credentials: Option<Credentials>,
    ) -> anyhow::Result<SqsTarget> {
        let url = reqwest::Url::parse(endpoint)
            .with_context(|| format!("--endpoint {endpoint:?} is not a URL"))?;
        Ok(SqsTarget {
            pool: Arc::new(
                ConnPool::for_url(&url).with_context(|| format!("--endpoint {endpoint:?}"))?,
            ),
            region: region.to_string(),
            credentials,
            queue_url: Arc::new(OnceLock::new()),
        })
    }

    fn queue_url(&self) -> anyhow::Result<&str> {
        self.queue_url
            .get()
            .map(String::as_str)
            .ok_or_else(|| anyhow!("the queue was not prepared"))
    }

    /// Calls `AmazonSQS.<action>` with a JSON body and decodes the answer.
    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        action: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<T> {
        let answer = self.call_raw(action, serde_json::to_vec(body)?).await?;
        decode(action, &answer)
    }

    /// Calls `AmazonSQS.<action>` with the bytes of a JSON body; returns the answer's bytes.
    async fn call_raw(&self, action: &str, body: Vec<u8>) -> anyhow::Result<bytes::Bytes> {
        let target = format!("AmazonSQS.{action}");
        let mut headers = vec![("x-amz-target", HeaderValue::from_str(&target)?)];
        if let Some(credentials) = &self.credentials {
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let amz_date = sigv4::amz_date(secs);
            let authorization = sigv4::authorization(
                credentials,
                &self.region,
                SERVICE,
                &amz_date,
                &sigv4::Request {
                    method: "POST",
                    path: "/",
                    query: "",
                    headers: &[
                        ("content-type", CONTENT_TYPE),
                        ("host", self.pool.host()),
                        ("x-amz-date", &amz_date),
                        ("x-amz-target", &target),
                    ],
                    body: &body,
                },
            );
            headers.push(("x-amz-date", HeaderValue::from_str(&amz_date)?));
            headers.push(("authorization", HeaderValue::from_str(&authorization)?));
        }
        let (status, bytes) = self.pool.post("/", CONTENT_TYPE, &headers, body).await?;
        if !status.is_success() {
            let error: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let text = |key: &str| error.get(key).and_then(|v| v.as_str()).map(str::to_string);
            return Err(SqsError {
                status: status.as_u16(),
                kind: text("__type").unwrap_or_default(),
                message: text("message")
                    .or_else(|| text("Message"))
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
            }
            .into());
        }
        Ok(bytes)
    }

    async fn create_queue(&self, queue: &str) -> anyhow::Result<String> {
        let created: QueueUrl = self
            .call("CreateQueue", &json!({ "QueueName": queue }))
            .await
            .with_context(|| format!("cannot create queue {queue}"))?;
        Ok(created.queue_url)
    }
}

impl Target for SqsTarget {
    /// CreateQueue, then PurgeQueue. SQS allows one purge per queue a minute; within that
    /// minute (runs side by side) the queue is deleted and created again instead, which is
    /// empty too.
    async fn prepare(&self, queue: &str) -> anyhow::Result<()> {
        let url = self.create_queue(queue).await?;
        let purged: anyhow::Result<serde_json::Value> =
            self.call("PurgeQueue", &json!({ "QueueUrl": url })).await;
        let url = match purged {
            Ok(_) => url,
            Err(e)
                if e.downcast_ref::<SqsError>()
                    .is_some_and(|s| s.kind.contains("PurgeQueueInProgress")) =>
            {
                let _: serde_json::Value = self
                    .call("DeleteQueue", &json!({ "QueueUrl": url }))
                    .await
                    .with_context(|| format!("cannot empty queue {queue}"))?;
                self.create_queue(queue).await?
            }
            Err(e) => return Err(e.context(format!("cannot purge queue {queue}"))),
        };
        self.queue_url
            .set(url)
            .map_err(|_| anyhow!("the queue was prepared twice"))?;
        Ok(())
    }

    async fn send(&self, body: &str, copies: usize) -> anyhow::Result<usize> {
        let mut json = b"{\"QueueUrl\":".to_vec();
        push_json_str(&mut json, self.queue_url()?);
        json.extend_from_slice(b",\"Entries\":[");
        push_json_entries(&mut json, body, copies, |out, i| {
            write!(out, "{{\"Id\":\"{i}\",\"MessageBody\":").expect("writing to a Vec")
        });
        json.extend_from_slice(b"]}");
        let answer = self.call_raw("SendMessageBatch", json).await?;
        let result: BatchResult = decode("SendMessageBatch", &answer)?;
        Ok(result.successful.len())
    }

    async fn receive(&self, max: usize, wait_seconds: u32) -> anyhow::Result<Vec<Delivery>> {
        let request = json!({
            "QueueUrl": self.queue_url()?,
            "MaxNumberOfMessages": max,
            "WaitTimeSeconds": wait_seconds,
        });
        let answer = self
            .call_raw("ReceiveMessage", serde_json::to_vec(&request)?)
            .await?;
        let received: Received<'_> = decode("ReceiveMessage", &answer)?;
        Ok(received
            .messages
            .into_iter()
            .map(|m| Delivery::of(&m.body, m.receipt_handle))
            .collect())
    }

    async fn ack(&self, tokens: Vec<String>) -> anyhow::Result<usize> {
        let entries: Vec<DeleteEntry> = tokens
            .into_iter()
            .enumerate()
            .map(|(i, receipt_handle)| DeleteEntry {
                id: i.to_string(),
                receipt_handle,
            })
            .collect();
        let result: BatchResult = self
            .call(
                "DeleteMessageBatch",
                &json!({ "QueueUrl": self.queue_url()?, "Entries": entries }),
            )
            .await?;
        Ok(result.successful.len())
    }
}

/// Decodes an action's answer.
fn decode<'a, T: Deserialize<'a>>(action: &str, answer: &'a [u8]) -> anyhow::Result<T> {
    serde_json::from_slice(answer).with_context(|| {
        format!(
            "{action}: unexpected answer {:?}",
            String::from_utf8_lossy(answer)
        )
    })
}
