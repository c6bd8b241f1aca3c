//! Callbacks: a Standard Webhooks message per ended job, verified here by an
//! independent implementation of the spec; retried after failures on the schedule,
//! then dead-lettered, listed and redriven; private targets refused by default.

use base64::Engine;
use hmac::{KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use uipath_gateway::workers::callbacks::try_execute_task as deliver;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::SendJson;
use crate::helpers::setup::{api_key, create, get_job, input};
use crate::helpers::sim::{Sim, spawn_sim};
use crate::helpers::{TestApp, spawn_app_with};

const HOOK_SECRET: &str = "hook-secret-0123";

/// Verifies a Standard Webhooks message as the spec describes it, written here from the
/// spec (not with the library the gateway signs with): HMAC-SHA256 keyed with the
/// Base64-decoded secret after `whsec_`, over `{id}.{timestamp}.{body}`, Base64, any
/// of the space-separated `v1,<sig>` entries matching.
fn verify(secret: &str, id: &str, timestamp: &str, body: &[u8], signatures: &str) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    signatures
        .split(' ')
        .filter_map(|s| s.split_once(','))
        .any(|(v, sig)| v == "v1" && sig == expected)
}

#[test]
fn the_verifier_agrees_with_the_published_test_vector() {
    // The example from the Standard Webhooks specification (and Svix's docs).
    assert!(verify(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "1614265330",
        br#"{"test": 2432232314}"#,
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    ));
    // And so does the gateway's signer.
    assert_eq!(
        uipath_gateway::callbacks::sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#
        )
        .unwrap(),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

/// A gateway that may call loopback (the receiver runs here), retrying twice at once.
async fn setup(receiver: &MockServer) -> (TestApp, Sim, String, String) {
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let app = spawn_app_with(|s| {
        s.allow_private_callbacks = true;
        s.callbacks.retry_schedule_secs = vec![0, 0];
        s.callbacks.jitter = 0.0;
    })
    .await;
    let mut conn = input(&sim, "client_credentials", "sim");
    conn["webhook_secret"] = HOOK_SECRET.into();
    create(&app, &conn).await;
    let res = app
        .admin(Method::POST, "/processes")
        .json(&json!({"name": "Invoices", "connection": "sim", "folder": "Finance/AP",
            "release": {"process_key": "InvoiceBot"}, "callback_url": format!("{}/done", receiver.uri())}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let process: Value = res.json().await.unwrap();
    let secret = process["callback_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "shown once, on create");
    assert_eq!(process["has_callback_secret"], true);
    let again = app.admin_get("/processes/Invoices").await;
    assert!(again.get("callback_secret").is_none(), "never shown again");
    let key = api_key(&app, "k", json!(["run:*", "jobs:read"])).await;
    (app, sim, key, secret)
}

/// Starts a job and ends it through a signed Orchestrator webhook.
async fn run_to_end(app: &TestApp, key: &str, query: &str) -> String {
    let job: Value = app
        .client
        .post(app.url(&format!("/run/Invoices{query}")))
        .bearer_auth(key)
        .json(&json!({"in_Vendor": "ACME", "in_Amount": 7}))
        .send_json()
        .await;
    let event = json!({"Type": "job.completed", "EventId": "e", "Timestamp": "2026-11-22T10:00:00Z",
        "Job": {"Id": job["orchestrator_job_id"], "State": "Successful", "OutputArguments": {"out_Ok": true}}})
    .to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(event.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let res = app
        .client
        .post(app.url("/orchestrator/events/sim"))
        .header("x-uipath-signature", sig)
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    job["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_callback_is_signed_retried_after_a_500_and_shown_on_the_job() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/done"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .and(path("/done"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&receiver)
        .await;
    let (app, _sim, key, secret) = setup(&receiver).await;
    let id = run_to_end(&app, &key, "").await;

    assert_eq!(deliver(&app.state).await.unwrap(), 1, "first attempt: 500");
    assert_eq!(deliver(&app.state).await.unwrap(), 1, "retry: delivered");
    assert_eq!(deliver(&app.state).await.unwrap(), 0, "nothing left");

    let received = receiver.received_requests().await.unwrap();
    assert_eq!(received.len(), 2);
    for r in &received {
        let h = |n: &str| r.headers.get(n).unwrap().to_str().unwrap().to_string();
        assert!(
            verify(
                &secret,
                &h("webhook-id"),
                &h("webhook-timestamp"),
                &r.body,
                &h("webhook-signature")
            ),
            "the signature verifies"
        );
        let now = chrono::Utc::now().timestamp();
        assert!((now - h("webhook-timestamp").parse::<i64>().unwrap()).abs() < 60);
    }
    assert_eq!(
        received[0].headers["webhook-id"], received[1].headers["webhook-id"],
        "a retry is the same message"
    );
    assert_eq!(received[0].body, received[1].body);
    let message: Value = serde_json::from_slice(&received[1].body).unwrap();
    assert_eq!(message["type"], "job.successful");
    assert_eq!(message["data"]["id"], id.as_str());
    assert_eq!(message["data"]["output"], json!({"out_Ok": true}));
    // A tampered body does not verify.
    let h = |n: &str| {
        received[1]
            .headers
            .get(n)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    };
    let tampered = String::from_utf8(received[1].body.clone())
        .unwrap()
        .replace("true", "false");
    assert!(!verify(
        &secret,
        &h("webhook-id"),
        &h("webhook-timestamp"),
        tampered.as_bytes(),
        &h("webhook-signature")
    ));

    let shown = get_job(&app, &key, &id).await;
    let cb = &shown["callbacks"][0];
    assert_eq!(cb["state"], "delivered", "{shown}");
    assert_eq!(cb["attempts"], 2);
    let statuses: Vec<&Value> = cb["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status"])
        .collect();
    assert_eq!(statuses, [&json!(500), &json!(204)]);
}

#[tokio::test]
async fn a_callback_is_dead_lettered_when_the_schedule_runs_out_and_can_be_redriven() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/done"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&receiver)
        .await;
    let (app, _sim, key, secret) = setup(&receiver).await;
    let id = run_to_end(&app, &key, "").await;
    for _ in 0..3 {
        assert_eq!(deliver(&app.state).await.unwrap(), 1);
    }
    assert_eq!(
        deliver(&app.state).await.unwrap(),
        0,
        "dead: not tried again"
    );
    let shown = get_job(&app, &key, &id).await;
    let cb = shown["callbacks"][0].clone();
    assert_eq!(cb["state"], "dead");
    assert_eq!(
        cb["log"].as_array().unwrap().len(),
        3,
        "the first try and two retries"
    );

    let dead = app.admin_get("/dead-letters").await;
    assert_eq!(dead["callbacks"][0]["id"], cb["id"]);

    // The receiver is fixed and the secret rotated; a redrive delivers, signed anew.
    receiver.reset().await;
    Mock::given(method("POST"))
        .and(path("/done"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let rotated: Value = app
        .admin(Method::POST, "/processes/Invoices/callback-secret")
        .send_json()
        .await;
    let new_secret = rotated["callback_secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    let res = app
        .admin(
            Method::POST,
            &format!("/callbacks/{}/redrive", cb["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(deliver(&app.state).await.unwrap(), 1);
    let r = &receiver.received_requests().await.unwrap()[0];
    let h = |n: &str| r.headers.get(n).unwrap().to_str().unwrap().to_string();
    assert!(verify(
        new_secret,
        &h("webhook-id"),
        &h("webhook-timestamp"),
        &r.body,
        &h("webhook-signature")
    ));
    assert_eq!(
        get_job(&app, &key, &id).await["callbacks"][0]["state"],
        "delivered"
    );
    let res = app
        .admin(
            Method::POST,
            &format!("/callbacks/{}/redrive", cb["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let app = spawn_app_with(|_| {}).await;
    create(&app, &input(&sim, "client_credentials", "sim")).await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://10.0.0.7/x",
    ] {
        let res = app
            .admin(Method::POST, "/processes")
            .json(
                &json!({"name": "P", "connection": "sim", "folder": "Shared",
                "release": {"process_key": "OrderSync"}, "callback_url": url}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422, "{url}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], "callback_url", "{body}");
    }
    let res = app
        .admin(Method::POST, "/processes")
        .json(
            &json!({"name": "P", "connection": "sim", "folder": "Shared",
            "release": {"process_key": "OrderSync"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let key: Value = app
        .admin(Method::POST, "/api-keys")
        .json(&json!({"name": "k", "scopes": ["run:*"]}))
        .send_json()
        .await;
    let res = app
        .client
        .post(app.url("/run/P?callback_url=http://192.168.1.10/hook"))
        .bearer_auth(key["key"].as_str().unwrap())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "invalid_callback_url");
    let jobs: i64 = sqlx::query_scalar("select count(*) from jobs")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 0, "nothing recorded");
}
