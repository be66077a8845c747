//! The `merchants` table: endpoints, secrets, signing scheme, filters.

use crate::{on_db, on_tx, sql};
use std::fmt;

use serde::Serialize;

use super::{Page, Store, Tx};
use crate::error::{AppError, AppResult};

/// A merchant row. Serialized (CLI, API) without its secrets and with only
/// the names of its extra headers, whose values are secrets too.
#[derive(Clone, sqlx::FromRow, Serialize)]
pub struct Merchant {
    pub id: String,
    pub name: String,
    pub webhook_url: String,
    #[serde(skip)]
    pub secret: String,
    #[serde(skip)]
    pub previous_secret: Option<String>,
    #[serde(serialize_with = "crate::time::ser::opt_ms")]
    pub previous_secret_expires_at: Option<i64>,
    pub signature_scheme: String,
    pub signature_header: Option<String>,
    pub signature_prefix: Option<String>,
    /// JSON object of extra static headers; the values are secrets.
    #[serde(serialize_with = "header_names")]
    pub headers: String,
    /// JSON array of subscribed event types; `None` means all.
    #[serde(serialize_with = "json_list")]
    pub event_types: Option<String>,
    pub rate_limit_per_sec: Option<i64>,
    pub status: String,
    pub disabled_reason: Option<String>,
    #[serde(serialize_with = "crate::time::ser::ms")]
    pub created_at: i64,
}

fn header_names<S: serde::Serializer>(headers: &str, s: S) -> Result<S::Ok, S::Error> {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(headers).unwrap_or_default();
    s.collect_seq(map.keys())
}

fn json_list<S: serde::Serializer>(list: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    let parsed: Option<Vec<String>> = list.as_deref().and_then(|l| serde_json::from_str(l).ok());
    parsed.serialize(s)
}

// Secrets and header values never reach a log line through `{:?}`.
impl fmt::Debug for Merchant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Merchant")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("webhook_url", &self.webhook_url)
            .field("secret", &"[redacted]")
            .field("signature_scheme", &self.signature_scheme)
            .field("headers", &"[redacted]")
            .field("status", &self.status)
            .finish()
    }
}

impl Merchant {
    /// Whether this merchant wants events of `kind` (`webhook.test` always).
    pub fn subscribes_to(&self, kind: &str) -> bool {
        if kind == "webhook.test" {
            return true;
        }
        match &self.event_types {
            None => true,
            Some(list) => serde_json::from_str::<Vec<String>>(list)
                .map(|l| l.iter().any(|t| t == kind))
                .unwrap_or(true),
        }
    }
}

macro_rules! columns {
    () => {
        "id, name, webhook_url, secret, previous_secret, previous_secret_expires_at, \
            signature_scheme, signature_header, signature_prefix, headers, event_types, rate_limit_per_sec, \
            status, disabled_reason, created_at"
    };
}

pub async fn insert(store: &Store, m: &Merchant) -> AppResult<()> {
    on_db!(store.db(), |db, pg| {
        sqlx::query(
        sql!(pg, "INSERT INTO merchants (id, name, webhook_url, secret, previous_secret, previous_secret_expires_at, \
         signature_scheme, signature_header, signature_prefix, headers, event_types, rate_limit_per_sec, \
         status, disabled_reason, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",)
    )
    .bind(&m.id)
    .bind(&m.name)
    .bind(&m.webhook_url)
    .bind(&m.secret)
    .bind(&m.previous_secret)
    .bind(m.previous_secret_expires_at)
    .bind(&m.signature_scheme)
    .bind(&m.signature_header)
    .bind(&m.signature_prefix)
    .bind(&m.headers)
    .bind(&m.event_types)
    .bind(m.rate_limit_per_sec)
    .bind(&m.status)
    .bind(&m.disabled_reason)
    .bind(m.created_at)
    .execute(db)
    .await.map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Writes the editable fields of `m` (not its secrets, status or id).
pub async fn update(store: &Store, m: &Merchant) -> AppResult<()> {
    let done = on_db!(store.db(), |db, pg| {
        sqlx::query(
        sql!(pg, "UPDATE merchants SET name = $2, webhook_url = $3, signature_scheme = $4, signature_header = $5, \
         signature_prefix = $6, headers = $7, event_types = $8, rate_limit_per_sec = $9 WHERE id = $1",)
    )
    .bind(&m.id)
    .bind(&m.name)
    .bind(&m.webhook_url)
    .bind(&m.signature_scheme)
    .bind(&m.signature_header)
    .bind(&m.signature_prefix)
    .bind(&m.headers)
    .bind(&m.event_types)
    .bind(m.rate_limit_per_sec)
    .execute(db)
    .await.map(|r| r.rows_affected())
    })?;
    if done == 0 {
        return Err(AppError::not_found("merchant", &m.id));
    }
    Ok(())
}

pub async fn find(store: &Store, id: &str) -> AppResult<Option<Merchant>> {
    Ok(on_db!(store.db(), |db, pg| sqlx::query_as::<_, Merchant>(
        sql!(
            pg,
            concat!("SELECT ", columns!(), " FROM merchants WHERE id = $1")
        )
    )
    .bind(id)
    .fetch_optional(db)
    .await)?)
}

pub async fn get(store: &Store, id: &str) -> AppResult<Merchant> {
    find(store, id)
        .await?
        .ok_or_else(|| AppError::not_found("merchant", id))
}

/// The merchant, read inside the caller's transaction. Code holding a write
/// transaction must read through it, not the pool: on SQLite, callers
/// waiting for the write lock can hold every pooled connection, and a read
/// from the pool would then wait for them while they wait for it.
pub async fn get_in(tx: &mut Tx, id: &str) -> AppResult<Merchant> {
    on_tx!(tx, |c, pg| sqlx::query_as::<_, Merchant>(sql!(
        pg,
        concat!("SELECT ", columns!(), " FROM merchants WHERE id = $1")
    ))
    .bind(id)
    .fetch_optional(c)
    .await)?
    .ok_or_else(|| AppError::not_found("merchant", id))
}

pub async fn list(store: &Store, page: &Page) -> AppResult<Vec<Merchant>> {
    Ok(on_db!(store.db(), |db, pg| sqlx::query_as::<_, Merchant>(
        sql!(
            pg,
            concat!(
                "SELECT ",
                columns!(),
                " FROM merchants WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
            )
        )
    )
    .bind(&page.cursor)
    .bind(page.limit)
    .fetch_all(db)
    .await)?)
}

/// Replaces the current secret; the old one keeps signing until `expires_at`.
pub async fn rotate_secret(
    store: &Store,
    id: &str,
    new_secret: &str,
    expires_at: i64,
) -> AppResult<()> {
    let done = on_db!(store.db(), |db, pg| {
        sqlx::query(
        sql!(pg, "UPDATE merchants SET previous_secret = secret, previous_secret_expires_at = $3, secret = $2 WHERE id = $1",)
    )
    .bind(id)
    .bind(new_secret)
    .bind(expires_at)
    .execute(db)
    .await.map(|r| r.rows_affected())
    })?;
    if done == 0 {
        return Err(AppError::not_found("merchant", id));
    }
    Ok(())
}

/// After a 410 Gone from a delivery's URL: disables the merchant if that URL
/// is its webhook (a per-payment `callback_url` only loses that delivery).
pub async fn disable_for_gone(tx: &mut Tx, delivery_id: &str, reason: &str) -> AppResult<()> {
    on_tx!(tx, |c, pg| {
        sqlx::query(
        sql!(pg, "UPDATE merchants SET status = 'disabled', disabled_reason = $2 \
         WHERE status = 'active' AND (id, webhook_url) IN (SELECT merchant_id, url FROM deliveries WHERE id = $1)",)
    )
    .bind(delivery_id)
    .bind(reason)
    .execute(c)
    .await.map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Re-enables a merchant and makes its waiting deliveries due now.
pub async fn enable(store: &Store, id: &str) -> AppResult<()> {
    let mut tx = store.begin_write().await?;
    let done = on_tx!(&mut tx, |c, pg| sqlx::query(sql!(
        pg,
        "UPDATE merchants SET status = 'active', disabled_reason = NULL WHERE id = $1"
    ))
    .bind(id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    if done == 0 {
        return Err(AppError::not_found("merchant", id));
    }
    crate::delivery::queue::make_due_for_merchant(&mut tx, id).await?;
    store.commit(tx, true).await
}
