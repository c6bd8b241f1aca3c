//! Starting a recorded job in Orchestrator, exactly once.
//!
//! Every attempt after the first looks the job up by its `Reference` before sending
//! StartJobs again, because the earlier attempt may have created it (a timeout, a 502
//! after the job was made, a crash). Retries back off with jitter and honour
//! `Retry-After`; after `max_attempts` the job is dead-lettered.

use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::orchestrator::models::{
    ArgumentDefinition, Job, StartJobsRequest, StartProcessDto, StopJobsRequest,
};
use crate::orchestrator::tokens::TokenError;
use crate::orchestrator::{FolderRef, OrchestratorClient, OrchestratorError};
use crate::startup::AppState;
use crate::storage::connections::ConnectionRow;
use crate::storage::jobs::{self, JobRow};
use crate::storage::processes::ProcessRow;

/// How an attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// Orchestrator has the job (created now, or found by Reference).
    Started {
        orchestrator_job_id: i64,
        /// The job as recorded now (None if it had already moved on).
        job: Option<Box<JobRow>>,
    },
    /// Not yet: the job stays queued for another attempt.
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

/// The client for a connection.
pub fn client(state: &AppState, conn: &ConnectionRow) -> OrchestratorClient {
    OrchestratorClient::new(
        state.http.clone(),
        &conn.settings.orchestrator_url,
        conn.settings.tenant_name_header.clone(),
    )
}

/// The release of a process: from the cache, or looked up (and cached) when `fresh`.
pub async fn release(
    state: &AppState,
    process: &ProcessRow,
    conn: &ConnectionRow,
    fresh: bool,
) -> Result<(String, Vec<ArgumentDefinition>), TokenError> {
    if !fresh && let (Some(key), Some(args)) = (process.release_key, &process.release_arguments) {
        return Ok((
            key.to_string(),
            serde_json::from_value(args.clone()).unwrap_or_default(),
        ));
    }
    let sel = &process.release;
    let filter = match (&sel.process_key, &sel.name) {
        (Some(k), _) => format!("ProcessKey eq '{}'", k.replace('\'', "''")),
        (None, Some(n)) => format!("Name eq '{}'", n.replace('\'', "''")),
        (None, None) => String::new(),
    };
    let folder = FolderRef::parse(&process.folder);
    let orch = client(state, conn);
    let found = state
        .tokens
        .with_token(conn, |t| {
            let (orch, folder, filter) = (orch.clone(), folder.clone(), filter.clone());
            async move { orch.releases(&t, &folder, Some(&filter)).await }
        })
        .await?;
    let chosen = found
        .into_iter()
        .filter(|r| sel.version.as_ref().is_none_or(|v| &r.process_version == v))
        .filter(|r| sel.name.as_ref().is_none_or(|n| &r.name == n))
        .max_by(|a, b| version_key(&a.process_version).cmp(&version_key(&b.process_version)));
    let Some(release) = chosen else {
        return Err(TokenError::Orchestrator(OrchestratorError::NotFound {
            status: 404,
            error_code: Some("no_release".into()),
            message: format!(
                "no release in folder `{}` matches {filter}{}",
                process.folder,
                sel.version
                    .as_ref()
                    .map(|v| format!(" version {v}"))
                    .unwrap_or_default()
            ),
        }));
    };
    let key = release.key.clone().unwrap_or_default();
    let args = release.input_arguments().unwrap_or_default();
    let arg_json = serde_json::to_value(&args).expect("definitions serialize");
    jobs::cache_release(
        &state.pool,
        process.id,
        Uuid::parse_str(&key).ok(),
        &arg_json,
    )
    .await?;
    Ok((key, args))
}

fn version_key(v: &str) -> Vec<u64> {
    v.split(['.', '-'])
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}

/// The wait before attempt `attempt + 1`: exponential from 1 s, capped at 5 min,
/// with ±20 % jitter, and never shorter than `retry_after`.
pub fn backoff(attempt: i32, retry_after: Option<Duration>) -> Duration {
    let base = 2f64.powi(attempt.clamp(0, 20) - 1).clamp(1.0, 300.0);
    let jittered = base * rand::rng().random_range(0.8..1.2);
    Duration::from_secs_f64(jittered).max(retry_after.unwrap_or_default())
}

fn request(job: &JobRow, process: &ProcessRow, release_key: &str) -> StartJobsRequest {
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

async fn started(
    state: &AppState,
    job: &JobRow,
    found: &Job,
    how: &str,
) -> Result<Outcome, sqlx::Error> {
    let ledger_state = found.state.to_ascii_lowercase();
    let key = found.key.as_deref().and_then(|k| Uuid::parse_str(k).ok());
    let now = state
        .ledger
        .started(jobs::Started {
            id: job.id,
            orchestrator_job_id: found.id,
            orchestrator_job_key: key,
            state: ledger_state,
            detail: json!({"orchestrator_job_id": found.id, "how": how}),
        })
        .await?;
    Ok(Outcome::Started {
        orchestrator_job_id: found.id,
        job: now.map(Box::new),
    })
}

/// `POST /jobs/{id}/stop` cancelled the job while this start was in flight, so the
/// ledger says stopped and Orchestrator has just created it: stop it there too (`Kill`,
/// as it was never meant to run), and link it to the ledger's job.
async fn stop_if_cancelled(
    state: &AppState,
    conn: &ConnectionRow,
    orch: &OrchestratorClient,
    folder: &FolderRef,
    job: &JobRow,
    found: &Job,
) -> Result<(), sqlx::Error> {
    let key = found.key.as_deref().and_then(|k| Uuid::parse_str(k).ok());
    if !jobs::link_cancelled(&state.pool, job.id, found.id, key).await? {
        return Ok(());
    }
    let (event, detail) = match stop(state, conn, orch, folder, found.id, "Kill").await {
        Ok(()) => (
            "stop_requested",
            json!({"strategy": "Kill", "orchestrator_job_id": found.id,
                "why": "the job was cancelled while its start was in flight"}),
        ),
        Err(e) => {
            tracing::warn!(job = %job.id, orchestrator_job_id = found.id, error = %e,
                "a job cancelled during its start could not be stopped in Orchestrator");
            (
                "stop_failed",
                json!({"orchestrator_job_id": found.id, "message": e.to_string(),
                    "why": "the job was cancelled while its start was in flight"}),
            )
        }
    };
    jobs::event(&state.pool, job.id, event, "dispatcher", Some(detail)).await
}

/// StopJobs (`SoftStop` or `Kill`) for one Orchestrator job.
pub async fn stop(
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
        jobs::mark_final(&state.pool, job.id, "rejected", error.clone()).await?;
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
        jobs::mark_final(&state.pool, job.id, "rejected", error.clone()).await?;
        return Ok(Outcome::Rejected {
            error,
            code: None,
            message: "the connection was deleted".into(),
        });
    };
    attempt_with(state, job, &process, &conn).await
}

/// As `attempt`, with the job's process and connection already loaded (as `/run` has them).
pub async fn attempt_with(
    state: &AppState,
    job: &JobRow,
    process: &ProcessRow,
    conn: &ConnectionRow,
) -> Result<Outcome, sqlx::Error> {
    let max_attempts = state.settings.dispatch.max_attempts;
    let folder = FolderRef::parse(&process.folder);
    let orch = client(state, conn);
    let result: Result<Job, TokenError> = async {
        if job.attempts > 1 {
            // An earlier attempt may have created it: adopt instead of starting twice.
            let found = state
                .tokens
                .with_token(conn, |t| {
                    let (orch, folder, r) = (orch.clone(), folder.clone(), job.reference.clone());
                    async move { orch.job_by_reference(&t, &folder, &r).await }
                })
                .await?;
            if let Some(found) = found {
                return Ok(found);
            }
        }
        let mut fresh = false;
        loop {
            let (key, _) = release(state, process, conn, fresh).await?;
            let body = request(job, process, &key);
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
                    if !fresh && process.release_key.is_some() =>
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
    match result {
        Ok(found) => {
            let outcome = started(
                state,
                job,
                &found,
                if job.attempts > 1 {
                    "adopted or started on retry"
                } else {
                    "started"
                },
            )
            .await?;
            if let Outcome::Started { job: None, .. } = outcome {
                stop_if_cancelled(state, conn, &orch, &folder, job, &found).await?;
            }
            Ok(outcome)
        }
        Err(TokenError::Database(e)) => Err(e),
        Err(TokenError::Orchestrator(e)) if e.is_retryable() => {
            if job.attempts >= max_attempts {
                let error =
                    json!({"message": format!("gave up after {} attempts: {e}", job.attempts)});
                jobs::mark_final(&state.pool, job.id, "dead", error.clone()).await?;
                return Ok(Outcome::Dead { error });
            }
            let wait = backoff(job.attempts, e.retry_after());
            let next = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
            tracing::info!(error = %e, retry_in_ms = wait.as_millis() as u64, "start deferred");
            jobs::mark_retry(&state.pool, job.id, next, &e.to_string()).await?;
            Ok(Outcome::Retry {
                error: e.to_string(),
            })
        }
        Err(TokenError::Orchestrator(e)) => {
            let error = error_json(&e);
            jobs::mark_final(&state.pool, job.id, "rejected", error.clone()).await?;
            Ok(Outcome::Rejected {
                error,
                code: e.error_code().map(String::from),
                message: e.to_string(),
            })
        }
        Err(TokenError::Config(message)) => {
            let error = json!({"message": message});
            jobs::mark_final(&state.pool, job.id, "rejected", error.clone()).await?;
            Ok(Outcome::Rejected {
                error,
                code: None,
                message,
            })
        }
    }
}
