//! Callback deliveries and their attempts.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgPool, Row};
use uuid::Uuid;

/// A delivery due now, leased to the caller.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: Uuid,
    pub job_id: Uuid,
    pub url: String,
    pub attempts: i32,
    pub message_id: String,
    pub payload: Option<Value>,
}

/// Takes up to `limit` due deliveries, leasing them for `lease_secs`; other instances
/// skip them.
pub async fn claim_due(
    pool: &PgPool,
    limit: i64,
    lease_secs: f64,
) -> Result<Vec<Due>, sqlx::Error> {
    let rows = sqlx::query("update callback_deliveries set lease_expires_at = now() + make_interval(secs => $2) where id in ( \
           select id from callback_deliveries where state = 'pending' and next_attempt_at <= now() \
             and (lease_expires_at is null or lease_expires_at < now()) \
           order by next_attempt_at limit $1 for update skip locked) \
         returning id, job_id, url, attempts, message_id, payload")
        .bind(limit)
        .bind(lease_secs)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Due {
                id: r.try_get("id")?,
                job_id: r.try_get("job_id")?,
                url: r.try_get("url")?,
                attempts: r.try_get("attempts")?,
                message_id: r
                    .try_get::<Option<String>, _>("message_id")?
                    .unwrap_or_else(|| format!("msg_{}", Uuid::new_v4().simple())),
                payload: r.try_get("payload")?,
            })
        })
        .collect()
}

/// Freezes the message, so every retry sends the same one.
pub async fn set_payload(
    pool: &PgPool,
    id: Uuid,
    message_id: &str,
    payload: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update callback_deliveries set payload = $2, message_id = $3 where id = $1",
        id,
        payload,
        message_id
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// What became of an attempt.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Delivered,
    RetryAt(DateTime<Utc>),
    Dead,
}

/// Records an attempt and its consequence.
pub async fn record_attempt(
    pool: &PgPool,
    id: Uuid,
    attempt: i32,
    status: Option<u16>,
    error: Option<&str>,
    duration_ms: i32,
    outcome: Outcome,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!("insert into callback_attempts (delivery_id, attempt, status, error, duration_ms) values ($1, $2, $3, $4, $5)", id, attempt, status.map(i32::from), error, duration_ms)
    .execute(&mut *tx)
    .await?;
    let (state, next) = match outcome {
        Outcome::Delivered => ("delivered", None),
        Outcome::RetryAt(at) => ("pending", Some(at)),
        Outcome::Dead => ("dead", None),
    };
    sqlx::query!("update callback_deliveries set state = $2, attempts = $3, next_attempt_at = $4, lease_expires_at = null, \
         last_status = $5, last_error = $6, delivered_at = case when $2 = 'delivered' then now() else delivered_at end \
         where id = $1", id, state, attempt, next, status.map(i32::from), error)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// One attempt, as shown on the job.
#[derive(Debug, Clone, FromRow)]
pub struct AttemptRow {
    pub attempt: i32,
    pub status: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
    pub at: DateTime<Utc>,
}

/// A delivery, with its attempts.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub job_id: Uuid,
    pub url: String,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub log: Vec<AttemptRow>,
}

const COLUMNS: &str = "id, job_id, url, state, attempts, next_attempt_at, last_status, last_error, delivered_at, created_at, updated_at";

async fn with_log(
    pool: &PgPool,
    rows: Vec<sqlx::postgres::PgRow>,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: Uuid = r.try_get("id")?;
        let log = sqlx::query("select attempt, status, error, duration_ms, at from callback_attempts where delivery_id = $1 order by id")
        .bind(id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(AttemptRow::from_row)
        .collect::<Result<_, sqlx::Error>>()?;
        out.push(DeliveryRow {
            id,
            job_id: r.try_get("job_id")?,
            url: r.try_get("url")?,
            state: r.try_get("state")?,
            attempts: r.try_get("attempts")?,
            next_attempt_at: r.try_get("next_attempt_at")?,
            last_status: r.try_get("last_status")?,
            last_error: r.try_get("last_error")?,
            delivered_at: r.try_get("delivered_at")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            log,
        });
    }
    Ok(out)
}

/// The deliveries of a job, oldest first.
pub async fn for_job(pool: &PgPool, job_id: Uuid) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    let sql =
        format!("select {COLUMNS} from callback_deliveries where job_id = $1 order by created_at");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(job_id)
        .fetch_all(pool)
        .await?;
    with_log(pool, rows).await
}

/// Dead-lettered deliveries, newest first.
pub async fn dead(pool: &PgPool, limit: i64) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    let sql = format!(
        "select {COLUMNS} from callback_deliveries where state = 'dead' order by updated_at desc limit $1"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(limit)
        .fetch_all(pool)
        .await?;
    with_log(pool, rows).await
}

/// Sends a dead-lettered delivery again, with a fresh schedule. False unless it was dead.
pub async fn redrive(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!("update callback_deliveries set state = 'pending', attempts = 0, next_attempt_at = now(), lease_expires_at = null \
         where id = $1 and state = 'dead'", id)
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}

/// One delivery.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<DeliveryRow>, sqlx::Error> {
    let sql = format!("select {COLUMNS} from callback_deliveries where id = $1");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_all(pool)
        .await?;
    Ok(with_log(pool, rows).await?.into_iter().next())
}
