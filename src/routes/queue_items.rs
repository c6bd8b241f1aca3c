//! Queue items: `POST /queues/{name}` adds an item to the Orchestrator queue a queue
//! mapping names (recorded first, then added exactly once, through `app::submit` as a job
//! is); `GET /queue-items` and `GET /queue-items/{id}` read them from the one ledger.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::auth::Caller;
use super::jobs::{WaitQuery, one, page, requested_wait};
use super::run::{Request, submit_request};
use crate::app::submit::ItemCall;
use crate::domain::listing::JobFilter;
use crate::domain::queue::{ItemOptions, reference_problem};
use crate::error::{ApiError, Problem};
use crate::state::AppState;
use crate::views::jobs::{JobPage, JobView};

/// Query parameters of `POST /queues/{name}`: how the item is added.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AddQuery {
    /// `Low`, `Normal` or `High` (else the queue mapping's priority, else Orchestrator's
    /// default, `Normal`).
    pub priority: Option<String>,
    /// Not to be processed before this time (RFC 3339).
    pub defer_date: Option<String>,
    /// To be processed by this time (RFC 3339).
    pub due_date: Option<String>,
    /// The risk SLA date (RFC 3339).
    pub risk_sla_date: Option<String>,
    /// Your Reference for the item (1-128 characters), e.g. an invoice number. Sent as
    /// the item's `Reference`: a queue that enforces unique references then holds at most
    /// one item for it (a second add answers with the item already there). Without it,
    /// the gateway sends its own, `ugw-<id>`.
    pub reference: Option<String>,
    /// Where to POST the item when it ends (overrides the queue mapping's default).
    pub callback_url: Option<String>,
    /// Wait up to this many seconds (capped by the mapping's `max_wait_seconds`) for the
    /// item to end. Same as `Prefer: wait=N`.
    pub wait: Option<u32>,
}

/// Add an item to a queue. The item is recorded first, then added with its Reference;
/// its state follows the item in Orchestrator (`pending` = New, `running` = InProgress,
/// `successful` with its output, `faulted` with its processing exception).
#[utoipa::path(
    tag = "queues",
    security(("api_key" = [])),
    params(
        ("queue" = String, Path, description = "Queue mapping name"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and request return the first item"),
        ("Prefer" = Option<String>, Header, description = "`wait=N`: wait up to N seconds for the item to end"),
        AddQuery,
    ),
    request_body(content = Object, description = "The item's content (its SpecificContent), laid over the mapping's default content. Each queue mapping also has its own operation, `POST /queues/<name>`, with the queue's schema.", content_type = "application/json",
        example = json!({"InvoiceNumber": "INV-1001", "Amount": 1250.5})),
    responses(
        (status = 200, description = "With a wait: the item ended in time (its output or processing exception)", body = JobView),
        (status = 202, description = "Recorded; added, or queued to be added (or still being worked after the wait)", body = JobView, headers(("Location" = String, description = "/queue-items/{id}"))),
        (status = 400, description = "The body is not a JSON object, or a bad wait", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks this queue's scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such queue mapping", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The Idempotency-Key was used with another request", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Content that does not fit the queue's schema, or a bad priority, date or reference (each field named); or Orchestrator refused the item", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; nothing was recorded", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/queues/{queue}")]
pub async fn add_item(
    caller: Caller,
    state: web::Data<AppState>,
    name: web::Path<String>,
    query: web::Query<AddQuery>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require_process(&name)?;
    let query = query.into_inner();
    if let Some(problem) = query.reference.as_deref().and_then(reference_problem) {
        return Err(ApiError::invalid("invalid_content", &[problem]));
    }
    let call = Request {
        name: name.into_inner(),
        wait: query.wait,
        callback_url: query.callback_url,
        item: Some(ItemCall {
            options: ItemOptions {
                priority: query.priority,
                defer_date: query.defer_date,
                due_date: query.due_date,
                risk_sla_date: query.risk_sla_date,
            },
            reference: query.reference,
        }),
    };
    submit_request(&caller, state.into_inner(), &req, &body, call).await
}

/// Read a queue item, optionally waiting for it to end.
#[utoipa::path(
    tag = "queues",
    security(("api_key" = [])),
    params(
        ("id" = Uuid, Path, description = "Queue item id (the gateway's)"),
        ("Prefer" = Option<String>, Header, description = "`wait=N`: wait up to N seconds for the item to end"),
        WaitQuery,
    ),
    responses(
        (status = 200, description = "The item (ended, when a wait was asked for), with its timeline", body = JobView),
        (status = 202, description = "A wait was asked for and the item has not ended", body = JobView, headers(("Location" = String, description = "/queue-items/{id}"))),
        (status = 400, description = "The id is not a UUID, or a bad wait", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks jobs:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such queue item", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/queue-items/{id}")]
pub async fn get_item(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    query: web::Query<WaitQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    caller.require("jobs:read")?;
    one(
        &state,
        *id,
        requested_wait(&req, query.wait)?,
        Some("queue_item"),
    )
    .await
}

/// List queue items, newest first (`process` filters by queue mapping).
#[utoipa::path(
    tag = "queues",
    security(("api_key" = [])),
    params(JobFilter),
    responses(
        (status = 200, description = "A page of queue items", body = JobPage),
        (status = 400, description = "A bad filter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks jobs:read", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/queue-items")]
pub async fn list_items(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<JobFilter>,
) -> Result<web::Json<JobPage>, ApiError> {
    caller.require("jobs:read")?;
    Ok(web::Json(page(&state, &q, "queue_item").await?))
}
