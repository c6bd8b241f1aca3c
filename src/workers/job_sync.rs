//! The poller, the safety net under Orchestrator's webhooks: it asks about started,
//! unfinished jobs and records what changed, with the output arguments or the error.
//!
//! - A job is asked about `poll_every_secs` after its last news, or only every
//!   `poll_every_secs_with_webhooks` while its connection's webhooks are healthy.
//! - Small groups (same connection and folder) use the single-job GET, which the
//!   filtered-list limit does not cover. Larger ones are batched into
//!   `$filter=Id eq 1 or Id eq 2 ...` calls, each taken from the tenant's budget
//!   (`poll_budget`, shared by every instance).
//! - A 429 blocks the tenant's lists for `Retry-After` (60 s when absent); jobs that
//!   could not be asked are given back and stay due.
//! - Once a tenant's budget is spent (or blocked), this instance stops claiming its
//!   connections' jobs until a list is free again (at most a minute), instead of claiming
//!   and giving back a whole batch every pass.
//! - A list may leave out the arguments: a job that ended successfully (or faulted)
//!   without them is read once more with the single-job GET.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::dispatch;
use crate::orchestrator::models::Job;
use crate::orchestrator::tokens::TokenError;
use crate::orchestrator::{FolderRef, OrchestratorError};
use crate::startup::AppState;
use crate::storage::connections::{self, ConnectionRow};
use crate::storage::jobs::{self, Observed, PollCadence, ToPoll};
use crate::storage::poll_budget;
use crate::storage::processes::{self, ProcessRow};

/// How long the lists of a tenant pause after a 429 without `Retry-After`.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(60);

/// The longest a connection is left alone after its tenant's budget ran out.
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// Connections whose tenant has no list left, and until when (this instance's view).
#[derive(Debug, Default)]
pub struct Pauses(Mutex<HashMap<Uuid, Instant>>);

impl Pauses {
    /// The connections paused now.
    pub fn current(&self) -> Vec<Uuid> {
        let now = Instant::now();
        let mut paused = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        paused.retain(|_, until| *until > now);
        paused.keys().copied().collect()
    }

    fn pause(&self, connections: impl IntoIterator<Item = Uuid>, wait: Duration) {
        let until = Instant::now() + wait.min(MAX_PAUSE);
        let mut paused = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for id in connections {
            paused.insert(id, until);
        }
    }
}

/// What a JobDto says, in ledger terms.
pub fn observed(job: &Job) -> Observed {
    let output = job
        .output_arguments
        .as_deref()
        .and_then(|s| serde_json::from_str::<Value>(s).ok());
    let error = (job.state == "Faulted").then(|| {
        job.job_error
            .clone()
            .unwrap_or_else(|| json!({"message": job.info}))
    });
    Observed {
        state: job.state.to_ascii_lowercase(),
        output,
        error,
        info: job.info.clone(),
    }
}

/// The key of the tenant a connection reaches: Orchestrator counts its limits per tenant,
/// and two connections may share one.
pub fn tenant_key(conn: &ConnectionRow) -> String {
    format!(
        "{}#{}",
        conn.settings
            .orchestrator_url
            .trim_end_matches('/')
            .to_ascii_lowercase(),
        conn.settings.tenant_name_header.as_deref().unwrap_or("")
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
    let orch = dispatch::client(state, conn);
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
    let orch = dispatch::client(state, conn);
    let filter = ids
        .iter()
        .map(|id| format!("Id eq {id}"))
        .collect::<Vec<_>>()
        .join(" or ");
    state
        .tokens
        .with_token(conn, |t| {
            let (orch, folder, filter) = (orch.clone(), folder.clone(), filter.clone());
            async move { orch.jobs(&t, &folder, &filter, ids.len() as u32).await }
        })
        .await
}

async fn record(state: &AppState, job: &ToPoll, found: &Job) -> anyhow::Result<bool> {
    Ok(jobs::record_state(&state.pool, job.id, &observed(found), "poll").await?)
}

async fn read_and_record(
    state: &AppState,
    conn: &ConnectionRow,
    folder: &FolderRef,
    job: &ToPoll,
) -> anyhow::Result<bool> {
    let found = read_one(state, conn, folder, job.orchestrator_job_id).await?;
    record(state, job, &found).await
}

/// Reads a group one job at a time.
async fn singles(state: &AppState, group: &Group<'_>, report: &mut PassReport) {
    let folder = FolderRef::parse(&group.process.folder);
    // Groups are small (at most `single_get_max`), so they are read all at once.
    let results = join_all(
        group
            .jobs
            .iter()
            .map(|job| read_and_record(state, group.conn, &folder, job)),
    )
    .await;
    report.single_reads += group.jobs.len();
    for r in results {
        match r {
            Ok(true) => report.changed += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = format!("{e:#}"), "polling a job failed"),
        }
    }
}

/// Reads a group with filtered lists, within the tenant's budget. Fails when the budget is
/// spent or blocked, with how long until a list is free when that is known; the rest of
/// the group was given back.
async fn lists(
    state: &AppState,
    group: &Group<'_>,
    report: &mut PassReport,
) -> Result<(), Option<Duration>> {
    let t = &state.settings.tracking;
    let tenant = tenant_key(group.conn);
    let folder = FolderRef::parse(&group.process.folder);
    let chunks: Vec<_> = group.jobs.chunks(t.ids_per_list).collect();
    for (n, chunk) in chunks.iter().enumerate() {
        let give_back = |report: &mut PassReport| {
            let rest: Vec<&ToPoll> = chunks[n..].iter().flat_map(|c| c.iter().copied()).collect();
            report.deferred += rest.len();
            rest
        };
        match poll_budget::take(&state.pool, &tenant, t.list_budget_per_minute).await {
            Ok(Ok(())) => {}
            Ok(Err(wait)) => {
                let rest = give_back(report);
                tracing::debug!(
                    tenant,
                    wait_ms = wait.as_millis() as u64,
                    deferred = rest.len(),
                    "list budget spent"
                );
                if let Err(e) = jobs::unclaim(&state.pool, &rest).await {
                    tracing::warn!(error = %e, "giving jobs back failed");
                }
                return Err(Some(wait));
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the list budget failed");
                let _ = jobs::unclaim(&state.pool, &give_back(report)).await;
                return Err(None);
            }
        }
        let ids: Vec<i64> = chunk.iter().map(|j| j.orchestrator_job_id).collect();
        report.lists += 1;
        let found = match read_list(state, group.conn, &folder, &ids).await {
            Ok(found) => found,
            Err(TokenError::Orchestrator(e @ OrchestratorError::RateLimited { .. })) => {
                let wait = e.retry_after().unwrap_or(DEFAULT_BACKOFF);
                tracing::warn!(
                    tenant,
                    wait_s = wait.as_secs(),
                    "Orchestrator rate-limited the job list; backing off"
                );
                let _ = poll_budget::block(&state.pool, &tenant, wait).await;
                let _ = jobs::unclaim(&state.pool, &give_back(report)).await;
                return Err(Some(wait));
            }
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "listing jobs failed");
                continue;
            }
        };
        let by_id: HashMap<i64, &Job> = found.iter().map(|j| (j.id, j)).collect();
        for job in chunk.iter() {
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
    Ok(())
}

/// One pass.
pub async fn try_execute_task(state: &AppState) -> anyhow::Result<PassReport> {
    let t = &state.settings.tracking;
    let cadence = PollCadence {
        every_secs: t.poll_every_secs,
        with_webhooks_secs: t.poll_every_secs_with_webhooks,
        quiet_secs: t.webhook_quiet_secs,
    };
    let paused = state.poll_pauses.current();
    let due = jobs::claim_for_polling(&state.pool, t.batch_size, cadence, &paused).await?;
    let mut report = PassReport::default();
    if due.is_empty() {
        return Ok(report);
    }
    let mut conns = HashMap::new();
    let mut procs = HashMap::new();
    for job in &due {
        if !conns.contains_key(&job.connection_id)
            && let Some(c) = connections::get(&state.pool, job.connection_id).await?
        {
            conns.insert(job.connection_id, c);
        }
        if !procs.contains_key(&job.process_id)
            && let Some(p) = processes::get_by_id(&state.pool, job.process_id).await?
        {
            procs.insert(job.process_id, p);
        }
    }
    // Group by tenant, then by (connection, folder): a list reads one folder.
    let mut tenants: BTreeMap<String, BTreeMap<(Uuid, String), Group>> = BTreeMap::new();
    for job in &due {
        let (Some(conn), Some(process)) =
            (conns.get(&job.connection_id), procs.get(&job.process_id))
        else {
            continue;
        };
        tenants
            .entry(tenant_key(conn))
            .or_default()
            .entry((conn.id, process.folder.clone()))
            .or_insert_with(|| Group {
                conn,
                process,
                jobs: Vec::new(),
            })
            .jobs
            .push(job);
    }
    for groups in tenants.values() {
        let mut budget_left = true;
        for group in groups.values() {
            if group.jobs.len() <= t.single_get_max {
                singles(state, group, &mut report).await;
            } else if budget_left {
                if let Err(wait) = lists(state, group, &mut report).await {
                    budget_left = false;
                    if let Some(wait) = wait {
                        state
                            .poll_pauses
                            .pause(groups.values().map(|g| g.conn.id), wait);
                    }
                }
            } else {
                report.deferred += group.jobs.len();
                jobs::unclaim(&state.pool, &group.jobs).await?;
            }
        }
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
