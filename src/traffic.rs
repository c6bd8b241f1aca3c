//! The traffic governor: one per Orchestrator tenant, consulted by every outgoing call
//! (starts, stops, lookups, polls, releases, folders, webhook registration).
//!
//! - **Classes.** Filtered lists (`GET /odata/Jobs?$filter=`), which Orchestrator allows
//!   100 a minute per tenant, take from a budget shared by every instance through
//!   PostgreSQL. Starts and every other call are not budgeted, but pause on a 429.
//! - **Pauses.** A 429 (or a 503 with `Retry-After`) pauses that class of the tenant's
//!   calls for every job and every instance until the time it names. Nothing is sent
//!   while paused: the caller gets [`Hold`] and no job spends an attempt on it.
//! - **A learned budget.** A 429 on a list below the budget in force lowers the tenant's
//!   budget to what it accepted, kept across windows and restarts; after
//!   `budget_probe_secs` one more list a window is tried.
//! - **A circuit.** When most recent calls fail (5xx, timeouts, refused connections),
//!   the tenant's circuit opens: nothing is sent until one probe call has answered.
//!   After that, starts ramp up from one at a time (`start_allowance`).
//! - **Strikes.** A job's failure counts against its attempts only while its tenant is
//!   otherwise healthy (`counts_against_job`).
//!
//! The shared state lives in `orchestrator_tenants`; each instance keeps a copy,
//! refreshed every `refresh_ms` and updated at once by its own decisions.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use metrics::{counter, gauge};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::storage::traffic::{self as store, ListBudget, PauseColumn, TenantRow};
use serde::{Deserialize, Serialize};

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

    fn column(self) -> PauseColumn {
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
    probe: bool,
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

#[derive(Debug)]
struct Local {
    row: TenantRow,
    /// Recent calls and whether they failed as an outage does.
    outcomes: VecDeque<(Instant, bool)>,
    /// This instance holds the probe of an open circuit.
    probing: bool,
    /// Starts this instance may have in flight per dispatcher pass.
    window: usize,
    /// Routine polling found the list budget spent, until then (this instance's view).
    lists_spent_until: Option<Instant>,
}

/// The governor of every tenant this instance talks to.
#[derive(Debug)]
pub struct Governor {
    pool: PgPool,
    s: TrafficSettings,
    list_budget: i64,
    max_window: usize,
    probe_hold: Duration,
    tenants: Mutex<HashMap<String, Local>>,
}

fn left(until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<Duration> {
    until
        .filter(|u| *u > now)
        .and_then(|u| (u - now).to_std().ok())
}

impl Governor {
    /// `list_budget`: lists per window (`tracking.list_budget_per_minute`); `max_window`:
    /// starts per dispatcher pass (`dispatch.batch_size`); `call_timeout`: the
    /// Orchestrator timeout, which bounds how long a probe is out.
    pub fn new(
        pool: PgPool,
        s: TrafficSettings,
        list_budget: i64,
        max_window: usize,
        call_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            pool,
            s,
            list_budget,
            max_window: max_window.max(1),
            probe_hold: call_timeout + Duration::from_secs(5),
            tenants: Mutex::new(HashMap::new()),
        })
    }

    fn with<R>(&self, tenant: &str, f: impl FnOnce(&mut Local) -> R) -> R {
        let mut all = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        let local = all.entry(tenant.to_string()).or_insert_with(|| Local {
            row: TenantRow {
                tenant_key: tenant.to_string(),
                ..TenantRow::default()
            },
            outcomes: VecDeque::new(),
            probing: false,
            window: self.max_window,
            lists_spent_until: None,
        });
        f(local)
    }

    fn set_row(&self, row: TenantRow) {
        let tenant = row.tenant_key.clone();
        self.with(&tenant, |l| l.row = row);
    }

    /// Why a call of `class` may not go now, if it may not (no probe is claimed here).
    pub fn blocked(&self, tenant: &str, class: Class) -> Option<Hold> {
        let now = Utc::now();
        self.with(tenant, |l| {
            if let Some(wait) = left(pause_of(&l.row, class), now) {
                return Some(Hold {
                    wait,
                    reason: "paused",
                });
            }
            if let Some(wait) = left(l.row.circuit_open_until, now) {
                return Some(Hold {
                    wait,
                    reason: "circuit_open",
                });
            }
            (l.row.circuit_open_until.is_some() && l.probing).then_some(Hold {
                wait: Duration::from_secs(1),
                reason: "circuit_open",
            })
        })
    }

    /// Asks to send one call. A list also takes from the tenant's budget.
    pub async fn admit(
        &self,
        tenant: &str,
        class: Class,
        priority: Priority,
    ) -> Result<Ticket, Hold> {
        if let Some(hold) = self.blocked(tenant, class) {
            return Err(self.held(tenant, class, hold));
        }
        let mut ticket = Ticket { probe: false };
        if self.with(tenant, |l| l.row.circuit_open_until.is_some()) {
            // The circuit's time is up: one call, from one instance, finds out.
            match store::claim_probe(&self.pool, tenant, self.probe_hold).await {
                Ok(true) => {
                    self.with(tenant, |l| l.probing = true);
                    ticket.probe = true;
                }
                Ok(false) | Err(_) => {
                    let _ = self.refresh_one(tenant).await;
                    let hold = Hold {
                        wait: Duration::from_millis(500),
                        reason: "circuit_open",
                    };
                    return Err(self.held(tenant, class, hold));
                }
            }
        }
        if class == Class::List {
            let budget = ListBudget {
                configured: self.list_budget,
                window_secs: self.s.list_window_secs,
                reserve: (self.list_budget as f64 * self.s.list_reserve_share).ceil() as i64,
                urgent: priority == Priority::Urgent,
                probe_secs: self.s.budget_probe_secs,
            };
            let taken = store::take_list(&self.pool, tenant, budget).await;
            let refused = match taken {
                Ok(Ok(())) => None,
                Ok(Err(wait)) => Some(wait),
                Err(e) => {
                    tracing::warn!(tenant, error = %e, "reading the list budget failed");
                    Some(Duration::from_secs(1))
                }
            };
            if let Some(wait) = refused {
                if ticket.probe {
                    self.with(tenant, |l| l.probing = false);
                    let _ = store::release_probe(&self.pool, tenant).await;
                }
                if priority == Priority::Routine {
                    let until = Instant::now() + wait.min(Duration::from_secs(60));
                    self.with(tenant, |l| l.lists_spent_until = Some(until));
                }
                let hold = Hold {
                    wait,
                    reason: "list_budget",
                };
                return Err(self.held(tenant, class, hold));
            }
        }
        Ok(ticket)
    }

    fn held(&self, tenant: &str, class: Class, hold: Hold) -> Hold {
        counter!("ugw_orchestrator_calls_total", "tenant" => tenant.to_string(),
            "class" => class.label(), "outcome" => "held")
        .increment(1);
        hold
    }

    /// Records how an admitted call went.
    pub async fn observe(&self, tenant: &str, class: Class, ticket: Ticket, outcome: Outcome) {
        if let Err(e) = self.observe_inner(tenant, class, ticket, outcome).await {
            tracing::warn!(tenant, error = %e, "recording a call in the tenant's shared state failed");
        }
    }

    async fn observe_inner(
        &self,
        tenant: &str,
        class: Class,
        ticket: Ticket,
        outcome: Outcome,
    ) -> Result<(), sqlx::Error> {
        let now = Instant::now();
        let keep = Duration::from_secs(self.s.health_window_secs.max(1));
        let failed = outcome == Outcome::Failed;
        let (share, calls, open) = self.with(tenant, |l| {
            if ticket.probe {
                l.probing = false;
            }
            l.outcomes.push_back((now, failed));
            while l
                .outcomes
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > keep)
            {
                l.outcomes.pop_front();
            }
            match outcome {
                Outcome::Ok | Outcome::Answered if class == Class::Start => {
                    l.window = (l.window + 1).min(self.max_window)
                }
                Outcome::Failed => l.window = (l.window / 2).max(1),
                Outcome::RateLimited(_) | Outcome::Busy(_) => l.window = 1,
                _ => {}
            }
            let failures = l.outcomes.iter().filter(|(_, f)| *f).count();
            (
                failures as f64 / l.outcomes.len() as f64,
                l.outcomes.len(),
                l.row.circuit_open_until.is_some(),
            )
        });
        match outcome {
            Outcome::RateLimited(after) => {
                let default = match class {
                    Class::List => self.s.list_pause_secs,
                    _ => self.s.call_pause_secs,
                };
                let wait = after.unwrap_or(Duration::from_secs(default));
                let row = store::pause(&self.pool, tenant, class.column(), wait, "429").await?;
                tracing::warn!(
                    tenant,
                    class = class.label(),
                    wait_ms = wait.as_millis() as u64,
                    "Orchestrator answered 429: the tenant's calls of this class pause"
                );
                self.set_row(row);
                if class == Class::List {
                    let budget = store::learn_list_budget(
                        &self.pool,
                        tenant,
                        self.list_budget,
                        self.s.list_window_secs,
                    )
                    .await?;
                    tracing::info!(tenant, budget, "list budget in force after the 429");
                }
                if ticket.probe {
                    self.set_row(store::close_circuit(&self.pool, tenant).await?);
                }
            }
            Outcome::Busy(wait) => {
                let row =
                    store::pause(&self.pool, tenant, class.column(), wait, "retry_after").await?;
                self.set_row(row);
                if ticket.probe {
                    self.set_row(store::close_circuit(&self.pool, tenant).await?);
                }
            }
            Outcome::Failed => {
                let storm =
                    calls >= self.s.circuit_min_calls && share >= self.s.circuit_failure_share;
                if ticket.probe || (storm && !open) {
                    let reason = if ticket.probe {
                        "the probe failed"
                    } else {
                        "most recent calls failed"
                    };
                    let row = store::open_circuit(
                        &self.pool,
                        tenant,
                        Duration::from_millis(self.s.circuit_open_ms),
                        Duration::from_secs(self.s.circuit_open_max_secs.max(1)),
                        reason,
                        ticket.probe,
                    )
                    .await?;
                    tracing::warn!(tenant, reason, until = ?row.circuit_open_until, "the tenant's circuit is open");
                    self.with(tenant, |l| l.window = 1);
                    self.set_row(row);
                }
            }
            Outcome::Ok | Outcome::Answered => {
                if ticket.probe {
                    tracing::info!(
                        tenant,
                        "the probe was answered: the tenant's circuit closes"
                    );
                    self.set_row(store::close_circuit(&self.pool, tenant).await?);
                    self.with(tenant, |l| {
                        l.window = 1;
                        l.outcomes.clear();
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether routine polling may make a list now: lists are not paused, the circuit is
    /// closed, and the budget was not found spent lately.
    pub fn lists_open(&self, tenant: &str) -> bool {
        self.blocked(tenant, Class::List).is_none()
            && self.with(tenant, |l| {
                l.lists_spent_until.is_none_or(|u| u <= Instant::now())
            })
    }

    /// Whether a job's failure now is its own: the tenant's circuit is closed and
    /// few of its recent calls failed (or too few were made to tell).
    pub fn counts_against_job(&self, tenant: &str) -> bool {
        let now = Instant::now();
        let keep = Duration::from_secs(self.s.health_window_secs.max(1));
        self.with(tenant, |l| {
            if l.row.circuit_open_until.is_some() {
                return false;
            }
            let recent: Vec<bool> = l
                .outcomes
                .iter()
                .filter(|(at, _)| now.duration_since(*at) <= keep)
                .map(|(_, f)| *f)
                .collect();
            if recent.len() < self.s.circuit_min_calls {
                return true;
            }
            let share = recent.iter().filter(|f| **f).count() as f64 / recent.len() as f64;
            share < self.s.strike_failure_share
        })
    }

    /// How many of the tenant's queued jobs the dispatcher may start in one pass:
    /// none while starts are paused or the circuit is open, one when a probe is due,
    /// and a window that grows by one with each answered start up to the batch size.
    pub fn start_allowance(&self, tenant: &str) -> usize {
        if self.blocked(tenant, Class::Start).is_some() {
            return 0;
        }
        self.with(tenant, |l| {
            if l.row.circuit_open_until.is_some() {
                1
            } else {
                l.window.max(1)
            }
        })
    }

    async fn refresh_one(&self, tenant: &str) -> Result<(), sqlx::Error> {
        let row = store::get(&self.pool, tenant).await?;
        self.set_row(row);
        Ok(())
    }

    /// Reads every tenant's shared state, and publishes the gauges.
    pub async fn refresh(&self) -> Result<(), sqlx::Error> {
        let rows = store::all(&self.pool).await?;
        let now = Utc::now();
        for row in rows {
            let t = row.tenant_key.clone();
            gauge!("ugw_traffic_list_budget", "tenant" => t.clone())
                .set(row.list_budget.unwrap_or(self.list_budget) as f64);
            for class in [Class::List, Class::Start, Class::Call] {
                let secs = left(pause_of(&row, class), now).map_or(0.0, |d| d.as_secs_f64());
                gauge!("ugw_traffic_paused_seconds", "tenant" => t.clone(), "class" => class.label())
                    .set(secs);
            }
            gauge!("ugw_traffic_circuit_open", "tenant" => t.clone()).set(
                if row.circuit_open_until.is_some() {
                    1.0
                } else {
                    0.0
                },
            );
            let window = self.with(&t, |l| {
                l.row = row;
                l.window
            });
            gauge!("ugw_traffic_start_window", "tenant" => t).set(window as f64);
        }
        Ok(())
    }

    /// Refreshes the shared state every `refresh_ms` until cancelled.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let every = Duration::from_millis(self.s.refresh_ms.max(10));
        loop {
            if let Err(e) = self.refresh().await {
                tracing::debug!(error = %e, "reading the tenants' shared state failed");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

fn pause_of(row: &TenantRow, class: Class) -> Option<DateTime<Utc>> {
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

#[cfg(test)]
mod tests;
