//! The native HTTP/JSON door: `/v1` API, `/metrics`, `/healthz`, `/readyz`, `/v1/openapi.json`.
//!
//! One file per resource family (`queues.rs`, `messages.rs`, `move_tasks.rs`). Each handler
//! decodes its wire types, calls the broker, and encodes the result; the broker never sees a
//! wire type. Every route is registered through [`RouteTable`] so the OpenAPI test can compare
//! the registered routes with the generated document.

pub mod error;
pub mod extract;
pub mod health;
pub mod limits;
pub mod messages;
pub mod move_tasks;
pub mod openapi;
pub mod queues;
pub mod scrape;
pub mod streams;
pub mod topics;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodFilter;
use axum::Router;
use ferry_broker::Broker;
use metrics_exporter_prometheus::PrometheusHandle;

use error::{ApiError, ErrorCode};
use limits::{MAX_HEADER_BYTES, MAX_REQUEST_BODY_BYTES};

/// Shared by every handler: the broker once it is open, and the server's lifecycle flags.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    /// Set once, when recovery has finished. Until then queue calls answer `NotReady`.
    broker: OnceLock<Broker>,
    /// The topic router, set with the broker (SNS door, `/v1/topics`).
    topics: OnceLock<ferry_broker::topic::Topics>,
    /// Set once the streams are open (after the broker).
    streams: OnceLock<ferry_broker::stream::Streams>,
    shutting_down: AtomicBool,
    metrics: PrometheusHandle,
    /// Requests being handled, and how many of them are waiting in a long poll, so shutdown
    /// can let ordinary requests finish before it wakes the polls.
    requests_in_flight: AtomicUsize,
    polls_in_flight: AtomicUsize,
}

impl AppState {
    pub fn new(metrics: PrometheusHandle) -> AppState {
        AppState {
            inner: Arc::new(StateInner {
                broker: OnceLock::new(),
                topics: OnceLock::new(),
                streams: OnceLock::new(),
                shutting_down: AtomicBool::new(false),
                metrics,
                requests_in_flight: AtomicUsize::new(0),
                polls_in_flight: AtomicUsize::new(0),
            }),
        }
    }

    /// Recovery has finished: queue calls are served from now on.
    pub fn set_ready(&self, broker: Broker) {
        if self.inner.broker.set(broker).is_err() {
            tracing::warn!("the broker was already set; keeping the first one");
        }
    }

    pub fn is_ready(&self) -> bool {
        self.inner.broker.get().is_some() && !self.is_shutting_down()
    }

    /// What a call gets from a part that recovery installs: the part once it is there,
    /// `NotReady` before, `ShuttingDown` once shutdown began.
    fn serving<T: Clone>(&self, part: &OnceLock<T>) -> Result<T, ApiError> {
        if self.is_shutting_down() {
            return Err(ApiError::shutting_down());
        }
        part.get().cloned().ok_or_else(ApiError::not_ready)
    }

    /// The broker, or the error a queue call gets before recovery or during shutdown.
    pub fn broker(&self) -> Result<Broker, ApiError> {
        self.serving(&self.inner.broker)
    }

    /// Installs the topic router (before `set_ready`).
    pub fn set_topics(&self, topics: ferry_broker::topic::Topics) {
        if self.inner.topics.set(topics).is_err() {
            tracing::warn!("the topic router was already set; keeping the first one");
        }
    }

    /// The topic router, or the error a call gets before recovery or during shutdown.
    pub fn topics(&self) -> Result<ferry_broker::topic::Topics, ApiError> {
        self.serving(&self.inner.topics)
    }

    /// The topic router regardless of lifecycle, for metrics.
    pub fn topics_if_open(&self) -> Option<&ferry_broker::topic::Topics> {
        self.inner.topics.get()
    }

    /// Installs the streams (before `set_ready`).
    pub fn set_streams(&self, streams: ferry_broker::stream::Streams) {
        if self.inner.streams.set(streams).is_err() {
            tracing::warn!("the streams were already set; keeping the first one");
        }
    }

    /// The streams, or the error a call gets before recovery or during shutdown.
    pub fn streams(&self) -> Result<ferry_broker::stream::Streams, ApiError> {
        self.serving(&self.inner.streams)
    }

    /// The streams regardless of lifecycle, for metrics.
    pub fn streams_if_open(&self) -> Option<&ferry_broker::stream::Streams> {
        self.inner.streams.get()
    }

    /// The broker regardless of lifecycle, for metrics.
    pub fn broker_if_open(&self) -> Option<&Broker> {
        self.inner.broker.get()
    }

    /// New queue calls get `503 ShuttingDown` from now on.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    pub fn metrics(&self) -> &PrometheusHandle {
        &self.inner.metrics
    }

    /// Requests in flight that are not parked in a long poll.
    pub fn busy_requests(&self) -> usize {
        let requests = self.inner.requests_in_flight.load(Ordering::SeqCst);
        let polls = self.inner.polls_in_flight.load(Ordering::SeqCst);
        requests.saturating_sub(polls)
    }

    /// Requests in flight (including long polls) and long polls waiting, for metrics.
    pub fn in_flight(&self) -> (usize, usize) {
        (
            self.inner.requests_in_flight.load(Ordering::SeqCst),
            self.inner.polls_in_flight.load(Ordering::SeqCst),
        )
    }

    /// Marks the caller as waiting in a long poll until the guard drops.
    pub fn long_poll_guard(&self) -> InFlightGuard {
        InFlightGuard::new(self.clone(), Counter::Polls)
    }
}

enum Counter {
    Requests,
    Polls,
}

/// Decrements its counter when dropped, including when a client disconnects mid-request.
pub struct InFlightGuard {
    state: AppState,
    counter: Counter,
}

impl InFlightGuard {
    fn new(state: AppState, counter: Counter) -> InFlightGuard {
        state.counter(&counter).fetch_add(1, Ordering::SeqCst);
        InFlightGuard { state, counter }
    }
}

impl AppState {
    fn counter(&self, counter: &Counter) -> &AtomicUsize {
        match counter {
            Counter::Requests => &self.inner.requests_in_flight,
            Counter::Polls => &self.inner.polls_in_flight,
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.state
            .counter(&self.counter)
            .fetch_sub(1, Ordering::SeqCst);
    }
}

/// Builds the router while recording every `(method, path)` it registers.
pub struct RouteTable {
    router: Router<AppState>,
    routes: Vec<(Method, &'static str)>,
}

impl RouteTable {
    fn new() -> RouteTable {
        RouteTable {
            router: Router::new(),
            routes: Vec::new(),
        }
    }

    fn route<H, T>(mut self, method: Method, path: &'static str, handler: H) -> RouteTable
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        // Only standard methods are registered, which always convert.
        let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
        self.router = self.router.route(path, axum::routing::on(filter, handler));
        self.routes.push((method, path));
        self
    }

    /// The registered routes, for the OpenAPI test.
    pub fn routes(&self) -> &[(Method, &'static str)] {
        &self.routes
    }
}

/// Every route of the HTTP door.
pub fn route_table() -> RouteTable {
    use Method as M;
    RouteTable::new()
        .route(M::GET, "/healthz", health::healthz)
        .route(M::GET, "/readyz", health::readyz)
        .route(M::GET, "/metrics", scrape::metrics)
        .route(M::GET, "/v1/openapi.json", openapi::openapi_json)
        .route(M::POST, "/v1/queues", queues::create_queue)
        .route(M::GET, "/v1/queues", queues::list_queues)
        .route(M::GET, "/v1/queues/{name}", queues::get_queue)
        .route(M::PATCH, "/v1/queues/{name}", queues::update_queue)
        .route(M::DELETE, "/v1/queues/{name}", queues::delete_queue)
        .route(M::POST, "/v1/queues/{name}/purge", queues::purge_queue)
        .route(M::GET, "/v1/queues/{name}/tags", queues::get_tags)
        .route(M::POST, "/v1/queues/{name}/tags", queues::tag_queue)
        .route(
            M::DELETE,
            "/v1/queues/{name}/tags/{key}",
            queues::untag_queue,
        )
        .route(
            M::GET,
            "/v1/queues/{name}/dead-letter-sources",
            queues::dead_letter_sources,
        )
        .route(M::POST, "/v1/queues/{name}/messages", messages::send)
        .route(M::GET, "/v1/queues/{name}/messages", messages::peek)
        .route(M::POST, "/v1/queues/{name}/receive", messages::receive)
        .route(
            M::POST,
            "/v1/queues/{name}/messages/delete",
            messages::delete,
        )
        .route(
            M::POST,
            "/v1/queues/{name}/messages/visibility",
            messages::change_visibility,
        )
        .route(M::POST, "/v1/topics", topics::create_topic)
        .route(M::GET, "/v1/topics", topics::list_topics)
        .route(M::GET, "/v1/topics/{name}", topics::get_topic)
        .route(M::DELETE, "/v1/topics/{name}", topics::delete_topic)
        .route(
            M::POST,
            "/v1/topics/{name}/subscriptions",
            topics::subscribe,
        )
        .route(
            M::GET,
            "/v1/topics/{name}/subscriptions",
            topics::list_subscriptions,
        )
        .route(
            M::DELETE,
            "/v1/topics/{name}/subscriptions/{id}",
            topics::unsubscribe,
        )
        .route(M::POST, "/v1/topics/{name}/publish", topics::publish)
        .route(
            M::POST,
            "/v1/topics/{name}/publish-batch",
            topics::publish_batch,
        )
        .route(M::POST, "/v1/streams", streams::create_stream)
        .route(M::GET, "/v1/streams", streams::list_streams)
        .route(M::GET, "/v1/streams/{name}", streams::get_stream)
        .route(M::PATCH, "/v1/streams/{name}", streams::update_stream)
        .route(M::DELETE, "/v1/streams/{name}", streams::delete_stream)
        .route(M::POST, "/v1/streams/{name}/records", streams::produce)
        .route(M::GET, "/v1/streams/{name}/records", streams::fetch)
        .route(M::GET, "/v1/streams/{name}/tail", streams::tail)
        .route(M::POST, "/v1/streams/{name}/compact", streams::compact)
        .route(M::GET, "/v1/stream-groups", streams::list_groups)
        .route(M::GET, "/v1/stream-groups/{group}", streams::get_group)
        .route(M::POST, "/v1/queues/{name}/move-tasks", move_tasks::start)
        .route(M::GET, "/v1/queues/{name}/move-tasks", move_tasks::list)
        .route(
            M::POST,
            "/v1/queues/{name}/move-tasks/cancel",
            move_tasks::cancel,
        )
}

/// The complete HTTP door: routes, limits, error fallbacks and request metrics.
pub fn router(state: AppState) -> Router {
    route_table()
        .router
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .layer(axum::middleware::from_fn(limit_headers))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe_request,
        ))
        .with_state(state)
}

async fn route_not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::route_not_found(&format!("{method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        format!("{} does not accept {method}", uri.path()),
    )
}

/// Refuses requests whose headers exceed [`MAX_HEADER_BYTES`] with `431 HeadersTooLarge`.
async fn limit_headers(request: Request, next: Next) -> Response {
    let size: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if size > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::HeadersTooLarge,
            format!("request headers exceed {MAX_HEADER_BYTES} bytes"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Counts the request as in flight and records its latency by route template and status.
async fn observe_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let _in_flight = InFlightGuard::new(state, Counter::Requests);
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!(%method, route = %route, status = status.as_u16(), "request failed");
    }
    crate::metrics::record_request(&route, method.as_str(), status.as_u16(), start.elapsed());
    response
}

#[cfg(test)]
mod tests;
