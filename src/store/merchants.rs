//! The `merchants` table (id, name), and the merchant as the one-URL API
//! shows it: with its primary endpoint's URL, settings and status (SPEC §3).
//! Everything about sending lives in `endpoints`; the old per-merchant
//! columns are kept empty for the schema's sake (migration 0009).

use serde::Serialize;

use super::endpoints::{self, json_list};
use super::sql::{query, Sql, Tx};
use super::{Page, Store};
use crate::domain::{EndpointStatus, SignatureScheme};
use crate::error::{AppError, AppResult};
use crate::ids::{EndpointId, MerchantId, OPERATOR_MERCHANT};
use crate::sealing::Sealed;

/// A merchant with its primary endpoint's settings (`None`/`disabled` when
/// all its endpoints were deleted).
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Merchant {
    pub id: MerchantId,
    pub name: String,
    /// The primary endpoint (its oldest endpoint not deleted).
    pub endpoint_id: Option<EndpointId>,
    pub webhook_url: Option<String>,
    #[serde(serialize_with = "crate::time::ser::opt_ms")]
    pub previous_secret_expires_at: Option<i64>,
    #[sqlx(try_from = "String")]
    pub signature_scheme: SignatureScheme,
    pub signature_header: Option<String>,
    pub signature_prefix: Option<String>,
    #[serde(skip)]
    pub headers: Sealed,
    /// The names of the extra headers.
    #[sqlx(skip)]
    #[serde(rename = "headers")]
    pub header_names: Vec<String>,
    /// JSON array of subscribed event types; `None` means all.
    #[serde(serialize_with = "json_list")]
    pub event_types: Option<String>,
    pub rate_limit_per_sec: Option<i64>,
    #[sqlx(try_from = "String")]
    pub status: EndpointStatus,
    pub disabled_reason: Option<String>,
    #[serde(serialize_with = "crate::time::ser::ms")]
    pub created_at: i64,
}

fn with_names(store: &Store, mut m: Merchant) -> AppResult<Merchant> {
    m.header_names = endpoints::header_names(store.keys()?, &m.headers)?;
    Ok(m)
}

/// The legacy columns get placeholders: nothing reads them any more.
const INSERT: Sql = Sql::both(
    "INSERT INTO merchants (id, name, webhook_url, secret, created_at) VALUES ($1, $2, $3, '', $4)",
);

/// Writes a merchant row; its endpoints are written apart, in the same `tx`.
pub async fn insert(
    tx: &mut Tx,
    id: &MerchantId,
    name: &str,
    webhook_url: &str,
    created_at: i64,
) -> AppResult<()> {
    query(INSERT)
        .bind(id)
        .bind(name)
        .bind(webhook_url)
        .bind(created_at)
        .execute(tx)
        .await?;
    Ok(())
}

const RENAME: Sql = Sql::both("UPDATE merchants SET name = $2 WHERE id = $1");

pub async fn rename(tx: &mut Tx, id: &MerchantId, name: &str) -> AppResult<()> {
    let done = query(RENAME).bind(id).bind(name).execute(tx).await?;
    if done == 0 {
        return Err(AppError::not_found("merchant", id.as_str()));
    }
    Ok(())
}

const GET: Sql = Sql::both(
    "SELECT m.id, m.name, ep.id AS endpoint_id, ep.url AS webhook_url, \
     ep.previous_secret_expires_at, COALESCE(ep.signature_scheme, 'standard') AS signature_scheme, \
     ep.signature_header, ep.signature_prefix, COALESCE(ep.headers, '{}') AS headers, \
     ep.event_types, ep.rate_limit_per_sec, COALESCE(ep.status, 'disabled') AS status, \
     CASE WHEN ep.id IS NULL THEN 'no endpoint' ELSE ep.disabled_reason END AS disabled_reason, \
     m.created_at FROM merchants m LEFT JOIN endpoints ep ON ep.id = (SELECT p.id FROM endpoints p \
     WHERE p.merchant_id = m.id AND p.deleted_at IS NULL ORDER BY p.created_at, p.id LIMIT 1) \
     WHERE m.id = $1 AND m.id <> 'mer_operator'",
);

pub async fn find(store: &Store, id: &MerchantId) -> AppResult<Option<Merchant>> {
    query(GET)
        .bind(id)
        .fetch_optional(store.db())
        .await?
        .map(|m| with_names(store, m))
        .transpose()
}

pub async fn get(store: &Store, id: &MerchantId) -> AppResult<Merchant> {
    find(store, id)
        .await?
        .ok_or_else(|| AppError::not_found("merchant", id.as_str()))
}

const EXISTS: Sql = Sql::both("SELECT COUNT(*) FROM merchants WHERE id = $1 AND id <> $2");

/// Whether a (visible) merchant exists, read in the caller's transaction.
pub async fn exists_in(tx: &mut Tx, id: &MerchantId) -> AppResult<bool> {
    let n: i64 = query(EXISTS)
        .bind(id)
        .bind(OPERATOR_MERCHANT)
        .scalar(tx)
        .await?;
    Ok(n > 0)
}

const LIST: Sql = Sql::both(
    "SELECT m.id, m.name, ep.id AS endpoint_id, ep.url AS webhook_url, \
     ep.previous_secret_expires_at, COALESCE(ep.signature_scheme, 'standard') AS signature_scheme, \
     ep.signature_header, ep.signature_prefix, COALESCE(ep.headers, '{}') AS headers, \
     ep.event_types, ep.rate_limit_per_sec, COALESCE(ep.status, 'disabled') AS status, \
     CASE WHEN ep.id IS NULL THEN 'no endpoint' ELSE ep.disabled_reason END AS disabled_reason, \
     m.created_at FROM merchants m LEFT JOIN endpoints ep ON ep.id = (SELECT p.id FROM endpoints p \
     WHERE p.merchant_id = m.id AND p.deleted_at IS NULL ORDER BY p.created_at, p.id LIMIT 1) \
     WHERE ($1 IS NULL OR m.id < $1) AND m.id <> 'mer_operator' ORDER BY m.id DESC LIMIT $2",
);

pub async fn list(store: &Store, page: &Page) -> AppResult<Vec<Merchant>> {
    query(LIST)
        .bind(&page.cursor)
        .bind(page.limit)
        .fetch_all(store.db())
        .await?
        .into_iter()
        .map(|m| with_names(store, m))
        .collect()
}
