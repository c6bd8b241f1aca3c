//! Queue items at the scale users reach: thousands of items added through an outage, 502s
//! after the item was created, 500s and dropped webhooks end as exactly one item each in
//! Orchestrator, each tracked to its end, none lost, none dead-lettered.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::db;
use crate::helpers::setup::{SECRET, setup_on};
use crate::helpers::sim::spawn_sim;

const ITEMS: usize = 2_000;

#[tokio::test]
async fn thousands_of_items_through_an_outage_are_each_added_once_and_tracked_to_their_end() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    let (app, key) = setup_on(&sim, url, |s| {
        s.rate_limits.api_key_per_second = 0;
        s.dispatch.poll_interval_ms = 100;
        s.dispatch.lease_secs = 5;
        s.dispatch.reconcile_after_secs = 1;
        s.tracking.pass_interval_ms = 200;
        s.tracking.poll_every_secs = 2;
        // An item whose events were dropped is polled this long after its last news.
        s.tracking.poll_every_secs_with_webhooks = 5;
        s.orchestrator.timeout_ms = 2_000;
        s.database.max_connections = 20;
    })
    .await;
    for (name, folder) in [("InvoicesToBook", "Finance/AP"), ("Leads", "Shared")] {
        let res = app
            .admin(Method::POST, "/queue-mappings")
            .json(&json!({"name": name, "connection": "sim", "folder": folder, "queue": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    // Orchestrator's webhooks are the fast path; some are dropped, and the poller catches up.
    let token = sim.token().await;
    let hook = json!({"Name": "gateway", "Url": app.url("/orchestrator/events/sim"), "Enabled": true,
        "Secret": SECRET, "SubscribeToAllEvents": false, "AllowInsecureSsl": false,
        "Events": uipath_gateway::workers::webhook_registration::JOB_EVENTS.iter()
            .map(|e| json!({"EventType": e})).collect::<Vec<_>>()});
    assert_eq!(
        sim.post(&sim.cloud("/odata/Webhooks"), &token, None, &hook)
            .await
            .status(),
        201
    );

    // An outage first: every add answers 503 with Retry-After.
    sim.control(
        Method::PUT,
        "/faults",
        Some(
            json!({"errors": [{"status": 503, "path_contains": "AddQueueItem", "retry_after": 2}]}),
        ),
    )
    .await;
    let started = Instant::now();
    let answers: Vec<(u16, Value)> = futures_util::stream::iter(0..ITEMS)
        .map(|n| {
            let (app, key) = (&app, &key);
            async move {
                let (queue, body) = if n % 2 == 0 {
                    (
                        "InvoicesToBook",
                        json!({"InvoiceNumber": format!("INV-{n}"), "Amount": n}),
                    )
                } else {
                    ("Leads", json!({"Name": format!("Lead {n}")}))
                };
                // As a client should: an answer that recorded nothing for sure (503, when
                // the database is slower than `write_timeout_ms` on a loaded machine) is
                // retried with the same Idempotency-Key.
                let mut tries = 0;
                loop {
                    let res = app
                        .client
                        .post(app.url(&format!("/queues/{queue}")))
                        .bearer_auth(key)
                        .header("Idempotency-Key", format!("scale-{n}"))
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    let status = res.status().as_u16();
                    tries += 1;
                    if status != 503 || tries == 20 {
                        return (status, res.json().await.unwrap_or_default());
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let accepted: Vec<String> = answers
        .iter()
        .filter(|(s, _)| *s == 202)
        .map(|(_, v)| v["id"].as_str().unwrap().to_string())
        .collect();
    let others: Vec<&(u16, Value)> = answers.iter().filter(|(s, _)| *s != 202).take(3).collect();
    assert_eq!(
        accepted.len(),
        ITEMS,
        "every add was accepted (recorded): {others:?}"
    );
    eprintln!(
        "{ITEMS} accepted in {:?} during the outage",
        started.elapsed()
    );

    // Then a flaky Orchestrator: 502s after the item was created and dropped webhooks,
    // then 500s on a fifth of all calls.
    sim.control(
        Method::PUT,
        "/faults",
        Some(json!({"latency_ms": 20, "add_then_502": 300, "drop_webhooks": 500})),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    sim.control(
        Method::PUT,
        "/faults",
        Some(json!({"errors": [{"status": 500, "path_contains": "/odata/", "rate": 0.2}]})),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    sim.control(Method::DELETE, "/faults", None).await;
    let healed = Instant::now();
    let states: Vec<(String, i64)> =
        sqlx::query_as("select state, count(*) from jobs group by 1 order by 1")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    eprintln!("at healing: {states:?}");

    // Every item ends (the robot succeeds every item).
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (open, ended): (i64, i64) = sqlx::query_as(
            "select count(*) filter (where state not in ('successful', 'faulted', 'stopped', 'rejected', 'dead')), \
             count(*) filter (where state = 'successful') from jobs where kind = 'queue_item'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if open == 0 {
            assert_eq!(ended as usize, ITEMS, "every item successful");
            break;
        }
        assert!(Instant::now() < deadline, "{open} items still open");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("all ended {:?} after healing", healed.elapsed());

    // Exactly one item per Reference in Orchestrator, and it is the one the ledger holds.
    let items: Vec<Value> = sim.read("/queue-items").await;
    let mut by_reference: HashMap<String, Vec<i64>> = HashMap::new();
    for i in &items {
        by_reference
            .entry(i["Reference"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(i["Id"].as_i64().unwrap());
    }
    let doubled: Vec<_> = by_reference
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .collect();
    assert!(
        doubled.is_empty(),
        "{} references added twice: {:?}",
        doubled.len(),
        &doubled[..doubled.len().min(3)]
    );
    assert_eq!(items.len(), ITEMS, "one item per accepted add");
    let ledger: Vec<(String, i64)> =
        sqlx::query_as("select reference, orchestrator_job_id from jobs where kind = 'queue_item'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let wrong: Vec<_> = ledger
        .iter()
        .filter(|(r, id)| by_reference.get(r).map(|ids| ids[0]) != Some(*id))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} disagree: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(3)]
    );
    let (dead, looked_up): (i64, i64) = sqlx::query_as(
        "select (select count(*) from jobs where state = 'dead'), \
         (select count(distinct job_id) from job_events where state = 'unknown')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    eprintln!("looked up by Reference after an unknown add: {looked_up}");
    assert_eq!(dead, 0);
    assert!(looked_up > 0, "some adds were ambiguous (502 after create)");
}
