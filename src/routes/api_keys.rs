//! `/api-keys`: keys for `/run` and `/jobs` (admin only). A key is shown once.

use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::admin::{Admin, snapshot};
use super::auth::new_key;
use crate::domain::api_key::scope_problem;
use crate::error::{ApiError, Problem};
use crate::state::AppState;
use crate::storage::api_keys::{self as store, ApiKeyRow};

/// A new key's name, scopes and optional expiry.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "erp", "scopes": ["run:Invoices", "jobs:read"]}))]
pub struct ApiKeyInput {
    /// What the key is for.
    pub name: String,
    /// `run:<process>` for each process it may start (`run:*` for all), `jobs:read` to read
    /// jobs, `admin` for the admin API. Process scopes have their own `run:` namespace, so
    /// no process name can grant `admin` or `jobs:read`.
    pub scopes: Vec<String>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key as listed: never the key itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A created key: `key` is shown this once and cannot be read again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub view: ApiKeyView,
    /// The key. Store it now: only its hash is kept.
    pub key: String,
}

/// A list of keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub items: Vec<ApiKeyView>,
}

impl From<ApiKeyRow> for ApiKeyView {
    fn from(r: ApiKeyRow) -> Self {
        ApiKeyView {
            id: r.id,
            name: r.name,
            prefix: r.prefix,
            scopes: r.scopes,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
            created_at: r.created_at,
        }
    }
}

/// Create an API key.
#[utoipa::path(
    tag = "api-keys",
    security(("admin_token" = [])),
    request_body = ApiKeyInput,
    responses(
        (status = 201, description = "Created; the key is in the body, once", body = CreatedApiKey),
        (status = 400, description = "Malformed JSON, or a value that cannot be stored", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or scopes", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api-keys")]
pub async fn create_api_key(
    admin: Admin,
    state: web::Data<AppState>,
    body: web::Json<ApiKeyInput>,
) -> Result<HttpResponse, ApiError> {
    let input = body.into_inner();
    let mut errors = Vec::new();
    if input.name.trim().is_empty() || input.name.len() > 200 {
        errors.push(
            serde_json::json!({"field": "name", "problem": "required, at most 200 characters"}),
        );
    }
    if input.scopes.is_empty() {
        errors.push(serde_json::json!({"field": "scopes", "problem": "give at least one: `run:<process>`, `run:*`, `jobs:read` or `admin`"}));
    }
    for problem in input.scopes.iter().filter_map(|s| scope_problem(s)) {
        errors.push(serde_json::json!({"field": "scopes", "problem": problem}));
    }
    if !errors.is_empty() {
        return Err(ApiError::Unprocessable {
            code: "validation_failed",
            detail: "the key's name or scopes are invalid".into(),
            errors: errors.into(),
        });
    }
    let (key, hash) = new_key();
    let prefix: String = key.chars().take(12).collect();
    let row = store::insert(
        &state.pool,
        Uuid::new_v4(),
        input.name.trim(),
        &prefix,
        &hash,
        &input.scopes,
        input.expires_at,
    )
    .await?;
    tracing::info!(api_key = %row.id, prefix = %row.prefix, "API key created");
    let view = ApiKeyView::from(row);
    admin
        .audit(
            &state.pool,
            "create",
            "api_key",
            &view.id.to_string(),
            None,
            snapshot(&view),
        )
        .await?;
    Ok(HttpResponse::Created().json(CreatedApiKey { view, key }))
}

/// List API keys (without the keys).
#[utoipa::path(
    tag = "api-keys",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every key", body = ApiKeyList),
    )
)]
#[get("/api-keys")]
pub async fn list_api_keys(
    _: Admin,
    state: web::Data<AppState>,
) -> Result<web::Json<ApiKeyList>, ApiError> {
    Ok(web::Json(ApiKeyList {
        items: store::list(&state.pool)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    }))
}

/// Revoke an API key; it stops working at once.
#[utoipa::path(
    tag = "api-keys",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/api-keys/{id}")]
pub async fn revoke_api_key(
    admin: Admin,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    if store::revoke(&state.pool, *id).await? {
        admin
            .audit(
                &state.pool,
                "revoke",
                "api_key",
                &id.to_string(),
                None,
                None,
            )
            .await?;
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found(
            "api_key_not_found",
            format!("no API key {id}"),
        ))
    }
}
