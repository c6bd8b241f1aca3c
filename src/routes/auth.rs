//! Callers with an API key (`/run`, `/jobs`), and the key format.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use base64::Engine;
use rand::Rng;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::api_keys::ApiKeyRow;

/// Every key starts with this, so leaked keys are easy to spot and scan for.
pub const KEY_PREFIX: &str = "ugw_";

/// A new random key (256 bits) and its hash.
pub fn new_key() -> (String, Vec<u8>) {
    let bytes: [u8; 32] = rand::rng().random();
    let key = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hash(&key);
    (key, hash)
}

/// SHA-256 of a key. Keys are 256 random bits, so a fast hash is enough.
pub fn hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// The key sent with the request: `Authorization: Bearer ugw_...` or `X-API-Key: ugw_...`.
pub fn presented_key(req: &HttpRequest) -> Option<&str> {
    let h = req.headers();
    h.get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| h.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|k| k.starts_with(KEY_PREFIX))
}

/// Who the credentials of a request name, once checked (in the request's extensions).
#[derive(Debug, Clone)]
pub enum Principal {
    /// The holder of `GATEWAY_ADMIN_TOKEN`.
    AdminToken,
    /// A live API key.
    Key(ApiKeyRow),
}

/// Checks the admin token (`Authorization: Bearer <GATEWAY_ADMIN_TOKEN>`) in constant time.
/// 403 while the admin API is closed (no token set), 401 when it is missing or wrong.
pub fn admin_token(req: &HttpRequest) -> Result<(), ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| anyhow::anyhow!("no app state"))?;
    let Some(expected) = &state.settings.admin_token else {
        return Err(ApiError::Forbidden {
            code: "admin_api_closed",
            detail: "The admin API is closed because GATEWAY_ADMIN_TOKEN is not set. Set it to a random value of at least 16 characters, restart, and send it as `Authorization: Bearer <token>`.".into(),
        });
    };
    let given = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::Unauthorized {
            detail: "The admin API needs `Authorization: Bearer <GATEWAY_ADMIN_TOKEN>`.".into(),
        })?;
    // Compare digests in constant time: neither the length nor the content leaks.
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.expose_secret().as_bytes());
    if bool::from(a.ct_eq(&b)) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized {
            detail: "The admin token is not valid.".into(),
        })
    }
}

/// What a caller without a live API key is told.
pub const NO_KEY: &str =
    "send a live API key as `Authorization: Bearer ugw_...` (create one with POST /api-keys)";

/// A caller holding a live API key.
pub struct Caller(pub ApiKeyRow);

impl Caller {
    /// True if the key may do `scope` (`admin` may do everything).
    pub fn has(&self, scope: &str) -> bool {
        self.0.scopes.iter().any(|s| s == scope || s == "admin")
    }

    /// Checks that the key may start `process`: `run:<process>`, `run:*` or `admin`.
    /// Process scopes live under `run:`, so no process name can pass for another scope.
    pub fn require_process(&self, process: &str) -> Result<(), ApiError> {
        let scope = format!("run:{process}");
        if self.has(&scope) || self.has("run:*") {
            return Ok(());
        }
        Err(ApiError::Forbidden {
            code: "missing_scope",
            detail: format!(
                "this API key lacks the scope `{scope}` (or `run:*`) needed to start this process"
            ),
        })
    }

    /// Checks a named scope such as `jobs:read`.
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.has(scope) {
            return Ok(());
        }
        Err(ApiError::Forbidden {
            code: "missing_scope",
            detail: format!("this API key lacks the scope `{scope}`"),
        })
    }
}

/// The presented key: as the gate found it, else looked up.
pub async fn caller(req: &HttpRequest) -> Result<Option<Caller>, ApiError> {
    let checked = req.extensions().get::<Principal>().cloned();
    match checked {
        Some(Principal::Key(row)) => return Ok(Some(Caller(row))),
        Some(Principal::AdminToken) => return Ok(None),
        None => {}
    }
    let Some(key) = presented_key(req) else {
        return Ok(None);
    };
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| anyhow::anyhow!("no app state"))?;
    let Some(row) = state.lookups.api_key(&state.pool, &hash(key)).await? else {
        return Ok(None);
    };
    state.limits.api_key(row.id)?;
    Ok(Some(Caller(row)))
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            caller(&req).await?.ok_or_else(|| ApiError::Unauthorized {
                detail: NO_KEY.into(),
            })
        })
    }
}
