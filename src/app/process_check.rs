//! A process is checked against Orchestrator, through its connection, when it is saved:
//! its folder, release and pinned version must exist, and its default input must fit the
//! release's arguments. When Orchestrator cannot answer, it is saved anyway, marked
//! unverified with the reason, until a later lookup succeeds.

use crate::app::queue_definition;
use crate::app::release::{Lookup, look_up};
use crate::domain::arguments::{ResolvedRelease, validate};
use crate::domain::problem::{FieldProblem, problem};
use crate::domain::process::NewProcess;
use crate::domain::queue::QueueSchema;
use crate::state::AppState;
use crate::storage::connections;
use crate::storage::processes::{self, ProcessRow};
use crate::tokens::TokenError;

/// What checking a process found.
#[derive(Debug)]
pub enum Checked {
    /// Everything exists; this is the release it starts.
    Verified(ResolvedRelease),
    /// A queue mapping's folder and queue exist; this is the queue.
    VerifiedQueue(QueueSchema),
    /// Orchestrator could not be asked: why (a warning for the operator).
    Unverified(String),
    /// Something named does not exist or does not fit: each field and why.
    Invalid(Vec<FieldProblem>),
}

/// Checks a process about to be saved. Only a database failure is an error.
pub async fn check(state: &AppState, new: &NewProcess) -> Result<Checked, sqlx::Error> {
    let Some(conn) = connections::find(&state.pool, &new.connection).await? else {
        return Ok(Checked::Invalid(vec![problem(
            "connection",
            &format!(
                "no connection named `{}`: create it first (POST /connections)",
                new.connection
            ),
        )]));
    };
    if let Some(queue) = &new.queue {
        return Ok(
            match queue_definition::look_up(state, &conn, &new.folder, queue).await {
                Ok(queue_definition::Lookup::Found(q)) => {
                    let problems: Vec<FieldProblem> = q
                        .content_problems(&new.default_input)
                        .into_iter()
                        .filter(|p| {
                            new.default_input
                                .contains_key(p.field.split('.').next().unwrap_or_default())
                        })
                        .map(|p| FieldProblem {
                            field: format!("default_content.{}", p.field),
                            problem: p.problem,
                        })
                        .collect();
                    if problems.is_empty() {
                        Checked::VerifiedQueue(q)
                    } else {
                        Checked::Invalid(problems)
                    }
                }
                Ok(queue_definition::Lookup::Missing(p)) => Checked::Invalid(vec![p]),
                Err(TokenError::Database(e)) => return Err(e),
                Err(e) => Checked::Unverified(format!(
                    "Orchestrator could not be asked whether folder `{}` and queue `{queue}` exist ({e}); \
                 saved unverified: the first item added checks again",
                    new.folder
                )),
            },
        );
    }
    match look_up(state, &conn, &new.folder, &new.release).await {
        Ok(Lookup::Found(release)) => {
            let problems = default_input_problems(&release, new);
            Ok(if problems.is_empty() {
                Checked::Verified(release)
            } else {
                Checked::Invalid(problems)
            })
        }
        Ok(Lookup::Missing(p)) => Ok(Checked::Invalid(vec![p])),
        Err(TokenError::Database(e)) => Err(e),
        Err(e) => Ok(Checked::Unverified(format!(
            "Orchestrator could not be asked whether folder `{}` and the release exist ({e}); \
             saved unverified: the next lookup (the first /run) checks again",
            new.folder
        ))),
    }
}

/// The default input may only name the release's arguments, with values of their types.
fn default_input_problems(release: &ResolvedRelease, new: &NewProcess) -> Vec<FieldProblem> {
    match validate(
        &release.arguments,
        &serde_json::Map::new(),
        &new.default_input,
    ) {
        Ok(_) => Vec::new(),
        Err(problems) => problems
            .into_iter()
            .filter(|p| new.default_input.contains_key(&p.field))
            .map(|p| FieldProblem {
                field: format!("default_input.{}", p.field),
                problem: p.problem,
            })
            .collect(),
    }
}

/// Checks a webhook's mapping against the arguments of the process it starts. The
/// process's release is looked up if it has not been yet; when Orchestrator cannot
/// answer, the mapping is accepted with a warning (returned). Problems are `Err`.
pub async fn hook_mapping(
    state: &AppState,
    hook: &crate::domain::hook::NewHook,
) -> Result<Result<Vec<String>, Vec<FieldProblem>>, sqlx::Error> {
    let Some(mapping) = &hook.mapping else {
        return Ok(Ok(Vec::new()));
    };
    // An unknown process is reported by the write itself.
    let Some(process) = processes::get(&state.pool, &hook.process).await? else {
        return Ok(Ok(Vec::new()));
    };
    // A queue mapping: against the queue's schema, when it was looked up.
    if process.queue.is_some() {
        let defaults = process
            .default_input
            .as_object()
            .cloned()
            .unwrap_or_default();
        let problems = match &process.queue_schema {
            Some(queue) => queue.mapping_problems(mapping, &defaults),
            None => {
                return Ok(Ok(vec![format!(
                    "the mapping was not checked against queue mapping `{}`: its queue has not been looked up",
                    process.name
                )]));
            }
        };
        return Ok(if problems.is_empty() {
            Ok(Vec::new())
        } else {
            Err(problems)
        });
    }
    let release = match &process.resolved {
        Some(r) => r.clone(),
        None => {
            let looked_up = match connections::get(&state.pool, process.connection_id).await? {
                Some(conn) => crate::app::release::resolve(state, &process, &conn, false)
                    .await
                    .map(|r| r.into_owned()),
                None => Err(TokenError::Config("the process has no connection".into())),
            };
            match looked_up {
                Ok(r) => r,
                Err(TokenError::Database(e)) => return Err(e),
                Err(e) => {
                    return Ok(Ok(vec![format!(
                        "the mapping was not checked against the arguments of process `{}`: \
                         its release could not be looked up ({e})",
                        process.name
                    )]));
                }
            }
        }
    };
    let defaults = process
        .default_input
        .as_object()
        .cloned()
        .unwrap_or_default();
    let problems = crate::domain::hook::mapping_problems(
        mapping,
        &process.name,
        &release.arguments,
        &defaults,
    );
    Ok(if problems.is_empty() {
        Ok(Vec::new())
    } else {
        Err(problems)
    })
}

/// Records on the stored process what the check found: the release it starts, or why
/// it is unverified. Returns the row as it now is.
pub async fn record(
    state: &AppState,
    row: ProcessRow,
    checked: &Checked,
) -> Result<ProcessRow, sqlx::Error> {
    match checked {
        Checked::Verified(release) => {
            processes::cache_release(&state.pool, row.id, release).await?
        }
        Checked::VerifiedQueue(queue) => processes::cache_queue(&state.pool, row.id, queue).await?,
        Checked::Unverified(reason) => {
            processes::mark_unverified(&state.pool, row.id, reason).await?
        }
        Checked::Invalid(problems) => {
            let reason = problems
                .iter()
                .map(|p| format!("{}: {}", p.field, p.problem))
                .collect::<Vec<_>>()
                .join("; ");
            processes::mark_unverified(&state.pool, row.id, &reason).await?
        }
    }
    state.lookups.clear();
    Ok(processes::get(&state.pool, &row.name).await?.unwrap_or(row))
}
