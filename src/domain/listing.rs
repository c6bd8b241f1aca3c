//! What a listing asks for: the filters of `GET /jobs` and `GET /audit`, read from the
//! query string by the routes and applied by storage as they are.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

/// Filters of `GET /jobs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct JobFilter {
    /// Process name.
    pub process: Option<String>,
    /// Ledger state.
    pub state: Option<String>,
    /// `api`, `hook` or `replay`.
    pub source: Option<String>,
    /// The Reference (`ugw-...`).
    pub reference: Option<String>,
    /// Created at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1-200 (default 50).
    pub limit: Option<i64>,
}

/// Filters of `GET /audit`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// `connection`, `process`, `api_key`, `webhook`, `job`, `callback`, `delivery`.
    pub object_type: Option<String>,
    /// The object's name, slug or id.
    pub object_key: Option<String>,
    /// Who made the change.
    pub actor: Option<String>,
    /// The kind of change.
    pub action: Option<String>,
    /// Only entries older than this id (from `next_before`).
    pub before: Option<i64>,
    /// 1-500 (default 100).
    pub limit: Option<i64>,
}
