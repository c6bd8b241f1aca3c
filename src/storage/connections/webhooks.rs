//! What a connection knows of Orchestrator's webhooks: the secret they are signed with
//! (sealed), when one was last heard, and when the registration was last checked.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use super::{aad, seal_secrets};
use crate::crypto::KeyRing;
use crate::domain::connection::ConnectionSecrets;

/// A verified Orchestrator webhook arrived for the connection (its webhooks are healthy).
/// Written at most once a second per connection.
pub async fn webhook_heard(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("insert into connection_webhooks (connection_id, last_event_at) values ($1, now()) \
         on conflict (connection_id) do update set last_event_at = now() \
         where connection_webhooks.last_event_at is null or connection_webhooks.last_event_at < now() - interval '1 second'", id)
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
    let sealed: Option<Vec<u8>> = sqlx::query_scalar!(
        "select secrets_sealed from connections where id = $1 for update",
        id
    )
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
    sqlx::query!(
        "update connections set secrets_sealed = $2, secrets_key_id = $3 where id = $1",
        id,
        seal_secrets(keys, id, &secrets),
        keys.active_id()
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(secret)
}

/// The webhook registered for a connection, as last checked.
#[derive(Debug, Clone, Default, FromRow)]
pub struct WebhookState {
    pub last_event_at: Option<DateTime<Utc>>,
    pub webhook_key: Option<String>,
    pub checked_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// Reads a connection's webhook state.
pub async fn webhook_state(pool: &PgPool, id: Uuid) -> Result<WebhookState, sqlx::Error> {
    let row = sqlx::query("select last_event_at, webhook_key, checked_at, error from connection_webhooks where connection_id = $1")
        .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(r) = row else {
        return Ok(WebhookState::default());
    };
    WebhookState::from_row(&r)
}

/// Records the result of a registration check.
pub async fn webhook_checked(
    pool: &PgPool,
    id: Uuid,
    key: Option<&str>,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!("insert into connection_webhooks (connection_id, webhook_key, checked_at, error) values ($1, $2, now(), $3) \
         on conflict (connection_id) do update set webhook_key = coalesce(excluded.webhook_key, connection_webhooks.webhook_key), \
         checked_at = now(), error = excluded.error", id, key, error)
    .execute(pool)
    .await?;
    Ok(())
}
