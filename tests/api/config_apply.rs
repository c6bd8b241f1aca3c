//! Connections and processes declared in the config file are applied at start, and
//! applying them again changes nothing.

use reqwest::Method;
use serde_json::Value;
use uipath_gateway::config::Settings;
use uipath_gateway::crypto::KeyRing;

use crate::helpers::SendJson;
use crate::helpers::db;
use crate::helpers::sim::{CLOUD, spawn_sim};
use crate::helpers::spawn_app_on;

#[tokio::test]
async fn declared_objects_are_applied_idempotently_at_start() {
    let sim = spawn_sim(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    let toml = format!(
        r#"
[[connections]]
name = "sim"
kind = "refresh_token"
orchestrator_url = "{orch}"
token_url = "{token}"
client_id = "sim-app"
client_secret = "sim-app-secret"
refresh_token = "sim-refresh-token-0"

[[processes]]
name = "Invoices"
connection = "sim"
folder = "Finance/AP"
release = {{ process_key = "InvoiceBot" }}
default_input = {{ in_Urgent = false }}

[[processes]]
name = "Orders"
connection = "sim"
folder = "Shared"
release = {{ name = "OrderSync" }}

[[queues]]
name = "InvoicesToBook"
connection = "sim"
folder = "Finance/AP"
queue = "InvoicesToBook"
priority = "High"

[[webhooks]]
slug = "declared-hook"
process = "Invoices"
scheme = "token"
config = {{ header = "x-hook-token" }}
secrets = ["declared-hook-token"]
mapping = {{ in_Vendor = "body.vendor", in_Amount = "body.amount" }}
"#,
        orch = sim.url(CLOUD),
        token = sim.url("/identity_/connect/token"),
    );
    std::fs::write(&file, toml).unwrap();
    let declared = Settings::load(Some(&file)).unwrap();
    let (_, url) = db::server().fresh_database().await;
    let keys = KeyRing::generate_spec("k");
    let with_file = |s: &mut Settings| {
        s.connections = declared.connections.clone();
        s.processes = declared.processes.clone();
        s.queues = declared.queues.clone();
        s.webhooks = declared.webhooks.clone();
        s.encryption_keys = Some(keys.clone());
    };

    let first = spawn_app_on(url.clone(), with_file).await;
    let processes = first.admin_get("/processes").await;
    let names: Vec<&str> = processes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Invoices", "Orders"],
        "queue mappings are not processes"
    );
    let queues = first.admin_get("/queue-mappings").await;
    assert_eq!(queues["items"][0]["name"], "InvoicesToBook", "{queues}");
    assert_eq!(queues["items"][0]["priority"], "High");
    // Checked against Orchestrator when applied: this connection's token lacks OR.Queues,
    // so the mapping is stored, unverified, with a warning that says why (the start goes on).
    assert_eq!(queues["items"][0]["unverified"], true, "{queues}");
    assert!(
        queues["items"][0]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("OR.Queues"),
        "{queues}"
    );
    let conns = first.admin_get("/connections").await;
    let id = conns["items"][0]["id"].as_str().unwrap().to_string();
    let test: Value = first
        .admin(Method::POST, &format!("/connections/{id}/test"))
        .send_json()
        .await;
    assert_eq!(
        test["ok"], true,
        "the declared refresh token worked and rotated: {test}"
    );

    // A restart with the same file: nothing duplicated, and the rotated refresh token
    // is kept (the file's first token is spent; using it again would fail).
    let second = spawn_app_on(url, with_file).await;
    let conns = second.admin_get("/connections").await;
    assert_eq!(conns["items"].as_array().unwrap().len(), 1);
    assert_eq!(conns["items"][0]["id"], id.as_str());
    sim.control(Method::POST, "/tokens/expire", None).await;
    let test: Value = second
        .admin(Method::POST, &format!("/connections/{id}/test"))
        .send_json()
        .await;
    assert_eq!(test["ok"], true, "{test}");
    let processes = second.admin_get("/processes").await;
    assert_eq!(processes["items"].as_array().unwrap().len(), 2);

    // The first start recorded what it created; the second, which changed nothing, nothing.
    let audit = second.admin_get("/audit?actor=config-file").await;
    let actions: Vec<String> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["action"].as_str().unwrap(),
                e["object_type"].as_str().unwrap(),
                e["object_key"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            "create webhook declared-hook".to_string(),
            "create queue InvoicesToBook".into(),
            "create process Orders".into(),
            "create process Invoices".into(),
            format!("create connection {id}"),
        ]
    );
    assert!(!audit.to_string().contains("sim-app-secret"));
    assert!(!audit.to_string().contains("declared-hook-token"));

    // The declared webhook survived the second apply with its secret, and works.
    let hooks = second.admin_get("/webhooks").await;
    assert_eq!(hooks["items"].as_array().unwrap().len(), 1, "{hooks}");
    assert!(!hooks.to_string().contains("declared-hook-token"));
    let refused = second
        .client
        .post(second.url("/hooks/declared-hook"))
        .header("x-hook-token", "wrong")
        .json(&serde_json::json!({"vendor": "ACME", "amount": 12.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let accepted = second
        .client
        .post(second.url("/hooks/declared-hook"))
        .header("x-hook-token", "declared-hook-token")
        .json(&serde_json::json!({"vendor": "ACME", "amount": 12.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let receipt: Value = accepted.json().await.unwrap();
    let delivery: Value = second
        .admin(
            Method::GET,
            &format!(
                "/webhooks/declared-hook/deliveries/{}",
                receipt["delivery_id"].as_str().unwrap()
            ),
        )
        .send_json()
        .await;
    assert_eq!(delivery["job_id"], receipt["job_id"], "{delivery}");
    assert_eq!(delivery["mapped_input"]["in_Vendor"], "ACME", "{delivery}");
}

#[tokio::test]
async fn an_invalid_declared_object_stops_the_start_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, "[[processes]]\nname = \"X\"\nconnection = \"nope\"\nfolder = \"Shared\"\nrelease = { name = \"Y\" }\n").unwrap();
    let out = crate::helpers::binary()
        .env("GATEWAY_DATA_DIR", dir.path().join("data"))
        .env("GATEWAY_PORT", "0")
        .args(["--config", file.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("processes[0] (X)") && stderr.contains("no connection named `nope`"),
        "{stderr}"
    );
}

#[tokio::test]
async fn declared_processes_orchestrator_disowns_or_cannot_check_start_unverified_with_warnings() {
    let sim = spawn_sim(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    // A port nothing listens on: Orchestrator cannot be asked.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let offline = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let toml = format!(
        r#"
[[connections]]
name = "sim"
kind = "pat"
orchestrator_url = "{orch}"
token = "{pat}"

[[connections]]
name = "offline"
kind = "pat"
orchestrator_url = "{offline}/acme/DefaultTenant/orchestrator_"
token = "{pat}"

[[processes]]
name = "Ghost"
connection = "sim"
folder = "Shared"
release = {{ process_key = "Ghost" }}

[[processes]]
name = "Elsewhere"
connection = "offline"
folder = "Shared"
release = {{ process_key = "OrderSync" }}

[[processes]]
name = "Orders"
connection = "sim"
folder = "Shared"
release = {{ name = "OrderSync" }}
"#,
        orch = sim.url(CLOUD),
        pat = crate::helpers::setup::PAT,
    );
    std::fs::write(&file, toml).unwrap();
    let declared = Settings::load(Some(&file)).unwrap();
    let (_, url) = db::server().fresh_database().await;
    let app = spawn_app_on(url, |s| {
        s.connections = declared.connections.clone();
        s.processes = declared.processes.clone();
    })
    .await;
    let ghost = app.admin_get("/processes/Ghost").await;
    assert_eq!(ghost["unverified"], true, "{ghost}");
    assert!(
        ghost["warnings"][0]
            .as_str()
            .unwrap()
            .contains("release.process_key"),
        "{ghost}"
    );
    let elsewhere = app.admin_get("/processes/Elsewhere").await;
    assert_eq!(elsewhere["unverified"], true, "{elsewhere}");
    assert!(
        elsewhere["warnings"][0]
            .as_str()
            .unwrap()
            .contains("could not be asked"),
        "{elsewhere}"
    );
    let orders = app.admin_get("/processes/Orders").await;
    assert_eq!(orders["unverified"], false, "{orders}");
    assert!(orders["release_key"].is_string());
}

#[tokio::test]
async fn api_keys_declared_by_hash_or_key_file_work_and_apply_idempotently() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let from_file = "ugw_declared_from_a_file_0123456789";
    let by_hash = "ugw_declared_by_its_hash_abcdefghij";
    std::fs::write(dir.path().join("erp-key"), format!("{from_file}\n")).unwrap();
    let file = dir.path().join("gateway.toml");
    let toml = format!(
        r#"
[[api_keys]]
name = "erp"
scopes = ["jobs:read"]
key_file = "{}"

[[api_keys]]
name = "crm"
scopes = ["run:*", "jobs:read"]
key_sha256 = "{}"
"#,
        dir.path().join("erp-key").display(),
        hex::encode(sha2::Sha256::digest(by_hash.as_bytes()))
    );
    std::fs::write(&file, toml).unwrap();
    let declared = Settings::load(Some(&file)).unwrap();
    let (_, url) = db::server().fresh_database().await;
    let keys = KeyRing::generate_spec("k");
    let with_file = |s: &mut Settings| {
        s.api_keys = declared.api_keys.clone();
        s.encryption_keys = Some(keys.clone());
    };
    let app = spawn_app_on(url.clone(), with_file).await;
    for key in [from_file, by_hash] {
        let res = app
            .client
            .get(app.url("/jobs"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{key}");
    }
    let listed = app.admin_get("/api-keys").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
    assert!(
        !listed.to_string().contains(from_file),
        "the key is never shown"
    );
    // Applied again: nothing changes, nothing is doubled.
    let again = spawn_app_on(url, with_file).await;
    let listed = again.admin_get("/api-keys").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    let audit = again.admin_get("/audit?actor=config-file").await;
    let creates = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["object_type"] == "api_key")
        .count();
    assert_eq!(creates, 2);

    // A declaration without a key is refused at start, with its position.
    std::fs::write(
        &file,
        "[[api_keys]]\nname = \"x\"\nscopes = [\"jobs:read\"]\n",
    )
    .unwrap();
    let bad = Settings::load(Some(&file)).unwrap();
    let (_, url) = db::server().fresh_database().await;
    let err = uipath_gateway::startup::Application::build(Settings {
        database_url: Some(url),
        encryption_keys: Some(KeyRing::generate_spec("k")),
        port: 0,
        api_keys: bad.api_keys,
        ..Default::default()
    })
    .await
    .err()
    .expect("the start fails");
    assert!(
        format!("{err:#}").contains("api_keys[0] (x): key_sha256"),
        "{err:#}"
    );
}
