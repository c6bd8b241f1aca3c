//! `/queue-mappings`: what `POST /queues/{name}` adds items to (admin only). Stored beside
//! the processes and handled by the same code (`routes::processes`).

use actix_web::{HttpResponse, delete, get, http::header, post, put, web};

use super::admin::Admin;
use super::processes::{checked_callback, get_kind, remove, rotate, save};
use crate::domain::queue::QueueMappingInput;
use crate::error::{ApiError, Problem};
use crate::state::AppState;
use crate::storage::processes as store;
use crate::views::processes::CallbackSecret;
use crate::views::queues::{QueueMappingList, QueueMappingView};

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(
        "queue_not_found",
        format!("no queue mapping named `{name}`"),
    )
}

fn validate(
    state: &AppState,
    input: QueueMappingInput,
) -> Result<crate::domain::process::NewProcess, ApiError> {
    let new = input
        .validate()
        .map_err(|p| ApiError::invalid("validation_failed", &p))?;
    checked_callback(state, new)
}

/// Create a queue mapping.
#[utoipa::path(
    tag = "queues",
    security(("admin_token" = [])),
    request_body = QueueMappingInput,
    responses(
        (status = 201, description = "Created. Its folder and queue were found through the connection; when Orchestrator could not be asked, `unverified` is true and `warnings` says why", body = QueueMappingView),
        (status = 400, description = "Malformed JSON, or a value that cannot be stored", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken (by a process or a queue mapping)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or a folder or queue that does not exist in Orchestrator (the field is named, with what does exist)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/queue-mappings")]
pub async fn create_queue_mapping(
    admin: Admin,
    state: web::Data<AppState>,
    body: web::Json<QueueMappingInput>,
) -> Result<HttpResponse, ApiError> {
    let new = validate(&state, body.into_inner())?;
    let view: QueueMappingView = save(&admin, &state, None, new, not_found).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/queue-mappings/{}", view.name)))
        .json(view))
}

/// List queue mappings.
#[utoipa::path(
    tag = "queues",
    security(("admin_token" = [])),
    responses((status = 200, description = "Every queue mapping", body = QueueMappingList))
)]
#[get("/queue-mappings")]
pub async fn list_queue_mappings(
    _: Admin,
    state: web::Data<AppState>,
) -> Result<web::Json<QueueMappingList>, ApiError> {
    let rows = store::list(&state.pool, true).await?;
    Ok(web::Json(QueueMappingList {
        items: rows.into_iter().map(QueueMappingView::from).collect(),
    }))
}

/// Read a queue mapping.
#[utoipa::path(
    tag = "queues",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "Queue mapping name")),
    responses(
        (status = 200, description = "The queue mapping", body = QueueMappingView),
        (status = 404, description = "No such queue mapping", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/queue-mappings/{name}")]
pub async fn get_queue_mapping(
    _: Admin,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<web::Json<QueueMappingView>, ApiError> {
    let row = get_kind(&state, &name, true)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(web::Json(row.into()))
}

/// Replace a queue mapping (the queue is looked up again).
#[utoipa::path(
    tag = "queues",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "Queue mapping name")),
    request_body = QueueMappingInput,
    responses(
        (status = 200, description = "Updated", body = QueueMappingView),
        (status = 400, description = "Malformed JSON, or a value that cannot be stored", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such queue mapping", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The new name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or a folder or queue that does not exist in Orchestrator", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/queue-mappings/{name}")]
pub async fn replace_queue_mapping(
    admin: Admin,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Json<QueueMappingInput>,
) -> Result<web::Json<QueueMappingView>, ApiError> {
    let new = validate(&state, body.into_inner())?;
    Ok(web::Json(
        save(&admin, &state, Some(&name), new, not_found).await?,
    ))
}

/// Delete a queue mapping. Its items keep their history.
#[utoipa::path(
    tag = "queues",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "Queue mapping name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such queue mapping", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Inbound webhooks add items to it", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/queue-mappings/{name}")]
pub async fn delete_queue_mapping(
    admin: Admin,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    remove::<QueueMappingView>(&admin, &state, &name, true, not_found).await
}

/// Replace the callback signing secret with a new one, shown once.
#[utoipa::path(
    tag = "queues",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "Queue mapping name")),
    responses(
        (status = 200, description = "The new secret", body = CallbackSecret),
        (status = 404, description = "No such queue mapping", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/queue-mappings/{name}/callback-secret")]
pub async fn rotate_queue_callback_secret(
    admin: Admin,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<web::Json<CallbackSecret>, ApiError> {
    Ok(web::Json(
        rotate(&admin, &state, &name, true, not_found).await?,
    ))
}
