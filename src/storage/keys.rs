//! Re-sealing every stored secret with the active key (`uipath-gateway keys rotate`).

use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::crypto::KeyRing;

/// A sealed column: table, id column, column, the associated-data prefix, and the
/// column that records the key id (if any).
struct Sealed {
    table: &'static str,
    id: &'static str,
    column: &'static str,
    aad: &'static str,
    key_column: Option<&'static str>,
}

/// Every sealed column. A new one must be added here, or rotation would skip it.
const SEALED: &[Sealed] = &[
    Sealed {
        table: "connections",
        id: "id",
        column: "secrets_sealed",
        aad: "connections.secrets",
        key_column: Some("secrets_key_id"),
    },
    Sealed {
        table: "connection_tokens",
        id: "connection_id",
        column: "access_token_sealed",
        aad: "connections.access_token",
        key_column: Some("key_id"),
    },
    Sealed {
        table: "connection_tokens",
        id: "connection_id",
        column: "refresh_token_sealed",
        aad: "connections.refresh_token",
        key_column: Some("key_id"),
    },
    Sealed {
        table: "processes",
        id: "id",
        column: "callback_secret_sealed",
        aad: "processes.callback_secret",
        key_column: Some("callback_key_id"),
    },
    Sealed {
        table: "webhooks",
        id: "id",
        column: "secrets_sealed",
        aad: "webhooks.secrets",
        key_column: Some("secrets_key_id"),
    },
];

/// What a rotation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Values re-sealed with the active key.
    pub resealed: u64,
    /// Values already sealed with it.
    pub current: u64,
}

/// Re-seals every value not sealed with the active key, one row at a time, each in
/// its own transaction with the row locked (safe while gateways run).
pub async fn rotate(pool: &PgPool, keys: &KeyRing) -> anyhow::Result<Rotation> {
    let mut done = Rotation::default();
    for s in SEALED {
        let ids_sql = format!(
            "select {id} from {table} where {col} is not null",
            id = s.id,
            table = s.table,
            col = s.column
        );
        let ids: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(ids_sql))
            .fetch_all(pool)
            .await?;
        for id in ids {
            let mut tx = pool.begin().await?;
            let select = format!(
                "select {col} from {table} where {idc} = $1 for update",
                col = s.column,
                table = s.table,
                idc = s.id
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(select))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(sealed) = row.and_then(|r| r.try_get::<Option<Vec<u8>>, _>(0).ok().flatten())
            else {
                continue;
            };
            if KeyRing::key_id_of(&sealed) == Some(keys.active_id()) {
                done.current += 1;
                continue;
            }
            let aad = format!("{}:{id}", s.aad);
            let resealed = keys
                .reseal(&sealed, &aad)
                .map_err(|e| anyhow::anyhow!("{}.{} of {id}: {e}", s.table, s.column))?;
            let key_set = s
                .key_column
                .map(|k| format!(", {k} = $3"))
                .unwrap_or_default();
            let update = format!(
                "update {table} set {col} = $2{key_set} where {idc} = $1",
                table = s.table,
                col = s.column,
                idc = s.id
            );
            sqlx::query(sqlx::AssertSqlSafe(update))
                .bind(id)
                .bind(resealed)
                .bind(keys.active_id())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            done.resealed += 1;
        }
    }
    Ok(done)
}
