//! A stateful stand-in for UiPath Orchestrator and its identity servers, faithful
//! to `orchestrator-api.md`. It shares no DTOs with our Orchestrator client, so a
//! wrong field name in one is caught by the other.
//!
//! Paths: Automation Cloud `/{org}/{tenant}/orchestrator_/...`, standalone at the
//! root, legacy cloud `/{account}/{tenant}/...`; identity at `/identity_/...`,
//! `/{org}/identity_/...`, `/identity/...`, `/oauth/token` and `/cloudrpa/...`;
//! control at `/__sim/...`.

// Guards return the ready error response on a cold path; boxing it would only add noise.
#![allow(clippy::result_large_err)]

pub mod common;
pub mod control;
mod demo_tenant;
pub mod engine;
pub mod faults;
pub mod identity;
pub mod jobs;
pub mod odata;
pub mod odata_query;
pub mod outbox;
pub mod queue_robot;
pub mod queues;
mod recorder;
pub mod scenario;
pub mod state;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

pub use scenario::Scenario;

use common::Sim;
use state::SimState;

/// The Orchestrator routes, mounted at the root, under the cloud prefix and under the legacy prefix.
/// Fixed paths come first: they are compared as text, while each `{id}` pattern costs a
/// regular-expression match on every request that reaches it.
fn orchestrator_routes(cfg: &mut web::ServiceConfig) {
    const JOBS: &str = "/odata/Jobs";
    cfg.route(
        "/odata/Jobs/UiPath.Server.Configuration.OData.StartJobs",
        web::post().to(jobs::start_jobs),
    )
    .route(JOBS, web::get().to(jobs::list_jobs))
    .route("/odata/Folders", web::get().to(odata::list_folders))
    .route("/odata/Releases", web::get().to(odata::list_releases))
    .route(
        "/odata/Jobs/UiPath.Server.Configuration.OData.StopJobs",
        web::post().to(jobs::stop_jobs),
    )
    .route(
        "/odata/Queues/UiPathODataSvc.AddQueueItem",
        web::post().to(queues::add_item),
    )
    .route(
        "/odata/QueueDefinitions",
        web::get().to(queues::list_definitions),
    )
    .route("/odata/QueueItems", web::get().to(queues::list_items))
    .route("/odata/QueueItems({id})", web::get().to(queues::get_item))
    .route("/odata/Webhooks", web::get().to(odata::list_webhooks))
    .route("/odata/Webhooks", web::post().to(odata::create_webhook))
    .route("/odata/Jobs({id})", web::get().to(jobs::get_job))
    .route(
        "/odata/Jobs({id})/UiPath.Server.Configuration.OData.StopJob",
        web::post().to(jobs::stop_job),
    )
    .route("/odata/Webhooks({id})", web::get().to(odata::one_webhook))
    .route("/odata/Webhooks({id})", web::put().to(odata::one_webhook))
    .route(
        "/odata/Webhooks({id})",
        web::delete().to(odata::one_webhook),
    )
    .route(
        "/odata/Webhooks({id})/UiPath.Server.Configuration.OData.Ping",
        web::post().to(odata::ping_webhook),
    );
}

/// Every route of the simulator. Order matters: the Automation Cloud scope (what the
/// gateway calls most) comes first and takes every path under its prefix; specific paths
/// come before the `/{account}/{tenant}` legacy scope, which would match them too.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(control::configure)
        .service(
            web::scope("/{org}/{tenant}/orchestrator_")
                .route(
                    "/api/Account/Authenticate",
                    web::post().to(identity::authenticate_on_cloud),
                )
                .configure(orchestrator_routes),
        )
        .route(
            "/identity_/connect/token",
            web::post().to(identity::connect_token),
        )
        .route(
            "/identity/connect/token",
            web::post().to(identity::connect_token),
        )
        .route(
            "/{org}/identity_/connect/token",
            web::post().to(identity::connect_token),
        )
        .route("/oauth/token", web::post().to(identity::legacy_token))
        .route(
            "/cloudrpa/api/getAccountsForUser",
            web::get().to(identity::accounts_for_user),
        )
        .route(
            "/cloudrpa/api/account/{account}/getAllServiceInstances",
            web::get().to(identity::service_instances),
        )
        .route(
            "/api/Account/Authenticate",
            web::post().to(identity::authenticate),
        )
        .configure(orchestrator_routes)
        .service(web::scope("/{account}/{tenant}").configure(orchestrator_routes));
}

/// A running simulator.
pub struct Simulator {
    port: u16,
    sim: Arc<Sim>,
    handle: ServerHandle,
    ticker: tokio::task::JoinHandle<()>,
}

impl Simulator {
    /// Starts a simulator on `host:port` (port 0 picks a free one) and returns once it listens.
    pub async fn start(scenario: Scenario, host: &str, port: u16) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((host, port))?;
        let port = listener.local_addr()?.port();
        let http = crate::orchestrator::http::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let sim = Arc::new(Sim {
            state: Mutex::new(SimState::new(scenario)),
            http,
        });
        let data = web::Data::from(sim.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::default().limit(16 * 1024 * 1024))
                .wrap(from_fn(recorder::record_and_inject))
                .configure(configure)
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        let ticker = tokio::spawn(engine::run_ticker(sim.clone()));
        Ok(Self {
            port,
            sim,
            handle,
            ticker,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:{port}` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Runs `f` on the shared state, for in-process tests. A closure rather than a
    /// guard, so the lock cannot be held across an `.await` (which would deadlock the
    /// simulator's handlers).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut SimState) -> R) -> R {
        f(&mut self.sim.lock())
    }

    /// Stops serving.
    pub async fn stop(self) {
        self.ticker.abort();
        self.handle.stop(true).await;
    }
}
