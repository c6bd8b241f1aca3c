//! The API's view of a connection: never a secret.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::connection::{ConnectionSettings, Flavour, Kind};
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
