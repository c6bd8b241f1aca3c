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

use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::orchestrator::models::{
    ArgumentDefinition, Job, StartJobsRequest, StartProcessDto, StopJobsRequest,
};
use crate::orchestrator::{FolderRef, OrchestratorClient, OrchestratorError};
use crate::state::AppState;
use crate::storage::connections::ConnectionRow;
use crate::storage::job_queue::{self, Deferral};
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

/// The client for a connection.
pub fn client(state: &AppState, conn: &ConnectionRow) -> OrchestratorClient {
    OrchestratorClient::new(
        state.http.clone(),
        &conn.settings.orchestrator_url,
        conn.settings.tenant_name_header.clone(),
    )
    .governed(state.traffic.clone())
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
    crate::storage::processes::cache_release(
        &state.pool,
        process.id,
        Uuid::parse_str(&key).ok(),
        &arg_json,
    )
    .await?;
    // This instance's copy of the process is now stale; the change notification would
    // say so too, but maybe only after the next request read the copy.
    state.lookups.clear();
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
    // A job Orchestrator has just taken is pending (or further along); a state we do not
    // know is recorded as pending, and the poller reads the real one.
    let ledger_state = JobState::parse(&found.state).unwrap_or(JobState::Pending);
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

/// A lookup by Reference found the job in Orchestrator: the ledger adopts it (and, if it
/// was stopped meanwhile, it is stopped there too).
pub async fn adopt(
    state: &AppState,
    conn: &ConnectionRow,
    orch: &OrchestratorClient,
    folder: &FolderRef,
    job: &JobRow,
    found: &Job,
) -> Result<Outcome, sqlx::Error> {
    let outcome = started(
        state,
        job,
        found,
        "found by its Reference after an unknown start",
    )
    .await?;
    if let Outcome::Started { job: None, .. } = outcome {
        stop_if_cancelled(state, conn, orch, folder, job, found).await?;
    }
    Ok(outcome)
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

/// A start that failed in a way that may pass: the job waits, as `queued` or, when the
/// start may have reached Orchestrator, as `unknown`. Only a failure of the job itself
/// (its tenant otherwise healthy) spends an attempt.
async fn deferred(
    state: &AppState,
    job: &JobRow,
    orch: &OrchestratorClient,
    e: OrchestratorError,
) -> Result<Outcome, sqlx::Error> {
    let d = &state.settings.dispatch;
    let now = Utc::now();
    let at = |wait: Duration| now + chrono::Duration::from_std(wait).unwrap_or_default();
    let message = e.to_string();
    let retry = Outcome::Retry {
        error: message.clone(),
    };
    // Held back, or refused with 429 (or a 503 with Retry-After): the tenant is paused,
    // Orchestrator did not act, and the job starts when the pause ends.
    let pause = match &e {
        OrchestratorError::Held { wait, reason } => Some((*wait, *reason)),
        OrchestratorError::RateLimited { retry_after } => Some((
            retry_after.unwrap_or(Duration::from_secs(state.settings.traffic.call_pause_secs)),
            "rate_limited",
        )),
        OrchestratorError::Unavailable {
            retry_after: Some(wait),
            ..
        } => Some((*wait, "retry_after")),
        _ => None,
    };
    if let Some((wait, reason)) = pause {
        let next = at(wait + jitter(Duration::from_millis(250)));
        let detail = json!({"reason": reason, "until": next, "message": message});
        job_queue::defer(
            &state.pool,
            &Deferral {
                id: job.id,
                next,
                error: &message,
                strike: false,
                event: Some(("held", detail)),
            },
        )
        .await?;
        return Ok(retry);
    }
    let strike = state.traffic.counts_against_job(orch.tenant());
    if matches!(e, OrchestratorError::Ambiguous { .. }) {
        // Orchestrator may have it: look it up before anything else.
        let next = at(Duration::from_secs(d.reconcile_after_secs));
        tracing::info!(error = %e, job = %job.id, "start outcome unknown; the job is looked up by its Reference");
        let reason = format!("the start's outcome is unknown: {message}");
        job_queue::mark_unknown(
            &state.pool,
            &Deferral {
                id: job.id,
                next,
                error: &reason,
                strike,
                event: None,
            },
        )
        .await?;
        return Ok(retry);
    }
    // Not sent, or refused before acting: Orchestrator does not have the job.
    let wait = if strike {
        backoff(job.attempts, e.retry_after())
    } else {
        // The tenant's outage: the circuit paces the retries, not the job.
        Duration::from_secs(1) + jitter(Duration::from_secs(1))
    };
    let next = at(wait);
    tracing::info!(error = %e, strike, retry_in_ms = wait.as_millis() as u64, "start deferred");
    let strikes = job_queue::defer(
        &state.pool,
        &Deferral {
            id: job.id,
            next,
            error: &message,
            strike,
            event: None,
        },
    )
    .await?;
    if strikes.is_some_and(|n| n >= d.max_attempts) {
        let error =
            json!({"message": format!("gave up after {} failed attempts: {e}", d.max_attempts)});
        if jobs::mark_final(&state.pool, job.id, JobState::Dead, error.clone()).await? {
            return Ok(Outcome::Dead { error });
        }
    }
    Ok(retry)
}

fn jitter(up_to: Duration) -> Duration {
    up_to.mul_f64(rand::rng().random_range(0.0..1.0))
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
    attempt_with(state, job, &process, &conn).await
}

/// As `attempt`, with the job's process and connection already loaded (as `/run` has them).
#[tracing::instrument(skip_all, fields(job = %job.id, attempt = job.attempts))]
pub async fn attempt_with(
    state: &AppState,
    job: &JobRow,
    process: &ProcessRow,
    conn: &ConnectionRow,
) -> Result<Outcome, sqlx::Error> {
    let folder = FolderRef::parse(&process.folder);
    let orch = client(state, conn);
    let result: Result<Job, TokenError> = async {
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
                    "started on retry"
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
            deferred(state, job, &orch, e).await
        }
        Err(TokenError::Orchestrator(e)) => {
            let error = error_json(&e);
            jobs::mark_final(&state.pool, job.id, JobState::Rejected, error.clone()).await?;
            Ok(Outcome::Rejected {
                error,
                code: e.error_code().map(String::from),
                message: e.to_string(),
            })
        }
        Err(TokenError::Config(message)) => {
            let error = json!({"message": message});
            jobs::mark_final(&state.pool, job.id, JobState::Rejected, error.clone()).await?;
            Ok(Outcome::Rejected {
                error,
                code: None,
                message,
            })
        }
    }
}
