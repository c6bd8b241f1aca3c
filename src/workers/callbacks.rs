//! Delivers callbacks: each due delivery is POSTed as a Standard Webhooks message,
//! retried on the configured schedule (with jitter), then dead-lettered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::callbacks;
use crate::state::AppState;
use crate::storage::callbacks::{self as store, Due, Outcome};
use crate::storage::{jobs, processes};

/// The message for a job: `{type, timestamp, data}` with the job as `GET /jobs/{id}` shows it
/// (`job.successful`...; a queue item's type is `queue_item.successful`...).
async fn message(state: &AppState, due: &Due) -> anyhow::Result<Option<Value>> {
    if let Some(p) = &due.payload {
        return Ok(Some(p.clone()));
    }
    let Some(job) = jobs::get(&state.pool, due.job_id).await? else {
        return Ok(None);
    };
    let kind = format!("{}.{}", job.kind, job.state);
    let timestamp = job.finished_at.unwrap_or(job.updated_at);
    let data = serde_json::to_value(crate::views::jobs::view(job, None))?;
    let payload = json!({"type": kind, "timestamp": timestamp, "data": data});
    store::set_payload(&state.pool, due.id, &due.message_id, &payload).await?;
    Ok(Some(payload))
}

async fn deliver(state: &AppState, due: &Due) -> anyhow::Result<()> {
    let attempt = due.attempts + 1;
    let started = Instant::now();
    let elapsed = |s: Instant| s.elapsed().as_millis().min(i32::MAX as u128) as i32;
    let dead = |error: String| async move {
        tracing::warn!(delivery = %due.id, error, "callback dead-lettered");
        store::record_attempt(
            &state.pool,
            due.id,
            attempt,
            None,
            Some(&error),
            0,
            Outcome::Dead,
        )
        .await
    };
    if let Err(e) = crate::domain::callback_target::check_target(
        &due.url,
        state.settings.allow_private_callbacks,
    ) {
        return Ok(dead(format!("refused target: the URL {e}")).await?);
    }
    let Some(payload) = message(state, due).await? else {
        return Ok(dead("the job no longer exists".into()).await?);
    };
    let job = jobs::get(&state.pool, due.job_id).await?;
    // The trace the job was created in goes on to the receiver.
    let traceparent = job.as_ref().and_then(|j| j.traceparent.clone());
    let secret = match job.and_then(|j| j.process_id) {
        Some(pid) => processes::callback_secret(&state.pool, &state.keys, pid).await?,
        None => None,
    };
    let Some(secret) = secret else {
        return Ok(
            dead("no signing secret: the job's process was deleted or has none".into()).await?,
        );
    };
    let body = serde_json::to_vec(&payload)?;
    let timestamp = chrono::Utc::now().timestamp();
    let signature = callbacks::sign(&secret, &due.message_id, timestamp, &body)?;
    let sent = state
        .callback_http
        .post(&due.url)
        .header("content-type", "application/json")
        .header("webhook-id", &due.message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .headers(
            traceparent
                .and_then(|t| reqwest::header::HeaderValue::from_str(&t).ok())
                .map(|t| {
                    reqwest::header::HeaderMap::from_iter([(
                        reqwest::header::HeaderName::from_static("traceparent"),
                        t,
                    )])
                })
                .unwrap_or_default(),
        )
        .body(body)
        .send()
        .await;
    let (status, error) = match sent {
        Ok(res) if res.status().is_success() => {
            let ms = elapsed(started);
            store::record_attempt(
                &state.pool,
                due.id,
                attempt,
                Some(res.status().as_u16()),
                None,
                ms,
                Outcome::Delivered,
            )
            .await?;
            crate::metrics::callback_attempt("delivered");
            return Ok(());
        }
        Ok(res) => (
            Some(res.status().as_u16()),
            format!("the receiver answered {}", res.status()),
        ),
        Err(e) => (None, format!("{:#}", anyhow::Error::from(e))),
    };
    let ms = elapsed(started);
    let outcome = match callbacks::retry_delay(&state.settings.callbacks, attempt as usize) {
        Some(delay) => Outcome::RetryAt(
            chrono::Utc::now()
                + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero()),
        ),
        None => Outcome::Dead,
    };
    tracing::info!(delivery = %due.id, attempt, ?status, error, ?outcome, "callback attempt failed");
    crate::metrics::callback_attempt(if matches!(outcome, Outcome::Dead) {
        "dead"
    } else {
        "retry"
    });
    store::record_attempt(
        &state.pool,
        due.id,
        attempt,
        status,
        Some(&error),
        ms,
        outcome,
    )
    .await?;
    Ok(())
}

/// One pass. Returns how many deliveries were attempted.
pub async fn try_execute_task(state: &AppState) -> anyhow::Result<usize> {
    let c = &state.settings.callbacks;
    let lease = (c.timeout_ms as f64 / 1000.0) + 30.0;
    let due = store::claim_due(&state.pool, c.batch_size, lease).await?;
    let results = join_all(due.iter().map(|d| deliver(state, d))).await;
    for (d, r) in due.iter().zip(results) {
        if let Err(e) = r {
            tracing::warn!(delivery = %d.id, error = format!("{e:#}"), "callback delivery failed");
        }
    }
    Ok(due.len())
}

/// Runs until cancelled.
pub async fn run(state: Arc<AppState>, stop: CancellationToken) {
    let every = Duration::from_millis(state.settings.callbacks.poll_interval_ms.max(10));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        if let Err(e) = try_execute_task(&state).await {
            tracing::warn!(error = format!("{e:#}"), "callback pass failed");
        }
    }
}
