//! Secrets stay secret: not in responses, not in logs, not in a database dump; and
//! the key ring rotates without losing anything.

use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use uipath_gateway::crypto::KeyRing;

use crate::helpers::SendJson;
use crate::helpers::db;
use crate::helpers::setup::{PAT, create, input};
use crate::helpers::sim::spawn_sim;
use crate::helpers::{ADMIN_TOKEN, binary, spawn_app_on};

#[tokio::test]
async fn keys_rotate_reseals_everything_and_the_old_key_can_go() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    let old = KeyRing::generate_spec("old");
    let new = KeyRing::generate_spec("new");
    let app = spawn_app_on(url.clone(), |s| s.encryption_keys = Some(old.clone())).await;
    let id = create(&app, &input(&sim, "refresh_token", "rt")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let test: Value = app
        .admin(Method::POST, &format!("/connections/{id}/test"))
        .send_json()
        .await;
    assert_eq!(test["ok"], true);

    let both = KeyRing::parse(&secrecy::SecretString::from(format!(
        "{},{}",
        new.expose_secret(),
        old.expose_secret()
    )))
    .unwrap();
    let done = uipath_gateway::storage::keys::rotate(&app.pool, &both)
        .await
        .unwrap();
    assert_eq!(done.resealed, 3, "secrets, access token and refresh token");
    assert_eq!(
        uipath_gateway::storage::keys::rotate(&app.pool, &both)
            .await
            .unwrap()
            .resealed,
        0,
        "idempotent"
    );

    // A gateway with only the new key reads everything: the stored token, then the rotated refresh token.
    let only_new = spawn_app_on(url, |s| s.encryption_keys = Some(new.clone())).await;
    let test: Value = only_new
        .admin(Method::POST, &format!("/connections/{id}/test"))
        .send_json()
        .await;
    assert_eq!(test["ok"], true, "{test}");
    sim.control(Method::POST, "/tokens/expire", None).await;
    let test: Value = only_new
        .admin(Method::POST, &format!("/connections/{id}/test"))
        .send_json()
        .await;
    assert_eq!(test["ok"], true, "{test}");
}

#[tokio::test]
async fn status_lists_unhealthy_connections_with_the_reason_and_readyz_names_none() {
    let sim = spawn_sim(|_| {}).await;
    let app = crate::helpers::spawn_app().await;
    let mut body = input(&sim, "client_credentials", "broken");
    body["client_secret"] = "wrong".into();
    let id = create(&app, &body).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.admin(Method::POST, &format!("/connections/{id}/test"))
        .send()
        .await
        .unwrap();
    let res = app.get("/readyz").await;
    assert_eq!(
        res.status(),
        200,
        "one broken connection does not make the instance unready"
    );
    let ready = res.text().await.unwrap();
    assert!(
        !ready.contains("broken") && !ready.contains("invalid_client"),
        "/readyz needs no credentials, so it names no connection and no reason: {ready}"
    );
    let status = app.admin_get("/status").await;
    assert_eq!(status["ready"], true);
    let listed = &status["unhealthy_connections"][0];
    assert_eq!(listed["name"], "broken");
    assert!(
        listed["reason"]
            .as_str()
            .unwrap()
            .contains("invalid_client"),
        "{listed}"
    );
    assert_eq!(
        app.client
            .get(app.url("/status"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn no_secret_reaches_the_logs_or_a_database_dump() {
    let sim = spawn_sim(|s| s.token_lifetimes.oauth = 3600).await;
    let (db_name, url) = db::server().fresh_database().await;
    let keys = KeyRing::generate_spec("k1");
    let port = uipath_gateway::embedded_db::free_port().unwrap();
    let mut gateway = binary()
        .env("DATABASE_URL", url.expose_secret())
        .env("GATEWAY_ENCRYPTION_KEYS", keys.expose_secret())
        .env("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("GATEWAY_PORT", port.to_string())
        .env("GATEWAY_LOG_LEVEL", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain the pipes from the start: a full pipe would block the gateway's logging.
    let drain = |mut pipe: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        tokio::spawn(async move {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text).await;
            text
        })
    };
    let out = drain(Box::new(gateway.stdout.take().unwrap()));
    let err = drain(Box::new(gateway.stderr.take().unwrap()));
    let base = format!("http://127.0.0.1:{port}");
    let http = uipath_gateway::orchestrator::http::builder()
        .build()
        .unwrap();
    let mut ready = false;
    for _ in 0..300 {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the gateway became ready");

    let mut ids = Vec::new();
    for kind in [
        "client_credentials",
        "refresh_token",
        "pat",
        "password",
        "user_key",
    ] {
        let res = http
            .post(format!("{base}/connections"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&input(&sim, kind, kind))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        ids.push(
            res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for round in 0..2 {
        for id in &ids {
            let test: Value = http
                .post(format!("{base}/connections/{id}/test"))
                .bearer_auth(ADMIN_TOKEN)
                .send_json()
                .await;
            assert_eq!(test["ok"], true, "round {round}: {test}");
        }
        sim.control(Method::POST, "/tokens/expire", None).await;
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gateway.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    gateway.wait().await.unwrap();
    let logs = out.await.unwrap() + &err.await.unwrap();
    assert!(logs.contains("token refreshed"), "the logs were captured");

    let dump = tokio::process::Command::new("pg_dump")
        .arg("--data-only")
        .arg(format!("--dbname={}", url.expose_secret()))
        .output()
        .await
        .unwrap();
    assert!(
        dump.status.success(),
        "pg_dump {db_name}: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
    assert!(dump.contains("connections"), "the dump has the data");

    let mut secrets: Vec<String> = [
        "sim-app-secret",
        "sim-refresh-token-0",
        PAT,
        "sim-password",
        "sim-user-key",
        ADMIN_TOKEN,
    ]
    .map(String::from)
    .to_vec();
    secrets.push(keys.expose_secret().split(':').nth(1).unwrap().to_string());
    // Every token the simulator handed out, and every refresh token it knows.
    sim.sim.with_state(|s| {
        secrets.extend(s.tokens.keys().cloned());
        secrets.extend(s.refresh_tokens.keys().cloned());
        secrets.extend(s.id_tokens.keys().cloned());
    });
    assert!(secrets.len() > 12, "tokens were issued: {}", secrets.len());
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret is in the logs");
        assert!(
            !dump.contains(secret.as_str()),
            "a secret is in the database dump"
        );
    }
}
