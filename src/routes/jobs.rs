//! The job ledger: `GET /jobs`, `GET /jobs/{id}` (with a wait), stop and replay.

use actix_web::{HttpRequest, HttpResponse, get, http::header, post, web};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::Caller;
use crate::app::submit;
use crate::domain::job_state::JobState;
use crate::domain::listing::JobFilter;
use crate::error::{ApiError, Problem};
use crate::state::AppState;
use crate::storage::jobs::{self as store, JobRow};
use crate::views::jobs::{CallbackView, JobPage, JobView, location, view};

/// The wait a caller asked for: `?wait=N`, else `Prefer: wait=N` (RFC 7240).
pub(super) fn requested_wait(
    req: &HttpRequest,
    query: Option<u32>,
) -> Result<Option<u32>, ApiError> {
    if query.is_some() {
        return Ok(query);
    }
    for value in req.headers().get_all("prefer") {
        let Ok(text) = value.to_str() else { continue };
        for pref in text.split(',') {
            let token = pref.split(';').next().unwrap_or("").trim();
            if let Some((name, v)) = token.split_once('=')
                && name.trim().eq_ignore_ascii_case("wait")
            {
                return v
                    .trim()
                    .trim_matches('"')
                    .parse::<u32>()
                    .map(Some)
                    .map_err(|_| {
                        ApiError::bad_request("invalid_wait", "Prefer: wait=N takes whole seconds")
                    });
            }
        }
    }
    Ok(None)
}

pub(super) fn accepted(job: JobView, replayed: bool) -> HttpResponse {
    let mut res = HttpResponse::Accepted();
    res.insert_header((header::LOCATION, location(&job.kind, job.id)));
    if replayed {
        res.insert_header(("idempotent-replayed", "true"));
    }
    res.json(job)
}

/// `?wait=N` on `GET /jobs/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct WaitQuery {
    /// Wait up to this many seconds (capped by the process's `max_wait_seconds`) for
    /// the job to end. Same as `Prefer: wait=N`.
    pub wait: Option<u32>,
}

/// Read a job, with its timeline and callback deliveries.
#[utoipa::path(
    tag = "jobs",
    security(("api_key" = [])),
    params(
        ("id" = Uuid, Path, description = "Job id"),
        ("Prefer" = Option<String>, Header, description = "`wait=N`: wait up to N seconds for the job to end"),
        WaitQuery,
    ),
    responses(
        (status = 200, description = "The job (ended, when a wait was asked for)", body = JobView),
        (status = 202, description = "A wait was asked for and the job is still running", body = JobView, headers(("Location" = String, description = "/jobs/{id}"))),
        (status = 400, description = "The id is not a UUID, or a bad wait", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks jobs:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/jobs/{id}")]
pub async fn get_job(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    query: web::Query<WaitQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    caller.require("jobs:read")?;
    one(&state, *id, requested_wait(&req, query.wait)?, None).await
}

/// A ledger entry with its timeline and callbacks, after the wait asked for; with `kind`,
/// only an entry of that kind.
pub(super) async fn one(
    state: &AppState,
    id: Uuid,
    wait: Option<u32>,
    kind: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let mut job = store::get(&state.pool, id).await?;
    // `/run` answers before its start mark is committed: a queued job may be one this
    // instance just started, read once the marks it has queued are committed.
    if job.as_ref().is_some_and(|j| j.state == JobState::Queued) {
        state.ledger.settled().await?;
        job = store::get(&state.pool, id).await?;
    }
    let mut job = job
        .filter(|j| kind.is_none_or(|k| j.kind == k))
        .ok_or_else(|| match kind {
            Some("queue_item") => {
                ApiError::not_found("queue_item_not_found", format!("no queue item {id}"))
            }
            _ => ApiError::not_found("job_not_found", format!("no job {id}")),
        })?;
    let mut status = actix_web::http::StatusCode::OK;
    if let Some(wait) = wait.filter(|w| *w > 0 && !job.state.is_terminal()) {
        let wait = wait.min(submit::max_wait(state, &job).await?);
        job = state
            .jobs_ended
            .wait(
                &state.pool,
                job.id,
                std::time::Duration::from_secs(wait.into()),
            )
            .await?
            .unwrap_or(job);
        if !job.state.is_terminal() {
            status = actix_web::http::StatusCode::ACCEPTED;
        }
    }
    let events = store::events(&state.pool, job.id).await?;
    let callbacks = crate::storage::callbacks::for_job(&state.pool, job.id).await?;
    let mut v = view(job, Some(events));
    v.callbacks = Some(callbacks.into_iter().map(CallbackView::from).collect());
    let mut res = HttpResponse::build(status);
    if status == actix_web::http::StatusCode::ACCEPTED {
        res.insert_header((header::LOCATION, location(&v.kind, v.id)));
    }
    Ok(res.json(v))
}

fn decode_cursor(c: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (ts, id) = text.split_once('|')?;
    Some((
        DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc),
        Uuid::parse_str(id).ok()?,
    ))
}

fn encode_cursor(j: &JobRow) -> String {
    let raw = format!(
        "{}|{}",
        j.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        j.id
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// List jobs, newest first, with filters and cursor pagination.
#[utoipa::path(
    tag = "jobs",
    security(("api_key" = [])),
    params(JobFilter),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage),
        (status = 400, description = "A bad filter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks jobs:read", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/jobs")]
pub async fn list_jobs(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<JobFilter>,
) -> Result<web::Json<JobPage>, ApiError> {
    caller.require("jobs:read")?;
    Ok(web::Json(page(&state, &q, "job").await?))
}

/// A page of the ledger's entries of one kind.
pub(super) async fn page(state: &AppState, q: &JobFilter, kind: &str) -> Result<JobPage, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be between 1 and 200",
        ));
    }
    let after = match &q.cursor {
        Some(c) => Some(decode_cursor(c).ok_or_else(|| {
            ApiError::bad_request("invalid_cursor", "the cursor is not one this API gave out")
        })?),
        None => None,
    };
    let mut rows = store::list(&state.pool, q, kind, after, limit + 1).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(encode_cursor)
    } else {
        None
    };
    Ok(JobPage {
        items: rows.into_iter().map(|j| view(j, None)).collect(),
        next_cursor,
    })
}

/// How to stop a job.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"strategy": "SoftStop"}))]
pub struct StopInput {
    /// `SoftStop` (the default: the workflow stops at its next check) or `Kill`.
    pub strategy: Option<String>,
}

async fn load_for(caller: &Caller, state: &AppState, id: Uuid) -> Result<JobRow, ApiError> {
    let job = store::get(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found("job_not_found", format!("no job {id}")))?;
    caller.require_process(&job.process_name)?;
    Ok(job)
}

/// Stop a job: SoftStop or Kill in Orchestrator, or cancel it if it has not started yet.
#[utoipa::path(
    tag = "jobs",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    request_body(content = Option<StopInput>, content_type = "application/json"),
    responses(
        (status = 202, description = "Asked to stop (or cancelled); the state follows", body = JobView),
        (status = 400, description = "A bad strategy or id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks this process's scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job has already ended, or it is a queue item already in its queue (`not_stoppable`)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Orchestrator refused", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Orchestrator is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/jobs/{id}/stop")]
pub async fn stop_job(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: Option<web::Json<StopInput>>,
) -> Result<HttpResponse, ApiError> {
    let job = load_for(&caller, &state, *id).await?;
    let strategy = body
        .and_then(|b| b.into_inner().strategy)
        .unwrap_or_else(|| "SoftStop".into());
    if !matches!(strategy.as_str(), "SoftStop" | "Kill") {
        return Err(ApiError::bad_request(
            "invalid_strategy",
            "strategy must be SoftStop or Kill",
        ));
    }
    let state = state.into_inner();
    let job = crate::app::stop::stop(&state, job, &strategy).await?;
    Ok(accepted(view(job, None), false))
}

/// Run a job again: a new job with the same input, linked to this one.
#[utoipa::path(
    tag = "jobs",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The job to replay")),
    responses(
        (status = 202, description = "The new job", body = JobView, headers(("Location" = String, description = "/jobs/{id}"))),
        (status = 400, description = "A bad id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks this process's scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job's process was deleted", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Orchestrator refused the new job", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/jobs/{id}/replay")]
pub async fn replay_job(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let first = load_for(&caller, &state, *id).await?;
    let job = submit::replay(&state.into_inner(), first, caller.0.id).await?;
    Ok(accepted(view(job, None), false))
}
