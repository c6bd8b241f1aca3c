//! Stopping a job: one that has not reached Orchestrator is cancelled in the ledger; one
//! that has (or whose start was in flight) is stopped there, with a `stop_requested` entry.

use crate::error::ApiError;
use crate::orchestrator::models::StopJobsRequest;
use crate::orchestrator::{FolderRef, OrchestratorClient};
use crate::state::AppState;
use crate::storage::connections::ConnectionRow;
use crate::storage::jobs::{self as store, JobRow, JobState};
use crate::storage::{connections, processes};
use crate::tokens::TokenError;

/// Stops `job` with `strategy` (`SoftStop` or `Kill`); the job as it then stands.
#[tracing::instrument(skip_all, fields(job = %job.id, strategy))]
pub async fn stop(state: &AppState, job: JobRow, strategy: &str) -> Result<JobRow, ApiError> {
    let id = job.id;
    let waiting = job.state.is_waiting();
    let cancelled = waiting
        && store::mark_final(
            &state.pool,
            job.id,
            JobState::Stopped,
            serde_json::json!({"message": "cancelled before it started"}),
        )
        .await?;
    if !cancelled {
        // In Orchestrator, or started there meanwhile (its start was in flight when the
        // job was read): stop it there.
        let job = if waiting {
            store::get(&state.pool, job.id).await?.unwrap_or(job)
        } else {
            job
        };
        let orch_id = job.orchestrator_job_id.filter(|_| !job.state.is_terminal());
        let Some(orch_id) = orch_id else {
            return Err(ApiError::Conflict {
                code: "job_ended",
                detail: format!("the job has already ended ({})", job.state),
            });
        };
        if job.kind == "queue_item" {
            return Err(ApiError::Conflict {
                code: "not_stoppable",
                detail: format!(
                    "queue item {orch_id} is in its Orchestrator queue: the gateway cannot take it back \
                     (an operator can delete a New item in Orchestrator); only an item not yet added \
                     can be cancelled here"
                ),
            });
        }
        let process = processes::get_by_id(&state.pool, job.process_id.unwrap_or_default())
            .await?
            .ok_or_else(|| ApiError::Conflict {
                code: "process_gone",
                detail: "the job's process was deleted".into(),
            })?;
        let conn = connections::get(&state.pool, process.connection_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the process's connection is gone"))?;
        let orch = state.orchestrator(&conn);
        let folder = FolderRef::parse(&process.folder);
        in_orchestrator(state, &conn, &orch, &folder, orch_id, strategy)
            .await
            .map_err(super::upstream)?;
        store::event(
            &state.pool,
            job.id,
            "stop_requested",
            "api",
            Some(serde_json::json!({"strategy": strategy})),
        )
        .await?;
    }
    store::get(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found("job_not_found", format!("no job {id}")))
}

/// StopJobs (`SoftStop` or `Kill`) for one Orchestrator job.
pub async fn in_orchestrator(
    state: &AppState,
    conn: &ConnectionRow,
    orch: &OrchestratorClient,
    folder: &FolderRef,
    orchestrator_job_id: i64,
    strategy: &str,
) -> Result<(), TokenError> {
    let request = StopJobsRequest {
        strategy: strategy.into(),
        job_ids: vec![orchestrator_job_id],
    };
    state
        .tokens
        .with_token(conn, |t| {
            let (orch, folder, request) = (orch.clone(), folder.clone(), request.clone());
            async move { orch.stop_jobs(&t, &folder, &request).await }
        })
        .await
}
