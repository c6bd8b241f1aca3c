//! Following added queue items: what the poller and the `queueItem.*` events record.
//! An item is read by its Id (`QueueItems({id})`, outside the filtered-list limit). An
//! item Orchestrator retried (`Retried`) is followed to its latest retry, found by the
//! Reference the retries share (a filtered list, from the tenant's budget).

use crate::app::dispatch::queue_item::{by_reference, latest, observed};
use crate::app::queue_definition;
use crate::orchestrator::FolderRef;
use crate::orchestrator::queues::QueueItem;
use crate::state::AppState;
use crate::storage::connections::ConnectionRow;
use crate::storage::jobs;
use crate::storage::processes::ProcessRow;
use crate::tokens::TokenError;
use crate::traffic::Priority;

/// Records an item seen at Orchestrator for ledger entry `id`: a later retry than the one
/// the ledger follows is followed from now on; an earlier one is ignored. True when the
/// ledger changed.
pub async fn record(
    state: &AppState,
    id: uuid::Uuid,
    followed: i64,
    item: &QueueItem,
    source: &str,
) -> Result<bool, sqlx::Error> {
    if item.id < followed {
        return Ok(false);
    }
    let mut changed = false;
    if item.id > followed {
        let retry = jobs::FollowedRetry {
            id: item.id,
            key: item
                .key
                .as_deref()
                .and_then(|k| uuid::Uuid::parse_str(k).ok()),
            retry_number: item.retry_number,
        };
        changed |= jobs::follow_retry(&state.pool, id, followed, retry).await?;
    }
    let Some(seen) = observed(item) else {
        return Ok(changed);
    };
    Ok(jobs::record_state(&state.pool, id, &seen, source).await? || changed)
}

/// Reads one item and records it (following its retries).
pub async fn read_and_record(
    state: &AppState,
    conn: &ConnectionRow,
    mapping: &ProcessRow,
    job: &jobs::ToPoll,
) -> anyhow::Result<bool> {
    let folder = FolderRef::parse(&mapping.folder);
    let orch = state.orchestrator(conn);
    let id = job.orchestrator_job_id;
    let mut item = state
        .tokens
        .with_token(conn, |t| {
            let (orch, folder) = (orch.clone(), folder.clone());
            async move { orch.queue_item(&t, &folder, id).await }
        })
        .await?;
    if item.status == "Retried" {
        let queue = queue_definition::resolve(state, mapping, conn, false).await?;
        let reference = item.reference.clone().unwrap_or_default();
        let found = by_reference(
            state,
            conn,
            &folder,
            queue.id,
            std::slice::from_ref(&reference),
            Priority::Routine,
        )
        .await;
        match found {
            Ok(found) => {
                if let Some(retry) = latest(&found, &reference) {
                    item = retry;
                }
            }
            Err(TokenError::Database(e)) => return Err(e.into()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(record(state, job.id, id, &item, "poll").await?)
}

/// The items of a `queueItem.*` event: `QueueItem`, or `QueueItems` (an array).
fn items_of(event: &serde_json::Value) -> Vec<QueueItem> {
    let one = event.get("QueueItem").filter(|v| v.is_object()).cloned();
    let many = event
        .get("QueueItems")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    one.into_iter()
        .chain(many)
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect()
}

/// Whether a failed item in an event is about to be retried (an application exception,
/// retries left): its retry will speak for it, so the failure is not an end.
fn will_retry(event: &serde_json::Value, item: &QueueItem) -> bool {
    let application = item
        .processing_exception
        .as_ref()
        .and_then(|e| e.get("Type"))
        .and_then(serde_json::Value::as_str)
        == Some("ApplicationException");
    let max = event
        .pointer("/Queue/MaxNumberOfRetries")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    item.status == "Failed" && application && i64::from(item.retry_number.unwrap_or(0)) < max
}

/// Records a `queueItem.*` event for the items of connection `connection`: each item is
/// found by its Id or, for a retry, its ancestor's. Answers (items, ledger entries changed).
pub async fn on_event(
    state: &AppState,
    connection: uuid::Uuid,
    event: &serde_json::Value,
) -> Result<(usize, usize), sqlx::Error> {
    let items = items_of(event);
    let mut updated = 0;
    for item in &items {
        if will_retry(event, item) {
            continue;
        }
        let pool = &state.pool;
        let mut found = jobs::by_orchestrator_id(pool, connection, item.id, "queue_item").await?;
        let mut followed = item.id;
        if found.is_none()
            && let Some(ancestor) = item.ancestor_id
        {
            found = jobs::by_orchestrator_id(pool, connection, ancestor, "queue_item").await?;
            followed = ancestor;
        }
        if let Some(id) = found
            && record(state, id, followed, item, "webhook").await?
        {
            updated += 1;
        }
    }
    Ok((items.len(), updated))
}
