//! `GET /audit`: every change made through the admin API or the config file.

use actix_web::{get, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::admin::Admin;
use crate::domain::listing::AuditFilter;
use crate::error::{ApiError, Problem};
use crate::state::AppState;
use crate::storage::audit::{self as store, AuditRow};

/// One change.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Increasing; pass the last one as `before` for the next page.
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `admin-token`, `api-key:<name>`, or `config-file`.
    pub actor: String,
    /// `create`, `replace`, `delete`, `revoke`, `rotate_secret`, `redrive`, `replay`, `apply`.
    pub action: String,
    /// `connection`, `process`, `api_key`, `webhook`, `job`, `callback`, `delivery`.
    pub object_type: String,
    /// The object's name, slug or id.
    pub object_key: String,
    /// The object before the change, as the API shows it (secrets are never included).
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    /// The object after the change.
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
    /// The `X-Request-Id` of the request that made it.
    pub request_id: Option<String>,
    /// The caller's address.
    pub client_ip: Option<String>,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        AuditEntry {
            id: r.id,
            at: r.at,
            actor: r.actor,
            action: r.action,
            object_type: r.object_type,
            object_key: r.object_key,
            before: r.before,
            after: r.after,
            request_id: r.request_id,
            client_ip: r.client_ip,
        }
    }
}

/// A page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub items: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

/// List admin changes, newest first.
#[utoipa::path(
    tag = "admin",
    security(("admin_token" = [])),
    params(AuditFilter),
    responses(
        (status = 200, description = "Changes, newest first", body = AuditList),
        (status = 400, description = "A bad filter or limit", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/audit")]
pub async fn list_audit(
    _: Admin,
    state: web::Data<AppState>,
    q: web::Query<AuditFilter>,
) -> Result<web::Json<AuditList>, ApiError> {
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be between 1 and 500",
        ));
    }
    let rows = store::list(&state.pool, &q, limit).await?;
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(web::Json(AuditList {
        items: rows.into_iter().map(AuditEntry::from).collect(),
        next_before,
    }))
}
