//! Limits of the native HTTP API, enforced by the router and the handlers.
//!
//! Documented in `docs/http-api.md`; change both together.

/// Largest request body. A 1 MiB message (the largest a queue accepts) fits even when its body
/// travels base64 encoded. Larger bodies get `413 RequestTooLarge`.
pub const MAX_REQUEST_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Largest total size of the request headers (names plus values). Larger get
/// `431 HeadersTooLarge`.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most entries in one send, delete or change-visibility batch.
pub const MAX_BATCH_ENTRIES: usize = 100;
/// Most messages one receive returns.
pub const MAX_RECEIVE_MESSAGES: u32 = 100;
/// Most messages one peek returns.
pub const MAX_PEEK_MESSAGES: usize = 100;
/// Longest long-poll wait, in seconds.
pub const MAX_WAIT_SECONDS: u32 = 20;
/// Default number of messages a peek returns.
pub const DEFAULT_PEEK_MESSAGES: usize = 10;
