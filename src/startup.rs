//! Builds the HTTP application from settings.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use sqlx::PgPool;
use tracing_actix_web::TracingLogger;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::config::Settings;
use crate::orchestrator::http_client;
use crate::state::AppState;
use crate::telemetry::{GatewayRootSpan, request_id};
use crate::tokens::TokenManager;
use crate::{openapi, routes, storage, workers};
use tokio_util::sync::CancellationToken;

/// A bound, not yet running, gateway.
pub struct Application {
    port: u16,
    server: Server,
    pool: PgPool,
    state: Arc<AppState>,
    stop_workers: CancellationToken,
}

impl Application {
    /// Connects to the database, applies migrations and binds the listener.
    /// `settings.database_url` must be set (the embedded cluster fills it in).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let url = settings
            .database_url
            .clone()
            .context("no database URL: set DATABASE_URL or use the embedded PostgreSQL")?;
        let pool = storage::pool(storage::connect_options(&url)?, &settings.database);
        storage::migrate(&pool, Duration::from_secs(30)).await?;
        let listener = TcpListener::bind((settings.host, settings.port))
            .with_context(|| format!("binding {}:{}", settings.host, settings.port))?;
        let port = listener.local_addr()?.port();
        let keys = Arc::new(settings.key_ring().context("GATEWAY_ENCRYPTION_KEYS")?);
        let http = http_client(Duration::from_millis(settings.orchestrator.timeout_ms));
        let tokens = Arc::new(TokenManager::new(
            pool.clone(),
            keys.clone(),
            http.clone(),
            settings.orchestrator.refresh_at,
        ));
        let stop_workers = CancellationToken::new();
        tokio::spawn(workers::token_refresh::run(
            pool.clone(),
            tokens.clone(),
            Duration::from_secs(settings.orchestrator.refresh_interval_secs),
            settings.orchestrator.pat_warning_days,
            stop_workers.clone(),
        ));
        let callback_http =
            crate::callbacks::http_client(&settings.callbacks, settings.allow_private_callbacks);
        let instance_id = uuid::Uuid::new_v4();
        let state = Arc::new(AppState {
            pool: pool.clone(),
            keys,
            http,
            tokens,
            instance_id,
            ledger: crate::storage::jobs::Ledger::spawn(
                pool.clone(),
                instance_id,
                settings.dispatch.lease_secs,
            ),
            jobs_ended: crate::storage::job_watch::JobWatch::new(),
            callback_http,
            limits: crate::limits::Limits::new(
                &settings.rate_limits,
                settings.hooks.refused_per_minute,
            ),
            client_limits: crate::limits::ClientLimits::new(settings.limits.clone()),
            metrics: crate::metrics::install(),
            lookups: crate::storage::lookups::Lookups::new(),
            traffic: crate::traffic::Governor::new(
                pool.clone(),
                settings.traffic.clone(),
                settings.tracking.list_budget_per_minute,
                settings.dispatch.batch_size as usize,
                Duration::from_millis(settings.orchestrator.timeout_ms),
            ),
            settings: Arc::new(settings),
        });
        let declared = crate::app::config_apply::apply(
            &state,
            &state.settings.connections,
            &state.settings.processes,
            &state.settings.queues,
            &state.settings.webhooks,
        )
        .await
        .inspect_err(|_| stop_workers.cancel())
        .context("applying the objects of the config file")?;
        let keys = crate::app::config_apply::apply_api_keys(&state, &state.settings.api_keys)
            .await
            .inspect_err(|_| stop_workers.cancel())
            .context("applying the API keys of the config file")?;
        let declared = crate::app::config_apply::Applied {
            created: declared.created + keys.created,
            updated: declared.updated + keys.updated,
            unchanged: declared.unchanged + keys.unchanged,
        };
        if declared != crate::app::config_apply::Applied::default() {
            tracing::info!(
                created = declared.created,
                updated = declared.updated,
                unchanged = declared.unchanged,
                "config file objects applied"
            );
        }
        tokio::spawn(workers::dispatcher::run(
            state.clone(),
            stop_workers.clone(),
        ));
        tokio::spawn(workers::job_sync::run(state.clone(), stop_workers.clone()));
        tokio::spawn(workers::reconciler::run(
            state.clone(),
            stop_workers.clone(),
        ));
        tokio::spawn(state.traffic.clone().run(stop_workers.clone()));
        tokio::spawn(state.jobs_ended.clone().listen(
            pool.clone(),
            stop_workers.clone(),
            state.lookups.clone(),
        ));
        tokio::spawn(workers::callbacks::run(state.clone(), stop_workers.clone()));
        tokio::spawn(housekeeping(state.clone(), stop_workers.clone()));
        tokio::spawn(workers::webhook_registration::run(
            state.clone(),
            stop_workers.clone(),
        ));
        let server = serve(listener, state.clone())?;
        Ok(Self {
            port,
            server,
            pool,
            state,
            stop_workers,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The pool, shared with background work.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// What the handlers share (for driving workers in tests).
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// A handle to stop the server gracefully.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until the server is stopped through its handle, then stops the workers.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.stop_workers.cancel();
        result
    }
}

/// Every minute: drops the rate-limit state of keys and webhooks that went quiet, and
/// deletes refused deliveries past `hooks.refused_retention_secs`.
async fn housekeeping(state: Arc<AppState>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        state.limits.shrink();
        match storage::hooks::purge_refused(
            &state.pool,
            state.settings.hooks.refused_retention_secs,
            10_000,
        )
        .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "refused webhook deliveries purged"),
            Err(e) => tracing::warn!(error = %e, "purging refused webhook deliveries failed"),
        }
    }
}

fn serve(listener: TcpListener, state: Arc<AppState>) -> anyhow::Result<Server> {
    let settings = state.settings.clone();
    let spec = openapi::spec();
    let route_table = web::Data::new(routes::RouteTable::from_spec(&spec));
    let static_doc = web::Data::new(crate::views::openapi::Static::new(openapi::spec_value()));
    let body_limit = settings.body_limit_bytes;
    let workers = match settings.http_workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let shutdown_timeout = settings.shutdown_timeout_secs;
    let client_limits = state.client_limits.clone();
    let state = web::Data::from(state);
    let server = HttpServer::new(move || {
        App::new()
            .wrap(from_fn(routes::gate::gate))
            .wrap(TracingLogger::<GatewayRootSpan>::new())
            .wrap(from_fn(request_id))
            .app_data(state.clone())
            .app_data(route_table.clone())
            .app_data(static_doc.clone())
            .configure(|cfg| routes::extractors::configure(cfg, body_limit))
            .into_utoipa_app()
            .configure(routes::configure)
            .into_app()
            .route("/openapi.json", web::get().to(routes::docs::openapi_json))
            .service(
                SwaggerUi::new("/docs/{_:.*}")
                    .config(Config::new(["/openapi.json"]).use_base_layout()),
            )
            .route("/docs", web::get().to(routes::docs::docs_redirect))
            .route("/console", web::get().to(routes::console::index))
            .route("/console/{file}", web::get().to(routes::console::file))
            .default_service(web::to(routes::not_found))
    })
    .on_connect(move |conn, ext| client_limits.on_connect(conn, ext))
    .workers(workers)
    .shutdown_timeout(shutdown_timeout)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}
