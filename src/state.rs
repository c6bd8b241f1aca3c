//! What handlers and workers share: the pool, settings, clients, caches and limiters.
//! Below routes and workers, so that neither needs `startup` (which wires them).

use std::sync::Arc;

use sqlx::PgPool;

use crate::config::Settings;
use crate::crypto::KeyRing;
use crate::orchestrator::OrchestratorClient;
use crate::storage::connections::ConnectionRow;
use crate::tokens::TokenManager;

/// What every handler can reach.
pub struct AppState {
    /// The database pool.
    pub pool: PgPool,
    /// The settings the gateway started with.
    pub settings: Arc<Settings>,
    /// Seals and opens stored secrets.
    pub keys: Arc<KeyRing>,
    /// The one HTTP client for Orchestrator.
    pub http: reqwest::Client,
    /// Tokens of every connection.
    pub tokens: Arc<TokenManager>,
    /// This instance, as the owner of job leases.
    pub instance_id: uuid::Uuid,
    /// Wakes requests waiting for a job to end.
    pub jobs_ended: crate::storage::job_watch::JobWatch,
    /// The HTTP client for callbacks (refuses private addresses unless allowed).
    pub callback_http: reqwest::Client,
    /// Rate limits per API key and per webhook.
    pub limits: crate::limits::Limits,
    /// Connections and body bytes per client address.
    pub client_limits: Arc<crate::limits::ClientLimits>,
    /// Group-committed job writes.
    pub ledger: crate::storage::jobs::Ledger,
    /// Short-lived copies of keys, processes, connections and webhook definitions.
    pub lookups: Arc<crate::storage::lookups::Lookups>,
    /// Connections the poller leaves alone while their tenant's list budget is spent.
    pub traffic: std::sync::Arc<crate::traffic::Governor>,
    /// Renders `/metrics` (None if another metrics recorder was installed first).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl AppState {
    /// The Orchestrator client for a connection: the shared HTTP client, the connection's
    /// URL and tenant header, every call through its tenant's traffic governor.
    pub fn orchestrator(&self, conn: &ConnectionRow) -> OrchestratorClient {
        OrchestratorClient::new(
            self.http.clone(),
            &conn.settings.orchestrator_url,
            conn.settings.tenant_name_header.clone(),
        )
        .governed(self.traffic.clone())
    }
}
