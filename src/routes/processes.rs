//! `/processes`: what `/run/{process}` starts (admin only).

use actix_web::{HttpResponse, delete, get, http::header, post, put, web};

use super::admin::{Admin, snapshot};
use crate::app::process_check::{self, Checked};
use crate::domain::problem::FieldProblem;
use crate::domain::process::{NewProcess, ProcessInput};
use crate::error::{ApiError, Problem};
use crate::state::AppState;
use crate::storage::processes::{self as store, ProcessRow, WriteError};
use crate::views::processes::{CallbackSecret, ProcessList, ProcessView, TargetView};

fn problems(p: Vec<FieldProblem>) -> ApiError {
    ApiError::invalid("validation_failed", &p)
}

/// What a row of the processes table is called in answers: a process or a queue mapping.
pub(super) fn noun(queue: bool) -> &'static str {
    if queue { "queue mapping" } else { "process" }
}

pub(super) fn write_error(e: WriteError, name: &str) -> ApiError {
    match e {
        WriteError::UnknownConnection(c) => problems(vec![FieldProblem {
            field: "connection".into(),
            problem: format!("no connection named `{c}`: create it first (POST /connections)"),
        }]),
        WriteError::Database(sqlx::Error::Database(d)) if d.is_unique_violation() => {
            ApiError::Conflict {
                code: "name_taken",
                detail: format!(
                    "a process or queue mapping named `{name}` already exists (they share names)"
                ),
            }
        }
        WriteError::Database(e) => e.into(),
    }
}

/// Validates the input, including the callback URL against private targets.
/// Checks a process against Orchestrator before it is stored: what does not exist is a
/// 422 naming the field; when Orchestrator cannot answer, it is stored unverified.
pub(super) async fn checked(state: &AppState, new: &NewProcess) -> Result<Checked, ApiError> {
    let checked = process_check::check(state, new).await?;
    match checked {
        Checked::Invalid(p) => Err(problems(p)),
        Checked::Unverified(ref why) => {
            tracing::warn!(process = %new.name, reason = %why, "process saved unverified");
            Ok(checked)
        }
        Checked::Verified(_) | Checked::VerifiedQueue(_) => Ok(checked),
    }
}

fn validate(state: &AppState, input: ProcessInput) -> Result<NewProcess, ApiError> {
    checked_callback(state, input.validate().map_err(problems)?)
}

/// Refuses a callback URL aimed at a private address (unless they are allowed).
pub(super) fn checked_callback(state: &AppState, new: NewProcess) -> Result<NewProcess, ApiError> {
    if let Some(url) = &new.callback_url
        && let Err(problem) = crate::domain::callback_target::check_target(
            url,
            state.settings.allow_private_callbacks,
        )
    {
        return Err(problems(vec![FieldProblem {
            field: "callback_url".into(),
            problem,
        }]));
    }
    Ok(new)
}

/// Stores the given callback secret, or generates one for a process without; a
/// generated secret is shown in the answer (once).
async fn with_secret<V: TargetView>(
    state: &AppState,
    row: ProcessRow,
    new: &NewProcess,
) -> Result<V, ApiError> {
    let shown = crate::app::config_apply::store_callback_secret(state, &row, new).await?;
    let mut view = V::from(row);
    view.show_secret(shown);
    Ok(view)
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found("process_not_found", format!("no process named `{name}`"))
}

/// One stored row of the kind asked for.
pub(super) async fn get_kind(
    state: &AppState,
    name: &str,
    queue: bool,
) -> Result<Option<ProcessRow>, ApiError> {
    Ok(store::get(&state.pool, name)
        .await?
        .filter(|r| r.queue.is_some() == queue))
}

/// Creates (`existing` None) or replaces a process or queue mapping, checked against
/// Orchestrator first, and audits it.
pub(super) async fn save<V: TargetView>(
    admin: &Admin,
    state: &AppState,
    existing: Option<&str>,
    new: NewProcess,
    missing: impl Fn(&str) -> ApiError,
) -> Result<V, ApiError> {
    let queue = new.queue.is_some();
    let kind = if queue { "queue" } else { "process" };
    let before = match existing {
        Some(name) => Some(
            get_kind(state, name, queue)
                .await?
                .ok_or_else(|| missing(name))?,
        ),
        None => None,
    };
    let checked = checked(state, &new).await?;
    let row = store::upsert(&state.pool, existing, &new)
        .await
        .map_err(|e| write_error(e, &new.name))?
        .ok_or_else(|| missing(existing.unwrap_or(&new.name)))?;
    let row = process_check::record(state, row, &checked).await?;
    let view: V = with_secret(state, row, &new).await?;
    let action = if existing.is_some() {
        "replace"
    } else {
        "create"
    };
    let before = before.and_then(|b| snapshot(&V::from(b)));
    let name = existing.unwrap_or(&new.name).to_string();
    admin
        .audit(&state.pool, action, kind, &name, before, snapshot(&view))
        .await?;
    Ok(view)
}

/// Deletes a process or queue mapping (refused while webhooks target it), and audits it.
pub(super) async fn remove<V: TargetView>(
    admin: &Admin,
    state: &AppState,
    name: &str,
    queue: bool,
    missing: impl Fn(&str) -> ApiError,
) -> Result<HttpResponse, ApiError> {
    let kind = if queue { "queue" } else { "process" };
    let before = get_kind(state, name, queue)
        .await?
        .and_then(|row| snapshot(&V::from(row)));
    let deleted = match store::delete(&state.pool, name, queue).await {
        Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => {
            return Err(ApiError::Conflict {
                code: "process_in_use",
                detail: format!(
                    "inbound webhooks target {} `{name}`: point them elsewhere or delete them first",
                    noun(queue)
                ),
            });
        }
        other => other?,
    };
    if !deleted {
        return Err(missing(name));
    }
    admin
        .audit(&state.pool, "delete", kind, name, before, None)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Create a process.
#[utoipa::path(
    tag = "processes",
    security(("admin_token" = [])),
    request_body = ProcessInput,
    responses(
        (status = 201, description = "Created. Its folder, release and version were found through the connection; when Orchestrator could not be asked, `unverified` is true and `warnings` says why", body = ProcessView),
        (status = 400, description = "Malformed JSON, or a value that cannot be stored", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or a folder, release or version that does not exist in Orchestrator (the field is named, with what does exist)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/processes")]
pub async fn create_process(
    admin: Admin,
    state: web::Data<AppState>,
    body: web::Json<ProcessInput>,
) -> Result<HttpResponse, ApiError> {
    let new = validate(&state, body.into_inner())?;
    let view: ProcessView = save(&admin, &state, None, new, not_found).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/processes/{}", view.name)))
        .json(view))
}

/// List processes.
#[utoipa::path(
    tag = "processes",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every process", body = ProcessList),
    )
)]
#[get("/processes")]
pub async fn list_processes(
    _: Admin,
    state: web::Data<AppState>,
) -> Result<web::Json<ProcessList>, ApiError> {
    let rows = store::list(&state.pool, false).await?;
    Ok(web::Json(ProcessList {
        items: rows.into_iter().map(ProcessView::from).collect(),
    }))
}

/// Read a process.
#[utoipa::path(
    tag = "processes",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "Process name")),
    responses(
        (status = 200, description = "The process", body = ProcessView),
        (status = 404, description = "No such process", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/processes/{name}")]
pub async fn get_process(
    _: Admin,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<web::Json<ProcessView>, ApiError> {
    let row = get_kind(&state, &name, false)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(web::Json(row.into()))
}

/// Replace a process (the release is looked up again on the next run).
#[utoipa::path(
    tag = "processes",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "Process name")),
    request_body = ProcessInput,
    responses(
        (status = 200, description = "Updated", body = ProcessView),
        (status = 400, description = "Malformed JSON, or a value that cannot be stored", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such process", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The new name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or a folder, release or version that does not exist in Orchestrator (the field is named, with what does exist)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/processes/{name}")]
pub async fn replace_process(
    admin: Admin,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Json<ProcessInput>,
) -> Result<web::Json<ProcessView>, ApiError> {
    let new = validate(&state, body.into_inner())?;
    Ok(web::Json(
        save(&admin, &state, Some(&name), new, not_found).await?,
    ))
}

/// Delete a process. Its jobs keep their history.
#[utoipa::path(
    tag = "processes",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "Process name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such process", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Inbound webhooks start this process", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/processes/{name}")]
pub async fn delete_process(
    admin: Admin,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    remove::<ProcessView>(&admin, &state, &name, false, not_found).await
}

/// Replace the callback signing secret with a new one, shown once. Callbacks sent from
/// now on are signed with it.
#[utoipa::path(
    tag = "processes",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "Process name")),
    responses(
        (status = 200, description = "The new secret", body = CallbackSecret),
        (status = 404, description = "No such process", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/processes/{name}/callback-secret")]
pub async fn rotate_callback_secret(
    admin: Admin,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<web::Json<CallbackSecret>, ApiError> {
    Ok(web::Json(
        rotate(&admin, &state, &name, false, not_found).await?,
    ))
}

/// Replaces the callback secret of a process or queue mapping, and audits it.
pub(super) async fn rotate(
    admin: &Admin,
    state: &AppState,
    name: &str,
    queue: bool,
    missing: impl Fn(&str) -> ApiError,
) -> Result<CallbackSecret, ApiError> {
    let row = get_kind(state, name, queue)
        .await?
        .ok_or_else(|| missing(name))?;
    let secret = crate::domain::callback_target::generate_secret();
    store::set_callback_secret(&state.pool, &state.keys, row.id, &secret).await?;
    let kind = if queue { "queue" } else { "process" };
    admin
        .audit(
            &state.pool,
            "rotate_secret",
            kind,
            name,
            None,
            Some(serde_json::json!({"callback_secret": "rotated"})),
        )
        .await?;
    Ok(CallbackSecret {
        callback_secret: secret,
    })
}
