//! Which queue a queue mapping adds to: the folder's queue definition of that name, looked
//! up in Orchestrator once and kept on the mapping (its Id, unique references, schemas),
//! until an add answers that the queue is gone. The same lookup checks a mapping when it
//! is saved: a folder or queue that does not exist is named, with what does exist.

use std::borrow::Cow;

use crate::app::release::{folder_missing, listed, nearby_folders};
use crate::domain::problem::{FieldProblem, problem};
use crate::domain::queue::QueueSchema;
use crate::orchestrator::{FolderRef, OrchestratorError};
use crate::state::AppState;
use crate::storage::connections::ConnectionRow;
use crate::storage::processes::{self, ProcessRow};
use crate::tokens::TokenError;

/// What a lookup of a folder's queue found.
#[derive(Debug)]
pub enum Lookup {
    /// The queue.
    Found(QueueSchema),
    /// The folder or the queue does not exist: the field and what does.
    Missing(FieldProblem),
}

/// The queue of a mapping: the one it last resolved to, or looked up (and cached) when
/// it has none or `fresh` is asked for.
#[tracing::instrument(skip_all, fields(queue = %mapping.name, fresh))]
pub async fn resolve<'p>(
    state: &AppState,
    mapping: &'p ProcessRow,
    conn: &ConnectionRow,
    fresh: bool,
) -> Result<Cow<'p, QueueSchema>, TokenError> {
    if !fresh && let Some(queue) = &mapping.queue_schema {
        return Ok(Cow::Borrowed(queue));
    }
    let name = mapping.queue.as_deref().unwrap_or_default();
    let found = match look_up(state, conn, &mapping.folder, name).await? {
        Lookup::Found(q) => q,
        Lookup::Missing(p) => {
            return Err(TokenError::Orchestrator(OrchestratorError::NotFound {
                status: 404,
                error_code: Some("no_queue".into()),
                message: format!("{}: {}", p.field, p.problem),
            }));
        }
    };
    processes::cache_queue(&state.pool, mapping.id, &found).await?;
    state.lookups.clear();
    Ok(Cow::Owned(found))
}

/// Looks the queue up in Orchestrator. An error is Orchestrator (or the connection)
/// failing to answer; a missing folder or queue is `Lookup::Missing`.
pub async fn look_up(
    state: &AppState,
    conn: &ConnectionRow,
    folder: &str,
    queue: &str,
) -> Result<Lookup, TokenError> {
    let orch = state.orchestrator(conn);
    let folder_ref = FolderRef::parse(folder);
    let found = state
        .tokens
        .with_token(conn, |t| {
            let (orch, folder) = (orch.clone(), folder_ref.clone());
            async move { orch.queue_definitions(&t, &folder).await }
        })
        .await;
    let all = match found {
        Err(e) if folder_missing(&e) => {
            return Ok(Lookup::Missing(problem(
                "folder",
                &format!(
                    "Orchestrator has no folder `{folder}` (or the connection may not see it); {}",
                    nearby_folders(state, conn, folder).await
                ),
            )));
        }
        other => other?,
    };
    // Queue names are case-insensitive in Orchestrator.
    match all.iter().find(|q| q.name.eq_ignore_ascii_case(queue)) {
        Some(q) => Ok(Lookup::Found(q.schema())),
        None => {
            let here = if all.is_empty() {
                "it has no queues".to_string()
            } else {
                format!(
                    "its queues are: {}",
                    listed(all.iter().map(|q| q.name.clone()))
                )
            };
            Ok(Lookup::Missing(problem(
                "queue",
                &format!("folder `{folder}` has no queue named `{queue}`; {here}"),
            )))
        }
    }
}
