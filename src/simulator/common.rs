//! What every simulated endpoint shares: error bodies, the bearer check, folder
//! headers and tenant paths. The middleware that logs calls and injects faults is in
//! `recorder.rs`.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine;
use rand::Rng;
use serde_json::{Value, json};

use super::scenario::Folder;
use super::state::{IssuedToken, SimState};

/// The simulator's shared state and HTTP client (for outgoing webhooks).
pub struct Sim {
    /// All mutable state.
    pub state: Mutex<SimState>,
    /// Sends outgoing webhooks.
    pub http: reqwest::Client,
}

impl Sim {
    /// Locks the state. A panic while holding it is a simulator bug; keep serving.
    pub fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An Orchestrator error body: `{"message","errorCode","traceId"}`.
pub fn or_error(status: u16, error_code: i64, message: &str) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status).expect("a valid status");
    HttpResponse::build(status).json(json!({
        "message": message,
        "errorCode": error_code,
        "traceId": trace_id(),
    }))
}

/// An RFC 6749 token-endpoint error.
pub fn oauth_error(status: u16, error: &str, description: &str) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status).expect("a valid status");
    HttpResponse::build(status).json(json!({ "error": error, "error_description": description }))
}

fn trace_id() -> String {
    let a: u128 = rand::rng().random();
    let b: u64 = rand::rng().random();
    format!("00-{a:032x}-{b:016x}-00")
}

/// Which kind of Orchestrator a path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenant {
    /// `/{org}/{tenant}/orchestrator_/...`
    Cloud { org: String, tenant: String },
    /// `/{account}/{tenant}/...` (legacy platform.uipath.com)
    Legacy { account: String, tenant: String },
    /// Root paths of a standalone Orchestrator.
    OnPrem,
}

impl Tenant {
    /// The key used for per-tenant rate limits.
    pub fn key(&self) -> String {
        match self {
            Tenant::Cloud { org, tenant }
            | Tenant::Legacy {
                account: org,
                tenant,
            } => format!("{org}/{tenant}"),
            Tenant::OnPrem => "onprem".into(),
        }
    }

    /// The path prefix of this tenant's Orchestrator.
    pub fn prefix(&self) -> String {
        match self {
            Tenant::Cloud { org, tenant } => format!("/{org}/{tenant}/orchestrator_"),
            Tenant::Legacy { account, tenant } => format!("/{account}/{tenant}"),
            Tenant::OnPrem => String::new(),
        }
    }
}

/// Reads the tenant from the path and checks that it exists.
pub fn tenant(state: &SimState, req: &HttpRequest) -> Result<Tenant, HttpResponse> {
    let info = req.match_info();
    let t = if let (Some(org), Some(tenant)) = (info.get("org"), info.get("tenant")) {
        Tenant::Cloud {
            org: org.into(),
            tenant: tenant.into(),
        }
    } else if let (Some(account), Some(tenant)) = (info.get("account"), info.get("tenant")) {
        Tenant::Legacy {
            account: account.into(),
            tenant: tenant.into(),
        }
    } else {
        return Ok(Tenant::OnPrem);
    };
    let known = match &t {
        Tenant::Cloud { org, tenant }
        | Tenant::Legacy {
            account: org,
            tenant,
        } => state
            .scenario
            .organizations
            .iter()
            .any(|o| o.name == *org && o.tenants.iter().any(|t| t == tenant)),
        Tenant::OnPrem => true,
    };
    if known {
        Ok(t)
    } else {
        // Display names instead of logical names end here (pitfall 4).
        Err(or_error(
            404,
            1002,
            "The organization or tenant was not found. Use the logical names from the URL.",
        ))
    }
}

/// Checks the bearer token and that it carries `family` (e.g. `OR.Jobs`) for reading or writing.
pub fn authorize(
    state: &SimState,
    req: &HttpRequest,
    tenant: &Tenant,
    family: &str,
    write: bool,
) -> Result<IssuedToken, HttpResponse> {
    let unauthenticated = || {
        let mut res = or_error(401, 0, "You are not authenticated!");
        res.headers_mut().insert(
            actix_web::http::header::WWW_AUTHENTICATE,
            actix_web::http::header::HeaderValue::from_static("Bearer"),
        );
        res
    };
    let Some(bearer) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    else {
        return Err(unauthenticated());
    };
    let now = state.now();
    let token = if let Some(t) = state.tokens.get(bearer) {
        t.clone()
    } else if let Some(pat) = state
        .scenario
        .personal_access_tokens
        .iter()
        .find(|p| p.token == bearer)
    {
        IssuedToken {
            grant: "pat",
            subject: "pat-user".into(),
            scopes: pat.scopes.iter().cloned().collect(),
            expires_at: pat.expires_at,
            onprem: false,
        }
    } else {
        return Err(unauthenticated());
    };
    if token.expires_at <= now {
        return Err(unauthenticated());
    }
    if token.onprem != (*tenant == Tenant::OnPrem) && token.grant == "password" {
        return Err(unauthenticated());
    }
    if !has_scope(&token.scopes, family, write) {
        return Err(or_error(
            403,
            0,
            &format!("You are not authorized! The token lacks the {family} scope."),
        ));
    }
    Ok(token)
}

fn has_scope(scopes: &HashSet<String>, family: &str, write: bool) -> bool {
    let narrow = if write {
        format!("{family}.Write")
    } else {
        format!("{family}.Read")
    };
    scopes.contains("*")
        || scopes.contains("OR.Default")
        || scopes.contains(family)
        || scopes.contains(&narrow)
}

/// Resolves the folder from any of the four folder headers.
pub fn folder(state: &SimState, req: &HttpRequest) -> Result<Folder, HttpResponse> {
    let h = req.headers();
    let bad = || {
        or_error(
            400,
            1100,
            "Folder does not exist or the user does not have access to the folder.",
        )
    };
    let folders = &state.scenario.folders;
    let found = if let Some(v) = h.get("x-uipath-organizationunitid") {
        let id: i64 = v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(bad)?;
        folders.iter().find(|f| f.id == id)
    } else if let Some(v) = h.get("x-uipath-folderkey") {
        let key = v.to_str().map_err(|_| bad())?.trim().to_ascii_lowercase();
        folders.iter().find(|f| f.key.to_ascii_lowercase() == key)
    } else if let Some(v) = h.get("x-uipath-folderpath-encoded") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.as_bytes())
            .map_err(|_| bad())?;
        if bytes.len() % 2 != 0 {
            return Err(bad());
        }
        let units: Vec<u16> = bytes
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let path = String::from_utf16(&units).map_err(|_| bad())?;
        find_path(folders, &path)
    } else if let Some(v) = h.get("x-uipath-folderpath") {
        // Plain header values are ASCII; anything else needs the -Encoded header.
        let path = v.to_str().map_err(|_| bad())?;
        find_path(folders, path)
    } else {
        return Err(or_error(
            400,
            1101,
            "An organization unit is required for this action.",
        ));
    };
    found.cloned().ok_or_else(bad)
}

fn find_path<'a>(folders: &'a [Folder], path: &str) -> Option<&'a Folder> {
    if path.ends_with('/') {
        return None;
    }
    let path = path.strip_prefix('/').unwrap_or(path);
    folders.iter().find(|f| f.fully_qualified_name == path)
}

/// The `{id}` of `Jobs({id})` or `Webhooks({id})`, whatever prefix the path has.
pub fn path_id(req: &HttpRequest) -> Result<i64, HttpResponse> {
    req.match_info()
        .get("id")
        .and_then(|s| s.trim_end_matches('L').parse().ok())
        .ok_or_else(|| or_error(400, 1000, "The key in the URL is not a valid Int64."))
}

/// Parses a JSON body with case-insensitive top-level keys (as Orchestrator binds them).
pub fn json_body(body: &Bytes) -> Result<BTreeMap<String, Value>, HttpResponse> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        or_error(
            400,
            1000,
            &format!("The request body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(map) = value else {
        return Err(or_error(
            400,
            1000,
            "The request body must be a JSON object.",
        ));
    };
    Ok(map
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect())
}
