//! `/connections`: Orchestrator tenants and their credentials (admin only).

use actix_web::{HttpResponse, delete, get, http::header, post, put, web};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::admin::{Admin, snapshot};
use crate::app::discovery;
use crate::domain::connection::{ConnectionInput, Kind};
use crate::error::{ApiError, Problem};
use crate::orchestrator::FolderRef;
use crate::state::AppState;
use crate::storage::connections::{self as store, ConnectionRow};
use crate::views::connections::{
    ConnectionList, ConnectionTest, ConnectionView, FolderList, QueueList, ReleaseList, view,
};

fn problems_error(problems: Vec<crate::domain::problem::FieldProblem>) -> ApiError {
    ApiError::invalid("validation_failed", &problems)
}

fn name_taken(e: sqlx::Error, name: &str) -> ApiError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => ApiError::Conflict {
            code: "name_taken",
            detail: format!("a connection named `{name}` already exists"),
        },
        _ => e.into(),
    }
}

/// A connection by id or by name (the path segment of `/connections/{id}`).
async fn load(state: &AppState, id_or_name: &str) -> Result<ConnectionRow, ApiError> {
    store::find(&state.pool, id_or_name).await?.ok_or_else(|| {
        ApiError::not_found(
            "connection_not_found",
            format!("no connection with id or name `{id_or_name}`"),
        )
    })
}

/// Create a connection. Secret fields are stored sealed and never shown again.
#[utoipa::path(
    tag = "connections",
    security(("admin_token" = [])),
    request_body = ConnectionInput,
    responses(
        (status = 201, description = "Created", body = ConnectionView),
        (status = 400, description = "Malformed JSON, or a value that cannot be stored", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each with the fix", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Discovery failed (user_key)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/connections")]
pub async fn create_connection(
    admin: Admin,
    state: web::Data<AppState>,
    body: web::Json<ConnectionInput>,
) -> Result<HttpResponse, ApiError> {
    let mut new = body.into_inner().validate().map_err(problems_error)?;
    discovery::legacy_names(&state, &mut new).await?;
    let row = store::insert(&state.pool, &state.keys, Uuid::new_v4(), &new)
        .await
        .map_err(|e| name_taken(e, &new.name))?;
    tracing::info!(connection = %row.name, kind = row.kind.as_str(), "connection created");
    let (key, shown) = (row.id.to_string(), view(&state, row));
    admin
        .audit(
            &state.pool,
            "create",
            "connection",
            &key,
            None,
            snapshot(&shown),
        )
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/connections/{key}")))
        .json(shown))
}

/// List connections.
#[utoipa::path(
    tag = "connections",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every connection", body = ConnectionList),
    )
)]
#[get("/connections")]
pub async fn list_connections(
    _: Admin,
    state: web::Data<AppState>,
) -> Result<web::Json<ConnectionList>, ApiError> {
    let rows = store::list(&state.pool).await?;
    Ok(web::Json(ConnectionList {
        items: rows.into_iter().map(|r| view(&state, r)).collect(),
    }))
}

/// Read a connection.
#[utoipa::path(
    tag = "connections",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Connection id, or its name")),
    responses(
        (status = 200, description = "The connection", body = ConnectionView),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/connections/{id}")]
pub async fn get_connection(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<ConnectionView>, ApiError> {
    Ok(web::Json(view(&state, load(&state, &id).await?)))
}

/// Replace a connection. Secret fields left out keep their stored values.
#[utoipa::path(
    tag = "connections",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Connection id, or its name")),
    request_body = ConnectionInput,
    responses(
        (status = 200, description = "Updated", body = ConnectionView),
        (status = 400, description = "Malformed JSON, or a value that cannot be stored", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Discovery failed (user_key)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/connections/{id}")]
pub async fn replace_connection(
    admin: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<ConnectionInput>,
) -> Result<web::Json<ConnectionView>, ApiError> {
    let old = load(&state, &id).await?;
    let before = snapshot(&view(&state, old.clone()));
    let old_secrets = store::open_secrets(&state.keys, &old)
        .map_err(|e| ApiError::Internal(e.context("opening stored secrets")))?;
    let refresh_stored = old.kind == Kind::RefreshToken;
    let mut new = body
        .into_inner()
        .validate_with(Some(&old_secrets), refresh_stored)
        .map_err(problems_error)?;
    discovery::legacy_names(&state, &mut new).await?;
    let id = old.id;
    let row = store::replace(&state.pool, &state.keys, id, &new, old_secrets)
        .await
        .map_err(|e| name_taken(e, &new.name))?
        .ok_or_else(|| {
            ApiError::not_found("connection_not_found", format!("no connection {id}"))
        })?;
    state.tokens.forget(id);
    let shown = view(&state, row);
    admin
        .audit(
            &state.pool,
            "replace",
            "connection",
            &id.to_string(),
            before,
            snapshot(&shown),
        )
        .await?;
    Ok(web::Json(shown))
}

/// Delete a connection (refused while processes use it).
#[utoipa::path(
    tag = "connections",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Connection id, or its name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Processes still use it", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/connections/{id}")]
pub async fn delete_connection(
    admin: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = load(&state, &id).await?;
    let id = row.id;
    let before = snapshot(&view(&state, row));
    match store::delete(&state.pool, id).await {
        Ok(true) => {
            state.tokens.forget(id);
            admin
                .audit(
                    &state.pool,
                    "delete",
                    "connection",
                    &id.to_string(),
                    before,
                    None,
                )
                .await?;
            Ok(HttpResponse::NoContent().finish())
        }
        Ok(false) => Err(ApiError::not_found(
            "connection_not_found",
            format!("no connection {id}"),
        )),
        Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => Err(ApiError::Conflict {
            code: "connection_in_use",
            detail: "processes still use this connection: move or delete them first".into(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Authenticate and report who and what the token can see.
#[utoipa::path(
    tag = "connections",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Connection id, or its name")),
    responses(
        (status = 200, description = "The test ran; `ok` says how it went", body = ConnectionTest),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/connections/{id}/test")]
pub async fn test_connection(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<ConnectionTest>, ApiError> {
    let row = load(&state, &id).await?;
    Ok(web::Json(discovery::test(&state, &row).await?))
}

/// List the folders the connection can see, to pick one by path instead of hunting for ids.
#[utoipa::path(
    tag = "connections",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Connection id, or its name")),
    responses(
        (status = 200, description = "Folders", body = FolderList),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The connection is misconfigured", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Orchestrator refused", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Orchestrator is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/connections/{id}/folders")]
pub async fn connection_folders(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<FolderList>, ApiError> {
    let row = load(&state, &id).await?;
    let items = discovery::folders(&state, &row).await?;
    Ok(web::Json(FolderList { items }))
}

/// Which folder to list releases of.
#[derive(Debug, Deserialize, IntoParams)]
pub struct FolderQuery {
    /// A folder path (`Finance/AP`), id (`34`) or key (GUID).
    pub folder: Option<String>,
}

/// List the releases (processes) in a folder, with their input arguments.
#[utoipa::path(
    tag = "connections",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Connection id, or its name"), FolderQuery),
    responses(
        (status = 200, description = "Releases", body = ReleaseList),
        (status = 400, description = "No folder given", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The connection is misconfigured", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Orchestrator refused (e.g. 1100: no such folder)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Orchestrator is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/connections/{id}/releases")]
pub async fn connection_releases(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<FolderQuery>,
) -> Result<web::Json<ReleaseList>, ApiError> {
    let folder = required_folder(&query)?;
    let row = load(&state, &id).await?;
    let items = discovery::releases(&state, &row, &folder).await?;
    Ok(web::Json(ReleaseList { items }))
}

/// List the queues in a folder, with the JSON Schemas of their items' content and output.
#[utoipa::path(
    tag = "connections",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "Connection id, or its name"), FolderQuery),
    responses(
        (status = 200, description = "Queues", body = QueueList),
        (status = 400, description = "No folder given", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The connection is misconfigured", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Orchestrator refused (e.g. 1100: no such folder; a token without OR.Queues)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Orchestrator is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/connections/{id}/queues")]
pub async fn connection_queues(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<FolderQuery>,
) -> Result<web::Json<QueueList>, ApiError> {
    let folder = required_folder(&query)?;
    let row = load(&state, &id).await?;
    let items = discovery::queues(&state, &row, &folder).await?;
    Ok(web::Json(QueueList { items }))
}

/// The folder a listing is for: a 400 when none is given.
fn required_folder(query: &FolderQuery) -> Result<FolderRef, ApiError> {
    let folder = query
        .folder
        .as_deref()
        .filter(|f| !f.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "folder_required",
                "give ?folder= a folder path, id or key; GET /connections/{id}/folders lists them",
            )
        })?;
    Ok(FolderRef::parse(folder))
}
