//! Prometheus metrics (`GET /metrics`), through the `metrics` facade. The recorder is
//! process-wide; gauges read from the database are refreshed on each scrape.

use std::sync::OnceLock;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The (tenant, state) pairs of the backlog gauge published so far, so one that empties
/// reads 0 instead of its last value.
static BACKLOG_LABELS: std::sync::Mutex<std::collections::BTreeSet<(String, String)>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Installs the recorder once per process (later calls reuse it). None if another
/// recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ];
            // A group commit's wait and write are milliseconds: finer buckets there.
            let commits = [
                0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.025,
                0.05, 0.1, 0.5, 1.0, 5.0,
            ];
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full("ugw_batch_queue_seconds".into()), &commits)
                .ok()?
                .set_buckets_for_metric(Matcher::Full("ugw_batch_write_seconds".into()), &commits)
                .ok()?
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .ok()?
                .install_recorder()
                .ok()?;
            describe();
            gauge!("ugw_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            Some(handle)
        })
        .clone()
}

/// Every metric's `# HELP` line (the exporter writes `# TYPE` itself).
fn describe() {
    let counters = [
        (
            "ugw_http_requests_total",
            "HTTP requests answered, by route pattern, method and status",
        ),
        (
            "ugw_orchestrator_calls_total",
            "Calls to Orchestrator, by tenant, class (list, start, call) and outcome",
        ),
        (
            "ugw_token_refreshes_total",
            "Token requests to the identity server, by result",
        ),
        (
            "ugw_webhook_verifications_total",
            "Inbound webhook deliveries checked, by scheme and result",
        ),
        (
            "ugw_orchestrator_events_total",
            "Orchestrator webhook events received, by result (ok, invalid)",
        ),
        (
            "ugw_rate_limited_total",
            "Requests refused by a rate limit, by kind (api_key, webhook)",
        ),
        (
            "ugw_callback_attempts_total",
            "Callback delivery attempts, by result (delivered, retry, dead)",
        ),
        (
            "ugw_jobs_ended_total",
            "Jobs and queue items that reached an end, by process (or queue mapping), kind and state",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(name, Unit::Count, help);
    }
    let gauges = [
        (
            "ugw_build_info",
            "Always 1; the version label says which build runs",
        ),
        (
            "ugw_jobs_queued",
            "Jobs and queue items waiting to start (or to be added)",
        ),
        (
            "ugw_jobs_in_flight",
            "Jobs and queue items started and not yet ended",
        ),
        (
            "ugw_dead_letters",
            "Dead-lettered jobs and callbacks, by kind",
        ),
        (
            "ugw_callbacks_pending",
            "Callback deliveries waiting to be sent or retried",
        ),
        (
            "ugw_traffic_backlog",
            "Jobs waiting to start (queued) or for a lookup (unknown), by tenant and state",
        ),
        (
            "ugw_traffic_list_budget",
            "Filtered lists per window the traffic governor allows, by tenant",
        ),
        (
            "ugw_traffic_paused_seconds",
            "Seconds left of a tenant's pause, by tenant and class",
        ),
        (
            "ugw_traffic_circuit_open",
            "1 while a tenant's circuit is open (an outage), else 0",
        ),
        (
            "ugw_traffic_start_window",
            "Starts this instance may have in flight per dispatcher pass, by tenant",
        ),
        (
            "ugw_batch_waiting",
            "Writes waiting for a group commit, by batch",
        ),
    ];
    for (name, help) in gauges {
        describe_gauge!(name, help);
    }
    describe_histogram!(
        "ugw_run_duration_seconds",
        Unit::Seconds,
        "Time to answer POST /run and POST /queues calls, by process (or queue mapping), kind and status"
    );
    describe_histogram!(
        "ugw_batch_queue_seconds",
        Unit::Seconds,
        "Time a write waited for its group commit to begin (the batch before it was being written), by batch"
    );
    describe_histogram!(
        "ugw_batch_write_seconds",
        Unit::Seconds,
        "Time one group commit took to write and commit, by batch"
    );
    describe_histogram!(
        "ugw_batch_size",
        Unit::Count,
        "Writes one group commit carried, by batch"
    );
}

/// One HTTP request answered; `route` is the matched pattern (never the raw path, so
/// ids do not explode the label set).
pub fn http_request(route: &str, method: &str, status: u16) {
    counter!("ugw_http_requests_total", "route" => route.to_string(), "method" => method.to_string(), "status" => status.to_string()).increment(1);
}

/// Time to answer one `/run` (kind `job`) or `/queues` (kind `queue_item`) call, by
/// status and the process or queue mapping it named. `target` is None when the name may
/// not be one that exists (answers other than 2xx, 409 and 422), so callers cannot grow
/// the label set.
pub fn run_latency(seconds: f64, status: u16, kind: &'static str, target: Option<&str>) {
    let target = target.unwrap_or("-").to_string();
    histogram!("ugw_run_duration_seconds", "status" => status.to_string(), "kind" => kind, "process" => target)
        .record(seconds);
}

/// One job or queue item reached an end (`state`).
pub fn job_ended(process: &str, kind: &str, state: &str) {
    counter!("ugw_jobs_ended_total", "process" => process.to_string(), "kind" => kind.to_string(), "state" => state.to_string())
        .increment(1);
}

/// One call to Orchestrator, by tenant, class (`list`, `start`, `call`) and outcome:
/// `ok`, `client_error`, `rate_limited`, `server_error` or `transport_error` (calls the
/// traffic governor held back are counted as `held`).
pub fn orchestrator_call(tenant: &str, class: &'static str, outcome: &'static str) {
    counter!("ugw_orchestrator_calls_total", "tenant" => tenant.to_string(), "class" => class, "outcome" => outcome).increment(1);
}

/// One token request: `ok` or `failed`.
pub fn token_refresh(result: &'static str) {
    counter!("ugw_token_refreshes_total", "result" => result).increment(1);
}

/// One inbound webhook delivery checked: `ok`, `public` or the refusal code.
pub fn webhook_verification(scheme: &str, result: &str) {
    counter!("ugw_webhook_verifications_total", "scheme" => scheme.to_string(), "result" => result.to_string()).increment(1);
}

/// One Orchestrator job webhook checked: `ok` or `invalid`.
pub fn orchestrator_event(result: &'static str) {
    counter!("ugw_orchestrator_events_total", "result" => result).increment(1);
}

/// One request refused by a rate limit.
pub fn rate_limited(who: &str) {
    let kind = if who.contains("webhook") {
        "webhook"
    } else {
        "api_key"
    };
    counter!("ugw_rate_limited_total", "kind" => kind).increment(1);
}

/// One callback delivery attempt: `delivered`, `retry` or `dead`.
pub fn callback_attempt(result: &'static str) {
    counter!("ugw_callback_attempts_total", "result" => result).increment(1);
}

/// What the database says for the gauges (read by `storage::gauges`).
#[derive(Debug, Default)]
pub struct LedgerGauges {
    /// Jobs waiting to start, and jobs started and not yet ended.
    pub queued: i64,
    pub in_flight: i64,
    pub dead_jobs: i64,
    pub pending_callbacks: i64,
    pub dead_callbacks: i64,
    /// Jobs waiting to start (`queued`) or for a lookup (`unknown`), by tenant: the
    /// connection's Orchestrator URL, its tenant-name header, the state and how many.
    pub backlog: Vec<(String, Option<String>, String, i64)>,
}

/// Sets the gauges read from the database: jobs by state of work, callbacks, dead
/// letters, each tenant's backlog.
pub fn set_gauges(g: LedgerGauges) {
    gauge!("ugw_jobs_queued").set(g.queued as f64);
    let mut seen = std::collections::BTreeSet::new();
    for (url, header, state, n) in g.backlog {
        let tenant = crate::traffic::tenant_key(&url, header.as_deref());
        seen.insert((tenant.clone(), state.clone()));
        gauge!("ugw_traffic_backlog", "tenant" => tenant, "state" => state).set(n as f64);
    }
    let mut known = BACKLOG_LABELS.lock().unwrap_or_else(|e| e.into_inner());
    for (tenant, state) in known.iter().filter(|k| !seen.contains(*k)) {
        gauge!("ugw_traffic_backlog", "tenant" => tenant.clone(), "state" => state.clone())
            .set(0.0);
    }
    known.extend(seen);
    gauge!("ugw_jobs_in_flight").set(g.in_flight as f64);
    gauge!("ugw_dead_letters", "kind" => "job").set(g.dead_jobs as f64);
    gauge!("ugw_dead_letters", "kind" => "callback").set(g.dead_callbacks as f64);
    gauge!("ugw_callbacks_pending").set(g.pending_callbacks as f64);
}

/// How many writes are waiting for a group commit (a queue that grows means the
/// database cannot keep up).
pub fn batch_waiting(batch: &'static str, waiting: usize) {
    gauge!("ugw_batch_waiting", "batch" => batch).set(waiting as f64);
}

/// How many writes one group commit carried.
pub fn batch_size(batch: &'static str, size: usize) {
    histogram!("ugw_batch_size", "batch" => batch).record(size as f64);
}

/// How long a write waited before its group commit began.
pub fn batch_queued(batch: &'static str, waited: std::time::Duration) {
    histogram!("ugw_batch_queue_seconds", "batch" => batch).record(waited.as_secs_f64());
}

/// How long one group commit took (statement and commit).
pub fn batch_written(batch: &'static str, took: std::time::Duration) {
    histogram!("ugw_batch_write_seconds", "batch" => batch).record(took.as_secs_f64());
}
