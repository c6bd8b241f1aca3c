//! The API's view of a process.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::process::{JobOptions, ReleaseSelector};
use crate::storage::processes::ProcessRow;

/// A process as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessView {
    pub id: Uuid,
    pub name: String,
    /// The connection's name.
    pub connection: String,
    /// Folder path, id or key.
    pub folder: String,
    pub release: ReleaseSelector,
    /// The ReleaseKey found for the selector, once looked up.
    pub release_key: Option<Uuid>,
    pub release_resolved_at: Option<DateTime<Utc>>,
    /// Saved without checking its folder, release and version against Orchestrator
    /// (it could not be asked); the next successful lookup clears it.
    pub unverified: bool,
    /// What the operator should know about this process (why it is unverified).
    pub warnings: Vec<String>,
    #[schema(value_type = Object)]
    pub default_input: serde_json::Value,
    pub job_options: JobOptions,
    pub max_wait_seconds: i32,
    pub callback_url: Option<String>,
    /// Whether callbacks are signed (a `whsec_` secret is stored).
    pub has_callback_secret: bool,
    /// The callback signing secret, shown once: in the answer that generated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_secret: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new callback signing secret, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackSecret {
    /// `whsec_...`: verify callbacks with it (any Standard Webhooks library).
    pub callback_secret: String,
}

/// A list of processes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessList {
    pub items: Vec<ProcessView>,
}

/// The admin view of a row of the processes table (a process or a queue mapping): it
/// shows a callback secret once, when one was just generated.
pub trait TargetView: From<ProcessRow> + serde::Serialize {
    /// Marks the secret as stored, showing it if it was generated now.
    fn show_secret(&mut self, shown: Option<String>);
}

impl TargetView for ProcessView {
    fn show_secret(&mut self, shown: Option<String>) {
        self.has_callback_secret = true;
        self.callback_secret = shown;
    }
}

impl From<ProcessRow> for ProcessView {
    fn from(r: ProcessRow) -> Self {
        ProcessView {
            id: r.id,
            name: r.name,
            connection: r.connection_name,
            folder: r.folder,
            release: r.release,
            release_key: r.resolved.as_ref().map(|release| release.key),
            release_resolved_at: r.release_resolved_at,
            unverified: r.unverified_reason.is_some(),
            warnings: r.unverified_reason.into_iter().collect(),
            default_input: r.default_input,
            job_options: r.job_options,
            max_wait_seconds: r.max_wait_seconds,
            callback_url: r.callback_url,
            has_callback_secret: r.has_callback_secret,
            callback_secret: None,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}
