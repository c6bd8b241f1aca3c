//! One way in for a job: `/run`, webhook deliveries and replays all build their job with
//! `new_job`, record it through the ledger's group commit (claiming an `Idempotency-Key`
//! in the same statement when there is one), and start it with `start_within`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::app::dispatch::{self, Outcome};
use crate::app::{queue_definition, release};
use crate::domain::arguments;
use crate::domain::callback_target::check_target;
use crate::domain::problem::FieldProblem;
use crate::domain::queue::{self, ItemOptions};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::connections::ConnectionRow;
use crate::storage::jobs::{self as store, Claimed, ClaimedJob, IdempotencyClaim, JobRow, NewJob};
use crate::storage::processes::ProcessRow;

/// The one place a job is made: a new id, the process, where it came from, its
/// arguments (merged and checked), where its callback goes, and what it replays.
pub fn new_job(
    process: &ProcessRow,
    source: &'static str,
    source_detail: Option<String>,
    input: Map<String, Value>,
    callback_url: Option<String>,
    replay_of: Option<Uuid>,
) -> NewJob {
    NewJob {
        id: Uuid::new_v4(),
        process_id: process.id,
        process_name: process.name.clone(),
        source,
        source_detail,
        input: Value::Object(input),
        callback_url: callback_url.or_else(|| process.callback_url.clone()),
        replay_of,
        reference: None,
        traceparent: crate::otel::current_traceparent(),
        kind: if process.queue.is_some() {
            "queue_item"
        } else {
            "job"
        },
    }
}

/// A `/run` call, as the route read it.
pub struct Call {
    /// The process's name.
    pub process: String,
    /// The body: input arguments, merged over the process's defaults.
    pub input: Map<String, Value>,
    /// The API key that calls.
    pub caller: Uuid,
    /// Where to POST the job when it ends (else the process's own).
    pub callback_url: Option<String>,
    /// The `Idempotency-Key` and the hash of the request it came with.
    pub idempotency: Option<(String, Vec<u8>)>,
    /// Seconds to wait for the job to end.
    pub wait: Option<u32>,
    /// For `POST /queues/{name}`: how the item is added (then `process` names a queue
    /// mapping and `input` is the item's content).
    pub item: Option<ItemCall>,
}

/// What `POST /queues/{name}` says besides the content.
pub struct ItemCall {
    /// Priority and deadlines.
    pub options: ItemOptions,
    /// The caller's Reference for the item (else the gateway's own, `ugw-<id>`).
    pub reference: Option<String>,
}

/// `POST /run/{process}`: finds the process, checks the callback target and the
/// arguments, records and starts the job, and waits for its end if asked.
#[tracing::instrument(skip_all, fields(process = %call.process, job = tracing::field::Empty))]
pub async fn run(state: &Arc<AppState>, call: Call) -> Result<Submitted, ApiError> {
    let queue = call.item.is_some();
    let mut process = state
        .lookups
        .process(&state.pool, &call.process)
        .await?
        .filter(|p| p.queue.is_some() == queue)
        .ok_or_else(|| match queue {
            false => ApiError::not_found(
                "process_not_found",
                format!("no process named `{}`", call.process),
            ),
            true => ApiError::not_found(
                "queue_not_found",
                format!("no queue mapping named `{}`", call.process),
            ),
        })?;
    if let Some(url) = &call.callback_url {
        check_target(url, state.settings.allow_private_callbacks).map_err(|problem| {
            ApiError::invalid(
                "invalid_callback_url",
                &[FieldProblem {
                    field: "callback_url".into(),
                    problem,
                }],
            )
        })?;
    }
    let conn = state
        .lookups
        .connection(&state.pool, process.connection_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the process's connection is gone"))?;
    let merged = match &call.item {
        None => checked_arguments(state, &mut process, &conn, call.input).await?,
        Some(item) => {
            checked_content(state, &mut process, &conn, call.input, &item.options).await?
        }
    };
    let mut job = new_job(
        &process,
        "api",
        Some(call.caller.to_string()),
        merged,
        call.callback_url,
        None,
    );
    job.reference = call.item.and_then(|i| i.reference);
    let claim = call
        .idempotency
        .map(|(key, request_hash)| IdempotencyClaim {
            scope: call.caller.to_string(),
            key,
            request_hash,
        });
    // The wait a caller asked for, capped by the process's maximum.
    let wait = call
        .wait
        .map(|w| w.min(process.max_wait_seconds.max(0) as u32))
        .filter(|w| *w > 0);
    let submitted = submit(state, job, claim, process, Some(conn)).await?;
    let Some(wait) = wait.map(|w| Duration::from_secs(w.into())) else {
        return Ok(submitted);
    };
    let ended = |job| state.jobs_ended.until_end(&state.pool, job, wait);
    Ok(match submitted {
        Submitted::New(job) => Submitted::New(ended(job).await),
        Submitted::Repeat(job) => Submitted::Repeat(ended(job).await),
    })
}

/// What a submission led to.
pub enum Submitted {
    /// A new job, recorded and (as far as it went within the deadline) started.
    New(JobRow),
    /// The `Idempotency-Key` was used before with the same request: its job.
    Repeat(JobRow),
}

/// The merged arguments of a call, checked against the release's definitions (looked up
/// once and cached; a lookup Orchestrator cannot answer now records the job unchecked,
/// and the start says what is wrong). `process` keeps the lookup, so the start reuses it.
pub async fn checked_arguments(
    state: &AppState,
    process: &mut Arc<ProcessRow>,
    conn: &ConnectionRow,
    input: Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    let defaults = process
        .default_input
        .as_object()
        .cloned()
        .unwrap_or_default();
    match release::resolve(state, process, conn, false).await {
        Ok(release) => {
            let checked = arguments::validate(&release.arguments, &defaults, &input)
                .map_err(|problems| ApiError::invalid("invalid_arguments", &problems));
            // A release looked up just now is kept, so the start does not look again.
            if let Cow::Owned(looked_up) = release {
                Arc::make_mut(process).resolved = Some(looked_up);
            }
            checked
        }
        Err(e) => {
            tracing::info!(error = %e, "release lookup failed; the job is recorded unchecked");
            let mut merged = defaults;
            merged.extend(input);
            Ok(merged)
        }
    }
}

/// A queue item's content merged over the mapping's default content, with its options,
/// checked against the queue's `SpecificDataJsonSchema` (looked up once and cached; a
/// lookup Orchestrator cannot answer now records the item unchecked, and the add says
/// what is wrong). Answers the input the ledger keeps (`queue::item_input`).
pub async fn checked_content(
    state: &AppState,
    mapping: &mut Arc<ProcessRow>,
    conn: &ConnectionRow,
    content: Map<String, Value>,
    options: &ItemOptions,
) -> Result<Map<String, Value>, ApiError> {
    let mut merged = mapping
        .default_input
        .as_object()
        .cloned()
        .unwrap_or_default();
    merged.extend(content);
    let mut problems = options.problems();
    match queue_definition::resolve(state, mapping, conn, false).await {
        Ok(queue) => {
            problems.extend(queue.content_problems(&merged));
            if let Cow::Owned(looked_up) = queue {
                Arc::make_mut(mapping).queue_schema = Some(looked_up);
            }
        }
        Err(e) => {
            tracing::info!(error = %e, "queue lookup failed; the item is recorded unchecked")
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid("invalid_content", &problems));
    }
    Ok(queue::item_input(merged, options))
}

/// Records `job` (claiming `idempotency` with it, when given) within
/// `database.write_timeout_ms`, then starts it, answering within the same deadline.
#[tracing::instrument(skip_all, fields(job = %job.id, process = %job.process_name))]
pub async fn submit(
    state: &Arc<AppState>,
    job: NewJob,
    idempotency: Option<IdempotencyClaim>,
    process: Arc<ProcessRow>,
    conn: Option<ConnectionRow>,
) -> Result<Submitted, ApiError> {
    let deadline = Duration::from_millis(state.settings.database.write_timeout_ms);
    let what = format!("job {}", job.id);
    let recorded = match idempotency {
        None => state
            .ledger
            .insert_within(job, deadline)
            .await
            .map_err(|e| ApiError::late(e, &what))?,
        Some(claim) => match state
            .ledger
            .insert_claimed_within(ClaimedJob { job, claim }, deadline)
            .await
            .map_err(|e| ApiError::late(e, &what))?
        {
            Claimed::New(row) => *row,
            Claimed::Taken {
                same_request: false,
                ..
            } => {
                return Err(ApiError::Conflict {
                    code: "idempotency_key_reused",
                    detail: "this Idempotency-Key was used with a different request".into(),
                });
            }
            Claimed::Taken {
                job,
                same_request: true,
            } => {
                return job
                    .map(|first| Submitted::Repeat(*first))
                    .ok_or_else(|| anyhow::anyhow!("idempotency record without job").into());
            }
        },
    };
    Ok(Submitted::New(
        start_within(state, recorded, process, conn).await?,
    ))
}

/// The longest wait the job's process allows (60 s if the process was deleted).
pub async fn max_wait(state: &AppState, job: &JobRow) -> Result<u32, ApiError> {
    let max = match job.process_id {
        Some(pid) => state
            .lookups
            .process_by_id(&state.pool, pid)
            .await?
            .map(|p| p.max_wait_seconds),
        None => None,
    };
    Ok(max.unwrap_or(60).max(0) as u32)
}

/// Starts a job just recorded, answering within `database.write_timeout_ms`: the job is
/// committed, so past that the caller hears 202 with the job as recorded while the start
/// goes on (and the dispatcher or the reconciler finishes what it could not).
pub async fn start_within(
    state: &Arc<AppState>,
    job: JobRow,
    process: Arc<ProcessRow>,
    conn: Option<ConnectionRow>,
) -> Result<JobRow, ApiError> {
    let deadline = Duration::from_millis(state.settings.database.write_timeout_ms);
    let bg = state.clone();
    let recorded = job.clone();
    // The start goes on in its own task, within the request's span (one trace).
    let task = tokio::spawn(tracing::Instrument::in_current_span(async move {
        start(&bg, job, conn.as_ref().map(|c| (&*process, c))).await
    }));
    match tokio::time::timeout(deadline, task).await {
        Ok(Ok(started)) => started,
        Ok(Err(e)) => Err(anyhow::anyhow!("the start task failed: {e}").into()),
        Err(_) => {
            tracing::warn!(job = %recorded.id, "the start did not finish in time; answering with the job as recorded");
            Ok(recorded)
        }
    }
}

/// Starts a job just recorded; if that fails, the dispatcher takes over.
/// `loaded` spares reading the process and connection again when the caller has them.
pub async fn start(
    state: &Arc<AppState>,
    job: JobRow,
    loaded: Option<(&ProcessRow, &ConnectionRow)>,
) -> Result<JobRow, ApiError> {
    let attempt = match loaded {
        Some((process, conn)) => dispatch::attempt_answering(state, &job, process, conn).await,
        None => dispatch::attempt(state, &job).await,
    };
    match attempt {
        Ok(Outcome::Rejected { code, message, .. }) => {
            return Err(ApiError::Upstream {
                status: 422,
                detail: format!("Orchestrator refused job {}: {message}", job.id),
                orchestrator_code: code,
                retry_after: None,
            });
        }
        Ok(Outcome::Started { job: Some(now), .. }) => return Ok(*now),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, job = %job.id, "first start attempt failed; the dispatcher will retry")
        }
    }
    // The job is committed: from here on the caller must hear "accepted", so a failed
    // read-back (the database going away) falls back to the row we have.
    Ok(store::get(&state.pool, job.id)
        .await
        .ok()
        .flatten()
        .unwrap_or(job))
}

/// `POST /jobs/{id}/replay`: a new job with `first`'s input and callback, linked to it.
#[tracing::instrument(skip_all, fields(replay_of = %first.id))]
pub async fn replay(
    state: &Arc<AppState>,
    first: JobRow,
    caller: Uuid,
) -> Result<JobRow, ApiError> {
    let process_gone = || ApiError::Conflict {
        code: "process_gone",
        detail: "the job's process was deleted".into(),
    };
    let process_id = first.process_id.ok_or_else(process_gone)?;
    let process = state
        .lookups
        .process_by_id(&state.pool, process_id)
        .await?
        .ok_or_else(process_gone)?;
    let input = first.input.as_object().cloned().unwrap_or_default();
    let job = new_job(
        &process,
        "replay",
        Some(caller.to_string()),
        input,
        first.callback_url.clone(),
        Some(first.id),
    );
    match submit(state, job, None, process, None).await? {
        Submitted::New(job) | Submitted::Repeat(job) => Ok(job),
    }
}
