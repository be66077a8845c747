//! The `api_keys` table: merchant API keys, stored as hashes.

use serde::Serialize;

use super::sql::{query, Sql};
use super::{Page, Store};
use crate::error::{AppError, AppResult};
use crate::ids::MerchantId;

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub merchant_id: MerchantId,
    pub name: String,
    #[serde(serialize_with = "crate::time::ser::ms")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::time::ser::opt_ms")]
    pub last_used_at: Option<i64>,
    #[serde(serialize_with = "crate::time::ser::opt_ms")]
    pub revoked_at: Option<i64>,
}

const INSERT: Sql = Sql::both(
    "INSERT INTO api_keys (id, merchant_id, name, key_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
);

pub async fn insert(store: &Store, key: &ApiKey, key_hash: &str) -> AppResult<()> {
    query(INSERT)
        .bind(&key.id)
        .bind(&key.merchant_id)
        .bind(&key.name)
        .bind(key_hash)
        .bind(key.created_at)
        .execute(store.write_db())
        .await?;
    Ok(())
}

const BY_HASH: Sql = Sql::both(
    "SELECT id, merchant_id, name, created_at, last_used_at, revoked_at FROM api_keys \
     WHERE key_hash = $1",
);

/// The key with this hash, if any (revoked ones too: the caller checks).
pub async fn find_by_hash(store: &Store, key_hash: &str) -> AppResult<Option<ApiKey>> {
    Ok(query(BY_HASH)
        .bind(key_hash)
        .fetch_optional(store.db())
        .await?)
}

const GET: Sql = Sql::both(
    "SELECT id, merchant_id, name, created_at, last_used_at, revoked_at FROM api_keys WHERE id = $1",
);

pub async fn get(store: &Store, id: &str) -> AppResult<ApiKey> {
    query(GET)
        .bind(id)
        .fetch_optional(store.db())
        .await?
        .ok_or_else(|| AppError::not_found("api key", id))
}

const LIST: Sql = Sql::both(
    "SELECT id, merchant_id, name, created_at, last_used_at, revoked_at FROM api_keys \
     WHERE merchant_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
);

pub async fn list(store: &Store, merchant: &MerchantId, page: &Page) -> AppResult<Vec<ApiKey>> {
    Ok(query(LIST)
        .bind(merchant)
        .bind(&page.cursor)
        .bind(page.limit)
        .fetch_all(store.db())
        .await?)
}

const REVOKE: Sql =
    Sql::both("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL");

/// Revokes a key; false if it was revoked already.
pub async fn revoke(store: &Store, id: &str, now: i64) -> AppResult<bool> {
    Ok(query(REVOKE)
        .bind(id)
        .bind(now)
        .execute(store.write_db())
        .await?
        == 1)
}

const TOUCH: Sql = Sql::both("UPDATE api_keys SET last_used_at = $2 WHERE id = $1");

pub async fn touch(store: &Store, id: &str, now: i64) -> AppResult<()> {
    query(TOUCH)
        .bind(id)
        .bind(now)
        .execute(store.write_db())
        .await?;
    Ok(())
}
