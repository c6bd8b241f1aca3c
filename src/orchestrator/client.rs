//! The HTTP client for one Orchestrator tenant.

use super::odata::reference_filter;

use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;

use super::error::OrchestratorError;
use super::models::{Folder, Job, ODataList, Release, StartJobsRequest, StopJobsRequest, Webhook};
use crate::domain::folder::FolderRef;
use crate::traffic::{Class, Governor, Outcome, Priority};

/// A client for one tenant's Orchestrator at `base` (e.g. `https://cloud.uipath.com/org/tenant/orchestrator_`).
#[derive(Debug, Clone)]
pub struct OrchestratorClient {
    http: reqwest::Client,
    base: String,
    tenant_name: Option<String>,
    tenant: String,
    governor: Option<std::sync::Arc<Governor>>,
}

impl OrchestratorClient {
    /// `tenant_name` is sent as `X-UIPATH-TenantName` (needed by the legacy flow only).
    pub fn new(http: reqwest::Client, base: &str, tenant_name: Option<String>) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            tenant: crate::traffic::tenant_key(base, tenant_name.as_deref()),
            tenant_name,
            governor: None,
        }
    }

    /// Every call goes through the tenant's traffic governor first.
    pub fn governed(mut self, governor: std::sync::Arc<Governor>) -> Self {
        self.governor = Some(governor);
        self
    }

    /// The key of the tenant this client reaches.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub(super) fn request(
        &self,
        method: Method,
        path: &str,
        token: &str,
        folder: Option<&FolderRef>,
    ) -> RequestBuilder {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(f) = folder {
            let (name, value) = f.header();
            req = req.header(name, value);
        }
        if let Some(t) = &self.tenant_name {
            req = req.header("x-uipath-tenantname", t);
        }
        req
    }

    #[tracing::instrument(name = "orchestrator_call", skip_all, fields(otel.kind = "client", tenant = %self.tenant, class = class.label()))]
    pub(super) async fn send<T: DeserializeOwned>(
        &self,
        req: RequestBuilder,
        write: bool,
        class: Class,
        priority: Priority,
    ) -> Result<T, OrchestratorError> {
        let ticket = match &self.governor {
            Some(g) => match g.admit(&self.tenant, class, priority).await {
                Ok(t) => Some(t),
                Err(hold) => {
                    return Err(OrchestratorError::Held {
                        wait: hold.wait,
                        reason: hold.reason,
                    });
                }
            },
            None => None,
        };
        // The trace goes on to Orchestrator (`traceparent`), when traces are exported.
        let req = req.headers(crate::otel::context_headers());
        let (result, outcome) = self.exchange(req, write).await;
        crate::metrics::orchestrator_call(&self.tenant, class.label(), outcome.1);
        if let (Some(g), Some(t)) = (&self.governor, ticket) {
            g.observe(&self.tenant, class, t, outcome.0).await;
        }
        result
    }

    /// Sends one request; the result, and how it went for the governor and the metrics.
    async fn exchange<T: DeserializeOwned>(
        &self,
        req: RequestBuilder,
        write: bool,
    ) -> (Result<T, OrchestratorError>, (Outcome, &'static str)) {
        let res = match req.send().await {
            Ok(res) => res,
            Err(e) => {
                let err = OrchestratorError::from_transport(&e, write);
                return (Err(err), (Outcome::Failed, "transport_error"));
            }
        };
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::traffic::parse_retry_after(v, chrono::Utc::now()));
        let outcome = match status {
            200..=299 => (Outcome::Ok, "ok"),
            429 => (Outcome::RateLimited(retry_after), "rate_limited"),
            400..=499 => (Outcome::Answered, "client_error"),
            _ => match retry_after {
                Some(wait) => (Outcome::Busy(wait), "server_error"),
                None => (Outcome::Failed, "server_error"),
            },
        };
        let body = match res.bytes().await {
            Ok(b) => b,
            Err(e) => {
                let err = OrchestratorError::from_transport(&e, write);
                return (Err(err), (Outcome::Failed, "transport_error"));
            }
        };
        if !(200..300).contains(&status) {
            let err = OrchestratorError::from_status(status, &body, retry_after, write);
            return (Err(err), outcome);
        }
        let body = if body.is_empty() {
            &b"null"[..]
        } else {
            &body[..]
        };
        let parsed = serde_json::from_slice(body).map_err(|e| {
            let message = format!("unexpected response shape: {e}");
            if write {
                OrchestratorError::Ambiguous {
                    status: Some(status),
                    message,
                }
            } else {
                OrchestratorError::Unavailable {
                    status: Some(status),
                    message,
                    retry_after: None,
                }
            }
        });
        (parsed, outcome)
    }

    /// `GET /odata/Folders` (tenant-level).
    pub async fn folders(&self, token: &str) -> Result<Vec<Folder>, OrchestratorError> {
        let req = self
            .request(Method::GET, "/odata/Folders", token, None)
            .query(&[("$top", "1000")]);
        Ok(self
            .send::<ODataList<Folder>>(req, false, Class::Call, Priority::Routine)
            .await?
            .value)
    }

    /// `GET /odata/Releases` in a folder, optionally filtered by an OData `$filter`.
    pub async fn releases(
        &self,
        token: &str,
        folder: &FolderRef,
        filter: Option<&str>,
    ) -> Result<Vec<Release>, OrchestratorError> {
        let mut req = self
            .request(Method::GET, "/odata/Releases", token, Some(folder))
            .query(&[("$top", "1000")]);
        if let Some(f) = filter {
            req = req.query(&[("$filter", f)]);
        }
        Ok(self
            .send::<ODataList<Release>>(req, false, Class::Call, Priority::Routine)
            .await?
            .value)
    }

    /// `POST .../StartJobs`: the jobs created.
    pub async fn start_jobs(
        &self,
        token: &str,
        folder: &FolderRef,
        body: &StartJobsRequest,
    ) -> Result<Vec<Job>, OrchestratorError> {
        let req = self
            .request(
                Method::POST,
                "/odata/Jobs/UiPath.Server.Configuration.OData.StartJobs",
                token,
                Some(folder),
            )
            .json(body);
        Ok(self
            .send::<ODataList<Job>>(req, true, Class::Start, Priority::Routine)
            .await?
            .value)
    }

    /// `GET /odata/Jobs({id})`.
    pub async fn job(
        &self,
        token: &str,
        folder: &FolderRef,
        id: i64,
    ) -> Result<Job, OrchestratorError> {
        let req = self.request(
            Method::GET,
            &format!("/odata/Jobs({id})"),
            token,
            Some(folder),
        );
        self.send(req, false, Class::Call, Priority::Routine).await
    }

    /// `GET /odata/Jobs?$filter=...`: counts against the tenant's filtered-list limit,
    /// so it takes from the tenant's list budget first.
    pub async fn jobs(
        &self,
        token: &str,
        folder: &FolderRef,
        filter: &str,
        top: u32,
        priority: Priority,
    ) -> Result<Vec<Job>, OrchestratorError> {
        let top = top.min(1000).to_string();
        let req = self
            .request(Method::GET, "/odata/Jobs", token, Some(folder))
            .query(&[("$filter", filter), ("$top", top.as_str())]);
        Ok(self
            .send::<ODataList<Job>>(req, false, Class::List, priority)
            .await?
            .value)
    }

    /// Looks jobs up by our References (after ambiguous starts), in one filtered list.
    pub async fn jobs_by_reference(
        &self,
        token: &str,
        folder: &FolderRef,
        references: &[String],
    ) -> Result<Vec<Job>, OrchestratorError> {
        let filter = reference_filter(references);
        self.jobs(
            token,
            folder,
            &filter,
            references.len() as u32,
            Priority::Urgent,
        )
        .await
    }

    /// `POST .../StopJobs`.
    pub async fn stop_jobs(
        &self,
        token: &str,
        folder: &FolderRef,
        body: &StopJobsRequest,
    ) -> Result<(), OrchestratorError> {
        let req = self
            .request(
                Method::POST,
                "/odata/Jobs/UiPath.Server.Configuration.OData.StopJobs",
                token,
                Some(folder),
            )
            .json(body);
        self.send::<serde_json::Value>(req, true, Class::Call, Priority::Routine)
            .await
            .map(|_| ())
    }

    /// `GET /odata/Webhooks` (tenant-level).
    pub async fn webhooks(&self, token: &str) -> Result<Vec<Webhook>, OrchestratorError> {
        let req = self
            .request(Method::GET, "/odata/Webhooks", token, None)
            .query(&[("$top", "1000")]);
        Ok(self
            .send::<ODataList<Webhook>>(req, false, Class::Call, Priority::Routine)
            .await?
            .value)
    }

    /// `POST /odata/Webhooks`.
    pub async fn create_webhook(
        &self,
        token: &str,
        hook: &Webhook,
    ) -> Result<Webhook, OrchestratorError> {
        let req = self
            .request(Method::POST, "/odata/Webhooks", token, None)
            .json(hook);
        self.send(req, true, Class::Call, Priority::Routine).await
    }

    /// `PUT /odata/Webhooks({id})`.
    pub async fn update_webhook(
        &self,
        token: &str,
        id: i64,
        hook: &Webhook,
    ) -> Result<(), OrchestratorError> {
        let req = self
            .request(Method::PUT, &format!("/odata/Webhooks({id})"), token, None)
            .json(hook);
        self.send::<serde_json::Value>(req, true, Class::Call, Priority::Routine)
            .await
            .map(|_| ())
    }

    /// `POST /odata/Webhooks({id})/UiPath.Server.Configuration.OData.Ping`: Orchestrator
    /// sends the webhook a signed `ping` event.
    pub async fn ping_webhook(&self, token: &str, id: i64) -> Result<(), OrchestratorError> {
        let path = format!("/odata/Webhooks({id})/UiPath.Server.Configuration.OData.Ping");
        let req = self.request(Method::POST, &path, token, None);
        self.send::<serde_json::Value>(req, false, Class::Call, Priority::Routine)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests;
