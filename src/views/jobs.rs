//! The API's view of a job: the ledger row, its timeline and its callbacks.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::storage::jobs::{EventRow, JobRow};

/// A job in the ledger.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub id: Uuid,
    /// The process (or, for a queue item, the queue mapping).
    pub process: String,
    /// `job`, or `queue_item` for an item added to an Orchestrator queue
    /// (`POST /queues/{name}`): then `input` holds its `content` and how it was added,
    /// `orchestrator_job_id` / `_key` are the queue item's Id and Key (its latest retry),
    /// `output` its Output, `error` its ProcessingException, `info` its status.
    pub kind: String,
    /// `queued`, then Orchestrator's state in lower case (`pending`, `running`, `successful`,
    /// `faulted`, `stopped`...), or `rejected` / `dead` when it never started. `unknown`:
    /// its start may have reached Orchestrator (a timeout, a 5xx after sending), and it
    /// waits for a lookup by its Reference before anything else happens to it.
    pub state: crate::domain::job_state::JobState,
    /// `api`, `hook` or `replay`.
    pub source: String,
    /// The Reference sent to Orchestrator.
    pub reference: String,
    #[schema(value_type = Object)]
    pub input: Value,
    pub orchestrator_job_id: Option<i64>,
    pub orchestrator_job_key: Option<Uuid>,
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    pub info: Option<String>,
    /// Start attempts so far.
    pub attempts: i32,
    /// When the next attempt is due, while queued after a failure.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub replay_of: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Every state change, oldest first (on `GET /jobs/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<JobEvent>>,
    /// Callback deliveries and each attempt (on `GET /jobs/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callbacks: Option<Vec<CallbackView>>,
}

/// A callback delivery of a job.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackView {
    pub id: Uuid,
    pub job_id: Uuid,
    pub url: String,
    /// `pending`, `delivered` or `dead` (dead-lettered after the retry schedule ran out).
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Every attempt, oldest first.
    pub log: Vec<CallbackAttempt>,
}

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackAttempt {
    pub attempt: i32,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
    pub at: DateTime<Utc>,
}

impl From<crate::storage::callbacks::DeliveryRow> for CallbackView {
    fn from(d: crate::storage::callbacks::DeliveryRow) -> Self {
        CallbackView {
            id: d.id,
            job_id: d.job_id,
            url: d.url,
            state: d.state,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_status: d.last_status,
            last_error: d.last_error,
            delivered_at: d.delivered_at,
            created_at: d.created_at,
            log: d
                .log
                .into_iter()
                .map(|a| CallbackAttempt {
                    attempt: a.attempt,
                    status: a.status,
                    error: a.error,
                    duration_ms: a.duration_ms,
                    at: a.at,
                })
                .collect(),
        }
    }
}

/// One state change.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobEvent {
    pub state: String,
    /// Where it was learned: `api`, `dispatcher`, `webhook`, `poll`...
    pub source: String,
    #[schema(value_type = Option<Object>)]
    pub detail: Option<Value>,
    pub at: DateTime<Utc>,
}

/// A page of jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    pub items: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The API view of a ledger row.
/// Where an entry of the ledger is read: `/jobs/{id}`, or `/queue-items/{id}`.
pub fn location(kind: &str, id: Uuid) -> String {
    match kind {
        "queue_item" => format!("/queue-items/{id}"),
        _ => format!("/jobs/{id}"),
    }
}

pub fn view(j: JobRow, timeline: Option<Vec<EventRow>>) -> JobView {
    JobView {
        id: j.id,
        process: j.process_name,
        kind: j.kind,
        state: j.state,
        source: j.source,
        reference: j.reference,
        input: j.input,
        orchestrator_job_id: j.orchestrator_job_id,
        orchestrator_job_key: j.orchestrator_job_key,
        output: j.output,
        error: j.error,
        info: j.info,
        attempts: j.attempts,
        next_attempt_at: j.next_attempt_at,
        last_error: j.last_error,
        replay_of: j.replay_of,
        created_at: j.created_at,
        updated_at: j.updated_at,
        finished_at: j.finished_at,
        timeline: timeline.map(|t| {
            t.into_iter()
                .map(|e| JobEvent {
                    state: e.state,
                    source: e.source,
                    detail: e.detail,
                    at: e.occurred_at,
                })
                .collect()
        }),
        callbacks: None,
    }
}
