//! The per-tenant budget of filtered job lists, shared by every instance: a sliding
//! 60-second log of calls, counted under a row lock so two instances never both take
//! the last call.

use std::time::Duration;

use sqlx::PgPool;

/// Takes one filtered-list call from the tenant's budget. `Err(wait)` says how long
/// until one is free (the budget is spent, or Orchestrator asked us to back off).
pub async fn take(
    pool: &PgPool,
    tenant: &str,
    per_minute: i64,
) -> Result<Result<(), Duration>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("insert into poll_budget (tenant_key) values ($1) on conflict do nothing")
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    let blocked: Option<f64> = sqlx::query_scalar(
        "select extract(epoch from blocked_until - now())::float8 from poll_budget \
         where tenant_key = $1 for update",
    )
    .bind(tenant)
    .fetch_one(&mut *tx)
    .await?;
    if let Some(secs) = blocked.filter(|s| *s > 0.0) {
        tx.rollback().await?;
        return Ok(Err(Duration::from_secs_f64(secs)));
    }
    sqlx::query(
        "delete from poll_calls where tenant_key = $1 and at <= now() - interval '60 seconds'",
    )
    .bind(tenant)
    .execute(&mut *tx)
    .await?;
    let (count, oldest): (i64, Option<f64>) = sqlx::query_as(
        "select count(*), extract(epoch from min(at) + interval '60 seconds' - now())::float8 \
         from poll_calls where tenant_key = $1",
    )
    .bind(tenant)
    .fetch_one(&mut *tx)
    .await?;
    if count >= per_minute {
        tx.rollback().await?;
        let wait = oldest.unwrap_or(60.0).max(0.001);
        return Ok(Err(Duration::from_secs_f64(wait)));
    }
    sqlx::query("insert into poll_calls (tenant_key) values ($1)")
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Ok(()))
}

/// Orchestrator answered 429: no filtered lists for this tenant for `wait`.
pub async fn block(pool: &PgPool, tenant: &str, wait: Duration) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into poll_budget (tenant_key, blocked_until) values ($1, now() + make_interval(secs => $2)) \
         on conflict (tenant_key) do update set blocked_until = excluded.blocked_until, updated_at = now()",
    )
    .bind(tenant)
    .bind(wait.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(())
}

/// Filtered-list calls counted for a tenant in the last minute.
pub async fn used(pool: &PgPool, tenant: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "select count(*) from poll_calls where tenant_key = $1 and at > now() - interval '60 seconds'",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await
}
