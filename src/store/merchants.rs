//! The `merchants` table: endpoints, secrets, signing scheme, filters.

use serde::Serialize;

use super::sql::{query, Sql, Tx};
use super::{jobs, Page, Store};
use crate::domain::{MerchantStatus, SignatureScheme};
use crate::error::{AppError, AppResult};
use crate::events::EventType;
use crate::ids::{DeliveryId, MerchantId, Secret};

/// A merchant row. Serialized (CLI, API) without its secrets and with only
/// the names of its extra headers, whose values are secrets too.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Merchant {
    pub id: MerchantId,
    pub name: String,
    pub webhook_url: String,
    #[serde(skip)]
    pub secret: Secret,
    #[serde(skip)]
    pub previous_secret: Option<Secret>,
    #[serde(serialize_with = "crate::time::ser::opt_ms")]
    pub previous_secret_expires_at: Option<i64>,
    #[sqlx(try_from = "String")]
    pub signature_scheme: SignatureScheme,
    pub signature_header: Option<String>,
    pub signature_prefix: Option<String>,
    /// JSON object of extra static headers; the values are secrets.
    #[serde(serialize_with = "header_names")]
    pub headers: Secret,
    /// JSON array of subscribed event types; `None` means all.
    #[serde(serialize_with = "json_list")]
    pub event_types: Option<String>,
    pub rate_limit_per_sec: Option<i64>,
    #[sqlx(try_from = "String")]
    pub status: MerchantStatus,
    pub disabled_reason: Option<String>,
    #[serde(serialize_with = "crate::time::ser::ms")]
    pub created_at: i64,
}

fn header_names<S: serde::Serializer>(headers: &Secret, s: S) -> Result<S::Ok, S::Error> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(headers.expose())
        .map_err(|_| serde::ser::Error::custom("stored extra headers are not a JSON object"))?;
    s.collect_seq(map.keys())
}

fn json_list<S: serde::Serializer>(list: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    let parsed: Option<Vec<String>> = list.as_deref().and_then(|l| serde_json::from_str(l).ok());
    parsed.serialize(s)
}

impl Merchant {
    /// Whether this merchant wants events of `kind` (`webhook.test` always).
    pub fn subscribes_to(&self, kind: EventType) -> bool {
        if kind == EventType::Test {
            return true;
        }
        match &self.event_types {
            None => true,
            Some(list) => serde_json::from_str::<Vec<String>>(list)
                .map(|l| l.iter().any(|t| t == kind.as_str()))
                .unwrap_or(true),
        }
    }
}

const INSERT: Sql = Sql::both(
    "INSERT INTO merchants (id, name, webhook_url, secret, previous_secret, \
     previous_secret_expires_at, signature_scheme, signature_header, signature_prefix, headers, \
     event_types, rate_limit_per_sec, status, disabled_reason, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
);

pub async fn insert(store: &Store, m: &Merchant) -> AppResult<()> {
    query(INSERT)
        .bind(&m.id)
        .bind(&m.name)
        .bind(&m.webhook_url)
        .bind(&m.secret)
        .bind(m.previous_secret.as_ref().map(Secret::expose))
        .bind(m.previous_secret_expires_at)
        .bind(m.signature_scheme)
        .bind(&m.signature_header)
        .bind(&m.signature_prefix)
        .bind(&m.headers)
        .bind(&m.event_types)
        .bind(m.rate_limit_per_sec)
        .bind(m.status)
        .bind(&m.disabled_reason)
        .bind(m.created_at)
        .execute(store.db())
        .await?;
    Ok(())
}

const UPDATE: Sql = Sql::both(
    "UPDATE merchants SET name = $2, webhook_url = $3, signature_scheme = $4, \
     signature_header = $5, signature_prefix = $6, headers = $7, event_types = $8, \
     rate_limit_per_sec = $9 WHERE id = $1",
);

/// Writes the editable fields of `m` (not its secrets, status or id).
pub async fn update(store: &Store, m: &Merchant) -> AppResult<()> {
    let done = query(UPDATE)
        .bind(&m.id)
        .bind(&m.name)
        .bind(&m.webhook_url)
        .bind(m.signature_scheme)
        .bind(&m.signature_header)
        .bind(&m.signature_prefix)
        .bind(&m.headers)
        .bind(&m.event_types)
        .bind(m.rate_limit_per_sec)
        .execute(store.db())
        .await?;
    if done == 0 {
        return Err(AppError::not_found("merchant", m.id.as_str()));
    }
    Ok(())
}

const GET: Sql = Sql::both(
    "SELECT id, name, webhook_url, secret, previous_secret, previous_secret_expires_at, \
     signature_scheme, signature_header, signature_prefix, headers, event_types, \
     rate_limit_per_sec, status, disabled_reason, created_at FROM merchants WHERE id = $1",
);

pub async fn find(store: &Store, id: &MerchantId) -> AppResult<Option<Merchant>> {
    Ok(query(GET).bind(id).fetch_optional(store.db()).await?)
}

pub async fn get(store: &Store, id: &MerchantId) -> AppResult<Merchant> {
    find(store, id)
        .await?
        .ok_or_else(|| AppError::not_found("merchant", id.as_str()))
}

/// The merchant, read inside the caller's transaction. Code holding a write
/// transaction must read through it, not the pool: on SQLite, callers
/// waiting for the write lock can hold every pooled connection, and a read
/// from the pool would then wait for them while they wait for it.
pub async fn get_in(tx: &mut Tx, id: &MerchantId) -> AppResult<Merchant> {
    query(GET)
        .bind(id)
        .fetch_optional(tx)
        .await?
        .ok_or_else(|| AppError::not_found("merchant", id.as_str()))
}

const LIST: Sql = Sql::both(
    "SELECT id, name, webhook_url, secret, previous_secret, previous_secret_expires_at, \
     signature_scheme, signature_header, signature_prefix, headers, event_types, \
     rate_limit_per_sec, status, disabled_reason, created_at FROM merchants \
     WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
);

pub async fn list(store: &Store, page: &Page) -> AppResult<Vec<Merchant>> {
    Ok(query(LIST)
        .bind(&page.cursor)
        .bind(page.limit)
        .fetch_all(store.db())
        .await?)
}

const ROTATE_SECRET: Sql = Sql::both(
    "UPDATE merchants SET previous_secret = secret, previous_secret_expires_at = $3, secret = $2 \
     WHERE id = $1",
);

/// Replaces the current secret; the old one keeps signing until `expires_at`.
pub async fn rotate_secret(
    store: &Store,
    id: &MerchantId,
    new_secret: &Secret,
    expires_at: i64,
) -> AppResult<()> {
    let done = query(ROTATE_SECRET)
        .bind(id)
        .bind(new_secret)
        .bind(expires_at)
        .execute(store.db())
        .await?;
    if done == 0 {
        return Err(AppError::not_found("merchant", id.as_str()));
    }
    Ok(())
}

const DISABLE_FOR_DELIVERY: Sql = Sql::both(
    "UPDATE merchants SET status = 'disabled', disabled_reason = $2 WHERE status = 'active' \
     AND (id, webhook_url) IN (SELECT merchant_id, url FROM deliveries WHERE id = $1)",
);

/// Disables the merchant whose webhook URL this delivery went to (a
/// per-payment `callback_url` matches none).
pub async fn disable_for_delivery(
    tx: &mut Tx,
    delivery_id: &DeliveryId,
    reason: &str,
) -> AppResult<()> {
    query(DISABLE_FOR_DELIVERY)
        .bind(delivery_id)
        .bind(reason)
        .execute(tx)
        .await?;
    Ok(())
}

const ENABLE: Sql =
    Sql::both("UPDATE merchants SET status = 'active', disabled_reason = NULL WHERE id = $1");

/// Re-enables a merchant and makes its waiting deliveries due now.
pub async fn enable(store: &Store, id: &MerchantId) -> AppResult<()> {
    let mut tx = store.begin_write().await?;
    let done = query(ENABLE).bind(id).execute(&mut tx).await?;
    if done == 0 {
        return Err(AppError::not_found("merchant", id.as_str()));
    }
    jobs::make_due_for_merchant(&mut tx, id).await?;
    store.commit(tx, true).await
}
