//! The traffic governor's shared state: one `orchestrator_tenants` row per tenant
//! (pauses, the learned list budget, the circuit) and a sliding log of filtered-list
//! calls, counted under the row's lock so two instances never both take the last call.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool, Row};

/// A tenant's row, as every instance sees it.
#[derive(Debug, Clone, Default, PartialEq, FromRow)]
pub struct TenantRow {
    pub tenant_key: String,
    pub lists_paused_until: Option<DateTime<Utc>>,
    pub starts_paused_until: Option<DateTime<Utc>>,
    pub calls_paused_until: Option<DateTime<Utc>>,
    pub pause_reason: Option<String>,
    pub list_budget: Option<i64>,
    pub list_budget_learned_at: Option<DateTime<Utc>>,
    pub circuit_open_until: Option<DateTime<Utc>>,
    pub circuit_opens: i32,
    pub circuit_reason: Option<String>,
    pub urgent_until: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "tenant_key, lists_paused_until, starts_paused_until, calls_paused_until, \
    pause_reason, list_budget::int8 as list_budget, list_budget_learned_at, circuit_open_until, \
    circuit_opens, circuit_reason, urgent_until";

/// Every tenant's row.
pub async fn all(pool: &PgPool) -> Result<Vec<TenantRow>, sqlx::Error> {
    let sql = format!("select {COLUMNS} from orchestrator_tenants");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await?;
    rows.iter().map(TenantRow::from_row).collect()
}

async fn ensure<'e, E: sqlx::PgExecutor<'e>>(ex: E, tenant: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into orchestrator_tenants (tenant_key) values ($1) on conflict do nothing",
        tenant
    )
    .execute(ex)
    .await?;
    Ok(())
}

/// Which pause column a call class uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseColumn {
    Lists,
    Starts,
    Calls,
}

impl PauseColumn {
    fn name(self) -> &'static str {
        match self {
            Self::Lists => "lists_paused_until",
            Self::Starts => "starts_paused_until",
            Self::Calls => "calls_paused_until",
        }
    }
}

/// Pauses one class of a tenant's calls for `wait` (never shortening a longer pause).
pub async fn pause(
    pool: &PgPool,
    tenant: &str,
    column: PauseColumn,
    wait: Duration,
    reason: &str,
) -> Result<TenantRow, sqlx::Error> {
    ensure(pool, tenant).await?;
    let col = column.name();
    let sql = format!(
        "update orchestrator_tenants set {col} = greatest(coalesce({col}, now()), now() + make_interval(secs => $2)), \
         pause_reason = $3, updated_at = now() where tenant_key = $1 returning {COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(wait.as_secs_f64())
        .bind(reason)
        .fetch_one(pool)
        .await?;
    TenantRow::from_row(&row)
}

/// Opens the circuit, for `first * 2^opens` capped at `max`. `probe` is true when the
/// failure is this instance's probe (which may reopen a circuit already marked open);
/// otherwise a circuit that is already open is left as it is.
pub async fn open_circuit(
    pool: &PgPool,
    tenant: &str,
    first: Duration,
    max: Duration,
    reason: &str,
    probe: bool,
) -> Result<TenantRow, sqlx::Error> {
    ensure(pool, tenant).await?;
    let sql = format!(
        "update orchestrator_tenants set \
           circuit_open_until = now() + make_interval(secs => least($3, $2 * power(2, least(circuit_opens, 20)))), \
           circuit_opens = circuit_opens + 1, circuit_reason = $4, updated_at = now() \
         where tenant_key = $1 and ($5 or circuit_open_until is null) \
         returning {COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(first.as_secs_f64())
        .bind(max.as_secs_f64())
        .bind(reason)
        .bind(probe)
        .fetch_optional(pool)
        .await?;
    match row {
        Some(r) => TenantRow::from_row(&r),
        None => get(pool, tenant).await,
    }
}

/// Takes the one probe of an open circuit whose time has come: the circuit stays marked
/// open (for `hold`) while the probe is out. True for the one instance that got it.
pub async fn claim_probe(pool: &PgPool, tenant: &str, hold: Duration) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!("update orchestrator_tenants set circuit_open_until = now() + make_interval(secs => $2), updated_at = now() \
         where tenant_key = $1 and circuit_open_until <= now()", tenant, hold.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The probe was not sent after all: the next call may probe at once.
pub async fn release_probe(pool: &PgPool, tenant: &str) -> Result<(), sqlx::Error> {
    sqlx::query!("update orchestrator_tenants set circuit_open_until = now() where tenant_key = $1 and circuit_open_until is not null", tenant)
    .execute(pool)
    .await?;
    Ok(())
}

/// The probe was answered: the circuit closes.
pub async fn close_circuit(pool: &PgPool, tenant: &str) -> Result<TenantRow, sqlx::Error> {
    let sql = format!(
        "update orchestrator_tenants set circuit_open_until = null, circuit_opens = 0, circuit_reason = null, \
         updated_at = now() where tenant_key = $1 returning {COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .fetch_optional(pool)
        .await?;
    match row {
        Some(r) => TenantRow::from_row(&r),
        None => get(pool, tenant).await,
    }
}

/// One tenant's row (a default one if it has none yet).
pub async fn get(pool: &PgPool, tenant: &str) -> Result<TenantRow, sqlx::Error> {
    let sql = format!("select {COLUMNS} from orchestrator_tenants where tenant_key = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .fetch_optional(pool)
        .await?;
    match row {
        Some(r) => TenantRow::from_row(&r),
        None => Ok(TenantRow {
            tenant_key: tenant.to_string(),
            ..TenantRow::default()
        }),
    }
}

/// What a take from the list budget needs to know.
#[derive(Debug, Clone, Copy)]
pub struct ListBudget {
    /// The configured budget per window.
    pub configured: i64,
    /// The window, in seconds.
    pub window_secs: u64,
    /// Calls routine polling leaves free while reconciliation waits.
    pub reserve: i64,
    /// Reconciliation (true) or routine polling.
    pub urgent: bool,
    /// After this long with a learned budget, one more call a window is allowed.
    pub probe_secs: u64,
}

/// Takes one filtered-list call from the tenant's budget. `Err(wait)` says how long
/// until one is free (the budget is spent, or Orchestrator asked us to back off).
pub async fn take_list(
    pool: &PgPool,
    tenant: &str,
    b: ListBudget,
) -> Result<Result<(), Duration>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    ensure(&mut *tx, tenant).await?;
    let row = sqlx::query("select extract(epoch from lists_paused_until - now())::float8 as paused, list_budget::int8 as budget, \
         extract(epoch from now() - list_budget_learned_at)::float8 as learned_ago, \
         coalesce(urgent_until > now(), false) as urgent_waits \
         from orchestrator_tenants where tenant_key = $1 for update")
        .bind(tenant)
    .fetch_one(&mut *tx)
    .await?;
    let paused: Option<f64> = row.try_get("paused")?;
    if let Some(secs) = paused.filter(|s| *s > 0.0) {
        tx.rollback().await?;
        return Ok(Err(Duration::from_secs_f64(secs)));
    }
    let mut budget = row
        .try_get::<Option<i64>, _>("budget")?
        .unwrap_or(b.configured);
    let learned_ago: Option<f64> = row.try_get("learned_ago")?;
    if b.probe_secs > 0
        && budget < b.configured
        && learned_ago.is_some_and(|s| s >= b.probe_secs as f64)
    {
        // Time to find out whether the tenant allows more again: one more a window.
        budget += 1;
        let stored = (budget < b.configured).then_some(budget as i32);
        sqlx::query!("update orchestrator_tenants set list_budget = $2, list_budget_learned_at = now() where tenant_key = $1", tenant, stored)
        .execute(&mut *tx)
        .await?;
    }
    let urgent_waits: bool = row.try_get("urgent_waits")?;
    // A little longer than the window: our clock and Orchestrator's see a call at
    // slightly different times.
    let window = b.window_secs as f64 + 1.0;
    sqlx::query!("delete from tenant_list_calls where tenant_key = $1 and at <= now() - make_interval(secs => $2)", tenant, window)
    .execute(&mut *tx)
    .await?;
    let (count, oldest): (i64, Option<f64>) = sqlx::query_as(
        "select count(*), extract(epoch from min(at) + make_interval(secs => $2) - now())::float8 \
         from tenant_list_calls where tenant_key = $1",
    )
    .bind(tenant)
    .bind(window)
    .fetch_one(&mut *tx)
    .await?;
    let limit = if !b.urgent && urgent_waits {
        budget - b.reserve
    } else {
        budget
    };
    if count >= limit {
        if b.urgent {
            sqlx::query!("update orchestrator_tenants set urgent_until = now() + make_interval(secs => $2) where tenant_key = $1", tenant, window)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        let wait = oldest.unwrap_or(window).max(0.001);
        return Ok(Err(Duration::from_secs_f64(wait)));
    }
    sqlx::query!(
        "insert into tenant_list_calls (tenant_key) values ($1)",
        tenant
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(()))
}

/// Orchestrator refused a list with 429 after `used` calls in the window: the tenant
/// allows fewer than we thought. Keeps `used - 1` (at least 1) as the tenant's budget
/// when that is below the one in force. Returns the budget now in force.
pub async fn learn_list_budget(
    pool: &PgPool,
    tenant: &str,
    configured: i64,
    window_secs: u64,
) -> Result<i64, sqlx::Error> {
    let used = used(pool, tenant, window_secs).await?;
    let learned = (used - 1).max(1);
    let now: Option<i64> = sqlx::query_scalar("update orchestrator_tenants set list_budget = $2, list_budget_learned_at = now(), updated_at = now() \
         where tenant_key = $1 and coalesce(list_budget, $3) > $2 returning list_budget::int8")
        .bind(tenant)
        .bind(learned as i32)
        .bind(configured as i32)
    .fetch_optional(pool)
    .await?;
    Ok(match now {
        Some(b) => b,
        None => get(pool, tenant).await?.list_budget.unwrap_or(configured),
    })
}

/// Filtered-list calls counted for a tenant in the current window.
pub async fn used(pool: &PgPool, tenant: &str, window_secs: u64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"select count(*) as "count!" from tenant_list_calls where tenant_key = $1 and at > now() - make_interval(secs => $2)"#, tenant, window_secs as f64 + 1.0)
    .fetch_one(pool)
    .await
}
