//! The `console_sessions` table: web console sign-ins. The cookie carries a
//! random id; the table holds its SHA-256, the API key it was opened with
//! (none for the admin token), the form token (CSRF) and the expiry.

use sha2::{Digest, Sha256};

use super::sql::{query, Sql};
use super::Store;
use crate::error::AppResult;
use crate::ids::MerchantId;

/// A live session, as a request sees it.
#[derive(Debug, Clone)]
pub struct Session {
    /// `None`: opened with the admin token.
    pub key: Option<(String, MerchantId)>,
    /// Of an admin session: the fingerprint of the token it was opened with.
    pub admin_fingerprint: Option<String>,
    pub csrf: String,
    pub expires_at: i64,
}

/// The stored form of a session id (never the id itself).
pub fn hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

const INSERT: Sql = Sql::both(
    "INSERT INTO console_sessions (id_hash, key_id, admin_fingerprint, csrf, created_at, \
     expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
);

const PRUNE: Sql = Sql::both("DELETE FROM console_sessions WHERE expires_at <= $1");

/// Opens a session (of an API key, or of the admin token with its
/// fingerprint); forgets expired ones on the way.
pub async fn insert(
    store: &Store,
    id: &str,
    key_id: Option<&str>,
    admin_fingerprint: Option<&str>,
    csrf: &str,
    now: i64,
    expires_at: i64,
) -> AppResult<()> {
    query(PRUNE).bind(now).execute(store.write_db()).await?;
    query(INSERT)
        .bind(hash(id))
        .bind(key_id)
        .bind(admin_fingerprint)
        .bind(csrf)
        .bind(now)
        .bind(expires_at)
        .execute(store.write_db())
        .await?;
    Ok(())
}

/// Only unexpired sessions, and of a key only while the key is not revoked.
const FIND: Sql = Sql::both(
    "SELECT s.key_id, k.merchant_id, s.admin_fingerprint, s.csrf, s.expires_at \
     FROM console_sessions s \
     LEFT JOIN api_keys k ON k.id = s.key_id WHERE s.id_hash = $1 AND s.expires_at > $2 \
     AND (s.key_id IS NULL OR (k.id IS NOT NULL AND k.revoked_at IS NULL))",
);

type Row = (
    Option<String>,
    Option<MerchantId>,
    Option<String>,
    String,
    i64,
);

pub async fn find(store: &Store, id: &str, now: i64) -> AppResult<Option<Session>> {
    let row: Option<Row> = query(FIND)
        .bind(hash(id))
        .bind(now)
        .fetch_optional(store.db())
        .await?;
    Ok(row.map(
        |(key_id, merchant_id, admin_fingerprint, csrf, expires_at)| Session {
            key: key_id.zip(merchant_id),
            admin_fingerprint,
            csrf,
            expires_at,
        },
    ))
}

const DELETE: Sql = Sql::both("DELETE FROM console_sessions WHERE id_hash = $1");

/// Signs out.
pub async fn delete(store: &Store, id: &str) -> AppResult<()> {
    query(DELETE)
        .bind(hash(id))
        .execute(store.write_db())
        .await?;
    Ok(())
}
