//! The job ledger: every job, its attempts, and a timeline of its states.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::storage::batch::{Batcher, Late};
use crate::storage::hooks::Delivery;

/// A job as stored.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: Uuid,
    pub process_id: Option<Uuid>,
    pub process_name: String,
    pub source: String,
    pub state: String,
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
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One entry of a job's timeline.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub state: String,
    pub source: String,
    pub detail: Option<Value>,
    pub occurred_at: DateTime<Utc>,
}

pub(super) const COLUMNS: &str = "id, process_id, process_name, source, state, input, reference, orchestrator_job_id, orchestrator_job_key, \
    output, error, info, attempts, next_attempt_at, last_error, callback_url, replay_of, started_at, finished_at, created_at, updated_at";

pub(super) fn from_row(r: &sqlx::postgres::PgRow) -> Result<JobRow, sqlx::Error> {
    Ok(JobRow {
        id: r.try_get("id")?,
        process_id: r.try_get("process_id")?,
        process_name: r.try_get("process_name")?,
        source: r.try_get("source")?,
        state: r.try_get("state")?,
        input: r.try_get("input")?,
        reference: r.try_get("reference")?,
        orchestrator_job_id: r.try_get("orchestrator_job_id")?,
        orchestrator_job_key: r.try_get("orchestrator_job_key")?,
        output: r.try_get("output")?,
        error: r.try_get("error")?,
        info: r.try_get("info")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_error: r.try_get("last_error")?,
        callback_url: r.try_get("callback_url")?,
        replay_of: r.try_get("replay_of")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

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

/// Inserts a queued job, leased to `owner` for its first attempt, and its first event.
pub async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    job: &NewJob,
    owner: Uuid,
    lease_secs: i64,
) -> Result<JobRow, sqlx::Error> {
    let sql = format!(
        "insert into jobs (id, process_id, process_name, source, source_detail, state, input, reference, attempts, \
         lease_owner, lease_expires_at, callback_url, replay_of) \
         values ($1, $2, $3, $4, $5, 'queued', $6, $7, 1, $8, now() + make_interval(secs => $9), $10, $11) returning {COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(job.id)
        .bind(job.process_id)
        .bind(&job.process_name)
        .bind(job.source)
        .bind(&job.source_detail)
        .bind(&job.input)
        .bind(reference(job.id))
        .bind(owner)
        .bind(lease_secs as f64)
        .bind(&job.callback_url)
        .bind(job.replay_of)
        .fetch_one(&mut **tx)
        .await?;
    event(&mut **tx, job.id, "queued", job.source, None).await?;
    from_row(&row)
}

/// The common table expressions that insert new jobs from the arrays `$1`..`$7`, `$10`
/// and `$11` (bound by `bind_new_jobs`), leased to `$8` for `$9` seconds, with their
/// `queued` events. `keep` filters the unnested rows `t`. Defines `new`, the rows stored.
fn insert_jobs_ctes(keep: &str) -> String {
    format!(
        "new as ( \
           insert into jobs (id, process_id, process_name, source, source_detail, state, input, reference, attempts, \
             lease_owner, lease_expires_at, callback_url, replay_of) \
           select t.id, t.process_id, t.process_name, t.source, t.source_detail, 'queued', t.input, t.reference, 1, \
             $8, now() + make_interval(secs => $9), t.callback_url, t.replay_of \
           from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::text[], $10::text[], $11::uuid[]) \
             as t(id, process_id, process_name, source, source_detail, input, reference, callback_url, replay_of) \
           {keep} \
           on conflict (id) do nothing \
           returning {COLUMNS}), \
         events as (insert into job_events (job_id, state, source) select id, 'queued', source from new)"
    )
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// Binds `$1`..`$11` of `insert_jobs_ctes`.
fn bind_new_jobs<'q>(
    q: PgQuery<'q>,
    jobs: &[&'q NewJob],
    owner: Uuid,
    lease_secs: i64,
) -> PgQuery<'q> {
    q.bind(jobs.iter().map(|j| j.id).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.process_id).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.process_name.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| j.source).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.source_detail.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| &j.input).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| reference(j.id)).collect::<Vec<_>>())
        .bind(owner)
        .bind(lease_secs as f64)
        .bind(
            jobs.iter()
                .map(|j| j.callback_url.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| j.replay_of).collect::<Vec<_>>())
}

/// Answers, in the order of `ids`, the rows a batch stored; an id the batch did not store
/// is read back (a batch retried after a commit whose outcome was unknown), and is None
/// if it is not stored at all.
async fn in_order(
    conn: &mut PgConnection,
    ids: impl Iterator<Item = Uuid>,
    rows: Vec<sqlx::postgres::PgRow>,
) -> Result<Vec<Option<JobRow>>, sqlx::Error> {
    let mut by_id = std::collections::HashMap::with_capacity(rows.len());
    for r in &rows {
        let row = from_row(r)?;
        by_id.insert(row.id, row);
    }
    let mut out = Vec::with_capacity(rows.len());
    for id in ids {
        match by_id.remove(&id) {
            Some(row) => out.push(Some(row)),
            None => out.push(get(&mut *conn, id).await?),
        }
    }
    Ok(out)
}

/// Inserts many queued jobs in one statement (one commit), each leased to `owner` for its
/// first attempt, with their first events. Answers the rows in the order given. A job
/// already stored (a batch retried after a commit whose outcome was unknown) is read back
/// instead of inserted twice.
/// `marks` are recorded by the same statement (see `with_marks`).
async fn insert_many(
    conn: &mut PgConnection,
    jobs: &[&NewJob],
    marks: &[&Started],
    owner: Uuid,
    lease_secs: i64,
) -> Result<(Vec<JobRow>, Vec<Option<JobRow>>), sqlx::Error> {
    let sql = with_marks(&insert_jobs_ctes(""), !marks.is_empty(), 12);
    let q = bind_new_jobs(
        sqlx::query(sqlx::AssertSqlSafe(sql)),
        jobs,
        owner,
        lease_secs,
    );
    let rows = bind_started(q, marks).fetch_all(&mut *conn).await?;
    let (rows, marked) = split_marked(rows, marks)?;
    let stored = in_order(conn, jobs.iter().map(|j| j.id), rows)
        .await?
        .into_iter()
        .map(|row| row.ok_or(sqlx::Error::RowNotFound))
        .collect::<Result<_, _>>()?;
    Ok((stored, marked))
}

/// The statement for common table expressions `ctes` that define `new` (the jobs
/// stored), and, with `marks`, also the started marks bound from `$first` on: one
/// statement, one round trip and one commit for both, where a transaction would cost
/// two more (`begin`, `commit`). The two touch different jobs: a job is marked only
/// after its insert was committed.
fn with_marks(ctes: &str, marks: bool, first: usize) -> String {
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
fn split_marked(
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

/// A webhook delivery that starts a job: both are stored together or not at all.
#[derive(Debug, Clone)]
pub struct HookJob {
    pub job: NewJob,
    /// Recorded with `job_id` set to the job's id.
    pub delivery: Delivery,
}

/// Stores many deliveries and their jobs in one statement (one commit). A delivery whose
/// dedup key was already taken is not stored, and neither is its job: it answers None.
/// Answers in the order given; a pair already stored (a retried batch) is read back.
/// `marks` are recorded by the same statement (see `with_marks`).
async fn insert_hooks_many(
    conn: &mut PgConnection,
    items: &[&HookJob],
    marks: &[&Started],
    owner: Uuid,
    lease_secs: i64,
) -> Result<(Vec<Option<JobRow>>, Vec<Option<JobRow>>), sqlx::Error> {
    // `on conflict do nothing` without a target: the dedup index (a key taken) and the
    // primary key (this very delivery, stored by a batch whose commit went unanswered).
    let ctes = format!(
        "d as ( \
           insert into webhook_deliveries (id, webhook_id, delivery_key, verification, verification_detail, dedup, \
             filter_result, mapped_input, job_id, error, outcome, request_headers, request_query, request_body, replay_of, body_sha256) \
           select * from unnest($12::uuid[], $13::uuid[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], \
             $19::jsonb[], $20::uuid[], $21::text[], $22::text[], $23::jsonb[], $24::text[], $25::bytea[], $26::uuid[], $27::bytea[]) \
           on conflict do nothing \
           returning job_id), \
         {}",
        insert_jobs_ctes("where t.id in (select job_id from d)")
    );
    let sql = with_marks(&ctes, !marks.is_empty(), 28);
    let jobs: Vec<&NewJob> = items.iter().map(|i| &i.job).collect();
    let d: Vec<&Delivery> = items.iter().map(|i| &i.delivery).collect();
    let q = bind_new_jobs(
        sqlx::query(sqlx::AssertSqlSafe(sql)),
        &jobs,
        owner,
        lease_secs,
    )
    .bind(d.iter().map(|d| d.id).collect::<Vec<_>>())
    .bind(d.iter().map(|d| d.webhook_id).collect::<Vec<_>>())
    .bind(
        d.iter()
            .map(|d| d.delivery_key.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        d.iter()
            .map(|d| d.verification.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        d.iter()
            .map(|d| d.verification_detail.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(d.iter().map(|d| d.dedup.as_str()).collect::<Vec<_>>())
    .bind(
        d.iter()
            .map(|d| d.filter_result.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        d.iter()
            .map(|d| d.mapped_input.as_ref())
            .collect::<Vec<_>>(),
    )
    .bind(items.iter().map(|i| i.job.id).collect::<Vec<_>>())
    .bind(d.iter().map(|d| d.error.as_deref()).collect::<Vec<_>>())
    .bind(d.iter().map(|d| d.outcome.as_str()).collect::<Vec<_>>())
    .bind(
        d.iter()
            .map(|d| d.request_headers.as_ref())
            .collect::<Vec<_>>(),
    )
    .bind(
        d.iter()
            .map(|d| d.request_query.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        d.iter()
            .map(|d| d.request_body.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(d.iter().map(|d| d.replay_of).collect::<Vec<_>>())
    .bind(
        d.iter()
            .map(|d| d.body_sha256.as_deref())
            .collect::<Vec<_>>(),
    );
    let rows = bind_started(q, marks).fetch_all(&mut *conn).await?;
    let (rows, marked) = split_marked(rows, marks)?;
    let stored = in_order(conn, items.iter().map(|i| i.job.id), rows).await?;
    Ok((stored, marked))
}

/// Orchestrator has a job: what `mark_started_many` records.
#[derive(Debug, Clone)]
pub struct Started {
    pub id: Uuid,
    pub orchestrator_job_id: i64,
    pub orchestrator_job_key: Option<Uuid>,
    /// The ledger state (Orchestrator's, lower-cased).
    pub state: String,
    pub detail: Value,
}

/// Records that Orchestrator has these jobs, in one statement (one commit), with their
/// timeline events. Answers each job as it now stands (None for a job that was no longer
/// queued, which is left as it was).
async fn mark_started_many(
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
fn started_ctes(first: usize) -> String {
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
fn bind_started<'q>(q: PgQuery<'q>, started: &[&'q Started]) -> PgQuery<'q> {
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
fn answer_marks(
    started: &[&Started],
    rows: &[sqlx::postgres::PgRow],
) -> Result<Vec<Option<JobRow>>, sqlx::Error> {
    let mut by_id = std::collections::HashMap::with_capacity(rows.len());
    for r in rows {
        let row = from_row(r)?;
        by_id.insert(row.id, row);
    }
    Ok(started.iter().map(|s| by_id.remove(&s.id)).collect())
}

/// Appends to a job's timeline.
pub async fn event<'e, E: sqlx::PgExecutor<'e>>(
    ex: E,
    id: Uuid,
    state: &str,
    source: &str,
    detail: Option<Value>,
) -> Result<(), sqlx::Error> {
    sqlx::query("insert into job_events (job_id, state, source, detail) values ($1, $2, $3, $4)")
        .bind(id)
        .bind(state)
        .bind(source)
        .bind(detail)
        .execute(ex)
        .await?;
    Ok(())
}

/// Records `Idempotency-Key` for a job. Returns the job already recorded for the key
/// (and whether its request matched), or None when this job now owns the key.
pub async fn claim_idempotency(
    tx: &mut Transaction<'_, Postgres>,
    scope: &str,
    key: &str,
    hash: &[u8],
    job: Uuid,
) -> Result<Option<(Uuid, bool)>, sqlx::Error> {
    let inserted = sqlx::query(
        "insert into idempotency_keys (scope, key, request_hash, job_id, expires_at) values ($1, $2, $3, $4, now() + interval '24 hours') \
         on conflict (scope, key) do nothing",
    )
    .bind(scope)
    .bind(key)
    .bind(hash)
    .bind(job)
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(None);
    }
    let row = sqlx::query(
        "select job_id, request_hash from idempotency_keys where scope = $1 and key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_one(&mut **tx)
    .await?;
    let existing: Option<Uuid> = row.try_get("job_id")?;
    let stored: Vec<u8> = row.try_get("request_hash")?;
    Ok(existing.map(|id| (id, stored == hash)))
}

/// The job ends without running: `rejected` (Orchestrator refused it) or `dead`
/// (out of attempts).
/// Ends a job that is still queued (it never reached Orchestrator). False, changing
/// nothing, when the job had moved on: Orchestrator may have it now.
pub async fn mark_final(
    pool: &PgPool,
    id: Uuid,
    state: &str,
    error: Value,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "update jobs set state = $2, error = $3, last_error = $3->>'message', lease_owner = null, lease_expires_at = null, \
         next_attempt_at = null, finished_at = now(), state_changed_at = now() where id = $1 and state in ('queued', 'unknown')",
    )
    .bind(id)
    .bind(state)
    .bind(&error)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    event(&mut *tx, id, state, "dispatcher", Some(error)).await?;
    ended(&mut tx, id).await?;
    tx.commit().await?;
    Ok(true)
}

/// Links a job that was stopped while still queued to the Orchestrator job its start
/// created anyway (the start was in flight when the stop came). False when the job is
/// not such a job.
pub async fn link_cancelled(
    pool: &PgPool,
    id: Uuid,
    orchestrator_job_id: i64,
    orchestrator_job_key: Option<Uuid>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "update jobs set orchestrator_job_id = $2, orchestrator_job_key = $3 \
         where id = $1 and state = 'stopped' and orchestrator_job_id is null",
    )
    .bind(id)
    .bind(orchestrator_job_id)
    .bind(orchestrator_job_key)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The channel that carries the id of every job that has just ended.
pub const ENDED_CHANNEL: &str = "ugw_job_ended";

/// A job has just reached a terminal state: queue its callback (if it has one) and
/// wake whoever waits for it, on every instance, when the transaction commits.
pub async fn ended(tx: &mut Transaction<'_, Postgres>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into callback_deliveries (id, job_id, url, state, next_attempt_at, message_id) \
         select $2, id, callback_url, 'pending', now(), $3 from jobs where id = $1 and callback_url is not null",
    )
    .bind(id)
    .bind(Uuid::new_v4())
    .bind(format!("msg_{}", Uuid::new_v4().simple()))
    .execute(&mut **tx)
    .await?;
    sqlx::query("select pg_notify($1, $2)")
        .bind(ENDED_CHANNEL)
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The states a job ends in.
pub const TERMINAL: [&str; 5] = ["successful", "faulted", "stopped", "rejected", "dead"];

/// Whether a ledger state is final.
pub fn is_terminal(state: &str) -> bool {
    TERMINAL.contains(&state)
}

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
    row.as_ref().map(from_row).transpose()
}

/// A job's timeline, oldest first.
pub async fn events(pool: &PgPool, id: Uuid) -> Result<Vec<EventRow>, sqlx::Error> {
    let rows = sqlx::query(
        "select state, source, detail, occurred_at from job_events where job_id = $1 order by id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(EventRow {
                state: r.try_get("state")?,
                source: r.try_get("source")?,
                detail: r.try_get("detail")?,
                occurred_at: r.try_get("occurred_at")?,
            })
        })
        .collect()
}

/// Filters of `GET /jobs`.
#[derive(Debug, Default)]
pub struct JobFilter {
    pub process: Option<String>,
    pub state: Option<String>,
    pub source: Option<String>,
    pub reference: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Continue after this (created_at, id).
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// Jobs, newest first, one page.
pub async fn list(pool: &PgPool, f: &JobFilter) -> Result<Vec<JobRow>, sqlx::Error> {
    let sql = format!(
        "select {COLUMNS} from jobs where ($1::text is null or process_name = $1) and ($2::text is null or state = $2) \
         and ($3::text is null or source = $3) and ($4::text is null or (id = $10 and reference = $4)) \
         and ($5::timestamptz is null or created_at >= $5) and ($6::timestamptz is null or created_at < $6) \
         and ($7::timestamptz is null or (created_at, id) < ($7, $8)) order by created_at desc, id desc limit $9"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&f.process)
        .bind(&f.state)
        .bind(&f.source)
        .bind(&f.reference)
        .bind(f.from)
        .bind(f.to)
        .bind(f.after.map(|a| a.0))
        .bind(f.after.map(|a| a.1))
        .bind(f.limit)
        .bind(f.reference.as_deref().map(id_of_reference))
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Stores the release found for a process.
pub async fn cache_release(
    pool: &PgPool,
    process_id: Uuid,
    key: Option<Uuid>,
    arguments: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("update processes set release_key = $2, release_arguments = $3, release_resolved_at = now() where id = $1")
        .bind(process_id)
        .bind(key)
        .bind(arguments)
        .execute(pool)
        .await?;
    Ok(())
}

/// The order of states: a state change is recorded only if it moves forward, so a
/// late or repeated event never overwrites a later state (a terminal one least of all).
const RANK: &str = "case {s} when 'queued' then 0 when 'unknown' then 0 when 'pending' then 1 when 'running' then 2 when 'suspended' then 2 \
    when 'resumed' then 2 when 'stopping' then 3 when 'terminating' then 3 else 4 end";

/// What Orchestrator says about a job.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The ledger state (Orchestrator's, in lower case).
    pub state: String,
    /// Output arguments, as JSON.
    pub output: Option<Value>,
    /// The error of a faulted job.
    pub error: Option<Value>,
    /// "Job completed", or the exception text.
    pub info: Option<String>,
}

/// Records a state seen at Orchestrator, if it moves the job forward. Returns true when
/// the ledger changed (and a timeline entry was added).
pub async fn record_state(
    pool: &PgPool,
    id: Uuid,
    seen: &Observed,
    source: &str,
) -> Result<bool, sqlx::Error> {
    let rank_new = RANK.replace("{s}", "$2::text");
    let rank_old = RANK.replace("{s}", "state");
    let sql = format!(
        "update jobs set state = $2, output = coalesce($3, output), error = coalesce($4, error), info = coalesce($5, info), \
         started_at = case when started_at is null and {rank_new} >= 2 then now() else started_at end, \
         finished_at = case when {rank_new} = 4 then coalesce(finished_at, now()) else finished_at end, \
         state_changed_at = now() where id = $1 and state <> $2 and {rank_old} < 4 and ({rank_new} > {rank_old} or ({rank_new} = 2 and {rank_old} = 2))"
    );
    let detail = seen.info.as_ref().map(|i| serde_json::json!({"info": i}));
    if !is_terminal(&seen.state) {
        // Not an end: the change and its timeline entry in one statement (one round trip).
        let sql = format!(
            "with upd as ({sql} returning id), \
             ev as (insert into job_events (job_id, state, source, detail) select id, $2, $6, $7 from upd) \
             select count(*) from upd"
        );
        let changed: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(&seen.state)
            .bind(&seen.output)
            .bind(&seen.error)
            .bind(&seen.info)
            .bind(source)
            .bind(&detail)
            .fetch_one(pool)
            .await?;
        return Ok(changed > 0);
    }
    let mut tx = pool.begin().await?;
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(&seen.state)
        .bind(&seen.output)
        .bind(&seen.error)
        .bind(&seen.info)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    event(&mut *tx, id, &seen.state, source, detail).await?;
    ended(&mut tx, id).await?;
    tx.commit().await?;
    Ok(true)
}

/// A started, unfinished job the poller should ask about.
#[derive(Debug, Clone)]
pub struct ToPoll {
    pub id: Uuid,
    pub process_id: Uuid,
    pub connection_id: Uuid,
    pub orchestrator_job_id: i64,
    /// When it was last asked about before this claim (restored if given back).
    pub previous_poll: Option<DateTime<Utc>>,
}

/// How often a job is asked about.
#[derive(Debug, Clone, Copy)]
pub struct PollCadence {
    /// Seconds after its last news while the connection's webhooks are quiet.
    pub every_secs: i64,
    /// The same while webhooks are healthy.
    pub with_webhooks_secs: i64,
    /// Webhooks are healthy while one arrived within this many seconds.
    pub quiet_secs: i64,
}

/// Takes up to `limit` unfinished jobs whose last news (a state change or a poll) is
/// older than their cadence, marking them asked; instances skip each other's rows.
/// Only jobs of `connections` (one tenant) are taken.
/// Connections take turns, oldest first within each: a tenant with a backlog its list
/// budget can't clear does not starve the others.
///
/// Each process is read through `jobs_poll_due_idx` (process, last news) up to its
/// connection's cadence, so a pass reads the jobs it takes and, when none is due, one
/// index entry per process, however many jobs are in flight. Only the `limit` oldest are
/// then locked, and checked again once locked (another instance may have just asked).
pub async fn claim_for_polling(
    pool: &PgPool,
    limit: i64,
    cadence: PollCadence,
    connections: &[Uuid],
) -> Result<Vec<ToPoll>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // The planner's estimate (every process times `limit` rows) can pass
    // `jit_above_cost`, and compiling the plan takes longer than running it (30 ms
    // against 0.3 ms when nothing is due).
    sqlx::query("set local jit = off").execute(&mut *tx).await?;
    let rows = sqlx::query(
        "update jobs j set last_polled_at = now() from ( \
           select j.id, c.connection_id, j.last_polled_at as previous_poll from ( \
             select d.id, pw.connection_id, pw.due_before from ( \
               select p.id as process_id, p.connection_id, now() - make_interval(secs => \
                 case when w.last_event_at > now() - make_interval(secs => $4) then $3 else $2 end) as due_before \
               from processes p left join connection_webhooks w on w.connection_id = p.connection_id \
               where p.connection_id = any($5)) pw \
             cross join lateral ( \
               select j.id, coalesce(greatest(j.last_polled_at, j.state_changed_at), j.created_at) as news \
               from jobs j \
               where j.process_id = pw.process_id and j.orchestrator_job_id is not null \
                 and j.state in ('pending', 'running', 'stopping', 'terminating', 'suspended', 'resumed') \
                 and coalesce(greatest(j.last_polled_at, j.state_changed_at), j.created_at) <= pw.due_before \
               order by coalesce(greatest(j.last_polled_at, j.state_changed_at), j.created_at) limit $1) d \
             order by row_number() over (partition by pw.connection_id order by d.news), d.news \
             limit $1) c \
           join jobs j on j.id = c.id \
           where j.state in ('pending', 'running', 'stopping', 'terminating', 'suspended', 'resumed') \
             and coalesce(greatest(j.last_polled_at, j.state_changed_at), j.created_at) <= c.due_before \
           for update of j skip locked) due \
         where j.id = due.id \
         returning j.id, j.process_id, due.connection_id, j.orchestrator_job_id, due.previous_poll",
    )
    .bind(limit)
    .bind(cadence.every_secs as f64)
    .bind(cadence.with_webhooks_secs as f64)
    .bind(cadence.quiet_secs as f64)
    .bind(connections)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok(ToPoll {
                id: r.try_get("id")?,
                process_id: r.try_get("process_id")?,
                connection_id: r.try_get("connection_id")?,
                orchestrator_job_id: r.try_get("orchestrator_job_id")?,
                previous_poll: r.try_get("previous_poll")?,
            })
        })
        .collect()
}

/// Gives claimed jobs back unasked (the tenant's budget ran out): they stay due, and
/// keep their place in line.
pub async fn unclaim(pool: &PgPool, jobs: &[&ToPoll]) -> Result<(), sqlx::Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    let previous: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|j| j.previous_poll).collect();
    sqlx::query(
        "update jobs set last_polled_at = v.previous from unnest($1::uuid[], $2::timestamptz[]) as v(id, previous) \
         where jobs.id = v.id",
    )
    .bind(&ids)
    .bind(&previous)
    .execute(pool)
    .await?;
    Ok(())
}

/// The ledger job behind an Orchestrator job id, among the processes of a connection.
pub async fn by_orchestrator_id(
    pool: &PgPool,
    connection_id: Uuid,
    orchestrator_job_id: i64,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "select j.id from jobs j join processes p on p.id = j.process_id \
         where j.orchestrator_job_id = $1 and p.connection_id = $2 order by j.created_at desc limit 1",
    )
    .bind(orchestrator_job_id)
    .bind(connection_id)
    .fetch_optional(pool)
    .await
}

/// Dead-lettered jobs (out of start attempts), newest first.
pub async fn dead(pool: &PgPool, limit: i64) -> Result<Vec<JobRow>, sqlx::Error> {
    let sql = format!(
        "select {COLUMNS} from jobs where state = 'dead' order by updated_at desc limit $1"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Queues a dead-lettered job again with a fresh set of attempts. False unless it was dead.
pub async fn redrive(pool: &PgPool, id: Uuid, actor: &str) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "update jobs set state = 'queued', attempts = 0, strikes = 0, next_attempt_at = now(), lease_owner = null, lease_expires_at = null, \
         error = null, finished_at = null, state_changed_at = now() where id = $1 and state = 'dead'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    event(
        &mut *tx,
        id,
        "queued",
        "redrive",
        Some(serde_json::json!({"by": actor})),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// A write of the trigger path, to be group-committed.
#[derive(Debug, Clone)]
enum Write {
    Insert(NewJob),
    Hook(Box<HookJob>),
    Started(Started),
}

/// What a `Write` answers.
#[derive(Debug)]
enum Written {
    Job(JobRow),
    Hook(Option<JobRow>),
    Started(Option<JobRow>),
}

/// Writes a batch: one statement per kind of write in it, all in one commit (a
/// transaction only when there are several kinds). Answers in the order given.
async fn write_batch(
    kept: &Kept,
    items: &[Write],
    owner: Uuid,
    lease_secs: i64,
) -> Result<Vec<Written>, sqlx::Error> {
    let mut conn = kept.take().await?;
    match write_kinds(&mut conn, items, owner, lease_secs).await {
        Ok(written) => {
            kept.keep(conn);
            Ok(written)
        }
        // The link broke (a restart, a failover, a killed session): once more on a
        // checked connection. Each write is safe to repeat: a job or delivery already
        // stored is read back, and a start already marked is not marked again.
        Err(e) if broken_link(&e) => {
            tracing::info!(error = %e, "a ledger connection broke; writing the batch again on another");
            drop(conn);
            let mut conn = kept.pool.acquire().await?;
            let written = write_kinds(&mut conn, items, owner, lease_secs).await?;
            kept.keep(conn);
            Ok(written)
        }
        // The pool checks the connection it gets back; the batcher then writes the items
        // one by one, so a bad one fails alone.
        Err(e) => Err(e),
    }
}

/// The error says the connection, not the statement, failed.
fn broken_link(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        // 08: connection exception; 57P: the server is shutting down or restarting.
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// A kept connection idle this long is checked with a round trip before its next batch.
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Connections the ledger keeps between batches. sqlx checks a connection with a round
/// trip each time it is taken from its pool and each time it is given back, and the
/// ledger commits hundreds of batches a second. A kept connection idle for `IDLE_CHECK`
/// is checked before its next batch; one that breaks in use is replaced (`write_batch`).
struct Kept {
    pool: PgPool,
    most: usize,
    idle: std::sync::Mutex<Vec<(PoolConnection<Postgres>, Instant)>>,
}

impl Kept {
    fn new(pool: PgPool, most: usize) -> Self {
        Self {
            pool,
            most,
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    async fn take(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        let kept = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match kept {
            Some((mut conn, since)) => {
                if since.elapsed() < IDLE_CHECK || conn.ping().await.is_ok() {
                    return Ok(conn);
                }
                // Broken (a restart, a dropped link): the pool closes it.
                drop(conn);
                self.pool.acquire().await
            }
            None => self.pool.acquire().await,
        }
    }

    fn keep(&self, conn: PoolConnection<Postgres>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.most {
            idle.push((conn, Instant::now()));
        }
    }
}

/// One commit for the kinds of write in `items`: one statement per kind, in a
/// transaction only when there are several kinds.
async fn write_kinds(
    conn: &mut PgConnection,
    items: &[Write],
    owner: Uuid,
    lease_secs: i64,
) -> Result<Vec<Written>, sqlx::Error> {
    let (mut inserts, mut hooks, mut started) = (Vec::new(), Vec::new(), Vec::new());
    for item in items {
        match item {
            Write::Insert(j) => inserts.push(j),
            Write::Hook(h) => hooks.push(h.as_ref()),
            Write::Started(s) => started.push(s),
        }
    }
    for (batch, n) in [
        ("job_insert", inserts.len()),
        ("hook_insert", hooks.len()),
        ("job_started", started.len()),
    ] {
        if n > 0 {
            crate::metrics::batch_size(batch, n);
        }
    }
    // The marks ride on the statement that stores new jobs (or deliveries). Only jobs
    // and deliveries together take a transaction: both statements define `new`.
    let mut tx: Option<Transaction<'_, Postgres>> = None;
    let conn: &mut PgConnection = if !inserts.is_empty() && !hooks.is_empty() {
        tx.insert(conn.begin().await?)
    } else {
        conn
    };
    let (mut inserted, mut hooked, mut marked) = (Vec::new(), Vec::new(), Vec::new());
    if !inserts.is_empty() {
        (inserted, marked) = insert_many(&mut *conn, &inserts, &started, owner, lease_secs).await?;
    }
    if !hooks.is_empty() {
        let marks = if inserts.is_empty() {
            &started[..]
        } else {
            &[]
        };
        let (stored, m) = insert_hooks_many(&mut *conn, &hooks, marks, owner, lease_secs).await?;
        hooked = stored;
        if inserts.is_empty() {
            marked = m;
        }
    }
    if inserts.is_empty() && hooks.is_empty() {
        marked = mark_started_many(&mut *conn, &started).await?;
    }
    let (mut inserted, mut hooked, mut marked) =
        (inserted.into_iter(), hooked.into_iter(), marked.into_iter());
    if let Some(tx) = tx {
        tx.commit().await?;
    }
    items
        .iter()
        .map(|item| {
            Ok(match item {
                Write::Insert(_) => Written::Job(inserted.next().ok_or(sqlx::Error::RowNotFound)?),
                Write::Hook(_) => Written::Hook(hooked.next().ok_or(sqlx::Error::RowNotFound)?),
                Write::Started(_) => {
                    Written::Started(marked.next().ok_or(sqlx::Error::RowNotFound)?)
                }
            })
        })
        .collect()
}

/// The group-committed writes of the trigger path: new jobs (from `/run` and from
/// webhook deliveries) and jobs Orchestrator took. They share one batcher, so under load
/// one commit carries all three kinds.
#[derive(Clone)]
pub struct Ledger {
    writes: Batcher<Write, Written>,
}

/// Most writes in one batch.
const MAX_BATCH: usize = 512;
/// Batches being committed at once. Once a batch became one statement on a kept
/// connection, one in flight measured best: in five interleaved A/B pairs at 1,000
/// jobs/s, PostgreSQL spent 0.48-0.52 ms of CPU per job against 0.59-0.62 with two, and
/// `/run`'s p50 was 3.0-5.8 ms against 5.0-10.7, at about the same peak throughput.
/// (Before that, two had beaten four.)
pub const BATCHES_IN_FLIGHT: usize = 1;

impl Ledger {
    /// Starts the batcher; new jobs are leased to `owner` for `lease_secs`.
    pub fn spawn(pool: PgPool, owner: Uuid, lease_secs: i64) -> Self {
        // Keep a connection per batch in flight, but never more than a quarter of the pool.
        let most = BATCHES_IN_FLIGHT.min(pool.options().get_max_connections() as usize / 4);
        let kept = Arc::new(Kept::new(pool, most));
        let writes = Batcher::spawn("ledger", MAX_BATCH, BATCHES_IN_FLIGHT, move |items| {
            let kept = kept.clone();
            async move { write_batch(&kept, &items, owner, lease_secs).await }
        });
        Self { writes }
    }

    /// Writes waiting for a group commit (both batches in flight are still committing).
    pub fn waiting(&self) -> usize {
        self.writes.waiting()
    }

    async fn write(&self, item: Write) -> Result<Written, sqlx::Error> {
        self.writes.submit(item).await
    }

    /// Records a webhook delivery and its queued job together (committed with whatever
    /// else is queued); None, with nothing stored, when the delivery's key was taken.
    pub async fn hook(&self, item: HookJob) -> Result<Option<JobRow>, sqlx::Error> {
        match self.write(Write::Hook(Box::new(item))).await? {
            Written::Hook(row) => Ok(row),
            _ => Err(sqlx::Error::RowNotFound),
        }
    }

    /// `hook` within `deadline` (see `Batcher::submit_within`).
    pub async fn hook_within(
        &self,
        item: HookJob,
        deadline: std::time::Duration,
    ) -> Result<Option<JobRow>, Late> {
        match self
            .writes
            .submit_within(Write::Hook(Box::new(item)), deadline)
            .await?
        {
            Written::Hook(row) => Ok(row),
            _ => Err(sqlx::Error::RowNotFound.into()),
        }
    }

    /// `insert` within `deadline` (see `Batcher::submit_within`).
    pub async fn insert_within(
        &self,
        job: NewJob,
        deadline: std::time::Duration,
    ) -> Result<JobRow, Late> {
        match self
            .writes
            .submit_within(Write::Insert(job), deadline)
            .await?
        {
            Written::Job(row) => Ok(row),
            _ => Err(sqlx::Error::RowNotFound.into()),
        }
    }

    /// Records a queued job (committed with whatever else is queued) and answers its row.
    pub async fn insert(&self, job: NewJob) -> Result<JobRow, sqlx::Error> {
        match self.write(Write::Insert(job)).await? {
            Written::Job(row) => Ok(row),
            _ => Err(sqlx::Error::RowNotFound),
        }
    }

    /// Records that Orchestrator has a job; answers the job as it now stands (None if it
    /// was no longer queued).
    pub async fn started(&self, s: Started) -> Result<Option<JobRow>, sqlx::Error> {
        match self.write(Write::Started(s)).await? {
            Written::Started(row) => Ok(row),
            _ => Err(sqlx::Error::RowNotFound),
        }
    }
}
