//! Dead letters: jobs that ran out of start attempts and callbacks whose retry
//! schedule ran out, and the redrive actions that send them again (admin only).

use actix_web::{HttpResponse, get, http::header, post, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::admin::Admin;
use crate::error::{ApiError, Problem};
use crate::state::AppState;
use crate::storage::{callbacks, jobs};
use crate::views::jobs::{CallbackView, JobView, view};

/// Everything dead-lettered.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetters {
    /// Jobs Orchestrator never accepted within `dispatch.max_attempts`.
    pub jobs: Vec<JobView>,
    /// Callbacks not delivered within the retry schedule.
    pub callbacks: Vec<CallbackView>,
}

/// `?limit=`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DeadQuery {
    /// Most entries of each kind, 1-500 (default 100), newest first.
    pub limit: Option<i64>,
}

/// List dead-lettered jobs and callbacks.
#[utoipa::path(
    tag = "dead letters",
    security(("admin_token" = [])),
    params(DeadQuery),
    responses(
        (status = 200, description = "Dead letters, newest first", body = DeadLetters),
        (status = 400, description = "A bad limit", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/dead-letters")]
pub async fn list_dead_letters(
    _: Admin,
    state: web::Data<AppState>,
    q: web::Query<DeadQuery>,
) -> Result<web::Json<DeadLetters>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be between 1 and 500",
        ));
    }
    let dead_jobs = jobs::dead(&state.pool, limit).await?;
    let dead_callbacks = callbacks::dead(&state.pool, limit).await?;
    Ok(web::Json(DeadLetters {
        jobs: dead_jobs.into_iter().map(|j| view(j, None)).collect(),
        callbacks: dead_callbacks.into_iter().map(CallbackView::from).collect(),
    }))
}

/// Queue a dead-lettered job again, with a fresh set of start attempts.
#[utoipa::path(
    tag = "dead letters",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 202, description = "Queued again; the dispatcher starts it", body = JobView, headers(("Location" = String, description = "/jobs/{id}"))),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is not dead-lettered", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/jobs/{id}/redrive")]
pub async fn redrive_job(
    admin: Admin,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let job = jobs::get(&state.pool, *id)
        .await?
        .ok_or_else(|| ApiError::not_found("job_not_found", format!("no job {id}")))?;
    if !jobs::redrive(&state.pool, job.id, "admin").await? {
        return Err(ApiError::Conflict {
            code: "not_dead_lettered",
            detail: format!("the job is {}, not dead-lettered", job.state),
        });
    }
    let job = jobs::get(&state.pool, job.id).await?.unwrap_or(job);
    admin
        .audit(
            &state.pool,
            "redrive",
            "job",
            &job.id.to_string(),
            None,
            Some(serde_json::json!({"state": job.state})),
        )
        .await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/jobs/{}", job.id)))
        .json(view(job, None)))
}

/// Send a dead-lettered callback again, with a fresh retry schedule.
#[utoipa::path(
    tag = "dead letters",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Callback delivery id")),
    responses(
        (status = 202, description = "Pending again", body = CallbackView),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such callback delivery", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The callback is not dead-lettered", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/callbacks/{id}/redrive")]
pub async fn redrive_callback(
    admin: Admin,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let found = callbacks::get(&state.pool, *id).await?.ok_or_else(|| {
        ApiError::not_found("callback_not_found", format!("no callback delivery {id}"))
    })?;
    if !callbacks::redrive(&state.pool, found.id).await? {
        return Err(ApiError::Conflict {
            code: "not_dead_lettered",
            detail: format!("the callback is {}, not dead-lettered", found.state),
        });
    }
    let again = callbacks::get(&state.pool, found.id)
        .await?
        .unwrap_or(found);
    admin
        .audit(
            &state.pool,
            "redrive",
            "callback",
            &again.id.to_string(),
            None,
            Some(serde_json::json!({"job_id": again.job_id, "state": again.state})),
        )
        .await?;
    Ok(HttpResponse::Accepted().json(CallbackView::from(again)))
}
