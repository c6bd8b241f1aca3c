//! What the governor deals in: call classes and priorities, holds, outcomes, its
//! settings, the tenant key, and `Retry-After`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::storage::traffic::{PauseColumn, TenantRow};

/// A class of outgoing call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// A filtered list (`GET /odata/Jobs?$filter=...`): budgeted per tenant.
    List,
    /// StartJobs.
    Start,
    /// Anything else (single reads, releases, folders, stops, webhooks).
    Call,
}

impl Class {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Class::List => "list",
            Class::Start => "start",
            Class::Call => "call",
        }
    }

    pub(super) fn column(self) -> PauseColumn {
        match self {
            Class::List => PauseColumn::Lists,
            Class::Start => PauseColumn::Starts,
            Class::Call => PauseColumn::Calls,
        }
    }
}

/// Who asks for a list: reconciliation of ambiguous starts comes before polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Urgent,
    Routine,
}

/// A call the governor held back: nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// How long until the call may go.
    pub wait: Duration,
    /// `paused`, `circuit_open` or `list_budget`.
    pub reason: &'static str,
}

/// How a call went, as the governor counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Ok,
    /// A 4xx other than 429: the tenant is up, the request was refused.
    Answered,
    /// 429, with `Retry-After` when sent.
    RateLimited(Option<Duration>),
    /// 503 with `Retry-After`: the tenant asks us to come back later.
    Busy(Duration),
    /// 5xx, a timeout, a refused or broken connection.
    Failed,
}

/// Permission to send one call; hand it back with the call's [`Outcome`].
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    pub(super) probe: bool,
}

/// The traffic governor (see `docs/traffic-governor.md`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficSettings {
    /// The window over which the filtered-list budget is counted, in seconds
    /// (Orchestrator counts per minute).
    pub list_window_secs: u64,
    /// Share of the list budget that routine polling leaves while reconciliation of
    /// ambiguous starts is waiting for a list (0 to 1).
    pub list_reserve_share: f64,
    /// After a 429 taught the governor a lower list budget, it tries one more list a
    /// window (up to the configured budget) after this many seconds. 0 never raises it.
    pub budget_probe_secs: u64,
    /// How long a tenant's lists pause after a 429 without `Retry-After`, in seconds.
    pub list_pause_secs: u64,
    /// How long other calls pause after a 429 without `Retry-After`, in seconds.
    pub call_pause_secs: u64,
    /// Recent calls to a tenant that decide whether it is healthy, in seconds.
    pub health_window_secs: u64,
    /// Calls in that window needed before a failure share is trusted.
    pub circuit_min_calls: usize,
    /// Share of failed calls (5xx, timeouts, refused connections) that opens the circuit.
    pub circuit_failure_share: f64,
    /// A job's own failure counts towards `dispatch.max_attempts` only while its tenant's
    /// failure share is below this.
    pub strike_failure_share: f64,
    /// How long the circuit stays open the first time, in milliseconds; it doubles each
    /// time a probe fails.
    pub circuit_open_ms: u64,
    /// The longest the circuit stays open before a probe, in seconds.
    pub circuit_open_max_secs: u64,
    /// How often each instance reads the shared state of every tenant, in milliseconds.
    pub refresh_ms: u64,
    /// Longest `$filter` sent in one list, in characters (URL length limits).
    pub max_filter_chars: usize,
}

/// The key of the tenant a connection reaches: Orchestrator counts its limits per tenant,
/// and two connections may share one.
pub fn tenant_key(orchestrator_url: &str, tenant_name_header: Option<&str>) -> String {
    format!(
        "{}#{}",
        orchestrator_url.trim_end_matches('/').to_ascii_lowercase(),
        tenant_name_header.unwrap_or("")
    )
}

pub(super) fn pause_of(row: &TenantRow, class: Class) -> Option<DateTime<Utc>> {
    match class {
        Class::List => row.lists_paused_until,
        Class::Start => row.starts_paused_until,
        Class::Call => row.calls_paused_until,
    }
}

/// Reads `Retry-After`: seconds, or an HTTP date (RFC 9110), as a wait from now.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}
