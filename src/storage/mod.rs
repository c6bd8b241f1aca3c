//! All SQL lives under this module.

pub mod api_keys;
pub mod audit;
pub mod batch;
pub mod callbacks;
pub mod connections;
pub mod gauges;
pub mod hooks;
pub mod job_queue;
pub mod job_watch;
pub mod jobs;
pub mod keys;
pub mod lookups;
pub mod processes;
pub mod traffic;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use utoipa::ToSchema;

use serde::Deserialize;

/// Connection pool settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// Connections kept open when idle.
    pub min_connections: u32,
    /// How long a request waits for a free connection before answering 503, in milliseconds.
    pub acquire_timeout_ms: u64,
    /// How long a request waits for its write (a job, a delivery) to be committed before
    /// answering 503, in milliseconds. A write not yet sent by then is dropped, so the 503
    /// means nothing was recorded.
    pub write_timeout_ms: u64,
}

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Parses a database URL.
pub fn connect_options(url: &SecretString) -> anyhow::Result<PgConnectOptions> {
    url.expose_secret()
        .parse::<PgConnectOptions>()
        .map(|o| o.application_name("uipath-gateway"))
        // The URL may hold a password: never echo it.
        .map_err(|_| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL"))
}

/// Builds the pool. Connections are opened on demand, so a database that is
/// down makes requests answer 503 instead of stopping the gateway.
pub fn pool(options: PgConnectOptions, settings: &DatabaseSettings) -> PgPool {
    // Every statement is planned for its tables as they are now. The ledger's tables start
    // empty and grow by thousands of rows a minute, and PostgreSQL's plan cache would keep,
    // on a long-lived connection, a generic plan made while `jobs` was empty until
    // autovacuum analyzed it: a sequential scan of `jobs` for every group commit of start
    // marks, 8 ms a batch at 40,000 jobs (found with auto_explain under scripts/bench).
    let options = options.options([("plan_cache_mode", "force_custom_plan")]);
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        .connect_lazy_with(options)
}

/// Waits up to `patience` for the database to answer, then applies pending migrations.
pub async fn migrate(pool: &PgPool, patience: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut delay = Duration::from_millis(200);
    loop {
        match sqlx::query("select 1").execute(pool).await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e).context("the database is not reachable"),
        }
    }
    MIGRATOR
        .run(pool)
        .await
        .context("applying database migrations")?;
    Ok(())
}

/// The result of each readiness check, in fixed words: `/readyz` needs no credentials, so
/// it names no connection and echoes no error text (that is in the admin `GET /status`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadinessChecks {
    /// `ok`, `unavailable` or `timeout`.
    #[schema(example = "ok")]
    pub database: &'static str,
    /// `ok`, `pending` (some are not applied) or `unknown` (the database did not answer).
    #[schema(example = "ok")]
    pub migrations: &'static str,
}

/// What the readiness checks found, in full (for the admin).
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    /// Why the database could not be queried, if it could not.
    pub database_error: Option<String>,
    /// True when the query timed out.
    pub timed_out: bool,
    /// Embedded migrations not applied (all of them when the table is missing).
    pub missing_migrations: Vec<String>,
}

impl Readiness {
    /// True when every check passed.
    pub fn is_ready(&self) -> bool {
        self.database_error.is_none() && self.missing_migrations.is_empty()
    }

    /// The checks as `/readyz` shows them.
    pub fn checks(&self) -> ReadinessChecks {
        ReadinessChecks {
            database: match (&self.database_error, self.timed_out) {
                (None, _) => "ok",
                (Some(_), true) => "timeout",
                (Some(_), false) => "unavailable",
            },
            migrations: if self.database_error.is_some() {
                "unknown"
            } else if self.missing_migrations.is_empty() {
                "ok"
            } else {
                "pending"
            },
        }
    }
}

/// Checks that the database answers (within 2 s) and that every embedded migration is applied.
pub async fn readiness(pool: &PgPool) -> Readiness {
    let query = sqlx::query_scalar::<_, i64>(
        "select version from _sqlx_migrations where success order by version",
    )
    .fetch_all(pool);
    let applied = match tokio::time::timeout(Duration::from_secs(2), query).await {
        Err(_) => {
            return Readiness {
                database_error: Some("timed out after 2 s".into()),
                timed_out: true,
                ..Default::default()
            };
        }
        Ok(Err(sqlx::Error::Database(e))) if e.code().as_deref() == Some("42P01") => {
            BTreeSet::new()
        }
        Ok(Err(e)) => {
            return Readiness {
                database_error: Some(e.to_string()),
                ..Default::default()
            };
        }
        Ok(Ok(v)) => v.into_iter().collect::<BTreeSet<i64>>(),
    };
    Readiness {
        missing_migrations: MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
            .map(|m| m.version.to_string())
            .collect(),
        ..Default::default()
    }
}
