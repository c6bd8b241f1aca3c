//! Orchestrator's wire format, as our client reads and writes it. Field names follow
//! UiPath's OpenAPI document; they are deliberately not shared with the simulator.
//! Unknown fields are ignored: Orchestrator adds fields often.

use serde::{Deserialize, Deserializer, Serialize};

pub use crate::domain::arguments::ArgumentDefinition;

/// `{"value": [...]}` of an OData collection.
#[derive(Debug, Deserialize)]
pub struct ODataList<T> {
    /// The page.
    pub value: Vec<T>,
    /// `@odata.count`, when asked for with `$count=true`.
    #[serde(rename = "@odata.count")]
    pub count: Option<u64>,
}

/// FolderDto.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Folder {
    /// Int64 id (`X-UIPATH-OrganizationUnitId`).
    pub id: i64,
    /// Stable GUID (`X-UIPATH-FolderKey`).
    pub key: Option<String>,
    /// The folder's own name.
    pub display_name: String,
    /// The full path, e.g. `Finance/AP`.
    pub fully_qualified_name: Option<String>,
    /// `Standard`, `Personal`, ...
    pub folder_type: Option<String>,
    /// The parent's id.
    pub parent_id: Option<i64>,
}

/// ReleaseDto.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Release {
    /// Int64 id.
    pub id: i64,
    /// The ReleaseKey (GUID).
    pub key: Option<String>,
    /// The package id.
    pub process_key: String,
    /// The package version.
    pub process_version: String,
    /// The display name.
    pub name: String,
    /// Argument definitions, each a JSON string.
    pub arguments: Option<ReleaseArguments>,
    /// The folder it is in.
    pub organization_unit_id: Option<i64>,
}

/// `Arguments` of a release: JSON-encoded arrays of definitions.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ReleaseArguments {
    /// Input definitions, a JSON string.
    pub input: Option<String>,
    /// Output definitions, a JSON string.
    pub output: Option<String>,
}

impl Release {
    /// The input argument definitions, parsed.
    pub fn input_arguments(&self) -> Result<Vec<ArgumentDefinition>, serde_json::Error> {
        match self.arguments.as_ref().and_then(|a| a.input.as_deref()) {
            Some(text) => serde_json::from_str(text),
            None => Ok(Vec::new()),
        }
    }

    /// The output argument definitions, parsed.
    pub fn output_arguments(&self) -> Result<Vec<ArgumentDefinition>, serde_json::Error> {
        match self.arguments.as_ref().and_then(|a| a.output.as_deref()) {
            Some(text) => serde_json::from_str(text),
            None => Ok(Vec::new()),
        }
    }
}

/// `{"startInfo": StartProcessDto}`.
#[derive(Debug, Clone, Serialize)]
pub struct StartJobsRequest {
    /// What to start.
    #[serde(rename = "startInfo")]
    pub start_info: StartProcessDto,
}

/// StartProcessDto, with the fields the gateway sets.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct StartProcessDto {
    /// The ReleaseKey.
    pub release_key: String,
    /// `ModernJobsCount` in modern folders.
    pub strategy: String,
    /// How many jobs.
    pub jobs_count: i32,
    /// Input arguments as a JSON-encoded string (at most 10,000 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_arguments: Option<String>,
    /// Our correlation id (at most 128 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// `Unattended`, `NonProduction`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_type: Option<String>,
    /// `Low`, `Normal` or `High`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_priority: Option<String>,
    /// Robots (users) to run as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub robot_ids: Option<Vec<i64>>,
    /// Machine sessions to run on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_session_ids: Option<Vec<i64>>,
}

/// JobDto.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Job {
    /// Int64 id.
    pub id: i64,
    /// GUID.
    pub key: Option<String>,
    /// `Pending`, `Running`, ... (see `is_terminal`).
    pub state: String,
    /// Our Reference.
    pub reference: Option<String>,
    /// "Job completed" or the exception text.
    pub info: Option<String>,
    /// Input arguments, a JSON string.
    pub input_arguments: Option<String>,
    /// Output arguments, a JSON string; lists may leave it out.
    pub output_arguments: Option<String>,
    /// When created.
    pub creation_time: Option<String>,
    /// When it started running.
    pub start_time: Option<String>,
    /// When it ended.
    pub end_time: Option<String>,
    /// The job's error, when faulted.
    pub job_error: Option<serde_json::Value>,
}

impl Job {
    /// Successful, Faulted and Stopped are final.
    pub fn is_terminal(&self) -> bool {
        matches!(self.state.as_str(), "Successful" | "Faulted" | "Stopped")
    }
}

/// `{"strategy": "SoftStop"|"Kill", "jobIds": [...]}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StopJobsRequest {
    /// `SoftStop` or `Kill`.
    pub strategy: String,
    /// Jobs to stop.
    pub job_ids: Vec<i64>,
}

/// Orchestrator's error body: `{"message", "errorCode", "traceId"}`, tolerating a
/// string `errorCode`, PascalCase names and the older ABP shape.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorBody {
    /// The message.
    #[serde(alias = "Message")]
    pub message: Option<String>,
    /// The code, e.g. 1002.
    #[serde(
        rename = "errorCode",
        alias = "ErrorCode",
        default,
        deserialize_with = "int_or_string"
    )]
    pub error_code: Option<i64>,
    /// ABP: `{"error": {"message": ...}}`.
    pub error: Option<serde_json::Value>,
}

impl ErrorBody {
    /// The best message available.
    pub fn text(&self) -> Option<String> {
        self.message.clone().or_else(|| {
            self.error
                .as_ref()
                .and_then(|e| e.get("message"))
                .and_then(|m| m.as_str())
                .map(String::from)
        })
    }
}

fn int_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    })
}

/// What the token endpoints answer (Identity Server and the legacy `/oauth/token`).
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: String,
    /// Lifetime in seconds.
    pub expires_in: Option<i64>,
    /// A new refresh token (rotating grants).
    pub refresh_token: Option<String>,
    /// The `id_token` (legacy flow, or with `openid`).
    pub id_token: Option<String>,
    /// Granted scopes, space-separated.
    pub scope: Option<String>,
}

/// RFC 6749 error body.
#[derive(Debug, Default, Deserialize)]
pub struct OAuthErrorBody {
    /// `invalid_grant`, `invalid_client`, ...
    pub error: Option<String>,
    /// Details.
    pub error_description: Option<String>,
}

/// `/api/Account/Authenticate` answer.
#[derive(Debug, Deserialize)]
pub struct AuthenticateResponse {
    /// The bearer token.
    pub result: Option<String>,
    /// Whether the login worked.
    #[serde(default)]
    pub success: bool,
}

/// One subscribed event of a webhook.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct WebhookEvent {
    /// e.g. `job.completed`.
    pub event_type: String,
}

/// WebhookDto (tenant-level; `Secret` is write-only).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Webhook {
    /// Int64 id (absent when creating).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// GUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// At most 128 characters.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Where events go (at most 2000 characters).
    pub url: String,
    /// Whether events are sent.
    pub enabled: bool,
    /// Signing secret (at most 100 characters); never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Every event type, or only `events`.
    pub subscribe_to_all_events: bool,
    /// Skip TLS checks (never, here).
    pub allow_insecure_ssl: bool,
    /// The subscribed events.
    #[serde(default)]
    pub events: Vec<WebhookEvent>,
}
