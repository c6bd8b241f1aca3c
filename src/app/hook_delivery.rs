//! A verified webhook delivery becomes a job: deduplicated (by its delivery id, and for
//! schemes that sign no timestamp by its signed bytes), filtered, mapped to input
//! arguments, recorded with its job in one group commit, and started in the background.
//! Shared by `/hooks/{slug}` and the admin's replay.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::app::dispatch;
use crate::domain::arguments;
use crate::domain::problem::{FieldProblem, problem};
use crate::error::ApiError;
use crate::hooks::expr;
use crate::state::AppState;
use crate::storage::hooks::{self as store, Delivery, HookRow};
use crate::storage::jobs;
use crate::views::hooks::{HookReceipt, receipt};

/// What a delivery led to, for the route to answer.
pub enum Delivered {
    /// A job was recorded (and is being started).
    Accepted {
        job: uuid::Uuid,
        delivery: uuid::Uuid,
    },
    /// Nothing started (a repeat, or the filter said no): answered 200 with this.
    Receipt(HookReceipt),
    /// A Slack challenge or a GitHub ping: answered 200 with this.
    Answer(Value),
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
) -> Result<Decision, (FieldProblem, &'static str)> {
    let body = &context["body"];
    if hook.scheme == "slack" && body["type"] == "url_verification" {
        return Ok(Decision::Answer(json!({"challenge": body["challenge"]})));
    }
    if hook.scheme == "github" && context["headers"]["x-github-event"] == "ping" {
        return Ok(Decision::Answer(json!({"status": "pong"})));
    }
    if let Some(f) = &hook.filter {
        let v = expr::eval(f, exprs).map_err(|e| {
            (
                problem(
                    "filter",
                    &format!("the filter `{f}` could not be evaluated over this delivery: {e}"),
                ),
                "filter_failed",
            )
        })?;
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
                        problem(
                            &format!("mapping.{arg}"),
                            &format!(
                                "the expression `{e}` could not be evaluated over this delivery: {err}"
                            ),
                        ),
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

/// Dedup, filter, mapping and the job: shared by deliveries and admin replays.
#[tracing::instrument(skip_all, fields(webhook = %hook.slug, delivery = %delivery.id))]
pub async fn handle(
    state: &Arc<AppState>,
    hook: &HookRow,
    mut delivery: Delivery,
    context: &Value,
) -> Result<Delivered, ApiError> {
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
        Err((p, code)) => {
            let reason = format!("{}: {}", p.field, p.problem);
            return failed(state, delivery, reason, code, Some(vec![p])).await;
        }
    };
    let input = match decision {
        Decision::Answer(answer) => {
            delivery.outcome = "answered".into();
            record(state, &delivery).await?;
            return Ok(Delivered::Answer(answer));
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
            return Ok(Delivered::Receipt(receipt(
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
    // A queue's content is checked against the queue's schema (when known) the same way.
    let (checked, code) = match (&process.queue_schema, &process.resolved) {
        (Some(queue), _) if process.queue.is_some() => {
            let mut m = defaults;
            m.extend(input.clone());
            let problems = queue.content_problems(&m);
            (
                if problems.is_empty() {
                    Ok(m)
                } else {
                    Err(problems)
                },
                "invalid_content",
            )
        }
        (_, Some(release)) if process.queue.is_none() => (
            arguments::validate(&release.arguments, &defaults, &input),
            "invalid_arguments",
        ),
        _ => {
            let mut m = defaults;
            m.extend(input.clone());
            (Ok(m), "invalid_arguments")
        }
    };
    let merged = match checked {
        Ok(m) => m,
        Err(problems) => {
            let reason = problems
                .iter()
                .map(|p| format!("{}: {}", p.field, p.problem))
                .collect::<Vec<_>>()
                .join("; ");
            delivery.mapped_input = Some(Value::Object(input));
            return failed(state, delivery, reason, code, Some(problems)).await;
        }
    };
    delivery.mapped_input = Some(Value::Object(merged.clone()));
    let merged = match process.queue {
        Some(_) => crate::domain::queue::item_input(merged, &Default::default()),
        None => merged,
    };
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
    let bg: Arc<AppState> = state.clone();
    let started = job.clone();
    tokio::spawn(async move {
        if let Err(e) = dispatch::attempt(&bg, &started).await {
            tracing::warn!(job = %started.id, error = %e, "starting a hook's job failed; the dispatcher will retry");
        }
    });
    Ok(Delivered::Accepted {
        job: job.id,
        delivery: delivery.id,
    })
}

/// Records a delivery within `database.write_timeout_ms` (a 503 after that: the
/// delivery may or may not have been recorded, and the sender retries).
pub async fn record(state: &AppState, d: &Delivery) -> Result<bool, ApiError> {
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
) -> Result<Delivered, ApiError> {
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
    Ok(Delivered::Receipt(receipt(
        "duplicate",
        d.id,
        d.job_id,
        d.error.clone(),
    )))
}

/// The delivery cannot become a job: record why, and say so (never a 500).
async fn failed(
    state: &AppState,
    mut d: Delivery,
    reason: String,
    code: &'static str,
    problems: Option<Vec<FieldProblem>>,
) -> Result<Delivered, ApiError> {
    d.outcome = "failed".into();
    d.dedup = "none".into();
    d.filter_result = d
        .filter_result
        .or(Some("error".into()).filter(|_| code == "filter_failed"));
    d.error = Some(reason.clone());
    record(state, &d).await?;
    Err(ApiError::Unprocessable {
        code,
        detail: format!("{reason} (recorded as delivery {})", d.id),
        errors: problems.map_or(Value::Null, |p| {
            serde_json::to_value(p).expect("problems serialize")
        }),
    })
}
