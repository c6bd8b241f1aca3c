//! Queue items: `POST /queues/{name}` records an item, adds it to its Orchestrator queue
//! exactly once (unique references adopted, ambiguous adds reconciled by Reference) and
//! tracks it to its end, with its output or processing exception.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::TestApp;
use crate::helpers::db;
use crate::helpers::setup::{eventually, setup_on};
use crate::helpers::sim::{Sim, spawn_sim};

const ADD: &str = "AddQueueItem";

async fn app_with(
    adjust_sim: impl FnOnce(&mut uipath_gateway::simulator::scenario::Scenario),
) -> (TestApp, Sim, String) {
    let sim = spawn_sim(adjust_sim).await;
    let (_, url) = db::server().fresh_database().await;
    // The workers run as in production: the dispatcher, the reconciler and the poller
    // pass every 100 ms (no Orchestrator webhooks here: the poller tracks the items).
    let (app, key) = setup_on(&sim, url, |s| {
        s.rate_limits.api_key_per_second = 0;
        s.allow_private_callbacks = true;
        s.dispatch.poll_interval_ms = 100;
        s.tracking.pass_interval_ms = 100;
        s.callbacks.poll_interval_ms = 100;
        s.dispatch.reconcile_after_secs = 0;
    })
    .await;
    for (name, folder, queue) in [
        ("InvoicesToBook", "Finance/AP", "InvoicesToBook"),
        ("Leads", "Shared", "Leads"),
    ] {
        let res = app
            .admin(Method::POST, "/queue-mappings")
            .json(
                &json!({"name": name, "connection": "sim", "folder": folder, "queue": queue,
                "max_wait_seconds": 30}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    }
    (app, sim, key)
}

async fn add(app: &TestApp, key: &str, queue: &str, query: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/queues/{queue}{query}")))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn item(app: &TestApp, key: &str, id: &str) -> Value {
    let res = app
        .client
        .get(app.url(&format!("/queue-items/{id}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn ended(app: &TestApp, key: &str, id: &str) -> Value {
    let res = app
        .client
        .get(app.url(&format!("/queue-items/{id}?wait=20")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the item did not end in time");
    res.json().await.unwrap()
}

/// The simulator's items that carry `reference`.
async fn sim_items(sim: &Sim, reference: &str) -> Vec<Value> {
    let token = sim.token().await;
    let mut all = Vec::new();
    for folder in ["1", "3"] {
        let page: Value = sim
            .get(
                &sim.cloud("/odata/QueueItems?$top=1000"),
                &token,
                Some(("X-UIPATH-OrganizationUnitId", folder)),
            )
            .await
            .json()
            .await
            .unwrap();
        all.extend(
            page["value"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["Reference"] == reference)
                .cloned(),
        );
    }
    all
}

#[tokio::test]
async fn an_item_is_added_and_tracked_to_successful_with_its_output() {
    let (app, sim, key) = app_with(|_| {}).await;
    let res = add(
        &app,
        &key,
        "InvoicesToBook",
        "?priority=High&due_date=2026-12-31T17:00:00Z",
        json!({"InvoiceNumber": "INV-1", "Amount": 12.5}),
    )
    .await;
    assert_eq!(res.status(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let added: Value = res.json().await.unwrap();
    let id = added["id"].as_str().unwrap();
    assert_eq!(location, format!("/queue-items/{id}"));
    assert_eq!(added["kind"], "queue_item");
    assert_eq!(added["reference"], format!("ugw-{id}"));
    assert!(added["orchestrator_job_id"].is_i64(), "{added}");

    let done = ended(&app, &key, id).await;
    assert_eq!(done["state"], "successful", "{done}");
    assert_eq!(done["output"], json!({"BookingId": "BK-1001"}));
    assert_eq!(done["input"]["content"]["InvoiceNumber"], "INV-1");

    // What Orchestrator got: our Reference, the content, the priority and due date, in a
    // request that fits UiPath's own AddQueueItemRequest.
    let schemas = crate::helpers::spec::Schemas::load();
    let sent = sim.calls(ADD).await;
    assert_eq!(sent.len(), 1);
    schemas.check("AddQueueItemRequest", &sent[0]["body"]);
    assert_eq!(
        sent[0]["body"]["itemData"]["Reference"],
        format!("ugw-{id}")
    );
    let items = sim_items(&sim, &format!("ugw-{id}")).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["Priority"], "High");
    assert_eq!(items[0]["SpecificContent"]["Amount"], 12.5);
    assert!(
        items[0]["DueDate"]
            .as_str()
            .unwrap()
            .starts_with("2026-12-31")
    );

    // Listed among queue items, not among jobs.
    let page: Value = app
        .client
        .get(app.url("/queue-items?process=InvoicesToBook"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"][0]["id"], id);
    let jobs: Value = app
        .client
        .get(app.url("/jobs"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(jobs["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_item_ends_faulted_with_its_exception_after_its_retries() {
    let (app, sim, key) = app_with(|s| {
        s.queue_behaviours.insert(
            "Leads".into(),
            uipath_gateway::simulator::scenario::QueueBehaviour {
                outcome: uipath_gateway::simulator::scenario::QueueOutcome::BusinessException,
                reason: "Lead has no e-mail".into(),
                ..Default::default()
            },
        );
        s.queue_behaviours.insert(
            "InvoicesToBook".into(),
            uipath_gateway::simulator::scenario::QueueBehaviour {
                outcome: uipath_gateway::simulator::scenario::QueueOutcome::ApplicationException,
                reason: "SAP timed out".into(),
                ..Default::default()
            },
        );
    })
    .await;
    let res = add(&app, &key, "Leads", "", json!({"Name": "Ada"})).await;
    assert_eq!(res.status(), 202);
    let lead: Value = res.json().await.unwrap();
    let done = ended(&app, &key, lead["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "faulted");
    assert_eq!(done["error"]["Reason"], "Lead has no e-mail", "{done}");
    assert_eq!(done["error"]["Type"], "BusinessException");

    // An application exception is retried once by the queue: the ledger follows the retry
    // and ends with it, as one item.
    let res = add(
        &app,
        &key,
        "InvoicesToBook",
        "",
        json!({"InvoiceNumber": "INV-2", "Amount": 1}),
    )
    .await;
    let invoice: Value = res.json().await.unwrap();
    let id = invoice["id"].as_str().unwrap();
    let done = ended(&app, &key, id).await;
    assert_eq!(done["state"], "faulted", "{done}");
    assert_eq!(done["error"]["Reason"], "SAP timed out");
    let items = sim_items(&sim, &format!("ugw-{id}")).await;
    assert_eq!(items.len(), 2, "the item and its retry");
    let retry = items.iter().find(|i| i["RetryNumber"] == 1).unwrap();
    assert_eq!(done["orchestrator_job_id"], retry["Id"]);
    let full = item(&app, &key, id).await;
    let states: Vec<&str> = full["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert!(states.contains(&"retried"), "{states:?}");
}

#[tokio::test]
async fn content_that_breaks_the_queue_schema_is_refused_naming_the_field_and_nothing_is_sent() {
    let (app, sim, key) = app_with(|_| {}).await;
    let res = add(
        &app,
        &key,
        "InvoicesToBook",
        "",
        json!({"InvoiceNumber": "INV-3", "Amount": "twelve"}),
    )
    .await;
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["code"], "invalid_content");
    assert_eq!(p["errors"][0]["field"], "Amount", "{p}");
    assert!(
        !p.to_string().contains("twelve"),
        "the value is not echoed: {p}"
    );
    let missing = add(&app, &key, "InvoicesToBook", "", json!({"Amount": 1})).await;
    let p: Value = missing.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "InvoiceNumber", "{p}");
    let bad = add(&app, &key, "InvoicesToBook", "?priority=Urgent", json!({})).await;
    assert_eq!(bad.status(), 422);

    assert!(
        sim.calls(ADD).await.is_empty(),
        "nothing reached Orchestrator"
    );
    let recorded: i64 = sqlx::query_scalar("select count(*) from jobs")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(recorded, 0);
    // A queue is not a process, and a process is not a queue.
    assert_eq!(
        add(&app, &key, "Invoices", "", json!({})).await.status(),
        404
    );
    let run = app
        .client
        .post(app.url("/run/InvoicesToBook"))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 404);
}

#[tokio::test]
async fn a_duplicate_reference_on_a_unique_queue_is_adopted_not_doubled() {
    let (app, sim, key) = app_with(|_| {}).await;
    let body = json!({"InvoiceNumber": "INV-7", "Amount": 7});
    let first: Value = add(
        &app,
        &key,
        "InvoicesToBook",
        "?reference=INV-7",
        body.clone(),
    )
    .await
    .json()
    .await
    .unwrap();
    let second = add(&app, &key, "InvoicesToBook", "?reference=INV-7", body).await;
    assert_eq!(second.status(), 202);
    let second: Value = second.json().await.unwrap();
    assert_ne!(
        first["id"], second["id"],
        "two requests, two ledger entries"
    );
    assert_eq!(second["reference"], "INV-7");
    assert_eq!(
        first["orchestrator_job_id"], second["orchestrator_job_id"],
        "the second adopts the item the first added"
    );
    let done = ended(&app, &key, second["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "successful");
    let timeline = done["timeline"].to_string();
    assert!(timeline.contains("adopted"), "{timeline}");
    assert_eq!(sim_items(&sim, "INV-7").await.len(), 1);
}

#[tokio::test]
async fn an_add_answered_502_after_it_created_the_item_ends_as_exactly_one_item_on_both_kinds_of_queue()
 {
    let (app, sim, key) = app_with(|_| {}).await;
    for (queue, body) in [
        (
            "InvoicesToBook",
            json!({"InvoiceNumber": "INV-9", "Amount": 9}),
        ),
        ("Leads", json!({"Name": "Grace"})),
    ] {
        sim.control(Method::PUT, "/faults", Some(json!({"add_then_502": 1})))
            .await;
        let res = add(&app, &key, queue, "", body).await;
        assert_eq!(res.status(), 202);
        let added: Value = res.json().await.unwrap();
        let id = added["id"].as_str().unwrap().to_string();
        let done = ended(&app, &key, &id).await;
        assert_eq!(done["state"], "successful", "{queue}: {done}");
        assert_eq!(
            sim_items(&sim, &format!("ugw-{id}")).await.len(),
            1,
            "{queue}: exactly one item"
        );
        let timeline = done["timeline"].to_string();
        assert!(timeline.contains("unknown"), "{queue}: {timeline}");
    }
}

#[tokio::test]
async fn waiting_idempotency_and_callbacks_work_for_items_as_for_jobs() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/booked"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let (app, _sim, key) = app_with(|_| {}).await;
    let query = format!("?wait=20&callback_url={}/booked", receiver.uri());
    let send = || async {
        app.client
            .post(app.url(&format!("/queues/InvoicesToBook{query}")))
            .bearer_auth(&key)
            .header("Idempotency-Key", "book-11")
            .json(&json!({"InvoiceNumber": "INV-11", "Amount": 11}))
            .send()
            .await
            .unwrap()
    };
    let res = send().await;
    assert_eq!(res.status(), 200, "the wait saw the end");
    let done: Value = res.json().await.unwrap();
    assert_eq!(done["state"], "successful");
    let again = send().await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], done["id"]);

    eventually("the callback", Duration::from_secs(20), || async {
        !receiver.received_requests().await.unwrap().is_empty()
    })
    .await;
    let sent = &receiver.received_requests().await.unwrap()[0];
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body["type"], "queue_item.successful", "{body}");
    assert_eq!(body["data"]["id"], done["id"]);
    assert_eq!(body["data"]["output"], json!({"BookingId": "BK-1001"}));

    // A key scoped to another target may not add items here.
    let other = crate::helpers::setup::api_key(&app, "orders", json!(["run:Orders"])).await;
    let res = add(&app, &other, "InvoicesToBook", "", json!({})).await;
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn a_webhook_can_add_an_item_to_a_queue() {
    let (app, sim, key) = app_with(|_| {}).await;
    let res = app
        .admin(Method::POST, "/webhooks")
        .json(
            &json!({"slug": "crm-leads", "process": "Leads", "scheme": "token",
            "secrets": ["lead-token-0123456789"], "config": {"header": "X-Acme-Token"},
            "mapping": {"Name": "body.contact.name", "Source": "'crm'"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let res = app
        .client
        .post(app.url("/hooks/crm-leads"))
        .header("X-Acme-Token", "lead-token-0123456789")
        .json(&json!({"contact": {"name": "Linus"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    let receipt: Value = res.json().await.unwrap();
    let id = receipt["job_id"].as_str().unwrap();
    // A mapping that leaves out what the queue's schema requires is refused when saved.
    let res = app
        .admin(Method::POST, "/webhooks")
        .json(
            &json!({"slug": "erp-invoices", "process": "InvoicesToBook", "scheme": "token",
            "secrets": ["erp-token-0123456789"], "config": {"header": "X-Acme-Token"},
            "mapping": {"InvoiceNumber": "body.number"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "mapping", "{p}");
    assert!(p.to_string().contains("Amount"), "{p}");
    let done = ended(&app, &key, id).await;
    assert_eq!(done["kind"], "queue_item");
    assert_eq!(done["source"], "hook");
    assert_eq!(done["state"], "successful");
    let items = sim_items(&sim, &format!("ugw-{id}")).await;
    assert_eq!(items[0]["SpecificContent"]["Name"], "Linus");
    assert_eq!(items[0]["SpecificContent"]["Source"], "crm");
}

#[tokio::test]
async fn each_queue_mapping_is_its_own_typed_operation_whose_example_is_accepted() {
    let (app, _sim, key) = app_with(|_| {}).await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let op = &doc["paths"]["/queues/InvoicesToBook"]["post"];
    assert_eq!(op["operationId"], "add_InvoicesToBook");
    let body = &op["requestBody"]["content"]["application/json"];
    assert_eq!(
        body["schema"]["required"],
        json!(["InvoiceNumber", "Amount"])
    );
    assert_eq!(
        body["schema"]["properties"]["Amount"]["type"], "number",
        "the queue's own schema"
    );
    let output = op["responses"]["202"]["content"]["application/json"]["schema"].to_string();
    assert!(output.contains("BookingId"), "the output schema: {output}");
    let generic = &doc["paths"]["/queues/{queue}"]["post"]["parameters"];
    assert!(generic.to_string().contains("Leads"), "{generic}");

    // The published example is accepted as it is.
    let res = add(&app, &key, "InvoicesToBook", "", body["example"].clone()).await;
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
}

#[tokio::test]
async fn an_item_in_its_queue_cannot_be_stopped_and_mappings_are_checked_when_saved() {
    // The robot takes Leads items only after a minute: the item stays New in its queue.
    let (app, _sim, key) = app_with(|s| {
        s.queue_behaviours.insert(
            "Leads".into(),
            uipath_gateway::simulator::scenario::QueueBehaviour {
                pickup_ms: 60_000,
                ..Default::default()
            },
        );
    })
    .await;
    let added: Value = add(&app, &key, "Leads", "", json!({"Name": "Barbara"}))
        .await
        .json()
        .await
        .unwrap();
    let id = added["id"].as_str().unwrap();
    let res = app
        .client
        .post(app.url(&format!("/jobs/{id}/stop")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["code"], "not_stoppable", "{p}");
    assert_eq!(
        item(&app, &key, id).await["state"],
        "pending",
        "left as it was"
    );

    // A queue the folder does not have: 422 naming the field, listing what it has.
    let res = app
        .admin(Method::POST, "/queue-mappings")
        .json(&json!({"name": "Nope", "connection": "sim", "folder": "Finance/AP", "queue": "Invoices2Book"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "queue", "{p}");
    assert!(p.to_string().contains("InvoicesToBook"), "{p}");
    // Default content that breaks the queue's schema is refused when saved.
    let res = app
        .admin(Method::POST, "/queue-mappings")
        .json(&json!({"name": "Bad", "connection": "sim", "folder": "Finance/AP", "queue": "InvoicesToBook",
            "default_content": {"Amount": "lots"}}))
        .send()
        .await
        .unwrap();
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "default_content.Amount", "{p}");
    // A name a process has is taken.
    let res = app
        .admin(Method::POST, "/queue-mappings")
        .json(
            &json!({"name": "Invoices", "connection": "sim", "folder": "Shared", "queue": "Leads"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    // Its callback secret is rotated as a queue mapping's, not as a process's.
    let rotated: Value = app
        .admin(Method::POST, "/queue-mappings/Leads/callback-secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        rotated["callback_secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
    let res = app
        .admin(Method::POST, "/processes/Leads/callback-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // Not a process, not in the process list.
    let listed = app.admin_get("/processes").await;
    assert!(!listed.to_string().contains("Leads"), "{listed}");
    assert_eq!(
        app.admin(Method::GET, "/processes/Leads")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn queue_item_events_bring_the_end_and_follow_retries_without_any_poll() {
    let sim = spawn_sim(|s| {
        s.queue_behaviours.insert(
            "InvoicesToBook".into(),
            uipath_gateway::simulator::scenario::QueueBehaviour {
                outcome: uipath_gateway::simulator::scenario::QueueOutcome::ApplicationException,
                reason: "SAP timed out".into(),
                ..Default::default()
            },
        );
    })
    .await;
    let (_, url) = db::server().fresh_database().await;
    // The dispatcher runs; the poller does not (its pass is an hour away).
    let (app, key) = setup_on(&sim, url, |s| s.dispatch.poll_interval_ms = 100).await;
    let res = app
        .admin(Method::POST, "/queue-mappings")
        .json(
            &json!({"name": "InvoicesToBook", "connection": "sim", "folder": "Finance/AP",
            "queue": "InvoicesToBook"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let token = sim.token().await;
    let hook = json!({"Name": "gateway", "Url": app.url("/orchestrator/events/sim"), "Enabled": true,
        "Secret": crate::helpers::setup::SECRET, "SubscribeToAllEvents": false, "AllowInsecureSsl": false,
        "Events": uipath_gateway::workers::webhook_registration::JOB_EVENTS.iter()
            .map(|e| json!({"EventType": e})).collect::<Vec<_>>()});
    let res = sim
        .post(&sim.cloud("/odata/Webhooks"), &token, None, &hook)
        .await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());

    let added: Value = add(
        &app,
        &key,
        "InvoicesToBook",
        "",
        json!({"InvoiceNumber": "INV-21", "Amount": 21}),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = added["id"].as_str().unwrap();
    let first = added["orchestrator_job_id"].as_i64();
    let done = ended(&app, &key, id).await;
    assert_eq!(done["state"], "faulted", "{done}");
    assert_ne!(
        done["orchestrator_job_id"].as_i64(),
        first,
        "the ledger follows the retry: {done}"
    );
    let sources = done["timeline"].to_string();
    assert!(sources.contains("webhook"), "{sources}");
    assert!(sources.contains("retried"), "{sources}");
    assert!(
        sim.calls("/odata/QueueItems").await.is_empty(),
        "no poll happened"
    );
}
