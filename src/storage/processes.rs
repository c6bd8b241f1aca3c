//! Process mappings.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::domain::arguments::ResolvedRelease;
use crate::domain::folder::FolderRef;
use crate::domain::process::{JobOptions, NewProcess, ReleaseSelector};
use crate::domain::queue::QueueSchema;

/// A stored process.
#[derive(Debug, Clone)]
pub struct ProcessRow {
    pub id: Uuid,
    pub name: String,
    pub connection_id: Uuid,
    pub connection_name: String,
    pub folder: String,
    pub release: ReleaseSelector,
    /// For a queue mapping, the queue's name in Orchestrator (None for a process).
    pub queue: Option<String>,
    /// The queue's definition last looked up (its schemas, unique references).
    pub queue_schema: Option<QueueSchema>,
    /// The release last looked up for this process (its key and argument definitions).
    pub resolved: Option<ResolvedRelease>,
    pub release_resolved_at: Option<DateTime<Utc>>,
    /// Why the folder, release and version could not be checked against Orchestrator
    /// when this was saved; cleared by the next successful lookup.
    pub unverified_reason: Option<String>,
    pub default_input: serde_json::Value,
    pub job_options: JobOptions,
    pub max_wait_seconds: i32,
    pub callback_url: Option<String>,
    /// Whether callbacks can be signed (a secret is stored).
    pub has_callback_secret: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SELECT: &str = "select p.id, p.name, p.connection_id, c.name as connection_name, p.folder_path, p.folder_id, \
    p.folder_key, p.release_process_key, p.release_name, p.release_version, p.release_key, p.release_arguments, \
    p.release_outputs, p.queue_name, p.queue_definition, p.unverified_reason, p.release_resolved_at, p.default_input, p.job_options, p.max_wait_seconds, p.callback_url, \
    p.callback_secret_sealed is not null as has_callback_secret, p.created_at, p.updated_at \
    from processes p join connections c on c.id = p.connection_id";

fn from_row(r: &sqlx::postgres::PgRow) -> Result<ProcessRow, sqlx::Error> {
    let folder = match (
        r.try_get::<Option<String>, _>("folder_path")?,
        r.try_get::<Option<i64>, _>("folder_id")?,
        r.try_get::<Option<Uuid>, _>("folder_key")?,
    ) {
        (Some(p), _, _) => p,
        (_, Some(id), _) => id.to_string(),
        (_, _, Some(key)) => key.to_string(),
        _ => String::new(),
    };
    let job_options: serde_json::Value = r.try_get("job_options")?;
    Ok(ProcessRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        connection_id: r.try_get("connection_id")?,
        connection_name: r.try_get("connection_name")?,
        folder,
        release: ReleaseSelector {
            process_key: r.try_get("release_process_key")?,
            name: r.try_get("release_name")?,
            version: r.try_get("release_version")?,
        },
        queue: r.try_get("queue_name")?,
        queue_schema: r
            .try_get::<Option<serde_json::Value>, _>("queue_definition")?
            .and_then(|d| serde_json::from_value(d).ok()),
        resolved: match (
            r.try_get::<Option<Uuid>, _>("release_key")?,
            r.try_get::<Option<serde_json::Value>, _>("release_arguments")?,
        ) {
            (Some(key), Some(arguments)) => Some(ResolvedRelease {
                key,
                arguments: serde_json::from_value(arguments).unwrap_or_default(),
                outputs: r
                    .try_get::<Option<serde_json::Value>, _>("release_outputs")?
                    .and_then(|o| serde_json::from_value(o).ok())
                    .unwrap_or_default(),
            }),
            _ => None,
        },
        release_resolved_at: r.try_get("release_resolved_at")?,
        unverified_reason: r.try_get("unverified_reason")?,
        default_input: r.try_get("default_input")?,
        job_options: serde_json::from_value(job_options).unwrap_or_default(),
        max_wait_seconds: r.try_get("max_wait_seconds")?,
        callback_url: r.try_get("callback_url")?,
        has_callback_secret: r.try_get("has_callback_secret")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// What went wrong writing a process.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// No connection has that name.
    #[error("no connection named `{0}`")]
    UnknownConnection(String),
    /// The database refused (a taken name shows as a unique violation).
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Creates a process, or replaces the one named `existing` (resetting the release cache).
pub async fn upsert(
    pool: &PgPool,
    existing: Option<&str>,
    p: &NewProcess,
) -> Result<Option<ProcessRow>, WriteError> {
    let connection: Option<Uuid> =
        sqlx::query_scalar!("select id from connections where name = $1", &p.connection)
            .fetch_optional(pool)
            .await?;
    let connection =
        connection.ok_or_else(|| WriteError::UnknownConnection(p.connection.clone()))?;
    let (path, id, key) = match FolderRef::parse(&p.folder) {
        FolderRef::Path(path) => (Some(path), None, None),
        FolderRef::Id(id) => (None, Some(id), None),
        FolderRef::Key(key) => (None, None, Uuid::parse_str(&key).ok()),
    };
    let options = serde_json::to_value(&p.job_options).expect("options serialize");
    let default_input = serde_json::Value::Object(p.default_input.clone());
    let done = match existing {
        None => sqlx::query(
            "insert into processes (id, name, connection_id, folder_path, folder_id, folder_key, release_process_key, release_name, \
             release_version, default_input, job_options, max_wait_seconds, callback_url, queue_name) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(Uuid::new_v4()),
        Some(old) => sqlx::query(
            "update processes set name = $2, connection_id = $3, folder_path = $4, folder_id = $5, folder_key = $6, \
             release_process_key = $7, release_name = $8, release_version = $9, default_input = $10, job_options = $11, \
             max_wait_seconds = $12, callback_url = $13, queue_name = $14, release_key = null, release_arguments = null, release_outputs = null, \
             queue_definition = null, unverified_reason = null, release_resolved_at = null \
             where name = $1 and (queue_name is null) = ($14::text is null)",
        )
        .bind(old),
    }
    .bind(&p.name)
    .bind(connection)
    .bind(path)
    .bind(id)
    .bind(key)
    .bind(&p.release.process_key)
    .bind(&p.release.name)
    .bind(&p.release.version)
    .bind(default_input)
    .bind(options)
    .bind(p.max_wait_seconds)
    .bind(&p.callback_url)
    .bind(&p.queue)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    Ok(get(pool, &p.name).await?)
}

/// One process or queue mapping by name (`ProcessRow::queue` tells which).
pub async fn get(pool: &PgPool, name: &str) -> Result<Option<ProcessRow>, sqlx::Error> {
    let sql = format!("{SELECT} where p.name = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every process (or, with `queues`, every queue mapping), by name.
pub async fn list(pool: &PgPool, queues: bool) -> Result<Vec<ProcessRow>, sqlx::Error> {
    let sql = format!("{SELECT} where (p.queue_name is not null) = $1 order by p.name");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(queues)
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Deletes a process (or, with `queue`, a queue mapping); its jobs keep their history.
pub async fn delete(pool: &PgPool, name: &str, queue: bool) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!(
        "delete from processes where name = $1 and (queue_name is not null) = $2",
        name,
        queue
    )
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}

/// One process by id.
pub async fn get_by_id(pool: &PgPool, id: Uuid) -> Result<Option<ProcessRow>, sqlx::Error> {
    let sql = format!("{SELECT} where p.id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Stores a process's callback signing secret, sealed and bound to the process.
pub async fn set_callback_secret(
    pool: &PgPool,
    keys: &crate::crypto::KeyRing,
    id: Uuid,
    secret: &str,
) -> Result<(), sqlx::Error> {
    let sealed = keys.seal(secret.as_bytes(), &secret_aad(id));
    sqlx::query!(
        "update processes set callback_secret_sealed = $2, callback_key_id = $3 where id = $1",
        id,
        sealed,
        keys.active_id()
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// A process's callback signing secret, if it has one.
pub async fn callback_secret(
    pool: &PgPool,
    keys: &crate::crypto::KeyRing,
    id: Uuid,
) -> anyhow::Result<Option<String>> {
    let sealed: Option<Option<Vec<u8>>> = sqlx::query_scalar!(
        "select callback_secret_sealed from processes where id = $1",
        id
    )
    .fetch_optional(pool)
    .await?;
    let Some(sealed) = sealed.flatten() else {
        return Ok(None);
    };
    let plain = keys
        .open(&sealed, &secret_aad(id))
        .map_err(|e| anyhow::anyhow!("opening the callback secret: {e}"))?;
    Ok(Some(String::from_utf8(plain)?))
}

/// The associated data binding a sealed callback secret to its process.
pub fn secret_aad(process_id: Uuid) -> String {
    format!("processes.callback_secret:{process_id}")
}

/// Stores the release found for a process.
pub async fn cache_release(
    pool: &PgPool,
    process_id: Uuid,
    release: &ResolvedRelease,
) -> Result<(), sqlx::Error> {
    let arguments = serde_json::to_value(&release.arguments).unwrap_or_default();
    let outputs = serde_json::to_value(&release.outputs).unwrap_or_default();
    sqlx::query!(
        "update processes set release_key = $2, release_arguments = $3, release_outputs = $4, \
         release_resolved_at = now(), unverified_reason = null where id = $1",
        process_id,
        release.key,
        arguments,
        outputs
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks a process as saved without the check against Orchestrator, and why.
pub async fn mark_unverified(
    pool: &PgPool,
    process_id: Uuid,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update processes set unverified_reason = $2 where id = $1",
        process_id,
        reason
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Stores the queue definition found for a queue mapping.
pub async fn cache_queue(
    pool: &PgPool,
    process_id: Uuid,
    queue: &QueueSchema,
) -> Result<(), sqlx::Error> {
    let definition = serde_json::to_value(queue).unwrap_or_default();
    sqlx::query!(
        "update processes set queue_definition = $2, release_resolved_at = now(), unverified_reason = null where id = $1",
        process_id,
        definition
    )
    .execute(pool)
    .await?;
    Ok(())
}
