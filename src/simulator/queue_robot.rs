//! The simulated robot that works queue items: it takes each `New` item, works it, and
//! ends it as its queue's behaviour says, retrying application exceptions while the queue
//! allows; and the `queueItem.*` events that say so.

use serde_json::{Value, json};

use super::scenario::QueueOutcome;
use super::state::{QueueItem, SimState, ts as time};

/// A `queueItem.*` event: one item (`QueueItem`) or, for `queueItem.added`, a list.
pub(super) fn event(
    kind: &'static str,
    item: &QueueItem,
    state: &SimState,
) -> (&'static str, Value) {
    let queue = state.scenario.queues.iter().find(|q| q.id == item.queue_id);
    let simple = json!({
        "Id": item.id, "Key": item.key, "Reference": item.reference,
        "QueueDefinitionId": item.queue_id, "Status": item.status, "ReviewStatus": "None",
        "ProcessingException": item.processing_exception.as_ref().map(|e| json!({
            "Reason": e["Reason"], "Details": e["Details"], "Type": e["Type"],
        })),
        "DueDate": item.due_date, "Priority": item.priority,
        "CreationTime": time(item.creation_time), "DeferDate": item.defer_date,
        "StartProcessing": item.start_processing.map(time),
        "EndProcessing": item.end_processing.map(time),
        "RiskSlaDate": item.risk_sla_date, "AncestorId": item.ancestor_id,
        "RetryNumber": item.retry_number, "Progress": item.progress,
        "SpecificContent": item.specific_content, "Output": item.output,
    });
    let mut body = json!({
        "Type": kind,
        "EventId": uuid::Uuid::new_v4().simple().to_string(),
        "EntityKey": item.key,
        "Timestamp": time(state.now()),
        "EventTime": time(state.now()),
        "Queue": queue.map(|q| json!({
            "Id": q.id, "Key": q.key, "Name": q.name,
            "MaxNumberOfRetries": q.max_number_of_retries,
            "EnforceUniqueReference": q.enforce_unique_reference,
        })),
        "TenantId": 1,
        "OrganizationUnitId": item.folder_id,
    });
    if kind == "queueItem.added" {
        body["QueueItems"] = json!([simple]);
    } else {
        body["QueueItem"] = simple;
    }
    (kind, body)
}

/// When a new item of `queue` is taken up (never while jobs are stepped by hand).
pub(super) fn pickup(state: &SimState, queue: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let b = state.scenario.queue_behaviour(queue);
    (!state.scenario.manual_jobs)
        .then(|| state.now() + chrono::Duration::milliseconds(b.pickup_ms as i64))
}

/// The simulated consumer: moves every item whose time has come (`New` to `InProgress`,
/// `InProgress` to its outcome; a retried application exception adds the retry).
/// Returns the `queueItem.*` events to send.
pub fn advance_due(state: &mut SimState) -> Vec<(&'static str, Value)> {
    let now = state.now();
    let due: Vec<i64> = state
        .queue_items
        .values()
        .filter(|i| i.next_transition.is_some_and(|t| t <= now))
        .map(|i| i.id)
        .collect();
    let mut events = Vec::new();
    for id in due {
        events.extend(step(state, id, now));
    }
    events
}

/// Moves one item on; the event that says so.
fn step(
    state: &mut SimState,
    id: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<(&'static str, Value)> {
    let queue_id = state.queue_items.get(&id)?.queue_id;
    let queue = state
        .scenario
        .queues
        .iter()
        .find(|q| q.id == queue_id)
        .cloned()?;
    let b = state.scenario.queue_behaviour(&queue.name);
    let item = state.queue_items.get_mut(&id)?;
    let mut retry = false;
    let kind = match item.status.as_str() {
        "New" => {
            item.status = "InProgress".into();
            item.start_processing = Some(now);
            item.next_transition =
                Some(now + chrono::Duration::milliseconds(b.processing_ms as i64));
            "queueItem.started"
        }
        "InProgress" => {
            item.end_processing = Some(now);
            item.next_transition = None;
            if b.outcome == QueueOutcome::Successful {
                item.status = "Successful".into();
                item.output = Some(b.output.clone());
                "queueItem.completed"
            } else {
                let application = b.outcome == QueueOutcome::ApplicationException;
                item.status = "Failed".into();
                item.processing_exception = Some(json!({
                    "Reason": b.reason, "Details": null,
                    "Type": if application { "ApplicationException" } else { "BusinessException" },
                    "AssociatedImageFilePath": null, "CreationTime": time(now),
                }));
                retry = application && item.retry_number < queue.max_number_of_retries;
                "queueItem.failed"
            }
        }
        _ => {
            item.next_transition = None;
            return None;
        }
    };
    // The event shows the item as it ended (one about to be retried as `Failed`).
    let ended = item.clone();
    if retry {
        item.status = "Retried".into();
        let new_id = state.next_queue_item_id;
        state.next_queue_item_id += 1;
        let again = QueueItem {
            id: new_id,
            status: "New".into(),
            output: None,
            processing_exception: None,
            retry_number: ended.retry_number + 1,
            ancestor_id: Some(ended.id),
            creation_time: now,
            start_processing: None,
            end_processing: None,
            next_transition: Some(now + chrono::Duration::milliseconds(b.pickup_ms as i64)),
            ..ended.clone()
        };
        state.queue_items.insert(new_id, again);
    }
    Some(event(kind, &ended, state))
}
