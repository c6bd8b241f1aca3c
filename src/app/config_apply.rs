//! Objects declared in the config file (`[[connections]]`, `[[processes]]`), applied at
//! start. Applying the same file again changes nothing: an unchanged connection keeps
//! its stored tokens, and a refresh token in the file (only the first one of a
//! rotating chain) never replaces the one the gateway holds.

use anyhow::Context;

use crate::domain::connection::{ConnectionInput, Kind, NewConnection};
use crate::domain::process::ProcessInput;
use crate::domain::queue::QueueMappingInput;
use crate::state::AppState;
use crate::storage::{connections, processes};

/// What `apply` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

fn same(
    old: &connections::ConnectionRow,
    old_secrets: &crate::domain::connection::ConnectionSecrets,
    new: &NewConnection,
) -> bool {
    old.kind == new.kind
        && old.flavour == new.flavour
        && old.organization == new.organization
        && old.tenant == new.tenant
        && old.settings == new.settings
        && serde_json::to_value(old_secrets).ok() == serde_json::to_value(&new.secrets).ok()
}

/// Creates or updates the declared connections, then the declared processes.
pub async fn apply(
    state: &AppState,
    conns: &[ConnectionInput],
    procs: &[ProcessInput],
    queues: &[QueueMappingInput],
    hooks: &[crate::domain::hook::HookInput],
) -> anyhow::Result<Applied> {
    let mut done = Applied::default();
    let existing = connections::list(&state.pool).await?;
    for (i, input) in conns.iter().enumerate() {
        let name = input.name.clone().unwrap_or_default();
        let old = existing.iter().find(|c| c.name == name);
        let old_secrets =
            match old {
                Some(o) => Some(connections::open_secrets(&state.keys, o).with_context(|| {
                    format!("connections[{i}] ({name}): opening stored secrets")
                })?),
                None => None,
            };
        let refresh_held = old.is_some_and(|o| o.kind == Kind::RefreshToken);
        let mut new = input
            .clone()
            .validate_with(old_secrets.as_ref(), refresh_held)
            .map_err(|p| {
                anyhow::anyhow!(
                    "connections[{i}] ({name}): {}",
                    p.iter()
                        .map(|p| format!("{}: {}", p.field, p.problem))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })?;
        if refresh_held {
            new.refresh_token = None;
        }
        match (old, old_secrets) {
            (Some(o), Some(s)) if same(o, &s, &new) => done.unchanged += 1,
            (Some(o), Some(s)) => {
                let row = connections::replace(&state.pool, &state.keys, o.id, &new, s).await?;
                state.tokens.forget(o.id);
                let before = Some(conn_view(state, o.clone()));
                audit(
                    state,
                    "replace",
                    "connection",
                    &o.id.to_string(),
                    before,
                    row.map(|r| conn_view(state, r)),
                )
                .await?;
                done.updated += 1;
            }
            _ => {
                let row = connections::insert(&state.pool, &state.keys, uuid::Uuid::new_v4(), &new)
                    .await?;
                audit(
                    state,
                    "create",
                    "connection",
                    &row.id.to_string(),
                    None,
                    Some(conn_view(state, row)),
                )
                .await?;
                done.created += 1;
            }
        }
    }
    // Processes, then queue mappings: one table of named targets.
    let targets = procs
        .iter()
        .map(|p| ("processes", p.name.clone(), p.clone().validate()))
        .chain(
            queues
                .iter()
                .map(|q| ("queues", q.name.clone(), q.clone().validate())),
        )
        .enumerate();
    for (n, (section, name, validated)) in targets {
        let i = if section == "queues" {
            n - procs.len()
        } else {
            n
        };
        let name = name.unwrap_or_default();
        let new = validated.map_err(|p| {
            anyhow::anyhow!(
                "{section}[{i}] ({name}): {}",
                p.iter()
                    .map(|p| format!("{}: {}", p.field, p.problem))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
        let old = processes::get(&state.pool, &new.name).await?;
        let unchanged = old.as_ref().is_some_and(|o| {
            o.connection_name == new.connection
                && o.folder == new.folder
                && o.release == new.release
                && o.queue == new.queue
                && o.default_input == serde_json::Value::Object(new.default_input.clone())
                && o.job_options == new.job_options
                && o.max_wait_seconds == new.max_wait_seconds
                && o.callback_url == new.callback_url
        });
        if unchanged {
            if let Some(row) = &old {
                store_callback_secret(state, row, &new).await?;
            }
            done.unchanged += 1;
            continue;
        }
        // Checked like `POST /processes`, but a config file never stops the start: what
        // does not check out is stored unverified, with a warning.
        let checked = crate::app::process_check::check(state, &new).await?;
        match &checked {
            crate::app::process_check::Checked::Verified(_)
            | crate::app::process_check::Checked::VerifiedQueue(_) => {}
            crate::app::process_check::Checked::Unverified(why) => {
                tracing::warn!(process = %name, reason = %why, "{section}[{i}]: saved unverified")
            }
            crate::app::process_check::Checked::Invalid(p) => tracing::warn!(
                process = %name,
                problems = %p.iter().map(|p| format!("{}: {}", p.field, p.problem)).collect::<Vec<_>>().join("; "),
                "{section}[{i}]: does not match Orchestrator; saved unverified"
            ),
        }
        let row = processes::upsert(&state.pool, old.as_ref().map(|o| o.name.as_str()), &new)
            .await
            .map_err(|e| anyhow::anyhow!("{section}[{i}] ({name}): {e}"))?
            .ok_or_else(|| anyhow::anyhow!("{section}[{i}] ({name}): vanished while applied"))?;
        let row = crate::app::process_check::record(state, row, &checked).await?;
        store_callback_secret(state, &row, &new).await?;
        let action = if old.is_some() { "replace" } else { "create" };
        let before = old.map(|o| json(crate::views::processes::ProcessView::from(o)));
        let after = Some(json(crate::views::processes::ProcessView::from(row)));
        let kind = if new.queue.is_some() {
            "queue"
        } else {
            "process"
        };
        audit(state, action, kind, &new.name, before, after).await?;
        if action == "replace" {
            done.updated += 1
        } else {
            done.created += 1
        }
    }
    for (i, input) in hooks.iter().enumerate() {
        let slug = input.slug.clone().unwrap_or_default();
        let old = crate::storage::hooks::get(&state.pool, &slug).await?;
        let new = input
            .clone()
            .validate(old.as_ref().is_some_and(|o| o.secrets_sealed.is_some()))
            .map_err(|p| {
                anyhow::anyhow!(
                    "webhooks[{i}] ({slug}): {}",
                    p.iter()
                        .map(|p| format!("{}: {}", p.field, p.problem))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })?;
        if let Some(o) = &old {
            let same_secrets = match &new.secrets {
                None => true,
                Some(s) => {
                    crate::storage::hooks::open_secrets(&state.keys, o)
                        .ok()
                        .as_ref()
                        == Some(s)
                }
            };
            if same_secrets
                && o.process_name == new.process
                && o.scheme == new.scheme
                && o.config == new.config
                && o.public == new.public
                && o.enabled == new.enabled
                && o.tolerance_seconds == new.tolerance_seconds
                && o.max_body_bytes == new.max_body_bytes
                && o.dedup == new.dedup
                && o.filter == new.filter
                && o.mapping == new.mapping
                && o.response == new.response
            {
                done.unchanged += 1;
                continue;
            }
        }
        match crate::app::process_check::hook_mapping(state, &new).await? {
            Ok(warnings) => {
                for w in warnings {
                    tracing::warn!(webhook = %slug, "webhooks[{i}]: {w}");
                }
            }
            Err(p) => tracing::warn!(
                webhook = %slug,
                problems = %p.iter().map(|p| format!("{}: {}", p.field, p.problem)).collect::<Vec<_>>().join("; "),
                "webhooks[{i}]: the mapping does not fit the process's arguments; saved anyway"
            ),
        }
        let row = crate::storage::hooks::upsert(
            &state.pool,
            &state.keys,
            old.as_ref().map(|o| o.slug.as_str()),
            &new,
        )
        .await
        .map_err(|e| anyhow::anyhow!("webhooks[{i}] ({slug}): {e}"))?;
        let action = if old.is_some() { "replace" } else { "create" };
        let before = old
            .clone()
            .map(|o| json(crate::views::hooks::view(state, o)));
        let after = row.map(|r| json(crate::views::hooks::view(state, r)));
        audit(state, action, "webhook", &new.slug, before, after).await?;
        if old.is_some() {
            done.updated += 1
        } else {
            done.created += 1
        }
    }
    Ok(done)
}

/// Creates or updates the API keys declared in the config file (`[[api_keys]]`), matched
/// by the key's hash; a key revoked through the API stays revoked.
pub async fn apply_api_keys(
    state: &AppState,
    keys: &[crate::domain::api_key::ApiKeyDeclaration],
) -> anyhow::Result<Applied> {
    let mut done = Applied::default();
    for (i, declared) in keys.iter().enumerate() {
        let name = declared.name.clone();
        let key = declared.clone().resolve().map_err(|p| {
            anyhow::anyhow!(
                "api_keys[{i}] ({name}): {}",
                p.iter()
                    .map(|p| format!("{}: {}", p.field, p.problem))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
        let shown = |r: &crate::storage::api_keys::ApiKeyRow| {
            serde_json::json!({"name": r.name, "prefix": r.prefix, "scopes": r.scopes,
                "expires_at": r.expires_at, "revoked_at": r.revoked_at})
        };
        let old = crate::storage::api_keys::by_hash(&state.pool, &key.hash).await?;
        if old.as_ref().is_some_and(|o| {
            o.name == key.name && o.scopes == key.scopes && o.expires_at == key.expires_at
        }) {
            done.unchanged += 1;
            continue;
        }
        let (row, created) = crate::storage::api_keys::upsert_declared(&state.pool, &key).await?;
        let action = if created { "create" } else { "replace" };
        let before = old.as_ref().map(shown);
        audit(
            state,
            action,
            "api_key",
            &row.id.to_string(),
            before,
            Some(shown(&row)),
        )
        .await?;
        if created {
            done.created += 1
        } else {
            done.updated += 1
        }
    }
    Ok(done)
}

fn json<T: serde::Serialize>(v: T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

fn conn_view(state: &AppState, row: connections::ConnectionRow) -> serde_json::Value {
    json(crate::views::connections::view(state, row))
}

/// Records a change made by applying the config file.
async fn audit(
    state: &AppState,
    action: &str,
    object_type: &str,
    object_key: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> Result<(), sqlx::Error> {
    crate::storage::audit::record(
        &state.pool,
        crate::storage::audit::Entry {
            actor: "config-file",
            action,
            object_type,
            object_key,
            before,
            after,
            request_id: None,
            client_ip: None,
        },
    )
    .await
}

/// Stores a process's callback secret: the one given, else a generated one when the
/// process has none. Returns a generated secret (to show once).
pub async fn store_callback_secret(
    state: &AppState,
    row: &processes::ProcessRow,
    new: &crate::domain::process::NewProcess,
) -> Result<Option<String>, sqlx::Error> {
    use secrecy::ExposeSecret;
    if let Some(given) = &new.callback_secret {
        processes::set_callback_secret(&state.pool, &state.keys, row.id, given.expose_secret())
            .await?;
        return Ok(None);
    }
    if row.has_callback_secret {
        return Ok(None);
    }
    let secret = crate::domain::callback_target::generate_secret();
    processes::set_callback_secret(&state.pool, &state.keys, row.id, &secret).await?;
    Ok(Some(secret))
}
