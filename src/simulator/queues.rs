//! Queues: the queue definitions of a folder, AddQueueItem (with the queue's schema and
//! unique references enforced), and queue item reads and filtered lists (which share
//! the per-tenant limit of filtered lists).

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Map, Value, json};

use super::common::{Sim, authorize, folder, json_body, or_error, path_id, tenant};
use super::odata::{collection, query, try_res};

use super::scenario::QueueDefinition;
use super::state::{QueueItem, SimState, ts as time};

/// `QueueDefinitionDto` of a queue.
pub fn definition_dto(q: &QueueDefinition, state: &SimState) -> Value {
    let folder = state.scenario.folders.iter().find(|f| f.id == q.folder_id);
    json!({
        "Key": q.key,
        "Name": q.name,
        "Description": "",
        "MaxNumberOfRetries": q.max_number_of_retries,
        "AcceptAutomaticallyRetry": q.max_number_of_retries > 0,
        "RetryAbandonedItems": false,
        "EnforceUniqueReference": q.enforce_unique_reference,
        "Encrypted": false,
        "SpecificDataJsonSchema": q.specific_data_json_schema,
        "OutputDataJsonSchema": q.output_data_json_schema,
        "AnalyticsDataJsonSchema": null,
        "CreationTime": "2026-01-05T08:00:00Z",
        "ProcessScheduleId": null,
        "SlaInMinutes": 0,
        "RiskSlaInMinutes": 0,
        "ReleaseId": null,
        "IsProcessInCurrentFolder": null,
        "FoldersCount": 1,
        "OrganizationUnitId": q.folder_id,
        "OrganizationUnitFullyQualifiedName": folder.map(|f| f.fully_qualified_name.clone()),
        "Tags": [],
        "Id": q.id,
    })
}

/// `QueueItemDto` of an item.
pub fn item_dto(i: &QueueItem, state: &SimState) -> Value {
    let folder = state.scenario.folders.iter().find(|f| f.id == i.folder_id);
    json!({
        "QueueDefinitionId": i.queue_id,
        "ProcessingException": i.processing_exception,
        "Encrypted": false,
        "SpecificContent": i.specific_content,
        "Output": i.output,
        "OutputData": i.output.as_ref().map(|o| json!({"DynamicProperties": o}).to_string()),
        "Status": i.status,
        "ReviewStatus": "None",
        "Key": i.key,
        "Reference": i.reference,
        "ProcessingExceptionType": i.processing_exception.as_ref().map(|e| e["Type"].clone()),
        "DueDate": i.due_date,
        "RiskSlaDate": i.risk_sla_date,
        "Priority": i.priority,
        "DeferDate": i.defer_date,
        "StartProcessing": i.start_processing.map(time),
        "EndProcessing": i.end_processing.map(time),
        "SecondsInPreviousAttempts": 0,
        "AncestorId": i.ancestor_id,
        "RetryNumber": i.retry_number,
        "SpecificData": json!({"DynamicProperties": i.specific_content}).to_string(),
        "CreationTime": time(i.creation_time),
        "Progress": i.progress,
        "RowVersion": "AAAAAAAAB9E=",
        "OrganizationUnitId": i.folder_id,
        "OrganizationUnitFullyQualifiedName": folder.map(|f| f.fully_qualified_name.clone()),
        "Id": i.id,
    })
}

/// `GET /odata/QueueDefinitions`: the queues of the folder.
pub async fn list_definitions(req: HttpRequest, sim: web::Data<Sim>) -> HttpResponse {
    let state = sim.lock();
    let t = try_res!(tenant(&state, &req));
    try_res!(authorize(&state, &req, &t, "OR.Queues", false));
    let f = try_res!(folder(&state, &req));
    let q = try_res!(query(&req));
    let items = state
        .scenario
        .queues
        .iter()
        .filter(|d| d.folder_id == f.id)
        .map(|d| definition_dto(d, &state))
        .collect();
    collection(&req, &t, "QueueDefinitions", &q, items)
}

/// Why `content` does not fit the queue's `SpecificDataJsonSchema`, if it does not.
fn schema_problem(queue: &QueueDefinition, content: &Value) -> Option<String> {
    let schema: Value = serde_json::from_str(queue.specific_data_json_schema.as_deref()?).ok()?;
    let validator = jsonschema::validator_for(&schema).ok()?;
    let errors: Vec<String> = validator
        .iter_errors(content)
        .map(|e| format!("{e} at '{}'", e.instance_path()))
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

/// `POST /odata/Queues/UiPathODataSvc.AddQueueItem` with `{"itemData": QueueItemDataDto}`.
pub async fn add_item(req: HttpRequest, body: Bytes, sim: web::Data<Sim>) -> HttpResponse {
    let mut state = sim.lock();
    let t = try_res!(tenant(&state, &req));
    try_res!(authorize(&state, &req, &t, "OR.Queues", true));
    let f = try_res!(folder(&state, &req));
    let fields = try_res!(json_body(&body));
    let Some(Value::Object(data)) = fields.get("itemdata") else {
        return or_error(400, 1000, "itemData is required.");
    };
    let data: Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let text = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_string);
    let Some(name) = text("name") else {
        return or_error(400, 1000, "itemData.Name is required.");
    };
    let Some(queue) = state
        .scenario
        .queues
        .iter()
        .find(|q| q.folder_id == f.id && q.name == name)
        .cloned()
    else {
        return or_error(404, 1002, "Queue does not exist.");
    };
    let priority = text("priority").unwrap_or_else(|| "Normal".into());
    if !matches!(priority.as_str(), "High" | "Normal" | "Low") {
        return or_error(400, 1000, "itemData.Priority must be High, Normal or Low.");
    }
    let reference = text("reference");
    if reference.as_ref().is_some_and(|r| r.chars().count() > 128) {
        return or_error(
            400,
            1000,
            "The field Reference must be a string with a maximum length of 128.",
        );
    }
    let content = match data.get("specificcontent") {
        None | Some(Value::Null) => json!({}),
        Some(Value::Object(c)) => Value::Object(c.clone()),
        Some(_) => return or_error(400, 1000, "itemData.SpecificContent must be an object."),
    };
    if let Some(why) = schema_problem(&queue, &content) {
        return or_error(
            400,
            1000,
            &format!("The specific content does not match the queue's JSON schema: {why}"),
        );
    }
    if queue.enforce_unique_reference
        && let Some(r) = &reference
        && state.queue_items.values().any(|i| {
            i.queue_id == queue.id
                && i.reference.as_ref() == Some(r)
                && !matches!(i.status.as_str(), "Deleted" | "Retried")
        })
    {
        return or_error(
            409,
            1016,
            "Error creating Transaction. Duplicate Reference.",
        );
    }
    let id = state.next_queue_item_id;
    state.next_queue_item_id += 1;
    let item = QueueItem {
        id,
        key: uuid::Uuid::new_v4().to_string(),
        queue_id: queue.id,
        folder_id: f.id,
        status: "New".into(),
        priority,
        specific_content: content,
        reference,
        defer_date: text("deferdate"),
        due_date: text("duedate"),
        risk_sla_date: text("risksladate"),
        progress: text("progress"),
        source: text("source"),
        output: None,
        processing_exception: None,
        retry_number: 0,
        ancestor_id: None,
        creation_time: state.now(),
        start_processing: None,
        end_processing: None,
        next_transition: super::queue_robot::pickup(&state, &queue.name),
    };
    let dto = item_dto(&item, &state);
    let added = super::queue_robot::event("queueItem.added", &item, &state);
    state.queue_items.insert(id, item);
    let then_502 = state.faults.add_then_502 > 0;
    if then_502 {
        // The item exists, but the caller hears a gateway error.
        state.faults.add_then_502 -= 1;
    }
    drop(state);
    super::outbox::deliver_payloads(&sim.clone().into_inner(), vec![added]);
    if then_502 {
        return HttpResponse::BadGateway()
            .content_type("text/html")
            .body("<html><body>502 Bad Gateway</body></html>");
    }
    HttpResponse::Created().json(dto)
}

/// `GET /odata/QueueItems`: the folder's items; filtered lists have their own limit per
/// tenant, as filtered job lists do.
pub async fn list_items(req: HttpRequest, sim: web::Data<Sim>) -> HttpResponse {
    let mut state = sim.lock();
    let t = try_res!(tenant(&state, &req));
    try_res!(authorize(&state, &req, &t, "OR.Queues", false));
    let f = try_res!(folder(&state, &req));
    let q = try_res!(query(&req));
    if q.filter.is_some()
        && let Some(wait) = state.take_filter_budget(&format!("{}/QueueItems", t.key()))
    {
        let mut res = or_error(
            429,
            0,
            "Too many requests: the filtered queue item list is limited per tenant per minute.",
        );
        res.headers_mut()
            .insert(actix_web::http::header::RETRY_AFTER, wait.into());
        return res;
    }
    let items = state
        .queue_items
        .values()
        .filter(|i| i.folder_id == f.id)
        .map(|i| item_dto(i, &state))
        .collect();
    collection(&req, &t, "QueueItems", &q, items)
}

/// `GET /odata/QueueItems({id})`.
pub async fn get_item(req: HttpRequest, sim: web::Data<Sim>) -> HttpResponse {
    let state = sim.lock();
    let t = try_res!(tenant(&state, &req));
    try_res!(authorize(&state, &req, &t, "OR.Queues", false));
    let f = try_res!(folder(&state, &req));
    let id = try_res!(path_id(&req));
    match state.queue_items.get(&id).filter(|i| i.folder_id == f.id) {
        Some(i) => HttpResponse::Ok().json(item_dto(i, &state)),
        None => or_error(404, 1002, "Queue item does not exist."),
    }
}
