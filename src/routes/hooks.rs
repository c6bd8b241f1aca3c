//! `POST /hooks/{slug}`: a signed delivery from GitHub, Stripe, Slack, Shopify... becomes
//! a job. The delivery is verified over the raw bytes, deduplicated, filtered, mapped to
//! input arguments, and committed with its job before the answer, which never waits on
//! Orchestrator (the start runs in the background, and the dispatcher retries it).

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, post, web};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::app::hook_delivery::{self, Delivered};
use crate::error::{ApiError, Problem};
use crate::hooks::verify;
use crate::state::AppState;
use crate::storage::hooks::{self as store, Delivery, HookRow};
use crate::views::hooks::{HookReceipt, receipt};

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

/// Receive a webhook delivery and start the webhook's process.
#[utoipa::path(
    tag = "hooks",
    params(("slug" = String, Path, description = "The webhook's slug")),
    request_body(content = Object, description = "The provider's payload, signed as its scheme says", content_type = "application/json",
        example = json!({"action": "opened", "pull_request": {"number": 42}, "repository": {"full_name": "acme/app"}})),
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
    let verifier = crate::hooks::verifier(&hook.scheme, &hook.config)
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
    let state = state.into_inner();
    let delivered = hook_delivery::handle(&state, &hook, delivery, &context).await?;
    Ok(render(&hook, delivered))
}

/// The answer to a delivery: 202 (or the webhook's own status and body) with `Location`
/// when a job was recorded; 200 with a receipt or a challenge's answer otherwise.
pub fn render(hook: &HookRow, delivered: Delivered) -> HttpResponse {
    let (job, delivery) = match delivered {
        Delivered::Answer(answer) => return HttpResponse::Ok().json(answer),
        Delivered::Receipt(receipt) => return HttpResponse::Ok().json(receipt),
        Delivered::Accepted { job, delivery } => (job, delivery),
    };
    let status = actix_web::http::StatusCode::from_u16(hook.response.status.unwrap_or(202))
        .unwrap_or(actix_web::http::StatusCode::ACCEPTED);
    let mut res = HttpResponse::build(status);
    res.insert_header((actix_web::http::header::LOCATION, format!("/jobs/{job}")));
    if status == actix_web::http::StatusCode::NO_CONTENT {
        return res.finish();
    }
    match &hook.response.body {
        Some(b) => res.json(b),
        None => res.json(receipt("accepted", delivery, Some(job), None)),
    }
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
        hook_delivery::record(state, &delivery).await?;
    }
    Err(ApiError::SignatureRefused {
        code: refusal.code,
        detail: refusal.detail,
    })
}
