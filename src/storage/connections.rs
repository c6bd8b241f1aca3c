//! Connections and their tokens. Secrets go in sealed; they come out only through
//! `open_secrets` and the token functions, never in a listing.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

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

/// Inserts a connection (and its initial refresh token, if any).
#[tracing::instrument(skip_all, fields(connection = %new.name))]
pub async fn insert(
    pool: &PgPool,
    keys: &KeyRing,
    id: Uuid,
    new: &NewConnection,
) -> Result<ConnectionRow, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "insert into connections (id, name, kind, flavour, orchestrator_url, identity_url, organization, tenant, settings, secrets_sealed, secrets_key_id) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id)
    .bind(&new.name)
    .bind(new.kind.as_str())
    .bind(new.flavour.as_str())
    .bind(&new.settings.orchestrator_url)
    .bind(&new.settings.token_url)
    .bind(&new.organization)
    .bind(&new.tenant)
    .bind(serde_json::to_value(&new.settings).expect("settings serialize"))
    .bind(seal_secrets(keys, id, &new.secrets))
    .bind(keys.active_id())
    .execute(&mut *tx)
    .await?;
    let refresh = new.refresh_token.as_ref().map(|t| {
        keys.seal(
            secrecy::ExposeSecret::expose_secret(t).as_bytes(),
            &aad("refresh_token", id),
        )
    });
    sqlx::query("insert into connection_tokens (connection_id, refresh_token_sealed, key_id) values ($1, $2, $3)")
        .bind(id)
        .bind(refresh)
        .bind(keys.active_id())
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
    let done = sqlx::query(
        "update connections set name = $2, kind = $3, flavour = $4, orchestrator_url = $5, identity_url = $6, organization = $7, \
         tenant = $8, settings = $9, secrets_sealed = $10, secrets_key_id = $11, health = 'unknown', health_reason = null where id = $1",
    )
    .bind(id)
    .bind(&new.name)
    .bind(new.kind.as_str())
    .bind(new.flavour.as_str())
    .bind(&new.settings.orchestrator_url)
    .bind(&new.settings.token_url)
    .bind(&new.organization)
    .bind(&new.tenant)
    .bind(serde_json::to_value(&new.settings).expect("settings serialize"))
    .bind(seal_secrets(keys, id, &merged))
    .bind(keys.active_id())
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    sqlx::query("update connection_tokens set access_token_sealed = null, access_expires_at = null, id_token_sealed = null where connection_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if let Some(t) = &new.refresh_token {
        sqlx::query("update connection_tokens set refresh_token_sealed = $2, key_id = $3 where connection_id = $1")
            .bind(id)
            .bind(keys.seal(secrecy::ExposeSecret::expose_secret(t).as_bytes(), &aad("refresh_token", id)))
            .bind(keys.active_id())
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
    Ok(sqlx::query("delete from connections where id = $1")
        .bind(id)
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
    sqlx::query("update connections set health = $2, health_reason = $3, health_checked_at = now() where id = $1")
        .bind(id)
        .bind(if healthy { "healthy" } else { "unhealthy" })
        .bind(reason)
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

/// The stored tokens of a connection, sealed.
#[derive(Debug, Clone, Default)]
pub struct TokenRow {
    pub access_token_sealed: Option<Vec<u8>>,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub refresh_token_sealed: Option<Vec<u8>>,
    pub last_refreshed_at: Option<DateTime<Utc>>,
}

/// Reads the token row without locking.
pub async fn read_tokens(pool: &PgPool, id: Uuid) -> Result<Option<TokenRow>, sqlx::Error> {
    let row = sqlx::query("select access_token_sealed, access_expires_at, refresh_token_sealed, last_refreshed_at from connection_tokens where connection_id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.map(|r| token_row(&r)).transpose()
}

fn token_row(r: &sqlx::postgres::PgRow) -> Result<TokenRow, sqlx::Error> {
    Ok(TokenRow {
        access_token_sealed: r.try_get("access_token_sealed")?,
        access_expires_at: r.try_get("access_expires_at")?,
        refresh_token_sealed: r.try_get("refresh_token_sealed")?,
        last_refreshed_at: r.try_get("last_refreshed_at")?,
    })
}

/// Locks the token row for a refresh: across every instance, one refresh at a time.
pub async fn lock_tokens(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
) -> Result<TokenRow, sqlx::Error> {
    sqlx::query("insert into connection_tokens (connection_id) values ($1) on conflict do nothing")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    let row = sqlx::query("select access_token_sealed, access_expires_at, refresh_token_sealed, last_refreshed_at from connection_tokens where connection_id = $1 for update")
        .bind(id)
        .fetch_one(&mut **tx)
        .await?;
    token_row(&row)
}

/// Stores a new access token (and a rotated refresh token), inside the locking transaction.
pub async fn save_tokens(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    key_id: &str,
    access_sealed: &[u8],
    expires_at: Option<DateTime<Utc>>,
    refresh_sealed: Option<&[u8]>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update connection_tokens set access_token_sealed = $2, access_expires_at = $3, \
         refresh_token_sealed = coalesce($4, refresh_token_sealed), key_id = $5, refresh_count = refresh_count + 1, \
         last_refreshed_at = now(), last_error = null where connection_id = $1",
    )
    .bind(id)
    .bind(access_sealed)
    .bind(expires_at)
    .bind(refresh_sealed)
    .bind(key_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks the stored access token unusable (after a 401).
pub async fn discard_access_token(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("update connection_tokens set access_token_sealed = null, access_expires_at = null where connection_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Updates the URL a legacy connection found by discovery.
pub async fn set_discovered(
    pool: &PgPool,
    id: Uuid,
    settings: &ConnectionSettings,
    organization: &str,
    tenant: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("update connections set settings = $2, orchestrator_url = $3, organization = $4, tenant = $5 where id = $1")
        .bind(id)
        .bind(serde_json::to_value(settings).expect("settings serialize"))
        .bind(&settings.orchestrator_url)
        .bind(organization)
        .bind(tenant)
        .execute(pool)
        .await?;
    Ok(())
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

/// A verified Orchestrator webhook arrived for the connection (its webhooks are healthy).
/// Written at most once a second per connection.
pub async fn webhook_heard(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into connection_webhooks (connection_id, last_event_at) values ($1, now()) \
         on conflict (connection_id) do update set last_event_at = now() \
         where connection_webhooks.last_event_at is null or connection_webhooks.last_event_at < now() - interval '1 second'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// The connection's webhook secret; one is generated (and stored sealed) if it has none.
pub async fn ensure_webhook_secret(
    pool: &PgPool,
    keys: &KeyRing,
    id: Uuid,
    generate: impl FnOnce() -> String,
) -> anyhow::Result<String> {
    let mut tx = pool.begin().await?;
    let sealed: Option<Vec<u8>> =
        sqlx::query_scalar("select secrets_sealed from connections where id = $1 for update")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    let mut secrets: ConnectionSecrets = match &sealed {
        Some(s) => serde_json::from_slice(&keys.open(s, &aad("secrets", id))?)?,
        None => ConnectionSecrets::default(),
    };
    if let Some(s) = &secrets.webhook_secret {
        return Ok(s.clone());
    }
    let secret = generate();
    secrets.webhook_secret = Some(secret.clone());
    sqlx::query("update connections set secrets_sealed = $2, secrets_key_id = $3 where id = $1")
        .bind(id)
        .bind(seal_secrets(keys, id, &secrets))
        .bind(keys.active_id())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(secret)
}

/// The webhook registered for a connection, as last checked.
#[derive(Debug, Clone, Default)]
pub struct WebhookState {
    pub last_event_at: Option<DateTime<Utc>>,
    pub webhook_key: Option<String>,
    pub checked_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// Reads a connection's webhook state.
pub async fn webhook_state(pool: &PgPool, id: Uuid) -> Result<WebhookState, sqlx::Error> {
    let row = sqlx::query(
        "select last_event_at, webhook_key, checked_at, error from connection_webhooks where connection_id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(r) = row else {
        return Ok(WebhookState::default());
    };
    Ok(WebhookState {
        last_event_at: r.try_get("last_event_at")?,
        webhook_key: r.try_get("webhook_key")?,
        checked_at: r.try_get("checked_at")?,
        error: r.try_get("error")?,
    })
}

/// Records the result of a registration check.
pub async fn webhook_checked(
    pool: &PgPool,
    id: Uuid,
    key: Option<&str>,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into connection_webhooks (connection_id, webhook_key, checked_at, error) values ($1, $2, now(), $3) \
         on conflict (connection_id) do update set webhook_key = coalesce(excluded.webhook_key, connection_webhooks.webhook_key), \
         checked_at = now(), error = excluded.error",
    )
    .bind(id)
    .bind(key)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}
