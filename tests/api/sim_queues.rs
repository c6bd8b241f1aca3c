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
