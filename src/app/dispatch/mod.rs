//! Starting a recorded job in Orchestrator, exactly once.
//!
//! Every start sends the job's own `Reference`. A start whose outcome is unknown (a
//! timeout, a 5xx after sending) leaves the job `unknown`: it is never started again
//! until a lookup by Reference has answered for it (`workers::reconciler`).
//!
//! Every call goes through the tenant's traffic governor: a call it holds back, a 429
//! and a tenant-wide outage defer the job without spending an attempt. Only the job's
//! own failures count; after `max_attempts` of them the job is dead-lettered, which
//! happens only to a job Orchestrator certainly does not have.

mod outcome;
pub mod queue_item;

use std::sync::Arc;

use serde_json::{Value, json};
use uuid::Uuid;

pub use self::outcome::{adopt, backoff};
use self::outcome::{deferred, started, started_behind, stop_if_cancelled};
use crate::app::release;
use crate::orchestrator::models::{Job, StartJobsRequest, StartProcessDto};
use crate::orchestrator::{FolderRef, OrchestratorError};
use crate::state::AppState;
use crate::storage::connections::ConnectionRow;
use crate::storage::jobs::{self, JobRow, JobState};
use crate::storage::processes::ProcessRow;
use crate::tokens::TokenError;

/// How an attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// Orchestrator has the job (created now, or found by Reference).
    Started {
        orchestrator_job_id: i64,
        /// The job as recorded now (None if it had already moved on).
        job: Option<Box<JobRow>>,
    },
    /// Not yet: the job stays queued for another attempt (or `unknown`, to be looked up).
    Retry { error: String },
    /// Orchestrator refused it for good; the job is `rejected`.
    Rejected {
        error: Value,
        code: Option<String>,
        message: String,
    },
    /// Out of attempts; the job is `dead`.
    Dead { error: Value },
}

fn request(job: &JobRow, process: &ProcessRow, release_key: Uuid) -> StartJobsRequest {
    let o = &process.job_options;
    StartJobsRequest {
        start_info: StartProcessDto {
            release_key: release_key.to_string(),
            strategy: o
                .strategy
                .clone()
                .unwrap_or_else(|| "ModernJobsCount".into()),
            jobs_count: o.jobs_count.unwrap_or(1),
            input_arguments: Some(job.input.to_string()),
            reference: Some(job.reference.clone()),
            runtime_type: o.runtime_type.clone(),
            job_priority: o.priority.clone(),
            robot_ids: o.robot_ids.clone(),
            machine_session_ids: o.machine_session_ids.clone(),
        },
    }
}

fn error_json(e: &OrchestratorError) -> Value {
    json!({"message": e.to_string(), "orchestrator_error_code": e.error_code()})
}

/// One attempt to start `job`. The job must be leased to this instance.
#[tracing::instrument(skip_all, fields(job = %job.id, attempt = job.attempts))]
pub async fn attempt(state: &AppState, job: &JobRow) -> Result<Outcome, sqlx::Error> {
    let process = match job.process_id {
        Some(id) => state.lookups.process_by_id(&state.pool, id).await?,
        None => None,
    };
    let Some(process) = process else {
        let error = json!({"message": "the process was deleted before the job could start"});
        jobs::mark_final(&state.pool, job.id, JobState::Rejected, error.clone()).await?;
        return Ok(Outcome::Rejected {
            error,
            code: None,
            message: "the process was deleted".into(),
        });
    };
    let Some(conn) = state
        .lookups
        .connection(&state.pool, process.connection_id)
        .await?
    else {
        let error = json!({"message": "the connection was deleted"});
        jobs::mark_final(&state.pool, job.id, JobState::Rejected, error.clone()).await?;
        return Ok(Outcome::Rejected {
            error,
            code: None,
            message: "the connection was deleted".into(),
        });
    };
    attempt_with(state, job, &process, &conn, None).await
}

/// `/run`'s first attempt, with the job's process and connection already loaded: as
/// `attempt`, but a job Orchestrator took is answered **before** its start mark is
/// committed. The mark follows in the ledger's next group commit; if it is never written
/// (a crash, the database gone), the job's lease runs out, it turns `unknown`, and the
/// reconciler adopts it by its Reference: never started twice. So the answer path holds
/// one durable commit, the job's own. (A queue item's add waits for its mark.)
pub async fn attempt_answering(
    state: &Arc<AppState>,
    job: &JobRow,
    process: &ProcessRow,
    conn: &ConnectionRow,
) -> Result<Outcome, sqlx::Error> {
    attempt_with(state, job, process, conn, Some(state)).await
}

/// As `attempt`, with the job's process and connection loaded. With `behind`, a started
/// job's mark is written after the answer (`attempt_answering`).
#[tracing::instrument(skip_all, fields(job = %job.id, attempt = job.attempts))]
async fn attempt_with(
    state: &AppState,
    job: &JobRow,
    process: &ProcessRow,
    conn: &ConnectionRow,
    behind: Option<&Arc<AppState>>,
) -> Result<Outcome, sqlx::Error> {
    if process.queue.is_some() {
        return queue_item::attempt(state, job, process, conn).await;
    }
    let folder = FolderRef::parse(&process.folder);
    let orch = state.orchestrator(conn);
    let result: Result<Job, TokenError> = async {
        let mut fresh = false;
        loop {
            let release = release::resolve(state, process, conn, fresh).await?;
            let body = request(job, process, release.key);
            let res = state
                .tokens
                .with_token(conn, |t| {
                    let (orch, folder, body) = (orch.clone(), folder.clone(), body.clone());
                    async move { orch.start_jobs(&t, &folder, &body).await }
                })
                .await;
            match res {
                // A redeploy changes the ReleaseKey: look it up once more.
                Err(TokenError::Orchestrator(OrchestratorError::NotFound { .. }))
                    if !fresh && process.resolved.is_some() =>
                {
                    fresh = true
                }
                Err(e) => return Err(e),
                Ok(created) => {
                    return created.into_iter().next().ok_or_else(|| {
                        TokenError::Orchestrator(OrchestratorError::Ambiguous {
                            status: Some(201),
                            message: "StartJobs created no job".into(),
                        })
                    });
                }
            }
        }
    }
    .await;
    let how = if job.attempts > 1 {
        "started on retry"
    } else {
        "started"
    };
    match result {
        Ok(found) if behind.is_some() => {
            let state = behind.map(Arc::clone).unwrap_or_else(|| unreachable!());
            Ok(started_behind(state, conn.clone(), folder, job, found, how))
        }
        Ok(found) => {
            let outcome = started(state, job, &found, how).await?;
            if let Outcome::Started { job: None, .. } = outcome {
                stop_if_cancelled(state, conn, &orch, &folder, job, &found).await?;
            }
            Ok(outcome)
        }
        Err(e) => failed(state, job, &orch, e).await,
    }
}

/// A start (or add) that failed: deferred when it may pass, else the job is `rejected`.
pub(super) async fn failed(
    state: &AppState,
    job: &JobRow,
    orch: &crate::orchestrator::OrchestratorClient,
    e: TokenError,
) -> Result<Outcome, sqlx::Error> {
    let (error, code, message) = match e {
        TokenError::Database(e) => return Err(e),
        TokenError::Orchestrator(e) if e.is_retryable() => {
            return deferred(state, job, orch, e).await;
        }
        TokenError::Orchestrator(e) => (
            error_json(&e),
            e.error_code().map(String::from),
            e.to_string(),
        ),
        TokenError::Config(message) => (json!({"message": message}), None, message),
    };
    jobs::mark_final(&state.pool, job.id, JobState::Rejected, error.clone()).await?;
    Ok(Outcome::Rejected {
        error,
        code,
        message,
    })
}
