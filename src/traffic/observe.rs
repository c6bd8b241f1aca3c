//! What the governor learns from each call's outcome: pauses, the learned list budget,
//! the circuit, and whether a failure counts against its job.

use std::time::{Duration, Instant};

use super::*;
use crate::storage::traffic::{self as store};

impl Governor {
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
            l.record(now, failed, keep);
            match outcome {
                Outcome::Ok | Outcome::Answered if class == Class::Start => {
                    l.window = (l.window + 1).min(self.max_window)
                }
                Outcome::Failed => l.window = (l.window / 2).max(1),
                Outcome::RateLimited(_) | Outcome::Busy(_) => l.window = 1,
                _ => {}
            }
            let (share, calls) = l.failure_share();
            (share, calls, l.row.circuit_open_until.is_some())
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
                        l.clear_outcomes();
                    });
                }
            }
        }
        Ok(())
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
            l.forget(now, keep);
            let (share, calls) = l.failure_share();
            calls < self.s.circuit_min_calls || share < self.s.strike_failure_share
        })
    }
}
