//! The simulator's queues: definitions with and without unique references and schemas,
//! AddQueueItem with Orchestrator's checks and errors, and item reads, all in UiPath's
//! own shapes.

use serde_json::{Value, json};

use crate::helpers::sim::{Sim, spawn_sim};
use crate::helpers::spec::Schemas;

const AP: Option<(&str, &str)> = Some(("X-UIPATH-OrganizationUnitId", "3"));
const SHARED: Option<(&str, &str)> = Some(("X-UIPATH-OrganizationUnitId", "1"));
const ADD: &str = "/odata/Queues/UiPathODataSvc.AddQueueItem";

async fn add(sim: &Sim, token: &str, folder: Option<(&str, &str)>, data: Value) -> (u16, Value) {
    let res = sim
        .post(&sim.cloud(ADD), token, folder, &json!({"itemData": data}))
        .await;
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn queue_items_are_added_checked_and_read_in_uipaths_shapes() {
    let schemas = Schemas::load();
    let sim = spawn_sim(|_| {}).await;
    let token = sim.token().await;

    let defs: Value = sim
        .get(&sim.cloud("/odata/QueueDefinitions"), &token, AP)
        .await
        .json()
        .await
        .unwrap();
    let defs = defs["value"].as_array().unwrap();
    assert_eq!(defs.len(), 1);
    schemas.check("QueueDefinitionDto", &defs[0]);
    assert_eq!(defs[0]["Name"], "InvoicesToBook");
    assert_eq!(defs[0]["EnforceUniqueReference"], true);
    assert!(
        defs[0]["SpecificDataJsonSchema"]
            .as_str()
            .unwrap()
            .contains("InvoiceNumber")
    );

    let request = json!({"itemData": {
        "Name": "InvoicesToBook", "Priority": "High", "Reference": "ugw-q-1",
        "SpecificContent": {"InvoiceNumber": "INV-1", "Amount": 12.5},
        "DueDate": "2026-12-31T00:00:00Z",
    }});
    schemas.check("AddQueueItemRequest", &request);
    let (status, item) = add(&sim, &token, AP, request["itemData"].clone()).await;
    assert_eq!(status, 201, "{item}");
    schemas.check("QueueItemDto", &item);
    assert_eq!(item["Status"], "New");
    assert_eq!(item["Reference"], "ugw-q-1");
    assert_eq!(item["Priority"], "High");
    assert_eq!(item["SpecificContent"]["InvoiceNumber"], "INV-1");

    // A unique queue refuses the same Reference again: 409, error 1016.
    let (status, err) = add(&sim, &token, AP, request["itemData"].clone()).await;
    assert_eq!((status, &err["errorCode"]), (409, &json!(1016)), "{err}");
    // Content that does not fit the queue's schema: 400, nothing added.
    let (status, err) = add(
        &sim,
        &token,
        AP,
        json!({"Name": "InvoicesToBook", "Reference": "ugw-q-2", "SpecificContent": {"Amount": "twelve"}}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("JSON schema"),
        "{err}"
    );
    // A queue that is not in the folder, and a Reference over 128 characters.
    let (status, _) = add(&sim, &token, SHARED, json!({"Name": "InvoicesToBook"})).await;
    assert_eq!(status, 404);
    let (status, _) = add(
        &sim,
        &token,
        SHARED,
        json!({"Name": "Leads", "Reference": "r".repeat(129)}),
    )
    .await;
    assert_eq!(status, 400);
    // A queue without unique references takes the same Reference twice.
    for _ in 0..2 {
        let (status, lead) = add(
            &sim,
            &token,
            SHARED,
            json!({"Name": "Leads", "Reference": "lead-7", "SpecificContent": {"Email": "a@b.c"}}),
        )
        .await;
        assert_eq!(status, 201, "{lead}");
    }

    // Reads: by Id, and by Reference through a filter.
    let id = item["Id"].as_i64().unwrap();
    let one: Value = sim
        .get(&sim.cloud(&format!("/odata/QueueItems({id})")), &token, AP)
        .await
        .json()
        .await
        .unwrap();
    schemas.check("QueueItemDto", &one);
    assert_eq!(one["Key"], item["Key"]);
    let found: Value = sim
        .get(
            &sim.cloud("/odata/QueueItems?$filter=Reference%20eq%20'ugw-q-1'"),
            &token,
            AP,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["value"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["value"][0]["Id"], id);
    let leads: Value = sim
        .get(
            &sim.cloud("/odata/QueueItems?$filter=Reference%20eq%20'lead-7'"),
            &token,
            SHARED,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(leads["value"].as_array().unwrap().len(), 2);
}

async fn item(sim: &Sim, token: &str, folder: Option<(&str, &str)>, id: i64) -> Value {
    sim.get(
        &sim.cloud(&format!("/odata/QueueItems({id})")),
        token,
        folder,
    )
    .await
    .json()
    .await
    .unwrap()
}

async fn ended(sim: &Sim, token: &str, folder: Option<(&str, &str)>, id: i64) -> Value {
    crate::helpers::setup::eventually(
        "the simulated robot ends the item",
        std::time::Duration::from_secs(10),
        || async {
            let now = item(sim, token, folder, id).await;
            !matches!(now["Status"].as_str(), Some("New" | "InProgress"))
        },
    )
    .await;
    item(sim, token, folder, id).await
}

#[tokio::test]
async fn a_simulated_robot_processes_items_to_their_outcome_and_retries_application_exceptions() {
    use uipath_gateway::simulator::scenario::{QueueBehaviour, QueueOutcome};
    let schemas = Schemas::load();
    let sim = spawn_sim(|s| {
        let fast = QueueBehaviour {
            pickup_ms: 20,
            processing_ms: 20,
            ..QueueBehaviour::default()
        };
        s.queue_behaviours.insert(
            "InvoicesToBook".into(),
            QueueBehaviour {
                output: json!({"BookingId": "BK-1"}),
                ..fast.clone()
            },
        );
        s.queue_behaviours.insert(
            "Leads".into(),
            QueueBehaviour {
                outcome: QueueOutcome::ApplicationException,
                reason: "The CRM timed out".into(),
                ..fast
            },
        );
        s.queues
            .iter_mut()
            .find(|q| q.name == "Leads")
            .unwrap()
            .max_number_of_retries = 1;
    })
    .await;
    let token = sim.token().await;

    let (_, added) = add(
        &sim,
        &token,
        AP,
        json!({"Name": "InvoicesToBook", "Reference": "done-1",
            "SpecificContent": {"InvoiceNumber": "INV-2", "Amount": 1}}),
    )
    .await;
    let done = ended(&sim, &token, AP, added["Id"].as_i64().unwrap()).await;
    schemas.check("QueueItemDto", &done);
    assert_eq!(done["Status"], "Successful", "{done}");
    assert_eq!(done["Output"], json!({"BookingId": "BK-1"}));
    assert!(done["StartProcessing"].is_string() && done["EndProcessing"].is_string());

    let (_, lead) = add(
        &sim,
        &token,
        SHARED,
        json!({"Name": "Leads", "Reference": "lead-1"}),
    )
    .await;
    let first = ended(&sim, &token, SHARED, lead["Id"].as_i64().unwrap()).await;
    assert_eq!(first["Status"], "Retried", "{first}");
    assert_eq!(first["ProcessingException"]["Type"], "ApplicationException");
    // The retry: a new item with the same Key and Reference, which fails for good.
    let retries: Value = sim
        .get(
            &sim.cloud(
                "/odata/QueueItems?$filter=Reference%20eq%20'lead-1'%20and%20RetryNumber%20eq%201",
            ),
            &token,
            SHARED,
        )
        .await
        .json()
        .await
        .unwrap();
    let retry = &retries["value"][0];
    assert_eq!(retry["AncestorId"], first["Id"], "{retries}");
    assert_eq!(retry["Key"], first["Key"]);
    let last = ended(&sim, &token, SHARED, retry["Id"].as_i64().unwrap()).await;
    schemas.check("QueueItemDto", &last);
    assert_eq!(last["Status"], "Failed");
    assert_eq!(last["ProcessingException"]["Reason"], "The CRM timed out");
}

#[tokio::test]
async fn queue_item_events_reach_webhooks_in_uipaths_shapes() {
    use uipath_gateway::simulator::scenario::{QueueBehaviour, QueueOutcome};
    let schemas = Schemas::load();
    let receiver = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let sim = spawn_sim(|s| {
        s.queue_behaviours.insert(
            "Leads".into(),
            QueueBehaviour {
                pickup_ms: 20,
                processing_ms: 20,
                outcome: QueueOutcome::BusinessException,
                ..QueueBehaviour::default()
            },
        );
    })
    .await;
    let token = sim.token().await;
    let hook = json!({"Name": "queues", "Url": format!("{}/events", receiver.uri()),
        "Enabled": true, "SubscribeToAllEvents": false, "AllowInsecureSsl": false,
        "Events": [{"EventType": "queueItem.added"}, {"EventType": "queueItem.started"},
            {"EventType": "queueItem.completed"}, {"EventType": "queueItem.failed"}]});
    let res = sim
        .post(&sim.cloud("/odata/Webhooks"), &token, None, &hook)
        .await;
    assert_eq!(res.status(), 201);
    let (status, _) = add(
        &sim,
        &token,
        SHARED,
        json!({"Name": "Leads", "Reference": "ev-1"}),
    )
    .await;
    assert_eq!(status, 201);

    let mut kinds = Vec::new();
    crate::helpers::setup::eventually(
        "the added, started and failed events arrive",
        std::time::Duration::from_secs(10),
        || async { receiver.received_requests().await.unwrap_or_default().len() >= 3 },
    )
    .await;
    for req in receiver.received_requests().await.unwrap() {
        let event: Value = serde_json::from_slice(&req.body).unwrap();
        let kind = event["Type"].as_str().unwrap().to_string();
        let dto = match kind.as_str() {
            "queueItem.added" => "QueueItemAddedEventDto",
            "queueItem.started" => "QueueItemStartedEventDto",
            "queueItem.failed" => "QueueItemFailedEventDto",
            other => panic!("unexpected event {other}"),
        };
        schemas.check(dto, &event);
        kinds.push(kind);
    }
    assert_eq!(
        kinds,
        ["queueItem.added", "queueItem.started", "queueItem.failed"]
    );
}
