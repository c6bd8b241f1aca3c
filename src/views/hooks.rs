//! The API's view of a webhook definition and its deliveries: never a secret.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::hook::HookResponse;
use crate::hooks::verify::SchemeConfig;
use crate::state::AppState;
use crate::storage::hooks::{self as store, Delivery, HookRow};

/// A webhook definition as the API shows it (secrets are never shown).
#[derive(Debug, Serialize, ToSchema)]
pub struct HookView {
    pub id: Uuid,
    pub slug: String,
    /// Where the provider should send deliveries.
    pub path: String,
    /// The process it starts, or the queue mapping it adds items to.
    pub process: String,
    pub scheme: String,
    pub config: SchemeConfig,
    /// How many secrets are active.
    pub secrets_count: usize,
    pub public: bool,
    pub enabled: bool,
    pub tolerance_seconds: i32,
    /// Largest delivery body accepted, in bytes (this webhook's own, else `hooks.max_body_bytes`).
    pub max_body_bytes: usize,
    pub dedup: Option<String>,
    pub filter: Option<String>,
    pub mapping: Option<std::collections::BTreeMap<String, String>>,
    pub response: HookResponse,
    /// What the operator should know: a mapping that could not be checked against the
    /// process's arguments (shown in the answer to a create or replace).
    pub warnings: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Every webhook definition.
#[derive(Debug, Serialize, ToSchema)]
pub struct HookList {
    pub items: Vec<HookView>,
}

pub fn view(state: &AppState, r: HookRow) -> HookView {
    let secrets_count = store::open_secrets(&state.keys, &r)
        .map(|s| s.len())
        .unwrap_or(0);
    let max_body_bytes = r.body_limit(
        state.settings.hooks.max_body_bytes,
        state.settings.body_limit_bytes,
    );
    HookView {
        id: r.id,
        path: format!("/hooks/{}", r.slug),
        slug: r.slug,
        process: r.process_name,
        scheme: r.scheme,
        config: r.config,
        secrets_count,
        public: r.public,
        enabled: r.enabled,
        tolerance_seconds: r.tolerance_seconds,
        max_body_bytes,
        dedup: r.dedup,
        filter: r.filter,
        mapping: r.mapping,
        response: r.response,
        warnings: Vec::new(),
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

/// One delivery and what became of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: Uuid,
    pub received_at: Option<DateTime<Utc>>,
    /// `accepted`, `duplicate`, `filtered`, `failed`, `refused` or `answered`.
    pub outcome: String,
    /// `ok`, `failed`, `public` or `replayed`.
    pub verification: String,
    pub verification_detail: Option<String>,
    /// The delivery id used against repeats.
    pub delivery_key: Option<String>,
    /// `first`, `duplicate`, `expired` or `none`.
    pub dedup: String,
    /// `passed`, `rejected` or `error` (None without a filter).
    pub filter_result: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub mapped_input: Option<Value>,
    pub job_id: Option<Uuid>,
    pub error: Option<String>,
    pub replay_of: Option<Uuid>,
    /// The request as received (credentials masked), on `GET .../deliveries/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub request: Option<Value>,
}

pub fn delivery_view(d: Delivery, with_request: bool) -> DeliveryView {
    let request = with_request.then(|| {
        json!({
            "headers": d.request_headers,
            "query": d.request_query,
            "body": d.request_body.as_deref().map(|b| String::from_utf8_lossy(b).into_owned()),
        })
    });
    DeliveryView {
        id: d.id,
        received_at: d.received_at,
        outcome: d.outcome,
        verification: d.verification,
        verification_detail: d.verification_detail,
        delivery_key: d.delivery_key,
        dedup: d.dedup,
        filter_result: d.filter_result,
        mapped_input: d.mapped_input,
        job_id: d.job_id,
        error: d.error,
        replay_of: d.replay_of,
        request,
    }
}

/// A page of deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub items: Vec<DeliveryView>,
}

/// The answer to a delivery (unless the webhook configures its own body).
#[derive(Debug, Serialize, ToSchema)]
pub struct HookReceipt {
    /// `accepted` (a job was recorded), `duplicate` (this delivery id was seen: the first
    /// job is named), `filtered` (the filter said no: nothing started), `answered`
    /// (a Slack challenge or GitHub ping).
    pub status: String,
    /// The delivery record.
    pub delivery_id: Uuid,
    /// The job started (or, for a duplicate, the first one).
    pub job_id: Option<Uuid>,
    /// Why nothing started, when filtered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

pub fn receipt(
    status: &str,
    delivery: Uuid,
    job: Option<Uuid>,
    detail: Option<String>,
) -> HookReceipt {
    HookReceipt {
        status: status.into(),
        delivery_id: delivery,
        job_id: job,
        detail,
    }
}
