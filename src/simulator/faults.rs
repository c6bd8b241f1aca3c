//! Injected faults: errors, latency, hangs, a StartJobs (or AddQueueItem) that answers 502
//! after creating the job (or item), and dropped webhooks. They apply to Orchestrator and identity paths, never to
//! `/__sim/`.

use serde::{Deserialize, Serialize};

/// Injected faults. They apply to Orchestrator and identity paths, never to `/__sim/`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every call, in milliseconds.
    pub latency_ms: u64,
    /// Calls answered with an error status instead of being served.
    pub errors: Vec<ErrorFault>,
    /// Calls that hang (answered only after `hang_ms`).
    pub hang: Option<HangFault>,
    /// The next N StartJobs create the job, then answer 502.
    pub start_then_502: u32,
    /// The next N AddQueueItem add the item, then answer 502.
    pub add_then_502: u32,
    /// The next N outgoing webhooks are not sent.
    pub drop_webhooks: u32,
    /// No outgoing webhook is sent while true.
    pub drop_all_webhooks: bool,
}

/// Answer some calls with an error status.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorFault {
    /// The status, e.g. 503 or 429.
    pub status: u16,
    /// Share of matching calls that fail, 0.0 to 1.0.
    #[serde(default = "one")]
    pub rate: f64,
    /// Only paths containing this.
    #[serde(default)]
    pub path_contains: Option<String>,
    /// Stop after this many failures.
    #[serde(default)]
    pub remaining: Option<u32>,
    /// Sent as `Retry-After`, in seconds.
    #[serde(default)]
    pub retry_after: Option<u64>,
}

fn one() -> f64 {
    1.0
}

/// Hold matching calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HangFault {
    /// Only paths containing this.
    #[serde(default)]
    pub path_contains: Option<String>,
    /// How long to hold each call, in milliseconds.
    pub hang_ms: u64,
    /// Stop after this many calls.
    #[serde(default)]
    pub remaining: Option<u32>,
}
