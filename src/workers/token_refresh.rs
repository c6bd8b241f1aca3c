//! Renews tokens before they expire, so no caller waits for a refresh, and warns
//! about Personal Access Tokens that are about to lapse.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::storage::connections;
use crate::tokens::TokenManager;

/// One pass: every healthy connection that has had a token gets `token()`, which
/// refreshes only those past their refresh point. Returns how many were visited.
pub async fn try_execute_task(
    pool: &PgPool,
    tokens: &TokenManager,
    pat_warning_days: i64,
) -> anyhow::Result<usize> {
    let rows = connections::list(pool).await?;
    let mut visited = 0;
    for row in rows
        .iter()
        .filter(|r| r.health != "unhealthy" && r.token_expires_at.is_some())
    {
        if let Some(expiry) = row.settings.expires_at
            && expiry - Utc::now() < chrono::Duration::days(pat_warning_days)
        {
            tracing::warn!(connection = %row.name, expires_at = %expiry, "the Personal Access Token expires soon: replace it");
        }
        if let Err(e) = tokens.token(row).await {
            tracing::warn!(connection = %row.name, error = %e, "background token refresh failed");
        }
        visited += 1;
    }
    Ok(visited)
}

/// Runs `try_execute_task` every `interval` until cancelled.
pub async fn run(
    pool: PgPool,
    tokens: Arc<TokenManager>,
    interval: Duration,
    pat_warning_days: i64,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = try_execute_task(&pool, &tokens, pat_warning_days).await {
                    tracing::warn!(error = format!("{e:#}"), "token refresher pass failed");
                }
            }
        }
    }
}
