//! Every auth flow of orchestrator-api.md §2 against the simulator: successes and
//! the documented failures.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::sim::{CLOUD, spawn_sim};

const CC: [(&str, &str); 3] = [
    ("grant_type", "client_credentials"),
    ("client_id", "sim-app"),
    ("client_secret", "sim-app-secret"),
];

#[tokio::test]
async fn client_credentials_issue_a_token_at_both_cloud_token_urls() {
    let sim = spawn_sim(|_| {}).await;
    for path in [
        "/identity_/connect/token",
        "/demo-org/identity_/connect/token",
        "/identity/connect/token",
    ] {
        let mut form = CC.to_vec();
        form.push(("scope", "OR.Jobs OR.Folders.Read"));
        let res = sim.token_form(path, &form).await;
        assert_eq!(res.status(), 200, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["expires_in"], 3600);
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["scope"], "OR.Jobs OR.Folders.Read");
        assert!(body.get("refresh_token").is_none());
        let token = body["access_token"].as_str().unwrap();
        let res = sim.get(&sim.cloud("/odata/Folders"), token, None).await;
        assert_eq!(res.status(), 200);
    }
}

#[tokio::test]
async fn client_credentials_refuse_json_bodies_bad_secrets_and_offline_access() {
    let sim = spawn_sim(|_| {}).await;
    let res = sim
        .http
        .post(sim.url("/identity_/connect/token"))
        .json(&json!({"grant_type": "client_credentials", "client_id": "sim-app", "client_secret": "sim-app-secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );

    let res = sim
        .token_form(
            "/identity_/connect/token",
            &[CC[0], CC[1], ("client_secret", "wrong")],
        )
        .await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );

    let mut form = CC.to_vec();
    form.push(("scope", "OR.Jobs offline_access"));
    let res = sim.token_form("/identity_/connect/token", &form).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_scope");

    let mut form = CC.to_vec();
    form.push(("scope", "OR.Administration"));
    let res = sim.token_form("/identity_/connect/token", &form).await;
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_scope");
}

async fn refresh(sim: &crate::helpers::sim::Sim, token: &str) -> reqwest::Response {
    sim.token_form(
        "/identity_/connect/token",
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "sim-app"),
            ("client_secret", "sim-app-secret"),
            ("refresh_token", token),
        ],
    )
    .await
}

#[tokio::test]
async fn refresh_tokens_rotate_and_each_works_only_once() {
    let sim = spawn_sim(|_| {}).await;
    let mut tokens = vec!["sim-refresh-token-0".to_string()];
    for _ in 0..3 {
        let res = refresh(&sim, tokens.last().unwrap()).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        let access = body["access_token"].as_str().unwrap();
        assert_eq!(
            sim.get(&sim.cloud("/odata/Folders"), access, None)
                .await
                .status(),
            200
        );
        tokens.push(body["refresh_token"].as_str().unwrap().to_string());
    }
    for old in &tokens[..3] {
        let res = refresh(&sim, old).await;
        assert_eq!(res.status(), 400);
        assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
    }
    assert_eq!(
        refresh(&sim, &tokens[3]).await.status(),
        200,
        "only the newest works"
    );
}

#[tokio::test]
async fn personal_access_tokens_work_until_they_expire_and_only_for_their_scopes() {
    let sim = spawn_sim(|s| {
        s.personal_access_tokens[0].expires_at = chrono::Utc::now() + chrono::Duration::days(1);
        s.personal_access_tokens[0].scopes = vec!["OR.Folders.Read".into()];
    })
    .await;
    let pat = format!("rt_{}-1", "5e".repeat(32));
    assert_eq!(
        sim.get(&sim.cloud("/odata/Folders"), &pat, None)
            .await
            .status(),
        200
    );
    let res = sim
        .get(
            &sim.cloud("/odata/Jobs"),
            &pat,
            Some(("X-UIPATH-OrganizationUnitId", "3")),
        )
        .await;
    assert_eq!(res.status(), 403, "OR.Jobs is missing");
    sim.control(
        Method::POST,
        "/clock/advance",
        Some(json!({"seconds": 2 * 86_400})),
    )
    .await;
    assert_eq!(
        sim.get(&sim.cloud("/odata/Folders"), &pat, None)
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn on_prem_password_login_returns_the_abp_shape_and_fails_on_cloud_paths() {
    let sim = spawn_sim(|_| {}).await;
    let res = sim
        .http
        .post(sim.url("/api/Account/Authenticate"))
        .json(&json!({"TenancyName": "Default", "UsernameOrEmailAddress": "admin", "Password": "sim-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["success"], true);
    assert_eq!(body["__abp"], true);
    let token = body["result"].as_str().unwrap();
    assert_eq!(
        sim.get(&sim.url("/odata/Folders"), token, None)
            .await
            .status(),
        200
    );
    assert_eq!(
        sim.get(&sim.cloud("/odata/Folders"), token, None)
            .await
            .status(),
        401,
        "an on-prem token is not a cloud token"
    );

    let res = sim
        .http
        .post(sim.url("/api/Account/Authenticate"))
        .json(&json!({"tenancyName": "Default", "usernameOrEmailAddress": "admin", "password": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errorCode"], 1000);
    assert_eq!(body["message"], "Invalid credentials, failed to login.");

    let res = sim
        .http
        .post(sim.url(&format!("{CLOUD}/api/Account/Authenticate")))
        .json(&json!({"usernameOrEmailAddress": "admin", "password": "sim-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        404,
        "password login does not exist in Automation Cloud"
    );
}

#[tokio::test]
async fn legacy_user_key_flow_discovers_logical_names() {
    let sim = spawn_sim(|_| {}).await;
    let body = json!({"grant_type": "refresh_token", "client_id": "5v7PmPJL6FOGu6RB8I1Y4adLBhIwovQN", "refresh_token": "sim-user-key"});
    let res = sim
        .http
        .post(sim.url("/oauth/token"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(tokens["expires_in"], 86_400);
    let (access, id) = (
        tokens["access_token"].as_str().unwrap(),
        tokens["id_token"].as_str().unwrap(),
    );

    let accounts: Value = sim
        .get(&sim.url("/cloudrpa/api/getAccountsForUser"), id, None)
        .await
        .json()
        .await
        .unwrap();
    let account = accounts["accounts"][0]["accountLogicalName"]
        .as_str()
        .unwrap()
        .to_string();
    let url = sim.url(&format!(
        "/cloudrpa/api/account/{account}/getAllServiceInstances"
    ));
    let instances: Value = sim.get(&url, id, None).await.json().await.unwrap();
    let tenant = instances[0]["serviceInstanceLogicalName"].as_str().unwrap();

    let res = sim
        .http
        .get(sim.url(&format!("/{account}/{tenant}/odata/Folders")))
        .bearer_auth(access)
        .header("X-UIPATH-TenantName", tenant)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // The user key does not rotate: it works again.
    let again = sim
        .http
        .post(sim.url("/oauth/token"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    // A form body, or another client id, fails.
    let form = sim
        .token_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", "sim-user-key"),
            ],
        )
        .await;
    assert_eq!(form.status(), 400);
    let other =
        json!({"grant_type": "refresh_token", "client_id": "x", "refresh_token": "sim-user-key"});
    assert_eq!(
        sim.http
            .post(sim.url("/oauth/token"))
            .json(&other)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
}

#[tokio::test]
async fn calls_need_a_live_bearer_and_tokens_expire_on_the_simulated_clock() {
    let sim = spawn_sim(|s| s.token_lifetimes.oauth = 60).await;
    let res = sim
        .http
        .get(sim.cloud("/odata/Folders"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    let token = sim.token().await;
    assert_eq!(
        sim.get(&sim.cloud("/odata/Folders"), &token, None)
            .await
            .status(),
        200
    );
    sim.control(Method::POST, "/clock/advance", Some(json!({"seconds": 61})))
        .await;
    assert_eq!(
        sim.get(&sim.cloud("/odata/Folders"), &token, None)
            .await
            .status(),
        401
    );
    assert_eq!(
        sim.get(&sim.cloud("/odata/Folders"), "made-up", None)
            .await
            .status(),
        401
    );
    // Display names instead of logical names: 404.
    let res = sim
        .get(
            &sim.url("/Demo Org/Default Tenant/orchestrator_/odata/Folders"),
            &token,
            None,
        )
        .await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn the_call_log_masks_credentials() {
    let sim = spawn_sim(|_| {}).await;
    let token = sim.token().await;
    sim.get(&sim.cloud("/odata/Folders"), &token, None).await;
    let calls = sim.calls("").await;
    let text = serde_json::to_string(&calls).unwrap();
    assert!(!text.contains("sim-app-secret"), "{text}");
    assert!(!text.contains(&token), "{text}");
    assert_eq!(calls[0]["body"]["client_secret"], "***");
    assert_eq!(calls[1]["headers"]["authorization"], "Bearer ***");
}
