//! What a connection reaches: a test of its credentials, the folders and releases it can
//! see (to pick a process's folder and release without hunting for ids), and the account
//! and tenant names a legacy user key leaves out.

use super::upstream;
use crate::domain::connection::{Kind, NewConnection};
use crate::error::ApiError;
use crate::orchestrator::{FolderRef, OrchestratorError, auth, request_token};
use crate::state::AppState;
use crate::storage::connections::{self as store, ConnectionRow};
use crate::tokens::TokenError;
use crate::views::connections::{ConnectionTest, FolderView, QueueView, ReleaseView};

/// Authenticates and reports who the token belongs to and which folders it can see.
#[tracing::instrument(skip_all, fields(connection = %row.name))]
pub async fn test(state: &AppState, row: &ConnectionRow) -> Result<ConnectionTest, ApiError> {
    let orch = state.orchestrator(row);
    let result = state.tokens.with_token(row, |t| {
        let orch = orch.clone();
        async move { orch.folders(&t).await }
    });
    let identity = row
        .settings
        .client_id
        .clone()
        .or_else(|| row.settings.username.clone());
    let report = match result.await {
        Ok(folders) => {
            let after = store::get(&state.pool, row.id)
                .await?
                .and_then(|r| r.token_expires_at);
            ConnectionTest {
                ok: true,
                kind: row.kind,
                identity,
                token_expires_at: after,
                folder_count: Some(folders.len()),
                folders: folders
                    .iter()
                    .take(50)
                    .map(|f| {
                        f.fully_qualified_name
                            .clone()
                            .unwrap_or_else(|| f.display_name.clone())
                    })
                    .collect(),
                error: None,
                orchestrator_error_code: None,
            }
        }
        Err(TokenError::Database(e)) => return Err(e.into()),
        Err(e) => {
            let code = match &e {
                TokenError::Orchestrator(o) => o.error_code().map(String::from),
                _ => None,
            };
            ConnectionTest {
                ok: false,
                kind: row.kind,
                identity,
                token_expires_at: None,
                folder_count: None,
                folders: vec![],
                error: Some(e.to_string()),
                orchestrator_error_code: code,
            }
        }
    };
    Ok(report)
}

/// The folders the connection can see.
pub async fn folders(state: &AppState, row: &ConnectionRow) -> Result<Vec<FolderView>, ApiError> {
    let orch = state.orchestrator(row);
    let folders = state
        .tokens
        .with_token(row, |t| {
            let orch = orch.clone();
            async move { orch.folders(&t).await }
        })
        .await
        .map_err(upstream)?;
    Ok(folders.into_iter().map(FolderView::from).collect())
}

/// The queues in a folder, with the schemas of their items' content and output.
pub async fn queues(
    state: &AppState,
    row: &ConnectionRow,
    folder: &FolderRef,
) -> Result<Vec<QueueView>, ApiError> {
    let orch = state.orchestrator(row);
    let queues = state
        .tokens
        .with_token(row, |t| {
            let (orch, folder) = (orch.clone(), folder.clone());
            async move { orch.queue_definitions(&t, &folder).await }
        })
        .await
        .map_err(upstream)?;
    Ok(queues.into_iter().map(QueueView::from).collect())
}

/// The releases (processes) in a folder, with their input arguments.
pub async fn releases(
    state: &AppState,
    row: &ConnectionRow,
    folder: &FolderRef,
) -> Result<Vec<ReleaseView>, ApiError> {
    let orch = state.orchestrator(row);
    let releases = state
        .tokens
        .with_token(row, |t| {
            let (orch, folder) = (orch.clone(), folder.clone());
            async move { orch.releases(&t, &folder, None).await }
        })
        .await
        .map_err(upstream)?;
    Ok(releases.into_iter().map(ReleaseView::from).collect())
}

/// Legacy user keys: finds the account and tenant logical names when not given.
pub async fn legacy_names(state: &AppState, new: &mut NewConnection) -> Result<(), ApiError> {
    if new.kind != Kind::UserKey || !new.settings.orchestrator_url.is_empty() {
        return Ok(());
    }
    let creds = crate::domain::connection::credentials(new.kind, &new.settings, &new.secrets, None)
        .ok_or_else(|| ApiError::bad_request("validation_failed", "user_key is required"))?;
    let fail = |e: OrchestratorError| upstream(TokenError::Orchestrator(e));
    let grant = request_token(&state.http, &creds).await.map_err(fail)?;
    let id_token = grant.id_token.ok_or_else(|| {
        fail(OrchestratorError::Auth {
            status: 200,
            error_code: None,
            message: "no id_token came back".into(),
        })
    })?;
    let discovery = new.settings.discovery_url.clone().unwrap_or_default();
    let (account, tenant) = auth::discover_legacy(&state.http, &discovery, &id_token)
        .await
        .map_err(fail)?;
    new.settings.orchestrator_url =
        format!("{}/{account}/{tenant}", discovery.trim_end_matches('/'));
    new.settings.tenant_name_header = Some(tenant.clone());
    new.organization = Some(account);
    new.tenant = Some(tenant);
    Ok(())
}
