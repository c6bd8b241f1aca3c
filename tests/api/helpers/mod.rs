//! Everything the black-box tests share: spawning the gateway (here), the simulator
//! (`sim`), databases (`db`), the usual objects (`setup`) and UiPath's schemas (`spec`).
//! No test file imports another.

pub mod db;
pub mod setup;
pub mod sim;
pub mod spec;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use uipath_gateway::config::Settings;
use uipath_gateway::embedded_db::{self, Cluster, PgBinaries};
use uipath_gateway::startup::Application;

/// Sends a request and reads its answer as JSON, whatever the status.
pub trait SendJson {
    fn send_json(self) -> impl std::future::Future<Output = serde_json::Value>;
}

impl SendJson for reqwest::RequestBuilder {
    async fn send_json(self) -> serde_json::Value {
        self.send().await.unwrap().json().await.unwrap()
    }
}

/// The admin token of test gateways.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A running gateway on a random port with its own fresh database.
pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub client: reqwest::Client,
    pub state: std::sync::Arc<uipath_gateway::state::AppState>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request failed")
    }

    /// `GET path` with the admin token: the JSON answer.
    pub async fn admin_get(&self, path: &str) -> serde_json::Value {
        self.admin(reqwest::Method::GET, path).send_json().await
    }

    /// An admin request with the admin token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN)
    }
}

/// Spawns the gateway with default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns the gateway after letting the test adjust its settings.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let (_, url) = db::server().fresh_database().await;
    spawn_app_on(url, adjust).await
}

/// Spawns the gateway against a given database URL.
pub async fn spawn_app_on(url: SecretString, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    init_test_logging();
    let mut settings = Settings {
        port: 0,
        http_workers: 1,
        database_url: Some(url.clone()),
        encryption_keys: Some(uipath_gateway::crypto::KeyRing::generate_spec("test")),
        admin_token: Some(SecretString::from(ADMIN_TOKEN.to_string())),
        ..Default::default()
    };
    settings.database.max_connections = 5;
    settings.database.min_connections = 0;
    // Tests drive the dispatcher themselves (`dispatcher::try_execute_task`).
    settings.dispatch.poll_interval_ms = 3_600_000;
    settings.tracking.pass_interval_ms = 3_600_000;
    settings.tracking.poll_every_secs = 0;
    settings.callbacks.poll_interval_ms = 3_600_000;
    adjust(&mut settings);
    let app = Application::build(settings)
        .await
        .expect("building the application");
    let address = format!("http://127.0.0.1:{}", app.port());
    let pool = app.pool().clone();
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    let client = uipath_gateway::orchestrator::http::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestApp {
        address,
        pool,
        client,
        state,
    }
}

/// Logs go to the test output only when `TEST_LOG` is set.
fn init_test_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        let s = Settings {
            log_level: "debug,sqlx=warn".into(),
            ..Default::default()
        };
        uipath_gateway::telemetry::init(&s);
    }
}

/// A temporary directory that the cluster's user can reach, removed on drop.
pub fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("ugw-test-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

/// A cluster of its own, for tests that stop and start the database.
pub struct PrivateCluster {
    pub cluster: Cluster,
    pub port: u16,
    password: SecretString,
    _dir: tempfile::TempDir,
}

impl PrivateCluster {
    pub fn start() -> Self {
        let dir = data_dir();
        let bins = PgBinaries::find(None).expect(embedded_db::HOW_TO_INSTALL);
        let cluster = Cluster::new(bins, dir.path().join("pg"), "postgres").unwrap();
        let password = embedded_db::write_new_password(&dir.path().join("pw")).unwrap();
        cluster
            .init(
                embedded_db::SUPERUSER,
                &password,
                false,
                &[("fsync", "off")],
            )
            .unwrap();
        let port = embedded_db::start_on_free_port(&cluster).unwrap();
        Self {
            cluster,
            port,
            password,
            _dir: dir,
        }
    }

    pub fn url(&self, database: &str) -> SecretString {
        SecretString::from(format!(
            "postgres://{}:{}@127.0.0.1:{}/{database}",
            embedded_db::SUPERUSER,
            self.password.expose_secret(),
            self.port
        ))
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self.cluster.stop();
    }
}

/// The real `uipath-gateway` binary running as a child process.
pub struct GatewayProcess {
    pub child: Child,
    pub port: u16,
}

pub fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uipath-gateway"));
    cmd.env_remove("DATABASE_URL")
        .env("GATEWAY_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Every log line a gateway process wrote (stdout and stderr).
pub type Logs = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

impl GatewayProcess {
    /// Starts `serve` on a random port with the given data directory, and waits for
    /// its "listening" log line.
    pub async fn serve(data_dir: &Path) -> Self {
        Self::serve_with(
            &[
                ("GATEWAY_PORT", "0".into()),
                ("GATEWAY_DATA_DIR", data_dir.display().to_string()),
            ],
            None,
        )
        .await
    }

    /// Starts `serve` with these environment variables, keeping its log lines in `logs`.
    pub async fn serve_with(env: &[(&str, String)], logs: Option<Logs>) -> Self {
        let mut cmd = binary();
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning the gateway");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (port_tx, mut port_rx) = mpsc::unbounded_channel();
        let (out_logs, err_logs) = (logs.clone(), logs);
        tokio::spawn(async move {
            let mut lines = stdout.lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(l) = &out_logs {
                    l.lock().unwrap().push(line.clone());
                }
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "listening"
                {
                    let _ = port_tx.send(v["port"].as_u64().unwrap() as u16);
                }
            }
        });
        tokio::spawn(async move {
            let mut lines = stderr.lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("gateway stderr: {line}");
                if let Some(l) = &err_logs {
                    l.lock().unwrap().push(line);
                }
            }
        });
        let port = tokio::time::timeout(Duration::from_secs(60), port_rx.recv())
            .await
            .expect("the gateway did not start listening within 60 s")
            .expect("the gateway exited before listening");
        Self { child, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sends a signal and waits for the process to exit.
    pub async fn signal(mut self, signal: nix::sys::signal::Signal) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id().unwrap() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("the gateway did not exit within 60 s")
            .unwrap()
    }
}

/// The cluster directory of an embedded gateway's data directory.
pub fn embedded_cluster_dir(data_dir: &Path) -> PathBuf {
    uipath_gateway::embedded_db::cluster_dir(data_dir)
}

/// The commands of `docs/<file>`: every ```sh block, without `export NAME=` lines.
pub fn guide_commands(file: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut out = format!("# --- {file}\n");
    let mut inside = false;
    for line in text.lines() {
        match (inside, line.trim_start()) {
            (false, "```sh") => inside = true,
            (true, "```") => inside = false,
            (true, l) if l.starts_with("export ") && l.contains('=') => {}
            (true, _) => {
                out.push_str(line);
                out.push('\n');
            }
            _ => {}
        }
    }
    assert!(!inside, "{file}: an unclosed ```sh block");
    out
}
