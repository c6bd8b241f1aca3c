//! A connection: one Orchestrator tenant and the credentials to reach it.

mod input;

use chrono::{DateTime, Utc};
pub use input::ConnectionInput;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::orchestrator::Credentials;

/// The auth flow of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// External App with client credentials.
    ClientCredentials,
    /// Authorization code: a refresh token that rotates on every use.
    RefreshToken,
    /// Personal Access Token.
    Pat,
    /// On-premises user name and password.
    Password,
    /// Legacy cloud user key.
    UserKey,
}

/// Where Orchestrator runs; decides the default URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Flavour {
    /// Automation Cloud (cloud.uipath.com).
    Cloud,
    /// Automation Suite on your own host.
    AutomationSuite,
    /// Standalone Orchestrator 2020.10 or later.
    Standalone,
    /// Legacy cloud (platform.uipath.com, user keys).
    LegacyCloud,
}

impl Kind {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ClientCredentials => "client_credentials",
            Kind::RefreshToken => "refresh_token",
            Kind::Pat => "pat",
            Kind::Password => "password",
            Kind::UserKey => "user_key",
        }
    }
}

impl Flavour {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::Cloud => "cloud",
            Flavour::AutomationSuite => "automation_suite",
            Flavour::Standalone => "standalone",
            Flavour::LegacyCloud => "legacy_cloud",
        }
    }
}

/// The non-secret settings of a connection, stored as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConnectionSettings {
    /// Orchestrator base URL.
    pub orchestrator_url: String,
    /// Token endpoint (none for `pat`).
    pub token_url: Option<String>,
    /// Legacy discovery host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery_url: Option<String>,
    /// External App id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Requested scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// PAT expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Tenancy name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenancy_name: Option<String>,
    /// User name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Sent as `X-UIPATH-TenantName` (legacy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_name_header: Option<String>,
}

/// The secret fields, sealed together in the database.
#[derive(Default, Serialize, Deserialize)]
pub struct ConnectionSecrets {
    /// External App secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// PAT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// User key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_key: Option<String>,
    /// Signing secret of Orchestrator's webhooks to us.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

impl std::fmt::Debug for ConnectionSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionSecrets(***)")
    }
}

/// A validated connection, ready to store.
#[derive(Debug)]
pub struct NewConnection {
    /// Unique name.
    pub name: String,
    /// Auth flow.
    pub kind: Kind,
    /// Flavour.
    pub flavour: Flavour,
    /// Organisation.
    pub organization: Option<String>,
    /// Tenant.
    pub tenant: Option<String>,
    /// Non-secret settings.
    pub settings: ConnectionSettings,
    /// Secrets.
    pub secrets: ConnectionSecrets,
    /// The initial refresh token (`refresh_token` kind), kept with the tokens.
    pub refresh_token: Option<SecretString>,
}

fn valid_url(u: &str) -> bool {
    (u.starts_with("https://") || u.starts_with("http://"))
        && u.len() <= 2000
        && !u.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn secret(s: &Option<SecretString>) -> Option<String> {
    s.as_ref()
        .map(|s| secrecy::ExposeSecret::expose_secret(s).to_string())
        .filter(|s| !s.is_empty())
}

/// Builds the credentials of a stored connection. `refresh_token` is the current one.
pub fn credentials(
    kind: Kind,
    settings: &ConnectionSettings,
    secrets: &ConnectionSecrets,
    refresh_token: Option<SecretString>,
) -> Option<Credentials> {
    let s = |v: &Option<String>| v.clone().map(SecretString::from);
    Some(match kind {
        Kind::ClientCredentials => Credentials::ClientCredentials {
            token_url: settings.token_url.clone()?,
            client_id: settings.client_id.clone()?,
            client_secret: s(&secrets.client_secret)?,
            scopes: settings.scopes.clone(),
        },
        Kind::RefreshToken => Credentials::RefreshToken {
            token_url: settings.token_url.clone()?,
            client_id: settings.client_id.clone()?,
            client_secret: s(&secrets.client_secret),
            refresh_token: refresh_token?,
        },
        Kind::Pat => Credentials::Pat {
            token: s(&secrets.token)?,
            expires_at: settings.expires_at,
        },
        Kind::Password => Credentials::Password {
            orchestrator_url: settings.orchestrator_url.clone(),
            tenancy_name: settings
                .tenancy_name
                .clone()
                .unwrap_or_else(|| "Default".into()),
            username: settings.username.clone()?,
            password: s(&secrets.password)?,
        },
        Kind::UserKey => Credentials::UserKey {
            token_url: settings.token_url.clone()?,
            user_key: s(&secrets.user_key)?,
        },
    })
}
