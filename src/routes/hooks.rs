//! `POST /hooks/{slug}`: a signed delivery from GitHub, Stripe, Slack, Shopify... becomes
//! a job. The delivery is verified over the raw bytes, deduplicated, filtered, mapped to
//! input arguments, and committed with its job before the answer, which never waits on
//! Orchestrator (the start runs in the background, and the dispatcher retries it).

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, post, web};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::dispatch;
use crate::domain::arguments;
use crate::error::{ApiError, Problem};
use crate::hooks::{expr, verify};
use crate::state::AppState;
use crate::storage::hooks::{self as store, Delivery, HookRow};
use crate::storage::jobs::{self};

/// The answer to a delivery (unless the webhook configures its own body).
#[derive(Debug, Serialize, ToSchema)]
pub struct HookReceipt {
    /// `accepted` (a job was recorded), `duplicate` (this delivery id was seen: the first
    /// job is named), `filtered` (the filter said no: nothing started), `answered`
    /// (a Slack challenge or GitHub ping).
    pub status: String,
    /// The delivery record.
    pub delivery_id: Uuid,
    /// The job started (or, for a duplicate, the first one).
    pub job_id: Option<Uuid>,
    /// Why nothing started, when filtered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Headers as the expressions see them: lower-case names, repeated values joined.
fn header_map(req: &HttpRequest) -> Map<String, Value> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in req.headers() {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_string())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    out.into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect()
}

/// The headers kept with a delivery, with credentials masked.
fn stored_headers(headers: &Map<String, Value>, hook: &HookRow) -> Value {
    let token_header = (hook.scheme == "token").then(|| {
        hook.config
            .header
            .clone()
            .unwrap_or_default()
            .to_ascii_lowercase()
    });
    let masked: Map<String, Value> = headers
        .iter()
        .map(|(k, v)| {
            let secret = matches!(
                k.as_str(),
                "authorization" | "cookie" | "proxy-authorization"
            ) || token_header.as_deref() == Some(k.as_str());
            (k.clone(), if secret { json!("***") } else { v.clone() })
        })
        .collect();
    Value::Object(masked)
}

/// The body as the expressions see it: JSON, a form as an object, else text.
pub fn parse_body(content_type: &str, body: &[u8]) -> Value {
    if content_type.starts_with("application/x-www-form-urlencoded")
        && let Ok(form) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
    {
        return Value::Object(
            form.into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        );
    }
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// The query string as an object.
pub fn query_map(query: &str) -> Value {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

fn receipt(status: &str, delivery: Uuid, job: Option<Uuid>, detail: Option<String>) -> HookReceipt {
    HookReceipt {
        status: status.into(),
        delivery_id: delivery,
        job_id: job,
        detail,
    }
}

/// What a delivery's content led to, before anything is stored.
enum Decision {
    /// Start a job with these arguments.
    Start(Map<String, Value>),
    /// The filter said no.
    Filtered(String),
    /// A Slack challenge or a GitHub ping: answer this, start nothing.
    Answer(Value),
}

/// Evaluates the filter and the mapping; an expression error is a failed delivery.
fn decide(
    hook: &HookRow,
    context: &Value,
    exprs: &expr::Context,
) -> Result<Decision, (String, &'static str)> {
    let body = &context["body"];
    if hook.scheme == "slack" && body["type"] == "url_verification" {
        return Ok(Decision::Answer(json!({"challenge": body["challenge"]})));
    }
    if hook.scheme == "github" && context["headers"]["x-github-event"] == "ping" {
        return Ok(Decision::Answer(json!({"status": "pong"})));
    }
    if let Some(f) = &hook.filter {
        let v = expr::eval(f, exprs)
            .map_err(|e| (format!("the filter `{f}` failed: {e}"), "filter_failed"))?;
        if !expr::truthy(&v) {
            return Ok(Decision::Filtered(format!(
                "the filter `{f}` is not true for this delivery"
            )));
        }
    }
    let mut input = Map::new();
    match &hook.mapping {
        Some(mapping) => {
            for (arg, e) in mapping {
                let v = expr::eval(e, exprs).map_err(|err| {
                    (
                        format!("mapping `{arg}` (`{e}`) failed: {err}"),
                        "mapping_failed",
                    )
                })?;
                if !v.is_null() {
                    input.insert(arg.clone(), v);
                }
            }
        }
        None => {
            if let Value::Object(o) = body {
                input = o.clone();
            }
        }
    }
    Ok(Decision::Start(input))
}

/// Receive a webhook delivery and start the webhook's process.
#[utoipa::path(
    tag = "hooks",
    params(("slug" = String, Path, description = "The webhook's slug")),
    request_body(content = Object, description = "The provider's payload, signed as its scheme says", content_type = "application/json"),
    responses(
        (status = 202, description = "A job was recorded (and is being started)", body = HookReceipt),
        (status = 200, description = "A repeat of an earlier delivery (its job is named), a filtered-out delivery, or a Slack challenge / GitHub ping answered", body = HookReceipt),
        (status = 400, description = "The body could not be read", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong signature or token, a missing delivery id, or a timestamp outside the window; nothing was started", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No enabled webhook with this slug", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body stalled or arrived too slowly", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than this webhook's `max_body_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The filter or mapping failed on this delivery, or the arguments are invalid; recorded as failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database did not answer in time; nothing was recorded", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/hooks/{slug}")]
pub async fn receive(
    state: web::Data<AppState>,
    slug: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // Everything up to the body read is decided from the path and the headers: an
    // unknown slug, an unsigned or stale delivery costs no body (and the connection is
    // closed with the body unread).
    let hook = state
        .lookups
        .hook(&state.pool, &slug)
        .await?
        .filter(|h| h.enabled)
        .ok_or_else(|| {
            ApiError::not_found("hook_not_found", format!("no enabled webhook `{slug}`"))
        })?;
    state.limits.hook(hook.id)?;
    let headers = header_map(&req);
    let mut delivery = Delivery {
        id: Uuid::new_v4(),
        webhook_id: hook.id,
        request_headers: Some(stored_headers(&headers, &hook)),
        request_query: Some(req.query_string().to_string()).filter(|q| !q.is_empty()),
        dedup: "none".into(),
        ..Default::default()
    };
    let secrets = store::open_secrets(&state.keys, &hook)
        .map_err(|e| ApiError::Internal(e.context("opening webhook secrets")))?;
    let lookup = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let verifier = verify::verifier(&hook.scheme, &hook.config)
        .ok_or_else(|| anyhow::anyhow!("unknown scheme {} stored", hook.scheme))?;
    let now = chrono::Utc::now().timestamp();
    let tolerance = hook.tolerance_seconds.into();
    let headers_only = verify::Request {
        header: &lookup,
        body: &[],
        now,
    };
    if let Err(refusal) = verifier.precheck(&headers_only, &secrets, tolerance) {
        return refuse(&state, &hook, delivery, refusal).await;
    }

    // The body, up to this webhook's own limit.
    let limit = hook.body_limit(
        state.settings.hooks.max_body_bytes,
        state.settings.body_limit_bytes,
    );
    let body = read_body(&req, payload, limit).await?;

    // Verification, over the raw bytes.
    let checked = verifier.verify(
        &verify::Request {
            header: &lookup,
            body: &body,
            now,
        },
        &secrets,
        tolerance,
    );
    if let Err(refusal) = checked {
        return refuse(&state, &hook, delivery, refusal).await;
    }
    crate::metrics::webhook_verification(
        &hook.scheme,
        if hook.scheme == "none" {
            "public"
        } else {
            "ok"
        },
    );
    delivery.verification = if hook.scheme == "none" {
        "public"
    } else {
        "ok"
    }
    .into();
    // Without a signed timestamp, the same signed bytes sent again are a replay, whatever
    // delivery id comes with them.
    if !verifier.signs_a_timestamp() {
        delivery.body_sha256 = Some(Sha256::digest(&body).to_vec());
    }
    delivery.request_body = Some(body.to_vec());
    let ct = lookup("content-type").unwrap_or_default();
    let context = json!({"headers": headers, "body": parse_body(&ct, &body), "query": query_map(req.query_string())});
    handle(&state, &hook, delivery, &context).await
}

/// Reads a delivery's body, refusing one larger than `limit` (before reading, when its
/// length is declared).
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    // Grown as bytes arrive, never reserved from the declared length (a stalled body
    // would hold memory it never sent).
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(
                "unreadable_body",
                format!("the body could not be read: {e}"),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A delivery whose signature, token, timestamp or id failed: counted, recorded (at most
/// `hooks.refused_per_minute` a minute per webhook, kept `hooks.refused_retention_secs`),
/// and answered 401.
async fn refuse(
    state: &AppState,
    hook: &HookRow,
    mut delivery: Delivery,
    refusal: verify::Refusal,
) -> Result<HttpResponse, ApiError> {
    crate::metrics::webhook_verification(&hook.scheme, refusal.code);
    if state
        .limits
        .record_refused(hook.id, state.settings.hooks.refused_per_minute)
    {
        delivery.verification = "failed".into();
        delivery.verification_detail = Some(format!("{}: {}", refusal.code, refusal.detail));
        delivery.outcome = "refused".into();
        record(state, &delivery).await?;
    }
    Err(ApiError::SignatureRefused {
        code: refusal.code,
        detail: refusal.detail,
    })
}

/// Dedup, filter, mapping and the job: shared by deliveries and admin replays.
pub async fn handle(
    state: &web::Data<AppState>,
    hook: &HookRow,
    mut delivery: Delivery,
    context: &Value,
) -> Result<HttpResponse, ApiError> {
    // One conversion of the context for every expression, dropped before any await.
    let (key, decision) = {
        let exprs = expr::Context::new(context);
        let key = if delivery.replay_of.is_some() {
            None
        } else {
            hook.dedup
                .as_deref()
                .and_then(|d| expr::eval(d, &exprs).ok())
                .as_ref()
                .and_then(expr::key_of)
        };
        (key, decide(hook, context, &exprs))
    };
    delivery.delivery_key = key.clone();

    let decision = match decision {
        Ok(d) => d,
        Err((reason, code)) => return failed(state, delivery, reason, code, None).await,
    };
    let input = match decision {
        Decision::Answer(answer) => {
            delivery.outcome = "answered".into();
            record(state, &delivery).await?;
            return Ok(HttpResponse::Ok().json(answer));
        }
        Decision::Filtered(reason) => {
            delivery.filter_result = Some("rejected".into());
            delivery.outcome = "filtered".into();
            delivery.error = Some(reason.clone());
            if key.is_some() || delivery.body_sha256.is_some() {
                delivery.dedup = "first".into();
            }
            if !record_first(state, hook, &delivery).await? {
                return duplicate(state, hook, delivery).await;
            }
            return Ok(HttpResponse::Ok().json(receipt(
                "filtered",
                delivery.id,
                None,
                Some(reason),
            )));
        }
        Decision::Start(input) => input,
    };
    if hook.filter.is_some() {
        delivery.filter_result = Some("passed".into());
    }
    let process = state
        .lookups
        .process_by_id(&state.pool, hook.process_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the webhook's process is gone"))?;
    let defaults = process
        .default_input
        .as_object()
        .cloned()
        .unwrap_or_default();
    // Checked against the release's arguments when they are known (cached); the answer
    // never waits on Orchestrator, so an unknown release is checked by the start itself.
    let merged = match &process.release_arguments {
        Some(defs) => {
            let defs: Vec<crate::orchestrator::models::ArgumentDefinition> =
                serde_json::from_value(defs.clone()).unwrap_or_default();
            match arguments::validate(&defs, &defaults, &input) {
                Ok(m) => m,
                Err(problems) => {
                    let reason = problems
                        .iter()
                        .map(|p| format!("{}: {}", p.field, p.problem))
                        .collect::<Vec<_>>()
                        .join("; ");
                    delivery.mapped_input = Some(Value::Object(input));
                    return failed(state, delivery, reason, "invalid_arguments", Some(problems))
                        .await;
                }
            }
        }
        None => {
            let mut m = defaults;
            m.extend(input);
            m
        }
    };
    delivery.mapped_input = Some(Value::Object(merged.clone()));
    let new = crate::app::submit::new_job(
        &process,
        "hook",
        Some(format!("{}:{}", hook.slug, delivery.id)),
        merged,
        None,
        None,
    );
    delivery.job_id = Some(new.id);
    delivery.outcome = "accepted".into();
    if key.is_some() || delivery.body_sha256.is_some() {
        delivery.dedup = "first".into();
    }
    // Group-committed with other deliveries; the pair is stored only if the key is free.
    let deadline = std::time::Duration::from_millis(state.settings.database.write_timeout_ms);
    let stored = state
        .ledger
        .hook_within(
            jobs::HookJob {
                job: new,
                delivery: delivery.clone(),
            },
            deadline,
        )
        .await
        .map_err(|e| ApiError::late(e, &format!("delivery {}", delivery.id)))?;
    let Some(job) = stored else {
        if expire_if_stale(state, hook, &delivery).await? {
            // The earlier delivery is past the retention window: this one counts anew.
            return Box::pin(handle(
                state,
                hook,
                Delivery {
                    dedup: "none".into(),
                    ..delivery
                },
                context,
            ))
            .await;
        }
        return duplicate(
            state,
            hook,
            Delivery {
                job_id: None,
                ..delivery
            },
        )
        .await;
    };
    // Start it now, in the background; the lease makes this instance the one to try
    // first, and the dispatcher retries if this fails or the instance dies.
    let bg: Arc<AppState> = state.clone().into_inner();
    let started = job.clone();
    tokio::spawn(async move {
        if let Err(e) = dispatch::attempt(&bg, &started).await {
            tracing::warn!(job = %started.id, error = %e, "starting a hook's job failed; the dispatcher will retry");
        }
    });
    let status = actix_web::http::StatusCode::from_u16(hook.response.status.unwrap_or(202))
        .unwrap_or(actix_web::http::StatusCode::ACCEPTED);
    let mut res = HttpResponse::build(status);
    res.insert_header((
        actix_web::http::header::LOCATION,
        format!("/jobs/{}", job.id),
    ));
    if status == actix_web::http::StatusCode::NO_CONTENT {
        return Ok(res.finish());
    }
    Ok(match &hook.response.body {
        Some(b) => res.json(b),
        None => res.json(receipt("accepted", delivery.id, Some(job.id), None)),
    })
}

/// Records a delivery within `database.write_timeout_ms` (a 503 after that: the
/// delivery may or may not have been recorded, and the sender retries).
async fn record(state: &AppState, d: &Delivery) -> Result<bool, ApiError> {
    let deadline = std::time::Duration::from_millis(state.settings.database.write_timeout_ms);
    match tokio::time::timeout(deadline, store::record(&state.pool, d)).await {
        Ok(stored) => Ok(stored?),
        Err(_) => Err(ApiError::late(
            crate::storage::batch::Late::Uncertain(deadline),
            &format!("delivery {}", d.id),
        )),
    }
}

/// Records a filtered delivery, claiming its key. False when the key was taken.
async fn record_first(state: &AppState, hook: &HookRow, d: &Delivery) -> Result<bool, ApiError> {
    if record(state, d).await? {
        return Ok(true);
    }
    if expire_if_stale(state, hook, d).await? {
        return record(state, d).await;
    }
    Ok(false)
}

/// The first deliveries holding `d`'s key or signed-body hash (the key's first).
async fn firsts(state: &AppState, hook: &HookRow, d: &Delivery) -> Result<Vec<Delivery>, ApiError> {
    let mut found = Vec::new();
    if let Some(k) = &d.delivery_key {
        found.extend(store::first_with_key(&state.pool, hook.id, k).await?);
    }
    if let Some(h) = &d.body_sha256 {
        found.extend(
            store::first_with_body(&state.pool, hook.id, h)
                .await?
                .filter(|f| found.iter().all(|g| g.id != f.id)),
        );
    }
    Ok(found)
}

/// Frees the key and body hash of `d` when every first delivery holding them is older
/// than the retention window. False (a repeat) when one is not.
async fn expire_if_stale(state: &AppState, hook: &HookRow, d: &Delivery) -> Result<bool, ApiError> {
    let found = firsts(state, hook, d).await?;
    let retention = chrono::Duration::seconds(state.settings.hooks.dedup_retention_secs);
    let stale = |f: &Delivery| {
        f.received_at
            .is_some_and(|t| t < chrono::Utc::now() - retention)
    };
    if found.is_empty() || !found.iter().all(stale) {
        return Ok(false);
    }
    for f in &found {
        store::expire(&state.pool, f.id).await?;
    }
    Ok(true)
}

/// A repeat: record it, start nothing, and name the first delivery's job.
async fn duplicate(
    state: &AppState,
    hook: &HookRow,
    mut d: Delivery,
) -> Result<HttpResponse, ApiError> {
    let first = firsts(state, hook, &d).await?.into_iter().next();
    d.dedup = "duplicate".into();
    d.outcome = "duplicate".into();
    d.job_id = first.as_ref().and_then(|f| f.job_id);
    d.filter_result = None;
    d.mapped_input = None;
    d.error = first
        .as_ref()
        .map(|f| format!("a repeat of delivery {}", f.id));
    record(state, &d).await?;
    Ok(HttpResponse::Ok().json(receipt("duplicate", d.id, d.job_id, d.error.clone())))
}

/// The delivery cannot become a job: record why, and say so (never a 500).
async fn failed(
    state: &AppState,
    mut d: Delivery,
    reason: String,
    code: &'static str,
    problems: Option<Vec<crate::domain::connection::FieldProblem>>,
) -> Result<HttpResponse, ApiError> {
    d.outcome = "failed".into();
    d.dedup = "none".into();
    d.filter_result = d
        .filter_result
        .or(Some("error".into()).filter(|_| code == "filter_failed"));
    d.error = Some(reason.clone());
    record(state, &d).await?;
    Err(match problems {
        Some(p) => ApiError::invalid(code, &p),
        None => ApiError::Unprocessable {
            code,
            detail: format!("{reason} (recorded as delivery {})", d.id),
            errors: Value::Null,
        },
    })
}
