//! The trigger path's speed-ups keep their promises: group-committed jobs are each
//! recorded once with their timeline, one bad request in a batch fails only itself, and
//! the cached keys, processes and webhooks follow every change, on this instance at once
//! and on another within moments.

use std::time::Duration;

use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use uipath_gateway::app::submit;
use uipath_gateway::storage::hooks::Delivery;
use uipath_gateway::storage::jobs::{BATCHES_IN_FLIGHT, HookJob, NewJob, Started};
use uipath_gateway::storage::processes::{self, ProcessRow};

use crate::helpers::TestApp;
use crate::helpers::db;
use crate::helpers::setup::eventually;
use crate::helpers::setup::setup_on;
use crate::helpers::sim::spawn_sim;

/// Runs `requests` while every write to `jobs` is held back, until at least `n` of the
/// gateway's writes wait for a group commit: the batches after that surely carry several,
/// however fast or slow the requests arrive.
async fn batched<T>(app: &TestApp, n: usize, requests: impl std::future::Future<Output = T>) -> T {
    let mut hold = app.pool.begin().await.unwrap();
    sqlx::query("lock table jobs in share mode")
        .execute(&mut *hold)
        .await
        .unwrap();
    let release = async {
        eventually(
            "writes waiting for a group commit",
            Duration::from_secs(30),
            || async {
                let metrics = app.get("/metrics").await.text().await.unwrap();
                metrics
                    .lines()
                    .find_map(|l| l.strip_prefix("ugw_batch_waiting{batch=\"ledger\"} "))
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v >= n as f64)
            },
        )
        .await;
        hold.commit().await.unwrap();
    };
    tokio::join!(requests, release).0
}

#[tokio::test]
async fn concurrent_runs_are_committed_in_batches_each_job_once_and_a_bad_one_fails_alone() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    // 200 callers at once from one address: above the per-address default.
    let (app, key) = setup_on(&sim, url, |s| s.limits.connections_per_address = 0).await;

    // 200 requests at once; number 77 carries a NUL, which PostgreSQL refuses to store.
    let calls = (0..200).map(|i| {
        let (app, key) = (&app, &key);
        async move {
            let vendor = if i == 77 {
                "bad\u{0}vendor".to_string()
            } else {
                format!("vendor-{i}")
            };
            let res = app
                .client
                .post(app.url("/run/Invoices"))
                .bearer_auth(key)
                .json(&json!({"in_Vendor": vendor, "in_Amount": i}))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            (i, status, body)
        }
    });
    let answers = batched(&app, 100, futures_util::future::join_all(calls)).await;
    let mut ids = Vec::new();
    for (i, status, body) in answers {
        if i == 77 {
            assert_eq!(status, 400, "{body}");
            assert_eq!(body["code"], "invalid_value", "{body}");
            continue;
        }
        assert_eq!(status, 202, "{i}: {body}");
        assert_eq!(body["input"]["in_Vendor"], format!("vendor-{i}"), "{body}");
        assert!(body["orchestrator_job_id"].is_i64(), "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }

    // Each acknowledged job is stored once, with one `queued` event and one start event,
    // and Orchestrator has exactly one job per reference (start marks follow the answers
    // in the next group commit).
    app.state.ledger.settled().await.unwrap();
    let (jobs, queued, started): (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from jobs), \
                (select count(*) from job_events where state = 'queued'), \
                (select count(*) from job_events where source = 'dispatcher')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((jobs, queued, started), (199, 199, 199));
    let missing: i64 = sqlx::query_scalar(
        "select count(*) from jobs where orchestrator_job_id is null or not (id::text = any($1))",
    )
    .bind(&ids)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(missing, 0);
    let starts = sim
        .calls("StartJobs")
        .await
        .iter()
        .filter(|c| c["status"] == 201)
        .count();
    assert_eq!(starts, 199);

    // The writes really were batched (else this test shows nothing about batches).
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let largest = metrics
        .lines()
        .filter(|l| l.starts_with("ugw_batch_size{batch=\"job_insert\",quantile=\"1\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, f64::max);
    assert!(largest > 1.0, "no batch of more than one job:\n{metrics}");
}

#[tokio::test]
async fn a_revoked_key_or_changed_process_takes_effect_here_at_once_and_on_another_instance_soon() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    let keys = uipath_gateway::crypto::KeyRing::generate_spec("shared");
    let k = keys.clone();
    let (a, key) = setup_on(&sim, url.clone(), |s| s.encryption_keys = Some(k)).await;
    let b = crate::helpers::spawn_app_on(url, |s| s.encryption_keys = Some(keys)).await;
    let run = |app: &crate::helpers::TestApp| {
        app.client
            .post(app.url("/run/Invoices"))
            .bearer_auth(&key)
            .json(&json!({"in_Vendor": "ACME", "in_Amount": 1}))
            .send()
    };
    // Both instances now hold the key and the process.
    assert_eq!(run(&a).await.unwrap().status(), 202);
    let res = run(&b).await.unwrap();
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());

    // A process change through A: A sees it on the very next request, B soon after.
    let res = a
        .admin(Method::PUT, "/processes/Invoices")
        .json(
            &json!({"name": "Invoices", "connection": "sim", "folder": "Finance/AP",
            "release": {"process_key": "InvoiceBot"}, "max_wait_seconds": 30,
            "default_input": {"in_Urgent": true}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let job: Value = run(&a).await.unwrap().json().await.unwrap();
    assert_eq!(job["input"]["in_Urgent"], true, "{job}");
    eventually(
        "B sees the new default input",
        Duration::from_secs(5),
        || async {
            let job: Value = run(&b).await.unwrap().json().await.unwrap();
            job["input"]["in_Urgent"] == true
        },
    )
    .await;

    // A key revoked through A: refused by A at once, by B soon after.
    let id: String = sqlx::query_scalar("select id::text from api_keys where name = 'k'")
        .fetch_one(&a.pool)
        .await
        .unwrap();
    let res = a
        .admin(Method::DELETE, &format!("/api-keys/{id}"))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(run(&a).await.unwrap().status(), 401);
    eventually(
        "B refuses the revoked key",
        Duration::from_secs(5),
        || async { run(&b).await.unwrap().status() == 401 },
    )
    .await;
}

#[tokio::test]
async fn a_change_made_in_plain_sql_reaches_the_cached_webhook() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    let (app, _) = setup_on(&sim, url, |_| {}).await;
    let res = app
        .admin(Method::POST, "/webhooks")
        .json(
            &json!({"slug": "plain", "process": "Invoices", "scheme": "token",
            "config": {"header": "x-hook-token"}, "secrets": ["t0ken-for-plain"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let deliver = || {
        app.client
            .post(app.url("/hooks/plain"))
            .header("x-hook-token", "t0ken-for-plain")
            .json(&json!({"in_Vendor": "ACME", "in_Amount": 3}))
            .send()
    };
    assert_eq!(deliver().await.unwrap().status(), 202);
    // Disabled behind the gateway's back, as an operator might in psql.
    sqlx::query("update webhooks set enabled = false where slug = 'plain'")
        .execute(&app.pool)
        .await
        .unwrap();
    eventually(
        "the disabled webhook is refused",
        Duration::from_secs(5),
        || async { deliver().await.unwrap().status() == 404 },
    )
    .await;
}

#[tokio::test]
async fn concurrent_repeats_of_webhook_deliveries_make_one_job_each_even_within_one_batch() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    // 180 callers at once from one address: above the per-address default.
    let (app, _) = setup_on(&sim, url, |s| s.limits.connections_per_address = 0).await;
    let res = app
        .admin(Method::POST, "/webhooks")
        .json(
            &json!({"slug": "burst", "process": "Invoices", "scheme": "token",
            "config": {"header": "x-hook-token"}, "secrets": ["t0ken-for-burst"],
            "dedup": "body.id", "mapping": {"in_Vendor": "body.vendor", "in_Amount": "body.amount"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());

    // 60 events, each delivered three times at once (180 requests in flight together).
    let calls = (0..180).map(|i| {
        let app = &app;
        async move {
            let event = i % 60;
            let res = app
                .client
                .post(app.url("/hooks/burst"))
                .header("x-hook-token", "t0ken-for-burst")
                .json(&json!({"id": format!("evt-{event}"), "vendor": format!("vendor-{event}"), "amount": event}))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            (event, status, body)
        }
    });
    let answers = batched(&app, 100, futures_util::future::join_all(calls)).await;
    let mut job_of = std::collections::HashMap::new();
    for (event, status, body) in &answers {
        if *status == 202 {
            assert_eq!(body["status"], "accepted", "{body}");
            let job = body["job_id"].as_str().unwrap().to_string();
            assert!(job_of.insert(*event, job).is_none(), "two jobs for {event}");
        }
    }
    assert_eq!(job_of.len(), 60, "each event accepted once");
    for (event, status, body) in &answers {
        if *status != 202 {
            assert_eq!(*status, 200, "{body}");
            assert_eq!(body["status"], "duplicate", "{body}");
            assert_eq!(
                body["job_id"].as_str(),
                Some(job_of[event].as_str()),
                "{body}"
            );
        }
    }
    let (jobs, first, duplicate, orphans): (i64, i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from jobs), \
                (select count(*) from webhook_deliveries where dedup = 'first' and job_id is not null), \
                (select count(*) from webhook_deliveries where dedup = 'duplicate'), \
                (select count(*) from jobs j where not exists \
                   (select 1 from webhook_deliveries d where d.job_id = j.id and d.dedup = 'first'))",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((jobs, first, duplicate, orphans), (60, 60, 120, 0));

    // Every job is started once, in the background.
    eventually("all 60 jobs started", Duration::from_secs(10), || async {
        let n: i64 =
            sqlx::query_scalar("select count(*) from jobs where orchestrator_job_id is not null")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        n == 60
    })
    .await;
    let starts = sim
        .calls("StartJobs")
        .await
        .iter()
        .filter(|c| c["status"] == 201)
        .count();
    assert_eq!(starts, 60);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let largest = metrics
        .lines()
        .filter(|l| l.starts_with("ugw_batch_size{batch=\"hook_insert\",quantile=\"1\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, f64::max);
    assert!(
        largest > 1.0,
        "no batch of more than one delivery:\n{metrics}"
    );
}

#[tokio::test]
async fn runs_go_on_when_the_database_ends_every_session_of_the_gateway() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    let (app, key) = setup_on(&sim, url.clone(), |_| {}).await;
    let run = || async {
        let res = app
            .client
            .post(app.url("/run/Invoices"))
            .bearer_auth(&key)
            .json(&json!({"in_Vendor": "ACME", "in_Amount": 1}))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json::<Value>().await.unwrap())
    };
    // The ledger now keeps a connection between its batches.
    assert_eq!(run().await.0, 202);

    // An administrator (or a failover) ends every session of the gateway's database.
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(url.expose_secret())
        .await
        .unwrap();
    let ended: i64 = sqlx::query_scalar(
        "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity \
         where datname = current_database() and pid <> pg_backend_pid()) s",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(ended >= 1, "no session of the gateway was ended");

    // Each request is recorded and started as before: broken connections are replaced.
    for _ in 0..3 {
        let (status, body) = run().await;
        assert_eq!(status, 202, "{body}");
        assert!(body["orchestrator_job_id"].is_i64(), "{body}");
    }
    // Start marks follow the answers in the next group commit.
    app.state.ledger.settled().await.unwrap();
    let jobs: i64 =
        sqlx::query_scalar("select count(*) from jobs where orchestrator_job_id is not null")
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!(jobs, 4);
}

/// Writes the `n` writes of `items` as one group commit: holds every write to `jobs`
/// while blocking inserts take every batch slot, submits `items`, and lets go once all
/// `n` wait, so the next batch carries exactly them.
async fn one_batch<T>(app: &TestApp, n: usize, items: impl std::future::Future<Output = T>) -> T {
    let ledger = &app.state.ledger;
    let process = invoices(app).await;
    let blocker = || {
        let (ledger, job) = (ledger.clone(), new_job(&process));
        tokio::spawn(async move { ledger.insert(job).await.unwrap() })
    };
    let on_the_lock = |n: i64| async move {
        eventually(
            "writes waiting on the lock",
            Duration::from_secs(10),
            || async {
                let waiters: i64 = sqlx::query_scalar(
                    "select count(*) from pg_stat_activity \
                 where datname = current_database() and wait_event_type = 'Lock'",
                )
                .fetch_one(&app.pool)
                .await
                .unwrap();
                waiters == n
            },
        )
        .await
    };
    let mut hold = app.pool.begin().await.unwrap();
    sqlx::query("lock table jobs in share mode")
        .execute(&mut *hold)
        .await
        .unwrap();
    let mut blockers = Vec::new();
    for slot in 1..=BATCHES_IN_FLIGHT {
        blockers.push(blocker());
        on_the_lock(slot as i64).await;
    }
    let release = async {
        eventually(
            "the batch's writes waiting",
            Duration::from_secs(10),
            || async { ledger.waiting() == n },
        )
        .await;
        hold.commit().await.unwrap();
    };
    let (out, ()) = tokio::join!(items, release);
    for b in blockers {
        b.await.unwrap();
    }
    out
}

async fn invoices(app: &TestApp) -> ProcessRow {
    processes::get(&app.pool, "Invoices")
        .await
        .unwrap()
        .unwrap()
}

/// A job made the one way jobs are made (`app::submit::new_job`).
fn job_from(process: &ProcessRow, source: &'static str) -> NewJob {
    let input = json!({"in_Vendor": "ACME"}).as_object().cloned().unwrap();
    submit::new_job(process, source, None, input, None, None)
}

fn new_job(process: &ProcessRow) -> NewJob {
    job_from(process, "api")
}

fn hook_job(process: &ProcessRow, webhook_id: uuid::Uuid, key: &str) -> HookJob {
    let job = job_from(process, "hook");
    HookJob {
        delivery: Delivery {
            id: uuid::Uuid::new_v4(),
            webhook_id,
            delivery_key: Some(key.into()),
            verification: "ok".into(),
            verification_detail: None,
            dedup: "first".into(),
            filter_result: None,
            mapped_input: Some(job.input.clone()),
            job_id: Some(job.id),
            error: None,
            outcome: "accepted".into(),
            request_headers: None,
            request_query: None,
            request_body: Some(b"{}".to_vec()),
            replay_of: None,
            received_at: None,
            body_sha256: None,
        },
        job,
    }
}

fn mark(id: uuid::Uuid, orchestrator_job_id: i64) -> Started {
    Started {
        id,
        orchestrator_job_id,
        orchestrator_job_key: None,
        state: uipath_gateway::storage::jobs::JobState::Pending,
        detail: json!({"orchestrator_job_id": orchestrator_job_id}),
    }
}

#[tokio::test]
async fn one_commit_carries_new_jobs_deliveries_and_start_marks_in_every_mix() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    let (app, _) = setup_on(&sim, url, |_| {}).await;
    let res = app
        .admin(Method::POST, "/webhooks")
        .json(&json!({"slug": "mix", "process": "Invoices", "scheme": "token",
            "config": {"header": "x-hook-token"}, "secrets": ["t0ken-for-mix"], "dedup": "body.id"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let webhook_id: uuid::Uuid = sqlx::query_scalar("select id from webhooks where slug = 'mix'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let process = invoices(&app).await;
    let ledger = &app.state.ledger;
    // Jobs already recorded, waiting for their marks.
    let mut queued = Vec::new();
    for _ in 0..4 {
        queued.push(ledger.insert(new_job(&process)).await.unwrap().id);
    }

    // New jobs with marks; deliveries with marks; all three kinds; and a mark for a job
    // that is no longer queued (it answers None and changes nothing).
    let (job, marked) = one_batch(&app, 2, async {
        tokio::join!(
            ledger.insert(new_job(&process)),
            ledger.started(mark(queued[0], 100))
        )
    })
    .await;
    let (delivered, marked_too) = one_batch(&app, 2, async {
        tokio::join!(
            ledger.hook(hook_job(&process, webhook_id, "evt-1")),
            ledger.started(mark(queued[1], 101))
        )
    })
    .await;
    let (job_too, delivered_too, taken, again) = one_batch(&app, 4, async {
        tokio::join!(
            ledger.insert(new_job(&process)),
            ledger.hook(hook_job(&process, webhook_id, "evt-2")),
            ledger.hook(hook_job(&process, webhook_id, "evt-1")),
            ledger.started(mark(queued[0], 999)),
        )
    })
    .await;

    let (job, job_too) = (job.unwrap(), job_too.unwrap());
    assert_eq!(
        (job.state.as_str(), job_too.state.as_str()),
        ("queued", "queued")
    );
    let (delivered, delivered_too) = (delivered.unwrap().unwrap(), delivered_too.unwrap().unwrap());
    assert_eq!(delivered.source, "hook");
    assert_eq!(delivered_too.source, "hook");
    assert!(
        taken.unwrap().is_none(),
        "a repeated delivery key stores nothing"
    );
    let marked = marked.unwrap().expect("the queued job is marked");
    assert_eq!(
        (marked.state.as_str(), marked.orchestrator_job_id),
        ("pending", Some(100))
    );
    let marked_too = marked_too.unwrap().expect("the queued job is marked");
    assert_eq!(marked_too.orchestrator_job_id, Some(101));
    assert!(
        again.unwrap().is_none(),
        "a job no longer queued is not marked again"
    );

    // As stored: each new job once with one `queued` event; each marked job with one start
    // event; the late mark changed nothing.
    let rows: Vec<(uuid::Uuid, String, Option<i64>, i64, i64)> = sqlx::query_as(
        "select j.id, j.state, j.orchestrator_job_id, \
           (select count(*) from job_events e where e.job_id = j.id and e.state = 'queued'), \
           (select count(*) from job_events e where e.job_id = j.id and e.source = 'dispatcher') \
         from jobs j where j.id = any($1)",
    )
    .bind(vec![
        job.id,
        job_too.id,
        delivered.id,
        delivered_too.id,
        queued[0],
        queued[1],
    ])
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let by_id: std::collections::HashMap<_, _> = rows
        .into_iter()
        .map(|(id, state, orch, q, d)| (id, (state, orch, q, d)))
        .collect();
    for id in [job.id, job_too.id, delivered.id, delivered_too.id] {
        assert_eq!(by_id[&id], ("queued".to_string(), None, 1, 0), "{id}");
    }
    assert_eq!(by_id[&queued[0]], ("pending".to_string(), Some(100), 1, 1));
    assert_eq!(by_id[&queued[1]], ("pending".to_string(), Some(101), 1, 1));
    let deliveries: i64 = sqlx::query_scalar("select count(*) from webhook_deliveries")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(deliveries, 2);
}

#[tokio::test]
async fn idempotency_keys_are_claimed_in_the_group_commit_one_job_per_key_even_within_one_batch() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    // 90 callers at once from one address: above the per-address default.
    let (app, key) = setup_on(&sim, url, |s| s.limits.connections_per_address = 0).await;
    // 30 keys, each sent three times at once with the same body.
    let calls = (0..90).map(|i| {
        let (app, key) = (&app, &key);
        async move {
            let k = i % 30;
            let amount = k;
            let res = app
                .client
                .post(app.url("/run/Invoices"))
                .bearer_auth(key)
                .header("idempotency-key", format!("order-{k}"))
                .json(&json!({"in_Vendor": format!("vendor-{k}"), "in_Amount": amount}))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            (i, k, status, body)
        }
    });
    let answers = batched(&app, 60, futures_util::future::join_all(calls)).await;
    let mut job_of: std::collections::HashMap<usize, String> = Default::default();
    for (_, k, status, body) in &answers {
        assert_eq!(*status, 202, "{body}");
        let id = body["id"].as_str().unwrap().to_string();
        if let Some(seen) = job_of.insert(*k, id.clone()) {
            assert_eq!(seen, id, "two jobs for key order-{k}");
        }
    }
    let jobs: i64 = sqlx::query_scalar("select count(*) from jobs")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 30, "one job per key");
    let repeats = answers
        .iter()
        .filter(|a| a.3["id"].as_str().is_some())
        .count();
    assert_eq!(repeats, 90);
    // A used key with another body is refused.
    let res = app
        .client
        .post(app.url("/run/Invoices"))
        .bearer_auth(&key)
        .header("idempotency-key", "order-0")
        .json(&json!({"in_Vendor": "vendor-0", "in_Amount": 999}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
}
