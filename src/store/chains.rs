//! The `chains` table: the last known head height of each chain.

use serde::Serialize;

use super::sql::{query, Sql, Tx};
use super::Store;
use crate::error::AppResult;

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct ChainHead {
    pub name: String,
    pub head: i64,
    pub updated_at: i64,
}

const SET_HEAD: Sql = Sql::both(
    "INSERT INTO chains (name, head, updated_at) VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO UPDATE SET head = excluded.head, updated_at = excluded.updated_at",
);

/// Sets the head height (reported by the gateway or read from a node).
pub async fn set_head(store: &Store, chain: &str, height: i64, now: i64) -> AppResult<()> {
    query(SET_HEAD)
        .bind(chain)
        .bind(height)
        .bind(now)
        .execute(store.write_db())
        .await?;
    Ok(())
}

const LIST: Sql = Sql::both("SELECT name, head, updated_at FROM chains ORDER BY name");

pub async fn list(store: &Store) -> AppResult<Vec<ChainHead>> {
    Ok(query(LIST).fetch_all(store.db()).await?)
}

const HEAD: Sql = Sql::both("SELECT head, updated_at FROM chains WHERE name = $1");

/// The stored head and when it was written.
pub async fn head_in(tx: &mut Tx, chain: &str) -> AppResult<Option<(i64, i64)>> {
    Ok(query(HEAD).bind(chain).fetch_optional(tx).await?)
}

const ADVANCE_HEAD: Sql = Sql::both(
    "INSERT INTO chains (name, head, updated_at) VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO UPDATE SET head = excluded.head, updated_at = excluded.updated_at \
     WHERE excluded.head >= chains.head RETURNING head",
);

const STORED_HEAD: Sql = Sql::both("SELECT head FROM chains WHERE name = $1");

/// Records a head read from a node, unless it is below the stored one.
/// Returns the stored head when `height` is lower (nothing is written).
pub async fn advance_head(
    store: &Store,
    chain: &str,
    height: i64,
    now: i64,
) -> AppResult<Option<i64>> {
    let written: Option<i64> = query(ADVANCE_HEAD)
        .bind(chain)
        .bind(height)
        .bind(now)
        .scalar_optional(store.db())
        .await?;
    if written.is_some() {
        return Ok(None);
    }
    Ok(query(STORED_HEAD)
        .bind(chain)
        .scalar_optional(store.db())
        .await?)
}
