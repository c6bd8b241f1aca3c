//! `uipath-gateway demo`: the embedded PostgreSQL, the simulator on a second port and
//! the gateway, preloaded with a connection to the simulator, three processes, a queue mapping
//! (`InvoicesToBook`) and an
//! API key, so anyone can call it at once. A second run reuses the same data.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::config::Settings;
use crate::domain::connection::ConnectionInput;
use crate::domain::process::ProcessInput;
use crate::routes::auth;
use crate::simulator::{Scenario, Simulator};
use crate::startup::Application;
use crate::storage::api_keys;

/// Reads a secret kept in the data directory, or makes one with `make` (mode 0600).
fn kept_secret(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        return Ok(text.trim().to_string());
    }
    let value = make();
    crate::embedded_db::write_private(path, &value)?;
    Ok(value)
}

fn demo_objects(sim_base: &str) -> (Vec<ConnectionInput>, Vec<ProcessInput>) {
    let conn: ConnectionInput = serde_json::from_value(json!({
        "name": "simulator",
        "kind": "client_credentials",
        "organization": "demo-org",
        "tenant": "DefaultTenant",
        "orchestrator_url": format!("{sim_base}/demo-org/DefaultTenant/orchestrator_"),
        "token_url": format!("{sim_base}/identity_/connect/token"),
        "client_id": "sim-app",
        "client_secret": "sim-app-secret",
        "scopes": ["OR.Folders.Read", "OR.Execution.Read", "OR.Jobs", "OR.Webhooks", "OR.Queues"],
    }))
    .expect("the demo connection is valid");
    let process =
        |name: &str, folder: &str, key: &str, defaults: serde_json::Value| -> ProcessInput {
            serde_json::from_value(json!({
                "name": name, "connection": "simulator", "folder": folder,
                "release": {"process_key": key}, "default_input": defaults, "max_wait_seconds": 60,
            }))
            .expect("the demo process is valid")
        };
    let processes = vec![
        process(
            "Invoices",
            "Finance/AP",
            "InvoiceBot",
            json!({"in_Urgent": false}),
        ),
        process("Orders", "Shared", "OrderSync", json!({})),
        process("Failing", "Shared", "FailingJob", json!({})),
    ];
    (vec![conn], processes)
}

/// Runs the demo until Ctrl-C or SIGTERM. `settings.database_url` must be set (the
/// caller starts the embedded cluster).
pub async fn run(
    mut settings: Settings,
    sim_port: u16,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let sim = Simulator::start(Scenario::default(), "127.0.0.1", sim_port)
        .await
        .context("starting the simulator")?;
    let sim_base = format!("http://127.0.0.1:{}", sim.port());
    std::fs::create_dir_all(&settings.data_dir)?;
    let admin = match &settings.admin_token {
        Some(t) => t.expose_secret().to_string(),
        None => kept_secret(&settings.data_dir.join("demo-admin-token"), || {
            auth::new_key().0.replacen("ugw_", "adm_", 1)
        })?,
    };
    settings.admin_token = Some(SecretString::from(admin.clone()));
    // A demo's callbacks go to a receiver on this machine: private addresses are allowed,
    // unless GATEWAY_ALLOW_PRIVATE_CALLBACKS says otherwise.
    if std::env::var_os("GATEWAY_ALLOW_PRIVATE_CALLBACKS").is_none() {
        settings.allow_private_callbacks = true;
    }
    let (conns, procs) = demo_objects(&sim_base);
    settings.connections.extend(conns);
    settings.processes.extend(procs);
    settings.queues.push(
        serde_json::from_value(json!({
            "name": "InvoicesToBook", "connection": "simulator", "folder": "Finance/AP",
            "queue": "InvoicesToBook", "max_wait_seconds": 60,
        }))
        .expect("the demo queue mapping is valid"),
    );
    let host = settings.host;
    let app = Application::build(settings.clone()).await?;
    let port = app.port();

    let key_file = settings.data_dir.join("demo-api-key");
    let mut key = kept_secret(&key_file, || auth::new_key().0)?;
    if api_keys::find_live(app.pool(), &auth::hash(&key))
        .await?
        .is_none()
    {
        let pool = app.pool().clone();
        let store = |key: String| {
            let pool = pool.clone();
            async move {
                let scopes = ["run:*".to_string(), "jobs:read".to_string()];
                let hash = auth::hash(&key);
                let id = uuid::Uuid::new_v4();
                api_keys::insert(&pool, id, "demo", &key[..12], &hash, &scopes, None).await
            }
        };
        if store(key.clone()).await.is_err() {
            // The stored key was revoked: make a new one.
            key = auth::new_key().0;
            std::fs::write(&key_file, &key)?;
            store(key.clone()).await?;
        }
    }

    let base = format!("http://{host}:{port}");
    // The simulator sends job events to the gateway, as a registered Orchestrator
    // webhook would (the gateway's own address, so `public_url` is not needed).
    let reachable = if host.is_unspecified() {
        format!("http://127.0.0.1:{port}")
    } else {
        base.clone()
    };
    let state = app.state();
    // Best effort: a connection added to the demo may point elsewhere (or at an earlier
    // run's simulator); it is polled instead, and the demo starts all the same.
    for conn in crate::storage::connections::list(app.pool()).await? {
        if let Err(e) =
            crate::workers::webhook_registration::ensure(&state, &conn, &reachable).await
        {
            tracing::warn!(connection = %conn.name, error = %e, "its Orchestrator webhook could not be registered; its jobs are polled");
        }
    }
    let banner = format!(
        "\nuipath-gateway demo is running.\n\
         \n  Gateway:     {base}\n  Swagger UI:  {base}/docs/\n  Simulator:   {sim_base} (a stand-in for UiPath Orchestrator)\n\
         \n  API key:     {key}\n  Admin token: {admin}\n\
         \nStart a job and wait for its result (up to 30 s), then list the latest job:\n\n\
         curl -s -X POST '{base}/run/Invoices?wait=30' -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{{\"in_Vendor\":\"ACME\",\"in_Amount\":12.5}}'\n\
         curl -s '{base}/jobs?process=Invoices&limit=1' -H 'Authorization: Bearer {key}'\n\
         \nProcesses: Invoices (in_Vendor string, in_Amount decimal, in_DueDate date-time, in_Urgent boolean), \
         Orders (in_OrderIds int64 array, in_Options object), Failing (always faults).\n\
         Queue: InvoicesToBook (POST /queues/InvoicesToBook, content InvoiceNumber string and Amount number).\n\
         Callbacks may go to this machine (a demo allows private addresses; a gateway does not by default).\n\
         Data is kept in {}; Ctrl-C stops the demo.\n\n",
        settings.data_dir.display()
    );
    // The values the guides (docs/) use, ready to paste, on stderr: the banner above stays
    // what stdout says.
    // The simulator stands in for a tenant in the connection guides: its public test
    // credentials (docs/simulator.md) are the guides' UIPATH_* values.
    let exports = format!(
        "# For the guides in docs/: paste these into your shell.\n\
         export GATEWAY={reachable}\nexport ADMIN_TOKEN={admin}\nexport API_KEY={key}\n\
         export CONNECTION=simulator\nexport FOLDER=Finance/AP\nexport PROCESS_KEY=InvoiceBot\n\
         export UIPATH_URL={sim_base}\nexport UIPATH_ORG=demo-org\nexport UIPATH_TENANT=DefaultTenant\n\
         export UIPATH_CLIENT_ID=sim-app\nexport UIPATH_CLIENT_SECRET=sim-app-secret\n"
    );
    let _ = std::io::stderr().write_all(exports.as_bytes());
    let _ = std::io::stderr().flush();
    let _ = std::io::stdout().write_all(banner.as_bytes());
    let _ = std::io::stdout().flush();

    let handle = app.handle();
    let mut server = tokio::spawn(app.run_until_stopped());
    tokio::select! {
        res = &mut server => { res??; }
        () = shutdown => {
            handle.stop(true).await;
            server.await??;
        }
    }
    sim.stop().await;
    Ok(())
}
