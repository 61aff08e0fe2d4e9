//! The OpenAPI 3 document of the HTTP door, generated from the handlers' `#[utoipa::path]`
//! annotations and the wire types' `ToSchema` derives.

use axum::Json;
use utoipa::OpenApi;

use super::{health, messages, move_tasks, queues, scrape, streams, topics};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ferry native HTTP API",
        description = "Queues over HTTP/JSON. Errors are `{\"error\":{\"code\",\"message\"}}`; see docs/http-api.md."
    ),
    paths(
        health::healthz,
        health::readyz,
        scrape::metrics,
        openapi_json,
        queues::create_queue,
        queues::list_queues,
        queues::get_queue,
        queues::update_queue,
        queues::delete_queue,
        queues::purge_queue,
        queues::get_tags,
        queues::tag_queue,
        queues::untag_queue,
        queues::dead_letter_sources,
        messages::send,
        messages::peek,
        messages::receive,
        messages::delete,
        messages::change_visibility,
        move_tasks::start,
        move_tasks::list,
        move_tasks::cancel,
        topics::create_topic,
        topics::list_topics,
        topics::get_topic,
        topics::delete_topic,
        topics::subscribe,
        topics::list_subscriptions,
        topics::unsubscribe,
        topics::publish,
        topics::publish_batch,
        streams::create_stream,
        streams::list_streams,
        streams::get_stream,
        streams::update_stream,
        streams::delete_stream,
        streams::produce,
        streams::fetch,
        streams::tail,
        streams::compact,
        streams::list_groups,
        streams::get_group,
    )
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
