//! The admin view of a queue mapping.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::queue::QueueSchema;
use crate::storage::processes::ProcessRow;
use crate::views::processes::TargetView;

/// A queue mapping: `POST /queues/{name}` adds items to `queue` in `folder`.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueMappingView {
    pub id: Uuid,
    pub name: String,
    /// The connection's name.
    pub connection: String,
    pub folder: String,
    /// The queue's name in Orchestrator.
    pub queue: String,
    /// What the queue said about itself when last looked up (its schemas, whether it
    /// enforces unique references); null until then.
    pub definition: Option<QueueSchema>,
    /// When the queue was last looked up.
    pub resolved_at: Option<DateTime<Utc>>,
    /// True while the folder and queue could not be checked against Orchestrator.
    pub unverified: bool,
    /// Why it is unverified.
    pub warnings: Vec<String>,
    #[schema(value_type = Object)]
    pub default_content: serde_json::Value,
    /// The items' default priority.
    pub priority: Option<String>,
    pub max_wait_seconds: i32,
    pub callback_url: Option<String>,
    /// Whether callbacks are signed.
    pub has_callback_secret: bool,
    /// A generated callback secret, shown once (on create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_secret: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Every queue mapping.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueMappingList {
    pub items: Vec<QueueMappingView>,
}

impl From<ProcessRow> for QueueMappingView {
    fn from(r: ProcessRow) -> Self {
        QueueMappingView {
            id: r.id,
            name: r.name,
            connection: r.connection_name,
            folder: r.folder,
            queue: r.queue.unwrap_or_default(),
            definition: r.queue_schema,
            resolved_at: r.release_resolved_at,
            unverified: r.unverified_reason.is_some(),
            warnings: r.unverified_reason.into_iter().collect(),
            default_content: r.default_input,
            priority: r.job_options.priority,
            max_wait_seconds: r.max_wait_seconds,
            callback_url: r.callback_url,
            has_callback_secret: r.has_callback_secret,
            callback_secret: None,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

impl TargetView for QueueMappingView {
    fn show_secret(&mut self, shown: Option<String>) {
        self.has_callback_secret = true;
        self.callback_secret = shown;
    }
}
