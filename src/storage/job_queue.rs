//! The dispatch queue: jobs waiting to be started (`queued`) and jobs whose start may
//! have reached Orchestrator, waiting for a lookup by Reference (`unknown`).
//!
//! `attempts` counts every start tried; `strikes` counts the failures of the job itself,
//! which `dispatch.max_attempts` bounds. A tenant's outage adds no strike.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use super::jobs::{COLUMNS, JobRow, JobState, event};

/// Jobs whose start attempt was interrupted (the instance died holding their lease) may
/// have reached Orchestrator: they become `unknown` and are looked up before any new
/// start. Returns how many.
pub async fn interrupted_to_unknown(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("with upd as ( \
           update jobs set state = 'unknown', lease_owner = null, lease_expires_at = null, next_attempt_at = now(), \
             last_error = 'an earlier start attempt was interrupted', state_changed_at = now() \
           where id in (select id from jobs where state = 'queued' and lease_owner is not null \
             and lease_expires_at < now() for update skip locked) \
           returning id), \
         ev as (insert into job_events (job_id, state, source, detail) \
           select id, 'unknown', 'dispatcher', '{\"why\": \"an earlier start attempt was interrupted; the job is looked up by its Reference before it is started again\"}'::jsonb from upd) \
         select count(*) from upd")
    .fetch_one(pool)
    .await?;
    Ok(n as u64)
}

/// Which jobs a claim takes.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Jobs of processes on these connections (one tenant).
    Connections(&'a [Uuid]),
    /// Jobs whose process was deleted.
    NoProcess,
}

fn scope_sql(scope: Scope<'_>) -> &'static str {
    match scope {
        Scope::Connections(_) => {
            "process_id in (select id from processes where connection_id = any($4))"
        }
        Scope::NoProcess => "process_id is null and $4::uuid[] is not null",
    }
}

fn scope_ids<'a>(scope: Scope<'a>) -> &'a [Uuid] {
    match scope {
        Scope::Connections(ids) => ids,
        Scope::NoProcess => &[],
    }
}

/// Takes up to `limit` jobs in `state` (`queued` or `unknown`) whose time has come and
/// that no attempt holds, leasing them to `owner`; other instances skip the rows locked
/// here. A claim of queued jobs counts a start attempt.
pub async fn claim(
    pool: &PgPool,
    state: JobState,
    owner: Uuid,
    limit: i64,
    lease_secs: i64,
    scope: Scope<'_>,
) -> Result<Vec<JobRow>, sqlx::Error> {
    // A queued job's expired lease was turned into `unknown` first; a lookup whose
    // instance died may simply be made again.
    let (attempts, free) = if state == JobState::Queued {
        ("attempts + 1", "lease_owner is null")
    } else {
        (
            "attempts",
            "(lease_owner is null or lease_expires_at < now())",
        )
    };
    let sql = format!(
        "update jobs set lease_owner = $1, lease_expires_at = now() + make_interval(secs => $3), attempts = {attempts} \
         where id in (select id from jobs where state = $5 and coalesce(next_attempt_at, created_at) <= now() \
           and {free} and {} order by coalesce(next_attempt_at, created_at) \
           limit $2 for update skip locked) \
         returning {COLUMNS}",
        scope_sql(scope)
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(owner)
        .bind(limit)
        .bind(lease_secs as f64)
        .bind(scope_ids(scope))
        .bind(state.as_str())
        .fetch_all(pool)
        .await?;
    rows.iter().map(JobRow::from_row).collect()
}

/// How a failed attempt leaves the job.
#[derive(Debug, Clone)]
pub struct Deferral<'a> {
    pub id: Uuid,
    /// When to try again.
    pub next: DateTime<Utc>,
    /// What went wrong.
    pub error: &'a str,
    /// The failure was the job's own (not its tenant's): it counts towards max_attempts.
    pub strike: bool,
    /// A timeline entry to add (`held`, with why and until when), if any.
    pub event: Option<(&'a str, Value)>,
}

/// The attempt did not start the job and Orchestrator certainly does not have it: try
/// again at `next`. Returns the job's strikes now (None if it was no longer queued).
pub async fn defer(pool: &PgPool, d: &Deferral<'_>) -> Result<Option<i32>, sqlx::Error> {
    let strikes: Option<i32> = sqlx::query_scalar("with upd as (update jobs set lease_owner = null, lease_expires_at = null, next_attempt_at = $2, last_error = $3, \
           strikes = strikes + $4 where id = $1 and state = 'queued' returning id, strikes), \
         ev as (insert into job_events (job_id, state, source, detail) \
           select id, $5, 'dispatcher', $6 from upd where $5 is not null) \
         select strikes from upd")
        .bind(d.id)
        .bind(d.next)
        .bind(d.error)
        .bind(i32::from(d.strike))
        .bind(d.event.as_ref().map(|(e, _)| *e))
        .bind(d.event.as_ref().map(|(_, v)| v))
    .fetch_optional(pool)
    .await?;
    Ok(strikes)
}

/// The job's start may have reached Orchestrator (a timeout, a 5xx after sending): it
/// waits as `unknown` until a lookup by Reference answers for it, from `next` on.
pub async fn mark_unknown(pool: &PgPool, d: &Deferral<'_>) -> Result<bool, sqlx::Error> {
    let done: Option<Uuid> = sqlx::query_scalar("with upd as (update jobs set state = 'unknown', lease_owner = null, lease_expires_at = null, \
           next_attempt_at = $2, last_error = $3, strikes = strikes + $4, state_changed_at = now() \
           where id = $1 and state = 'queued' returning id), \
         ev as (insert into job_events (job_id, state, source, detail) select id, 'unknown', 'dispatcher', $5 from upd) \
         select id from upd")
        .bind(d.id)
        .bind(d.next)
        .bind(d.error)
        .bind(i32::from(d.strike))
        .bind(json!({"why": d.error, "lookup_after": d.next}))
    .fetch_optional(pool)
    .await?;
    Ok(done.is_some())
}

/// A lookup by Reference found nothing: Orchestrator does not have these jobs. Each goes
/// back to `queued` to be started again, or, once out of attempts, to `dead`.
/// Returns how many were dead-lettered.
pub async fn not_found(pool: &PgPool, ids: &[Uuid], max_attempts: i32) -> Result<u64, sqlx::Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    let dead: i64 = sqlx::query_scalar("with upd as ( \
           update jobs set state = case when strikes >= $2 then 'dead' else 'queued' end, \
             lease_owner = null, lease_expires_at = null, \
             next_attempt_at = case when strikes >= $2 then null else now() end, \
             error = case when strikes >= $2 then jsonb_build_object('message', \
               'gave up after ' || strikes || ' failed attempts: ' || coalesce(last_error, '') || \
               '; Orchestrator has no job with its Reference') else error end, \
             finished_at = case when strikes >= $2 then now() else finished_at end, \
             state_changed_at = now() \
           where id = any($1) and state = 'unknown' returning id, state), \
         ev as (insert into job_events (job_id, state, source, detail) \
           select id, case when state = 'dead' then 'dead' else 'reconciled' end, 'reconciler', \
             '{\"found\": false, \"why\": \"Orchestrator has no job with its Reference\"}'::jsonb from upd) \
         select count(*) filter (where state = 'dead') from upd")
        .bind(ids)
        .bind(max_attempts)
    .fetch_one(pool)
    .await?;
    if dead > 0 {
        // Dead jobs end: their waiters wake and their callbacks go out.
        let ended: Vec<Uuid> =
            sqlx::query_scalar("select id from jobs where id = any($1) and state = 'dead'")
                .bind(ids)
                .fetch_all(pool)
                .await?;
        let mut tx = pool.begin().await?;
        for id in ended {
            super::jobs::ended(&mut tx, id).await?;
        }
        tx.commit().await?;
    }
    Ok(dead as u64)
}

/// The lookup could not be made now: the jobs stay `unknown`, looked up again at `next`.
pub async fn unknown_later(
    pool: &PgPool,
    ids: &[Uuid],
    next: DateTime<Utc>,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!("update jobs set lease_owner = null, lease_expires_at = null, next_attempt_at = $2, last_error = $3 \
         where id = any($1) and state = 'unknown'", ids, next, error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Gives claimed jobs back untouched (as if not claimed).
pub async fn release(pool: &PgPool, ids: &[Uuid], state: JobState) -> Result<(), sqlx::Error> {
    let undo = if state == JobState::Queued {
        "attempts - 1"
    } else {
        "attempts"
    };
    let sql = format!(
        "update jobs set lease_owner = null, lease_expires_at = null, attempts = {undo} \
         where id = any($1) and state = $2"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ids)
        .bind(state.as_str())
        .execute(pool)
        .await?;
    Ok(())
}

/// Adds a `held` entry to a job's timeline: the governor kept its start back.
pub async fn held(pool: &PgPool, id: Uuid, detail: Value) -> Result<(), sqlx::Error> {
    event(pool, id, "held", "dispatcher", Some(detail)).await
}
