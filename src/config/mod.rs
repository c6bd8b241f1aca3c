//! The one typed settings tree.
//!
//! Layers, later ones winning: built-in defaults, an optional TOML file
//! (`--config`), `GATEWAY_*` environment variables (`__` separates nested
//! keys, e.g. `GATEWAY_DATABASE__MAX_CONNECTIONS`) and `DATABASE_URL`.
//! Everything is validated once at start; a bad value is reported as one line
//! that names the setting the way the user wrote it.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Prefix of every environment variable the gateway reads (besides `DATABASE_URL`).
pub const ENV_PREFIX: &str = "GATEWAY_";

/// All settings of the gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub host: IpAddr,
    /// TCP port to listen on; 0 picks a free one.
    pub port: u16,
    /// Where the embedded PostgreSQL cluster and generated key files live.
    pub data_dir: PathBuf,
    /// An existing PostgreSQL server. When unset, `serve` runs an embedded cluster.
    pub database_url: Option<SecretString>,
    /// Connection pool settings.
    pub database: DatabaseSettings,
    /// Keys that seal stored secrets: `id:base64,id:base64`, the first one active.
    /// Generated into the data directory in embedded mode; required with `database_url`.
    pub encryption_keys: Option<SecretString>,
    /// Bearer token for the admin API. Without it the admin API is closed.
    pub admin_token: Option<SecretString>,
    /// How the gateway talks to Orchestrator.
    pub orchestrator: OrchestratorSettings,
    /// How queued jobs are started.
    pub dispatch: DispatchSettings,
    /// How started jobs are followed to their end.
    pub tracking: TrackingSettings,
    /// The traffic governor: one per Orchestrator tenant, pacing every outgoing call.
    pub traffic: TrafficSettings,
    /// How callbacks are delivered.
    pub callbacks: CallbackSettings,
    /// Inbound webhooks (`/hooks/{slug}`).
    pub hooks: HookSettings,
    /// Requests per second allowed per API key and per webhook slug.
    pub rate_limits: RateLimitSettings,
    /// What one client address may hold open: connections, body bytes, slow bodies.
    pub limits: ClientLimitSettings,
    /// The gateway's address as Orchestrator can reach it (e.g. `https://gw.example.com`).
    /// When set, the gateway registers its job webhook in each connection's tenant.
    pub public_url: Option<String>,
    /// Allow callbacks to loopback, private and link-local addresses
    /// (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`).
    #[serde(deserialize_with = "flag")]
    pub allow_private_callbacks: bool,
    /// Directory holding `initdb`, `pg_ctl` and `postgres` for the embedded cluster.
    /// Searched on PATH and in `/usr/lib/postgresql/*/bin` when unset.
    pub pg_bin: Option<PathBuf>,
    /// Embedded PostgreSQL settings.
    pub embedded: EmbeddedSettings,
    /// `auto` (JSON unless stdout is a terminal), `json` or `text`.
    pub log_format: LogFormat,
    /// A tracing filter directive, e.g. `info` or `uipath_gateway=debug,info`.
    pub log_level: String,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// How long a graceful shutdown waits for requests in flight, in seconds.
    pub shutdown_timeout_secs: u64,
    /// HTTP worker threads; 0 means one per core.
    pub http_workers: usize,
    /// Connections declared in the config file, applied at start.
    pub connections: Vec<crate::domain::connection::ConnectionInput>,
    /// Processes declared in the config file, applied at start.
    pub processes: Vec<crate::domain::process::ProcessInput>,
    /// Queue mappings declared in the config file, applied at start.
    pub queues: Vec<crate::domain::queue::QueueMappingInput>,
    /// API keys declared in the config file (by hash or key file), applied at start.
    pub api_keys: Vec<crate::domain::api_key::ApiKeyDeclaration>,
    /// Inbound webhooks declared in the config file, applied at start.
    pub webhooks: Vec<crate::domain::hook::HookInput>,
}

mod defaults;
mod secret_files;
mod sections;

pub use defaults::defaults;
use defaults::figment_value;
pub use secret_files::SECRET_FILES;
pub use sections::*;

pub use crate::callbacks::CallbackSettings;
pub use crate::storage::DatabaseSettings;
pub use crate::traffic::TrafficSettings;

/// A setting that could not be loaded or is invalid. Displays as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting as the user spells it (`GATEWAY_PORT`, or `port` in the file).
    pub setting: String,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid setting {}: {}", self.setting, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl Default for Settings {
    fn default() -> Self {
        // The defaults live in one place: the serialized layer below.
        Figment::from(Serialized::defaults(figment_value(&defaults())))
            .extract()
            .expect("built-in defaults are valid")
    }
}

impl Settings {
    /// Loads defaults, then the optional TOML file, then the environment, and validates.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(figment_value(&defaults())));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError {
                    setting: "--config".into(),
                    problem: format!("{} is not a readable file", path.display()),
                });
            }
            figment = figment.merge(Toml::file(path));
        }
        let figment = figment
            .merge(
                Env::prefixed(ENV_PREFIX)
                    .filter(|k| {
                        !SECRET_FILES
                            .iter()
                            .filter_map(|(v, _)| v.strip_prefix(ENV_PREFIX))
                            .any(|v| k == v)
                    })
                    .split("__"),
            )
            .merge(Env::raw().only(&["DATABASE_URL"]));
        let mut settings: Settings = figment.extract().map_err(from_figment)?;
        settings.read_secret_files()?;
        // An empty variable (as compose passes an unset one) means "not set".
        for v in [
            &mut settings.admin_token,
            &mut settings.encryption_keys,
            &mut settings.database_url,
        ] {
            if v.as_ref()
                .is_some_and(|s| s.expose_secret().trim().is_empty())
            {
                *v = None;
            }
        }
        if settings
            .public_url
            .as_deref()
            .is_some_and(|u| u.trim().is_empty())
        {
            settings.public_url = None;
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |setting: &str, problem: &str| {
            Err(ConfigError {
                setting: env_name(&[setting]),
                problem: problem.into(),
            })
        };
        if self.body_limit_bytes == 0 {
            return bad("body_limit_bytes", "must be greater than 0");
        }
        if self.database.max_connections == 0 {
            return bad("database.max_connections", "must be greater than 0");
        }
        if self.database.min_connections > self.database.max_connections {
            return bad(
                "database.min_connections",
                "must not exceed database.max_connections",
            );
        }
        if let Some(url) = &self.public_url {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => return bad("public_url", "must be an absolute http(s) URL"),
            }
        }
        if !(0.0..=1.0).contains(&self.callbacks.jitter) {
            return bad("callbacks.jitter", "must be between 0 and 1");
        }
        if self.tracking.ids_per_list == 0 || self.tracking.ids_per_list > 50 {
            return bad(
                "tracking.ids_per_list",
                "must be between 1 and 50 (each id is two of the 100 OData nodes a filter may hold)",
            );
        }
        let t = &self.traffic;
        for (name, v) in [
            ("traffic.list_reserve_share", t.list_reserve_share),
            ("traffic.circuit_failure_share", t.circuit_failure_share),
            ("traffic.strike_failure_share", t.strike_failure_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(name, "must be between 0 and 1");
            }
        }
        if t.list_window_secs == 0 || t.refresh_ms == 0 || t.circuit_open_ms == 0 {
            return bad(
                "traffic.list_window_secs",
                "list_window_secs, refresh_ms and circuit_open_ms must be greater than 0",
            );
        }
        if t.max_filter_chars < 200 {
            return bad("traffic.max_filter_chars", "must be at least 200");
        }
        if self.tracking.list_budget_per_minute < 0 {
            return bad("tracking.list_budget_per_minute", "must not be negative");
        }
        if self.database.write_timeout_ms == 0 {
            return bad("database.write_timeout_ms", "must be greater than 0");
        }
        if self.limits.body_timeout_secs == 0 || self.limits.body_min_bytes_per_sec == 0 {
            return bad(
                "limits.body_timeout_secs",
                "body_timeout_secs and body_min_bytes_per_sec must be greater than 0",
            );
        }
        if self.limits.body_bytes_per_address != 0
            && self.limits.body_bytes_per_address < self.body_limit_bytes
        {
            return bad(
                "limits.body_bytes_per_address",
                "must be 0 (off) or at least body_limit_bytes, so one largest body fits",
            );
        }
        if self.hooks.max_body_bytes == 0 || self.hooks.max_body_bytes > self.body_limit_bytes {
            return bad(
                "hooks.max_body_bytes",
                "must be greater than 0 and at most body_limit_bytes",
            );
        }
        if self.database.acquire_timeout_ms == 0 {
            return bad("database.acquire_timeout_ms", "must be greater than 0");
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return bad(
                "log_level",
                "is not a valid filter (try `info` or `uipath_gateway=debug`)",
            );
        }
        if let Some(keys) = &self.encryption_keys
            && let Err(e) = crate::crypto::KeyRing::parse(keys)
        {
            return bad("encryption_keys", &e.to_string());
        }
        if self.database_url.is_some() && self.encryption_keys.is_none() {
            return bad(
                "encryption_keys",
                "is required with DATABASE_URL, so stored secrets survive restarts: generate one with `uipath-gateway keys generate`",
            );
        }
        if self
            .admin_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().len() < 16)
        {
            return bad("admin_token", "must be at least 16 characters");
        }
        if !(0.5..=0.95).contains(&self.orchestrator.refresh_at) {
            return bad("orchestrator.refresh_at", "must be between 0.5 and 0.95");
        }
        if self.orchestrator.timeout_ms == 0 || self.orchestrator.refresh_interval_secs == 0 {
            return bad(
                "orchestrator.timeout_ms",
                "timeouts and intervals must be greater than 0",
            );
        }
        if self.dispatch.max_attempts < 1
            || self.dispatch.lease_secs < 5
            || self.dispatch.batch_size < 1
            || self.dispatch.poll_interval_ms == 0
        {
            return bad(
                "dispatch",
                "max_attempts and batch_size must be at least 1, lease_secs at least 5, poll_interval_ms above 0",
            );
        }
        if self.embedded.run_as.trim().is_empty() {
            return bad("embedded.run_as", "must name a user");
        }
        Ok(())
    }

    /// The key ring; `encryption_keys` must be set (the embedded start fills it in).
    pub fn key_ring(&self) -> anyhow::Result<crate::crypto::KeyRing> {
        let keys = self
            .encryption_keys
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("GATEWAY_ENCRYPTION_KEYS is not set"))?;
        crate::crypto::KeyRing::parse(keys)
    }

    /// The pool's acquire timeout.
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.database.acquire_timeout_ms)
    }
}

/// `["database", "max_connections"]` -> `GATEWAY_DATABASE__MAX_CONNECTIONS`.
pub fn env_name<S: AsRef<str>>(path: &[S]) -> String {
    let joined: Vec<String> = path
        .iter()
        .flat_map(|p| {
            p.as_ref()
                .split('.')
                .map(str::to_ascii_uppercase)
                .collect::<Vec<_>>()
        })
        .collect();
    if joined == ["DATABASE_URL"] {
        return "DATABASE_URL".into();
    }
    format!("{ENV_PREFIX}{}", joined.join("__"))
}

fn from_figment(err: figment::Error) -> ConfigError {
    // Report the first problem only: one line, as promised.
    let err = err
        .into_iter()
        .next()
        .expect("a figment error has at least one entry");
    let from_env = err
        .metadata
        .as_ref()
        .is_some_and(|m| m.name.contains("environment variable"));
    let setting = if err.path.is_empty() {
        "settings".to_string()
    } else if from_env {
        env_name(&err.path)
    } else {
        let source = err
            .metadata
            .as_ref()
            .and_then(|m| m.source.as_ref())
            .map(|s| format!(" in {s}"))
            .unwrap_or_default();
        format!(
            "`{}`{source} (env {})",
            err.path.join("."),
            env_name(&err.path)
        )
    };
    let problem = match &err.kind {
        figment::error::Kind::UnknownField(field, _) => {
            let mut path = err.path.clone();
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            return ConfigError {
                setting: if from_env {
                    env_name(&path)
                } else {
                    path.join(".")
                },
                problem: "is not a known setting".into(),
            };
        }
        kind => kind.to_string(),
    };
    ConfigError { setting, problem }
}

#[cfg(test)]
mod tests;
