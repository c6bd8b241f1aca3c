//! Liveness and readiness.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, Problem};
use crate::state::AppState;
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
/// migration applied. Needs no credentials, so it says only which check failed, in fixed
/// words; the admin's `GET /status` has the details.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = HealthStatus),
        (status = 503, description = "Not ready; `checks` says which check failed",
            body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let found = storage::readiness(&state.pool).await;
    let checks = found.checks();
    if found.is_ready() {
        return Ok(HttpResponse::Ok().json(HealthStatus {
            status: "ready",
            checks: Some(checks),
        }));
    }
    Err(ApiError::Unavailable {
        code: "not_ready",
        detail: format!(
            "not ready (database: {}, migrations: {})",
            checks.database, checks.migrations
        ),
        retry_after: 5,
        checks: Some(serde_json::to_value(&checks).map_err(anyhow::Error::from)?),
    })
}

/// What the admin's `GET /status` shows.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    /// Whether `/readyz` answers 200.
    pub ready: bool,
    /// `ok`, or why the database could not be queried.
    #[schema(example = "ok")]
    pub database: String,
    /// Versions of the embedded migrations not yet applied.
    pub missing_migrations: Vec<String>,
    /// Connections whose credentials failed for good, with the reason: they do not make
    /// the instance unready (other connections still work), but need an operator.
    pub unhealthy_connections: Vec<UnhealthyConnection>,
}

/// A connection that needs an operator.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnhealthyConnection {
    pub name: String,
    /// The last failure, as the identity server or Orchestrator gave it.
    pub reason: String,
}

/// The readiness checks in full, and the connections that need an operator (admin).
#[utoipa::path(
    tag = "operations",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The checks, ready or not", body = StatusView),
        (status = 403, description = "The admin API is closed, or the key lacks `admin`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/status")]
pub async fn status(
    _admin: super::admin::Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let found = storage::readiness(&state.pool).await;
    let unhealthy_connections = if found.database_error.is_none() {
        storage::connections::unhealthy(&state.pool)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(name, reason)| UnhealthyConnection { name, reason })
            .collect()
    } else {
        Vec::new()
    };
    Ok(HttpResponse::Ok().json(StatusView {
        ready: found.is_ready(),
        database: found.database_error.clone().unwrap_or_else(|| "ok".into()),
        missing_migrations: found.missing_migrations,
        unhealthy_connections,
    }))
}

/// Prometheus metrics: requests by route and status, `/run` latency, Orchestrator calls
/// by outcome, token refreshes, webhook verifications, queue depth and dead letters.
/// Never rate limited; needs no credentials (it holds no secrets).
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "The metrics, in the Prometheus text format",
            body = String, content_type = "text/plain"),
        (status = 503, description = "No metrics recorder could be installed in this process",
            body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(handle) = &state.metrics else {
        return Err(ApiError::Unavailable {
            code: "metrics_unavailable",
            detail: "another metrics recorder was installed in this process".into(),
            retry_after: 60,
            checks: None,
        });
    };
    // Database gauges are best effort: the counters are still worth serving when the
    // database is down (that is when they are most wanted).
    match storage::gauges::read(&state.pool).await {
        Ok(g) => crate::metrics::set_gauges(g),
        Err(e) => tracing::warn!(error = %e, "metrics: database gauges not refreshed"),
    }
    crate::metrics::batch_waiting("ledger", state.ledger.waiting());
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render()))
}
