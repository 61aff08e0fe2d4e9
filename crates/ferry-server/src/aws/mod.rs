//! The AWS door: SQS over the AWS JSON 1.0 and query/XML protocols, with SigV4.
//!
//! ```text
//! request ─► protocol detection ─► SigV4 (or open mode) ─► decode to the JSON shape
//!   X-Amz-Target: AmazonSQS.<Action>  → json.rs   (JSON body)
//!   Action=<Action> (form or query)   → query.rs  (flattened params → JSON shape)
//!         ─► sqs::access::authorize (the queue's policy, when keys are configured)
//!         ─► sqs::dispatch (one file per action family, broker calls)
//!         ─► encode: JSON, or XML in the 2012-11-05 namespace; errors via errors.rs
//! ```
//!
//! Queue URLs are `http://<Host header>/<account id>/<queue name>`; a request may also name
//! its queue by path (`POST /000000000000/orders`). ARNs are
//! `arn:aws:sqs:<region>:<account id>:<queue name>`.
//!
//! Architecture invariant: this module holds no queue logic; every decision about messages is
//! the broker's. The door only keeps SQS-specific bookkeeping the broker has no notion of (the
//! 60-second PurgeQueue window, parsed access policies).

pub mod errors;
pub mod json;
pub mod md5;
pub mod policy;
pub mod query;
pub mod sigv4;
pub mod sns;
pub mod sqs;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::config::AwsSettings;
use crate::http::AppState;
use errors::{AwsError, ErrorKind};

/// Largest request body: a 1 MiB message form-encoded (up to 3 bytes per byte) fits.
pub const MAX_REQUEST_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Shared by every AWS request: the server state, the AWS identity settings and the door's own
/// bookkeeping. Cheap to clone.
#[derive(Clone)]
pub struct AwsDoor {
    inner: Arc<DoorInner>,
}

struct DoorInner {
    app: AppState,
    settings: AwsSettings,
    /// Last PurgeQueue per queue, for `PurgeQueueInProgress`.
    purges: Mutex<HashMap<String, Instant>>,
    /// When each queue was deleted, for `QueueDeletedRecently` (only with a reuse delay).
    deletions: Mutex<HashMap<String, Instant>>,
    requests_in_flight: AtomicUsize,
    polls_in_flight: AtomicUsize,
    /// Parsed resource policies by queue or topic, with the text they were parsed from.
    policies: Mutex<HashMap<String, CachedPolicy>>,
}

/// Most parsed policies kept; the cache starts afresh when full (entries of deleted queues and
/// topics are never looked up again, and a miss only costs a parse).
const MAX_CACHED_POLICIES: usize = 10_000;

/// A resource policy's text and what it parsed to (None: it does not parse).
type CachedPolicy = (String, Option<Arc<policy::Policy>>);

/// Decrements a counter when dropped (also when the client goes away mid-request).
pub struct CountGuard<'a>(&'a AtomicUsize);

impl Drop for CountGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AwsDoor {
    pub fn new(app: AppState, settings: AwsSettings) -> AwsDoor {
        AwsDoor {
            inner: Arc::new(DoorInner {
                app,
                settings,
                purges: Mutex::new(HashMap::new()),
                deletions: Mutex::new(HashMap::new()),
                requests_in_flight: AtomicUsize::new(0),
                polls_in_flight: AtomicUsize::new(0),
                policies: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn settings(&self) -> &AwsSettings {
        &self.inner.settings
    }

    /// The principal a verified access key acts as: its account (the door's own unless the
    /// credential names another) and IAM user, if any.
    pub fn principal(&self, access_key_id: &str) -> policy::Principal {
        let settings = &self.inner.settings;
        let credential = settings
            .credentials
            .iter()
            .find(|c| c.access_key_id == access_key_id);
        policy::Principal {
            account: credential
                .and_then(|c| c.account_id.clone())
                .unwrap_or_else(|| settings.account_id.clone()),
            user: credential.and_then(|c| c.user.clone()),
        }
    }

    /// `text` (the resource policy of `resource`) parsed, from a cache keyed by resource and
    /// checked against the text. None when the text does not parse (a policy stored before
    /// policies were checked), which grants nothing and denies nothing.
    pub fn parsed_policy(&self, resource: &str, text: &str) -> Option<Arc<policy::Policy>> {
        let mut cache = self
            .inner
            .policies
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((cached_text, parsed)) = cache.get(resource) {
            if cached_text == text {
                return parsed.clone();
            }
        }
        let parsed = match policy::Policy::parse(text) {
            Ok(p) => Some(Arc::new(p)),
            Err(reason) => {
                tracing::warn!(
                    resource,
                    reason,
                    "a stored resource policy cannot be enforced; it grants nothing"
                );
                None
            }
        };
        if cache.len() >= MAX_CACHED_POLICIES {
            cache.clear();
        }
        cache.insert(resource.to_string(), (text.to_string(), parsed.clone()));
        parsed
    }

    /// Requests in flight that are not parked in a long poll (for graceful shutdown).
    pub fn busy_requests(&self) -> usize {
        let r = self.inner.requests_in_flight.load(Ordering::SeqCst);
        let p = self.inner.polls_in_flight.load(Ordering::SeqCst);
        r.saturating_sub(p)
    }

    fn count(counter: &AtomicUsize) -> CountGuard<'_> {
        counter.fetch_add(1, Ordering::SeqCst);
        CountGuard(counter)
    }

    /// Marks the caller as waiting in a long poll until the guard drops.
    pub fn long_poll_guard(&self) -> CountGuard<'_> {
        Self::count(&self.inner.polls_in_flight)
    }

    /// Records a purge of `queue` unless one happened within `window`; returns false then.
    pub fn try_purge(&self, queue: &str, window: std::time::Duration) -> bool {
        let mut p = self.inner.purges.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        p.retain(|_, t| now.duration_since(*t) < window);
        if p.contains_key(queue) {
            return false;
        }
        p.insert(queue.to_string(), now);
        true
    }

    /// Records that `queue` was deleted (when names are held back after a delete).
    pub fn note_deleted(&self, queue: &str) {
        let delay = self.reuse_delay();
        if delay.is_zero() {
            return;
        }
        let mut d = self
            .inner
            .deletions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        d.retain(|_, t| now.duration_since(*t) < delay);
        d.insert(queue.to_string(), now);
    }

    /// Whether `queue` was deleted less than the reuse delay ago.
    pub fn deleted_recently(&self, queue: &str) -> bool {
        let delay = self.reuse_delay();
        let d = self
            .inner
            .deletions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        d.get(queue).is_some_and(|t| t.elapsed() < delay)
    }

    fn reuse_delay(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.inner.settings.queue_name_reuse_delay_seconds)
    }

    pub fn forget_purge(&self, queue: &str) {
        self.inner
            .purges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(queue);
    }
}

/// Open mode (no credentials configured) serves loopback peers only, including IPv4 loopback
/// seen through an IPv6 socket (`::ffff:127.0.0.1`).
pub fn open_mode_allows(peer: SocketAddr) -> bool {
    peer.ip().to_canonical().is_loopback()
}

/// The wire protocol of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Json,
    Query,
}

/// The AWS door: every path and method goes to one handler (SQS addresses actions by header or
/// parameter, not by route).
pub fn router(door: AwsDoor) -> Router {
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .with_state(door)
}

fn request_id() -> String {
    ferry_broker::uuid_text(&rand::random())
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn encode_error(protocol: Protocol, e: &AwsError, request_id: &str) -> Response {
    match protocol {
        Protocol::Json => json::error(e, request_id),
        Protocol::Query => {
            let body = query::error_xml(e.kind.fault(), e.kind.code(), &e.message, request_id);
            let mut r = (e.kind.status(), body).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
            r
        }
    }
}

async fn handle(
    State(door): State<AwsDoor>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _in_flight = AwsDoor::count(&door.inner.requests_in_flight);
    // The SNS signing certificate (SigningCertURL): a public GET, before any action routing.
    if let Some(r) = sns::cert::serve(&door, &method, &uri) {
        return r;
    }
    // SNS shares this endpoint: told apart by credential scope, Version or action (sns/mod.rs).
    if sns::is_sns(&uri, &headers, &body) {
        return sns::handle(door.clone(), peer, method, uri, headers, body).await;
    }
    let rid = request_id();
    let started = Instant::now();
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let protocol = if target.is_some() {
        Protocol::Json
    } else {
        Protocol::Query
    };
    let result = serve(&door, peer, &method, &uri, &headers, &body, target).await;
    let (action, response) = match result {
        Ok((action, value)) => {
            let r = match protocol {
                Protocol::Json => json::ok(&value, &rid),
                Protocol::Query => {
                    let mut r = (StatusCode::OK, query::response_xml(&action, &value, &rid))
                        .into_response();
                    r.headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
                    r
                }
            };
            (action, r)
        }
        Err((action, e)) => {
            if e.kind.status().is_server_error() && e.kind != ErrorKind::ServiceUnavailable {
                tracing::warn!(door = "aws", action = %action, code = e.kind.code(), message = %e.message, "request failed");
            }
            (action, encode_error(protocol, &e, &rid))
        }
    };
    let label = if sqs::ACTIONS.contains(&action.as_str()) {
        action.as_str()
    } else {
        "unknown"
    };
    crate::metrics::record_request(
        &format!("aws:{label}"),
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Decodes, authenticates and dispatches one request. Errors carry the action name (or
/// `unknown`) for metrics.
async fn serve(
    door: &AwsDoor,
    peer: SocketAddr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    target: Option<String>,
) -> Result<(String, serde_json::Value), (String, AwsError)> {
    let unknown = |e: AwsError| ("unknown".to_string(), e);
    let (action, mut input) = match target {
        Some(t) => {
            let action = t
                .strip_prefix(json::TARGET_PREFIX)
                .map(str::to_string)
                .ok_or_else(|| {
                    unknown(AwsError::new(
                        ErrorKind::InvalidAction,
                        format!("The action {t} is not valid for this endpoint."),
                    ))
                })?;
            let input = json::parse_body(body).map_err(|e| (action.clone(), e))?;
            (action, input)
        }
        None => {
            let mut params = sigv4::query_pairs(uri);
            let is_form = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|ct| ct.starts_with("application/x-www-form-urlencoded"));
            if is_form && !body.is_empty() {
                params.extend(
                    form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())),
                );
            }
            let action = params
                .iter()
                .find(|(k, _)| k == "Action")
                .map(|(_, v)| v.clone())
                .ok_or_else(|| {
                    unknown(AwsError::new(
                        ErrorKind::InvalidAction,
                        "The request must contain an Action parameter or an X-Amz-Target header.",
                    ))
                })?;
            let input = query::params_to_json(&action, &params);
            (action, input)
        }
    };
    let fail = |e: AwsError| (action.clone(), e);
    let settings = door.settings();
    let (sender_id, principal) = if settings.credentials.is_empty() {
        if !open_mode_allows(peer) {
            return Err(fail(AwsError::new(
                ErrorKind::AccessDenied,
                "This Ferry AWS door has no credentials configured and accepts only loopback clients.",
            )));
        }
        (settings.account_id.clone(), None)
    } else {
        let key = sigv4::verify(settings, method, uri, headers, body, now_secs())
            .map_err(fail)?
            .access_key_id;
        let principal = door.principal(&key);
        (key, Some(principal))
    };
    let broker = door.inner.app.broker().map_err(|_| {
        fail(AwsError::new(
            ErrorKind::ServiceUnavailable,
            "The server is starting or shutting down; retry shortly.",
        ))
    })?;
    // A queue may be addressed by path: POST /<account>/<name>.
    if let serde_json::Value::Object(m) = &mut input {
        let path = uri.path().trim_matches('/');
        if !m.contains_key("QueueUrl") && path.contains('/') {
            m.insert(
                "QueueUrl".into(),
                serde_json::Value::String(format!("/{path}")),
            );
        }
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| "localhost".to_string());
    let ctx = sqs::Ctx {
        broker,
        door: door.clone(),
        host,
        sender_id,
        principal,
        peer: peer.ip(),
    };
    if let Err(e) = sqs::access::authorize(&ctx, &action, &input) {
        return Err((action, e));
    }
    match sqs::dispatch(&ctx, &action, &input).await {
        Ok(v) => Ok((action, v)),
        Err(e) => Err((action, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::open_mode_allows;

    #[test]
    fn open_mode_is_loopback_only() {
        for ok in [
            "127.0.0.1:1",
            "127.9.9.9:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(open_mode_allows(ok.parse().unwrap()), "{ok}");
        }
        for refused in [
            "10.0.0.1:1",
            "192.168.1.2:1",
            "[2001:db8::1]:1",
            "[::ffff:10.0.0.1]:1",
            "0.0.0.0:1",
        ] {
            assert!(!open_mode_allows(refused.parse().unwrap()), "{refused}");
        }
    }
}
