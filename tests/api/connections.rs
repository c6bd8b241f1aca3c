//! `/connections` against the simulator: every auth flow end to end, the token
//! rules (rotation, one refresh in flight, reuse after restart, 401 retry).

use reqwest::Method;
use serde_json::{Value, json};
use uipath_gateway::crypto::KeyRing;

use crate::helpers::SendJson;
use crate::helpers::db;
use crate::helpers::setup::{PAT, create, input};
use crate::helpers::sim::{Sim, spawn_sim};
use crate::helpers::{TestApp, spawn_app, spawn_app_on, spawn_app_with};

async fn tokens_issued(sim: &Sim) -> u64 {
    let counters: Value = sim.read("/counters").await;
    counters["tokens_issued"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn every_kind_connects_tests_and_discovers_folders_and_releases() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_app().await;
    for kind in [
        "client_credentials",
        "refresh_token",
        "pat",
        "password",
        "user_key",
    ] {
        let created = create(&app, &input(&sim, kind, kind)).await;
        let text = created.to_string();
        for secret in [
            "sim-app-secret",
            "sim-refresh-token-0",
            PAT,
            "sim-password",
            "sim-user-key",
        ] {
            assert!(!text.contains(secret), "{kind} leaked a secret: {text}");
        }
        let id = created["id"].as_str().unwrap();

        let test: Value = app
            .admin(Method::POST, &format!("/connections/{id}/test"))
            .send_json()
            .await;
        assert_eq!(test["ok"], true, "{kind}: {test}");
        assert!(
            test["folders"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == "Finance/AP"),
            "{kind}: {test}"
        );

        let folders = app.admin_get(&format!("/connections/{id}/folders")).await;
        let ap = folders["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == "Finance/AP")
            .unwrap()
            .clone();

        for folder in [
            "Finance/AP".to_string(),
            ap["id"].to_string(),
            ap["key"].as_str().unwrap().to_string(),
        ] {
            let res = app
                .admin(Method::GET, &format!("/connections/{id}/releases"))
                .query(&[("folder", &folder)])
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{kind} {folder}");
            let releases: Value = res.json().await.unwrap();
            let invoice = &releases["items"][0];
            assert_eq!(invoice["name"], "InvoiceBot");
            assert!(
                invoice["input_arguments"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a["name"] == "in_Amount")
            );
        }
        let view = app.admin_get(&format!("/connections/{id}")).await;
        assert_eq!(view["health"], "healthy", "{kind}");
    }
    let pat = app.admin_get("/connections").await;
    let pat = pat["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "pat")
        .unwrap()
        .clone();
    assert!(
        pat["warnings"][0].as_str().unwrap().contains("expires in"),
        "a PAT close to expiry warns: {pat}"
    );
    let legacy = app.admin_get("/connections").await;
    let legacy = legacy["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "user_key")
        .unwrap()
        .clone();
    assert_eq!(legacy["organization"], "demo-org", "discovered");
    assert_eq!(legacy["tenant"], "DefaultTenant", "discovered");
}

#[tokio::test]
async fn wrong_inputs_are_refused_with_the_reason_and_the_fix() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_app().await;
    let cases = [
        (
            json!({"name": "a", "kind": "password", "flavour": "cloud", "organization": "o", "tenant": "t", "username": "u", "password": "p"}),
            "External App",
        ),
        (
            json!({"name": "b", "kind": "password", "orchestrator_url": "https://cloud.uipath.com/o/t/orchestrator_", "username": "u", "password": "p"}),
            "standalone",
        ),
        (
            json!({"name": "c", "kind": "client_credentials", "organization": "o", "tenant": "t", "client_id": "x", "client_secret": "y", "scopes": ["OR.Jobs", "offline_access"]}),
            "offline_access",
        ),
        (
            json!({"name": "d", "kind": "client_credentials", "organization": "o", "tenant": "t"}),
            "client_id",
        ),
        (
            json!({"name": "bad name", "kind": "pat", "orchestrator_url": "https://x", "token": "t"}),
            "name",
        ),
        (
            json!({"name": "e", "kind": "pat", "orchestrator_url": "ftp://x", "token": "t"}),
            "orchestrator_url",
        ),
    ];
    for (body, expected) in cases {
        let res = app
            .admin(Method::POST, "/connections")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422, "{body}");
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["code"], "validation_failed");
        assert!(
            problem["detail"].as_str().unwrap().contains(expected),
            "{body}: {problem}"
        );
        assert!(problem["errors"].as_array().is_some_and(|e| !e.is_empty()));
    }
    let res = app
        .admin(Method::POST, "/connections")
        .json(&json!({"name": "x", "kind": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "an unknown kind does not parse");
    create(&app, &input(&sim, "pat", "dup")).await;
    let res = app
        .admin(Method::POST, "/connections")
        .json(&input(&sim, "pat", "dup"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
}

#[tokio::test]
async fn the_admin_api_is_closed_without_a_token_and_refuses_wrong_ones() {
    let closed = spawn_app_with(|s| s.admin_token = None).await;
    let res = closed
        .client
        .get(closed.url("/connections"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "admin_api_closed");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("GATEWAY_ADMIN_TOKEN")
    );

    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/connections"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    let res = app
        .client
        .get(app.url("/connections"))
        .bearer_auth("wrong-token-of-some-length")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn rotating_refresh_tokens_leave_the_gateway_with_the_newest() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_app().await;
    let id = create(&app, &input(&sim, "refresh_token", "rt")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..3 {
        sim.control(Method::POST, "/tokens/expire", None).await;
        let test: Value = app
            .admin(Method::POST, &format!("/connections/{id}/test"))
            .send_json()
            .await;
        assert_eq!(test["ok"], true, "{test}");
    }
    // Three refreshes: sim-refresh-token-0 and the two that followed are spent.
    let live = sim
        .sim
        .with_state(|s| s.refresh_tokens.keys().cloned().collect::<Vec<_>>());
    assert_eq!(live.len(), 1, "only the newest refresh token is alive");
    let calls = sim.calls("/identity_/connect/token").await;
    assert_eq!(calls.iter().filter(|c| c["status"] == 200).count(), 3);
    assert!(
        calls.iter().all(|c| c["status"] == 200),
        "no refresh token was used twice"
    );
    // The gateway holds the live one: one more refresh works.
    sim.control(Method::POST, "/tokens/expire", None).await;
    let test: Value = app
        .admin(Method::POST, &format!("/connections/{id}/test"))
        .send_json()
        .await;
    assert_eq!(test["ok"], true, "{test}");
}

#[tokio::test]
async fn a_spent_refresh_token_marks_the_connection_unhealthy_with_the_reason() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_app().await;
    let id = create(&app, &input(&sim, "refresh_token", "rt")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Someone else uses the token first.
    sim.token_form(
        "/identity_/connect/token",
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "sim-app"),
            ("client_secret", "sim-app-secret"),
            ("refresh_token", "sim-refresh-token-0"),
        ],
    )
    .await;
    let test: Value = app
        .admin(Method::POST, &format!("/connections/{id}/test"))
        .send_json()
        .await;
    assert_eq!(test["ok"], false);
    assert_eq!(test["orchestrator_error_code"], "invalid_grant");
    let view = app.admin_get(&format!("/connections/{id}")).await;
    assert_eq!(view["health"], "unhealthy");
    assert!(
        view["health_reason"]
            .as_str()
            .unwrap()
            .contains("invalid_grant")
    );
    let res = app
        .admin(Method::GET, &format!("/connections/{id}/folders"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["orchestrator_error_code"], "invalid_grant");
}

async fn folders_concurrently(app: &TestApp, id: &str, n: usize) {
    let calls = (0..n).map(|_| {
        let req = app.admin(Method::GET, &format!("/connections/{id}/folders"));
        async move { req.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures_util::future::join_all(calls).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

#[tokio::test]
async fn two_hundred_concurrent_calls_after_expiry_make_one_token_request() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_app_with(|s| {
        s.database.max_connections = 10;
        // 200 callers at once from one address: above the per-address default.
        s.limits.connections_per_address = 0;
    })
    .await;
    let id = create(&app, &input(&sim, "client_credentials", "cc")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    sim.control(Method::PUT, "/faults", Some(json!({"latency_ms": 100})))
        .await;
    folders_concurrently(&app, &id, 200).await;
    assert_eq!(tokens_issued(&sim).await, 1, "no token yet: one request");
    sim.control(Method::POST, "/tokens/expire", None).await;
    folders_concurrently(&app, &id, 200).await;
    assert_eq!(tokens_issued(&sim).await, 2, "expired under load: one more");
}

#[tokio::test]
async fn two_instances_share_one_refresh_and_a_restart_reuses_the_stored_token() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    let keys = KeyRing::generate_spec("shared");
    let same_keys = |s: &mut uipath_gateway::config::Settings| {
        s.encryption_keys = Some(keys.clone());
        // Hundreds of callers at once from one address: above the per-address default.
        s.limits.connections_per_address = 0;
    };
    let a = spawn_app_on(url.clone(), same_keys).await;
    let b = spawn_app_on(url.clone(), same_keys).await;
    let id = create(&a, &input(&sim, "client_credentials", "cc")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Slow answers widen the race window: without the row lock both instances would ask.
    sim.control(Method::PUT, "/faults", Some(json!({"latency_ms": 150})))
        .await;
    tokio::join!(
        folders_concurrently(&a, &id, 100),
        folders_concurrently(&b, &id, 100)
    );
    assert_eq!(
        tokens_issued(&sim).await,
        1,
        "two instances, one token request"
    );
    sim.control(Method::POST, "/tokens/expire", None).await;
    tokio::join!(
        folders_concurrently(&a, &id, 100),
        folders_concurrently(&b, &id, 100)
    );
    assert_eq!(
        tokens_issued(&sim).await,
        2,
        "one refresh per expiry across instances"
    );

    // A restart: a new instance finds the valid stored token and asks for none.
    let c = spawn_app_on(url, same_keys).await;
    folders_concurrently(&c, &id, 10).await;
    assert_eq!(
        tokens_issued(&sim).await,
        2,
        "a valid stored token is reused"
    );
}

#[tokio::test]
async fn a_401_leads_to_one_refresh_and_a_successful_retry() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_app().await;
    let id = create(&app, &input(&sim, "client_credentials", "cc")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    folders_concurrently(&app, &id, 1).await;
    sim.control(Method::DELETE, "/calls", None).await;
    sim.control(Method::POST, "/tokens/expire", None).await;
    folders_concurrently(&app, &id, 1).await;
    let statuses: Vec<(String, u64)> = sim
        .calls("")
        .await
        .iter()
        .map(|c| {
            (
                c["path"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
                c["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("Folders".into(), 401),
            ("token".into(), 200),
            ("Folders".into(), 200)
        ]
    );
}

#[tokio::test]
async fn replacing_keeps_write_only_secrets_and_delete_removes() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_app().await;
    let id = create(&app, &input(&sim, "client_credentials", "cc")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut body = input(&sim, "client_credentials", "cc-renamed");
    body.as_object_mut().unwrap().remove("client_secret");
    let res = app
        .admin(Method::PUT, &format!("/connections/{id}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let view: Value = res.json().await.unwrap();
    assert_eq!(view["name"], "cc-renamed");
    assert_eq!(view["secrets_stored"], json!(["client_secret"]));
    let test: Value = app
        .admin(Method::POST, &format!("/connections/{id}/test"))
        .send_json()
        .await;
    assert_eq!(test["ok"], true, "the kept secret still works: {test}");
    // The name works wherever the id does.
    let by_name = app.admin_get("/connections/cc-renamed").await;
    assert_eq!(by_name["id"], id.as_str());
    let test: Value = app
        .admin(Method::POST, "/connections/cc-renamed/test")
        .send_json()
        .await;
    assert_eq!(test["ok"], true, "{test}");
    assert_eq!(
        app.admin(Method::DELETE, &format!("/connections/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        app.admin(Method::GET, &format!("/connections/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let res = app
        .admin(Method::GET, "/connections/cc-renamed")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "connection_not_found");
    assert!(
        problem["detail"].as_str().unwrap().contains("cc-renamed"),
        "{problem}"
    );
    // A name PostgreSQL could not even compare is simply not found.
    for odd in [
        "cc%00renamed",
        "%C3%A9%E2%9C%93",
        "%FF%FE",
        &"x".repeat(5_000),
    ] {
        let res = app
            .admin(Method::GET, &format!("/connections/{odd}/folders"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{odd}");
    }
}

#[tokio::test]
async fn the_background_refresher_renews_tokens_past_their_refresh_point() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    let keys = KeyRing::generate_spec("k");
    let app = spawn_app_on(url, |s| s.encryption_keys = Some(keys.clone())).await;
    let id = create(&app, &input(&sim, "client_credentials", "cc")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    folders_concurrently(&app, &id, 1).await;
    assert_eq!(tokens_issued(&sim).await, 1);

    let ring = std::sync::Arc::new(KeyRing::parse(&keys).unwrap());
    let http = uipath_gateway::orchestrator::http_client(std::time::Duration::from_secs(5));
    let manager = || {
        uipath_gateway::tokens::TokenManager::new(app.pool.clone(), ring.clone(), http.clone(), 0.8)
    };
    let pool = &app.pool;
    let pass = |tokens| async move {
        uipath_gateway::workers::token_refresh::try_execute_task(pool, &tokens, 14)
            .await
            .unwrap()
    };
    assert_eq!(pass(manager()).await, 1);
    assert_eq!(tokens_issued(&sim).await, 1, "a fresh token is left alone");

    // 50 of its 60 minutes have passed: past 80%, so the next pass renews it.
    sqlx::query("update connection_tokens set last_refreshed_at = now() - interval '50 minutes', access_expires_at = now() + interval '10 minutes'")
        .execute(&app.pool)
        .await
        .unwrap();
    // A new manager (its memory knows nothing newer), as after that time has passed.
    assert_eq!(pass(manager()).await, 1);
    assert_eq!(tokens_issued(&sim).await, 2, "renewed ahead of expiry");
}

#[tokio::test]
async fn a_connection_lists_the_queues_of_a_folder_with_their_schemas() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_app().await;
    let mut conn = input(&sim, "client_credentials", "queues");
    conn["scopes"] = json!(["OR.Folders.Read", "OR.Queues"]);
    create(&app, &conn).await;
    let res = app
        .admin(Method::GET, "/connections/queues/queues")
        .query(&[("folder", "Finance/AP")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let queues: Value = res.json().await.unwrap();
    let queue = &queues["items"][0];
    assert_eq!(queue["name"], "InvoicesToBook");
    assert_eq!(queue["enforce_unique_reference"], true);
    assert_eq!(
        queue["content_schema"]["required"],
        json!(["InvoiceNumber", "Amount"])
    );
    assert_eq!(
        queue["output_schema"]["properties"]["BookingId"]["type"],
        "string"
    );
    // No folder: the same 400 as for releases.
    let res = app
        .admin(Method::GET, "/connections/queues/queues")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "folder_required"
    );
}
