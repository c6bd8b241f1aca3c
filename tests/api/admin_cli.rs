//! The admin CLI round-trips every kind of object against a running gateway.

use serde_json::{Value, json};

use crate::helpers::setup::{input, setup_on};
use crate::helpers::sim::spawn_sim;
use crate::helpers::{ADMIN_TOKEN, TestApp, binary, db};

/// Runs `uipath-gateway ARGS` against `app`; (exit code, stdout, stderr).
async fn cli(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let out = binary()
        .args(args)
        .env("GATEWAY", &app.address)
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn ok(app: &TestApp, args: &[&str]) -> String {
    let (code, out, err) = cli(app, args).await;
    assert_eq!(code, 0, "{args:?}: {err}\n{out}");
    out
}

fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn the_cli_lists_adds_replaces_tests_and_removes_every_kind_of_object() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    let (app, _) = setup_on(&sim, url, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();

    // Connections: a table, a test, and a second one added from JSON and removed.
    let table = ok(&app, &["connections", "list"]).await;
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("sim ")), "{table}");
    let tested = ok(&app, &["connections", "test", "sim"]).await;
    assert!(tested.contains("\"ok\": true"), "{tested}");
    let other = input(&sim, "client_credentials", "second");
    let path = file(&dir, "conn.json", &other.to_string());
    ok(&app, &["connections", "add", &path]).await;
    let listed: Value =
        serde_json::from_str(&ok(&app, &["connections", "list", "--json"]).await).unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    ok(&app, &["connections", "remove", "second"]).await;

    // Processes: added from TOML, replaced from JSON, removed.
    let toml = "name = \"Orders\"\nconnection = \"sim\"\nfolder = \"Shared\"\nrelease = { process_key = \"OrderSync\" }\n";
    ok(
        &app,
        &["processes", "add", &file(&dir, "orders.toml", toml)],
    )
    .await;
    let replaced = json!({"name": "Orders", "connection": "sim", "folder": "Shared",
        "release": {"process_key": "OrderSync"}, "max_wait_seconds": 5});
    let out = ok(
        &app,
        &[
            "processes",
            "replace",
            "Orders",
            &file(&dir, "orders.json", &replaced.to_string()),
        ],
    )
    .await;
    assert!(out.contains("\"max_wait_seconds\": 5"), "{out}");
    let got: Value =
        serde_json::from_str(&ok(&app, &["processes", "get", "Orders"]).await).unwrap();
    assert_eq!(got["max_wait_seconds"], 5);

    // Queue mappings.
    let queue = json!({"name": "Leads", "connection": "sim", "folder": "Shared", "queue": "Leads"});
    ok(
        &app,
        &["queues", "add", &file(&dir, "q.json", &queue.to_string())],
    )
    .await;
    let table = ok(&app, &["queues", "list"]).await;
    assert!(table.lines().any(|l| l.starts_with("Leads ")), "{table}");

    // Webhooks, targeting the process.
    let hook = json!({"slug": "cli-hook", "process": "Orders", "scheme": "token",
        "secrets": ["cli-hook-token-0123"], "config": {"header": "X-Token"}});
    ok(
        &app,
        &[
            "webhooks",
            "add",
            &file(&dir, "hook.json", &hook.to_string()),
        ],
    )
    .await;
    let table = ok(&app, &["webhooks", "list"]).await;
    assert!(table.contains("cli-hook"), "{table}");
    assert!(
        !table.contains("cli-hook-token-0123"),
        "no secret in the table"
    );
    // A process a webhook targets cannot go: the API's problem, in one line, exit 1.
    let (code, _, err) = cli(&app, &["processes", "remove", "Orders"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("409") && err.contains("process_in_use"),
        "{err}"
    );
    ok(&app, &["webhooks", "remove", "cli-hook"]).await;
    ok(&app, &["processes", "remove", "Orders"]).await;
    ok(&app, &["queues", "remove", "Leads"]).await;

    // API keys: the key is shown once, on add; revoked by name.
    let made: Value = serde_json::from_str(
        &ok(
            &app,
            &[
                "api-keys",
                "add",
                &file(
                    &dir,
                    "key.json",
                    r#"{"name": "erp", "scopes": ["jobs:read"]}"#,
                ),
            ],
        )
        .await,
    )
    .unwrap();
    assert!(made["key"].as_str().unwrap().starts_with("ugw_"));
    let table = ok(&app, &["api-keys", "list"]).await;
    assert!(table.lines().any(|l| l.starts_with("erp ")), "{table}");
    ok(&app, &["api-keys", "remove", "erp"]).await;
    // A key is shown once: the CLI offers no way to show or replace one, nor to "test" it.
    for verb in ["get", "replace", "test"] {
        let (code, _, err) = cli(&app, &["api-keys", verb, "erp"]).await;
        assert_eq!(code, 2, "api-keys {verb}: {err}");
    }

    // What is not there, or a bad token, is said plainly.
    let (code, _, err) = cli(&app, &["processes", "get", "Nope"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("no processes named `Nope`"), "{err}");
    let out = binary()
        .args(["processes", "list"])
        .env("GATEWAY", &app.address)
        .env("ADMIN_TOKEN", "wrong-token-wrong-token")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}
