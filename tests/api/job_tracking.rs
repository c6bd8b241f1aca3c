//! Job tracking end to end: the webhook the gateway registers, the poller's per-tenant
//! budget, waiting for results (across instances too), and dead-letter redrive.

use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use uipath_gateway::config::Settings;
use uipath_gateway::storage::{connections, traffic};
use uipath_gateway::workers::webhook_registration::{self, Registration};
use uipath_gateway::workers::{dispatcher, job_sync};

use crate::helpers::SendJson;
use crate::helpers::db;
use crate::helpers::setup::{SECRET, create, eventually, input, process, run, setup_on, timeline};
use crate::helpers::sim::{Sim, spawn_sim};
use crate::helpers::{TestApp, spawn_app_on};

async fn setup(sim: &Sim, adjust: impl FnOnce(&mut Settings)) -> (TestApp, String) {
    let (_, url) = db::server().fresh_database().await;
    setup_on(sim, url, adjust).await
}

async fn get(app: &TestApp, key: &str, id: &str, query: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/jobs/{id}{query}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn advance(sim: &Sim, orch_id: i64, times: usize) {
    for _ in 0..times {
        let res = sim
            .control(Method::POST, &format!("/jobs/{orch_id}/advance"), None)
            .await;
        assert!(res.status().is_success());
    }
}

/// Orchestrator's webhooks stop arriving: only the poller reads jobs back.
async fn lose_webhooks(sim: &Sim) {
    let res = sim
        .control(
            Method::PUT,
            "/faults",
            Some(json!({"drop_all_webhooks": true})),
        )
        .await;
    assert!(res.status().is_success());
}

fn sign(body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Replaces the simulator's webhook with `hook` (as an Orchestrator admin would).
async fn replace_webhook(sim: &Sim, token: &str, hook: &Value) {
    let url = sim.cloud(&format!("/odata/Webhooks({})", hook["Id"]));
    assert!(sim.put(&url, token, hook).await.status().is_success());
}

async fn register(app: &TestApp) -> Registration {
    let conn = connections::find(&app.pool, "sim").await.unwrap().unwrap();
    webhook_registration::ensure(&app.state, &conn, &app.address)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_registered_webhook_brings_the_result_and_no_poll_happens() {
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let (app, key) = setup(&sim, |_| {}).await;

    // Registered once, left alone while intact, put back when disabled.
    assert_eq!(register(&app).await, Registration::Created);
    assert_eq!(register(&app).await, Registration::Unchanged);
    let token = sim.token().await;
    let hooks: Value = sim
        .get(&sim.cloud("/odata/Webhooks"), &token, None)
        .await
        .json()
        .await
        .unwrap();
    let hook = hooks["value"][0].clone();
    assert_eq!(hook["Url"], app.url("/orchestrator/events/sim"));
    assert_eq!(hook["Enabled"], true);
    let mut disabled = hook.clone();
    disabled["Enabled"] = false.into();
    replace_webhook(&sim, &token, &disabled).await;
    assert_eq!(register(&app).await, Registration::Updated);

    let started: Value = run(&app, &key, "").await.json().await.unwrap();
    let orch_id = started["orchestrator_job_id"].as_i64().unwrap();
    advance(&sim, orch_id, 2).await;
    // The end arrives by webhook (asynchronously); the wait wakes on it.
    let res = get(&app, &key, started["id"].as_str().unwrap(), "?wait=20").await;
    assert_eq!(res.status(), 200);
    let done: Value = res.json().await.unwrap();
    assert_eq!(done["state"], "successful", "{done}");
    assert_eq!(done["output"], json!({"in_Vendor": "ACME", "in_Amount": 2}));
    let sources = timeline(&done, "source");
    assert!(sources.contains(&"webhook"), "{sources:?}");

    // With healthy webhooks a poller pass asks Orchestrator nothing.
    let report = job_sync::try_execute_task(&app.state).await.unwrap();
    assert_eq!((report.single_reads, report.lists), (0, 0));
    assert!(sim.calls("/odata/Jobs(").await.is_empty(), "no single read");
    assert!(lists(&sim).await.is_empty(), "no list");
}

async fn webhooks_sent(sim: &Sim) -> u64 {
    let counters: Value = sim.read("/counters").await;
    counters["webhooks_sent"].as_u64().unwrap()
}

async fn pings(sim: &Sim) -> usize {
    sim.calls("/UiPath.Server.Configuration.OData.Ping")
        .await
        .len()
}

#[tokio::test]
async fn the_webhook_skips_job_created_and_a_ping_shows_it_healthy_with_no_job_moving() {
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let (app, key) = setup(&sim, |_| {}).await;
    let conn = connections::find(&app.pool, "sim").await.unwrap().unwrap();
    let heard = || async {
        connections::webhook_state(&app.pool, conn.id)
            .await
            .unwrap()
            .last_event_at
    };

    // Registered, then pinged at once: nothing had been heard yet.
    assert_eq!(register(&app).await, Registration::Created);
    assert_eq!(pings(&sim).await, 1);
    crate::helpers::setup::eventually("the ping to arrive", Duration::from_secs(10), || async {
        heard().await.is_some()
    })
    .await;
    // Heard moments ago: the next check asks for no ping.
    assert_eq!(register(&app).await, Registration::Unchanged);
    assert_eq!(pings(&sim).await, 1);

    // Subscribed to the job events that tell news, not to `job.created`.
    let token = sim.token().await;
    let hooks: Value = sim
        .get(&sim.cloud("/odata/Webhooks"), &token, None)
        .await
        .json()
        .await
        .unwrap();
    let mut hook = hooks["value"][0].clone();
    let events = |h: &Value| -> Vec<String> {
        h["Events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["EventType"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(events(&hook), webhook_registration::JOB_EVENTS);

    // A registration from before (with `job.created`) is brought in line.
    hook["Events"]
        .as_array_mut()
        .unwrap()
        .push(json!({"EventType": "job.created"}));
    replace_webhook(&sim, &token, &hook).await;
    assert_eq!(register(&app).await, Registration::Updated);
    let again: Value = sim
        .get(
            &sim.cloud(&format!("/odata/Webhooks({})", hook["Id"])),
            &token,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events(&again), webhook_registration::JOB_EVENTS);

    // A job that starts brings no webhook call. A minute without news is past the 5 s
    // cadence but within the 120 s one kept while webhooks are healthy: the ping keeps
    // them so, and a poller pass asks Orchestrator nothing about the pending job.
    let sent = webhooks_sent(&sim).await;
    let started: Value = run(&app, &key, "").await.json().await.unwrap();
    assert_eq!(started["state"], "pending", "{started}");
    assert_eq!(webhooks_sent(&sim).await, sent);
    sqlx::query(
        "update jobs set created_at = now() - interval '1 minute', \
         state_changed_at = now() - interval '1 minute'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let report = job_sync::try_execute_task(&app.state).await.unwrap();
    assert_eq!((report.single_reads, report.lists), (0, 0));

    // Quiet for longer than half of `webhook_quiet_secs`: the next check pings again.
    sqlx::query("update connection_webhooks set last_event_at = now() - interval '10 minutes'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(register(&app).await, Registration::Unchanged);
    assert_eq!(pings(&sim).await, 2);
    crate::helpers::setup::eventually(
        "the second ping to arrive",
        Duration::from_secs(10),
        || async {
            heard()
                .await
                .is_some_and(|at| chrono::Utc::now() - at < chrono::Duration::minutes(1))
        },
    )
    .await;
}

/// The filtered `GET /odata/Jobs` calls in the simulator's log.
async fn lists(sim: &Sim) -> Vec<Value> {
    sim.calls("/odata/Jobs")
        .await
        .into_iter()
        .filter(|c| {
            c["method"] == "GET"
                && c["path"].as_str().unwrap().ends_with("/odata/Jobs")
                && c["query"].as_str().unwrap().contains("filter")
        })
        .collect()
}

#[tokio::test]
async fn with_webhooks_lost_the_poller_batches_ids_and_reads_the_output_it_lacks() {
    let sim = spawn_sim(|s| {
        s.manual_jobs = true;
        s.list_omits_arguments = true;
    })
    .await;
    let (app, key) = setup(&sim, |_| {}).await;
    lose_webhooks(&sim).await;
    let mut jobs = Vec::new();
    for _ in 0..5 {
        let j: Value = run(&app, &key, "").await.json().await.unwrap();
        advance(&sim, j["orchestrator_job_id"].as_i64().unwrap(), 2).await;
        jobs.push(j);
    }
    sim.control(Method::DELETE, "/calls", None).await;
    let report = job_sync::try_execute_task(&app.state).await.unwrap();
    // Five jobs in one folder: one filtered list, then one single read each for the
    // output arguments the list left out.
    assert_eq!(report.changed, 5, "{report:?}");
    assert_eq!(report.lists, 1, "{report:?}");
    assert_eq!(report.single_reads, 5, "{report:?}");
    let list = lists(&sim).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let query: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(list[0]["query"].as_str().unwrap()).unwrap();
    for j in &jobs {
        assert!(
            query["$filter"].contains(&format!("Id eq {}", j["orchestrator_job_id"])),
            "{query:?}"
        );
    }
    for j in &jobs {
        let done: Value = get(&app, &key, j["id"].as_str().unwrap(), "")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(done["state"], "successful");
        assert_eq!(done["output"], json!({"in_Vendor": "ACME", "in_Amount": 2}));
        assert_eq!(
            done["timeline"].as_array().unwrap().last().unwrap()["source"],
            "poll"
        );
    }
    let conn = connections::find(&app.pool, "sim").await.unwrap().unwrap();
    assert_eq!(
        traffic::used(&app.pool, &job_sync::tenant_key(&conn), 60)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn a_429_blocks_the_tenant_for_retry_after_and_the_jobs_stay_due() {
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let (_, url) = db::server().fresh_database().await;
    let keys = uipath_gateway::crypto::KeyRing::generate_spec("shared");
    let same_keys = |s: &mut Settings| {
        s.encryption_keys = Some(keys.clone());
        s.tracking.single_reads_per_second = 0;
    };
    let (app, key) = setup_on(&sim, url.clone(), same_keys).await;
    for _ in 0..4 {
        run(&app, &key, "").await;
    }
    sim.control(
        Method::PUT,
        "/faults",
        Some(json!({"errors": [{"path_contains": "/odata/Jobs", "status": 429, "retry_after": 30, "remaining": 1}]})),
    )
    .await;
    let first = job_sync::try_execute_task(&app.state).await.unwrap();
    assert_eq!((first.lists, first.deferred), (1, 4), "{first:?}");
    // Blocked: the next pass leaves the tenant alone (no claim, no call), and the jobs
    // stay due, never marked as asked.
    sim.control(Method::DELETE, "/calls", None).await;
    let second = job_sync::try_execute_task(&app.state).await.unwrap();
    assert_eq!(second, job_sync::PassReport::default());
    assert!(sim.calls("/odata/Jobs").await.is_empty());
    let never_asked: i64 =
        sqlx::query_scalar("select count(*) from jobs where last_polled_at is null")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(never_asked, 4);
    // Another instance, which has not met the 429 itself, leaves them alone too: the
    // pause is shared through the database.
    let other = spawn_app_on(url, same_keys).await;
    other.state.traffic.refresh().await.unwrap();
    let third = job_sync::try_execute_task(&other.state).await.unwrap();
    assert_eq!(third, job_sync::PassReport::default());
    assert!(sim.calls("/odata/Jobs").await.is_empty());
    let blocked: f64 = sqlx::query_scalar(
        "select extract(epoch from lists_paused_until - now())::float8 from orchestrator_tenants",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!((20.0..=30.0).contains(&blocked), "{blocked}");
}

#[tokio::test]
async fn two_thousand_jobs_in_flight_stay_under_the_list_budget() {
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let (app, key) = setup(&sim, |s| {
        s.tracking.batch_size = 2_000;
        s.tracking.poll_every_secs = 5;
        s.tracking.ids_per_list = 20;
        s.tracking.single_reads_per_second = 0;
        s.database.max_connections = 10;
        // One key sends 2,000 runs as fast as it can: its rate limit is not under test.
        s.rate_limits.api_key_per_second = 0;
    })
    .await;
    lose_webhooks(&sim).await;
    let started = Instant::now();
    let mut handles = Vec::new();
    for worker in 0..8 {
        let (client, url, key) = (app.client.clone(), app.url("/run/Invoices"), key.clone());
        handles.push(tokio::spawn(async move {
            for _ in (worker..2_000).step_by(8) {
                let res = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"in_Vendor": "ACME", "in_Amount": 1}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 202);
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    eprintln!("2,000 jobs started in {:?}", started.elapsed());
    // As if they had been running for a while: every job is due at once.
    sqlx::query("update jobs set state_changed_at = now() - interval '1 hour'")
        .execute(&app.pool)
        .await
        .unwrap();
    sim.control(Method::DELETE, "/calls", None).await;
    // Passes go on until the budget is spent.
    let mut lists = 0;
    let mut deferred = 0;
    let mut claimed_after_spent = 0;
    for _ in 0..5 {
        let r = job_sync::try_execute_task(&app.state).await.unwrap();
        if lists == app.state.settings.tracking.list_budget_per_minute as usize {
            claimed_after_spent += r.single_reads + r.lists + r.deferred;
        }
        lists += r.lists;
        deferred += r.deferred;
    }
    let budget = app.state.settings.tracking.list_budget_per_minute as usize;
    let calls = self::lists(&sim).await;
    assert_eq!(lists, budget, "the whole budget, no more");
    assert_eq!(
        calls.len(),
        budget,
        "checked against the simulator's call log"
    );
    assert!(
        calls.iter().all(|c| c["status"] == 200),
        "Orchestrator never had to refuse one"
    );
    assert!(
        deferred > 0,
        "jobs over the budget wait for the next minute"
    );
    assert_eq!(
        claimed_after_spent, 0,
        "once the budget is spent, passes leave the tenant's jobs alone"
    );
    let polled: i64 =
        sqlx::query_scalar("select count(*) from jobs where last_polled_at is not null")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        polled as usize,
        budget * app.state.settings.tracking.ids_per_list,
        "each list asked about a full batch of ids"
    );
}

#[tokio::test]
async fn a_tenant_whose_backlog_outruns_its_budget_does_not_starve_another_tenant() {
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let (app, key) = setup(&sim, |s| {
        s.tracking.batch_size = 10;
        s.tracking.poll_every_secs = 5;
        s.tracking.ids_per_list = 5;
        s.tracking.list_budget_per_minute = 1;
        // Lists only: the paced single reads that follow a spent budget are not under test.
        s.tracking.single_reads_per_second = 0;
    })
    .await;
    lose_webhooks(&sim).await;
    // A second tenant: the on-premises one, through a password connection.
    create(&app, &input(&sim, "password", "onprem")).await;
    let body = json!({"name": "Orders", "connection": "onprem", "folder": "Shared",
        "release": {"process_key": "OrderSync"}});
    process(&app, body).await;
    for _ in 0..30 {
        assert_eq!(run(&app, &key, "").await.status(), 202);
    }
    let mut orders = Vec::new();
    for _ in 0..2 {
        let res = app
            .client
            .post(app.url("/run/Orders"))
            .bearer_auth(&key)
            .json(&json!({"in_OrderIds": [1]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        let job: Value = res.json().await.unwrap();
        orders.push(job["orchestrator_job_id"].as_i64().unwrap());
    }
    // Every job is due; the 30 of the first tenant have waited longest, more than one
    // pass can take and far more than one list a minute can read.
    sqlx::query(
        "update jobs set state_changed_at = now() - case when process_name = 'Invoices' \
         then interval '1 hour' else interval '10 minutes' end",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sim.control(Method::DELETE, "/calls", None).await;
    let first = job_sync::try_execute_task(&app.state).await.unwrap();
    let second = job_sync::try_execute_task(&app.state).await.unwrap();
    assert_eq!(first.lists + second.lists, 1, "{first:?} {second:?}");
    assert!(first.deferred > 0, "{first:?}");
    for id in orders {
        let reads = sim.calls(&format!("/odata/Jobs({id})")).await;
        assert_eq!(
            reads.len(),
            1,
            "the second tenant's job {id} was read, once: {reads:#?}"
        );
    }
}

#[tokio::test]
async fn wait_answers_200_when_the_job_ends_in_time_and_202_when_it_does_not() {
    let sim = spawn_sim(|s| {
        s.default_behaviour.pending_ms = 20;
        s.default_behaviour.running_ms = 20;
    })
    .await;
    let (app, key) = setup(&sim, |_| {}).await;
    register(&app).await;

    // Ends in time: 200 with the output arguments as JSON.
    let res = run(&app, &key, "?wait=20").await;
    assert_eq!(res.status(), 200);
    let done: Value = res.json().await.unwrap();
    assert_eq!(done["state"], "successful", "{done}");
    assert_eq!(done["output"], json!({"in_Vendor": "ACME", "in_Amount": 2}));

    // The same with `Prefer: wait=N`.
    let res = app
        .client
        .post(app.url("/run/Invoices"))
        .bearer_auth(&key)
        .header("prefer", "respond-async, wait=20")
        .json(&json!({"in_Vendor": "ACME", "in_Amount": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Does not end in time: 202 with Location.
    sim.control(
        Method::PUT,
        "/scenario",
        Some({
            let mut s: Value = sim.read("/scenario").await;
            s["manual_jobs"] = true.into();
            s
        }),
    )
    .await;
    let begun = Instant::now();
    let res = run(&app, &key, "?wait=1").await;
    assert_eq!(res.status(), 202);
    assert!(begun.elapsed() >= Duration::from_secs(1));
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(res_location(&app, &key, &id).await, format!("/jobs/{id}"),);

    // The process's maximum caps the wait.
    let mut capped: Value = app
        .admin(Method::GET, "/processes/Invoices")
        .send_json()
        .await;
    capped["max_wait_seconds"] = 1.into();
    for k in [
        "id",
        "release_key",
        "release_resolved_at",
        "created_at",
        "updated_at",
        "has_callback_secret",
        "unverified",
        "warnings",
    ] {
        capped.as_object_mut().unwrap().remove(k);
    }
    let res = app
        .admin(Method::PUT, "/processes/Invoices")
        .json(&capped)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let begun = Instant::now();
    assert_eq!(run(&app, &key, "?wait=600").await.status(), 202);
    assert!(begun.elapsed() < Duration::from_secs(10));

    // A bad wait is refused clearly.
    let res = app
        .client
        .get(app.url(&format!("/jobs/{id}")))
        .bearer_auth(&key)
        .header("prefer", "wait=soon")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "invalid_wait");
}

async fn res_location(app: &TestApp, key: &str, id: &str) -> String {
    let res = get(app, key, id, "?wait=1").await;
    assert_eq!(res.status(), 202);
    res.headers()["location"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn a_waiter_on_one_instance_wakes_when_another_instance_receives_the_webhook() {
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let (_, url) = db::server().fresh_database().await;
    let keys = uipath_gateway::crypto::KeyRing::generate_spec("shared");
    let same_keys = |s: &mut Settings| s.encryption_keys = Some(keys.clone());
    let (a, key) = setup_on(&sim, url.clone(), same_keys).await;
    let b = spawn_app_on(url, same_keys).await;
    let job: Value = run(&a, &key, "").await.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    let waiter = {
        let (client, url, key) = (
            a.client.clone(),
            a.url(&format!("/jobs/{id}?wait=30")),
            key.clone(),
        );
        tokio::spawn(async move {
            let begun = Instant::now();
            let res = client.get(url).bearer_auth(key).send().await.unwrap();
            (
                res.status(),
                res.json::<Value>().await.unwrap(),
                begun.elapsed(),
            )
        })
    };
    // The waiter must be waiting before the event arrives, or the wake-up is not shown.
    eventually("the waiter to wait", Duration::from_secs(10), || async {
        a.state.jobs_ended.waiting() == 1
    })
    .await;
    let event = json!({"Type": "job.completed", "EventId": "e1", "Timestamp": "2026-11-22T10:00:00Z",
        "Job": {"Id": job["orchestrator_job_id"], "State": "Successful", "OutputArguments": {"out_Total": 42}}})
    .to_string();
    let res = b
        .client
        .post(b.url("/orchestrator/events/sim"))
        .header("content-type", "application/json")
        .header("x-uipath-signature", sign(event.as_bytes()))
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["updated"], 1);
    let (status, body, took) = waiter.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["output"], json!({"out_Total": 42}));
    assert!(
        took < Duration::from_secs(25),
        "woken, not timed out: {took:?}"
    );
}

#[tokio::test]
async fn a_dead_lettered_job_is_listed_and_redriven() {
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let (app, key) = setup(&sim, |s| s.dispatch.max_attempts = 1).await;
    sim.control(
        Method::PUT,
        "/faults",
        Some(json!({"errors": [{"path_contains": "StartJobs", "status": 503, "remaining": 1}]})),
    )
    .await;
    let res = run(&app, &key, "").await;
    let first: Value = res.json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_string();
    assert_eq!(
        first["state"], "dead",
        "one attempt allowed, and it failed: {first}"
    );
    let dead = app.admin_get("/dead-letters").await;
    assert_eq!(dead["jobs"][0]["id"], id.as_str());
    let res = app
        .admin(Method::POST, &format!("/jobs/{id}/redrive"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(res.json::<Value>().await.unwrap()["state"], "queued");
    assert_eq!(dispatcher::try_execute_task(&app.state).await.unwrap(), 1);
    let job: Value = get(&app, &key, &id, "").await.json().await.unwrap();
    assert_eq!(job["state"], "pending", "{job}");
    let res = app
        .admin(Method::POST, &format!("/jobs/{id}/redrive"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409, "only dead jobs are redriven");
}

#[tokio::test]
async fn the_poller_waits_while_webhooks_are_healthy_and_asks_when_they_go_quiet() {
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let (app, key) = setup(&sim, |s| {
        s.tracking.poll_every_secs = 5;
        s.tracking.poll_every_secs_with_webhooks = 120;
        s.tracking.webhook_quiet_secs = 300;
    })
    .await;
    let job: Value = run(&app, &key, "").await.json().await.unwrap();
    let orch_id = job["orchestrator_job_id"].as_i64().unwrap();
    advance(&sim, orch_id, 1).await;
    let event = json!({"Type": "job.started", "EventId": "s1", "Timestamp": "2026-11-22T10:00:00Z",
        "Job": {"Id": orch_id, "State": "Running"}})
    .to_string();
    let res = app
        .client
        .post(app.url("/orchestrator/events/sim"))
        .header("x-uipath-signature", sign(event.as_bytes()))
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["updated"], 1);
    let age = |secs: i64| {
        let pool = app.pool.clone();
        async move {
            sqlx::query("update jobs set state_changed_at = now() - make_interval(secs => $1)")
                .bind(secs as f64)
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    // A minute without news: past the quiet cadence (5 s), not the healthy one (120 s).
    age(60).await;
    let r = job_sync::try_execute_task(&app.state).await.unwrap();
    assert_eq!(r.single_reads + r.lists, 0, "webhooks are healthy: {r:?}");
    // The webhooks go quiet (none for ten minutes): the same job is asked about.
    sqlx::query("update connection_webhooks set last_event_at = now() - interval '10 minutes'")
        .execute(&app.pool)
        .await
        .unwrap();
    let r = job_sync::try_execute_task(&app.state).await.unwrap();
    assert_eq!(r.single_reads, 1, "{r:?}");
    assert_eq!(sim.calls(&format!("/odata/Jobs({orch_id})")).await.len(), 1);
    // Asked just now: not again until the cadence has passed.
    let r = job_sync::try_execute_task(&app.state).await.unwrap();
    assert_eq!(r.single_reads, 0, "{r:?}");
}
