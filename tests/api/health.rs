use crate::helpers::{PrivateCluster, spawn_app, spawn_app_on};

#[tokio::test]
async fn healthz_answers_ok_when_alive() {
    let app = spawn_app().await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_answers_ready_when_database_is_migrated() {
    let app = spawn_app().await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["migrations"], "ok");
}

#[tokio::test]
async fn readyz_answers_503_when_a_migration_is_missing() {
    let app = spawn_app().await;
    sqlx::query("delete from _sqlx_migrations")
        .execute(&app.pool)
        .await
        .unwrap();
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "not_ready");
    assert_eq!(body["checks"]["migrations"], "pending");
}

#[tokio::test]
async fn readyz_goes_to_503_while_the_database_is_stopped_and_recovers() {
    let pg = PrivateCluster::start();
    let app = spawn_app_on(pg.url("postgres"), |s| s.database.acquire_timeout_ms = 500).await;
    assert_eq!(app.get("/readyz").await.status(), 200);

    pg.cluster.stop().unwrap();
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert!(res.headers().contains_key("retry-after"));
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "not_ready");
    assert_eq!(body["checks"]["database"], "unavailable");
    // Unauthenticated: fixed words, never the driver's error text.
    assert!(!body.to_string().contains("onnect"), "{body}");
    // Liveness does not depend on the database.
    assert_eq!(app.get("/healthz").await.status(), 200);

    pg.cluster.start(pg.port).unwrap();
    assert_eq!(
        app.get("/readyz").await.status(),
        200,
        "ready again without a restart"
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let res = app.get("/healthz").await;
    let generated = res.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok());

    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "caller-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "caller-42");

    let res = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", "caller-43")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["x-request-id"],
        "caller-43",
        "errors carry it too"
    );
}

#[tokio::test]
async fn unsafe_incoming_request_ids_are_replaced() {
    let app = spawn_app().await;
    let long = "a".repeat(200);
    for bad in ["has space", "new\tline", long.as_str()] {
        let res = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        let id = res.headers()["x-request-id"].to_str().unwrap();
        assert!(
            uuid::Uuid::parse_str(id).is_ok(),
            "{bad:?} was echoed as {id:?}"
        );
    }
}

/// The gateway's connections plan each statement for the tables as they are now: a generic
/// plan cached while `jobs` was empty made every group commit of start marks scan `jobs`.
#[tokio::test]
async fn every_connection_plans_statements_for_the_tables_as_they_are_now() {
    let app = spawn_app().await;
    let mode: String = sqlx::query_scalar("show plan_cache_mode")
        .fetch_one(&app.state.pool)
        .await
        .unwrap();
    assert_eq!(mode, "force_custom_plan");
}
