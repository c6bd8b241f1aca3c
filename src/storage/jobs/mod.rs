//! The job ledger: every job, its attempts, and a timeline of its states.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

pub use crate::domain::job_state::JobState;
use crate::domain::listing::JobFilter;

mod batch_sql;
mod ledger;
mod marks;
mod queue;
mod tracking;

pub use batch_sql::{Claimed, ClaimedJob, HookJob, IdempotencyClaim};
pub use ledger::{BATCHES_IN_FLIGHT, Ledger};
pub use marks::Started;

/// A statement with its binds, as the batched writers build them.
type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;
pub use queue::*;
pub use tracking::*;

/// A job as stored.
#[derive(Debug, Clone, FromRow)]
pub struct JobRow {
    pub id: Uuid,
    pub process_id: Option<Uuid>,
    pub process_name: String,
    /// `job`, or `queue_item` for an item added to an Orchestrator queue.
    pub kind: String,
    pub source: String,
    /// Only this code writes states: one it does not know is a decode error.
    #[sqlx(try_from = "String")]
    pub state: JobState,
    pub input: Value,
    pub reference: String,
    pub orchestrator_job_id: Option<i64>,
    pub orchestrator_job_key: Option<Uuid>,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub info: Option<String>,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub callback_url: Option<String>,
    pub replay_of: Option<Uuid>,
    /// The trace it was created in, passed on to its callback.
    pub traceparent: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One entry of a job's timeline.
#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    pub state: String,
    pub source: String,
    pub detail: Option<Value>,
    pub occurred_at: DateTime<Utc>,
}

pub(super) const COLUMNS: &str = "id, process_id, process_name, kind, source, state, input, reference, orchestrator_job_id, orchestrator_job_key, \
    output, error, info, attempts, next_attempt_at, last_error, callback_url, replay_of, traceparent, started_at, finished_at, created_at, updated_at";

/// What a new job needs.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Uuid,
    pub process_id: Uuid,
    pub process_name: String,
    pub source: &'static str,
    pub source_detail: Option<String>,
    pub input: Value,
    pub callback_url: Option<String>,
    pub replay_of: Option<Uuid>,
    /// The Reference to send, when the caller gave one (a queue item's); else `reference(id)`.
    pub reference: Option<String>,
    /// The trace it was created in (`traceparent`), when traces are exported.
    pub traceparent: Option<String>,
    /// `job`, or `queue_item` when its process row is a queue mapping.
    pub kind: &'static str,
}

/// The Reference sent to Orchestrator for a job.
pub fn reference(id: Uuid) -> String {
    format!("ugw-{id}")
}

/// The job id a Reference names (`reference` inverted); the nil id, which no job has,
/// for anything else.
fn id_of_reference(reference: &str) -> Uuid {
    reference
        .strip_prefix("ugw-")
        .and_then(|id| Uuid::parse_str(id).ok())
        .unwrap_or(Uuid::nil())
}

/// Appends to a job's timeline.
pub async fn event<'e, E: sqlx::PgExecutor<'e>>(
    ex: E,
    id: Uuid,
    state: &str,
    source: &str,
    detail: Option<Value>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into job_events (job_id, state, source, detail) values ($1, $2, $3, $4)",
        id,
        state,
        source,
        detail
    )
    .execute(ex)
    .await?;
    Ok(())
}

/// The channel that carries the id of every job that has just ended.
pub const ENDED_CHANNEL: &str = "ugw_job_ended";

/// One job.
pub async fn get<'e, E: sqlx::PgExecutor<'e>>(
    ex: E,
    id: Uuid,
) -> Result<Option<JobRow>, sqlx::Error> {
    let sql = format!("select {COLUMNS} from jobs where id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(ex)
        .await?;
    row.as_ref().map(JobRow::from_row).transpose()
}

/// A job's timeline, oldest first.
pub async fn events(pool: &PgPool, id: Uuid) -> Result<Vec<EventRow>, sqlx::Error> {
    let rows = sqlx::query(
        "select state, source, detail, occurred_at from job_events where job_id = $1 order by id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(EventRow::from_row).collect()
}

/// Jobs, newest first, one page.
/// `after` continues after that (created_at, id).
pub async fn list(
    pool: &PgPool,
    f: &JobFilter,
    kind: &str,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<JobRow>, sqlx::Error> {
    let sql = format!(
        "select {COLUMNS} from jobs where ($1::text is null or process_name = $1) and ($2::text is null or state = $2) \
         and ($3::text is null or source = $3) and ($4::text is null or (reference = $4 and (id = $10 or $10 = '00000000-0000-0000-0000-000000000000'::uuid))) \
         and ($5::timestamptz is null or created_at >= $5) and ($6::timestamptz is null or created_at < $6) \
         and ($7::timestamptz is null or (created_at, id) < ($7, $8)) and kind = $11 order by created_at desc, id desc limit $9"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&f.process)
        .bind(&f.state)
        .bind(&f.source)
        .bind(&f.reference)
        .bind(f.from)
        .bind(f.to)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(limit)
        .bind(f.reference.as_deref().map(id_of_reference))
        .bind(kind)
        .fetch_all(pool)
        .await?;
    rows.iter().map(JobRow::from_row).collect()
}
