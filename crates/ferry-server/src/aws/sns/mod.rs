//! SNS over the query/XML protocol (namespace `2010-03-31`) on the AWS door.
//!
//! ```text
//! request ─► is_sns (credential scope service "sns", Version=2010-03-31, or an SNS action)
//!   ─► SigV4 (or open mode; ConfirmSubscription is allowed unsigned: its token is the secret)
//!   ─► Params (flattened: Attributes.entry.1.key, Tags.member.1.Key, …)
//!   ─► one file per action family ─► ferry_broker::topic::Topics
//!   ─► XML in the SNS namespace; errors as <ErrorResponse><Error><Type/><Code/><Message/>
//! ```
//!
//! Architecture invariant: no routing or delivery logic here; the broker's `Topics` decides.

pub mod access;
pub mod cert;
pub mod deliverer;
pub mod permissions;
pub mod publish;
pub mod subscriptions;
pub mod tags;
pub mod topics;
pub mod unsupported;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ferry_broker::topic::{TopicError, Topics};
use ferry_broker::BrokerError;

use super::AwsDoor;

pub const XMLNS: &str = "http://sns.amazonaws.com/doc/2010-03-31/";
pub const VERSION: &str = "2010-03-31";

/// Every SNS action the door answers (supported or with a clear "not supported").
pub const ACTIONS: &[&str] = &[
    "CreateTopic",
    "DeleteTopic",
    "ListTopics",
    "GetTopicAttributes",
    "SetTopicAttributes",
    "Subscribe",
    "ConfirmSubscription",
    "Unsubscribe",
    "ListSubscriptions",
    "ListSubscriptionsByTopic",
    "GetSubscriptionAttributes",
    "SetSubscriptionAttributes",
    "Publish",
    "PublishBatch",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
    "AddPermission",
    "RemovePermission",
];

/// An SNS error: code, HTTP status, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsError {
    pub code: &'static str,
    pub status: StatusCode,
    pub message: String,
}

impl SnsError {
    pub fn new(code: &'static str, status: StatusCode, message: impl Into<String>) -> SnsError {
        SnsError {
            code,
            status,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> SnsError {
        SnsError::new("InvalidParameter", StatusCode::BAD_REQUEST, message)
    }
    pub fn missing(parameter: &str) -> SnsError {
        SnsError::invalid(format!("Invalid parameter: {parameter}"))
    }
    pub fn not_found(message: impl Into<String>) -> SnsError {
        SnsError::new("NotFound", StatusCode::NOT_FOUND, message)
    }
    fn fault(&self) -> &'static str {
        if self.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        }
    }
}

impl From<TopicError> for SnsError {
    fn from(e: TopicError) -> SnsError {
        match e {
            TopicError::TopicNotFound(_) => SnsError::not_found("Topic does not exist"),
            TopicError::SubscriptionNotFound(_) => {
                SnsError::not_found("Subscription does not exist")
            }
            TopicError::InvalidParameter { parameter, reason }
                if parameter == "MessageAttributes" =>
            {
                SnsError::new("ParameterValueInvalid", StatusCode::BAD_REQUEST, reason)
            }
            TopicError::InvalidParameter { parameter, reason } => {
                SnsError::invalid(format!("Invalid parameter: {parameter} Reason: {reason}"))
            }
            e @ TopicError::InvalidFilterPolicy(_) => SnsError::invalid(e.to_string()),
            TopicError::Unsupported(m) => SnsError::invalid(format!("Invalid parameter: {m}")),
            TopicError::LimitExceeded(m) => {
                SnsError::new("TopicLimitExceeded", StatusCode::FORBIDDEN, m)
            }
            TopicError::Broker(BrokerError::ShuttingDown) => SnsError::new(
                "ServiceUnavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is shutting down.",
            ),
            TopicError::Broker(BrokerError::Storage(what)) => {
                tracing::error!(error = %what, "storage failure behind the sns door");
                SnsError::new(
                    "InternalError",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The request processing has failed because of an unknown error.",
                )
            }
            TopicError::Broker(e) => SnsError::invalid(format!("Invalid parameter: {e}")),
        }
    }
}

/// Flattened query parameters as a tree (`a.b.1.c`).
#[derive(Debug, Default, Clone)]
pub struct Params {
    pub value: Option<String>,
    pub children: BTreeMap<String, Params>,
}

impl Params {
    pub fn parse(pairs: &[(String, String)]) -> Params {
        let mut root = Params::default();
        for (k, v) in pairs {
            let mut node = &mut root;
            for seg in k.split('.') {
                node = node.children.entry(seg.to_string()).or_default();
            }
            node.value = Some(v.clone());
        }
        root
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.children.get(key).and_then(|n| n.value.as_deref())
    }

    pub fn required(&self, key: &str) -> Result<&str, SnsError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| SnsError::missing(key))
    }

    pub fn node(&self, key: &str) -> Option<&Params> {
        self.children.get(key)
    }

    /// Numbered children (`1`, `2`, …) in order.
    pub fn items(&self) -> Vec<&Params> {
        let mut v: Vec<(u64, &Params)> = self
            .children
            .iter()
            .filter_map(|(k, n)| k.parse::<u64>().ok().map(|i| (i, n)))
            .collect();
        v.sort_by_key(|(i, _)| *i);
        v.into_iter().map(|(_, n)| n).collect()
    }

    /// `<key>.member.N` items.
    pub fn members(&self, key: &str) -> Vec<&Params> {
        self.node(key)
            .and_then(|n| n.node("member"))
            .map(|m| m.items())
            .unwrap_or_default()
    }

    /// `<key>.entry.N.key` / `.value` pairs (keys in either case).
    pub fn entries(&self, key: &str) -> BTreeMap<String, String> {
        let Some(e) = self.node(key).and_then(|n| n.node("entry")) else {
            return BTreeMap::new();
        };
        e.items()
            .into_iter()
            .filter_map(|i| {
                let k = i.get("key").or_else(|| i.get("Key"))?;
                let v = i.get("value").or_else(|| i.get("Value")).unwrap_or("");
                Some((k.to_string(), v.to_string()))
            })
            .collect()
    }
}

/// A tiny XML writer for SNS results.
pub enum X {
    T(&'static str, String),
    N(&'static str, Vec<X>),
}

impl X {
    fn write(&self, out: &mut String) {
        match self {
            X::T(n, v) => {
                out.push_str(&format!("<{n}>{}</{n}>", super::query::escape(v)));
            }
            X::N(n, children) => {
                out.push_str(&format!("<{n}>"));
                for c in children {
                    c.write(out);
                }
                out.push_str(&format!("</{n}>"));
            }
        }
    }
}

/// `<Attributes><entry><key/><value/></entry>…</Attributes>`
pub fn attribute_map(name: &'static str, m: &BTreeMap<String, String>) -> X {
    X::N(
        name,
        m.iter()
            .map(|(k, v)| {
                X::N(
                    "entry",
                    vec![X::T("key", k.clone()), X::T("value", v.clone())],
                )
            })
            .collect(),
    )
}

fn response(action: &str, result: Vec<X>, request_id: &str) -> String {
    let mut out = format!("<?xml version=\"1.0\"?><{action}Response xmlns=\"{XMLNS}\">");
    out.push_str(&format!("<{action}Result>"));
    for x in &result {
        x.write(&mut out);
    }
    out.push_str(&format!("</{action}Result>"));
    out.push_str(&format!("<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"));
    out
}

fn error_response(e: &SnsError, request_id: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\"?><ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>{}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
        e.fault(),
        e.code,
        super::query::escape(&e.message)
    );
    let mut r = (e.status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    r
}

/// The credential scope's service (`Credential=AKID/date/region/<service>/aws4_request`).
fn scope_service(headers: &HeaderMap, pairs: &[(String, String)]) -> Option<String> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .map(|c| c.split([',', ' ']).next().unwrap_or("").to_string());
    let cred = from_header.or_else(|| {
        pairs
            .iter()
            .find(|(k, _)| k == "X-Amz-Credential")
            .map(|(_, v)| v.clone())
    })?;
    cred.split('/').nth(3).map(str::to_string)
}

/// The query pairs of a request (URL query plus a form body).
pub fn pairs(uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Vec<(String, String)> {
    let mut params = super::sigv4::query_pairs(uri);
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if is_form && !body.is_empty() {
        params.extend(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())));
    }
    params
}

/// Is this request for SNS? Told apart by the SigV4 credential scope's service, failing that by
/// `Version=2010-03-31`, failing that by an action name only SNS has.
pub fn is_sns(uri: &Uri, headers: &HeaderMap, body: &Bytes) -> bool {
    if headers.contains_key("x-amz-target") {
        return false;
    }
    let pairs = pairs(uri, headers, body);
    if let Some(service) = scope_service(headers, &pairs) {
        return service == "sns";
    }
    if pairs.iter().any(|(k, v)| k == "Version" && v == VERSION) {
        return true;
    }
    let action = pairs
        .iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    (ACTIONS.contains(&action) && !super::sqs::ACTIONS.contains(&action))
        || unsupported::ACTIONS.contains(&action)
}

/// What an action needs.
pub struct Ctx {
    pub topics: Topics,
    pub door: AwsDoor,
    /// Who signed the request; None in open mode (no keys configured).
    pub principal: Option<super::policy::Principal>,
    /// The client's address (the `aws:SourceIp` of policy conditions).
    pub peer: std::net::IpAddr,
}

impl Ctx {
    pub fn account(&self) -> &str {
        self.topics.account_id()
    }

    /// The topic name in a TopicArn parameter.
    pub fn topic_name(&self, p: &Params, key: &str) -> Result<String, SnsError> {
        let arn = p.required(key)?;
        Topics::topic_from_arn(arn)
            .map(str::to_string)
            .ok_or_else(|| SnsError::invalid(format!("Invalid parameter: {key}")))
    }
}

/// Serves one SNS request.
pub async fn handle(
    door: AwsDoor,
    peer: SocketAddr,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rid = super::request_id();
    let started = Instant::now();
    let pairs = pairs(&uri, &headers, &body);
    let action = pairs
        .iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let result = serve(&door, peer, &method, &uri, &headers, &body, &action, &pairs).await;
    let response = match result {
        Ok(xml) => {
            let mut r = (StatusCode::OK, response(&action, xml, &rid)).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
            r
        }
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!(door = "aws", service = "sns", action = %action, code = e.code, message = %e.message, "request failed");
            }
            error_response(&e, &rid)
        }
    };
    let label = if ACTIONS.contains(&action.as_str()) {
        action.as_str()
    } else {
        "unknown"
    };
    crate::metrics::record_request(
        &format!("sns:{label}"),
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    door: &AwsDoor,
    peer: SocketAddr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    action: &str,
    pairs: &[(String, String)],
) -> Result<Vec<X>, SnsError> {
    if action.is_empty() {
        return Err(SnsError::new(
            "InvalidAction",
            StatusCode::BAD_REQUEST,
            "The request must contain an Action parameter.",
        ));
    }
    let settings = door.settings();
    // ConfirmSubscription needs no signature: the SubscribeURL is fetched by the endpoint.
    let mut principal = None;
    if action != "ConfirmSubscription" {
        if settings.credentials.is_empty() {
            if !super::open_mode_allows(peer) {
                return Err(SnsError::new("AuthorizationError", StatusCode::FORBIDDEN, "This Ferry AWS door has no credentials configured and accepts only loopback clients."));
            }
        } else {
            match super::sigv4::verify(settings, method, uri, headers, body, super::now_secs()) {
                Ok(v) => principal = Some(door.principal(&v.access_key_id)),
                Err(e) => return Err(SnsError::new(e.kind.code(), e.kind.status(), e.message)),
            }
        }
    }
    let topics = door.inner.app.topics().map_err(|_| {
        SnsError::new(
            "ServiceUnavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is starting or shutting down; retry shortly.",
        )
    })?;
    let p = Params::parse(pairs);
    let ctx = Ctx {
        topics,
        door: door.clone(),
        principal,
        peer: peer.ip(),
    };
    access::authorize(&ctx, action, &p)?;
    match action {
        "CreateTopic" => topics::create(&ctx, &p),
        "DeleteTopic" => topics::delete(&ctx, &p),
        "ListTopics" => topics::list(&ctx, &p),
        "GetTopicAttributes" => topics::get_attributes(&ctx, &p),
        "SetTopicAttributes" => topics::set_attributes(&ctx, &p),
        "Subscribe" => subscriptions::subscribe(&ctx, &p),
        "ConfirmSubscription" => subscriptions::confirm(&ctx, &p),
        "Unsubscribe" => subscriptions::unsubscribe(&ctx, &p),
        "ListSubscriptions" => subscriptions::list(&ctx, &p, false),
        "ListSubscriptionsByTopic" => subscriptions::list(&ctx, &p, true),
        "GetSubscriptionAttributes" => subscriptions::get_attributes(&ctx, &p),
        "SetSubscriptionAttributes" => subscriptions::set_attributes(&ctx, &p),
        "Publish" => publish::publish(&ctx, &p).await,
        "PublishBatch" => publish::publish_batch(&ctx, &p).await,
        "TagResource" => tags::tag(&ctx, &p),
        "UntagResource" => tags::untag(&ctx, &p),
        "ListTagsForResource" => tags::list(&ctx, &p),
        "AddPermission" => permissions::add(&ctx, &p),
        "RemovePermission" => permissions::remove(&ctx, &p),
        other if unsupported::ACTIONS.contains(&other) => Err(unsupported::error(other)),
        other => Err(SnsError::new(
            "InvalidAction",
            StatusCode::BAD_REQUEST,
            format!("The action {other} is not valid for this endpoint."),
        )),
    }
}

/// Paging: `NextToken` is the index of the next item.
pub fn page<T: Clone>(
    items: &[T],
    p: &Params,
    size: usize,
) -> Result<(Vec<T>, Option<String>), SnsError> {
    let start = match p.get("NextToken") {
        None | Some("") => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| SnsError::invalid("Invalid parameter: NextToken"))?,
    };
    let end = (start + size).min(items.len());
    let slice = if start < items.len() {
        items[start..end].to_vec()
    } else {
        Vec::new()
    };
    let next = (end < items.len()).then(|| end.to_string());
    Ok((slice, next))
}

/// Opens the topic router next to `broker` and `streams` (recovery on a blocking thread), points its
/// SubscribeURL/UnsubscribeURL/SigningCertURL at the AWS door, loads (or makes, on first start)
/// the message signing key, completes fan-outs a crash interrupted and starts HTTP push
/// delivery.
pub async fn start_topics(
    config: &crate::config::ServerConfig,
    broker: &ferry_broker::Broker,
    streams: &ferry_broker::stream::Streams,
    aws_addr: SocketAddr,
) -> anyhow::Result<Topics> {
    let topics_config = ferry_broker::topic::TopicsConfig {
        region: config.aws.region.clone(),
        account_id: config.aws.account_id.clone(),
        durability: config.durability.to_log(),
        ..ferry_broker::topic::TopicsConfig::new(&config.data_dir)
    };
    let b = broker.clone();
    let topics = tokio::task::spawn_blocking(move || Topics::open(topics_config, b))
        .await
        .map_err(|e| anyhow::anyhow!("opening topics panicked: {e}"))?
        .map_err(|e| anyhow::anyhow!("cannot open topics in {}: {e}", config.data_dir.display()))?;
    topics.set_public_url(&format!("http://{aws_addr}"));
    topics.set_streams(streams.clone());
    topics
        .start(std::sync::Arc::new(deliverer::HttpDeliverer::new()))
        .await
        .map_err(|e| anyhow::anyhow!("cannot start topic delivery: {e}"))?;
    Ok(topics)
}
