//! Liveness and readiness.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, Problem};
use crate::startup::AppState;
use crate::storage;

/// The answer of `/healthz` and of a ready `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthStatus {
    /// `ok` or `ready`.
    #[schema(example = "ok")]
    pub status: &'static str,
    /// Each check and its result, for `/readyz`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<storage::ReadinessChecks>,
}

/// Is the process alive? Answers without touching the database.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "The process is alive", body = HealthStatus))
)]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthStatus {
        status: "ok",
        checks: None,
    })
}

/// Can this instance serve requests? The database must be reachable and every
/// migration applied.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = HealthStatus),
        (status = 503, description = "Not ready; `checks` says why",
            body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let checks = storage::readiness(&state.pool).await;
    if checks.is_ready() {
        return Ok(HttpResponse::Ok().json(HealthStatus {
            status: "ready",
            checks: Some(checks),
        }));
    }
    Err(ApiError::Unavailable {
        code: "not_ready",
        detail: checks.summary(),
        retry_after: 5,
        checks: Some(serde_json::to_value(&checks).map_err(anyhow::Error::from)?),
    })
}
