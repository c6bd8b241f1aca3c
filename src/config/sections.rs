//! The sections of the settings tree that have no module of their own to live in.

use serde::{Deserialize, Serialize};

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

/// A boolean as people write it in environment variables.
pub(crate) fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
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
