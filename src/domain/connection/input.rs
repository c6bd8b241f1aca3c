//! A connection as an operator writes it, and the checks that turn it into a `NewConnection`.

use super::*;
use crate::domain::problem::{FieldProblem, has_control, problem, valid_name};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;

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
