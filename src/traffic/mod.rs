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

mod kinds;
mod observe;

pub use kinds::*;

use crate::storage::traffic::{self as store, ListBudget, TenantRow};

#[derive(Debug)]
struct Local {
    row: TenantRow,
    /// Recent calls and whether they failed as an outage does.
    outcomes: VecDeque<(Instant, bool)>,
    /// How many of `outcomes` failed (kept with it, so no call scans the window).
    failures: usize,
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

impl Local {
    /// Records a call's outcome and forgets those older than `keep`.
    fn record(&mut self, now: Instant, failed: bool, keep: Duration) {
        self.outcomes.push_back((now, failed));
        self.failures += usize::from(failed);
        self.forget(now, keep);
    }

    /// Forgets the outcomes older than `keep`.
    fn forget(&mut self, now: Instant, keep: Duration) {
        while let Some(&(at, failed)) = self.outcomes.front() {
            if now.duration_since(at) <= keep {
                break;
            }
            self.outcomes.pop_front();
            self.failures -= usize::from(failed);
        }
    }

    fn clear_outcomes(&mut self) {
        self.outcomes.clear();
        self.failures = 0;
    }

    /// The share of recent calls that failed, and how many there were.
    fn failure_share(&self) -> (f64, usize) {
        let calls = self.outcomes.len();
        (self.failures as f64 / calls.max(1) as f64, calls)
    }
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
        if let Some(local) = all.get_mut(tenant) {
            return f(local);
        }
        let local = all.entry(tenant.to_string()).or_insert_with(|| Local {
            row: TenantRow {
                tenant_key: tenant.to_string(),
                ..TenantRow::default()
            },
            outcomes: VecDeque::new(),
            failures: 0,
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

    /// Whether routine polling may make a list now: lists are not paused, the circuit is
    /// closed, and the budget was not found spent lately.
    pub fn lists_open(&self, tenant: &str) -> bool {
        self.blocked(tenant, Class::List).is_none()
            && self.with(tenant, |l| {
                l.lists_spent_until.is_none_or(|u| u <= Instant::now())
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
        let mut rows = store::all(&self.pool).await?;
        // A tenant this instance talks to that never paused or listed has no row yet:
        // its figures are the defaults, published all the same.
        let local: Vec<String> = self
            .tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .filter(|t| !rows.iter().any(|r| &r.tenant_key == *t))
            .cloned()
            .collect();
        rows.extend(local.into_iter().map(|tenant_key| TenantRow {
            tenant_key,
            ..TenantRow::default()
        }));
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

#[cfg(test)]
mod tests;
