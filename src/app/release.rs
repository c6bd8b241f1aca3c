//! Which release a process starts: the highest version in its folder that matches its
//! selector (process key or name, optionally a version), looked up in Orchestrator once
//! and kept on the process, typed, until a redeploy asks for a fresh lookup. The same
//! lookup checks a process when it is saved: a folder, release or version that does not
//! exist is named, with what does exist beside it.

use std::borrow::Cow;

use uuid::Uuid;

use crate::domain::arguments::ResolvedRelease;
use crate::domain::problem::{FieldProblem, problem};
use crate::domain::process::ReleaseSelector;
use crate::orchestrator::{FolderRef, OrchestratorError};
use crate::state::AppState;
use crate::storage::connections::ConnectionRow;
use crate::storage::processes::{self, ProcessRow};
use crate::tokens::TokenError;

/// What a lookup of a folder and selector found.
#[derive(Debug)]
pub enum Lookup {
    /// The release to start.
    Found(ResolvedRelease),
    /// The folder, the release or the version does not exist: the field and what does.
    Missing(FieldProblem),
}

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
    let resolved = match look_up(state, conn, &process.folder, &process.release).await? {
        Lookup::Found(r) => r,
        Lookup::Missing(p) => {
            return Err(TokenError::Orchestrator(OrchestratorError::NotFound {
                status: 404,
                error_code: Some("no_release".into()),
                message: format!("{}: {}", p.field, p.problem),
            }));
        }
    };
    processes::cache_release(&state.pool, process.id, &resolved).await?;
    // This instance's copy of the process is now stale; the change notification would
    // say so too, but maybe only after the next request read the copy.
    state.lookups.clear();
    Ok(Cow::Owned(resolved))
}

/// Looks the release up in Orchestrator. An error is Orchestrator (or the connection)
/// failing to answer; a missing folder, release or version is `Lookup::Missing`.
pub async fn look_up(
    state: &AppState,
    conn: &ConnectionRow,
    folder: &str,
    sel: &ReleaseSelector,
) -> Result<Lookup, TokenError> {
    let filter = match (&sel.process_key, &sel.name) {
        (Some(k), _) => format!("ProcessKey eq '{}'", k.replace('\'', "''")),
        (None, Some(n)) => format!("Name eq '{}'", n.replace('\'', "''")),
        (None, None) => String::new(),
    };
    let found = match releases(state, conn, folder, Some(&filter)).await {
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
    let matching: Vec<_> = found
        .into_iter()
        .filter(|r| sel.name.as_ref().is_none_or(|n| &r.name == n))
        .collect();
    if matching.is_empty() {
        let (field, what) = match (&sel.process_key, &sel.name) {
            (Some(k), _) => ("release.process_key", format!("process key `{k}`")),
            (None, Some(n)) => ("release.name", format!("name `{n}`")),
            (None, None) => ("release", "no selector".to_string()),
        };
        let all = releases(state, conn, folder, None)
            .await
            .unwrap_or_default();
        let here = if all.is_empty() {
            "it has no releases".to_string()
        } else {
            format!(
                "its releases are: {}",
                listed(
                    all.iter()
                        .map(|r| format!("{} (process key {})", r.name, r.process_key))
                )
            )
        };
        return Ok(Lookup::Missing(problem(
            field,
            &format!("folder `{folder}` has no release with {what}; {here}"),
        )));
    }
    let versions: Vec<String> = matching.iter().map(|r| r.process_version.clone()).collect();
    let Some(release) = matching
        .into_iter()
        .filter(|r| sel.version.as_ref().is_none_or(|v| &r.process_version == v))
        .max_by(|a, b| version_key(&a.process_version).cmp(&version_key(&b.process_version)))
    else {
        return Ok(Lookup::Missing(problem(
            "release.version",
            &format!(
                "no release in folder `{folder}` runs version {}; deployed: {}",
                sel.version.as_deref().unwrap_or_default(),
                listed(versions.into_iter())
            ),
        )));
    };
    let Some(key) = release.key.as_deref().and_then(|k| Uuid::parse_str(k).ok()) else {
        return Ok(Lookup::Missing(problem(
            "release",
            &format!("release `{}` has no Key in Orchestrator", release.name),
        )));
    };
    Ok(Lookup::Found(ResolvedRelease {
        key,
        arguments: release.input_arguments().unwrap_or_default(),
        outputs: release.output_arguments().unwrap_or_default(),
    }))
}

async fn releases(
    state: &AppState,
    conn: &ConnectionRow,
    folder: &str,
    filter: Option<&str>,
) -> Result<Vec<crate::orchestrator::models::Release>, TokenError> {
    let folder = FolderRef::parse(folder);
    let orch = state.orchestrator(conn);
    let filter = filter.filter(|f| !f.is_empty()).map(str::to_string);
    state
        .tokens
        .with_token(conn, |t| {
            let (orch, folder, filter) = (orch.clone(), folder.clone(), filter.clone());
            async move { orch.releases(&t, &folder, filter.as_deref()).await }
        })
        .await
}

/// Orchestrator's answer for a folder that does not exist (or is not visible):
/// error 1100, with 400 or 404.
pub(crate) fn folder_missing(e: &TokenError) -> bool {
    matches!(
        e,
        TokenError::Orchestrator(
            OrchestratorError::InvalidRequest { error_code: Some(c), .. }
            | OrchestratorError::NotFound { error_code: Some(c), .. }
        ) if c == "1100"
    )
}

/// The folders the connection sees, the ones that share the most of `folder`'s path first.
pub(crate) async fn nearby_folders(state: &AppState, conn: &ConnectionRow, folder: &str) -> String {
    let orch = state.orchestrator(conn);
    let found = state
        .tokens
        .with_token(conn, |t| {
            let orch = orch.clone();
            async move { orch.folders(&t).await }
        })
        .await;
    let Ok(folders) = found else {
        return "the folder list could not be read".into();
    };
    let mut paths: Vec<String> = folders
        .into_iter()
        .map(|f| f.fully_qualified_name.unwrap_or(f.display_name))
        .collect();
    let shared = |p: &str| {
        p.split('/')
            .zip(folder.split('/'))
            .take_while(|(a, b)| a.eq_ignore_ascii_case(b))
            .count()
    };
    paths.sort_by(|a, b| shared(b).cmp(&shared(a)).then(a.cmp(b)));
    if paths.is_empty() {
        "it sees no folders".into()
    } else {
        format!("folders it sees: {}", listed(paths.into_iter()))
    }
}

/// At most ten items, comma separated, with how many more there are.
pub(crate) fn listed(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    let mut out = items
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > 10 {
        out.push_str(&format!(" and {} more", items.len() - 10));
    }
    out
}

fn version_key(v: &str) -> Vec<u64> {
    v.split(['.', '-'])
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}
