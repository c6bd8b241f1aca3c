//! Always a valid token: cached in memory, persisted sealed, refreshed ahead of
//! expiry, one refresh at a time per connection across every instance.
//!
//! A refresh runs inside a transaction that holds the connection's
//! `connection_tokens` row lock. Whoever gets the lock first refreshes; the others
//! then find the new token in the row. A rotated refresh token is committed before
//! the new access token is handed out, so a crash cannot lose it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use uuid::Uuid;

use crate::crypto::KeyRing;
use crate::domain::connection::credentials;
use crate::orchestrator::{OrchestratorError, request_token};
use crate::storage::connections::{self as store, ConnectionRow, aad};

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Orchestrator or its identity server refused or failed.
    #[error(transparent)]
    Orchestrator(#[from] OrchestratorError),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The stored connection cannot produce credentials (missing or unreadable secrets).
    #[error("{0}")]
    Config(String),
}

#[derive(Clone)]
struct Cached {
    token: SecretString,
    expires_at: Option<DateTime<Utc>>,
    refresh_after: Option<DateTime<Utc>>,
}

impl Cached {
    fn usable(&self, now: DateTime<Utc>) -> bool {
        self.expires_at
            .is_none_or(|e| e > now + chrono::Duration::seconds(5))
    }

    fn fresh(&self, now: DateTime<Utc>) -> bool {
        self.usable(now) && self.refresh_after.is_none_or(|r| r > now)
    }

    fn is(&self, other: Option<&SecretString>) -> bool {
        other.is_some_and(|o| o.expose_secret() == self.token.expose_secret())
    }
}

/// Hands out tokens for connections.
pub struct TokenManager {
    pool: PgPool,
    keys: Arc<KeyRing>,
    http: reqwest::Client,
    refresh_at: f64,
    cache: Mutex<HashMap<Uuid, Cached>>,
    flights: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

impl TokenManager {
    /// `refresh_at` is the share of a token's lifetime after which it is renewed (0.8).
    pub fn new(pool: PgPool, keys: Arc<KeyRing>, http: reqwest::Client, refresh_at: f64) -> Self {
        Self {
            pool,
            keys,
            http,
            refresh_at,
            cache: Mutex::default(),
            flights: Mutex::default(),
        }
    }

    fn cached(&self, id: Uuid) -> Option<Cached> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    fn remember(&self, id: Uuid, c: Cached) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, c);
    }

    /// Forgets what is cached for a connection (after it was changed or deleted).
    pub fn forget(&self, id: Uuid) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    fn flight(&self, id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        self.flights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_default()
            .clone()
    }

    fn refresh_after(
        &self,
        issued: DateTime<Utc>,
        expires: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        expires.map(|e| {
            let life = (e - issued).num_milliseconds().max(0) as f64;
            issued + chrono::Duration::milliseconds((life * self.refresh_at) as i64)
        })
    }

    /// A valid token for the connection, refreshed if it is past its refresh point.
    pub async fn token(&self, conn: &ConnectionRow) -> Result<SecretString, TokenError> {
        self.get(conn, None).await
    }

    /// After Orchestrator answered 401 to `stale`: a token other than `stale`.
    pub async fn token_after_401(
        &self,
        conn: &ConnectionRow,
        stale: &SecretString,
    ) -> Result<SecretString, TokenError> {
        self.get(conn, Some(stale)).await
    }

    /// Runs `call` with a token; on a 401, refreshes once and runs it once more.
    pub async fn with_token<T, F, Fut>(
        &self,
        conn: &ConnectionRow,
        call: F,
    ) -> Result<T, TokenError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, OrchestratorError>>,
    {
        let token = self.token(conn).await?;
        match call(token.expose_secret().to_string()).await {
            Err(OrchestratorError::Auth { status: 401, .. }) => {
                tracing::info!(connection = %conn.name, "Orchestrator answered 401: refreshing the token once");
                let fresh = self.token_after_401(conn, &token).await?;
                Ok(call(fresh.expose_secret().to_string()).await?)
            }
            other => Ok(other?),
        }
    }

    #[tracing::instrument(skip_all, fields(connection = %conn.name, kind = conn.kind.as_str()))]
    async fn get(
        &self,
        conn: &ConnectionRow,
        stale: Option<&SecretString>,
    ) -> Result<SecretString, TokenError> {
        if let Some(c) = self
            .cached(conn.id)
            .filter(|c| c.fresh(Utc::now()) && !c.is(stale))
        {
            return Ok(c.token);
        }
        let flight = self.flight(conn.id);
        let _one_at_a_time_here = flight.lock().await;
        if let Some(c) = self
            .cached(conn.id)
            .filter(|c| c.fresh(Utc::now()) && !c.is(stale))
        {
            return Ok(c.token);
        }
        let mut tx = self.pool.begin().await?;
        let row = store::lock_tokens(&mut tx, conn.id).await?;
        let stored = match (&row.access_token_sealed, row.last_refreshed_at) {
            (Some(sealed), Some(issued)) => {
                let token = self.open(sealed, "access_token", conn.id)?;
                Some(Cached {
                    token,
                    expires_at: row.access_expires_at,
                    refresh_after: self.refresh_after(issued, row.access_expires_at),
                })
            }
            _ => None,
        };
        let now = Utc::now();
        if let Some(c) = stored.as_ref().filter(|c| c.fresh(now) && !c.is(stale)) {
            // Another instance (or an earlier run) refreshed it: no token request.
            tx.commit().await?;
            self.remember(conn.id, c.clone());
            return Ok(c.token.clone());
        }
        let secrets = store::open_secrets(&self.keys, conn)
            .map_err(|e| TokenError::Config(format!("cannot open the stored secrets: {e}")))?;
        let refresh_token = match &row.refresh_token_sealed {
            Some(sealed) => Some(self.open(sealed, "refresh_token", conn.id)?),
            None => None,
        };
        let creds =
            credentials(conn.kind, &conn.settings, &secrets, refresh_token).ok_or_else(|| {
                TokenError::Config("the connection lacks a field its kind needs; update it".into())
            })?;
        let requested = request_token(&self.http, &creds).await;
        crate::metrics::token_refresh(if requested.is_ok() { "ok" } else { "failed" });
        match requested {
            Ok(grant) => {
                let access = self.keys.seal(
                    grant.access_token.expose_secret().as_bytes(),
                    &aad("access_token", conn.id),
                );
                let rotated = grant.refresh_token.as_ref().map(|r| {
                    self.keys
                        .seal(r.expose_secret().as_bytes(), &aad("refresh_token", conn.id))
                });
                store::save_tokens(
                    &mut tx,
                    conn.id,
                    self.keys.active_id(),
                    &access,
                    grant.expires_at,
                    rotated.as_deref(),
                )
                .await?;
                tx.commit().await?;
                tracing::info!(expires_at = ?grant.expires_at, rotated = rotated.is_some(), "token refreshed");
                if conn.health != "healthy" {
                    store::set_health(&self.pool, conn.id, true, None).await?;
                }
                let c = Cached {
                    token: grant.access_token,
                    expires_at: grant.expires_at,
                    refresh_after: self.refresh_after(now, grant.expires_at),
                };
                self.remember(conn.id, c.clone());
                Ok(c.token)
            }
            Err(e) if !e.is_retryable() => {
                tx.rollback().await?;
                tracing::warn!(error = %e, "token refresh failed for good: the connection is unhealthy");
                store::set_health(&self.pool, conn.id, false, Some(&e.to_string())).await?;
                self.forget(conn.id);
                Err(e.into())
            }
            Err(e) => {
                tx.rollback().await?;
                // Orchestrator is down: the current token, if still valid, is better than nothing.
                match stored.filter(|c| c.usable(now) && !c.is(stale)) {
                    Some(c) => {
                        tracing::warn!(error = %e, "token refresh failed; using the current token until it expires");
                        Ok(c.token)
                    }
                    None => Err(e.into()),
                }
            }
        }
    }

    fn open(&self, sealed: &[u8], what: &str, id: Uuid) -> Result<SecretString, TokenError> {
        let plain = self
            .keys
            .open(sealed, &aad(what, id))
            .map_err(|e| TokenError::Config(format!("cannot open the stored {what}: {e}")))?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| TokenError::Config(format!("the stored {what} is not text")))
    }
}
