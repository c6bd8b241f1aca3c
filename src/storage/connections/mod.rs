//! Connections: their settings and sealed secrets, health, and lookups by id or name.
//! Secrets go in sealed; they come out only through `open_secrets` and the token
//! functions (`tokens.rs`), never in a listing.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;

mod tokens;
mod webhooks;

pub use tokens::{TokenRow, lock_tokens, save_tokens};
pub use webhooks::{
    WebhookState, ensure_webhook_secret, webhook_checked, webhook_heard, webhook_state,
};

use crate::crypto::KeyRing;
use crate::domain::connection::{
    ConnectionSecrets, ConnectionSettings, Flavour, Kind, NewConnection,
};

/// A stored connection, without its secrets.
#[derive(Debug, Clone)]
pub struct ConnectionRow {
    pub id: Uuid,
    pub name: String,
    pub kind: Kind,
    pub flavour: Flavour,
    pub organization: Option<String>,
    pub tenant: Option<String>,
    pub settings: ConnectionSettings,
    pub secrets_sealed: Option<Vec<u8>>,
    pub health: String,
    pub health_reason: Option<String>,
    pub health_checked_at: Option<DateTime<Utc>>,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The associated data that binds sealed values to their place.
pub fn aad(what: &str, id: Uuid) -> String {
    format!("connections.{what}:{id}")
}

const COLUMNS: &str = "c.id, c.name, c.kind, c.flavour, c.organization, c.tenant, c.settings, c.secrets_sealed, \
    c.health, c.health_reason, c.health_checked_at, t.access_expires_at, c.created_at, c.updated_at";

fn from_row(row: &sqlx::postgres::PgRow) -> Result<ConnectionRow, sqlx::Error> {
    let settings: serde_json::Value = row.try_get("settings")?;
    Ok(ConnectionRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: parse_text("kind", row.try_get("kind")?)?,
        flavour: parse_text("flavour", row.try_get("flavour")?)?,
        organization: row.try_get("organization")?,
        tenant: row.try_get("tenant")?,
        settings: serde_json::from_value(settings).map_err(|e| sqlx::Error::ColumnDecode {
            index: "settings".into(),
            source: Box::new(e),
        })?,
        secrets_sealed: row.try_get("secrets_sealed")?,
        health: row.try_get("health")?,
        health_reason: row.try_get("health_reason")?,
        health_checked_at: row.try_get("health_checked_at")?,
        token_expires_at: row.try_get("access_expires_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn parse_text<T: serde::de::DeserializeOwned>(col: &str, v: String) -> Result<T, sqlx::Error> {
    serde_json::from_value(serde_json::Value::String(v)).map_err(|e| sqlx::Error::ColumnDecode {
        index: col.into(),
        source: Box::new(e),
    })
}

fn seal_secrets(keys: &KeyRing, id: Uuid, secrets: &ConnectionSecrets) -> Vec<u8> {
    let json = serde_json::to_vec(secrets).expect("secrets serialize");
    keys.seal(&json, &aad("secrets", id))
}

/// Opens the secrets of a connection.
pub fn open_secrets(keys: &KeyRing, row: &ConnectionRow) -> anyhow::Result<ConnectionSecrets> {
    let Some(sealed) = &row.secrets_sealed else {
        return Ok(ConnectionSecrets::default());
    };
    let plain = keys.open(sealed, &aad("secrets", row.id))?;
    Ok(serde_json::from_slice(&plain)?)
}

/// Binds `$1`..`$11` of the insert and of the update: the id, the connection's fields,
/// its sealed secrets and the key that sealed them.
fn bind_fields<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    id: Uuid,
    new: &'q NewConnection,
    sealed: Vec<u8>,
    keys: &'q KeyRing,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    q.bind(id)
        .bind(&new.name)
        .bind(new.kind.as_str())
        .bind(new.flavour.as_str())
        .bind(&new.settings.orchestrator_url)
        .bind(&new.settings.token_url)
        .bind(&new.organization)
        .bind(&new.tenant)
        .bind(serde_json::to_value(&new.settings).expect("settings serialize"))
        .bind(sealed)
        .bind(keys.active_id())
}

/// Inserts a connection (and its initial refresh token, if any).
#[tracing::instrument(skip_all, fields(connection = %new.name))]
pub async fn insert(
    pool: &PgPool,
    keys: &KeyRing,
    id: Uuid,
    new: &NewConnection,
) -> Result<ConnectionRow, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let insert = sqlx::query(
        "insert into connections (id, name, kind, flavour, orchestrator_url, identity_url, organization, tenant, settings, secrets_sealed, secrets_key_id) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    );
    bind_fields(insert, id, new, seal_secrets(keys, id, &new.secrets), keys)
        .execute(&mut *tx)
        .await?;
    let refresh = new.refresh_token.as_ref().map(|t| {
        keys.seal(
            secrecy::ExposeSecret::expose_secret(t).as_bytes(),
            &aad("refresh_token", id),
        )
    });
    sqlx::query!("insert into connection_tokens (connection_id, refresh_token_sealed, key_id) values ($1, $2, $3)", id, refresh, keys.active_id())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    get(pool, id).await?.ok_or(sqlx::Error::RowNotFound)
}

/// Replaces a connection's settings. Secrets left out of `new` are kept; a new
/// refresh token replaces the stored one; any cached access token is dropped.
pub async fn replace(
    pool: &PgPool,
    keys: &KeyRing,
    id: Uuid,
    new: &NewConnection,
    old_secrets: ConnectionSecrets,
) -> Result<Option<ConnectionRow>, sqlx::Error> {
    let merged = ConnectionSecrets {
        client_secret: new
            .secrets
            .client_secret
            .clone()
            .or(old_secrets.client_secret),
        token: new.secrets.token.clone().or(old_secrets.token),
        password: new.secrets.password.clone().or(old_secrets.password),
        user_key: new.secrets.user_key.clone().or(old_secrets.user_key),
        webhook_secret: new
            .secrets
            .webhook_secret
            .clone()
            .or(old_secrets.webhook_secret),
    };
    let mut tx = pool.begin().await?;
    let update = sqlx::query(
        "update connections set name = $2, kind = $3, flavour = $4, orchestrator_url = $5, identity_url = $6, organization = $7, \
         tenant = $8, settings = $9, secrets_sealed = $10, secrets_key_id = $11, health = 'unknown', health_reason = null where id = $1",
    );
    let done = bind_fields(update, id, new, seal_secrets(keys, id, &merged), keys)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    sqlx::query!("update connection_tokens set access_token_sealed = null, access_expires_at = null, id_token_sealed = null where connection_id = $1", id)
        .execute(&mut *tx)
        .await?;
    if let Some(t) = &new.refresh_token {
        sqlx::query!("update connection_tokens set refresh_token_sealed = $2, key_id = $3 where connection_id = $1", id, keys.seal(secrecy::ExposeSecret::expose_secret(t).as_bytes(), &aad("refresh_token", id)), keys.active_id())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    get(pool, id).await
}

/// One connection.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<ConnectionRow>, sqlx::Error> {
    let sql = format!(
        "select {COLUMNS} from connections c left join connection_tokens t on t.connection_id = c.id where c.id = $1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every connection, by name.
pub async fn list(pool: &PgPool) -> Result<Vec<ConnectionRow>, sqlx::Error> {
    let sql = format!(
        "select {COLUMNS} from connections c left join connection_tokens t on t.connection_id = c.id order by c.name"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Deletes a connection. Fails with a foreign-key violation while processes use it.
pub async fn delete(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!("delete from connections where id = $1", id)
        .execute(pool)
        .await?
        .rows_affected()
        == 1)
}

/// Records whether the connection works.
pub async fn set_health(
    pool: &PgPool,
    id: Uuid,
    healthy: bool,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!("update connections set health = $2, health_reason = $3, health_checked_at = now() where id = $1", id, if healthy { "healthy" } else { "unhealthy" }, reason)
        .execute(pool)
        .await?;
    Ok(())
}

/// Unhealthy connections and why, for the admin's `GET /status`.
pub async fn unhealthy(pool: &PgPool) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = sqlx::query("select name, coalesce(health_reason, '') as reason from connections where health = 'unhealthy' order by name")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("name")?, r.try_get("reason")?)))
        .collect()
}

/// A connection by id (a UUID) or by name.
pub async fn find(pool: &PgPool, id_or_name: &str) -> Result<Option<ConnectionRow>, sqlx::Error> {
    if let Ok(id) = Uuid::parse_str(id_or_name) {
        return get(pool, id).await;
    }
    // PostgreSQL refuses NUL in text; no name has one.
    if id_or_name.contains('\0') {
        return Ok(None);
    }
    let sql = format!(
        "select {COLUMNS} from connections c left join connection_tokens t on t.connection_id = c.id where c.name = $1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_or_name)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}
