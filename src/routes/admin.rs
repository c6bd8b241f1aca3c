//! Who may use the admin API: the holder of `GATEWAY_ADMIN_TOKEN`.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::startup::AppState;

/// Proof that the request carries the admin token, or an API key with the `admin` scope.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            if super::auth::presented_key(&req).is_some() {
                let caller =
                    super::auth::caller(&req)
                        .await?
                        .ok_or_else(|| ApiError::Unauthorized {
                            detail: "the API key is not valid, revoked or expired".into(),
                        })?;
                caller.require("admin")?;
                return Ok(Admin);
            }
            check(&req)
        })
    }
}

fn check(req: &HttpRequest) -> Result<Admin, ApiError> {
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
        Ok(Admin)
    } else {
        Err(ApiError::Unauthorized {
            detail: "The admin token is not valid.".into(),
        })
    }
}
