//! The command line: `serve` (the default), `migrate`, `openapi`, `healthcheck`, `demo`,
//! `keys`, `simulator`, and the admin commands (`connections`, `processes`, `queues`,
//! `webhooks`, `api-keys`: `admin_cli.rs`) against a running gateway.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use secrecy::ExposeSecret;

use crate::admin_cli::{Action, ApiKeyAction, ConnectionAction, Kind, Target};
use crate::config::Settings;
use crate::crypto::KeyRing;
use crate::embedded_db::EmbeddedPostgres;
use crate::simulator::{Scenario, Simulator};
use crate::startup::Application;
use crate::{openapi, storage, telemetry};

/// Start UiPath robots over plain HTTP.
#[derive(Debug, Parser)]
#[command(name = "uipath-gateway", version, about)]
pub struct Cli {
    /// A TOML settings file; environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// For the admin commands: the gateway and its admin token.
    #[command(flatten)]
    pub target: Target,
}

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the gateway. Without DATABASE_URL it runs an embedded PostgreSQL in the data directory.
    Serve,
    /// Apply database migrations, then exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Exit 0 if the gateway on this host answers /readyz with 200 (for container health checks).
    Healthcheck,
    /// Run a ready-to-call demo: the embedded PostgreSQL, the simulator and the gateway,
    /// preloaded with a connection, three processes and an API key.
    Demo {
        /// Port of the simulator.
        #[arg(long, default_value_t = 8090)]
        sim_port: u16,
    },
    /// Manage the encryption keys of stored secrets.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Connections of a running gateway (admin API): list, get, add, replace, remove, test.
    #[command(subcommand)]
    Connections(ConnectionAction),
    /// Processes of a running gateway (admin API): list, get, add, replace, remove.
    #[command(subcommand)]
    Processes(Action),
    /// Queue mappings of a running gateway (admin API): list, get, add, replace, remove.
    #[command(subcommand)]
    Queues(Action),
    /// Inbound webhooks of a running gateway (admin API): list, get, add, replace, remove.
    #[command(subcommand)]
    Webhooks(Action),
    /// API keys of a running gateway (admin API): list, add, remove (revoke).
    #[command(subcommand, name = "api-keys")]
    ApiKeys(ApiKeyAction),
    /// Run the Orchestrator simulator on its own, for building integrations offline.
    Simulator {
        /// Port to listen on.
        #[arg(long, default_value_t = 8090)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// A TOML or JSON scenario; the built-in demo tenant when omitted.
        #[arg(long, value_name = "FILE")]
        scenario: Option<PathBuf>,
    },
}

/// `keys` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Print a new key-ring entry (`id:base64`) to put first in GATEWAY_ENCRYPTION_KEYS.
    Generate {
        /// The key's id.
        #[arg(long, default_value_t = format!("k{}", chrono::Utc::now().format("%Y%m%d")))]
        id: String,
    },
    /// Re-seal every stored secret with the first (active) key of GATEWAY_ENCRYPTION_KEYS.
    /// Keep the old keys listed until this has run.
    Rotate,
}

/// Runs the command line and returns the process exit code:
/// 0 on success, 1 on failure, 2 for bad usage or settings.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    let print = |text: &str| match std::io::stdout().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    };
    let admin = match &command {
        Command::Connections(a) => Some((Kind::Connections, a.clone().into())),
        Command::Processes(a) => Some((Kind::Processes, a.clone())),
        Command::Queues(a) => Some((Kind::Queues, a.clone())),
        Command::Webhooks(a) => Some((Kind::Webhooks, a.clone())),
        Command::ApiKeys(a) => Some((Kind::ApiKeys, a.clone().into())),
        _ => None,
    };
    if let Some((kind, action)) = admin {
        return admin_command(kind, action, cli.target);
    }
    match &command {
        Command::Openapi => return print(&openapi::spec_json()),
        Command::Keys(KeysCommand::Generate { id }) => {
            let spec = KeyRing::generate_spec(id);
            return match KeyRing::parse(&spec) {
                Ok(_) => print(&format!("{}\n", spec.expose_secret())),
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "uipath-gateway: {e}");
                    ExitCode::from(2)
                }
            };
        }
        _ => {}
    }
    let mut settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "uipath-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    // The demo's terminal shows its banner, not INFO lines, unless a level is asked for.
    if matches!(command, Command::Demo { .. })
        && std::env::var_os("GATEWAY_LOG_LEVEL").is_none()
        && settings.log_level == Settings::default().log_level
    {
        settings.log_level = "warn".into();
    }
    telemetry::init(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "uipath-gateway: cannot start the runtime: {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Serve => serve(settings).await,
            Command::Migrate => migrate(settings).await,
            Command::Healthcheck => healthcheck(settings).await,
            Command::Demo { sim_port } => demo(settings, sim_port).await,
            Command::Simulator {
                port,
                host,
                scenario,
            } => simulator(&host, port, scenario).await,
            Command::Keys(KeysCommand::Rotate) => rotate_keys(settings).await,
            Command::Openapi
            | Command::Keys(KeysCommand::Generate { .. })
            | Command::Connections(_)
            | Command::Processes(_)
            | Command::Queues(_)
            | Command::Webhooks(_)
            | Command::ApiKeys(_) => unreachable!("handled above"),
        }
    });
    // Spans still buffered go out before the process ends.
    crate::otel::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "uipath-gateway stopped with an error"
            );
            let _ = writeln!(std::io::stderr(), "uipath-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the embedded cluster when no database URL is configured, and fills the URL in.
async fn embedded_if_needed(settings: &mut Settings) -> anyhow::Result<Option<EmbeddedPostgres>> {
    if settings.database_url.is_some() {
        return Ok(None);
    }
    if settings.encryption_keys.is_none() {
        std::fs::create_dir_all(&settings.data_dir)?;
        settings.encryption_keys =
            Some(crate::crypto::load_or_create_key_file(&settings.data_dir)?);
    }
    let dir = settings.data_dir.clone();
    let embedded = settings.embedded.clone();
    let pg_bin = settings.pg_bin.clone();
    let pg = tokio::task::spawn_blocking(move || {
        EmbeddedPostgres::start(&dir, pg_bin.as_deref(), &embedded)
    })
    .await
    .context("starting the embedded PostgreSQL")??;
    match pg.ensure_database().await {
        Ok(url) => {
            settings.database_url = Some(url);
            Ok(Some(pg))
        }
        Err(e) => {
            stop_embedded(Some(pg)).await;
            Err(e)
        }
    }
}

async fn stop_embedded(pg: Option<EmbeddedPostgres>) {
    if let Some(pg) = pg {
        match tokio::task::spawn_blocking(move || pg.stop()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = format!("{e:#}"), "stopping the embedded PostgreSQL")
            }
            Err(e) => tracing::error!(error = %e, "stopping the embedded PostgreSQL"),
        }
    }
}

async fn serve(mut settings: Settings) -> anyhow::Result<()> {
    let embedded = embedded_if_needed(&mut settings).await?;
    let result = run_server(settings).await;
    stop_embedded(embedded).await;
    result
}

async fn run_server(settings: Settings) -> anyhow::Result<()> {
    let host = settings.host;
    let app = Application::build(settings).await?;
    let port = app.port();
    tracing::info!(%host, port, docs = %format!("http://{host}:{port}/docs/"), "listening");
    let handle = app.handle();
    let mut server = tokio::spawn(app.run_until_stopped());
    tokio::select! {
        res = &mut server => res.context("the HTTP server task failed")?.context("the HTTP server failed")?,
        () = shutdown_signal() => {
            tracing::info!("shutting down: draining requests in flight");
            handle.stop(true).await;
            server.await.context("the HTTP server task failed")?.context("the HTTP server failed")?;
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

async fn migrate(mut settings: Settings) -> anyhow::Result<()> {
    let embedded = embedded_if_needed(&mut settings).await?;
    let result = async {
        let url = settings.database_url.as_ref().context("no database URL")?;
        let pool = storage::pool(storage::connect_options(url)?, &settings.database);
        storage::migrate(&pool, Duration::from_secs(30)).await?;
        pool.close().await;
        tracing::info!("migrations applied");
        Ok(())
    }
    .await;
    stop_embedded(embedded).await;
    result
}

async fn simulator(host: &str, port: u16, scenario: Option<PathBuf>) -> anyhow::Result<()> {
    let scenario = match scenario {
        Some(path) => Scenario::load(&path)?,
        None => Scenario::default(),
    };
    let sim = Simulator::start(scenario, host, port).await?;
    let base = format!("http://{host}:{}", sim.port());
    tracing::info!(
        port = sim.port(),
        token_url = %format!("{base}/identity_/connect/token"),
        orchestrator_url = %format!("{base}/demo-org/DefaultTenant/orchestrator_"),
        "Orchestrator simulator listening"
    );
    shutdown_signal().await;
    sim.stop().await;
    Ok(())
}

async fn demo(mut settings: Settings, sim_port: u16) -> anyhow::Result<()> {
    let embedded = embedded_if_needed(&mut settings).await?;
    let result = crate::demo::run(settings, sim_port, shutdown_signal()).await;
    stop_embedded(embedded).await;
    result
}

async fn rotate_keys(mut settings: Settings) -> anyhow::Result<()> {
    let embedded = embedded_if_needed(&mut settings).await?;
    let result = async {
        let keys = settings.key_ring()?;
        let url = settings.database_url.as_ref().context("no database URL")?;
        let pool = storage::pool(storage::connect_options(url)?, &settings.database);
        storage::migrate(&pool, Duration::from_secs(30)).await?;
        let done = storage::keys::rotate(&pool, &keys).await?;
        pool.close().await;
        tracing::info!(
            active_key = keys.active_id(),
            resealed = done.resealed,
            already_current = done.current,
            "keys rotated"
        );
        Ok(())
    }
    .await;
    stop_embedded(embedded).await;
    result
}

async fn healthcheck(settings: Settings) -> anyhow::Result<()> {
    let host = if settings.host.is_unspecified() {
        "127.0.0.1".parse()?
    } else {
        settings.host
    };
    let url = format!(
        "http://{}/readyz",
        std::net::SocketAddr::new(host, settings.port)
    );
    let res = crate::orchestrator::http::builder()
        .timeout(Duration::from_secs(5))
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    anyhow::ensure!(
        res.status().is_success(),
        "GET {url} answered {}",
        res.status()
    );
    Ok(())
}

/// Runs an admin command against a running gateway: 0, or 1 with the reason on stderr.
fn admin_command(kind: Kind, action: Action, target: Target) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "uipath-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout();
    match runtime.block_on(crate::admin_cli::run(kind, action, target, &mut out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "uipath-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}
