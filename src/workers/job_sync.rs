//! The poller: asks Orchestrator about started, unfinished jobs, one `GET /odata/Jobs({id})`
//! each (the single-job read, which the filtered-list rate limit does not cover), and
//! records what changed, with the output arguments or the error.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::dispatch;
use crate::orchestrator::FolderRef;
use crate::orchestrator::models::Job;
use crate::startup::AppState;
use crate::storage::jobs::{self, Observed, ToPoll};
use crate::storage::{connections, processes};

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

async fn poll_one(state: &AppState, job: &ToPoll) -> anyhow::Result<bool> {
    let Some(process) =
        processes::get_by_id(&state.pool, job.process_id.unwrap_or_default()).await?
    else {
        return Ok(false);
    };
    let Some(conn) = connections::get(&state.pool, process.connection_id).await? else {
        return Ok(false);
    };
    let orch = dispatch::client(state, &conn);
    let folder = FolderRef::parse(&process.folder);
    let found = state
        .tokens
        .with_token(&conn, |t| {
            let (orch, folder) = (orch.clone(), folder.clone());
            async move { orch.job(&t, &folder, job.orchestrator_job_id).await }
        })
        .await?;
    Ok(jobs::record_state(&state.pool, job.id, &observed(&found), "poll").await?)
}

/// One pass. Returns how many jobs changed state.
pub async fn try_execute_task(state: &AppState) -> anyhow::Result<usize> {
    let t = &state.settings.tracking;
    let due = jobs::claim_for_polling(&state.pool, t.batch_size, t.poll_every_secs).await?;
    let results = join_all(due.iter().map(|j| poll_one(state, j))).await;
    let mut changed = 0;
    for (job, r) in due.iter().zip(results) {
        match r {
            Ok(true) => changed += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(job = %job.id, error = format!("{e:#}"), "polling a job failed")
            }
        }
    }
    Ok(changed)
}

/// Runs until cancelled.
pub async fn run(state: Arc<AppState>, stop: CancellationToken) {
    let every = Duration::from_secs(state.settings.tracking.poll_every_secs.max(1) as u64);
    loop {
        // Wait first: a job just started has nothing new to tell yet.
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        if let Err(e) = try_execute_task(&state).await {
            tracing::warn!(error = format!("{e:#}"), "poller pass failed");
        }
    }
}
