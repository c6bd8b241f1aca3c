//! The database behind the tests.
//!
//! With `DATABASE_URL` set, each test gets a fresh database on that server.
//! Without it, one throwaway cluster serves the whole run, however many test
//! processes there are (nextest runs one per test): a control lock serialises
//! starting and stopping, every live test process holds a shared "users" lock,
//! and at exit the process that can upgrade that lock to exclusive is the last
//! one, so it stops the cluster and removes its directory.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::OnceLock;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use uipath_gateway::embedded_db::{self, Cluster, PgBinaries};

/// Where to reach the server that holds the test databases.
pub struct Server {
    base: PgConnectOptions,
    url_prefix: SecretString,
}

struct Shared {
    dir: PathBuf,
    cluster: Cluster,
    users: File,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static SHARED: OnceLock<Shared> = OnceLock::new();

/// The server, started on first use. Blocks for about a second the first time.
pub fn server() -> &'static Server {
    SERVER.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) => {
            let base: PgConnectOptions = url.parse().expect("DATABASE_URL is a PostgreSQL URL");
            let mut prefix = url.clone();
            if let Some(i) = prefix.rfind('/').filter(|i| *i > "postgres://".len()) {
                prefix.truncate(i);
            }
            Server {
                base,
                url_prefix: SecretString::from(prefix),
            }
        }
        Err(_) => shared_cluster(),
    })
}

impl Server {
    /// Creates an empty database with a unique name and returns its URL.
    pub async fn fresh_database(&self) -> (String, SecretString) {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = self
            .base
            .clone()
            .database("postgres")
            .connect()
            .await
            .expect("connecting to the test PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
            .execute(&mut conn)
            .await
            .expect("creating a test database");
        conn.close().await.ok();
        let url = format!("{}/{name}", self.url_prefix.expose_secret());
        (name, SecretString::from(url))
    }
}

fn shared_cluster() -> Server {
    let root_user = nix::unistd::Uid::effective().is_root();
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        env!("CARGO_MANIFEST_DIR").hash(&mut h);
        h.finish()
    };
    let dir = std::env::temp_dir().join(format!("uipath-gateway-test-pg-{key:016x}"));
    let ctl = loop {
        std::fs::create_dir_all(&dir).expect("creating the test cluster directory");
        if root_user {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
        }
        let Ok(ctl) = File::create(dir.join("ctl.lock")) else {
            continue;
        };
        ctl.lock().expect("taking the test cluster's control lock");
        // The last process of a previous run may have removed the directory while we waited.
        let same = std::fs::metadata(dir.join("ctl.lock"))
            .is_ok_and(|m| ctl.metadata().is_ok_and(|c| c.ino() == m.ino()));
        if same {
            break ctl;
        }
    };
    let users = File::create(dir.join("users.lock")).unwrap();
    users
        .lock_shared()
        .expect("registering as a user of the test cluster");

    let bins = PgBinaries::find(None).expect(embedded_db::HOW_TO_INSTALL);
    let cluster =
        Cluster::new(bins, dir.join("pg"), "postgres").expect("preparing the test cluster");
    let pw_file = dir.join("password");
    let password = match std::fs::read_to_string(&pw_file) {
        Ok(pw) if cluster.is_initialized() => SecretString::from(pw.trim().to_string()),
        _ => {
            let pw = embedded_db::write_new_password(&pw_file).unwrap();
            let conf = [
                ("fsync", "off"),
                ("synchronous_commit", "off"),
                ("full_page_writes", "off"),
                ("max_connections", "500"),
            ];
            cluster
                .init(embedded_db::SUPERUSER, &pw, false, &conf)
                .expect("initdb for the tests");
            pw
        }
    };
    let port = match cluster.running_port() {
        Some(p) if std::net::TcpStream::connect(("127.0.0.1", p)).is_ok() => p,
        _ => embedded_db::start_on_free_port(&cluster).expect("starting the test cluster"),
    };
    drop(ctl);
    let _ = SHARED.set(Shared {
        dir,
        cluster,
        users,
    });
    // SAFETY: registering a plain `extern "C"` function with the C runtime.
    unsafe { nix::libc::atexit(stop_if_last) };

    let base = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username(embedded_db::SUPERUSER)
        .password(password.expose_secret());
    let prefix = format!(
        "postgres://{}:{}@127.0.0.1:{port}",
        embedded_db::SUPERUSER,
        password.expose_secret()
    );
    Server {
        base,
        url_prefix: SecretString::from(prefix),
    }
}

extern "C" fn stop_if_last() {
    let _ = std::panic::catch_unwind(|| {
        let Some(shared) = SHARED.get() else { return };
        let Ok(ctl) = File::create(shared.dir.join("ctl.lock")) else {
            return;
        };
        if ctl.lock().is_err() {
            return;
        }
        // Upgrading our shared lock succeeds only if no other test process holds one.
        if shared.users.try_lock().is_ok() {
            let _ = shared.cluster.stop();
            let _ = std::fs::remove_dir_all(&shared.dir);
        }
    });
}
