//! A connection: one Orchestrator tenant and the credentials to reach it.

use chrono::{DateTime, Utc};
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

/// What an operator sends to create or replace a connection. Secret fields are
/// write-only: they are never returned or logged.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "acme-prod", "kind": "client_credentials", "organization": "acme", "tenant": "DefaultTenant",
    "client_id": "8d1b...", "client_secret": "write-only", "scopes": ["OR.Folders.Read", "OR.Execution.Read", "OR.Jobs"]
}))]
pub struct ConnectionInput {
    /// Unique name: letters, digits, `-` and `_`.
    pub name: Option<String>,
    /// The auth flow.
    pub kind: Option<Kind>,
    /// Defaults: `standalone` for `password`, `legacy_cloud` for `user_key`, else `cloud`.
    pub flavour: Option<Flavour>,
    /// Organisation logical name (cloud, Automation Suite), as in the URL.
    pub organization: Option<String>,
    /// Tenant logical name, as in the URL.
    pub tenant: Option<String>,
    /// Host of Automation Suite or standalone Orchestrator, e.g. `https://orchestrator.acme.local`;
    /// for Automation Cloud, its address when not `https://cloud.uipath.com`.
    pub host: Option<String>,
    /// Overrides the Orchestrator base URL.
    pub orchestrator_url: Option<String>,
    /// Overrides the token endpoint URL.
    pub token_url: Option<String>,
    /// Overrides the legacy discovery host (`https://platform.uipath.com`).
    pub discovery_url: Option<String>,
    /// External App id (`client_credentials`, `refresh_token`).
    pub client_id: Option<String>,
    /// External App secret. Write-only.
    #[schema(value_type = Option<String>, write_only)]
    pub client_secret: Option<SecretString>,
    /// Scopes to request (`client_credentials`).
    pub scopes: Option<Vec<String>>,
    /// The current refresh token (`refresh_token`). Write-only.
    #[schema(value_type = Option<String>, write_only)]
    pub refresh_token: Option<SecretString>,
    /// The Personal Access Token (`pat`). Write-only.
    #[schema(value_type = Option<String>, write_only)]
    pub token: Option<SecretString>,
    /// When the PAT expires, so the gateway can warn before.
    pub expires_at: Option<DateTime<Utc>>,
    /// Tenancy name (`password`), default `Default`.
    pub tenancy_name: Option<String>,
    /// User name or e-mail (`password`).
    pub username: Option<String>,
    /// Password (`password`). Write-only.
    #[schema(value_type = Option<String>, write_only)]
    pub password: Option<SecretString>,
    /// The User Key (`user_key`). Write-only.
    #[schema(value_type = Option<String>, write_only)]
    pub user_key: Option<SecretString>,
    /// The secret of Orchestrator's webhook to `/orchestrator/events/{name}` (any kind). Write-only.
    #[schema(value_type = Option<String>, write_only)]
    pub webhook_secret: Option<SecretString>,
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

/// One problem with the input, and how to fix it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldProblem {
    /// The field.
    pub field: String,
    /// What is wrong and what to do.
    pub problem: String,
}

fn problem(field: &str, text: &str) -> FieldProblem {
    FieldProblem {
        field: field.into(),
        problem: text.into(),
    }
}

/// True for a valid object name: 1-100 letters, digits, `-`, `_`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn valid_url(u: &str) -> bool {
    (u.starts_with("https://") || u.starts_with("http://"))
        && u.len() <= 2000
        && !u.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// True when a value holds a control character (a NUL, a newline...): never part of a
/// real name, URL, secret or token, and a NUL cannot be stored.
pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

fn secret(s: &Option<SecretString>) -> Option<String> {
    s.as_ref()
        .map(|s| secrecy::ExposeSecret::expose_secret(s).to_string())
        .filter(|s| !s.is_empty())
}

impl ConnectionInput {
    /// Checks the input for its kind and fills in the default URLs of its flavour.
    pub fn validate(self) -> Result<NewConnection, Vec<FieldProblem>> {
        self.validate_with(None, false)
    }

    /// As `validate`, for a replacement: secrets left out keep their `stored` values
    /// (they are write-only, so callers cannot send them back), and a stored refresh
    /// token satisfies the `refresh_token` kind.
    pub fn validate_with(
        mut self,
        stored: Option<&ConnectionSecrets>,
        refresh_token_stored: bool,
    ) -> Result<NewConnection, Vec<FieldProblem>> {
        if let Some(old) = stored {
            let keep = |given: &mut Option<SecretString>, old: &Option<String>| {
                if given.is_none() {
                    *given = old.clone().map(SecretString::from);
                }
            };
            keep(&mut self.client_secret, &old.client_secret);
            keep(&mut self.token, &old.token);
            keep(&mut self.password, &old.password);
            keep(&mut self.user_key, &old.user_key);
            keep(&mut self.webhook_secret, &old.webhook_secret);
        }
        let mut problems = Vec::new();
        for (field, value) in [
            ("client_secret", &self.client_secret),
            ("token", &self.token),
            ("password", &self.password),
            ("user_key", &self.user_key),
            ("refresh_token", &self.refresh_token),
            ("webhook_secret", &self.webhook_secret),
        ] {
            if value
                .as_ref()
                .is_some_and(|v| has_control(secrecy::ExposeSecret::expose_secret(v)))
            {
                problems.push(problem(
                    field,
                    "must not contain control characters (NUL, newline, ...)",
                ));
            }
        }
        let name = self.name.clone().unwrap_or_default();
        if !valid_name(&name) {
            problems.push(problem(
                "name",
                "required: 1-100 letters, digits, `-` or `_`",
            ));
        }
        let Some(kind) = self.kind else {
            problems.push(problem(
                "kind",
                "required: client_credentials, refresh_token, pat, password or user_key",
            ));
            return Err(problems);
        };
        let flavour = self.flavour.unwrap_or(match kind {
            Kind::Password => Flavour::Standalone,
            Kind::UserKey => Flavour::LegacyCloud,
            _ => Flavour::Cloud,
        });
        let need = |field: &str, v: &Option<String>, problems: &mut Vec<FieldProblem>| {
            if v.as_deref().is_none_or(str::is_empty) {
                problems.push(problem(
                    field,
                    &format!("required for kind {}", kind.as_str()),
                ));
            }
        };
        for (field, url) in [
            ("host", &self.host),
            ("orchestrator_url", &self.orchestrator_url),
            ("token_url", &self.token_url),
            ("discovery_url", &self.discovery_url),
        ] {
            if url.as_deref().is_some_and(|u| !valid_url(u)) {
                problems.push(problem(field, "must be an absolute http(s) URL"));
            }
        }
        let host = self
            .host
            .as_deref()
            .map(|h| h.trim_end_matches('/').to_string());
        let (org, tenant) = (self.organization.clone(), self.tenant.clone());
        let (default_orch, default_token) = match flavour {
            Flavour::Cloud | Flavour::AutomationSuite => {
                let base = if flavour == Flavour::Cloud {
                    // Another Automation Cloud domain (staging, a regional one) may be given.
                    Some(
                        host.clone()
                            .unwrap_or_else(|| "https://cloud.uipath.com".to_string()),
                    )
                } else {
                    host.clone()
                };
                if flavour == Flavour::AutomationSuite
                    && base.is_none()
                    && self.orchestrator_url.is_none()
                {
                    problems.push(problem(
                        "host",
                        "required for automation_suite, e.g. https://automation.acme.local",
                    ));
                }
                if self.orchestrator_url.is_none() {
                    need("organization", &org, &mut problems);
                    need("tenant", &tenant, &mut problems);
                }
                let orch = base
                    .as_ref()
                    .zip(org.as_ref().zip(tenant.as_ref()))
                    .map(|(b, (o, t))| format!("{b}/{o}/{t}/orchestrator_"));
                (orch, base.map(|b| format!("{b}/identity_/connect/token")))
            }
            Flavour::Standalone => {
                if host.is_none() && self.orchestrator_url.is_none() {
                    problems.push(problem("host", "required for standalone Orchestrator, e.g. https://orchestrator.acme.local"));
                }
                (
                    host.clone(),
                    host.map(|h| format!("{h}/identity/connect/token")),
                )
            }
            Flavour::LegacyCloud => {
                let orch = org
                    .as_ref()
                    .zip(tenant.as_ref())
                    .map(|(o, t)| format!("https://platform.uipath.com/{o}/{t}"));
                (
                    orch,
                    Some("https://account.uipath.com/oauth/token".to_string()),
                )
            }
        };
        let orchestrator_url = self
            .orchestrator_url
            .clone()
            .or(default_orch)
            .map(|u| u.trim_end_matches('/').to_string());
        let token_url = self.token_url.clone().or(default_token);
        let mut settings = ConnectionSettings {
            orchestrator_url: orchestrator_url.clone().unwrap_or_default(),
            token_url,
            ..Default::default()
        };
        let mut secrets = ConnectionSecrets {
            webhook_secret: secret(&self.webhook_secret),
            ..Default::default()
        };
        let mut refresh_token = None;
        match kind {
            Kind::ClientCredentials | Kind::RefreshToken => {
                need("client_id", &self.client_id, &mut problems);
                settings.client_id = self.client_id.clone();
                secrets.client_secret = secret(&self.client_secret);
                if kind == Kind::ClientCredentials {
                    if secrets.client_secret.is_none() {
                        problems.push(problem("client_secret", "required for client_credentials (the App Secret of a confidential External App)"));
                    }
                    let scopes = self.scopes.clone().unwrap_or_default();
                    if scopes.iter().any(|s| s == "offline_access") {
                        problems.push(problem("scopes", "offline_access is refused with client credentials (invalid_scope): remove it; the gateway asks for a new token when one expires"));
                    }
                    settings.scopes = scopes;
                } else {
                    refresh_token = self
                        .refresh_token
                        .clone()
                        .filter(|t| !secrecy::ExposeSecret::expose_secret(t).is_empty());
                    if refresh_token.is_none() && !refresh_token_stored {
                        problems.push(problem("refresh_token", "required for refresh_token: the refresh token from your authorization-code sign-in (ask for offline_access)"));
                    }
                }
            }
            Kind::Pat => {
                secrets.token = secret(&self.token);
                if secrets.token.is_none() {
                    problems.push(problem("token", "required for pat: the Personal Access Token (Preferences > Personal Access Tokens)"));
                }
                settings.expires_at = self.expires_at;
                settings.token_url = None;
            }
            Kind::Password => {
                if flavour != Flavour::Standalone
                    || orchestrator_url
                        .as_deref()
                        .is_some_and(crate::orchestrator::auth::is_cloud)
                {
                    problems.push(problem("kind", "password login (/api/Account/Authenticate) exists only on standalone Orchestrator: for Automation Cloud use client_credentials (an External App), pat or user_key"));
                }
                need("username", &self.username, &mut problems);
                secrets.password = secret(&self.password);
                if secrets.password.is_none() {
                    problems.push(problem("password", "required for password"));
                }
                settings.tenancy_name = Some(
                    self.tenancy_name
                        .clone()
                        .unwrap_or_else(|| "Default".into()),
                );
                settings.username = self.username.clone();
                settings.token_url = None;
            }
            Kind::UserKey => {
                secrets.user_key = secret(&self.user_key);
                if secrets.user_key.is_none() {
                    problems.push(problem("user_key", "required for user_key: the User Key from Admin > Tenant > Services > API Access"));
                }
                settings.discovery_url = Some(
                    self.discovery_url
                        .clone()
                        .unwrap_or_else(|| "https://platform.uipath.com".into()),
                );
                settings.tenant_name_header = tenant.clone();
            }
        }
        if orchestrator_url.is_none() && kind != Kind::UserKey {
            problems.push(problem("orchestrator_url", "cannot be worked out: give organization and tenant (cloud), host, or orchestrator_url"));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(NewConnection {
            name,
            kind,
            flavour,
            organization: org,
            tenant,
            settings,
            secrets,
            refresh_token,
        })
    }
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
