//! `serve` without DATABASE_URL: the embedded cluster keeps data across
//! restarts and recovers from crashes on its own.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::sys::signal::Signal;
use sqlx::{Connection, PgConnection};

use crate::helpers::{GatewayProcess, data_dir, embedded_cluster_dir};

/// Connects to the embedded database the way an operator would, with the
/// generated password and the port from `postmaster.pid`.
async fn connect(data: &Path) -> PgConnection {
    let password = std::fs::read_to_string(data.join("postgres.password")).unwrap();
    let pid_file =
        std::fs::read_to_string(embedded_cluster_dir(data).join("postmaster.pid")).unwrap();
    let port = pid_file.lines().nth(3).unwrap().trim();
    let url = format!(
        "postgres://gateway:{}@127.0.0.1:{port}/uipath_gateway",
        password.trim()
    );
    PgConnection::connect(&url).await.unwrap()
}

fn postmaster_pid(data: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(embedded_cluster_dir(data).join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    uipath_gateway::embedded_db::process_alive(pid)
}

async fn ready(gw: &GatewayProcess) -> u16 {
    uipath_gateway::orchestrator::http::builder()
        .build()
        .unwrap()
        .get(gw.url("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn marker(data: &Path) -> Vec<i32> {
    let mut conn = connect(data).await;
    sqlx::query_scalar("select x from marker order by x")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn embedded_cluster_keeps_data_across_restarts_and_crashes() {
    let dir = data_dir();
    let data = dir.path();

    // First start: initialises the cluster.
    let gw = GatewayProcess::serve(data).await;
    assert_eq!(ready(&gw).await, 200);
    let mut conn = connect(data).await;
    sqlx::query("create table marker (x int)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("insert into marker values (1)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let secret = std::fs::metadata(data.join("postgres.password")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&secret.permissions()) & 0o777,
        0o600
    );

    // A clean stop stops the cluster too.
    let pid = postmaster_pid(data).unwrap();
    let status = gw.signal(Signal::SIGTERM).await;
    assert!(status.success(), "{status}");
    // `pg_ctl stop -w` returns when the server removed its pid file, at the very end of
    // its shutdown; the process itself may need a few more milliseconds to exit.
    let mut gone = false;
    for _ in 0..500 {
        if !alive(pid) {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(gone, "SIGTERM stops the embedded PostgreSQL");

    // Second start: same data.
    let gw = GatewayProcess::serve(data).await;
    assert_eq!(ready(&gw).await, 200);
    assert_eq!(marker(data).await, vec![1]);

    // kill -9 of the gateway leaves PostgreSQL running; the next start adopts it.
    let mut conn = connect(data).await;
    sqlx::query("insert into marker values (2)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    gw.signal(Signal::SIGKILL).await;
    let gw = GatewayProcess::serve(data).await;
    assert_eq!(ready(&gw).await, 200);
    assert_eq!(marker(data).await, vec![1, 2]);

    // kill -9 of both leaves a stale postmaster.pid; the next start recovers.
    let pid = postmaster_pid(data).unwrap();
    gw.signal(Signal::SIGKILL).await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let gw = GatewayProcess::serve(data).await;
    assert_eq!(ready(&gw).await, 200);
    assert_eq!(marker(data).await, vec![1, 2]);
    assert!(gw.signal(Signal::SIGTERM).await.success());
}

#[tokio::test]
async fn second_gateway_on_the_same_data_dir_is_refused() {
    let dir = data_dir();
    let first = GatewayProcess::serve(dir.path()).await;
    let out = crate::helpers::binary()
        .env("GATEWAY_PORT", "0")
        .env("GATEWAY_DATA_DIR", dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already using the data directory"));
    assert!(first.signal(Signal::SIGTERM).await.success());
}

#[tokio::test]
async fn as_root_a_data_directory_postgres_cannot_reach_still_starts() {
    if !nix::unistd::Uid::effective().is_root() {
        return; // Only root runs PostgreSQL as another user.
    }
    // A home directory closed to others (0700), as root's is in most containers.
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let data = home.path().join("clone").join(".uipath-gateway");
    let gw = GatewayProcess::serve(&data).await;
    assert_eq!(ready(&gw).await, 200);
    let cluster = embedded_cluster_dir(&data);
    assert!(
        cluster.starts_with("/var/lib/uipath-gateway/clusters"),
        "{}",
        cluster.display()
    );
    assert!(cluster.join("PG_VERSION").is_file());
    // The data itself is kept: a second start finds the same cluster.
    let mut conn = connect(&data).await;
    for sql in ["create table kept (x int)", "insert into kept values (7)"] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    drop(conn);
    assert!(gw.signal(Signal::SIGTERM).await.success());
    let gw = GatewayProcess::serve(&data).await;
    assert_eq!(ready(&gw).await, 200);
    let kept: i32 = sqlx::query_scalar("select x from kept")
        .fetch_one(&mut connect(&data).await)
        .await
        .unwrap();
    assert_eq!(kept, 7);
    assert!(gw.signal(Signal::SIGTERM).await.success());
    std::fs::remove_dir_all(cluster.parent().unwrap()).unwrap();
}
