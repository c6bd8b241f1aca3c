//! Talking to UiPath Orchestrator: the HTTP client, token requests and our own DTOs.

pub mod auth;
pub mod client;
pub mod error;
pub mod models;
pub mod tokens;

pub use auth::{Credentials, Grant, request_token};
pub use client::{FolderRef, OrchestratorClient, http_client};
pub use error::OrchestratorError;
