//! What `ferry bench` drives: a [`Target`] is one protocol's way to send, receive and
//! acknowledge. The native HTTP API is the first and SQS the second; an AMQP target plugs in here
//! without touching the load generator.

use std::future::Future;

/// One delivered message: its body and whatever acknowledges it.
pub struct Delivery {
    pub body: String,
    pub ack_token: String,
}

/// A messaging system under test. Cheap to clone; clones share connections.
pub trait Target: Clone + Send + Sync + 'static {
    /// Makes `queue` exist and empty before the run.
    fn prepare(&self, queue: &str) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Sends a batch; returns how many were accepted.
    fn send(
        &self,
        queue: &str,
        bodies: Vec<String>,
    ) -> impl Future<Output = anyhow::Result<usize>> + Send;
    /// Receives up to `max`, waiting up to `wait_seconds` for the first.
    fn receive(
        &self,
        queue: &str,
        max: usize,
        wait_seconds: u32,
    ) -> impl Future<Output = anyhow::Result<Vec<Delivery>>> + Send;
    /// Acknowledges (deletes) deliveries; returns how many were acknowledged.
    fn ack(
        &self,
        queue: &str,
        tokens: Vec<String>,
    ) -> impl Future<Output = anyhow::Result<usize>> + Send;
}
