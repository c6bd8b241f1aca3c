//! Which release a process starts: the highest version in its folder that matches its
//! selector (process key or name, optionally a version), looked up in Orchestrator once
//! and kept on the process, typed, until a redeploy asks for a fresh lookup.

use std::borrow::Cow;

use uuid::Uuid;

use crate::domain::arguments::ResolvedRelease;
use crate::orchestrator::{FolderRef, OrchestratorError};
use crate::state::AppState;
use crate::storage::connections::ConnectionRow;
use crate::storage::processes::{self, ProcessRow};
use crate::tokens::TokenError;

/// The release of a process: the one it last resolved to, or looked up (and cached)
/// when it has none or `fresh` is asked for (after a redeploy changed its key). The
/// cached one is lent, not copied: every `/run` and every start attempt asks.
#[tracing::instrument(skip_all, fields(process = %process.name, fresh))]
pub async fn resolve<'p>(
    state: &AppState,
    process: &'p ProcessRow,
    conn: &ConnectionRow,
    fresh: bool,
) -> Result<Cow<'p, ResolvedRelease>, TokenError> {
    if !fresh && let Some(release) = &process.resolved {
        return Ok(Cow::Borrowed(release));
    }
    let sel = &process.release;
    let filter = match (&sel.process_key, &sel.name) {
        (Some(k), _) => format!("ProcessKey eq '{}'", k.replace('\'', "''")),
        (None, Some(n)) => format!("Name eq '{}'", n.replace('\'', "''")),
        (None, None) => String::new(),
    };
    let folder = FolderRef::parse(&process.folder);
    let orch = state.orchestrator(conn);
    let found = state
        .tokens
        .with_token(conn, |t| {
            let (orch, folder, filter) = (orch.clone(), folder.clone(), filter.clone());
            async move { orch.releases(&t, &folder, Some(&filter)).await }
        })
        .await?;
    let chosen = found
        .into_iter()
        .filter(|r| sel.version.as_ref().is_none_or(|v| &r.process_version == v))
        .filter(|r| sel.name.as_ref().is_none_or(|n| &r.name == n))
        .max_by(|a, b| version_key(&a.process_version).cmp(&version_key(&b.process_version)));
    let Some(release) = chosen else {
        return Err(TokenError::Orchestrator(OrchestratorError::NotFound {
            status: 404,
            error_code: Some("no_release".into()),
            message: format!(
                "no release in folder `{}` matches {filter}{}",
                process.folder,
                sel.version
                    .as_ref()
                    .map(|v| format!(" version {v}"))
                    .unwrap_or_default()
            ),
        }));
    };
    let Some(key) = release.key.as_deref().and_then(|k| Uuid::parse_str(k).ok()) else {
        return Err(TokenError::Orchestrator(OrchestratorError::NotFound {
            status: 404,
            error_code: Some("no_release".into()),
            message: format!("release `{}` has no Key", release.name),
        }));
    };
    let resolved = ResolvedRelease {
        key,
        arguments: release.input_arguments().unwrap_or_default(),
    };
    processes::cache_release(&state.pool, process.id, &resolved).await?;
    // This instance's copy of the process is now stale; the change notification would
    // say so too, but maybe only after the next request read the copy.
    state.lookups.clear();
    Ok(Cow::Owned(resolved))
}

fn version_key(v: &str) -> Vec<u64> {
    v.split(['.', '-'])
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}
