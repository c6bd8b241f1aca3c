//! The reconciler: looks up `unknown` jobs (whose start may have reached Orchestrator)
//! by their Reference, many in one filtered list, before anything else.
//!
//! - Lists go first in the tenant's budget (`Priority::Urgent`): while reconciliation
//!   waits for one, routine polling leaves it a share.
//! - Found: the ledger adopts the Orchestrator job. Not found: the job is queued to be
//!   started again, or, once out of attempts, dead-lettered; this is the only way a job
//!   whose start may have happened is dead-lettered.
//! - A list that cannot be made now (held back, 429, an outage) leaves the jobs
//!   `unknown`; they are never given up on for that.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::dispatch;
use crate::app::queue_definition;
use crate::orchestrator::models::Job;
use crate::orchestrator::odata::{pack, reference_filter};
use crate::orchestrator::queues::QueueItem;
use crate::orchestrator::{FolderRef, OrchestratorError};
use crate::state::AppState;
use crate::storage::connections::ConnectionRow;
use crate::storage::job_queue::{self, Scope};
use crate::storage::jobs::{JobRow, JobState};
use crate::storage::processes::ProcessRow;
use crate::tokens::TokenError;
use crate::traffic::Class;
use crate::traffic::Priority;

/// Jobs claimed per tenant and pass.
const BATCH: i64 = 1_000;

/// How long a job waits after a failed lookup.
const AFTER_FAILURE: Duration = Duration::from_secs(2);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    /// Filtered lists made.
    pub lists: usize,
    /// Jobs found in Orchestrator and adopted.
    pub found: usize,
    /// Jobs Orchestrator does not have, queued again.
    pub requeued: usize,
    /// Jobs Orchestrator does not have and that are out of attempts.
    pub dead: usize,
    /// Jobs left for later (the lookup could not be made now).
    pub later: usize,
}

/// What a lookup by Reference found: jobs, or the queue items of a queue mapping.
enum Found {
    Jobs(Vec<Job>),
    Items(Vec<QueueItem>),
}

async fn look_up(
    state: &AppState,
    conn: &ConnectionRow,
    folder: &FolderRef,
    queue: Option<&ProcessRow>,
    references: &[String],
) -> Result<Found, TokenError> {
    if let Some(mapping) = queue {
        let queue = queue_definition::resolve(state, mapping, conn, false).await?;
        return dispatch::queue_item::by_reference(
            state,
            conn,
            folder,
            queue.id,
            references,
            Priority::Urgent,
        )
        .await
        .map(Found::Items);
    }
    let orch = state.orchestrator(conn);
    state
        .tokens
        .with_token(conn, |t| {
            let (orch, folder) = (orch.clone(), folder.clone());
            async move { orch.jobs_by_reference(&t, &folder, references).await }
        })
        .await
        .map(Found::Jobs)
}

/// Reconciles one group (one connection and folder). Returns false when the tenant
/// cannot be asked now (the rest of the group was left for later).
async fn group(
    state: &AppState,
    conn: &ConnectionRow,
    folder: &str,
    queue: Option<&ProcessRow>,
    jobs: &[&JobRow],
    report: &mut PassReport,
) -> anyhow::Result<bool> {
    let t = &state.settings;
    let folder_ref = FolderRef::parse(folder);
    let orch = state.orchestrator(conn);
    let runs = pack(
        jobs,
        t.tracking.ids_per_list,
        t.traffic.max_filter_chars,
        |j| j.reference.len() + j.reference.matches('\'').count() + 16,
    );
    for (n, run) in runs.iter().enumerate() {
        let references: Vec<String> = run.iter().map(|j| j.reference.clone()).collect();
        debug_assert!(reference_filter(&references).len() <= t.traffic.max_filter_chars);
        match look_up(state, conn, &folder_ref, queue, &references).await {
            Ok(found) => {
                report.lists += 1;
                let mut missing = Vec::new();
                match found {
                    Found::Jobs(found) => {
                        let by_reference: HashMap<&str, &Job> = found
                            .iter()
                            .filter_map(|j| j.reference.as_deref().map(|r| (r, j)))
                            .collect();
                        for job in run.iter() {
                            match by_reference.get(job.reference.as_str()) {
                                Some(found) => {
                                    dispatch::adopt(state, conn, &orch, &folder_ref, job, found)
                                        .await?;
                                    report.found += 1;
                                }
                                None => missing.push(job.id),
                            }
                        }
                    }
                    Found::Items(found) => {
                        for job in run.iter() {
                            match dispatch::queue_item::latest(&found, &job.reference) {
                                Some(item) => {
                                    let how = "found by its Reference after an unknown add";
                                    dispatch::queue_item::started(state, job, &item, how).await?;
                                    report.found += 1;
                                }
                                None => missing.push(job.id),
                            }
                        }
                    }
                }
                let dead =
                    job_queue::not_found(&state.pool, &missing, t.dispatch.max_attempts).await?;
                report.dead += dead as usize;
                report.requeued += missing.len() - dead as usize;
            }
            Err(TokenError::Database(e)) => return Err(e.into()),
            Err(TokenError::Orchestrator(e)) => {
                let paused = matches!(
                    e,
                    OrchestratorError::Held { .. } | OrchestratorError::RateLimited { .. }
                );
                let wait = e.retry_after().unwrap_or(AFTER_FAILURE);
                let rest: Vec<Uuid> = if paused {
                    runs[n..]
                        .iter()
                        .flat_map(|r| r.iter().map(|j| j.id))
                        .collect()
                } else {
                    run.iter().map(|j| j.id).collect()
                };
                let next = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                let message = format!("looking the job up by its Reference failed: {e}");
                job_queue::unknown_later(&state.pool, &rest, next, &message).await?;
                report.later += rest.len();
                if paused {
                    return Ok(false);
                }
                tracing::warn!(error = %e, jobs = rest.len(), "looking jobs up by Reference failed");
            }
            Err(TokenError::Config(message)) => {
                let ids: Vec<Uuid> = run.iter().map(|j| j.id).collect();
                let next = Utc::now() + chrono::Duration::seconds(30);
                job_queue::unknown_later(&state.pool, &ids, next, &message).await?;
                report.later += ids.len();
            }
        }
    }
    Ok(true)
}

/// One pass over every tenant whose lists may go now.
pub async fn try_execute_task(state: &AppState) -> anyhow::Result<PassReport> {
    let mut report = PassReport::default();
    let lease = state.settings.dispatch.lease_secs;
    for (tenant, conns) in super::dispatcher::tenants(state).await? {
        if state.traffic.blocked(&tenant, Class::List).is_some() {
            continue;
        }
        let claimed = job_queue::claim(
            &state.pool,
            JobState::Unknown,
            state.instance_id,
            BATCH,
            lease,
            Scope::Connections(&conns),
        )
        .await?;
        if claimed.is_empty() {
            continue;
        }
        // Group by (connection, folder): a list reads one folder.
        // Queue items are looked up per queue.
        type Key = (Uuid, String, Option<Uuid>);
        type Group<'j> = (
            ConnectionRow,
            Option<std::sync::Arc<ProcessRow>>,
            Vec<&'j JobRow>,
        );
        let mut groups: BTreeMap<Key, Group<'_>> = BTreeMap::new();
        let mut unusable = Vec::new();
        for job in &claimed {
            let process = match job.process_id {
                Some(id) => state.lookups.process_by_id(&state.pool, id).await?,
                None => None,
            };
            let conn = match &process {
                Some(p) => {
                    state
                        .lookups
                        .connection(&state.pool, p.connection_id)
                        .await?
                }
                None => None,
            };
            match (process, conn) {
                (Some(p), Some(c)) => {
                    let queue = p.queue.is_some().then(|| p.clone());
                    groups
                        .entry((c.id, p.folder.clone(), queue.as_ref().map(|q| q.id)))
                        .or_insert_with(|| (c, queue, Vec::new()))
                        .2
                        .push(job)
                }
                _ => unusable.push(job.id),
            }
        }
        if !unusable.is_empty() {
            // Its process is gone, so nobody knows where to look: it stays visible.
            let next = Utc::now() + chrono::Duration::hours(1);
            job_queue::unknown_later(
                &state.pool,
                &unusable,
                next,
                "the job's process was deleted, so it cannot be looked up",
            )
            .await?;
        }
        let mut go_on = true;
        for ((_, folder, _), (conn, queue, jobs)) in &groups {
            if !go_on {
                let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
                job_queue::release(&state.pool, &ids, JobState::Unknown).await?;
                continue;
            }
            go_on = group(state, conn, folder, queue.as_deref(), jobs, &mut report).await?;
        }
    }
    Ok(report)
}

/// Runs until cancelled, passing again at once while there is work.
pub async fn run(state: Arc<AppState>, stop: CancellationToken) {
    let idle = Duration::from_millis(state.settings.dispatch.poll_interval_ms.max(100));
    super::repeat(stop, idle, || async {
        match try_execute_task(&state).await {
            Ok(r) => {
                if r != PassReport::default() {
                    tracing::info!(?r, "reconciler pass");
                }
                r.found + r.requeued + r.dead > 0
            }
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "reconciler pass failed");
                false
            }
        }
    })
    .await
}
