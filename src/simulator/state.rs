//! The simulator's mutable state, behind one mutex. Nothing awaits while holding it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::faults::{ErrorFault, Faults, HangFault};
use super::scenario::Scenario;

/// The most calls kept in the log: a long-running simulator (`demo`, a benchmark) would
/// otherwise grow without end.
pub const MAX_CALLS: usize = 20_000;

/// The whole state.
pub struct SimState {
    /// The scenario, changeable at run time.
    pub scenario: Scenario,
    /// Added to the wall clock; moved forward by `/__sim/clock/advance`.
    pub clock_offset: chrono::Duration,
    /// Access tokens issued, by value.
    pub tokens: HashMap<String, IssuedToken>,
    /// Refresh tokens that may still be used once, by value.
    pub refresh_tokens: HashMap<String, RefreshGrant>,
    /// `id_token`s of the legacy flow, with the user key they came from.
    pub id_tokens: HashMap<String, String>,
    /// Jobs by Id.
    pub jobs: BTreeMap<i64, Job>,
    /// The next job Id.
    pub next_job_id: i64,
    /// When jobs are due to move on, earliest first (`schedule`). An entry whose job has
    /// since been given another time, or is gone, is skipped when it comes up.
    pub due: BinaryHeap<Reverse<(DateTime<Utc>, i64)>>,
    /// Queue items by Id.
    pub queue_items: BTreeMap<i64, QueueItem>,
    /// The next queue item Id.
    pub next_queue_item_id: i64,
    /// Outgoing webhooks by Id.
    pub webhooks: BTreeMap<i64, Webhook>,
    /// The next webhook Id.
    pub next_webhook_id: i64,
    /// The latest calls received (at most `MAX_CALLS`), oldest first.
    pub calls: VecDeque<CallRecord>,
    /// Calls received since the start (numbers them).
    pub calls_seen: u64,
    /// Injected faults.
    pub faults: Faults,
    /// Filtered job-list calls per tenant, for the rate limit.
    pub filter_calls: HashMap<String, VecDeque<DateTime<Utc>>>,
    /// Counters, for tests and benchmarks.
    pub counters: Counters,
}

/// A queue item, as AddQueueItem made it and its processing moved it on.
#[derive(Debug, Clone)]
pub struct QueueItem {
    pub id: i64,
    pub key: String,
    pub queue_id: i64,
    pub folder_id: i64,
    /// `New`, `InProgress`, `Failed`, `Successful`, `Abandoned`, `Retried`, `Deleted`.
    pub status: String,
    /// `High`, `Normal` or `Low`.
    pub priority: String,
    pub specific_content: serde_json::Value,
    pub reference: Option<String>,
    pub defer_date: Option<String>,
    pub due_date: Option<String>,
    pub risk_sla_date: Option<String>,
    pub progress: Option<String>,
    pub source: Option<String>,
    pub output: Option<serde_json::Value>,
    pub processing_exception: Option<serde_json::Value>,
    pub retry_number: i32,
    /// The item this one retries.
    pub ancestor_id: Option<i64>,
    pub creation_time: DateTime<Utc>,
    pub start_processing: Option<DateTime<Utc>>,
    pub end_processing: Option<DateTime<Utc>>,
    /// When the simulated consumer moves it on (None: it stays).
    pub next_transition: Option<DateTime<Utc>>,
}

/// What an access token allows.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// `client_credentials`, `refresh_token`, `password`, `user_key` or `pat`.
    pub grant: &'static str,
    /// Who it was issued to (client id, user name or e-mail).
    pub subject: String,
    /// Granted scopes; `*` means a user token with every permission.
    pub scopes: HashSet<String>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// True for `/api/Account/Authenticate` tokens, which only work on on-prem paths.
    pub onprem: bool,
}

/// A refresh token that has not been used yet.
#[derive(Debug, Clone)]
pub struct RefreshGrant {
    /// Its External App.
    pub client_id: String,
    /// Its scopes.
    pub scopes: Vec<String>,
}

/// A job, with the fields of JobDto that the simulator tracks.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    /// Int64 id.
    pub id: i64,
    /// GUID.
    pub key: String,
    /// Orchestrator state name.
    pub state: String,
    /// The release.
    pub release_id: i64,
    /// Release name.
    pub release_name: String,
    /// Process key.
    pub process_key: String,
    /// Folder Id.
    pub folder_id: i64,
    /// Folder path.
    pub folder_path: String,
    /// The caller's Reference.
    pub reference: Option<String>,
    /// Input arguments, as the JSON string received.
    pub input_arguments: Option<String>,
    /// Output arguments, as a JSON string, once successful.
    pub output_arguments: Option<String>,
    /// "Job completed", or the exception text.
    pub info: Option<String>,
    /// Priority.
    pub job_priority: String,
    /// Runtime type.
    pub runtime_type: String,
    /// Batch key.
    pub batch_execution_key: String,
    /// Times.
    pub creation_time: DateTime<Utc>,
    /// Set when Running.
    pub start_time: Option<DateTime<Utc>>,
    /// Set when terminal.
    pub end_time: Option<DateTime<Utc>>,
    /// Set on each change.
    pub last_modification_time: Option<DateTime<Utc>>,
    /// When the job moves to its next state (automatic mode).
    #[serde(skip)]
    pub next_transition: Option<DateTime<Utc>>,
}

/// An outgoing webhook as created through `/odata/Webhooks`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Webhook {
    /// Int64 id.
    pub id: i64,
    /// GUID.
    pub key: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Target.
    pub url: String,
    /// Enabled flag.
    pub enabled: bool,
    /// Signing secret; never returned.
    #[serde(skip_serializing)]
    pub secret: Option<String>,
    /// All events?
    pub subscribe_to_all_events: bool,
    /// Skip TLS checks?
    pub allow_insecure_ssl: bool,
    /// Subscribed events.
    pub events: Vec<Value>,
    /// Disabled by the breaker until then.
    #[serde(skip)]
    pub broken_until: Option<DateTime<Utc>>,
}

/// One call received.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallRecord {
    /// Order of arrival, from 1.
    pub seq: u64,
    /// When it arrived.
    pub at: DateTime<Utc>,
    /// HTTP method.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Headers, with credentials masked.
    pub headers: BTreeMap<String, String>,
    /// The body (JSON when it parses, else text), with secret fields masked.
    pub body: Value,
    /// The status answered.
    pub status: u16,
}

/// Counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    /// Token requests answered with a token, by grant.
    pub tokens_issued: BTreeMap<String, u64>,
    /// Jobs created by StartJobs.
    pub jobs_started: u64,
    /// Webhook deliveries attempted.
    pub webhooks_sent: u64,
    /// Webhook deliveries dropped by a fault or the breaker.
    pub webhooks_dropped: u64,
    /// 429 answers to filtered job lists.
    pub rate_limited: u64,
}

impl SimState {
    /// Logs a call: numbered and timed, the oldest dropped once `MAX_CALLS` are kept.
    pub fn record_call(&mut self, mut record: CallRecord) {
        self.calls_seen += 1;
        record.seq = self.calls_seen;
        record.at = self.now();
        if self.calls.len() >= MAX_CALLS {
            self.calls.pop_front();
        }
        self.calls.push_back(record);
    }

    /// A fresh state for a scenario.
    pub fn new(scenario: Scenario) -> Self {
        let refresh_tokens = scenario
            .refresh_tokens
            .iter()
            .map(|r| {
                (
                    r.token.clone(),
                    RefreshGrant {
                        client_id: r.client_id.clone(),
                        scopes: r.scopes.clone(),
                    },
                )
            })
            .collect();
        Self {
            scenario,
            clock_offset: chrono::Duration::zero(),
            tokens: HashMap::new(),
            refresh_tokens,
            id_tokens: HashMap::new(),
            jobs: BTreeMap::new(),
            due: BinaryHeap::new(),
            // From the clock, so a restarted simulator (as in `demo`) never hands out an id
            // that a ledger may still hold from an earlier run.
            next_job_id: chrono::Utc::now().timestamp() * 1_000,
            queue_items: BTreeMap::new(),
            next_queue_item_id: chrono::Utc::now().timestamp() * 1_000,
            webhooks: BTreeMap::new(),
            next_webhook_id: 1,
            calls: VecDeque::new(),
            calls_seen: 0,
            faults: Faults::default(),
            filter_calls: HashMap::new(),
            counters: Counters::default(),
        }
    }

    /// Notes a job's `next_transition`, so the ticker finds it without a scan.
    pub fn schedule(&mut self, id: i64) {
        if let Some(at) = self.jobs.get(&id).and_then(|j| j.next_transition) {
            self.due.push(Reverse((at, id)));
        }
    }

    /// The simulator's clock.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    /// Issues an access token.
    pub fn issue_token(
        &mut self,
        grant: &'static str,
        subject: &str,
        scopes: HashSet<String>,
        lifetime: u64,
        onprem: bool,
    ) -> String {
        let token = random_token("sim_at_");
        let expires_at = self.now() + chrono::Duration::seconds(lifetime as i64);
        self.tokens.insert(
            token.clone(),
            IssuedToken {
                grant,
                subject: subject.into(),
                scopes,
                expires_at,
                onprem,
            },
        );
        *self
            .counters
            .tokens_issued
            .entry(grant.to_string())
            .or_default() += 1;
        token
    }

    /// Records a filtered job-list call; returns the seconds to wait when over the limit.
    pub fn take_filter_budget(&mut self, tenant: &str) -> Option<u64> {
        let now = self.now();
        let limit = self.scenario.jobs_filter_rate_per_minute as usize;
        let span = chrono::Duration::seconds(self.scenario.jobs_filter_window_secs.max(1) as i64);
        let window = self.filter_calls.entry(tenant.to_string()).or_default();
        while window.front().is_some_and(|t| now - *t >= span) {
            window.pop_front();
        }
        if window.len() >= limit {
            let oldest = *window.front().expect("a full window is not empty");
            let wait = (oldest + span - now).num_seconds().max(1) as u64;
            self.counters.rate_limited += 1;
            return Some(wait);
        }
        window.push_back(now);
        None
    }

    /// Picks the fault for a call, if any, consuming one use of it.
    pub fn take_fault(&mut self, path: &str) -> (Duration, Option<ErrorFault>, Option<Duration>) {
        let latency = Duration::from_millis(self.faults.latency_ms);
        let matches = |p: &Option<String>| p.as_ref().is_none_or(|p| path.contains(p.as_str()));
        let mut hang = None;
        if let Some(h) = &mut self.faults.hang
            && matches(&h.path_contains)
            && h.remaining != Some(0)
        {
            h.remaining = h.remaining.map(|r| r - 1);
            hang = Some(Duration::from_millis(h.hang_ms));
        }
        let mut error = None;
        for fault in &mut self.faults.errors {
            if matches(&fault.path_contains)
                && fault.remaining != Some(0)
                && rand::rng().random_bool(fault.rate.clamp(0.0, 1.0))
            {
                fault.remaining = fault.remaining.map(|r| r - 1);
                error = Some(fault.clone());
                break;
            }
        }
        (latency, error, hang)
    }
}

/// A time as Orchestrator writes it: RFC 3339, milliseconds, `Z`.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A random opaque token with a prefix.
pub fn random_token(prefix: &str) -> String {
    let bytes: [u8; 24] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

#[cfg(test)]
mod tests;
