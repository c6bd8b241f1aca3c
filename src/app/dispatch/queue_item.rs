//! Adding a recorded queue item to its Orchestrator queue, exactly once.
//!
//! Every add sends the item's Reference (ours, `ugw-<id>`, or the caller's). An add
//! whose outcome is unknown leaves the item `unknown`, and the reconciler looks the
//! Reference up before anything else. A queue that enforces unique references answers
//! a second add with error 1016: the item is already there, and the ledger adopts it.

use serde_json::json;
use uuid::Uuid;

use super::Outcome;
use crate::app::queue_definition;
use crate::domain::queue::{ledger_state, split_item_input};
use crate::orchestrator::queues::{AddQueueItemRequest, QueueItem, QueueItemData};
use crate::orchestrator::{FolderRef, OrchestratorError};
use crate::state::AppState;
use crate::storage::connections::ConnectionRow;
use crate::storage::jobs::{self, JobRow, JobState};
use crate::storage::processes::ProcessRow;
use crate::tokens::TokenError;
use crate::traffic::Priority;

fn request(job: &JobRow, mapping: &ProcessRow, queue: &str) -> AddQueueItemRequest {
    let (content, options) = split_item_input(&job.input);
    AddQueueItemRequest {
        item_data: QueueItemData {
            name: queue.to_string(),
            priority: options
                .priority
                .or_else(|| mapping.job_options.priority.clone()),
            specific_content: content,
            defer_date: options.defer_date,
            due_date: options.due_date,
            risk_sla_date: options.risk_sla_date,
            reference: Some(job.reference.clone()),
        },
    }
}

/// The items of a queue that carry `references`, through the tenant's list budget.
pub async fn by_reference(
    state: &AppState,
    conn: &ConnectionRow,
    folder: &FolderRef,
    queue_id: i64,
    references: &[String],
    priority: Priority,
) -> Result<Vec<QueueItem>, TokenError> {
    let orch = state.orchestrator(conn);
    state
        .tokens
        .with_token(conn, |t| {
            let (orch, folder) = (orch.clone(), folder.clone());
            async move {
                orch.queue_items_by_reference(&t, &folder, queue_id, references, priority)
                    .await
            }
        })
        .await
}

/// Of the items that carry one Reference (an item and its retries), the one that
/// speaks for it now: the latest retry.
pub fn latest(items: &[QueueItem], reference: &str) -> Option<QueueItem> {
    items
        .iter()
        .filter(|i| i.reference.as_deref() == Some(reference))
        .max_by_key(|i| (i.retry_number.unwrap_or(0), i.id))
        .cloned()
}

/// One attempt to add `job` (a queue item) to its queue. The job must be leased to this
/// instance.
#[tracing::instrument(skip_all, fields(item = %job.id, attempt = job.attempts))]
pub async fn attempt(
    state: &AppState,
    job: &JobRow,
    mapping: &ProcessRow,
    conn: &ConnectionRow,
) -> Result<Outcome, sqlx::Error> {
    let folder = FolderRef::parse(&mapping.folder);
    let orch = state.orchestrator(conn);
    let result: Result<(QueueItem, &str), TokenError> = async {
        let queue = queue_definition::resolve(state, mapping, conn, false).await?;
        let body = request(job, mapping, &queue.name);
        let added = state
            .tokens
            .with_token(conn, |t| {
                let (orch, folder, body) = (orch.clone(), folder.clone(), body.clone());
                async move { orch.add_queue_item(&t, &folder, &body).await }
            })
            .await;
        match added {
            Err(TokenError::Orchestrator(e)) if e.is_duplicate_reference() => {
                let reference = [job.reference.clone()];
                let found = by_reference(
                    state,
                    conn,
                    &folder,
                    queue.id,
                    &reference,
                    Priority::Urgent,
                )
                .await?;
                latest(&found, &job.reference)
                    .map(|item| (item, "already in the queue (its Reference is taken): adopted"))
                    .ok_or_else(|| {
                        TokenError::Orchestrator(OrchestratorError::Ambiguous {
                            status: Some(409),
                            message: "the queue holds an item with this Reference, but the lookup did not find it".into(),
                        })
                    })
            }
            Err(e) => Err(e),
            Ok(item) => Ok((item, if job.attempts > 1 { "added on retry" } else { "added" })),
        }
    }
    .await;
    match result {
        Ok((item, how)) => started(state, job, &item, how).await,
        Err(e) => super::failed(state, job, &orch, e).await,
    }
}

/// Orchestrator has the item (added now, or found by its Reference): the ledger records
/// its Id and Key. Its state is read by the poller and the `queueItem.*` events.
pub async fn started(
    state: &AppState,
    job: &JobRow,
    item: &QueueItem,
    how: &str,
) -> Result<Outcome, sqlx::Error> {
    let key = item.key.as_deref().and_then(|k| Uuid::parse_str(k).ok());
    let now = state
        .ledger
        .started(jobs::Started {
            id: job.id,
            orchestrator_job_id: item.id,
            orchestrator_job_key: key,
            state: JobState::Pending,
            detail: json!({"orchestrator_queue_item_id": item.id, "how": how}),
        })
        .await?;
    if now.is_none() && jobs::link_cancelled(&state.pool, job.id, item.id, key).await? {
        // Cancelled while the add was in flight: the item is in the queue all the same.
        tracing::warn!(item = %job.id, queue_item = item.id, "a queue item was cancelled while it was being added");
        let detail = json!({"orchestrator_queue_item_id": item.id,
            "why": "the item was cancelled while it was being added; it is in the queue (delete it in Orchestrator if it must not be worked)"});
        jobs::event(
            &state.pool,
            job.id,
            "added_after_cancel",
            "dispatcher",
            Some(detail),
        )
        .await?;
        return Ok(Outcome::Started {
            orchestrator_job_id: item.id,
            job: None,
        });
    }
    // An item found further along (adopted) is recorded as it is.
    if let Some(seen) = observed(item).filter(|s| s.state != JobState::Pending) {
        jobs::record_state(&state.pool, job.id, &seen, "dispatcher").await?;
    }
    Ok(Outcome::Started {
        orchestrator_job_id: item.id,
        job: now.map(Box::new),
    })
}

/// What a `QueueItemDto` says, in ledger terms (None for `Retried`: its retry speaks).
pub fn observed(item: &QueueItem) -> Option<jobs::Observed> {
    let state = ledger_state(&item.status)?;
    Some(jobs::Observed {
        state,
        output: item.output.clone().filter(|_| state.is_terminal()),
        error: match state {
            JobState::Faulted | JobState::Stopped => Some(
                item.processing_exception
                    .clone()
                    .filter(|e| !e.is_null())
                    .unwrap_or_else(|| {
                        serde_json::json!({"message": format!("the queue item ended {}", item.status)})
                    }),
            ),
            _ => None,
        },
        info: Some(item.status.clone()),
    })
}
