//! Starts queued jobs: those whose first attempt failed in a way that may pass, or was
//! held back by the tenant's traffic governor. Jobs left behind by an instance that died
//! mid-attempt (their lease expired) are handed to the reconciler as `unknown` first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use uuid::Uuid;

use crate::app::dispatch;
use crate::state::AppState;
use crate::storage::connections;
use crate::storage::job_queue::{self, Scope};
use crate::storage::jobs::JobState;
use crate::traffic;

/// The connections of each tenant, by tenant key.
pub async fn tenants(state: &AppState) -> Result<BTreeMap<String, Vec<Uuid>>, sqlx::Error> {
    let mut by_tenant: BTreeMap<String, Vec<Uuid>> = BTreeMap::new();
    for c in connections::list(&state.pool).await? {
        let key = traffic::tenant_key(
            &c.settings.orchestrator_url,
            c.settings.tenant_name_header.as_deref(),
        );
        by_tenant.entry(key).or_default().push(c.id);
    }
    Ok(by_tenant)
}

/// One pass: jobs whose attempt was interrupted become `unknown`; then, tenant by
/// tenant, claims as many due jobs as the tenant's governor allows (none while it is
/// paused or its circuit is open, one for a probe, a growing window after) with
/// `FOR UPDATE SKIP LOCKED` and a lease, and attempts each. Returns how many were
/// attempted.
pub async fn try_execute_task(state: &AppState) -> anyhow::Result<usize> {
    let d = &state.settings.dispatch;
    let interrupted = job_queue::interrupted_to_unknown(&state.pool).await?;
    if interrupted > 0 {
        tracing::warn!(
            jobs = interrupted,
            "start attempts were interrupted; those jobs are looked up by Reference"
        );
    }
    let mut claimed = job_queue::claim(
        &state.pool,
        JobState::Queued,
        state.instance_id,
        d.batch_size,
        d.lease_secs,
        Scope::NoProcess,
    )
    .await?;
    for (tenant, conns) in tenants(state).await? {
        let allowance = state
            .traffic
            .start_allowance(&tenant)
            .min(d.batch_size as usize);
        if allowance == 0 {
            continue;
        }
        claimed.extend(
            job_queue::claim(
                &state.pool,
                JobState::Queued,
                state.instance_id,
                allowance as i64,
                d.lease_secs,
                Scope::Connections(&conns),
            )
            .await?,
        );
    }
    let n = claimed.len();
    let results = join_all(claimed.iter().map(|job| dispatch::attempt(state, job))).await;
    for (job, result) in claimed.iter().zip(results) {
        if let Err(e) = result {
            // The lease runs out and the job is looked up, then taken again.
            tracing::warn!(job = %job.id, error = %e, "start attempt failed on the database");
        }
    }
    Ok(n)
}

/// Runs until cancelled, passing again at once while there is work.
pub async fn run(state: Arc<AppState>, stop: CancellationToken) {
    let idle = Duration::from_millis(state.settings.dispatch.poll_interval_ms);
    super::repeat(stop, idle, || async {
        match try_execute_task(&state).await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "dispatcher pass failed");
                false
            }
        }
    })
    .await
}
