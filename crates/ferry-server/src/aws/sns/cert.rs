//! The SNS signing certificate, served where every envelope's `SigningCertURL` points.
//!
//! ```text
//! GET /SimpleNotificationService-<32 hex>.pem   → 200, the PEM certificate
//! ```
//!
//! Like AWS's, it is public: no SigV4, any client (a subscriber verifying a message is not an
//! SNS caller). Any other `SimpleNotificationService-*.pem` path is 404.

use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::aws::AwsDoor;

/// Path prefix of certificate requests.
const PREFIX: &str = "/SimpleNotificationService-";

/// Serves the certificate when `uri` asks for one; `None` for every other request.
pub fn serve(door: &AwsDoor, method: &Method, uri: &Uri) -> Option<Response> {
    let path = uri.path();
    if !(path.starts_with(PREFIX) && path.ends_with(".pem")) {
        return None;
    }
    if method != Method::GET && method != Method::HEAD {
        return Some((StatusCode::METHOD_NOT_ALLOWED, "").into_response());
    }
    let Some(topics) = door.inner.app.topics_if_open() else {
        return Some(
            (StatusCode::SERVICE_UNAVAILABLE, "starting or shutting down").into_response(),
        );
    };
    let key = match topics.signing_key() {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "loading the SNS signing key");
            return Some((StatusCode::INTERNAL_SERVER_ERROR, "").into_response());
        }
    };
    if path.trim_start_matches('/') != key.cert_file_name() {
        return Some((StatusCode::NOT_FOUND, "no such certificate").into_response());
    }
    let mut r = (StatusCode::OK, key.cert_pem().to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    Some(r)
}
