//! `/api-keys`: shown once, stored hashed, scoped, revocable.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::SendJson;
use crate::helpers::setup::api_key;
use crate::helpers::spawn_app;

#[tokio::test]
async fn a_key_is_shown_once_stored_hashed_and_revocable() {
    let app = spawn_app().await;
    let res = app
        .admin(Method::POST, "/api-keys")
        .json(&json!({"name": "ops", "scopes": ["admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    assert!(
        key.starts_with("ugw_") && key.len() == 4 + 43,
        "256 bits, Base64url: {key}"
    );
    assert_eq!(created["prefix"].as_str().unwrap(), &key[..12]);

    let list = app.admin_get("/api-keys").await;
    assert!(
        !list.to_string().contains(&key),
        "a listing never shows the key"
    );
    let stored: i64 = sqlx::query_scalar(
        "select count(*) from api_keys where key_hash = sha256(convert_to($1, 'UTF8'))",
    )
    .bind(&key)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored, 1, "only the SHA-256 of the key is stored");

    // An admin-scoped key opens the admin API, by either header.
    let res = app
        .client
        .get(app.url("/processes"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .get(app.url("/processes"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let id = created["id"].as_str().unwrap();
    assert_eq!(
        app.admin(Method::DELETE, &format!("/api-keys/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let res = app
        .client
        .get(app.url("/processes"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "revoked keys stop working at once");
    let list = app.admin_get("/api-keys").await;
    assert!(list["items"][0]["revoked_at"].is_string());
}

#[tokio::test]
async fn scopes_are_checked_and_named_when_missing() {
    let app = spawn_app().await;
    let key = &api_key(&app, "erp", json!(["run:Invoices", "jobs:read"])).await;
    let res = app
        .client
        .get(app.url("/processes"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "missing_scope");
    assert!(problem["detail"].as_str().unwrap().contains("`admin`"));

    let res = app
        .admin(Method::POST, "/api-keys")
        .json(&json!({"name": "x", "scopes": ["jobs:write", "bad name"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2);
    let res = app
        .admin(Method::POST, "/api-keys")
        .json(&json!({"name": "x", "scopes": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);

    let expired: Value = app
        .admin(Method::POST, "/api-keys")
        .json(&json!({"name": "old", "scopes": ["admin"], "expires_at": "2020-01-01T00:00:00Z"}))
        .send_json()
        .await;
    let res = app
        .client
        .get(app.url("/processes"))
        .bearer_auth(expired["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "expired keys do not work");
}
