//! `POST /orchestrator/events/{connection}`: Orchestrator's own job webhooks, the fast
//! path of job tracking (the poller is the safety net: these are never retried).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::{HttpRequest, post, web};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::job_state::JobState;
use crate::error::{ApiError, Problem};
use crate::hooks::{
    self,
    verify::{Request, SchemeConfig},
};
use crate::state::AppState;
use crate::storage::connections;
use crate::storage::jobs::{self, Observed};

/// What was done with an event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventReceipt {
    /// Jobs (or queue items) in the event.
    pub jobs: usize,
    /// Ledger jobs whose state moved forward.
    pub updated: usize,
}

fn unauthorized(detail: &str) -> ApiError {
    ApiError::Unauthorized {
        detail: detail.into(),
    }
}

/// Checks `X-UiPath-Signature` (Base64 of HMAC-SHA256 of the raw body, in constant time)
/// with the same verifier as a `uipath` webhook.
fn verify(secret: String, body: &[u8], req: &HttpRequest) -> Result<(), ApiError> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let request = Request {
        header: &header,
        body,
        now: chrono::Utc::now().timestamp(),
    };
    let uipath = hooks::verifier("uipath", &SchemeConfig::default()).expect("a known scheme");
    uipath
        .verify(&request, &[secret], 0)
        .map_err(|refusal| unauthorized(&refusal.detail))
}

/// The jobs of an event: `Job`, or `Jobs` as an array or (in some versions) one object.
fn jobs_of(event: &Value) -> Vec<&Value> {
    match (event.get("Job"), event.get("Jobs")) {
        (Some(job), _) if job.is_object() => vec![job],
        (_, Some(Value::Array(list))) => list.iter().collect(),
        (_, Some(job)) if job.is_object() => vec![job],
        _ => Vec::new(),
    }
}

fn observed(job: &Value) -> Option<(i64, Observed)> {
    let id = job.get("Id")?.as_i64()?;
    let state = JobState::parse(job.get("State")?.as_str()?)?;
    let output = job
        .get("OutputArguments")
        .filter(|v| v.is_object())
        .cloned()
        .or_else(|| {
            job.get("OutputArguments")
                .and_then(Value::as_str)
                .and_then(|s| serde_json::from_str(s).ok())
        });
    let info = job.get("Info").and_then(Value::as_str).map(String::from);
    let error = (state == JobState::Faulted).then(|| {
        job.get("Error")
            .or(job.get("JobError"))
            .filter(|e| !e.is_null())
            .cloned()
            .unwrap_or_else(|| json!({"message": info}))
    });
    let output = if state == JobState::Successful {
        output
    } else {
        None
    };
    Some((
        id,
        Observed {
            state,
            output,
            error,
            info,
        },
    ))
}

/// Events of unknown jobs being looked up again, on this instance (`look_again_later`).
static LOOKING_AGAIN: AtomicUsize = AtomicUsize::new(0);

/// Most events of unknown jobs looked up again at once; beyond it they are left to the
/// poller at once.
const LOOKING_AGAIN_MOST: usize = 10_000;

/// When to look again for the jobs of an event the ledger did not know (after its own
/// marks settled): another instance behind the same load balancer may have started the
/// job and be writing its mark. The poller follows every started job anyway; this keeps
/// the event's news from waiting for it. Nothing is kept across a restart.
const LOOK_AGAIN_AFTER: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(4)];

fn look_again_later(state: Arc<AppState>, connection: Uuid, mut unknown: Vec<(i64, Observed)>) {
    if unknown.is_empty() {
        return;
    }
    if LOOKING_AGAIN.fetch_add(1, Ordering::Relaxed) >= LOOKING_AGAIN_MOST {
        LOOKING_AGAIN.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    tokio::spawn(async move {
        for wait in LOOK_AGAIN_AFTER {
            tokio::time::sleep(wait).await;
            let mut still = Vec::new();
            for (orch_id, seen) in unknown {
                match jobs::by_orchestrator_id(&state.pool, connection, orch_id, "job").await {
                    Ok(Some(id)) => {
                        if let Err(e) = jobs::record_state(&state.pool, id, &seen, "webhook").await
                        {
                            tracing::warn!(job = %id, error = %e, "an Orchestrator event could not be recorded; the poller will");
                        }
                    }
                    Ok(None) => still.push((orch_id, seen)),
                    Err(e) => {
                        tracing::debug!(error = %e, "looking again for an event's job failed; the poller will");
                        still.push((orch_id, seen));
                    }
                }
            }
            unknown = still;
            if unknown.is_empty() {
                break;
            }
        }
        LOOKING_AGAIN.fetch_sub(1, Ordering::Relaxed);
    });
}

/// Receive Orchestrator's job webhooks for a connection (by name or id).
#[utoipa::path(
    tag = "jobs",
    params(
        ("connection" = String, Path, description = "Connection name or id"),
        ("X-UiPath-Signature" = String, Header, description = "Base64 HMAC-SHA256 of the body with the connection's webhook_secret"),
    ),
    request_body(content = Object, description = "An Orchestrator job event", content_type = "application/json",
        example = json!({"Type": "job.completed", "EventId": "5f0d9a7c3e2b4c1d8a6f", "Timestamp": "2026-12-06T09:00:05Z",
            "Job": {"Id": 4711, "Key": "6a4c1f3e-2b7d-4e8f-9a10-b2c3d4e5f607", "State": "Successful", "OutputArguments": "{\"out_InvoiceId\":\"INV-1\"}"}})),
    responses(
        (status = 200, description = "Accepted", body = EventReceipt),
        (status = 400, description = "The body is not a JSON event", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "The signature is missing or wrong; nothing changed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection, or it has no webhook_secret", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/orchestrator/events/{connection}")]
pub async fn orchestrator_event(
    state: web::Data<AppState>,
    name: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<web::Json<EventReceipt>, ApiError> {
    let not_found = || {
        ApiError::not_found(
            "connection_not_found",
            format!(
                "no connection `{name}` receives Orchestrator webhooks (set its webhook_secret)"
            ),
        )
    };
    let conn = state
        .lookups
        .connection_named(&state.pool, &name)
        .await?
        .ok_or_else(not_found)?;
    let secrets = connections::open_secrets(&state.keys, &conn)
        .map_err(|e| ApiError::Internal(e.context("opening secrets")))?;
    let secret = secrets.webhook_secret.ok_or_else(not_found)?;
    verify(secret, &body, &req).inspect_err(|_| crate::metrics::orchestrator_event("invalid"))?;
    crate::metrics::orchestrator_event("ok");
    let event: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("malformed_json", format!("the event is not JSON: {e}"))
    })?;
    let kind = event
        .get("Type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    let list = if kind.starts_with("job.") {
        jobs_of(&event)
    } else {
        Vec::new()
    };
    // A `ping` (asked for by the registration check, at most one per check) is always
    // noted; job events at most once a second.
    if kind == "ping" || state.limits.note_webhook_heard(conn.id) {
        connections::webhook_heard(&state.pool, conn.id).await?;
    }
    if kind.starts_with("queueitem") {
        let (items, updated) = crate::workers::item_sync::on_event(&state, conn.id, &event).await?;
        tracing::debug!(event = %kind, items, updated, "Orchestrator queue event");
        return Ok(web::Json(EventReceipt {
            jobs: items,
            updated,
        }));
    }
    let mut updated = 0;
    let mut unknown = Vec::new();
    for job in &list {
        let Some((orch_id, seen)) = observed(job) else {
            continue;
        };
        // Pending is what the start itself records, with the Orchestrator id the lookup
        // needs: a job found by that id is already pending or further along, so a
        // `job.created` (one per job) needs no database work.
        if seen.state == JobState::Pending {
            continue;
        }
        match jobs::by_orchestrator_id(&state.pool, conn.id, orch_id, "job").await? {
            Some(id) => {
                updated += usize::from(jobs::record_state(&state.pool, id, &seen, "webhook").await?)
            }
            None => unknown.push((orch_id, seen)),
        }
    }
    // `/run` answers before its job's start mark is committed: a job Orchestrator took a
    // moment ago may not carry its id in the ledger yet. Once the marks queued on this
    // instance are committed, it does; one another instance started is looked up again
    // a little later (`look_again_later`). A job the gateway did not start stays unknown.
    if !unknown.is_empty() {
        state.ledger.settled().await?;
        let mut still = Vec::new();
        for (orch_id, seen) in unknown {
            match jobs::by_orchestrator_id(&state.pool, conn.id, orch_id, "job").await? {
                Some(id) => {
                    updated +=
                        usize::from(jobs::record_state(&state.pool, id, &seen, "webhook").await?)
                }
                None => still.push((orch_id, seen)),
            }
        }
        look_again_later(state.into_inner(), conn.id, still);
    }
    tracing::debug!(event = %kind, jobs = list.len(), updated, "Orchestrator event");
    Ok(web::Json(EventReceipt {
        jobs: list.len(),
        updated,
    }))
}
