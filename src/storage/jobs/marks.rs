//! Start marks: Orchestrator has these jobs. Recorded in one statement of their own, or
//! riding on the statement that inserts the next jobs (`with_marks`), so a busy ledger
//! pays one round trip and one commit for both.

use serde_json::Value;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::*;

/// The statement for common table expressions `ctes` that define `new` (the jobs
/// stored), and, with `marks`, also the started marks bound from `$first` on: one
/// statement, one round trip and one commit for both, where a transaction would cost
/// two more (`begin`, `commit`). The two touch different jobs: a job is marked only
/// after its insert was committed.
pub(super) fn with_marks(ctes: &str, marks: bool, first: usize) -> String {
    if marks {
        format!(
            "with {ctes}, {} select false as marked, {COLUMNS} from new \
             union all select true, {COLUMNS} from upd",
            started_ctes(first)
        )
    } else {
        format!("with {ctes} select {COLUMNS} from new")
    }
}

/// Splits the rows of a `with_marks` statement into the jobs stored and each mark's
/// answer (in the order of `marks`).
pub(super) fn split_marked(
    rows: Vec<sqlx::postgres::PgRow>,
    marks: &[&Started],
) -> Result<(Vec<sqlx::postgres::PgRow>, Vec<Option<JobRow>>), sqlx::Error> {
    if marks.is_empty() {
        return Ok((rows, Vec::new()));
    }
    let mut stored = Vec::with_capacity(rows.len());
    let mut marked = Vec::new();
    for r in rows {
        if r.try_get::<bool, _>("marked")? {
            marked.push(r);
        } else {
            stored.push(r);
        }
    }
    Ok((stored, answer_marks(marks, &marked)?))
}

/// Orchestrator has a job: what `mark_started_many` records.
#[derive(Debug, Clone)]
pub struct Started {
    pub id: Uuid,
    pub orchestrator_job_id: i64,
    pub orchestrator_job_key: Option<Uuid>,
    /// The ledger state (Orchestrator's).
    pub state: JobState,
    pub detail: Value,
}

/// Records that Orchestrator has these jobs, in one statement (one commit), with their
/// timeline events. Answers each job as it now stands (None for a job that was no longer
/// queued, which is left as it was).
pub(super) async fn mark_started_many(
    conn: &mut PgConnection,
    started: &[&Started],
) -> Result<Vec<Option<JobRow>>, sqlx::Error> {
    let sql = format!("with {} select {COLUMNS} from upd", started_ctes(1));
    let rows = bind_started(sqlx::query(sqlx::AssertSqlSafe(sql)), started)
        .fetch_all(conn)
        .await?;
    answer_marks(started, &rows)
}

/// The common table expressions that mark started jobs from the arrays `$first` to
/// `$first + 4` (bound by `bind_started`), with their timeline events. Defines `upd`, the
/// jobs marked; a job no longer queued is left as it was.
pub(super) fn started_ctes(first: usize) -> String {
    let (ids, states, orch, keys, details) = (first, first + 1, first + 2, first + 3, first + 4);
    format!(
        "upd as ( \
           update jobs set state = t.u_state, orchestrator_job_id = t.u_orch, orchestrator_job_key = t.u_key, \
             lease_owner = null, lease_expires_at = null, next_attempt_at = null, last_error = null, state_changed_at = now() \
           from unnest(${ids}::uuid[], ${states}::text[], ${orch}::int8[], ${keys}::uuid[]) as t(u_id, u_state, u_orch, u_key) \
           where id = t.u_id and state in ('queued', 'unknown') \
           returning {COLUMNS}), \
         upd_events as (insert into job_events (job_id, state, source, detail) \
           select e.u_id, e.u_state, 'dispatcher', e.u_detail \
           from unnest(${ids}::uuid[], ${states}::text[], ${details}::jsonb[]) as e(u_id, u_state, u_detail) \
           where e.u_id in (select id from upd))"
    )
}

/// Binds the five arrays of `started_ctes`.
pub(super) fn bind_started<'q>(q: PgQuery<'q>, started: &[&'q Started]) -> PgQuery<'q> {
    if started.is_empty() {
        return q;
    }
    q.bind(started.iter().map(|s| s.id).collect::<Vec<_>>())
        .bind(started.iter().map(|s| s.state.as_str()).collect::<Vec<_>>())
        .bind(
            started
                .iter()
                .map(|s| s.orchestrator_job_id)
                .collect::<Vec<_>>(),
        )
        .bind(
            started
                .iter()
                .map(|s| s.orchestrator_job_key)
                .collect::<Vec<_>>(),
        )
        .bind(started.iter().map(|s| &s.detail).collect::<Vec<_>>())
}

/// Each mark's job as it now stands (the rows of `upd`), in the order of `started`.
pub(super) fn answer_marks(
    started: &[&Started],
    rows: &[sqlx::postgres::PgRow],
) -> Result<Vec<Option<JobRow>>, sqlx::Error> {
    let mut by_id = std::collections::HashMap::with_capacity(rows.len());
    for r in rows {
        let row = JobRow::from_row(r)?;
        by_id.insert(row.id, row);
    }
    Ok(started.iter().map(|s| by_id.remove(&s.id)).collect())
}
