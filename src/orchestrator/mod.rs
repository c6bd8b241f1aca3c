//! Talking to UiPath Orchestrator: the HTTP client, token requests and our own DTOs.

pub mod auth;
pub mod client;
pub mod error;
pub mod http;
pub mod models;
pub mod odata;
pub mod queues;

pub use crate::domain::folder::FolderRef;
pub use auth::{Credentials, Grant, request_token};
pub use client::OrchestratorClient;
pub use error::OrchestratorError;
pub use http::http_client;
