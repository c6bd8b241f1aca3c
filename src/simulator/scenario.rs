//! What the simulator knows: tenants, folders, releases, credentials and how jobs behave.
//! Loaded from TOML or JSON; `Scenario::default()` (`demo_tenant.rs`) is a ready-made
//! demo tenant.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The whole scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Automation Cloud organisations (logical names) and their tenants.
    pub organizations: Vec<Organization>,
    /// The on-premises tenancy names accepted by `/api/Account/Authenticate`.
    pub onprem_tenants: Vec<String>,
    /// Folders, shared by every tenant of the simulator.
    pub folders: Vec<Folder>,
    /// Releases (processes) in folders.
    pub releases: Vec<Release>,
    /// Queue definitions, each in one folder.
    pub queues: Vec<QueueDefinition>,
    /// How the simulated consumer processes each queue's items, by queue name.
    pub queue_behaviours: BTreeMap<String, QueueBehaviour>,
    /// External Applications (client credentials and refresh-token grants).
    pub external_apps: Vec<ExternalApp>,
    /// Users who may log in with a password (on-premises).
    pub users: Vec<User>,
    /// Personal Access Tokens.
    pub personal_access_tokens: Vec<PersonalAccessToken>,
    /// Legacy cloud user keys (`/oauth/token`).
    pub user_keys: Vec<UserKey>,
    /// Refresh tokens issued before the simulator started (authorization-code grants).
    pub refresh_tokens: Vec<RefreshTokenGrant>,
    /// How jobs of each process key behave; `default_behaviour` for the others.
    pub behaviours: BTreeMap<String, JobBehaviour>,
    /// Behaviour of processes without an entry in `behaviours`.
    pub default_behaviour: JobBehaviour,
    /// Token lifetimes, in seconds.
    pub token_lifetimes: TokenLifetimes,
    /// Filtered `GET /odata/Jobs` calls allowed per tenant per minute.
    pub jobs_filter_rate_per_minute: u32,
    /// The window that limit is counted over, in seconds (60, as Orchestrator; shorter
    /// windows let a test see several "minutes" quickly).
    pub jobs_filter_window_secs: u32,
    /// How long a webhook stays disabled after a failed delivery, in seconds.
    pub webhook_breaker_seconds: u64,
    /// When true, jobs move only when stepped through `/__sim/jobs/{id}/advance`.
    pub manual_jobs: bool,
    /// When true, job lists leave out Input/OutputArguments (read them by id).
    pub list_omits_arguments: bool,
}

/// An organisation and its tenants.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organization {
    /// Logical name, as in the URL.
    pub name: String,
    /// Tenant logical names.
    pub tenants: Vec<String>,
}

/// A folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Folder {
    /// The int64 `Id` (`X-UIPATH-OrganizationUnitId`).
    pub id: i64,
    /// The stable GUID (`X-UIPATH-FolderKey`).
    pub key: String,
    /// The full path, e.g. `Finance/AP`.
    pub fully_qualified_name: String,
}

/// A release: a process deployed to a folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// The int64 `Id`.
    pub id: i64,
    /// The ReleaseKey GUID.
    pub key: String,
    /// The package id.
    pub process_key: String,
    /// The package version.
    pub process_version: String,
    /// The display name.
    pub name: String,
    /// The folder's `Id`.
    pub folder_id: i64,
    /// Input argument definitions.
    #[serde(default)]
    pub input_arguments: Vec<Argument>,
    /// Output argument definitions.
    #[serde(default)]
    pub output_arguments: Vec<Argument>,
}

/// A queue definition (`QueueDefinitionDto`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueDefinition {
    /// The int64 `Id`.
    pub id: i64,
    /// The `Key` GUID.
    pub key: String,
    /// The queue's name (what `AddQueueItem` names).
    pub name: String,
    /// The folder's `Id`.
    pub folder_id: i64,
    /// A second item with the same Reference is refused (409, error 1016).
    #[serde(default)]
    pub enforce_unique_reference: bool,
    /// JSON Schema (as a string) the item's `SpecificContent` must fit.
    #[serde(default)]
    pub specific_data_json_schema: Option<String>,
    /// JSON Schema (as a string) of the output a robot sets.
    #[serde(default)]
    pub output_data_json_schema: Option<String>,
    /// Retries of a failed item (application exceptions are not retried).
    #[serde(default)]
    pub max_number_of_retries: i32,
}

/// How a simulated robot processes a queue's items: it takes each `New` item after
/// `pickup_ms`, works `processing_ms`, then sets the outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueBehaviour {
    /// Time in `New`, in milliseconds.
    pub pickup_ms: u64,
    /// Time in `InProgress`, in milliseconds.
    pub processing_ms: u64,
    /// `Successful`, `BusinessException` or `ApplicationException` (retried while the
    /// queue allows: the item becomes `Retried` and a new item takes its place).
    pub outcome: QueueOutcome,
    /// The output of a successful item.
    pub output: serde_json::Value,
    /// The `Reason` of a failed item.
    pub reason: String,
}

impl Default for QueueBehaviour {
    fn default() -> Self {
        Self {
            pickup_ms: 100,
            processing_ms: 200,
            outcome: QueueOutcome::Successful,
            output: serde_json::json!({"Result": "done"}),
            reason: "The simulated robot failed the item".into(),
        }
    }
}

/// How a queue item ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueOutcome {
    /// Ends `Successful`, with the output.
    Successful,
    /// Ends `Failed` with a business exception (never retried).
    BusinessException,
    /// Ends `Failed` with an application exception (retried while the queue allows).
    ApplicationException,
}

/// One argument definition, as in `Arguments.Input`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Argument {
    /// The argument's name, as in Studio.
    pub name: String,
    /// The .NET type name, e.g. `System.String`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Whether a value must be given.
    #[serde(default)]
    pub required: bool,
    /// Whether the workflow has a default value.
    #[serde(default)]
    pub has_default: bool,
}

/// An External Application.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalApp {
    /// The App ID.
    pub client_id: String,
    /// The App Secret; absent for non-confidential apps.
    pub client_secret: Option<String>,
    /// Scopes the admin granted.
    pub scopes: Vec<String>,
}

/// An on-premises user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The tenancy name the user belongs to.
    pub tenancy_name: String,
    /// User name or e-mail.
    pub username: String,
    /// The password.
    pub password: String,
}

/// A Personal Access Token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonalAccessToken {
    /// The token as sent in `Authorization: Bearer`.
    pub token: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// A legacy cloud user key and the account it opens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserKey {
    /// The User Key (a refresh token that does not rotate).
    pub key: String,
    /// The user's e-mail.
    pub email: String,
    /// Account (organisation) logical name.
    pub account_logical_name: String,
    /// Tenant (service instance) logical name.
    pub tenant_logical_name: String,
}

/// A refresh token from an authorization-code grant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshTokenGrant {
    /// The token.
    pub token: String,
    /// The External App it belongs to.
    pub client_id: String,
    /// The scopes it was granted.
    pub scopes: Vec<String>,
}

/// How a process's jobs run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobBehaviour {
    /// Time in Pending, in milliseconds.
    pub pending_ms: u64,
    /// Time in Running, in milliseconds.
    pub running_ms: u64,
    /// `Successful` or `Faulted`.
    pub outcome: Outcome,
    /// Output arguments on success: `echo` returns the inputs, otherwise a fixed object.
    pub output: OutputRule,
    /// The exception text of a faulted job.
    pub fault_message: String,
}

/// How a job ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Ends in `Successful`.
    Successful,
    /// Ends in `Faulted`.
    Faulted,
}

/// The output arguments of a successful job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputRule {
    /// The input arguments, returned as they came.
    Echo,
    /// A fixed object.
    Fixed(serde_json::Value),
}

/// Token lifetimes in seconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenLifetimes {
    /// Client credentials and refresh-token grants (Identity Server): 3600.
    pub oauth: u64,
    /// `/api/Account/Authenticate`: 1800.
    pub password: u64,
    /// Legacy `/oauth/token`: 86400.
    pub user_key: u64,
}

impl Default for TokenLifetimes {
    fn default() -> Self {
        Self {
            oauth: 3600,
            password: 1800,
            user_key: 86_400,
        }
    }
}

impl Default for JobBehaviour {
    fn default() -> Self {
        Self {
            pending_ms: 200,
            running_ms: 800,
            outcome: Outcome::Successful,
            output: OutputRule::Echo,
            fault_message: "The simulated workflow threw an exception.".into(),
        }
    }
}

impl Scenario {
    /// Reads a scenario from a `.toml` or `.json` file. Missing sections take the defaults.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
        } else {
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
        }
    }

    /// The behaviour of jobs of `process_key`.
    pub fn behaviour(&self, process_key: &str) -> &JobBehaviour {
        self.behaviours
            .get(process_key)
            .unwrap_or(&self.default_behaviour)
    }

    /// How the simulated consumer processes `queue`'s items.
    pub fn queue_behaviour(&self, queue: &str) -> QueueBehaviour {
        self.queue_behaviours
            .get(queue)
            .cloned()
            .unwrap_or_default()
    }
}
