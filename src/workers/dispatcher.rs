//! Starts queued jobs: those whose first attempt failed in a way that may pass, and
//! those left behind by an instance that died mid-attempt (their lease expired).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use crate::dispatch;
use crate::startup::AppState;
use crate::storage::jobs;

/// One pass: claims due jobs (`FOR UPDATE SKIP LOCKED`, with a lease) and attempts
/// each. Returns how many were attempted.
pub async fn try_execute_task(state: &AppState) -> anyhow::Result<usize> {
    let d = &state.settings.dispatch;
    let claimed =
        jobs::claim_due(&state.pool, state.instance_id, d.batch_size, d.lease_secs).await?;
    let n = claimed.len();
    let results = join_all(claimed.iter().map(|job| dispatch::attempt(state, job))).await;
    for (job, result) in claimed.iter().zip(results) {
        if let Err(e) = result {
            // The lease runs out and the job is taken again.
            tracing::warn!(job = %job.id, error = %e, "start attempt failed on the database");
        }
    }
    Ok(n)
}

/// Runs until cancelled, passing again at once while there is work.
pub async fn run(state: Arc<AppState>, stop: CancellationToken) {
    let idle = Duration::from_millis(state.settings.dispatch.poll_interval_ms);
    tokio::select! {
        () = stop.cancelled() => return,
        () = tokio::time::sleep(idle) => {}
    }
    loop {
        let busy = match try_execute_task(&state).await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "dispatcher pass failed");
                false
            }
        };
        if !busy {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(idle) => {}
            }
        } else if stop.is_cancelled() {
            return;
        }
    }
}
