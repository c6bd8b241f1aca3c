//! The HTTP client for one Orchestrator tenant.

use std::time::Duration;

use base64::Engine;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;

use super::error::OrchestratorError;
use super::models::{Folder, Job, ODataList, Release, StartJobsRequest, StopJobsRequest, Webhook};

/// How a folder is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderRef {
    /// The int64 `Id` (it changes if the licence plan changes).
    Id(i64),
    /// The stable GUID.
    Key(String),
    /// The full path, e.g. `Finance/AP`.
    Path(String),
}

impl FolderRef {
    /// Reads what an operator wrote: digits are an id, a GUID is a key, anything else a path.
    pub fn parse(s: &str) -> Self {
        if let Ok(id) = s.parse::<i64>() {
            FolderRef::Id(id)
        } else if s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            FolderRef::Key(s.to_string())
        } else {
            FolderRef::Path(s.to_string())
        }
    }

    /// The header that carries this folder. Non-ASCII paths use the `-Encoded` header
    /// (Base64 of UTF-16LE), as UiPath's SDK does.
    pub fn header(&self) -> (HeaderName, HeaderValue) {
        let (name, value) = match self {
            FolderRef::Id(id) => ("x-uipath-organizationunitid", id.to_string()),
            FolderRef::Key(key) => ("x-uipath-folderkey", key.clone()),
            FolderRef::Path(path) if path.is_ascii() && !path.chars().any(char::is_control) => {
                ("x-uipath-folderpath", path.clone())
            }
            FolderRef::Path(path) => {
                let utf16: Vec<u8> = path.encode_utf16().flat_map(u16::to_le_bytes).collect();
                (
                    "x-uipath-folderpath-encoded",
                    base64::engine::general_purpose::STANDARD.encode(utf16),
                )
            }
        };
        (
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("")),
        )
    }
}

/// A client for one tenant's Orchestrator at `base` (e.g. `https://cloud.uipath.com/org/tenant/orchestrator_`).
#[derive(Debug, Clone)]
pub struct OrchestratorClient {
    http: reqwest::Client,
    base: String,
    tenant_name: Option<String>,
}

/// The shared HTTP client: rustls, timeouts, no redirects to other hosts.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("uipath-gateway/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds")
}

impl OrchestratorClient {
    /// `tenant_name` is sent as `X-UIPATH-TenantName` (needed by the legacy flow only).
    pub fn new(http: reqwest::Client, base: &str, tenant_name: Option<String>) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            tenant_name,
        }
    }

    fn request(
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

    async fn send<T: DeserializeOwned>(
        req: RequestBuilder,
        write: bool,
    ) -> Result<T, OrchestratorError> {
        let res = req.send().await.map_err(|e| {
            crate::metrics::orchestrator_call("transport_error");
            OrchestratorError::from_transport(&e, write)
        })?;
        let status = res.status().as_u16();
        crate::metrics::orchestrator_call(match status {
            200..=299 => "ok",
            429 => "rate_limited",
            400..=499 => "client_error",
            _ => "server_error",
        });
        let retry_after = res
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = res
            .bytes()
            .await
            .map_err(|e| OrchestratorError::from_transport(&e, write))?;
        if !(200..300).contains(&status) {
            return Err(OrchestratorError::from_status(
                status,
                &body,
                retry_after,
                write,
            ));
        }
        let body = if body.is_empty() {
            &b"null"[..]
        } else {
            &body[..]
        };
        serde_json::from_slice(body).map_err(|e| {
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
        })
    }

    /// `GET /odata/Folders` (tenant-level).
    pub async fn folders(&self, token: &str) -> Result<Vec<Folder>, OrchestratorError> {
        let req = self
            .request(Method::GET, "/odata/Folders", token, None)
            .query(&[("$top", "1000")]);
        Ok(Self::send::<ODataList<Folder>>(req, false).await?.value)
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
        Ok(Self::send::<ODataList<Release>>(req, false).await?.value)
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
        Ok(Self::send::<ODataList<Job>>(req, true).await?.value)
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
        Self::send(req, false).await
    }

    /// `GET /odata/Jobs?$filter=...` (counts against the tenant's filtered-list limit).
    pub async fn jobs(
        &self,
        token: &str,
        folder: &FolderRef,
        filter: &str,
        top: u32,
    ) -> Result<Vec<Job>, OrchestratorError> {
        let top = top.min(1000).to_string();
        let req = self
            .request(Method::GET, "/odata/Jobs", token, Some(folder))
            .query(&[("$filter", filter), ("$top", top.as_str())]);
        Ok(Self::send::<ODataList<Job>>(req, false).await?.value)
    }

    /// Looks a job up by our Reference (after an ambiguous StartJobs).
    pub async fn job_by_reference(
        &self,
        token: &str,
        folder: &FolderRef,
        reference: &str,
    ) -> Result<Option<Job>, OrchestratorError> {
        let filter = format!("Reference eq '{}'", reference.replace('\'', "''"));
        Ok(self
            .jobs(token, folder, &filter, 1)
            .await?
            .into_iter()
            .next())
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
        Self::send::<serde_json::Value>(req, true).await.map(|_| ())
    }

    /// `GET /odata/Webhooks` (tenant-level).
    pub async fn webhooks(&self, token: &str) -> Result<Vec<Webhook>, OrchestratorError> {
        let req = self
            .request(Method::GET, "/odata/Webhooks", token, None)
            .query(&[("$top", "1000")]);
        Ok(Self::send::<ODataList<Webhook>>(req, false).await?.value)
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
        Self::send(req, true).await
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
        Self::send::<serde_json::Value>(req, true).await.map(|_| ())
    }
}
