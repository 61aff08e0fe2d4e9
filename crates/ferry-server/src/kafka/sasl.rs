//! SaslHandshake: SASL is not configured yet, so every mechanism is refused
//! (`UNSUPPORTED_SASL_MECHANISM`, no mechanisms offered). Clients without SASL never call it.

use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};

use super::{code, Conn};

pub fn handshake(conn: &Conn, req: SaslHandshakeRequest) -> SaslHandshakeResponse {
    tracing::info!(door = "kafka", peer = %conn.peer, mechanism = %req.mechanism.as_str(), "SASL requested but not configured");
    let mut r = SaslHandshakeResponse::default();
    r.error_code = code::UNSUPPORTED_SASL_MECHANISM;
    r
}
