//! The private PostgreSQL cluster `serve` runs when no `DATABASE_URL` is given.
//!
//! Layout of the data directory:
//! - `postgres/`: the cluster (owned by the unprivileged user when we run as root);
//! - `postgres.password`: the generated superuser password (mode 0600);
//! - `gateway.lock`: held while a gateway uses the directory.

mod binaries;
mod cluster;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

pub use binaries::{HOW_TO_INSTALL, PgBinaries};
pub use cluster::{Cluster, free_port, process_alive};

use crate::config::EmbeddedSettings;

/// The superuser created in the embedded cluster.
pub const SUPERUSER: &str = "gateway";
/// The database the gateway uses in the embedded cluster.
pub const DATABASE: &str = "uipath_gateway";

/// A running embedded cluster, held for the life of the gateway.
pub struct EmbeddedPostgres {
    cluster: Cluster,
    port: u16,
    password: SecretString,
    _lock: File,
}

impl EmbeddedPostgres {
    /// Starts (initialising on first use) the cluster in `data_dir`, or adopts one
    /// left running by a gateway that was killed. Blocking: call from `spawn_blocking`.
    pub fn start(
        data_dir: &Path,
        pg_bin: Option<&Path>,
        settings: &EmbeddedSettings,
    ) -> anyhow::Result<Self> {
        let bins = PgBinaries::find(pg_bin)?;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
        let data_dir = std::fs::canonicalize(data_dir)?;
        let lock = lock_data_dir(&data_dir)?;
        let mut cluster = Cluster::new(bins.clone(), data_dir.join("postgres"), &settings.run_as)?;
        if nix::unistd::Uid::effective().is_root() {
            // The server's user must be able to traverse into the data directory.
            let mode = std::fs::metadata(&data_dir)?.permissions().mode();
            std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(mode | 0o011))?;
            if cluster.check_reachable().is_err() {
                // A directory above it is closed to that user (root's home is 0700 in most
                // containers and VMs): the cluster lives where the user can reach it.
                let elsewhere = reachable_home(&data_dir)?;
                cluster = Cluster::new(bins, elsewhere.join("postgres"), &settings.run_as)?;
                tracing::warn!(
                    cluster = %cluster.dir().display(),
                    data_dir = %data_dir.display(),
                    "the PostgreSQL user cannot reach the data directory, so the embedded cluster \
                     lives elsewhere (its password and lock stay in the data directory)"
                );
            }
        }
        cluster.check_reachable()?;
        let password_file = data_dir.join("postgres.password");
        let password = if cluster.is_initialized() {
            read_password(&password_file)?
        } else {
            let password = write_new_password(&password_file)?;
            tracing::info!(dir = %cluster.dir().display(), "initialising a new PostgreSQL cluster");
            cluster.init(SUPERUSER, &password, true, &[])?;
            password
        };
        let port = match cluster.running_port() {
            Some(port) if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() => {
                tracing::info!(
                    port,
                    "adopting the PostgreSQL server left running by an earlier gateway"
                );
                port
            }
            stale => {
                if stale.is_some() {
                    cluster.stop()?;
                }
                start_on_free_port(&cluster)?
            }
        };
        tracing::info!(port, dir = %cluster.dir().display(), "embedded PostgreSQL is running");
        Ok(Self {
            cluster,
            port,
            password,
            _lock: lock,
        })
    }

    /// Creates the gateway's database if it does not exist, and returns its URL.
    pub async fn ensure_database(&self) -> anyhow::Result<SecretString> {
        let mut conn = self
            .options("postgres")
            .connect()
            .await
            .context("connecting to the embedded PostgreSQL")?;
        let exists: bool =
            sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
                .bind(DATABASE)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            // A constant identifier, not user input.
            sqlx::query(concat!("create database ", "uipath_gateway"))
                .execute(&mut conn)
                .await?;
        }
        conn.close().await?;
        Ok(self.url(DATABASE))
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection options for one database of the cluster.
    pub fn options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(SUPERUSER)
            .password(self.password.expose_secret())
            .database(database)
    }

    /// A `postgres://` URL for one database of the cluster. It holds the password.
    pub fn url(&self, database: &str) -> SecretString {
        SecretString::from(format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password.expose_secret(),
            self.port
        ))
    }

    /// Stops the server. Blocking.
    pub fn stop(self) -> anyhow::Result<()> {
        self.cluster.stop()?;
        tracing::info!("embedded PostgreSQL stopped");
        Ok(())
    }
}

/// Starts the cluster on a free port, trying another port if one is taken meanwhile.
pub fn start_on_free_port(cluster: &Cluster) -> anyhow::Result<u16> {
    let mut last = None;
    for _ in 0..3 {
        let port = free_port()?;
        match cluster.start(port) {
            Ok(()) => return Ok(port),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

fn lock_data_dir(data_dir: &Path) -> anyhow::Result<File> {
    let path = data_dir.join("gateway.lock");
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another uipath-gateway is already using the data directory {}: stop it, or set \
             GATEWAY_DATA_DIR to another directory",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).context("locking the data directory"),
    }
}

fn read_password(path: &PathBuf) -> anyhow::Result<SecretString> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "the cluster exists but its password file {} cannot be read; restore it, or remove \
             the data directory to start afresh",
            path.display()
        )
    })?;
    Ok(SecretString::from(text.trim().to_string()))
}

/// Generates a random password and writes it with mode 0600.
pub fn write_new_password(path: &Path) -> anyhow::Result<SecretString> {
    let bytes: [u8; 24] = rand::rng().random();
    let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(path, &password)?;
    Ok(SecretString::from(password))
}

/// Writes `text` to `path`, readable by this user alone (mode 0600).
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Where the cluster of `data_dir` lives when the PostgreSQL user cannot reach
/// `data_dir`: `/var/lib/uipath-gateway/clusters/<hash of the data directory>`, made
/// traversable (0711) by root. The data directory records the place (`postgres.location`).
fn reachable_home(data_dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(
        data_dir.as_os_str().as_encoded_bytes(),
    ));
    let base = Path::new("/var/lib/uipath-gateway");
    let home = base.join("clusters").join(&hash[..16]);
    for dir in [base, &base.join("clusters"), &home] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
    }
    std::fs::write(
        data_dir.join("postgres.location"),
        format!("{}\n", home.join("postgres").display()),
    )?;
    Ok(home)
}

/// The cluster directory of a data directory: `<data_dir>/postgres`, or where
/// `postgres.location` says it was put (see `reachable_home`).
pub fn cluster_dir(data_dir: &Path) -> std::path::PathBuf {
    std::fs::read_to_string(data_dir.join("postgres.location"))
        .ok()
        .map(|p| std::path::PathBuf::from(p.trim()))
        .unwrap_or_else(|| data_dir.join("postgres"))
}
