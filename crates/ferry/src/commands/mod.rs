//! CLI commands that talk to a running server over the native HTTP API.

pub mod messages;
pub mod queue;
pub mod redrive;
pub mod stream;
pub mod topic;
