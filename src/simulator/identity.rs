//! The identity side: Identity Server tokens, on-prem password login, the legacy
//! `/oauth/token` with its `cloudrpa` discovery calls. Shapes as in
//! orchestrator-api.md §2.

use std::collections::{HashMap, HashSet};

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::common::{Sim, json_body, oauth_error, or_error};
use super::state::{RefreshGrant, random_token};

/// The constant client id of the legacy cloud API access flow.
pub const LEGACY_CLIENT_ID: &str = "5v7PmPJL6FOGu6RB8I1Y4adLBhIwovQN";

fn content_type(req: &HttpRequest) -> &str {
    req.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// `POST /identity_/connect/token`, `/{org}/identity_/connect/token` and
/// `/identity/connect/token`: client credentials and rotating refresh tokens.
pub async fn connect_token(req: HttpRequest, body: Bytes, sim: web::Data<Sim>) -> HttpResponse {
    if !content_type(&req).starts_with("application/x-www-form-urlencoded") {
        return oauth_error(
            400,
            "invalid_request",
            "The token request must be a form (application/x-www-form-urlencoded).",
        );
    }
    let Ok(form) = serde_urlencoded::from_bytes::<HashMap<String, String>>(&body) else {
        return oauth_error(400, "invalid_request", "The form body could not be read.");
    };
    let field = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let mut state = sim.lock();
    let Some(client_id) = field("client_id") else {
        return oauth_error(400, "invalid_client", "client_id is required.");
    };
    let Some(app) = state
        .scenario
        .external_apps
        .iter()
        .find(|a| a.client_id == client_id)
        .cloned()
    else {
        return oauth_error(400, "invalid_client", "Unknown client.");
    };
    let secret_ok = match &app.client_secret {
        Some(secret) => field("client_secret") == Some(secret.as_str()),
        None => true,
    };
    let lifetime = state.scenario.token_lifetimes.oauth;
    match field("grant_type") {
        Some("client_credentials") => {
            if !secret_ok {
                return oauth_error(400, "invalid_client", "Invalid client secret.");
            }
            let requested: Vec<&str> = field("scope")
                .map(|s| s.split_whitespace().collect())
                .unwrap_or_default();
            if requested.contains(&"offline_access") {
                return oauth_error(
                    400,
                    "invalid_scope",
                    "offline_access is not allowed with client credentials.",
                );
            }
            if let Some(bad) = requested
                .iter()
                .find(|s| !app.scopes.iter().any(|a| a == *s))
            {
                return oauth_error(
                    400,
                    "invalid_scope",
                    &format!("The scope {bad} was not granted to this application."),
                );
            }
            let scopes: Vec<String> = if requested.is_empty() {
                app.scopes.clone()
            } else {
                requested.iter().map(|s| s.to_string()).collect()
            };
            let token = state.issue_token(
                "client_credentials",
                client_id,
                scopes.iter().cloned().collect(),
                lifetime,
                false,
            );
            HttpResponse::Ok().json(json!({
                "access_token": token,
                "expires_in": lifetime,
                "token_type": "Bearer",
                "scope": scopes.join(" "),
            }))
        }
        Some("refresh_token") => {
            if !secret_ok {
                return oauth_error(400, "invalid_client", "Invalid client secret.");
            }
            let Some(old) = field("refresh_token") else {
                return oauth_error(400, "invalid_request", "refresh_token is required.");
            };
            // Single use: the token is gone once presented, whatever happens next.
            let grant = match state.refresh_tokens.remove(old) {
                Some(g) if g.client_id == client_id => g,
                _ => {
                    return oauth_error(
                        400,
                        "invalid_grant",
                        "The refresh token is invalid, expired or already used.",
                    );
                }
            };
            let scopes: HashSet<String> = grant
                .scopes
                .iter()
                .filter(|s| *s != "offline_access")
                .cloned()
                .collect();
            let access = state.issue_token("refresh_token", client_id, scopes, lifetime, false);
            let new_refresh = random_token("sim_rt_");
            state.refresh_tokens.insert(
                new_refresh.clone(),
                RefreshGrant {
                    client_id: client_id.into(),
                    scopes: grant.scopes.clone(),
                },
            );
            let mut body = json!({
                "access_token": access,
                "expires_in": lifetime,
                "token_type": "Bearer",
                "scope": grant.scopes.join(" "),
                "refresh_token": new_refresh,
            });
            if grant.scopes.iter().any(|s| s == "openid") {
                body["id_token"] = json!(random_token("sim_id_"));
            }
            HttpResponse::Ok().json(body)
        }
        Some(other) => oauth_error(
            400,
            "unsupported_grant_type",
            &format!("The grant type {other} is not supported here."),
        ),
        None => oauth_error(400, "unsupported_grant_type", "grant_type is required."),
    }
}

/// `POST /api/Account/Authenticate` on a standalone Orchestrator.
pub async fn authenticate(body: Bytes, sim: web::Data<Sim>) -> HttpResponse {
    let fields = match json_body(&body) {
        Ok(f) => f,
        Err(res) => return res,
    };
    let text = |k: &str| fields.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let (Some(user), Some(password)) = (text("usernameoremailaddress"), text("password")) else {
        return or_error(
            400,
            1000,
            "The fields usernameOrEmailAddress and password are required.",
        );
    };
    let tenancy = text("tenancyname").unwrap_or_else(|| "Default".into());
    let mut state = sim.lock();
    let known = state.scenario.users.iter().any(|u| {
        u.username.eq_ignore_ascii_case(&user)
            && u.password == password
            && u.tenancy_name.eq_ignore_ascii_case(&tenancy)
    });
    if !known {
        return HttpResponse::BadRequest().json(json!({
            "message": "Invalid credentials, failed to login.",
            "errorCode": 1000,
            "resourceIds": null,
        }));
    }
    let lifetime = state.scenario.token_lifetimes.password;
    let token = state.issue_token(
        "password",
        &user,
        HashSet::from(["*".to_string()]),
        lifetime,
        true,
    );
    HttpResponse::Ok().json(json!({
        "result": token,
        "targetUrl": null,
        "success": true,
        "error": null,
        "unAuthorizedRequest": false,
        "__abp": true,
    }))
}

/// `/api/Account/Authenticate` under a cloud path: password login does not exist there.
pub async fn authenticate_on_cloud() -> HttpResponse {
    or_error(
        404,
        1002,
        "Username and password authentication is not available in Automation Cloud. Use an External Application, a Personal Access Token or API access.",
    )
}

/// `POST /oauth/token` (legacy cloud): JSON body, the constant client id, a user key.
pub async fn legacy_token(req: HttpRequest, body: Bytes, sim: web::Data<Sim>) -> HttpResponse {
    if !content_type(&req).starts_with("application/json") {
        return oauth_error(
            400,
            "invalid_request",
            "The request must be JSON (application/json).",
        );
    }
    let fields = match json_body(&body) {
        Ok(f) => f,
        Err(_) => return oauth_error(400, "invalid_request", "The body is not a JSON object."),
    };
    let text = |k: &str| fields.get(k).and_then(|v| v.as_str());
    if text("grant_type") != Some("refresh_token") {
        return oauth_error(
            400,
            "unsupported_grant_type",
            "Only grant_type refresh_token is supported.",
        );
    }
    if text("client_id") != Some(LEGACY_CLIENT_ID) {
        return oauth_error(403, "unauthorized_client", "Unknown client_id.");
    }
    let mut state = sim.lock();
    let Some(key) = text("refresh_token")
        .and_then(|k| state.scenario.user_keys.iter().find(|u| u.key == k))
        .cloned()
    else {
        return oauth_error(403, "invalid_grant", "Unknown or invalid refresh token.");
    };
    let lifetime = state.scenario.token_lifetimes.user_key;
    let access = state.issue_token(
        "user_key",
        &key.email,
        HashSet::from(["*".to_string()]),
        lifetime,
        false,
    );
    let id_token = random_token("sim_id_");
    state.id_tokens.insert(id_token.clone(), key.key.clone());
    HttpResponse::Ok().json(json!({
        "access_token": access,
        "id_token": id_token,
        "scope": "openid profile email offline_access",
        "expires_in": lifetime,
        "token_type": "Bearer",
    }))
}

fn id_token_user(req: &HttpRequest, sim: &Sim) -> Option<super::scenario::UserKey> {
    let bearer = req
        .headers()
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    let state = sim.lock();
    let key = state.id_tokens.get(bearer)?;
    state
        .scenario
        .user_keys
        .iter()
        .find(|u| &u.key == key)
        .cloned()
}

/// `GET /cloudrpa/api/getAccountsForUser` with the `id_token`.
pub async fn accounts_for_user(req: HttpRequest, sim: web::Data<Sim>) -> HttpResponse {
    let Some(user) = id_token_user(&req, &sim) else {
        return or_error(401, 0, "You are not authenticated!");
    };
    HttpResponse::Ok().json(json!({
        "userEmail": user.email,
        "accounts": [{ "accountName": user.account_logical_name, "accountLogicalName": user.account_logical_name }],
    }))
}

/// `GET /cloudrpa/api/account/{account}/getAllServiceInstances` with the `id_token`.
pub async fn service_instances(
    req: HttpRequest,
    path: web::Path<String>,
    sim: web::Data<Sim>,
) -> HttpResponse {
    let Some(user) = id_token_user(&req, &sim) else {
        return or_error(401, 0, "You are not authenticated!");
    };
    if user.account_logical_name != *path {
        return or_error(404, 1002, "Account not found.");
    }
    let host = req.connection_info().host().to_string();
    let scheme = req.connection_info().scheme().to_string();
    HttpResponse::Ok().json(json!([{
        "serviceInstanceName": user.tenant_logical_name,
        "serviceInstanceLogicalName": user.tenant_logical_name,
        "serviceType": "ORCHESTRATOR",
        "serviceUrl": format!("{scheme}://{host}/{}/{}", user.account_logical_name, user.tenant_logical_name),
    }]))
}
