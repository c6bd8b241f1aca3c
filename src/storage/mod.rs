//! All SQL lives under this module.

pub mod api_keys;
pub mod audit;
pub mod batch;
pub mod callbacks;
pub mod connections;
pub mod hooks;
pub mod job_queue;
pub mod jobs;
pub mod keys;
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

use crate::config::DatabaseSettings;

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

/// The result of each readiness check.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadinessChecks {
    /// `ok`, or why the database could not be queried.
    #[schema(example = "ok")]
    pub database: String,
    /// `ok`, or which migrations are missing.
    #[schema(example = "ok")]
    pub migrations: String,
    /// Connections whose credentials failed for good, with the reason. They do not make
    /// the instance unready (other connections still work), but need an operator.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unhealthy_connections: Vec<String>,
}

impl ReadinessChecks {
    /// True when every check passed.
    pub fn is_ready(&self) -> bool {
        self.database == "ok" && self.migrations == "ok"
    }

    /// One line naming the failed checks.
    pub fn summary(&self) -> String {
        let mut failed = Vec::new();
        if self.database != "ok" {
            failed.push(format!("database: {}", self.database));
        }
        if self.migrations != "ok" {
            failed.push(format!("migrations: {}", self.migrations));
        }
        format!("not ready ({})", failed.join("; "))
    }
}

/// Checks that the database answers and that every embedded migration is applied.
pub async fn readiness(pool: &PgPool) -> ReadinessChecks {
    let query = sqlx::query_scalar::<_, i64>(
        "select version from _sqlx_migrations where success order by version",
    )
    .fetch_all(pool);
    let applied = match tokio::time::timeout(Duration::from_secs(2), query).await {
        Err(_) => return not_ready("timed out after 2 s"),
        Ok(Err(sqlx::Error::Database(e))) if e.code().as_deref() == Some("42P01") => {
            return ReadinessChecks {
                database: "ok".into(),
                migrations: "no migration has been applied".into(),
                unhealthy_connections: Vec::new(),
            };
        }
        Ok(Err(e)) => return not_ready(&e.to_string()),
        Ok(Ok(v)) => v.into_iter().collect::<BTreeSet<i64>>(),
    };
    let missing: Vec<String> = MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
        .map(|m| m.version.to_string())
        .collect();
    let unhealthy_connections = if missing.is_empty() {
        connections::unhealthy(pool)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(n, r)| format!("{n}: {r}"))
            .collect()
    } else {
        Vec::new()
    };
    ReadinessChecks {
        unhealthy_connections,
        database: "ok".into(),
        migrations: if missing.is_empty() {
            "ok".into()
        } else {
            format!("not applied: {}", missing.join(", "))
        },
    }
}

fn not_ready(why: &str) -> ReadinessChecks {
    ReadinessChecks {
        database: why.to_string(),
        migrations: "unknown".into(),
        unhealthy_connections: Vec::new(),
    }
}
