//! What many tests set up the same way, through the admin API: a connection to the
//! simulator of each kind, the `Invoices` process with an API key (and a token webhook),
//! a `/run` of it, and a bounded wait for state where there is no event to await.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use uipath_gateway::config::Settings;

use super::sim::{CLOUD, Sim};
use super::{ADMIN_TOKEN, SendJson, TestApp, spawn_app_on};

pub const PAT: &str = "rt_5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e-1";

/// The body creating a connection of `kind` to the simulator.
pub fn input(sim: &Sim, kind: &str, name: &str) -> Value {
    match kind {
        "client_credentials" => json!({
            "name": name, "kind": kind, "organization": "demo-org", "tenant": "DefaultTenant",
            "orchestrator_url": sim.url(CLOUD), "token_url": sim.url("/identity_/connect/token"),
            "client_id": "sim-app", "client_secret": "sim-app-secret",
            "scopes": ["OR.Folders.Read", "OR.Execution.Read", "OR.Jobs"],
        }),
        "refresh_token" => json!({
            "name": name, "kind": kind, "organization": "demo-org", "tenant": "DefaultTenant",
            "orchestrator_url": sim.url(CLOUD), "token_url": sim.url("/demo-org/identity_/connect/token"),
            "client_id": "sim-app", "client_secret": "sim-app-secret", "refresh_token": "sim-refresh-token-0",
        }),
        "pat" => json!({
            "name": name, "kind": kind, "orchestrator_url": sim.url(CLOUD), "token": PAT,
            "expires_at": (chrono::Utc::now() + chrono::Duration::days(5)).to_rfc3339(),
        }),
        "password" => json!({
            "name": name, "kind": kind, "host": sim.url(""), "tenancy_name": "Default",
            "username": "admin", "password": "sim-password",
        }),
        "user_key" => json!({
            "name": name, "kind": kind, "user_key": "sim-user-key",
            "token_url": sim.url("/oauth/token"), "discovery_url": sim.url(""),
        }),
        _ => unreachable!(),
    }
}

pub async fn create(app: &TestApp, body: &Value) -> Value {
    let res = app
        .admin(Method::POST, "/connections")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, 201, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// Waits (bounded) until `check` holds, looking again every 100 ms. For state in another
/// process or in the database, where there is no event to wait on.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The objects every test here uses, created through the admin API at `base`:
/// connection `sim`, process `Invoices`, an API key, and a token webhook `crm`.
pub async fn provision(http: &reqwest::Client, base: &str, sim: &Sim, kind: &str) -> String {
    let admin = |m: Method, p: &str| {
        http.request(m, format!("{base}{p}"))
            .bearer_auth(ADMIN_TOKEN)
    };
    let res = admin(Method::POST, "/connections")
        .json(&crate::helpers::setup::input(sim, kind, "sim"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let res = admin(Method::POST, "/processes")
        .json(
            &json!({"name": "Invoices", "connection": "sim", "folder": "Finance/AP",
            "release": {"process_key": "InvoiceBot"}, "max_wait_seconds": 30}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let res = admin(Method::POST, "/webhooks")
        .json(
            &json!({"slug": "crm", "process": "Invoices", "scheme": "token",
            "config": {"header": "x-crm-token"}, "secrets": [HOOK_TOKEN],
            "mapping": {"in_Vendor": "body.vendor", "in_Amount": "body.amount"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let key: Value = admin(Method::POST, "/api-keys")
        .json(&json!({"name": "load", "scopes": ["run:*", "jobs:read"]}))
        .send_json()
        .await;
    key["key"].as_str().unwrap().to_string()
}

pub const HOOK_TOKEN: &str = "crm-hook-token-5f1c2a";

pub const SECRET: &str = "hook-secret-0123";

/// A gateway (settings adjusted) with connection `sim` and process `Invoices`, and an API key.
pub async fn setup_on(
    sim: &Sim,
    url: secrecy::SecretString,
    adjust: impl FnOnce(&mut Settings),
) -> (TestApp, String) {
    let app = spawn_app_on(url, adjust).await;
    let mut conn = input(sim, "client_credentials", "sim");
    conn["webhook_secret"] = SECRET.into();
    conn["scopes"] = json!([
        "OR.Folders.Read",
        "OR.Execution.Read",
        "OR.Jobs",
        "OR.Webhooks",
        "OR.Queues"
    ]);
    create(&app, &conn).await;
    let body = json!({"name": "Invoices", "connection": "sim", "folder": "Finance/AP",
        "release": {"process_key": "InvoiceBot"}, "max_wait_seconds": 30});
    process(&app, body).await;
    let key = api_key(&app, "k", json!(["run:*", "jobs:read"])).await;
    (app, key)
}

pub async fn run(app: &TestApp, key: &str, query: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/run/Invoices{query}")))
        .bearer_auth(key)
        .json(&json!({"in_Vendor": "ACME", "in_Amount": 2}))
        .send()
        .await
        .unwrap()
}

/// Creates an API key named `name` with `scopes`; the key (shown once).
pub async fn api_key(app: &TestApp, name: &str, scopes: Value) -> String {
    let res = app
        .admin(Method::POST, "/api-keys")
        .json(&json!({"name": name, "scopes": scopes}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    created["key"].as_str().unwrap().to_string()
}

/// Creates a process from `body`; the process as answered (201).
pub async fn process(app: &TestApp, body: Value) -> Value {
    let res = app
        .admin(Method::POST, "/processes")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, 201, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// `GET /jobs/{id}` with `key`: the job, with its timeline and callbacks.
pub async fn get_job(app: &TestApp, key: &str, id: &str) -> Value {
    app.client
        .get(app.url(&format!("/jobs/{id}")))
        .bearer_auth(key)
        .send_json()
        .await
}

/// One field (`state`, `source`) of each entry of a job's timeline, in order.
pub fn timeline<'a>(job: &'a Value, field: &str) -> Vec<&'a str> {
    job["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[field].as_str().unwrap())
        .collect()
}
