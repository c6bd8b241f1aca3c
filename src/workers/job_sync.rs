//! The poller, the safety net under Orchestrator's webhooks: it asks about started,
//! unfinished jobs and records what changed, with the output arguments or the error.
//!
//! - A job is asked about `poll_every_secs` after its last news, or only every
//!   `poll_every_secs_with_webhooks` while its connection's webhooks are healthy.
//! - Small groups (same connection and folder) use the single-job GET, which the
//!   filtered-list limit does not cover. Larger ones are packed into
//!   `$filter=Id eq 1 or Id eq 2 ...` lists (as many ids as a filter may hold), each
//!   taken from the tenant's list budget by the traffic governor (`crate::traffic`),
//!   shared by every instance, after the reconciler's lookups.
//! - Once the budget is spent (or lists are paused after a 429), jobs are read one by
//!   one, at most `single_reads_per_second`, so tracking keeps up without webhooks;
//!   the rest are given back and stay due.
//! - A tenant whose other calls are paused, or whose circuit is open, is left alone.
//! - A list may leave out the arguments: a job that ended successfully (or faulted)
//!   without them is read once more with the single-job GET.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::job_state::JobState;
use crate::orchestrator::models::Job;
use crate::orchestrator::odata::{id_filter, pack};
use crate::orchestrator::{FolderRef, OrchestratorError};
use crate::state::AppState;
use crate::storage::connections::{self, ConnectionRow};
use crate::storage::jobs::{self, Observed, PollCadence, ToPoll};
use crate::storage::processes::{self, ProcessRow};
use crate::tokens::TokenError;
use crate::traffic::{Class, Priority};

/// What a JobDto says, in ledger terms (None for a state we do not know).
pub fn observed(job: &Job) -> Option<Observed> {
    let output = job
        .output_arguments
        .as_deref()
        .and_then(|s| serde_json::from_str::<Value>(s).ok());
    let error = (job.state == "Faulted").then(|| {
        job.job_error
            .clone()
            .unwrap_or_else(|| json!({"message": job.info}))
    });
    Some(Observed {
        state: JobState::parse(&job.state)?,
        output,
        error,
        info: job.info.clone(),
    })
}

/// The key of the tenant a connection reaches: Orchestrator counts its limits per tenant,
/// and two connections may share one.
pub fn tenant_key(conn: &ConnectionRow) -> String {
    crate::traffic::tenant_key(
        &conn.settings.orchestrator_url,
        conn.settings.tenant_name_header.as_deref(),
    )
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    /// Jobs whose state moved forward.
    pub changed: usize,
    /// Single-job GETs made.
    pub single_reads: usize,
    /// Filtered lists made.
    pub lists: usize,
    /// Jobs given back because the tenant's budget was spent or blocked.
    pub deferred: usize,
    /// Of `single_reads`, those made because no list could be (budget spent or paused).
    pub paced_reads: usize,
}

struct Group<'a> {
    conn: &'a ConnectionRow,
    process: &'a ProcessRow,
    jobs: Vec<&'a ToPoll>,
}

async fn read_one(
    state: &AppState,
    conn: &ConnectionRow,
    folder: &FolderRef,
    orch_id: i64,
) -> Result<Job, TokenError> {
    let orch = state.orchestrator(conn);
    state
        .tokens
        .with_token(conn, |t| {
            let (orch, folder) = (orch.clone(), folder.clone());
            async move { orch.job(&t, &folder, orch_id).await }
        })
        .await
}

async fn read_list(
    state: &AppState,
    conn: &ConnectionRow,
    folder: &FolderRef,
    ids: &[i64],
) -> Result<Vec<Job>, TokenError> {
    let orch = state.orchestrator(conn);
    let filter = id_filter(ids);
    state
        .tokens
        .with_token(conn, |t| {
            let (orch, folder, filter) = (orch.clone(), folder.clone(), filter.clone());
            async move {
                orch.jobs(&t, &folder, &filter, ids.len() as u32, Priority::Routine)
                    .await
            }
        })
        .await
}

async fn record(state: &AppState, job: &ToPoll, found: &Job) -> anyhow::Result<bool> {
    let Some(seen) = observed(found) else {
        tracing::warn!(job = %job.id, state = %found.state, "Orchestrator reported a state we do not know; ignored");
        return Ok(false);
    };
    Ok(jobs::record_state(&state.pool, job.id, &seen, "poll").await?)
}

async fn read_and_record(
    state: &AppState,
    conn: &ConnectionRow,
    process: &ProcessRow,
    folder: &FolderRef,
    job: &ToPoll,
) -> anyhow::Result<bool> {
    if process.queue.is_some() {
        return super::item_sync::read_and_record(state, conn, process, job).await;
    }
    let found = read_one(state, conn, folder, job.orchestrator_job_id).await?;
    record(state, job, &found).await
}

/// Reads jobs one at a time (at most `single_get_max` or the paced allowance, so all at
/// once). A job that could not be read is given back and stays due.
async fn singles(
    state: &AppState,
    group: &Group<'_>,
    jobs: &[&ToPoll],
    report: &mut PassReport,
) -> anyhow::Result<()> {
    let folder = FolderRef::parse(&group.process.folder);
    let results = join_all(
        jobs.iter()
            .map(|job| read_and_record(state, group.conn, group.process, &folder, job)),
    )
    .await;
    report.single_reads += jobs.len();
    let mut failed = Vec::new();
    for (job, r) in jobs.iter().zip(results) {
        match r {
            Ok(true) => report.changed += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(error = format!("{e:#}"), "polling a job failed");
                failed.push(*job);
            }
        }
    }
    jobs::unclaim(&state.pool, &failed).await?;
    Ok(())
}

/// Reads a group with filtered lists. Returns the jobs no list could be made for (the
/// budget is spent, or lists are paused).
async fn lists<'a>(
    state: &AppState,
    group: &Group<'a>,
    report: &mut PassReport,
) -> anyhow::Result<Vec<&'a ToPoll>> {
    let t = &state.settings;
    let folder = FolderRef::parse(&group.process.folder);
    let runs = pack(
        &group.jobs,
        t.tracking.ids_per_list,
        t.traffic.max_filter_chars,
        |j| format!("Id eq {}", j.orchestrator_job_id).len(),
    );
    for (n, run) in runs.iter().enumerate() {
        let ids: Vec<i64> = run.iter().map(|j| j.orchestrator_job_id).collect();
        let found = match read_list(state, group.conn, &folder, &ids).await {
            Ok(found) => found,
            Err(TokenError::Orchestrator(
                e @ (OrchestratorError::Held { .. } | OrchestratorError::RateLimited { .. }),
            )) => {
                if matches!(e, OrchestratorError::RateLimited { .. }) {
                    report.lists += 1;
                }
                tracing::debug!(error = %e, "no list for now");
                return Ok(runs[n..].iter().flat_map(|r| r.iter().copied()).collect());
            }
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "listing jobs failed");
                jobs::unclaim(&state.pool, run).await?;
                continue;
            }
        };
        report.lists += 1;
        let by_id: HashMap<i64, &Job> = found.iter().map(|j| (j.id, j)).collect();
        for job in run.iter() {
            let Some(seen) = by_id.get(&job.orchestrator_job_id) else {
                continue;
            };
            // The list may leave the arguments out: read an ended job once more.
            let needs_detail = (seen.state == "Successful" && seen.output_arguments.is_none())
                || (seen.state == "Faulted" && seen.job_error.is_none());
            let result = if needs_detail {
                report.single_reads += 1;
                match read_one(state, group.conn, &folder, job.orchestrator_job_id).await {
                    Ok(full) => record(state, job, &full).await,
                    Err(e) => Err(e.into()),
                }
            } else {
                record(state, job, seen).await
            };
            match result {
                Ok(true) => report.changed += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(job = %job.id, error = format!("{e:#}"), "recording a polled job failed")
                }
            }
        }
    }
    Ok(Vec::new())
}

/// Single reads allowed per pass for one tenant once its lists are spent.
fn paced_reads_per_pass(state: &AppState) -> usize {
    let t = &state.settings.tracking;
    if t.single_reads_per_second == 0 {
        return 0;
    }
    ((t.single_reads_per_second as u64 * t.pass_interval_ms.max(10)) / 1000).max(1) as usize
}

/// One pass for one tenant.
async fn tenant_pass(
    state: &AppState,
    tenant: &str,
    conns: &[Uuid],
    report: &mut PassReport,
) -> anyhow::Result<()> {
    let t = &state.settings.tracking;
    if state.traffic.blocked(tenant, Class::Call).is_some() {
        return Ok(());
    }
    let mut paced = paced_reads_per_pass(state);
    let mut lists_open = state.traffic.lists_open(tenant);
    let limit = if lists_open {
        t.batch_size
    } else {
        paced as i64
    };
    if limit == 0 {
        return Ok(());
    }
    let cadence = PollCadence {
        every_secs: t.poll_every_secs,
        with_webhooks_secs: t.poll_every_secs_with_webhooks,
        quiet_secs: t.webhook_quiet_secs,
    };
    let due = jobs::claim_for_polling(&state.pool, limit, cadence, conns).await?;
    if due.is_empty() {
        return Ok(());
    }
    let mut conn_rows = HashMap::new();
    let mut procs = HashMap::new();
    for job in &due {
        if !conn_rows.contains_key(&job.connection_id)
            && let Some(c) = connections::get(&state.pool, job.connection_id).await?
        {
            conn_rows.insert(job.connection_id, c);
        }
        if !procs.contains_key(&job.process_id)
            && let Some(p) = processes::get_by_id(&state.pool, job.process_id).await?
        {
            procs.insert(job.process_id, p);
        }
    }
    // Group by (connection, folder): a list reads one folder.
    // Queue items are read one by one (by Id, outside the list limit), per queue.
    let mut groups: BTreeMap<(Uuid, String, Option<Uuid>), Group> = BTreeMap::new();
    for job in &due {
        let (Some(conn), Some(process)) = (
            conn_rows.get(&job.connection_id),
            procs.get(&job.process_id),
        ) else {
            continue;
        };
        groups
            .entry((
                conn.id,
                process.folder.clone(),
                process.queue.as_ref().map(|_| process.id),
            ))
            .or_insert_with(|| Group {
                conn,
                process,
                jobs: Vec::new(),
            })
            .jobs
            .push(job);
    }
    for group in groups.values() {
        let left = if group.jobs.len() <= t.single_get_max || group.process.queue.is_some() {
            singles(state, group, &group.jobs, report).await?;
            continue;
        } else if lists_open {
            let left = lists(state, group, report).await?;
            lists_open = left.is_empty();
            left
        } else {
            group.jobs.clone()
        };
        // No list for these: read some one by one, give the rest back.
        let now = left.len().min(paced);
        paced -= now;
        report.paced_reads += now;
        singles(state, group, &left[..now], report).await?;
        report.deferred += left.len() - now;
        jobs::unclaim(&state.pool, &left[now..]).await?;
    }
    Ok(())
}

/// One pass over every tenant.
pub async fn try_execute_task(state: &AppState) -> anyhow::Result<PassReport> {
    let mut report = PassReport::default();
    // Start marks follow `/run`'s answer in the ledger's next group commit: a pass sees
    // every job this instance started before it began.
    state.ledger.settled().await?;
    for (tenant, conns) in super::dispatcher::tenants(state).await? {
        tenant_pass(state, &tenant, &conns, &mut report).await?;
    }
    Ok(report)
}

/// Runs until cancelled.
pub async fn run(state: Arc<AppState>, stop: CancellationToken) {
    let every = Duration::from_millis(state.settings.tracking.pass_interval_ms.max(10));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match try_execute_task(&state).await {
            Ok(r) if r != PassReport::default() => tracing::debug!(?r, "poller pass"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = format!("{e:#}"), "poller pass failed"),
        }
    }
}
