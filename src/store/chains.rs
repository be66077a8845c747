//! The `chains` table: the last known head height of each chain.

use crate::{on_db, on_tx, sql};
use serde::Serialize;

use super::{Store, Tx};
use crate::error::AppResult;

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct ChainHead {
    pub name: String,
    pub head: i64,
    pub updated_at: i64,
}

/// Sets the head height (reported by the gateway or read from a node).
pub async fn set_head(store: &Store, chain: &str, height: i64, now: i64) -> AppResult<()> {
    on_db!(store.db(), |db, pg| sqlx::query(sql!(
        pg,
        "INSERT INTO chains (name, head, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET head = excluded.head, updated_at = excluded.updated_at",
    ))
    .bind(chain)
    .bind(height)
    .bind(now)
    .execute(db)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

pub async fn list(store: &Store) -> AppResult<Vec<ChainHead>> {
    Ok(on_db!(store.db(), |db, pg| {
        sqlx::query_as::<_, ChainHead>(sql!(
            pg,
            "SELECT name, head, updated_at FROM chains ORDER BY name"
        ))
        .fetch_all(db)
        .await
    })?)
}

/// The stored head and when it was written.
pub async fn head_in(tx: &mut Tx, chain: &str) -> AppResult<Option<(i64, i64)>> {
    Ok(on_tx!(tx, |c, pg| sqlx::query_as(sql!(
        pg,
        "SELECT head, updated_at FROM chains WHERE name = $1"
    ))
    .bind(chain)
    .fetch_optional(c)
    .await)?)
}

/// Records a head read from a node, unless it is below the stored one.
/// Returns the stored head when `height` is lower (nothing is written).
pub async fn advance_head(
    store: &Store,
    chain: &str,
    height: i64,
    now: i64,
) -> AppResult<Option<i64>> {
    let written: Option<i64> = on_db!(store.db(), |db, pg| sqlx::query_scalar(sql!(
        pg,
        "INSERT INTO chains (name, head, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET head = excluded.head, updated_at = excluded.updated_at \
         WHERE excluded.head >= chains.head RETURNING head",
    ))
    .bind(chain)
    .bind(height)
    .bind(now)
    .fetch_optional(db)
    .await)?;
    if written.is_some() {
        return Ok(None);
    }
    Ok(on_db!(store.db(), |db, pg| sqlx::query_scalar(sql!(
        pg,
        "SELECT head FROM chains WHERE name = $1"
    ))
    .bind(chain)
    .fetch_optional(db)
    .await)?)
}
