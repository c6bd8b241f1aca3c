//! What an attempt's outcome writes: a started job is adopted by the ledger (and stopped
//! again if it was cancelled meanwhile); a start that may pass is deferred, as `queued`
//! or `unknown`, with its backoff; a job out of attempts is dead-lettered.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Outcome;
use crate::app::stop;
use crate::config::Settings;
use crate::orchestrator::models::Job;
use crate::orchestrator::{FolderRef, OrchestratorClient, OrchestratorError};
use crate::state::AppState;
use crate::storage::connections::ConnectionRow;
use crate::storage::job_queue::{self, Deferral};
use crate::storage::jobs::{self, JobRow, JobState};

/// The wait before attempt `attempt + 1`: exponential from 1 s, capped at 5 min,
/// with ±20 % jitter, and never shorter than `retry_after`.
pub fn backoff(attempt: i32, retry_after: Option<Duration>) -> Duration {
    let base = 2f64.powi(attempt.clamp(0, 20) - 1).clamp(1.0, 300.0);
    let jittered = base * rand::rng().random_range(0.8..1.2);
    Duration::from_secs_f64(jittered).max(retry_after.unwrap_or_default())
}

/// The start mark of `job`, which Orchestrator took as `found`.
fn mark(job: &JobRow, found: &Job, how: &str) -> jobs::Started {
    jobs::Started {
        id: job.id,
        orchestrator_job_id: found.id,
        orchestrator_job_key: found.key.as_deref().and_then(|k| Uuid::parse_str(k).ok()),
        state: JobState::parse(&found.state).unwrap_or(JobState::Pending),
        detail: json!({"orchestrator_job_id": found.id, "how": how}),
    }
}

pub(super) async fn started(
    state: &AppState,
    job: &JobRow,
    found: &Job,
    how: &str,
) -> Result<Outcome, sqlx::Error> {
    // A job Orchestrator has just taken is pending (or further along); a state we do not
    // know is recorded as pending, and the poller reads the real one.
    let now = state.ledger.started(mark(job, found, how)).await?;
    Ok(Outcome::Started {
        orchestrator_job_id: found.id,
        job: now.map(Box::new),
    })
}

/// Orchestrator took the job: answers it as started now and writes the mark (with the
/// follow-up of a job cancelled meanwhile) in the ledger's next group commit, after the
/// answer. A mark that cannot be written is left to the lease and the reconciler.
pub(super) fn started_behind(
    state: Arc<AppState>,
    conn: ConnectionRow,
    folder: FolderRef,
    job: &JobRow,
    found: Job,
    how: &'static str,
) -> Outcome {
    let mark = mark(job, &found, how);
    let now = JobRow {
        state: mark.state,
        orchestrator_job_id: Some(mark.orchestrator_job_id),
        orchestrator_job_key: mark.orchestrator_job_key,
        next_attempt_at: None,
        last_error: None,
        updated_at: Utc::now(),
        ..job.clone()
    };
    let orchestrator_job_id = found.id;
    let job = job.clone();
    // Queued before the answer: an Orchestrator event that finds no job by this id waits
    // for the ledger to settle (`Ledger::settled`) and then finds it.
    let written = state.ledger.started_now(mark);
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        let marked = match written.await {
            Ok(None) => {
                let orch = state.orchestrator(&conn);
                stop_if_cancelled(&state, &conn, &orch, &folder, &job, &found).await
            }
            Ok(Some(_)) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = marked {
            tracing::warn!(job = %job.id, error = %e,
                "a start mark could not be written; the job's lease runs out and it is looked up by its Reference");
        }
    }));
    Outcome::Started {
        orchestrator_job_id,
        job: Some(Box::new(now)),
    }
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
pub(super) async fn stop_if_cancelled(
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
    let (event, detail) =
        match stop::in_orchestrator(state, conn, orch, folder, found.id, "Kill").await {
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

/// Where a start that may pass leaves the job, decided before anything is written.
enum Deferment {
    /// Held back, or refused with 429 (or a 503 with Retry-After): the tenant is paused,
    /// Orchestrator did not act, and the job starts when the pause ends.
    Paused { next: DateTime<Utc>, event: Value },
    /// Orchestrator may have it: it is looked up by its Reference before anything else.
    Unknown { next: DateTime<Utc>, reason: String },
    /// Not sent, or refused before acting: Orchestrator does not have the job.
    Failed { next: DateTime<Utc> },
}

fn deferment(settings: &Settings, job: &JobRow, e: &OrchestratorError, strike: bool) -> Deferment {
    let now = Utc::now();
    let at = |wait: Duration| now + chrono::Duration::from_std(wait).unwrap_or_default();
    let message = e.to_string();
    let pause = match e {
        OrchestratorError::Held { wait, reason } => Some((*wait, *reason)),
        OrchestratorError::RateLimited { retry_after } => Some((
            retry_after.unwrap_or(Duration::from_secs(settings.traffic.call_pause_secs)),
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
        let event = json!({"reason": reason, "until": next, "message": message});
        return Deferment::Paused { next, event };
    }
    if matches!(e, OrchestratorError::Ambiguous { .. }) {
        tracing::info!(error = %e, job = %job.id, "start outcome unknown; the job is looked up by its Reference");
        return Deferment::Unknown {
            next: at(Duration::from_secs(settings.dispatch.reconcile_after_secs)),
            reason: format!("the start's outcome is unknown: {message}"),
        };
    }
    let wait = if strike {
        backoff(job.attempts, e.retry_after())
    } else {
        // The tenant's outage: the circuit paces the retries, not the job.
        Duration::from_secs(1) + jitter(Duration::from_secs(1))
    };
    tracing::info!(error = %e, strike, retry_in_ms = wait.as_millis() as u64, "start deferred");
    Deferment::Failed { next: at(wait) }
}

/// A start that failed in a way that may pass: the job waits, as `queued` or, when the
/// start may have reached Orchestrator, as `unknown`. Only a failure of the job itself
/// (its tenant otherwise healthy) spends an attempt; out of attempts, it is `dead`.
pub(super) async fn deferred(
    state: &AppState,
    job: &JobRow,
    orch: &OrchestratorClient,
    e: OrchestratorError,
) -> Result<Outcome, sqlx::Error> {
    let strike = state.traffic.counts_against_job(orch.tenant());
    let message = e.to_string();
    let retry = Outcome::Retry {
        error: message.clone(),
    };
    let deferral = |next, error, strike, event| Deferral {
        id: job.id,
        next,
        error,
        strike,
        event,
    };
    match deferment(&state.settings, job, &e, strike) {
        Deferment::Paused { next, event } => {
            let held = deferral(next, &message, false, Some(("held", event)));
            job_queue::defer(&state.pool, &held).await?;
        }
        Deferment::Unknown { next, reason } => {
            job_queue::mark_unknown(&state.pool, &deferral(next, &reason, strike, None)).await?;
        }
        Deferment::Failed { next } => {
            let strikes =
                job_queue::defer(&state.pool, &deferral(next, &message, strike, None)).await?;
            let max = state.settings.dispatch.max_attempts;
            if strikes.is_some_and(|n| n >= max) {
                let error = json!({"message": format!("gave up after {max} failed attempts: {e}")});
                if jobs::mark_final(&state.pool, job.id, JobState::Dead, error.clone()).await? {
                    return Ok(Outcome::Dead { error });
                }
            }
        }
    }
    Ok(retry)
}

fn jitter(up_to: Duration) -> Duration {
    up_to.mul_f64(rand::rng().random_range(0.0..1.0))
}
