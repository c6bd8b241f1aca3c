//! API keys: only a SHA-256 hash of each key is stored.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

/// A stored key, without the key.
#[derive(Debug, Clone, FromRow)]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, prefix, scopes, expires_at, last_used_at, revoked_at, created_at";

/// Stores a new key's hash.
pub async fn insert(
    pool: &PgPool,
    id: Uuid,
    name: &str,
    prefix: &str,
    hash: &[u8],
    scopes: &[String],
    expires_at: Option<DateTime<Utc>>,
) -> Result<ApiKeyRow, sqlx::Error> {
    let sql = format!(
        "insert into api_keys (id, name, prefix, key_hash, scopes, expires_at) values ($1, $2, $3, $4, $5, $6) returning {COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(name)
        .bind(prefix)
        .bind(hash)
        .bind(scopes)
        .bind(expires_at)
        .fetch_one(pool)
        .await?;
    ApiKeyRow::from_row(&row)
}

/// Every key, newest first.
pub async fn list(pool: &PgPool) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
    let sql = format!("select {COLUMNS} from api_keys order by created_at desc");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await?;
    rows.iter().map(ApiKeyRow::from_row).collect()
}

/// The live key with this hash (not revoked, not expired), noting its use at most once a minute.
pub async fn find_live(pool: &PgPool, hash: &[u8]) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    let sql = format!(
        "select {COLUMNS} from api_keys where key_hash = $1 and revoked_at is null and (expires_at is null or expires_at > now())"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(hash)
        .fetch_optional(pool)
        .await?;
    let key = row.as_ref().map(ApiKeyRow::from_row).transpose()?;
    if let Some(k) = &key
        && k.last_used_at
            .is_none_or(|t| Utc::now() - t > chrono::Duration::minutes(1))
    {
        sqlx::query!(
            "update api_keys set last_used_at = now() where id = $1",
            k.id
        )
        .execute(pool)
        .await?;
    }
    Ok(key)
}

/// Revokes a key. False if there is no such key.
pub async fn revoke(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "update api_keys set revoked_at = coalesce(revoked_at, now()) where id = $1",
        id
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Creates or updates a key declared in the config file, matched by its hash. A key an
/// operator revoked stays revoked. Answers the row and whether it was created.
pub async fn upsert_declared(
    pool: &PgPool,
    key: &crate::domain::api_key::DeclaredKey,
) -> Result<(ApiKeyRow, bool), sqlx::Error> {
    let sql = format!(
        "insert into api_keys (id, name, prefix, key_hash, scopes, expires_at) values ($1, $2, $3, $4, $5, $6) \
         on conflict (key_hash) do update set name = excluded.name, scopes = excluded.scopes, expires_at = excluded.expires_at \
         returning {COLUMNS}, (xmax = 0) as inserted"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::new_v4())
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.hash)
        .bind(&key.scopes)
        .bind(key.expires_at)
        .fetch_one(pool)
        .await?;
    let inserted: bool = sqlx::Row::try_get(&row, "inserted")?;
    Ok((ApiKeyRow::from_row(&row)?, inserted))
}

/// The key with this hash, revoked or not.
pub async fn by_hash(pool: &PgPool, hash: &[u8]) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    let sql = format!("select {COLUMNS} from api_keys where key_hash = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(hash)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(ApiKeyRow::from_row).transpose()
}
