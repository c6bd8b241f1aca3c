//! Rate limits per API key and per webhook, the audit log of admin changes, and the
//! Prometheus metrics.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::SendJson;
use crate::helpers::TestApp;
use crate::helpers::db;
use crate::helpers::setup::{run, setup_on};
use crate::helpers::sim::spawn_sim;

async fn token_hook(app: &TestApp, slug: &str, token: &str) {
    let res = app
        .admin(Method::POST, "/webhooks")
        .json(
            &json!({"slug": slug, "process": "Invoices", "scheme": "token",
            "config": {"header": "x-hook-token"}, "secrets": [token]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
}

async fn deliver(app: &TestApp, slug: &str, token: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/hooks/{slug}")))
        .header("x-hook-token", token)
        .json(&json!({"in_Vendor": "ACME", "in_Amount": 1}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn api_keys_and_webhooks_are_limited_each_on_its_own_and_health_never() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    let (app, key) = setup_on(&sim, url, |s| {
        s.rate_limits.api_key_per_second = 1;
        s.rate_limits.api_key_burst = 2;
        s.rate_limits.hook_per_second = 1;
        s.rate_limits.hook_burst = 1;
    })
    .await;
    let other: Value = app
        .admin(Method::POST, "/api-keys")
        .json(&json!({"name": "other", "scopes": ["jobs:read"]}))
        .send_json()
        .await;
    let other = other["key"].as_str().unwrap();

    let list = |k: String| {
        let app = &app;
        async move {
            app.client
                .get(app.url("/jobs"))
                .bearer_auth(k)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(list(key.clone()).await.status(), 200);
    assert_eq!(list(key.clone()).await.status(), 200);
    let limited = list(key.clone()).await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        limited.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = limited.json().await.unwrap();
    assert_eq!(problem["code"], "rate_limited");
    // /run with the same key is refused too, and nothing is recorded.
    assert_eq!(run(&app, &key, "").await.status(), 429);
    let jobs: i64 = sqlx::query_scalar("select count(*) from jobs")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 0);
    // Another key has its own allowance.
    assert_eq!(list(other.to_string()).await.status(), 200);
    // Health, readiness, metrics, the document and the docs are never limited.
    for _ in 0..10 {
        for path in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs/"] {
            assert_eq!(app.get(path).await.status(), 200, "{path}");
        }
    }

    token_hook(&app, "one", "token-one-0123").await;
    token_hook(&app, "two", "token-two-0123").await;
    let first = deliver(&app, "one", "token-one-0123").await;
    assert_eq!(first.status(), 202, "{}", first.text().await.unwrap());
    let limited = deliver(&app, "one", "token-one-0123").await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(deliver(&app, "two", "token-two-0123").await.status(), 202);
}

#[tokio::test]
async fn every_admin_change_is_in_the_audit_log_with_its_actor_and_no_secret() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    let (app, _) = setup_on(&sim, url, |_| {}).await;
    token_hook(&app, "audited", "audited-hook-token-1").await;
    let res = app
        .admin(Method::PUT, "/webhooks/audited")
        .json(&json!({"slug": "audited", "process": "Invoices", "scheme": "token",
            "config": {"header": "x-hook-token"}, "secrets": ["audited-hook-token-2"], "enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let secret: Value = app
        .admin(Method::POST, "/processes/Invoices/callback-secret")
        .send_json()
        .await;
    let admin_key: Value = app
        .admin(Method::POST, "/api-keys")
        .json(&json!({"name": "ops", "scopes": ["admin"]}))
        .send_json()
        .await;
    // A change made with an admin-scoped key is recorded under that key's name.
    let res = app
        .client
        .delete(app.url("/webhooks/audited"))
        .bearer_auth(admin_key["key"].as_str().unwrap())
        .header("x-request-id", "audit-req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);

    let res = app.admin(Method::GET, "/audit").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    for secret in [
        "sim-app-secret",
        "hook-secret-0123",
        "audited-hook-token-1",
        "audited-hook-token-2",
        secret["callback_secret"].as_str().unwrap(),
        admin_key["key"].as_str().unwrap(),
    ] {
        assert!(!text.contains(secret), "a secret is in the audit log");
    }
    let log: Value = serde_json::from_str(&text).unwrap();
    let seen: Vec<(String, String, String)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["object_type"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let t = |a: &str, o: &str, w: &str| (a.to_string(), o.to_string(), w.to_string());
    assert_eq!(
        seen,
        [
            t("delete", "webhook", "api-key:ops"),
            t("create", "api_key", "admin-token"),
            t("rotate_secret", "process", "admin-token"),
            t("replace", "webhook", "admin-token"),
            t("create", "webhook", "admin-token"),
            t("create", "api_key", "admin-token"),
            t("create", "process", "admin-token"),
            t("create", "connection", "admin-token"),
        ],
        "newest first"
    );
    let items = log["items"].as_array().unwrap();
    assert_eq!(items[0]["request_id"], "audit-req-1");
    assert_eq!(items[0]["before"]["enabled"], false);
    assert!(items[0]["after"].is_null());
    assert_eq!(items[3]["before"]["enabled"], true);
    assert_eq!(items[3]["after"]["enabled"], false);
    assert!(items[7]["after"]["name"] == "sim");

    // Filters and pages.
    let hooks = app
        .admin_get("/audit?object_type=webhook&object_key=audited")
        .await;
    assert_eq!(hooks["items"].as_array().unwrap().len(), 3);
    let page = app.admin_get("/audit?limit=5").await;
    let before = page["next_before"].as_i64().unwrap();
    let rest = app
        .admin_get(&format!("/audit?limit=5&before={before}"))
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 3);
    assert!(rest["next_before"].is_null());
    // Only admins read it.
    let res = app.client.get(app.url("/audit")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .admin(Method::GET, "/audit?limit=0")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_count_requests_runs_orchestrator_calls_tokens_and_verifications() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    let (app, key) = setup_on(&sim, url, |_| {}).await;
    let before = app.get("/metrics").await.text().await.unwrap();
    assert_eq!(run(&app, &key, "").await.status(), 202);
    token_hook(&app, "measured", "measured-token-0123").await;
    assert_eq!(deliver(&app, "measured", "wrong").await.status(), 401);
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let after = res.text().await.unwrap();
    let grew =
        |name: &str, labels: &[&str]| metric(&after, name, labels) > metric(&before, name, labels);
    assert!(grew(
        "ugw_http_requests_total",
        &["route=\"/run/{process}\"", "status=\"202\""]
    ));
    assert!(grew("ugw_run_duration_seconds_count", &[]));
    assert!(grew("ugw_run_duration_seconds_bucket", &["le=\"+Inf\""]));
    assert!(grew("ugw_orchestrator_calls_total", &["outcome=\"ok\""]));
    // The token was fetched when the process was checked, at set-up.
    assert!(metric(&after, "ugw_token_refreshes_total", &["result=\"ok\""]) >= 1.0);
    assert!(grew(
        "ugw_webhook_verifications_total",
        &["scheme=\"token\"", "result=\"token_invalid\""]
    ));
    for gauge in [
        "ugw_jobs_queued",
        "ugw_jobs_in_flight",
        "ugw_dead_letters{kind=\"job\"}",
        "ugw_dead_letters{kind=\"callback\"}",
        "ugw_callbacks_pending",
    ] {
        assert!(after.contains(gauge), "{gauge} missing:\n{after}");
    }
    // Paths with ids are counted by their pattern, never by the raw path.
    assert!(!after.contains("route=\"/jobs/0"));
}

#[tokio::test]
async fn every_metric_has_help_and_outcomes_and_latency_are_by_process() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    let (app, key) = setup_on(&sim, url, |s| s.tracking.pass_interval_ms = 100).await;
    let before = app.get("/metrics").await.text().await.unwrap();
    assert_eq!(run(&app, &key, "?wait=20").await.status(), 200);
    let after = app.get("/metrics").await.text().await.unwrap();

    // Every metric the page types is explained.
    let typed: Vec<&str> = after
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(typed.len() >= 10, "{after}");
    for name in &typed {
        assert!(
            after.contains(&format!("# HELP {name} ")),
            "{name} has no HELP line:\n{after}"
        );
    }
    let version = format!(
        "ugw_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(after.contains(&version), "{after}");
    // What the database adds to an answer: the group commit's wait and write, in ms buckets.
    for name in ["ugw_batch_queue_seconds", "ugw_batch_write_seconds"] {
        assert!(
            after.contains(&format!("{name}_bucket{{batch=\"ledger\",le=\"0.002\"}}")),
            "{name} has no fine buckets:\n{after}"
        );
    }
    let grew =
        |name: &str, labels: &[&str]| metric(&after, name, labels) > metric(&before, name, labels);
    assert!(grew(
        "ugw_jobs_ended_total",
        &[
            "process=\"Invoices\"",
            "kind=\"job\"",
            "state=\"successful\""
        ]
    ));
    assert!(grew(
        "ugw_run_duration_seconds_count",
        &["process=\"Invoices\"", "kind=\"job\"", "status=\"200\""]
    ));
    // A name that matches nothing is not a label value.
    let res = app
        .client
        .post(app.url("/run/NoSuchProcess-7f3a"))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let page = app.get("/metrics").await.text().await.unwrap();
    assert!(!page.contains("NoSuchProcess-7f3a"));
    // The governor's figures, per tenant.
    for gauge in ["ugw_traffic_list_budget{", "ugw_traffic_circuit_open{"] {
        assert!(page.contains(gauge), "{gauge} missing");
    }
}
