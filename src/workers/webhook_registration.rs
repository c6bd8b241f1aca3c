//! Keeps Orchestrator's job webhook registered, when `public_url` is set: each
//! connection's tenant gets a webhook to `{public_url}/orchestrator/events/{name}`,
//! signed with the connection's `webhook_secret` (generated when it has none). A
//! webhook that was deleted, disabled or changed is put back on the next check.
//!
//! A check also has Orchestrator ping the webhook when nothing was heard from it for
//! half of `webhook_quiet_secs`: the signed `ping` shows the webhooks arrive (so jobs are
//! polled at the slower cadence) even while no job changes state.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::orchestrator::models::{Webhook, WebhookEvent};
use crate::state::AppState;
use crate::storage::connections::{self, ConnectionRow};

/// The job and queue item events the gateway subscribes to. Not `job.created` (nor
/// `queueItem.added`): it would bring one call per job started, telling what the start
/// itself recorded (measured: 0.2 ms of CPU per job between the simulator and the
/// gateway, a sixth of a job's cost).
pub const JOB_EVENTS: [&str; 12] = [
    "job.started",
    "job.stopping",
    "job.terminating",
    "job.completed",
    "job.faulted",
    "job.stopped",
    "job.suspended",
    "job.resumed",
    "queueItem.started",
    "queueItem.completed",
    "queueItem.failed",
    "queueItem.deleted",
];

/// The URL Orchestrator should call for a connection.
pub fn events_url(public_url: &str, connection: &str) -> String {
    format!(
        "{}/orchestrator/events/{connection}",
        public_url.trim_end_matches('/')
    )
}

fn desired(url: &str, conn: &ConnectionRow, secret: &str) -> Webhook {
    Webhook {
        id: None,
        key: None,
        name: format!("uipath-gateway {}", conn.name)
            .chars()
            .take(128)
            .collect(),
        description: Some(
            "Job and queue item events for uipath-gateway (managed; changes are reverted)".into(),
        ),
        url: url.to_string(),
        enabled: true,
        secret: Some(secret.to_string()),
        subscribe_to_all_events: false,
        allow_insecure_ssl: false,
        events: JOB_EVENTS
            .iter()
            .map(|e| WebhookEvent {
                event_type: (*e).into(),
            })
            .collect(),
    }
}

/// What a check did for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    Created,
    Updated,
    Unchanged,
}

/// Makes sure the connection's webhook exists, is enabled and uses our secret.
pub async fn ensure(
    state: &AppState,
    conn: &ConnectionRow,
    public_url: &str,
) -> anyhow::Result<Registration> {
    let secret = connections::ensure_webhook_secret(&state.pool, &state.keys, conn.id, || {
        // Orchestrator takes at most 100 characters; 32 random bytes in Base64 are 44.
        crate::domain::callback_target::generate_secret()
            [crate::domain::callback_target::SECRET_PREFIX.len()..]
            .to_string()
    })
    .await?;
    let url = events_url(public_url, &conn.name);
    let known = connections::webhook_state(&state.pool, conn.id).await?;
    let orch = state.orchestrator(conn);
    let existing = state
        .tokens
        .with_token(conn, |t| {
            let orch = orch.clone();
            async move { orch.webhooks(&t).await }
        })
        .await?;
    let want = desired(&url, conn, &secret);
    let mine = existing
        .iter()
        .find(|w| w.url == url || w.name == want.name);
    let (done, key, id) = match mine {
        Some(w)
            if w.enabled
                && w.url == url
                && w.key.is_some()
                && w.key == known.webhook_key
                && !w.subscribe_to_all_events
                && w.events.len() == JOB_EVENTS.len()
                && JOB_EVENTS.iter().all(|e| {
                    w.events
                        .iter()
                        .any(|x| x.event_type.eq_ignore_ascii_case(e))
                }) =>
        {
            (Registration::Unchanged, w.key.clone(), w.id)
        }
        Some(w) => {
            let id =
                w.id.ok_or_else(|| anyhow::anyhow!("Orchestrator listed a webhook without Id"))?;
            let body = Webhook {
                id: Some(id),
                key: w.key.clone(),
                ..want
            };
            state
                .tokens
                .with_token(conn, |t| {
                    let (orch, body) = (orch.clone(), body.clone());
                    async move { orch.update_webhook(&t, id, &body).await }
                })
                .await?;
            (Registration::Updated, w.key.clone(), Some(id))
        }
        None => {
            let created = state
                .tokens
                .with_token(conn, |t| {
                    let (orch, body) = (orch.clone(), want.clone());
                    async move { orch.create_webhook(&t, &body).await }
                })
                .await?;
            (Registration::Created, created.key, created.id)
        }
    };
    connections::webhook_checked(&state.pool, conn.id, key.as_deref(), None).await?;
    let quiet = chrono::Duration::seconds(state.settings.tracking.webhook_quiet_secs / 2);
    if let Some(id) = id
        && known
            .last_event_at
            .is_none_or(|at| chrono::Utc::now() - at > quiet)
    {
        let pinged = state
            .tokens
            .with_token(conn, |t| {
                let orch = orch.clone();
                async move { orch.ping_webhook(&t, id).await }
            })
            .await;
        // Without the ping, jobs are only polled more often until an event arrives.
        if let Err(e) = pinged {
            tracing::info!(connection = %conn.name, error = %e, "Orchestrator did not ping the webhook");
        }
    }
    Ok(done)
}

/// One pass over every connection. Returns what was done for each (by name).
pub async fn try_execute_task(state: &AppState) -> anyhow::Result<Vec<(String, Registration)>> {
    let Some(public_url) = state.settings.public_url.clone() else {
        return Ok(Vec::new());
    };
    let mut done = Vec::new();
    for conn in connections::list(&state.pool).await? {
        match ensure(state, &conn, &public_url).await {
            Ok(r) => {
                if r != Registration::Unchanged {
                    tracing::info!(connection = %conn.name, registration = ?r, "Orchestrator webhook registered");
                }
                done.push((conn.name.clone(), r));
            }
            Err(e) => {
                let error = format!("{e:#}");
                tracing::warn!(connection = %conn.name, error, "registering the Orchestrator webhook failed");
                connections::webhook_checked(&state.pool, conn.id, None, Some(&error)).await?;
            }
        }
    }
    Ok(done)
}

/// Runs until cancelled (only does anything with `public_url`).
pub async fn run(state: Arc<AppState>, stop: CancellationToken) {
    if state.settings.public_url.is_none() {
        return;
    }
    let every = Duration::from_secs(state.settings.tracking.webhook_check_secs.max(1));
    loop {
        if let Err(e) = try_execute_task(&state).await {
            tracing::warn!(error = format!("{e:#}"), "webhook registration pass failed");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
