//! Orchestrator's own webhooks update the ledger; forged or altered ones change nothing.

use base64::Engine;
use hmac::{KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::setup::{api_key, create, get_job, input, process, timeline};
use crate::helpers::sim::{Sim, spawn_sim};
use crate::helpers::{TestApp, spawn_app, spawn_app_on};

const SECRET: &str = "hook-secret-0123";

async fn setup() -> (TestApp, Sim, String) {
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let app = spawn_app().await;
    let key = configure(&app, &sim).await;
    (app, sim, key)
}

/// The simulator's connection with a webhook secret, `Invoices`, and an API key.
async fn configure(app: &TestApp, sim: &Sim) -> String {
    let mut conn = input(sim, "client_credentials", "sim");
    conn["webhook_secret"] = SECRET.into();
    let created = create(app, &conn).await;
    assert!(
        created["secrets_stored"]
            .as_array()
            .unwrap()
            .contains(&json!("webhook_secret"))
    );
    assert!(!created.to_string().contains(SECRET));
    let body = json!({"name": "Invoices", "connection": "sim", "folder": "Finance/AP", "release": {"process_key": "InvoiceBot"}});
    process(app, body).await;
    api_key(app, "k", json!(["run:*", "jobs:read"])).await
}

fn sign(body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn start(app: &TestApp, key: &str) -> Value {
    let res = app
        .client
        .post(app.url("/run/Invoices"))
        .bearer_auth(key)
        .json(&json!({"in_Vendor": "ACME", "in_Amount": 2}))
        .send()
        .await
        .unwrap();
    res.json().await.unwrap()
}

#[tokio::test]
async fn orchestrator_webhooks_bring_the_result_without_any_poll() {
    let (app, sim, key) = setup().await;
    let token = sim.token().await;
    let hook = json!({"Name": "gateway", "Url": app.url("/orchestrator/events/sim"), "Enabled": true, "Secret": SECRET,
        "SubscribeToAllEvents": true, "AllowInsecureSsl": false});
    assert_eq!(
        sim.post(&sim.cloud("/odata/Webhooks"), &token, None, &hook)
            .await
            .status(),
        201
    );
    let job = start(&app, &key).await;
    let orch_id = job["orchestrator_job_id"].as_i64().unwrap();
    for _ in 0..2 {
        sim.control(Method::POST, &format!("/jobs/{orch_id}/advance"), None)
            .await;
    }
    // Deliveries are asynchronous: wait (bounded) for the ledger to show the end.
    let id = job["id"].as_str().unwrap();
    let mut done = Value::Null;
    for _ in 0..300 {
        done = get_job(&app, &key, id).await;
        if done["state"] == "successful" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(done["state"], "successful", "{done}");
    assert_eq!(done["output"], json!({"in_Vendor": "ACME", "in_Amount": 2}));
    let sources = timeline(&done, "source");
    assert!(sources.contains(&"webhook"), "{sources:?}");
    assert!(
        sim.calls(&format!("/odata/Jobs({orch_id})"))
            .await
            .is_empty(),
        "no poll happened"
    );
}

#[tokio::test]
async fn forged_or_altered_events_are_refused_and_change_nothing() {
    let (app, _sim, key) = setup().await;
    let job = start(&app, &key).await;
    let orch_id = job["orchestrator_job_id"].as_i64().unwrap();
    let event =
        json!({"Type": "job.completed", "EventId": "e1", "Timestamp": "2026-11-22T10:00:00Z",
        "Job": {"Id": orch_id, "State": "Successful", "OutputArguments": {"x": 1}}})
        .to_string();
    let url = app.url("/orchestrator/events/sim");
    let post = |body: String, sig: Option<String>| {
        let mut req = app
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(s) = sig {
            req = req.header("x-uipath-signature", s);
        }
        async move { req.send().await.unwrap() }
    };
    assert_eq!(post(event.clone(), None).await.status(), 401);
    let forged = base64::engine::general_purpose::STANDARD.encode([0u8; 32]);
    assert_eq!(post(event.clone(), Some(forged)).await.status(), 401);
    let altered = event.replace("Successful", "Faulted");
    let res = post(altered, Some(sign(event.as_bytes()))).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(
        get_job(&app, &key, job["id"].as_str().unwrap()).await["state"],
        "pending",
        "nothing changed"
    );

    // The genuine event is applied; a repeat and a late earlier state are not.
    let res: Value = post(event.clone(), Some(sign(event.as_bytes())))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(res, json!({"jobs": 1, "updated": 1}));
    let res: Value = post(event.clone(), Some(sign(event.as_bytes())))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(res["updated"], 0);
    let late = json!({"Type": "job.started", "EventId": "e0", "Timestamp": "2026-11-22T09:59:00Z", "Job": {"Id": orch_id, "State": "Running"}}).to_string();
    let res: Value = post(late.clone(), Some(sign(late.as_bytes())))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(res["updated"], 0);
    assert_eq!(
        get_job(&app, &key, job["id"].as_str().unwrap()).await["state"],
        "successful"
    );

    // `Jobs` as a single object (seen in one version's docs) is accepted too.
    let other = start(&app, &key).await;
    let stopped =
        json!({"Type": "job.stopped", "EventId": "e2", "Timestamp": "2026-11-22T10:01:00Z",
        "Jobs": {"Id": other["orchestrator_job_id"], "State": "Stopped"}})
        .to_string();
    let res: Value = post(stopped.clone(), Some(sign(stopped.as_bytes())))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(res["updated"], 1);
    assert_eq!(
        post("{}".into(), Some(sign(b"{}"))).await.status(),
        200,
        "non-job events are accepted and ignored"
    );
    assert_eq!(
        app.client
            .post(app.url("/orchestrator/events/nope"))
            .body("{}")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

/// `/run` answers before its start mark is committed, so Orchestrator's event for the
/// job can come first. Here the mark is held in PostgreSQL (its update waits for a lock
/// the test holds): the answer comes, the ledger has no Orchestrator id yet, and the
/// event, posted then, waits for the marks queued before it and applies to the job.
#[tokio::test]
async fn an_event_that_comes_before_the_start_mark_waits_for_it_and_is_applied() {
    let (app, _sim, key) = setup().await;
    let (mut holder, job, orch_id, id) = start_with_mark_held(&app, &key).await;
    let event = completed(orch_id);
    let delivery = deliver(&app, &event);
    // The event is in the gateway, waiting for the mark, when the mark is let go.
    let release = release_once_waiting(&app, &mut holder, "the event");
    let (res, ()) = tokio::join!(delivery, release);
    assert_eq!(
        res,
        json!({"jobs": 1, "updated": 1}),
        "the early event applied"
    );
    let read = get_job(&app, &key, &id.to_string()).await;
    assert_eq!(read["state"], "successful", "{read}");
    assert_eq!(read["orchestrator_job_id"], orch_id);
    assert_eq!(read["output"], json!({"x": 1}));
    assert_eq!(
        timeline(&read, "state"),
        ["queued", "pending", "successful"]
    );
    assert_eq!(job["orchestrator_job_id"], orch_id);
}

/// A read of the job on the instance that answered, made while its start mark is still
/// in flight, waits for the mark: what `/run` said (pending, with Orchestrator's id) is
/// what `GET /jobs/{id}` says next.
#[tokio::test]
async fn a_read_right_after_the_answer_sees_the_start_mark() {
    let (app, _sim, key) = setup().await;
    let (mut holder, job, orch_id, id) = start_with_mark_held(&app, &key).await;
    let id = id.to_string();
    let read = get_job(&app, &key, &id);
    let release = release_once_waiting(&app, &mut holder, "the read");
    let (read, ()) = tokio::join!(read, release);
    assert_eq!(read["state"], job["state"], "{read}");
    assert_eq!(read["orchestrator_job_id"], orch_id);
}

/// The same early event, received by a second instance behind the same load balancer:
/// its own marks settled, it does not know the job yet, answers, and looks again a
/// moment later, when the first instance's mark has landed. No poll runs here.
#[tokio::test]
async fn an_early_event_at_another_instance_is_applied_once_the_mark_lands() {
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let (_, url) = crate::helpers::db::server().fresh_database().await;
    let keys = uipath_gateway::crypto::KeyRing::generate_spec("two");
    let first = spawn_app_on(url.clone(), |s| s.encryption_keys = Some(keys.clone())).await;
    let second = spawn_app_on(url, |s| s.encryption_keys = Some(keys.clone())).await;
    let key = configure(&first, &sim).await;
    let (mut holder, _, orch_id, id) = start_with_mark_held(&first, &key).await;

    let res = deliver(&second, &completed(orch_id)).await;
    assert_eq!(res, json!({"jobs": 1, "updated": 0}), "not known yet");
    sqlx::query("select pg_advisory_unlock(4711)")
        .execute(&mut *holder)
        .await
        .unwrap();
    crate::helpers::setup::eventually(
        "the event applied by the second instance",
        std::time::Duration::from_secs(15),
        || async { get_job(&first, &key, &id.to_string()).await["state"] == "successful" },
    )
    .await;
    let read = get_job(&second, &key, &id.to_string()).await;
    assert_eq!(read["output"], json!({"x": 1}));
    let sources = timeline(&read, "source");
    assert_eq!(sources.last(), Some(&"webhook"), "{sources:?}");
}

/// Holds every start mark in PostgreSQL (its update waits for an advisory lock the
/// returned connection holds) and starts one job: answered, but not marked yet.
async fn start_with_mark_held(
    app: &TestApp,
    key: &str,
) -> (
    sqlx::pool::PoolConnection<sqlx::Postgres>,
    Value,
    i64,
    uuid::Uuid,
) {
    for sql in [
        "create function hold_marks() returns trigger language plpgsql as \
         $$ begin perform pg_advisory_xact_lock(4711); return new; end $$",
        "create trigger hold_marks before update of orchestrator_job_id on jobs for each row \
         when (new.orchestrator_job_id is not null) execute function hold_marks()",
    ] {
        sqlx::query(sql).execute(&app.pool).await.unwrap();
    }
    let mut holder = app.pool.acquire().await.unwrap();
    sqlx::query("select pg_advisory_lock(4711)")
        .execute(&mut *holder)
        .await
        .unwrap();
    let job = start(app, key).await;
    assert_eq!(job["state"], "pending", "answered as started: {job}");
    let orch_id = job["orchestrator_job_id"].as_i64().unwrap();
    let id: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
    let marked: Option<i64> =
        sqlx::query_scalar("select orchestrator_job_id from jobs where id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(marked, None, "the mark is held, yet /run answered");
    (holder, job, orch_id, id)
}

/// Lets the held marks go once `what` waits for the ledger (its barrier is queued
/// behind the held batch).
async fn release_once_waiting(
    app: &TestApp,
    holder: &mut sqlx::pool::PoolConnection<sqlx::Postgres>,
    what: &str,
) {
    crate::helpers::setup::eventually(
        &format!("{what} waiting for the ledger"),
        std::time::Duration::from_secs(10),
        || async { app.state.ledger.waiting() > 0 },
    )
    .await;
    sqlx::query("select pg_advisory_unlock(4711)")
        .execute(&mut **holder)
        .await
        .unwrap();
}

fn completed(orch_id: i64) -> String {
    json!({"Type": "job.completed", "EventId": format!("done-{orch_id}"), "Timestamp": "2026-11-22T10:00:00Z",
        "Job": {"Id": orch_id, "State": "Successful", "OutputArguments": {"x": 1}}})
    .to_string()
}

/// Posts a signed Orchestrator event to `app`; its receipt.
async fn deliver(app: &TestApp, event: &str) -> Value {
    let res = app
        .client
        .post(app.url("/orchestrator/events/sim"))
        .header("content-type", "application/json")
        .header("x-uipath-signature", sign(event.as_bytes()))
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}
