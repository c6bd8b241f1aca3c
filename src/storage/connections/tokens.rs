//! A connection's stored tokens, sealed: read and replaced under a row lock, so that
//! across every instance one refresh runs at a time (refresh tokens rotate).

use chrono::{DateTime, Utc};
use sqlx::{FromRow, Postgres, Transaction};
use uuid::Uuid;

/// The stored tokens of a connection, sealed.
#[derive(Debug, Clone, Default, FromRow)]
pub struct TokenRow {
    pub access_token_sealed: Option<Vec<u8>>,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub refresh_token_sealed: Option<Vec<u8>>,
    pub last_refreshed_at: Option<DateTime<Utc>>,
}

/// Locks the token row for a refresh: across every instance, one refresh at a time.
pub async fn lock_tokens(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
) -> Result<TokenRow, sqlx::Error> {
    sqlx::query!(
        "insert into connection_tokens (connection_id) values ($1) on conflict do nothing",
        id
    )
    .execute(&mut **tx)
    .await?;
    let row = sqlx::query("select access_token_sealed, access_expires_at, refresh_token_sealed, last_refreshed_at from connection_tokens where connection_id = $1 for update")
        .bind(id)
        .fetch_one(&mut **tx)
        .await?;
    TokenRow::from_row(&row)
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
    sqlx::query!("update connection_tokens set access_token_sealed = $2, access_expires_at = $3, \
         refresh_token_sealed = coalesce($4, refresh_token_sealed), key_id = $5, refresh_count = refresh_count + 1, \
         last_refreshed_at = now(), last_error = null where connection_id = $1", id, access_sealed, expires_at, refresh_sealed, key_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
