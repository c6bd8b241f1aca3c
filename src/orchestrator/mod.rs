//! Talking to UiPath Orchestrator: the HTTP client, token requests and our own DTOs.

pub mod auth;
pub mod client;
pub mod error;
pub mod models;

pub use crate::domain::folder::FolderRef;
pub use auth::{Credentials, Grant, request_token};
pub use client::{OrchestratorClient, http_client};
pub use error::OrchestratorError;
