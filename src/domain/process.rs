//! A process mapping: what `/run/{name}` starts, and how.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::problem::{FieldProblem, valid_name};

/// Which release to start: by process key or release name, optionally pinned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSelector {
    /// The package id (`ProcessKey`).
    pub process_key: Option<String>,
    /// The release (process) name as shown in Orchestrator.
    pub name: Option<String>,
    /// Only this package version.
    pub version: Option<String>,
}

/// Options passed to StartJobs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobOptions {
    /// Default `ModernJobsCount`.
    pub strategy: Option<String>,
    /// Default 1.
    pub jobs_count: Option<i32>,
    /// E.g. `Unattended`, `NonProduction`.
    pub runtime_type: Option<String>,
    /// `Low`, `Normal` or `High`.
    pub priority: Option<String>,
    /// Run as these robots (users); in modern folders only to pin a user.
    pub robot_ids: Option<Vec<i64>>,
    /// Run on these machine sessions.
    pub machine_session_ids: Option<Vec<i64>>,
}

/// A process as operators send it.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "Invoices", "connection": "acme-prod", "folder": "Finance/AP",
    "release": {"process_key": "InvoiceBot"}, "default_input": {"in_Urgent": false}, "max_wait_seconds": 60
}))]
pub struct ProcessInput {
    /// The `{process}` of `/run/{process}`: letters, digits, `-`, `_`.
    pub name: Option<String>,
    /// The connection's name.
    pub connection: Option<String>,
    /// Folder path (`Finance/AP`), id (`34`) or key (GUID).
    pub folder: Option<String>,
    /// Which release.
    pub release: Option<ReleaseSelector>,
    /// Input arguments used when the caller leaves them out.
    #[schema(value_type = Option<Object>)]
    pub default_input: Option<serde_json::Map<String, serde_json::Value>>,
    /// StartJobs options.
    pub job_options: Option<JobOptions>,
    /// Longest wait a caller may ask for, in seconds (default 60, at most 3600).
    pub max_wait_seconds: Option<i32>,
    /// Default callback URL.
    pub callback_url: Option<String>,
    /// The `whsec_` secret that signs callbacks (Standard Webhooks). Write-only: when left
    /// out on create, one is generated and shown once in the answer; on replace, the
    /// stored one is kept. `POST /processes/{name}/callback-secret` rotates it.
    #[schema(value_type = Option<String>, write_only)]
    pub callback_secret: Option<secrecy::SecretString>,
}

/// A validated process.
#[derive(Debug, Clone)]
pub struct NewProcess {
    pub name: String,
    pub connection: String,
    pub folder: String,
    pub release: ReleaseSelector,
    /// For a queue mapping, the queue's name (then `release` is empty).
    pub queue: Option<String>,
    pub default_input: serde_json::Map<String, serde_json::Value>,
    pub job_options: JobOptions,
    pub max_wait_seconds: i32,
    pub callback_url: Option<String>,
    pub callback_secret: Option<secrecy::SecretString>,
}

impl ProcessInput {
    /// Checks every field, naming each problem.
    pub fn validate(self) -> Result<NewProcess, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        let mut bad = |f: &str, p: &str| {
            problems.push(FieldProblem {
                field: f.into(),
                problem: p.into(),
            })
        };
        let name = self.name.unwrap_or_default();
        if !valid_name(&name) {
            bad("name", "required: 1-100 letters, digits, `-` or `_`");
        }
        let connection = self.connection.unwrap_or_default();
        if connection.is_empty() {
            bad("connection", "required: the name of a connection");
        }
        let folder = self.folder.unwrap_or_default();
        if folder.is_empty() || folder.ends_with('/') {
            bad(
                "folder",
                "required: a folder path (no trailing slash), id or key",
            );
        }
        let release = self.release.unwrap_or_default();
        if release.process_key.is_none() && release.name.is_none() {
            bad("release", "give process_key or name");
        }
        let max_wait_seconds = self.max_wait_seconds.unwrap_or(60);
        if !(0..=3600).contains(&max_wait_seconds) {
            bad("max_wait_seconds", "must be between 0 and 3600");
        }
        let job_options = self.job_options.unwrap_or_default();
        if job_options
            .jobs_count
            .is_some_and(|c| !(1..=100).contains(&c))
        {
            bad("job_options.jobs_count", "must be between 1 and 100");
        }
        if job_options
            .priority
            .as_deref()
            .is_some_and(|p| !matches!(p, "Low" | "Normal" | "High"))
        {
            bad("job_options.priority", "must be Low, Normal or High");
        }
        if let Some(Err(p)) = self
            .callback_url
            .as_deref()
            .map(|u| crate::domain::callback_target::check_target(u, true))
        {
            bad("callback_url", &p);
        }
        if self.callback_secret.as_ref().is_some_and(|s| {
            !crate::domain::callback_target::valid_secret(secrecy::ExposeSecret::expose_secret(s))
        }) {
            bad(
                "callback_secret",
                "must be `whsec_` followed by 24-64 bytes in Base64 (leave it out to get one generated)",
            );
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(NewProcess {
            name,
            connection,
            folder,
            release,
            queue: None,
            default_input: self.default_input.unwrap_or_default(),
            job_options,
            max_wait_seconds,
            callback_url: self.callback_url,
            callback_secret: self.callback_secret,
        })
    }
}
