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
use serde::{Deserialize, Serialize};

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
    /// Inbound webhooks declared in the config file, applied at start.
    pub webhooks: Vec<crate::domain::hook::HookInput>,
}

/// How the gateway talks to Orchestrator.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OrchestratorSettings {
    /// Timeout of one call, in milliseconds.
    pub timeout_ms: u64,
    /// Share of a token's lifetime after which it is refreshed (0.5 to 0.95).
    pub refresh_at: f64,
    /// How often the background refresher looks for tokens to renew, in seconds.
    pub refresh_interval_secs: u64,
    /// Warn when a Personal Access Token expires within this many days.
    pub pat_warning_days: i64,
}

/// How queued jobs are started.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchSettings {
    /// Failures of a job itself before it is dead-lettered. A tenant's outage (429s,
    /// pauses, an open circuit, a storm of 5xx or timeouts) does not count.
    pub max_attempts: i32,
    /// How long after an ambiguous start (a timeout, a 5xx after sending) the job is
    /// looked up by its Reference, in seconds: time for the call to finish in Orchestrator.
    pub reconcile_after_secs: u64,
    /// How long one attempt owns a job, in seconds; after that another instance may take it.
    pub lease_secs: i64,
    /// How often the dispatcher looks for due jobs, in milliseconds.
    pub poll_interval_ms: u64,
    /// Jobs taken per pass.
    pub batch_size: i64,
}

/// How started jobs are followed to their end.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingSettings {
    /// How often the poller wakes up, in milliseconds.
    pub pass_interval_ms: u64,
    /// Ask Orchestrator about an unfinished job this long after its last news, in
    /// seconds, while its connection's webhooks are quiet.
    pub poll_every_secs: i64,
    /// The same while webhooks are healthy (one arrived within `webhook_quiet_secs`).
    pub poll_every_secs_with_webhooks: i64,
    /// Webhooks count as healthy while one arrived within this many seconds.
    pub webhook_quiet_secs: i64,
    /// Filtered job lists (`GET /odata/Jobs?$filter=`) per tenant per minute, across
    /// every instance. Orchestrator allows 100; the rest is left for other clients.
    pub list_budget_per_minute: i64,
    /// Job ids per filtered list (`Id eq 1 or Id eq 2 ...`; OData allows 100 nodes).
    pub ids_per_list: usize,
    /// Groups of at most this many jobs (same connection and folder) are read one by
    /// one with `GET /odata/Jobs({id})`, which the list limit does not cover.
    pub single_get_max: usize,
    /// Single-job reads per second (per instance and tenant) once the tenant's list
    /// budget is spent, so tracking keeps up without webhooks. 0 turns them off.
    pub single_reads_per_second: u32,
    /// Jobs asked about per pass.
    pub batch_size: i64,
    /// How often the registration of Orchestrator webhooks is checked, in seconds
    /// (only with `public_url`).
    pub webhook_check_secs: u64,
}

pub use crate::callbacks::CallbackSettings;
pub use crate::storage::DatabaseSettings;
pub use crate::traffic::TrafficSettings;

/// Inbound webhooks.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HookSettings {
    /// A repeated delivery id (or, for schemes without a signed timestamp, the same signed
    /// body) within this many seconds answers with the first job.
    pub dedup_retention_secs: i64,
    /// Largest delivery body of a webhook that sets no `max_body_bytes` of its own.
    pub max_body_bytes: usize,
    /// Refused deliveries (bad signature, over the rate) are kept this long, in seconds.
    pub refused_retention_secs: i64,
    /// At most this many refused deliveries per webhook are recorded per minute (per
    /// instance); the rest are only counted in `/metrics`.
    pub refused_per_minute: u32,
}

/// What one client address may hold open. Behind a proxy or load balancer every client
/// shares its address: raise these there, or set them to 0 (off) and limit at the proxy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientLimitSettings {
    /// Open connections per client address; one over it is answered 429 and closed
    /// before anything of it is read. 0 turns it off.
    pub connections_per_address: usize,
    /// Bytes of request bodies one client address may have being read at once; over
    /// it, the request is answered 429. 0 turns it off.
    pub body_bytes_per_address: usize,
    /// A request body may pause at most this long, in seconds, and must arrive at
    /// `body_min_bytes_per_sec` on average after its first this-many seconds; otherwise
    /// it is answered 408 and its connection closed.
    pub body_timeout_secs: u64,
    /// The slowest average rate a request body may arrive at, after `body_timeout_secs`.
    pub body_min_bytes_per_sec: u64,
}

/// Rate limits, per instance (each gateway instance counts on its own). 0 turns one off.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Sustained requests per second of one API key (on `/run`, `/jobs` and the admin API
    /// when used with a key).
    pub api_key_per_second: u32,
    /// Requests one API key may send at once above the sustained rate.
    pub api_key_burst: u32,
    /// Sustained deliveries per second to one `/hooks/{slug}`.
    pub hook_per_second: u32,
    /// Deliveries one slug may receive at once above the sustained rate.
    pub hook_burst: u32,
}

/// Embedded PostgreSQL settings, used only when no `database_url` is set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedSettings {
    /// The unprivileged user the cluster runs as when the gateway runs as root.
    pub run_as: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, text otherwise.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

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

/// A JSON value as figment's own: serde_json keeps numbers as their text
/// (`arbitrary_precision`, for exact arguments), which other serializers would see as a map.
fn figment_value(v: &serde_json::Value) -> figment::value::Value {
    use figment::value::{Num, Value as F};
    use serde_json::Value as J;
    let tag = figment::value::Tag::Default;
    match v {
        J::Null => F::from(figment::value::Empty::None),
        J::Bool(b) => F::Bool(tag, *b),
        J::Number(n) => F::Num(
            tag,
            match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Num::U64(u),
                (None, Some(i)) => Num::I64(i),
                _ => Num::F64(n.as_f64().unwrap_or_default()),
            },
        ),
        J::String(s) => F::String(tag, s.clone()),
        J::Array(items) => F::Array(tag, items.iter().map(figment_value).collect()),
        J::Object(map) => F::Dict(
            tag,
            map.iter()
                .map(|(k, v)| (k.clone(), figment_value(v)))
                .collect(),
        ),
    }
}

/// The built-in defaults of every setting, as the first configuration layer.
pub fn defaults() -> serde_json::Value {
    serde_json::json!({
        "host": "127.0.0.1",
        "port": 8080,
        "data_dir": "./.uipath-gateway",
        "database_url": null,
        "database": DatabaseSettings {
            max_connections: 20,
            min_connections: 1,
            acquire_timeout_ms: 3_000,
            write_timeout_ms: 5_000,
        },
        "pg_bin": null,
        "embedded": EmbeddedSettings { run_as: "postgres".into() },
        "dispatch": DispatchSettings {
            max_attempts: 10,
            reconcile_after_secs: 5,
            lease_secs: 60,
            poll_interval_ms: 250,
            batch_size: 50,
        },
        "tracking": TrackingSettings {
            pass_interval_ms: 1_000,
            poll_every_secs: 5,
            poll_every_secs_with_webhooks: 120,
            webhook_quiet_secs: 300,
            list_budget_per_minute: 60,
            ids_per_list: 50,
            single_get_max: 3,
            single_reads_per_second: 50,
            batch_size: 500,
            webhook_check_secs: 300,
        },
        "traffic": TrafficSettings {
            list_window_secs: 60,
            list_reserve_share: 0.2,
            budget_probe_secs: 3_600,
            list_pause_secs: 60,
            call_pause_secs: 5,
            health_window_secs: 10,
            circuit_min_calls: 8,
            circuit_failure_share: 0.5,
            strike_failure_share: 0.2,
            circuit_open_ms: 1_000,
            circuit_open_max_secs: 30,
            refresh_ms: 250,
            max_filter_chars: 4_000,
        },
        "callbacks": CallbackSettings {
            retry_schedule_secs: vec![5, 300, 1_800, 7_200, 18_000, 36_000],
            jitter: 0.2,
            timeout_ms: 10_000,
            poll_interval_ms: 1_000,
            batch_size: 20,
        },
        "hooks": HookSettings {
            dedup_retention_secs: 7 * 24 * 3600,
            max_body_bytes: 256 * 1024,
            refused_retention_secs: 3 * 24 * 3600,
            refused_per_minute: 60,
        },
        "limits": ClientLimitSettings {
            connections_per_address: 64,
            body_bytes_per_address: 4 * 1024 * 1024,
            body_timeout_secs: 5,
            body_min_bytes_per_sec: 16 * 1024,
        },
        "rate_limits": RateLimitSettings {
            api_key_per_second: 100,
            api_key_burst: 200,
            hook_per_second: 100,
            hook_burst: 200,
        },
        "public_url": null,
        "allow_private_callbacks": false,
        "encryption_keys": null,
        "admin_token": null,
        "orchestrator": OrchestratorSettings {
            timeout_ms: 30_000,
            refresh_at: 0.8,
            refresh_interval_secs: 30,
            pat_warning_days: 14,
        },
        "log_format": LogFormat::Auto,
        "log_level": "info,sqlx=warn",
        "body_limit_bytes": 1024 * 1024,
        "shutdown_timeout_secs": 30,
        "http_workers": 0,
        "connections": [],
        "processes": [],
        "webhooks": [],
    })
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
            .merge(Env::prefixed(ENV_PREFIX).split("__"))
            .merge(Env::raw().only(&["DATABASE_URL"]));
        let mut settings: Settings = figment.extract().map_err(from_figment)?;
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

/// A boolean as people write it in environment variables.
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Int(u64),
        Text(String),
    }
    match Flag::deserialize(d)? {
        Flag::Bool(b) => Ok(b),
        Flag::Int(0) => Ok(false),
        Flag::Int(1) => Ok(true),
        Flag::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" | "" => Ok(false),
            _ => Err(serde::de::Error::custom(format!(
                "expected true or false (or 1/0, yes/no, on/off), found `{t}`"
            ))),
        },
        Flag::Int(n) => Err(serde::de::Error::custom(format!(
            "expected true or false (or 1/0), found {n}"
        ))),
    }
}

#[cfg(test)]
mod tests;
