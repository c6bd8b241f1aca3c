//! Jobs that have not reached Orchestrator: inserted with an Idempotency-Key, ended
//! without running, dead-lettered and redriven.

use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::*;

/// The job ends without running: `rejected` (Orchestrator refused it) or `dead`
/// (out of attempts).
/// Ends a job that is still queued (it never reached Orchestrator). False, changing
/// nothing, when the job had moved on: Orchestrator may have it now.
pub async fn mark_final(
    pool: &PgPool,
    id: Uuid,
    state: JobState,
    error: Value,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query!("update jobs set state = $2, error = $3, last_error = $3::jsonb->>'message', lease_owner = null, lease_expires_at = null, \
         next_attempt_at = null, finished_at = now(), state_changed_at = now() where id = $1 and state in ('queued', 'unknown')", id, state.as_str(), &error)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    event(&mut *tx, id, state.as_str(), "dispatcher", Some(error)).await?;
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
    let done = sqlx::query!(
        "update jobs set orchestrator_job_id = $2, orchestrator_job_key = $3 \
         where id = $1 and state = 'stopped' and orchestrator_job_id is null",
        id,
        orchestrator_job_id,
        orchestrator_job_key
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A job has just reached a terminal state: queue its callback (if it has one) and
/// wake whoever waits for it, on every instance, when the transaction commits; and count
/// it (`ugw_jobs_ended_total`).
pub async fn ended(tx: &mut Transaction<'_, Postgres>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("insert into callback_deliveries (id, job_id, url, state, next_attempt_at, message_id) \
         select $2, id, callback_url, 'pending', now(), $3 from jobs where id = $1 and callback_url is not null", id, Uuid::new_v4(), format!("msg_{}", Uuid::new_v4().simple()))
    .execute(&mut **tx)
    .await?;
    let ended = sqlx::query!(
        "select pg_notify($1, $2::text), process_name, kind, state from jobs where id = $2::text::uuid",
        ENDED_CHANNEL,
        id.to_string()
    )
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(e) = ended {
        crate::metrics::job_ended(&e.process_name, &e.kind, &e.state);
    }
    Ok(())
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
    rows.iter().map(JobRow::from_row).collect()
}

/// Queues a dead-lettered job again with a fresh set of attempts. False unless it was dead.
pub async fn redrive(pool: &PgPool, id: Uuid, actor: &str) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query!("update jobs set state = 'queued', attempts = 0, strikes = 0, next_attempt_at = now(), lease_owner = null, lease_expires_at = null, \
         error = null, finished_at = null, state_changed_at = now() where id = $1 and state = 'dead'", id)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    event(
        &mut *tx,
        id,
        JobState::Queued.as_str(),
        "redrive",
        Some(serde_json::json!({"by": actor})),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}
