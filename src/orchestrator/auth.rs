//! Getting an access token, for each auth flow of orchestrator-api.md §2.

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::error::OrchestratorError;
use super::models::{AuthenticateResponse, TokenResponse};

/// The constant client id of the legacy cloud API access flow.
pub const LEGACY_CLIENT_ID: &str = "5v7PmPJL6FOGu6RB8I1Y4adLBhIwovQN";
/// `/api/Account/Authenticate` tokens last 30 minutes unless configured otherwise.
pub const PASSWORD_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The credentials of one connection, by auth flow.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// External App, client credentials (`identity_/connect/token`, form body).
    ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: SecretString,
        scopes: Vec<String>,
    },
    /// Authorization code: a refresh token that rotates on every use.
    RefreshToken {
        token_url: String,
        client_id: String,
        client_secret: Option<SecretString>,
        refresh_token: SecretString,
    },
    /// A Personal Access Token, sent as the bearer itself.
    Pat {
        token: SecretString,
        expires_at: Option<DateTime<Utc>>,
    },
    /// On-premises `/api/Account/Authenticate`.
    Password {
        orchestrator_url: String,
        tenancy_name: String,
        username: String,
        password: SecretString,
    },
    /// Legacy cloud user key at `/oauth/token` (JSON body, constant client id).
    UserKey {
        token_url: String,
        user_key: SecretString,
    },
}

/// A token and what came with it.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The bearer token.
    pub access_token: SecretString,
    /// When it stops working, if known.
    pub expires_at: Option<DateTime<Utc>>,
    /// The next refresh token (rotating grants): store it before using the access token.
    pub refresh_token: Option<SecretString>,
    /// The `id_token` (legacy flow).
    pub id_token: Option<SecretString>,
    /// Granted scopes.
    pub scope: Option<String>,
}

impl Credentials {
    /// The flow's name, as used in the API.
    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::ClientCredentials { .. } => "client_credentials",
            Credentials::RefreshToken { .. } => "refresh_token",
            Credentials::Pat { .. } => "pat",
            Credentials::Password { .. } => "password",
            Credentials::UserKey { .. } => "user_key",
        }
    }

    /// Catches the mistakes orchestrator-api.md §10 lists, with the fix.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Credentials::ClientCredentials { scopes, .. } if scopes.iter().any(|s| s == "offline_access") => {
                Err("offline_access is refused with client credentials (invalid_scope): remove it; the gateway requests a new token when the old one expires".into())
            }
            Credentials::Password { orchestrator_url, .. } if is_cloud(orchestrator_url) => {
                Err("password login (/api/Account/Authenticate) exists only on standalone Orchestrator: for Automation Cloud use an External App (client_credentials), a Personal Access Token (pat) or the legacy user key".into())
            }
            _ => Ok(()),
        }
    }
}

/// True for Automation Cloud hosts.
pub fn is_cloud(url: &str) -> bool {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    host == "cloud.uipath.com" || host.ends_with(".uipath.com")
}

/// Asks for a token. The secret values are sent, never logged.
#[tracing::instrument(skip_all, fields(kind = creds.kind()))]
pub async fn request_token(
    http: &reqwest::Client,
    creds: &Credentials,
) -> Result<Grant, OrchestratorError> {
    let now = Utc::now();
    let expiry = |secs: Option<i64>| secs.map(|s| now + chrono::Duration::seconds(s));
    match creds {
        Credentials::ClientCredentials {
            token_url,
            client_id,
            client_secret,
            scopes,
        } => {
            let mut form = vec![
                ("grant_type", "client_credentials".to_string()),
                ("client_id", client_id.clone()),
                ("client_secret", client_secret.expose_secret().to_string()),
            ];
            if !scopes.is_empty() {
                form.push(("scope", scopes.join(" ")));
            }
            let t: TokenResponse = post_token(http.post(token_url).form(&form)).await?;
            Ok(Grant {
                access_token: t.access_token.into(),
                expires_at: expiry(t.expires_in),
                refresh_token: None,
                id_token: None,
                scope: t.scope,
            })
        }
        Credentials::RefreshToken {
            token_url,
            client_id,
            client_secret,
            refresh_token,
        } => {
            let mut form = vec![
                ("grant_type", "refresh_token".to_string()),
                ("client_id", client_id.clone()),
                ("refresh_token", refresh_token.expose_secret().to_string()),
            ];
            if let Some(secret) = client_secret {
                form.push(("client_secret", secret.expose_secret().to_string()));
            }
            let t: TokenResponse = post_token(http.post(token_url).form(&form)).await?;
            Ok(Grant {
                access_token: t.access_token.into(),
                expires_at: expiry(t.expires_in),
                refresh_token: t.refresh_token.map(SecretString::from),
                id_token: t.id_token.map(SecretString::from),
                scope: t.scope,
            })
        }
        Credentials::Pat { token, expires_at } => {
            if expires_at.is_some_and(|e| e <= now) {
                return Err(OrchestratorError::Auth {
                    status: 401,
                    error_code: Some("pat_expired".into()),
                    message: "the Personal Access Token has expired: create a new one in Preferences > Personal Access Tokens".into(),
                });
            }
            Ok(Grant {
                access_token: token.clone(),
                expires_at: *expires_at,
                refresh_token: None,
                id_token: None,
                scope: None,
            })
        }
        Credentials::Password {
            orchestrator_url,
            tenancy_name,
            username,
            password,
        } => {
            let url = format!(
                "{}/api/Account/Authenticate",
                orchestrator_url.trim_end_matches('/')
            );
            let body = json!({"tenancyName": tenancy_name, "usernameOrEmailAddress": username, "password": password.expose_secret()});
            let res: AuthenticateResponse = post_token(http.post(url).json(&body)).await?;
            let token =
                res.result
                    .filter(|_| res.success)
                    .ok_or_else(|| OrchestratorError::Auth {
                        status: 200,
                        error_code: None,
                        message: "the login answer carried no token".into(),
                    })?;
            let lifetime = chrono::Duration::from_std(PASSWORD_TOKEN_LIFETIME).expect("fits");
            Ok(Grant {
                access_token: token.into(),
                expires_at: Some(now + lifetime),
                refresh_token: None,
                id_token: None,
                scope: None,
            })
        }
        Credentials::UserKey {
            token_url,
            user_key,
        } => {
            let body = json!({"grant_type": "refresh_token", "client_id": LEGACY_CLIENT_ID, "refresh_token": user_key.expose_secret()});
            let t: TokenResponse = post_token(http.post(token_url).json(&body)).await?;
            Ok(Grant {
                access_token: t.access_token.into(),
                expires_at: expiry(t.expires_in),
                refresh_token: None,
                id_token: t.id_token.map(SecretString::from),
                scope: t.scope,
            })
        }
    }
}

/// Sends a token request; refusals become `Auth` errors with the server's reason.
async fn post_token<T: serde::de::DeserializeOwned>(
    req: reqwest::RequestBuilder,
) -> Result<T, OrchestratorError> {
    let res = req
        .send()
        .await
        .map_err(|e| OrchestratorError::from_transport(&e, false))?;
    let status = res.status().as_u16();
    let body = res
        .bytes()
        .await
        .map_err(|e| OrchestratorError::from_transport(&e, false))?;
    if (200..300).contains(&status) {
        return serde_json::from_slice(&body).map_err(|_| OrchestratorError::InvalidRequest {
            status,
            error_code: None,
            message:
                "the token endpoint answered something that is not a token (is this the right URL?)"
                    .into(),
        });
    }
    Err(
        match OrchestratorError::from_status(status, &body, None, false) {
            OrchestratorError::InvalidRequest {
                status,
                error_code,
                message,
            }
            | OrchestratorError::Permission {
                status,
                error_code,
                message,
            } => OrchestratorError::Auth {
                status,
                error_code,
                message,
            },
            other => other,
        },
    )
}

/// The legacy discovery calls: the account and tenant (service instance) logical names.
pub async fn discover_legacy(
    http: &reqwest::Client,
    platform_url: &str,
    id_token: &SecretString,
) -> Result<(String, String), OrchestratorError> {
    let base = platform_url.trim_end_matches('/');
    let get = |url: String| http.get(url).bearer_auth(id_token.expose_secret());
    let accounts: serde_json::Value =
        post_token(get(format!("{base}/cloudrpa/api/getAccountsForUser"))).await?;
    let account = accounts["accounts"][0]["accountLogicalName"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| OrchestratorError::NotFound {
            status: 200,
            error_code: None,
            message: "the user key's user belongs to no account".into(),
        })?;
    let instances: serde_json::Value = post_token(get(format!(
        "{base}/cloudrpa/api/account/{account}/getAllServiceInstances"
    )))
    .await?;
    let tenant = instances
        .as_array()
        .and_then(|a| a.iter().find(|i| i["serviceType"] == "ORCHESTRATOR"))
        .and_then(|i| i["serviceInstanceLogicalName"].as_str())
        .map(String::from)
        .ok_or_else(|| OrchestratorError::NotFound {
            status: 200,
            error_code: None,
            message: format!("account {account} has no Orchestrator service"),
        })?;
    Ok((account, tenant))
}
