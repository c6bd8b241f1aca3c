//! The audit log: one row per admin change.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgPool};

use crate::domain::listing::AuditFilter;

/// One change to record.
pub struct Entry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub object_type: &'a str,
    pub object_key: &'a str,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: Option<&'a str>,
    pub client_ip: Option<&'a str>,
}

/// A stored change.
#[derive(Debug, Clone, FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_key: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
}

/// Names whose values are secrets wherever they appear.
const SECRET_FIELDS: [&str; 12] = [
    "client_secret",
    "password",
    "refresh_token",
    "access_token",
    "pat",
    "user_key",
    "secrets",
    "secret",
    "callback_secret",
    "token",
    "key",
    "webhook_secret",
];

/// Replaces the value of every secret-named field with `***` (the API's views have no
/// secrets; this keeps it so if one is ever added by mistake).
pub fn mask(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    if SECRET_FIELDS.contains(&k.as_str()) && !v.is_null() {
                        (k, Value::String("***".into()))
                    } else {
                        (k, mask(v))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(mask).collect()),
        other => other,
    }
}

/// Stores one change (the before and after masked).
pub async fn record<'e>(db: impl sqlx::PgExecutor<'e>, e: Entry<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!("INSERT INTO audit_log (actor, action, object_type, object_key, before, after, request_id, client_ip)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", e.actor, e.action, e.object_type, e.object_key, e.before.map(mask), e.after.map(mask), e.request_id, e.client_ip)
    .execute(db)
    .await?;
    Ok(())
}

/// Newest first.
pub async fn list(
    pool: &PgPool,
    f: &AuditFilter,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, at, actor, action, object_type, object_key, before, after, request_id, client_ip
           FROM audit_log
          WHERE ($1::text IS NULL OR object_type = $1)
            AND ($2::text IS NULL OR object_key = $2)
            AND ($3::text IS NULL OR actor = $3)
            AND ($4::text IS NULL OR action = $4)
            AND ($5::bigint IS NULL OR id < $5)
          ORDER BY id DESC
          LIMIT $6")
        .bind(&f.object_type)
        .bind(&f.object_key)
        .bind(&f.actor)
        .bind(&f.action)
        .bind(f.before)
        .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(AuditRow::from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::mask;
    use serde_json::json;

    #[test]
    fn secret_fields_are_masked_at_any_depth() {
        let v = mask(
            json!({"name": "a", "client_secret": "s", "nested": [{"token": "t", "has_secret": true}], "pat": null}),
        );
        assert_eq!(
            v,
            json!({"name": "a", "client_secret": "***", "nested": [{"token": "***", "has_secret": true}], "pat": null})
        );
    }
}
