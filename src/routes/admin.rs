//! Who may use the admin API: the holder of `GATEWAY_ADMIN_TOKEN`.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};

use crate::error::ApiError;
use crate::state::AppState;

/// Proof that the request carries the admin token, or an API key with the `admin` scope;
/// also who that is, for the audit log.
pub struct Admin {
    /// `admin-token`, or `api-key:<name>` for a key with the `admin` scope.
    pub actor: String,
    request_id: Option<String>,
    client_ip: Option<String>,
    lookups: Option<std::sync::Arc<crate::storage::lookups::Lookups>>,
}

impl Admin {
    fn new(req: &HttpRequest, actor: String) -> Self {
        // One borrow of the extensions at a time: connection_info() takes its own.
        let client_ip = req.connection_info().peer_addr().map(String::from);
        let request_id = req
            .extensions()
            .get::<crate::telemetry::RequestId>()
            .map(|r| r.0.clone());
        let lookups = req
            .app_data::<web::Data<AppState>>()
            .map(|s| s.lookups.clone());
        Admin {
            actor,
            request_id,
            client_ip,
            lookups,
        }
    }

    /// Records a change made by this admin. `before`/`after` are the API's views of the
    /// object (secret-named fields are masked again on the way in).
    pub async fn audit(
        &self,
        pool: &sqlx::PgPool,
        action: &str,
        object_type: &str,
        object_key: &str,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Result<(), ApiError> {
        // The change is made: this instance's copies go now, the others' on the NOTIFY.
        if let Some(l) = &self.lookups {
            l.clear();
        }
        crate::storage::audit::record(
            pool,
            crate::storage::audit::Entry {
                actor: &self.actor,
                action,
                object_type,
                object_key,
                before,
                after,
                request_id: self.request_id.as_deref(),
                client_ip: self.client_ip.as_deref(),
            },
        )
        .await?;
        Ok(())
    }
}

/// An object as JSON for the audit log.
pub fn snapshot<T: serde::Serialize>(v: &T) -> Option<serde_json::Value> {
    serde_json::to_value(v).ok()
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let checked = req.extensions().get::<super::auth::Principal>().cloned();
            if let Some(super::auth::Principal::AdminToken) = checked {
                return Ok(Admin::new(&req, "admin-token".into()));
            }
            if super::auth::presented_key(&req).is_some() {
                let caller =
                    super::auth::caller(&req)
                        .await?
                        .ok_or_else(|| ApiError::Unauthorized {
                            detail: "the API key is not valid, revoked or expired".into(),
                        })?;
                caller.require("admin")?;
                return Ok(Admin::new(&req, format!("api-key:{}", caller.0.name)));
            }
            check(&req)
        })
    }
}

/// Checks the admin token of a request and says who it is.
pub(crate) fn check(req: &HttpRequest) -> Result<Admin, ApiError> {
    super::auth::admin_token(req)?;
    Ok(Admin::new(req, "admin-token".into()))
}
