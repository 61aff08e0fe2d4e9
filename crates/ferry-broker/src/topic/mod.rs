//! Topics: publish/subscribe routers over queues and HTTP endpoints.

pub mod filter;
