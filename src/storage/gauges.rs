//! What `/metrics` reads from the database on each scrape.

use sqlx::PgPool;

use crate::metrics::LedgerGauges;

/// Jobs by state of work, callbacks, dead letters, and each tenant's backlog.
pub async fn read(pool: &PgPool) -> Result<LedgerGauges, sqlx::Error> {
    let (queued, in_flight): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where state = 'queued'), count(*) filter (where state <> 'queued')
           from jobs
          where state not in ('successful', 'faulted', 'stopped', 'rejected', 'dead')",
    )
    .fetch_one(pool)
    .await?;
    let dead_jobs: i64 =
        sqlx::query_scalar!(r#"select count(*) as "count!" from jobs where state = 'dead'"#)
            .fetch_one(pool)
            .await?;
    let (pending_callbacks, dead_callbacks): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where state = 'pending'), count(*) filter (where state = 'dead')
           from callback_deliveries where state in ('pending', 'dead')",
    )
    .fetch_one(pool)
    .await?;
    let backlog = sqlx::query_as(
        "select c.orchestrator_url, c.settings->>'tenant_name_header', j.state, count(*) \
           from jobs j join processes p on p.id = j.process_id join connections c on c.id = p.connection_id \
          where j.state in ('queued', 'unknown') group by 1, 2, 3",
    )
    .fetch_all(pool)
    .await?;
    Ok(LedgerGauges {
        queued,
        in_flight,
        dead_jobs,
        pending_callbacks,
        dead_callbacks,
        backlog,
    })
}
