//! `/webhooks` (admin): inbound webhook definitions, their delivery records, and replay.

use actix_web::{HttpResponse, delete, get, http::header, post, put, web};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use uuid::Uuid;

use super::admin::{Admin, snapshot};
use crate::domain::hook::HookInput;
use crate::domain::problem::FieldProblem;
use crate::error::{ApiError, Problem};
use crate::state::AppState;
use crate::storage::hooks::{self as store, Delivery, WriteError};
use crate::views::hooks::{DeliveryList, DeliveryView, HookList, HookView, delivery_view, view};

fn write_error(e: WriteError, slug: &str) -> ApiError {
    match e {
        WriteError::UnknownProcess(p) => ApiError::invalid(
            "validation_failed",
            &[FieldProblem {
                field: "process".into(),
                problem: format!("no process named `{p}`: create it first (POST /processes)"),
            }],
        ),
        WriteError::Database(sqlx::Error::Database(d)) if d.is_unique_violation() => {
            ApiError::Conflict {
                code: "slug_taken",
                detail: format!("a webhook with slug `{slug}` already exists"),
            }
        }
        WriteError::Database(e) => e.into(),
    }
}

/// The mapping checked against the process's arguments: problems are a 422, warnings
/// (Orchestrator could not be asked) go into the answer.
async fn mapping_warnings(
    state: &AppState,
    new: &crate::domain::hook::NewHook,
) -> Result<Vec<String>, ApiError> {
    crate::app::process_check::hook_mapping(state, new)
        .await?
        .map_err(|p| ApiError::invalid("validation_failed", &p))
}

fn not_found(slug: &str) -> ApiError {
    ApiError::not_found("webhook_not_found", format!("no webhook `{slug}`"))
}

/// Create an inbound webhook.
#[utoipa::path(
    tag = "hooks",
    security(("admin_token" = [])),
    request_body = HookInput,
    responses(
        (status = 201, description = "Created", body = HookView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The slug is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields: an expression that does not compile, or a mapping that names an argument the process does not take or leaves out one it requires (each named)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/webhooks")]
pub async fn create_hook(
    admin: Admin,
    state: web::Data<AppState>,
    body: web::Json<HookInput>,
) -> Result<HttpResponse, ApiError> {
    let new = body
        .into_inner()
        .validate(false)
        .map_err(|p| ApiError::invalid("validation_failed", &p))?;
    let warnings = mapping_warnings(&state, &new).await?;
    let row = store::upsert(&state.pool, &state.keys, None, &new)
        .await
        .map_err(|e| write_error(e, &new.slug))?
        .ok_or_else(|| not_found(&new.slug))?;
    let mut shown = view(&state, row);
    shown.warnings = warnings;
    admin
        .audit(
            &state.pool,
            "create",
            "webhook",
            &shown.slug,
            None,
            snapshot(&shown),
        )
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/webhooks/{}", shown.slug)))
        .json(shown))
}

/// List inbound webhooks.
#[utoipa::path(
    tag = "hooks",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every webhook", body = HookList),
    )
)]
#[get("/webhooks")]
pub async fn list_hooks(
    _: Admin,
    state: web::Data<AppState>,
) -> Result<web::Json<HookList>, ApiError> {
    let rows = store::list(&state.pool).await?;
    Ok(web::Json(HookList {
        items: rows.into_iter().map(|r| view(&state, r)).collect(),
    }))
}

/// Read an inbound webhook.
#[utoipa::path(
    tag = "hooks",
    security(("admin_token" = [])),
    params(("slug" = String, Path, description = "Slug")),
    responses(
        (status = 200, description = "The webhook", body = HookView),
        (status = 404, description = "No such webhook", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/webhooks/{slug}")]
pub async fn get_hook(
    _: Admin,
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<web::Json<HookView>, ApiError> {
    let row = store::get(&state.pool, &slug)
        .await?
        .ok_or_else(|| not_found(&slug))?;
    Ok(web::Json(view(&state, row)))
}

/// Replace an inbound webhook (secrets left out are kept; send them all to rotate).
#[utoipa::path(
    tag = "hooks",
    security(("admin_token" = [])),
    params(("slug" = String, Path, description = "Slug")),
    request_body = HookInput,
    responses(
        (status = 200, description = "Updated", body = HookView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The new slug is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/webhooks/{slug}")]
pub async fn replace_hook(
    admin: Admin,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    body: web::Json<HookInput>,
) -> Result<web::Json<HookView>, ApiError> {
    let old = store::get(&state.pool, &slug)
        .await?
        .ok_or_else(|| not_found(&slug))?;
    let new = body
        .into_inner()
        .validate(old.secrets_sealed.is_some())
        .map_err(|p| ApiError::invalid("validation_failed", &p))?;
    let before = snapshot(&view(&state, old));
    let warnings = mapping_warnings(&state, &new).await?;
    let row = store::upsert(&state.pool, &state.keys, Some(&slug), &new)
        .await
        .map_err(|e| write_error(e, &new.slug))?
        .ok_or_else(|| not_found(&slug))?;
    let mut shown = view(&state, row);
    shown.warnings = warnings;
    admin
        .audit(
            &state.pool,
            "replace",
            "webhook",
            &slug,
            before,
            snapshot(&shown),
        )
        .await?;
    Ok(web::Json(shown))
}

/// Delete an inbound webhook and its delivery records (jobs stay).
#[utoipa::path(
    tag = "hooks",
    security(("admin_token" = [])),
    params(("slug" = String, Path, description = "Slug")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such webhook", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/webhooks/{slug}")]
pub async fn delete_hook(
    admin: Admin,
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let before = store::get(&state.pool, &slug)
        .await?
        .and_then(|row| snapshot(&view(&state, row)));
    if !store::delete(&state.pool, &slug).await? {
        return Err(not_found(&slug));
    }
    admin
        .audit(&state.pool, "delete", "webhook", &slug, before, None)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `?limit=`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DeliveryQuery {
    /// Most deliveries, newest first, 1-500 (default 50).
    pub limit: Option<i64>,
}

/// List a webhook's deliveries, newest first.
#[utoipa::path(
    tag = "hooks",
    security(("admin_token" = [])),
    params(("slug" = String, Path, description = "Slug"), DeliveryQuery),
    responses(
        (status = 200, description = "Deliveries", body = DeliveryList),
        (status = 400, description = "A bad limit", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/webhooks/{slug}/deliveries")]
pub async fn list_deliveries(
    _: Admin,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    q: web::Query<DeliveryQuery>,
) -> Result<web::Json<DeliveryList>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be between 1 and 500",
        ));
    }
    let hook = store::get(&state.pool, &slug)
        .await?
        .ok_or_else(|| not_found(&slug))?;
    let rows = store::deliveries(&state.pool, hook.id, limit).await?;
    Ok(web::Json(DeliveryList {
        items: rows.into_iter().map(|d| delivery_view(d, false)).collect(),
    }))
}

/// Read one delivery, with the request as received.
#[utoipa::path(
    tag = "hooks",
    security(("admin_token" = [])),
    params(("slug" = String, Path, description = "Slug"), ("id" = Uuid, Path, description = "Delivery id")),
    responses(
        (status = 200, description = "The delivery", body = DeliveryView),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook or delivery", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/webhooks/{slug}/deliveries/{id}")]
pub async fn get_delivery(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, Uuid)>,
) -> Result<web::Json<DeliveryView>, ApiError> {
    let (slug, id) = path.into_inner();
    let hook = store::get(&state.pool, &slug)
        .await?
        .ok_or_else(|| not_found(&slug))?;
    let d = store::delivery(&state.pool, hook.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery_not_found", format!("no delivery {id}")))?;
    Ok(web::Json(delivery_view(d, true)))
}

/// Replay a delivery: its stored request goes through the webhook's current filter and
/// mapping again (no signature check, no dedup) and starts a new job.
#[utoipa::path(
    tag = "hooks",
    security(("admin_token" = [])),
    params(("slug" = String, Path, description = "Slug"), ("id" = Uuid, Path, description = "Delivery id")),
    responses(
        (status = 202, description = "A job was recorded", body = crate::views::hooks::HookReceipt),
        (status = 200, description = "Filtered out by the current filter", body = crate::views::hooks::HookReceipt),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook or delivery", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The delivery was refused (never verified), so it cannot be replayed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The filter or mapping failed", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/webhooks/{slug}/deliveries/{id}/replay")]
pub async fn replay_delivery(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (slug, id) = path.into_inner();
    let hook = store::get(&state.pool, &slug)
        .await?
        .ok_or_else(|| not_found(&slug))?;
    let d = store::delivery(&state.pool, hook.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery_not_found", format!("no delivery {id}")))?;
    let Some(body) = d.request_body.clone() else {
        return Err(ApiError::Conflict {
            code: "not_replayable",
            detail: "the delivery was refused before it was verified; only verified deliveries can be replayed".into(),
        });
    };
    let headers = d.request_headers.clone().unwrap_or(json!({}));
    let ct = headers["content-type"].as_str().unwrap_or("").to_string();
    let query = d.request_query.clone().unwrap_or_default();
    let context = json!({
        "headers": headers,
        "body": super::hooks::parse_body(&ct, &body),
        "query": super::hooks::query_map(&query),
    });
    let replay = Delivery {
        id: Uuid::new_v4(),
        webhook_id: hook.id,
        verification: "replayed".into(),
        verification_detail: Some(format!("replayed by an admin from delivery {}", d.id)),
        dedup: "none".into(),
        request_headers: d.request_headers,
        request_query: d.request_query,
        request_body: Some(body),
        replay_of: Some(d.id),
        ..Default::default()
    };
    let replay_id = replay.id;
    admin
        .audit(
            &state.pool,
            "replay",
            "delivery",
            &d.id.to_string(),
            None,
            Some(json!({"webhook": slug, "replay_delivery_id": replay_id})),
        )
        .await?;
    let state = state.into_inner();
    let delivered = crate::app::hook_delivery::handle(&state, &hook, replay, &context).await?;
    Ok(super::hooks::render(&hook, delivered))
}
