//! The API's view of a connection: never a secret.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::connection::{ConnectionSettings, Flavour, Kind};
use crate::orchestrator::models::{Folder, Release};
use crate::state::AppState;
use crate::storage::connections::{self as store, ConnectionRow};

/// A connection as the API shows it: no secret ever appears.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    pub id: Uuid,
    pub name: String,
    pub kind: Kind,
    pub flavour: Flavour,
    pub organization: Option<String>,
    pub tenant: Option<String>,
    #[serde(flatten)]
    pub settings: ConnectionSettings,
    /// Names of the secret fields stored (never their values).
    pub secrets_stored: Vec<String>,
    /// `unknown`, `healthy` or `unhealthy`.
    pub health: String,
    /// Why it is unhealthy, and what to do.
    pub health_reason: Option<String>,
    pub health_checked_at: Option<DateTime<Utc>>,
    /// When the current access token expires.
    pub token_expires_at: Option<DateTime<Utc>>,
    /// Things to act on soon, such as a PAT about to expire.
    pub warnings: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A list of connections.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    pub items: Vec<ConnectionView>,
}

pub fn view(state: &AppState, row: ConnectionRow) -> ConnectionView {
    let secrets = store::open_secrets(&state.keys, &row).unwrap_or_default();
    let mut stored = Vec::new();
    for (name, present) in [
        ("client_secret", secrets.client_secret.is_some()),
        ("token", secrets.token.is_some()),
        ("password", secrets.password.is_some()),
        ("user_key", secrets.user_key.is_some()),
        ("webhook_secret", secrets.webhook_secret.is_some()),
        ("refresh_token", row.kind == Kind::RefreshToken),
    ] {
        if present {
            stored.push(name.to_string());
        }
    }
    let mut warnings = Vec::new();
    if let Some(expiry) = row.settings.expires_at {
        let days = (expiry - Utc::now()).num_days();
        if expiry <= Utc::now() {
            warnings.push("the Personal Access Token has expired: create a new one and update this connection".into());
        } else if days < state.settings.orchestrator.pat_warning_days {
            warnings.push(format!("the Personal Access Token expires in {days} days ({expiry}): create a new one before then"));
        }
    }
    ConnectionView {
        id: row.id,
        name: row.name,
        kind: row.kind,
        flavour: row.flavour,
        organization: row.organization,
        tenant: row.tenant,
        settings: row.settings,
        secrets_stored: stored,
        health: row.health,
        health_reason: row.health_reason,
        health_checked_at: row.health_checked_at,
        token_expires_at: row.token_expires_at,
        warnings,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// What `test` found.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionTest {
    /// True when a token was had and folders could be listed.
    pub ok: bool,
    /// The auth flow used.
    pub kind: Kind,
    /// Who the token belongs to (client id or user name), as configured.
    pub identity: Option<String>,
    /// When the token expires.
    pub token_expires_at: Option<DateTime<Utc>>,
    /// How many folders the token can see.
    pub folder_count: Option<usize>,
    /// Their paths (the first 50).
    pub folders: Vec<String>,
    /// Why the test failed, with Orchestrator's code.
    pub error: Option<String>,
    /// Orchestrator's `errorCode` or OAuth `error`.
    pub orchestrator_error_code: Option<String>,
}

/// A folder, for picking one.
#[derive(Debug, Serialize, ToSchema)]
pub struct FolderView {
    pub id: i64,
    pub key: Option<String>,
    pub path: String,
    pub display_name: String,
    pub folder_type: Option<String>,
}

/// Folders the connection can see.
#[derive(Debug, Serialize, ToSchema)]
pub struct FolderList {
    pub items: Vec<FolderView>,
}

/// A release (process), for picking one.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseView {
    /// The ReleaseKey.
    pub key: Option<String>,
    pub process_key: String,
    pub name: String,
    pub version: String,
    /// Input argument definitions, parsed.
    #[schema(value_type = Vec<Object>)]
    pub input_arguments: serde_json::Value,
}

/// A queue in a folder, as Orchestrator defines it.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueView {
    pub id: i64,
    pub name: String,
    /// A second item with the same reference is refused.
    pub enforce_unique_reference: bool,
    /// How often Orchestrator retries an item that failed with an application exception.
    pub max_number_of_retries: Option<i32>,
    /// The JSON Schema an item's content must fit (`SpecificDataJsonSchema`, parsed).
    #[schema(value_type = Option<Object>)]
    pub content_schema: Option<serde_json::Value>,
    /// The JSON Schema of an item's output (`OutputDataJsonSchema`, parsed).
    #[schema(value_type = Option<Object>)]
    pub output_schema: Option<serde_json::Value>,
}

/// Queues in a folder.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueList {
    pub items: Vec<QueueView>,
}

impl From<crate::orchestrator::queues::QueueDefinition> for QueueView {
    fn from(q: crate::orchestrator::queues::QueueDefinition) -> Self {
        let schema = q.schema();
        QueueView {
            id: q.id,
            name: q.name,
            enforce_unique_reference: q.enforce_unique_reference,
            max_number_of_retries: q.max_number_of_retries,
            content_schema: schema.content_schema,
            output_schema: schema.output_schema,
        }
    }
}

/// Releases in a folder.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseList {
    pub items: Vec<ReleaseView>,
}

impl From<Folder> for FolderView {
    fn from(f: Folder) -> Self {
        FolderView {
            path: f
                .fully_qualified_name
                .clone()
                .unwrap_or_else(|| f.display_name.clone()),
            id: f.id,
            key: f.key,
            display_name: f.display_name,
            folder_type: f.folder_type,
        }
    }
}

impl From<Release> for ReleaseView {
    fn from(r: Release) -> Self {
        ReleaseView {
            input_arguments: serde_json::to_value(r.input_arguments().unwrap_or_default())
                .unwrap_or_default(),
            key: r.key,
            process_key: r.process_key,
            name: r.name,
            version: r.process_version,
        }
    }
}
