//! The API's view types: what routes answer, callbacks send and the audit log records,
//! and the served OpenAPI document's per-process operations.
//! Below routes, workers and config apply, which all render them.

pub mod connections;
pub mod hooks;
pub mod jobs;
pub mod openapi;
pub mod processes;
pub mod queues;
