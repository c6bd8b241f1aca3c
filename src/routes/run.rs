//! `POST /run/{process}`: reads the call (body, `Idempotency-Key`, wait, callback),
//! hands it to `app::submit::run`, and answers 202 with the job, or 200 once it ended.

use actix_web::{HttpRequest, HttpResponse, http::header, post, web};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::IntoParams;

use super::auth::Caller;
use super::jobs::{accepted, requested_wait};
use crate::app::submit::{self, Submitted};
use crate::error::{ApiError, Problem};
use crate::state::AppState;
use crate::storage::jobs::JobRow;
use crate::views::jobs::{JobView, location, view};

/// 200 with the job when a wait was asked for and it ended, else 202 with `Location`.
fn answer(job: JobRow, replayed: bool, waited: bool) -> HttpResponse {
    if !waited || !job.state.is_terminal() {
        return accepted(view(job, None), replayed);
    }
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CONTENT_LOCATION, location(&job.kind, job.id)));
    if replayed {
        res.insert_header(("idempotent-replayed", "true"));
    }
    res.json(view(job, None))
}

fn parse_body(req: &HttpRequest, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.is_empty() && !ct.starts_with("application/json") {
        return Err(ApiError::UnsupportedMediaType {
            detail: "send the input arguments as a JSON object with Content-Type: application/json"
                .into(),
        });
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request(
            "invalid_body",
            "the body must be a JSON object of input arguments",
        )),
        Err(e) => Err(ApiError::bad_request(
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(v) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = v.to_str().ok().map(str::trim).filter(|k| {
        !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| (0x21..0x7f).contains(&b))
    });
    key.map(|k| Some(k.to_string())).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1-255 printable ASCII characters",
        )
    })
}

/// Query parameters of `/run`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RunQuery {
    /// Where to POST the job when it ends (overrides the process's default).
    pub callback_url: Option<String>,
    /// Wait up to this many seconds (capped by the process's `max_wait_seconds`) for
    /// the job to end. Same as `Prefer: wait=N`.
    pub wait: Option<u32>,
}

/// Start a process. The job is recorded first, then started; the answer carries it.
#[utoipa::path(
    tag = "run",
    security(("api_key" = [])),
    params(
        ("process" = String, Path, description = "Process name"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body return the first job"),
        ("Prefer" = Option<String>, Header, description = "`wait=N`: wait up to N seconds for the job to end"),
        RunQuery,
    ),
    request_body(content = Object, description = "The input arguments (may be empty). Each configured process also has its own operation, `POST /run/<name>`, with these typed.", content_type = "application/json",
        example = json!({"in_Vendor": "ACME", "in_Amount": 12.5})),
    responses(
        (status = 200, description = "With a wait: the job ended in time (state, output arguments or error)", body = JobView),
        (status = 202, description = "Recorded; started, or queued to start (or still running after the wait)", body = JobView, headers(("Location" = String, description = "/jobs/{id}"))),
        (status = 400, description = "The body is not a JSON object, or a bad wait", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks this process's scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such process", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The Idempotency-Key was used with another body", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid arguments (each named), or Orchestrator refused the job (its code and message)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; nothing was recorded", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/run/{process}")]
pub async fn run(
    caller: Caller,
    state: web::Data<AppState>,
    name: web::Path<String>,
    query: web::Query<RunQuery>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let call = Request {
        name: name.into_inner(),
        wait: query.wait,
        callback_url: query.callback_url,
        item: None,
    };
    submit_request(&caller, state.into_inner(), &req, &body, call).await
}

/// What a `/run` or `/queues` call asks for besides its body and headers.
pub(super) struct Request {
    pub name: String,
    pub wait: Option<u32>,
    pub callback_url: Option<String>,
    pub item: Option<submit::ItemCall>,
}

/// Reads a `/run` or `/queues` call (scope, body, `Idempotency-Key`, wait), submits it
/// through `app::submit::run` and answers with the job or item.
pub(super) async fn submit_request(
    caller: &Caller,
    state: std::sync::Arc<AppState>,
    req: &HttpRequest,
    body: &[u8],
    call: Request,
) -> Result<HttpResponse, ApiError> {
    caller.require_process(&call.name)?;
    let input = parse_body(req, body)?;
    let idempotency_key = idempotency_key(req)?;
    let wait = requested_wait(req, call.wait)?;
    // The same key with another target, body or (for an item) options is another request.
    let request_hash = idempotency_key.as_ref().map(|_| {
        let mut h = Sha256::new();
        if call.item.is_some() {
            h.update(b"queue\0");
            h.update(req.query_string().as_bytes());
            h.update([0]);
        }
        h.update(call.name.as_bytes());
        h.update([0]);
        h.update(body);
        h.finalize().to_vec()
    });
    let waited = wait.is_some_and(|w| w > 0);
    let call = submit::Call {
        process: call.name,
        input,
        caller: caller.0.id,
        callback_url: call.callback_url,
        idempotency: idempotency_key.zip(request_hash),
        wait,
        item: call.item,
    };
    let (job, repeat) = match submit::run(&state, call).await? {
        Submitted::New(job) => (job, false),
        Submitted::Repeat(job) => (job, true),
    };
    Ok(answer(job, repeat, waited))
}
