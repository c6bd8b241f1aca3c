//! Following started jobs: the poller's claims and every state Orchestrator reports.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use super::*;

/// What Orchestrator says about a job.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The ledger state (Orchestrator's).
    pub state: JobState,
    /// Output arguments, as JSON.
    pub output: Option<Value>,
    /// The error of a faulted job.
    pub error: Option<Value>,
    /// "Job completed", or the exception text.
    pub info: Option<String>,
}

/// The order of states: a state change is recorded only if it moves forward, so a
/// late or repeated event never overwrites a later state (a terminal one least of all).
const RANK: &str = "case {s} when 'queued' then 0 when 'unknown' then 0 when 'pending' then 1 when 'running' then 2 when 'suspended' then 2 \
    when 'resumed' then 2 when 'stopping' then 3 when 'terminating' then 3 else 4 end";

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
    if !seen.state.is_terminal() {
        // Not an end: the change and its timeline entry in one statement (one round trip).
        let sql = format!(
            "with upd as ({sql} returning id), \
             ev as (insert into job_events (job_id, state, source, detail) select id, $2, $6, $7 from upd) \
             select count(*) from upd"
        );
        let changed: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(seen.state.as_str())
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
        .bind(seen.state.as_str())
        .bind(&seen.output)
        .bind(&seen.error)
        .bind(&seen.info)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    event(&mut *tx, id, seen.state.as_str(), source, detail).await?;
    ended(&mut tx, id).await?;
    tx.commit().await?;
    Ok(true)
}

/// A started, unfinished job the poller should ask about.
#[derive(Debug, Clone, FromRow)]
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
    sqlx::query!("set local jit = off")
        .execute(&mut *tx)
        .await?;
    let rows = sqlx::query("update jobs j set last_polled_at = now() from ( \
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
         returning j.id, j.process_id, due.connection_id, j.orchestrator_job_id, due.previous_poll")
        .bind(limit)
        .bind(cadence.every_secs as f64)
        .bind(cadence.with_webhooks_secs as f64)
        .bind(cadence.quiet_secs as f64)
        .bind(connections)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter().map(ToPoll::from_row).collect()
}

/// Gives claimed jobs back unasked (the tenant's budget ran out): they stay due, and
/// keep their place in line.
pub async fn unclaim(pool: &PgPool, jobs: &[&ToPoll]) -> Result<(), sqlx::Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    let previous: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|j| j.previous_poll).collect();
    sqlx::query!("update jobs set last_polled_at = v.previous from unnest($1::uuid[], $2::timestamptz[]) as v(id, previous) \
         where jobs.id = v.id", &ids, &previous as _)
    .execute(pool)
    .await?;
    Ok(())
}

/// The ledger entry behind an Orchestrator job id (or, with `kind` `queue_item`, a
/// queue item id: they are counted apart), among the targets of a connection.
pub async fn by_orchestrator_id(
    pool: &PgPool,
    connection_id: Uuid,
    orchestrator_job_id: i64,
    kind: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!("select j.id from jobs j join processes p on p.id = j.process_id \
         where j.orchestrator_job_id = $1 and p.connection_id = $2 and j.kind = $3 order by j.created_at desc limit 1",
         orchestrator_job_id, connection_id, kind)
    .fetch_optional(pool)
    .await
}

/// The queue item that retries another: its Id, Key and retry number.
#[derive(Debug, Clone, Copy)]
pub struct FollowedRetry {
    pub id: i64,
    pub key: Option<Uuid>,
    pub retry_number: Option<i32>,
}

/// Follows a queue item's retry: the ledger entry that followed item `from` follows
/// `retry` from now on (its Id and Key), with a timeline entry. False if it already
/// follows a later one.
pub async fn follow_retry(
    pool: &PgPool,
    id: Uuid,
    from: i64,
    retry: FollowedRetry,
) -> Result<bool, sqlx::Error> {
    let detail = serde_json::json!({"orchestrator_queue_item_id": retry.id, "retried_item_id": from,
        "retry_number": retry.retry_number});
    let key = retry.key;
    let changed: i64 = sqlx::query_scalar(
        "with upd as (update jobs set orchestrator_job_id = $2, orchestrator_job_key = coalesce($3, orchestrator_job_key), \
           state_changed_at = now() where id = $1 and orchestrator_job_id < $2 returning id), \
         ev as (insert into job_events (job_id, state, source, detail) select id, 'retried', 'orchestrator', $4 from upd) \
         select count(*) from upd",
    )
    .bind(id)
    .bind(retry.id)
    .bind(key)
    .bind(detail)
    .fetch_one(pool)
    .await?;
    Ok(changed > 0)
}
