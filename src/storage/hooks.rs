//! Inbound webhook definitions and their deliveries.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgPool, Row};
use uuid::Uuid;

use crate::crypto::KeyRing;
use crate::domain::hook::{HookResponse, NewHook};
use crate::hooks::verify::SchemeConfig;

/// A definition as stored.
#[derive(Debug, Clone)]
pub struct HookRow {
    pub id: Uuid,
    pub slug: String,
    pub process_id: Uuid,
    pub process_name: String,
    pub scheme: String,
    pub config: SchemeConfig,
    pub secrets_sealed: Option<Vec<u8>>,
    pub public: bool,
    pub enabled: bool,
    pub tolerance_seconds: i32,
    /// The webhook's own body limit, if it sets one.
    pub max_body_bytes: Option<i32>,
    pub dedup: Option<String>,
    pub filter: Option<String>,
    pub mapping: Option<std::collections::BTreeMap<String, String>>,
    pub response: HookResponse,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl HookRow {
    /// The largest delivery body this webhook accepts: its own limit, else `default`
    /// (`hooks.max_body_bytes`), never above `cap` (`body_limit_bytes`).
    pub fn body_limit(&self, default: usize, cap: usize) -> usize {
        self.max_body_bytes
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(default)
            .min(cap)
    }
}

/// The associated data binding sealed secrets to their webhook.
pub fn aad(id: Uuid) -> String {
    format!("webhooks.secrets:{id}")
}

const SELECT: &str = "select w.id, w.slug, w.process_id, p.name as process_name, w.scheme, w.scheme_config, w.secrets_sealed, \
    w.public, w.enabled, w.tolerance_seconds, w.max_body_bytes, w.dedup_source, w.filter, w.mapping, w.response, w.created_at, w.updated_at \
    from webhooks w join processes p on p.id = w.process_id";

fn from_row(r: &sqlx::postgres::PgRow) -> Result<HookRow, sqlx::Error> {
    let json = |col: &str| -> Result<Value, sqlx::Error> {
        Ok(r.try_get::<Option<Value>, _>(col)?.unwrap_or(Value::Null))
    };
    Ok(HookRow {
        id: r.try_get("id")?,
        slug: r.try_get("slug")?,
        process_id: r.try_get("process_id")?,
        process_name: r.try_get("process_name")?,
        scheme: r.try_get("scheme")?,
        config: serde_json::from_value(json("scheme_config")?).unwrap_or_default(),
        secrets_sealed: r.try_get("secrets_sealed")?,
        public: r.try_get("public")?,
        enabled: r.try_get("enabled")?,
        tolerance_seconds: r
            .try_get::<Option<i32>, _>("tolerance_seconds")?
            .unwrap_or(300),
        max_body_bytes: r.try_get("max_body_bytes")?,
        dedup: r.try_get("dedup_source")?,
        filter: r.try_get("filter")?,
        mapping: serde_json::from_value(json("mapping")?).unwrap_or_default(),
        response: serde_json::from_value(json("response")?).unwrap_or_default(),
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The secrets of a definition.
pub fn open_secrets(keys: &KeyRing, row: &HookRow) -> anyhow::Result<Vec<String>> {
    let Some(sealed) = &row.secrets_sealed else {
        return Ok(Vec::new());
    };
    Ok(serde_json::from_slice(&keys.open(sealed, &aad(row.id))?)?)
}

/// What went wrong writing a definition.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("no process named `{0}`")]
    UnknownProcess(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Creates a definition (`existing` None) or replaces the one with slug `existing`;
/// secrets left out are kept. None when `existing` is not found.
pub async fn upsert(
    pool: &PgPool,
    keys: &KeyRing,
    existing: Option<&str>,
    h: &NewHook,
) -> Result<Option<HookRow>, WriteError> {
    let process: Option<Uuid> =
        sqlx::query_scalar!("select id from processes where name = $1", &h.process)
            .fetch_optional(pool)
            .await?;
    let process = process.ok_or_else(|| WriteError::UnknownProcess(h.process.clone()))?;
    let id = match existing {
        Some(slug) => {
            match sqlx::query_scalar::<_, Uuid>("select id from webhooks where slug = $1")
                .bind(slug)
                .fetch_optional(pool)
                .await?
            {
                Some(id) => id,
                None => return Ok(None),
            }
        }
        None => Uuid::new_v4(),
    };
    let sealed = h
        .secrets
        .as_ref()
        .map(|s| keys.seal(&serde_json::to_vec(s).expect("secrets serialize"), &aad(id)));
    let config = serde_json::to_value(&h.config).expect("config serializes");
    let mapping = h
        .mapping
        .as_ref()
        .map(|m| serde_json::to_value(m).expect("mapping serializes"));
    let response = serde_json::to_value(&h.response).expect("response serializes");
    sqlx::query!("insert into webhooks (id, slug, process_id, scheme, scheme_config, secrets_sealed, secrets_key_id, public, enabled, \
           tolerance_seconds, dedup_source, filter, mapping, response, max_body_bytes) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         on conflict (id) do update set slug = $2, process_id = $3, scheme = $4, scheme_config = $5, \
           secrets_sealed = coalesce($6, webhooks.secrets_sealed), secrets_key_id = case when $6 is null then webhooks.secrets_key_id else $7 end, \
           public = $8, enabled = $9, tolerance_seconds = $10, dedup_source = $11, filter = $12, mapping = $13, response = $14, max_body_bytes = $15", id, &h.slug, process, &h.scheme, config, sealed, keys.active_id(), h.public, h.enabled, h.tolerance_seconds, h.dedup.as_deref(), h.filter.as_deref(), mapping, response, h.max_body_bytes)
    .execute(pool)
    .await?;
    Ok(get(pool, &h.slug).await?)
}

/// One definition by slug.
pub async fn get(pool: &PgPool, slug: &str) -> Result<Option<HookRow>, sqlx::Error> {
    let sql = format!("{SELECT} where w.slug = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(slug)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every definition, by slug.
pub async fn list(pool: &PgPool) -> Result<Vec<HookRow>, sqlx::Error> {
    let sql = format!("{SELECT} order by w.slug");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Deletes a definition and its delivery records.
pub async fn delete(pool: &PgPool, slug: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!("delete from webhooks where slug = $1", slug)
        .execute(pool)
        .await?
        .rows_affected()
        == 1)
}

/// A delivery record.
#[derive(Debug, Clone, Default, FromRow)]
pub struct Delivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub delivery_key: Option<String>,
    /// `ok`, `failed`, `public` or `replayed`.
    pub verification: String,
    pub verification_detail: Option<String>,
    /// `first`, `duplicate`, `expired` or `none`.
    pub dedup: String,
    /// `passed`, `rejected`, `error`, or None without a filter.
    pub filter_result: Option<String>,
    pub mapped_input: Option<Value>,
    pub job_id: Option<Uuid>,
    pub error: Option<String>,
    /// `accepted`, `duplicate`, `filtered`, `failed`, `refused` (verification) or `answered`
    /// (a challenge or ping).
    pub outcome: String,
    pub request_headers: Option<Value>,
    pub request_query: Option<String>,
    pub request_body: Option<Vec<u8>>,
    pub replay_of: Option<Uuid>,
    pub received_at: Option<DateTime<Utc>>,
    /// SHA-256 of the signed body, for schemes whose signature has no timestamp: a
    /// second delivery of the same bytes is a repeat (a replay), whatever its id says.
    pub body_sha256: Option<Vec<u8>>,
}

const DELIVERY_COLUMNS: &str = "id, webhook_id, delivery_key, verification, verification_detail, dedup, filter_result, mapped_input, \
    job_id, error, outcome, request_headers, request_query, request_body, replay_of, received_at, body_sha256";

/// Records a delivery. With `dedup = "first"` and a key or a body hash, returns false
/// (and records nothing) when either was already recorded first: a repeat.
pub async fn record<'e, E: sqlx::PgExecutor<'e>>(ex: E, d: &Delivery) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!("insert into webhook_deliveries (id, webhook_id, delivery_key, verification, verification_detail, dedup, filter_result, \
           mapped_input, job_id, error, outcome, request_headers, request_query, request_body, replay_of, body_sha256) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         on conflict do nothing", d.id, d.webhook_id, d.delivery_key.as_deref(), &d.verification, d.verification_detail.as_deref(), &d.dedup, d.filter_result.as_deref(), d.mapped_input.as_ref(), d.job_id, d.error.as_deref(), &d.outcome, d.request_headers.as_ref(), d.request_query.as_deref(), d.request_body.as_deref(), d.replay_of, d.body_sha256.as_deref())
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The first delivery recorded with a key.
pub async fn first_with_key(
    pool: &PgPool,
    webhook_id: Uuid,
    key: &str,
) -> Result<Option<Delivery>, sqlx::Error> {
    let sql = format!(
        "select {DELIVERY_COLUMNS} from webhook_deliveries where webhook_id = $1 and delivery_key = $2 and dedup = 'first'"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(webhook_id)
        .bind(key)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(Delivery::from_row).transpose()
}

/// The first delivery recorded with a body hash.
pub async fn first_with_body(
    pool: &PgPool,
    webhook_id: Uuid,
    sha256: &[u8],
) -> Result<Option<Delivery>, sqlx::Error> {
    let sql = format!(
        "select {DELIVERY_COLUMNS} from webhook_deliveries where webhook_id = $1 and body_sha256 = $2 and dedup = 'first'"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(webhook_id)
        .bind(sha256)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(Delivery::from_row).transpose()
}

/// Deletes refused deliveries older than `retention_secs`, at most `limit` at a time;
/// answers how many went.
pub async fn purge_refused(
    pool: &PgPool,
    retention_secs: i64,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "delete from webhook_deliveries where id in ( \
           select id from webhook_deliveries where outcome = 'refused' \
             and received_at < now() - make_interval(secs => $1) limit $2)",
        retention_secs as f64,
        limit
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// A first delivery older than the retention window no longer blocks its key.
pub async fn expire(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update webhook_deliveries set dedup = 'expired' where id = $1 and dedup = 'first'",
        id
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Deliveries of a webhook, newest first.
pub async fn deliveries(
    pool: &PgPool,
    webhook_id: Uuid,
    limit: i64,
) -> Result<Vec<Delivery>, sqlx::Error> {
    let sql = format!(
        "select {DELIVERY_COLUMNS} from webhook_deliveries where webhook_id = $1 order by received_at desc, id desc limit $2"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(webhook_id)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(Delivery::from_row).collect()
}

/// One delivery of a webhook.
pub async fn delivery(
    pool: &PgPool,
    webhook_id: Uuid,
    id: Uuid,
) -> Result<Option<Delivery>, sqlx::Error> {
    let sql = format!(
        "select {DELIVERY_COLUMNS} from webhook_deliveries where webhook_id = $1 and id = $2"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(webhook_id)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(Delivery::from_row).transpose()
}
