//! The `merchants` table: endpoints, secrets, signing scheme, filters.

use serde::Serialize;

use super::sql::{query, Sql, Tx};
use super::{jobs, Page, Store};
use crate::domain::{MerchantStatus, SignatureScheme};
use crate::error::{AppError, AppResult};
use crate::events::EventType;
use crate::ids::{DeliveryId, MerchantId};
use crate::sealing::{KeyRing, Sealed};

/// A merchant row. Its secrets and extra header values are stored sealed
/// (`sealing`); serialized (CLI, API) without them, with only the names of
/// its extra headers.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Merchant {
    pub id: MerchantId,
    pub name: String,
    pub webhook_url: String,
    #[serde(skip)]
    pub secret: Sealed,
    #[serde(skip)]
    pub previous_secret: Option<Sealed>,
    #[serde(serialize_with = "crate::time::ser::opt_ms")]
    pub previous_secret_expires_at: Option<i64>,
    #[sqlx(try_from = "String")]
    pub signature_scheme: SignatureScheme,
    pub signature_header: Option<String>,
    pub signature_prefix: Option<String>,
    /// JSON object of extra static headers, sealed (the values are secrets).
    #[serde(skip)]
    pub headers: Sealed,
    /// The names of the extra headers (filled by `get`, `find` and `list`).
    #[sqlx(skip)]
    #[serde(rename = "headers")]
    pub header_names: Vec<String>,
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

/// The extra headers of a stored (sealed) JSON object.
pub fn open_headers(keys: &KeyRing, sealed: &Sealed) -> AppResult<Vec<(String, String)>> {
    let plain = keys.open(sealed)?;
    serde_json::from_str::<std::collections::BTreeMap<String, String>>(plain.expose())
        .map(|m| m.into_iter().collect())
        .map_err(|_| AppError::internal("stored extra headers are not a JSON object of strings"))
}

/// Fills the header names a merchant is shown with.
fn with_names(store: &Store, mut m: Merchant) -> AppResult<Merchant> {
    let headers = open_headers(store.keys()?, &m.headers)?;
    m.header_names = headers.into_iter().map(|(k, _)| k).collect();
    Ok(m)
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
        .bind(m.previous_secret.as_ref())
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

/// The merchant, read inside the caller's transaction (without its header
/// names, which need the key ring to read). Code holding a write
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
    query(LIST)
        .bind(&page.cursor)
        .bind(page.limit)
        .fetch_all(store.db())
        .await?
        .into_iter()
        .map(|m| with_names(store, m))
        .collect()
}

const ROTATE_SECRET: Sql = Sql::both(
    "UPDATE merchants SET previous_secret = secret, previous_secret_expires_at = $3, secret = $2 \
     WHERE id = $1",
);

/// Replaces the current secret; the old one keeps signing until `expires_at`.
pub async fn rotate_secret(
    store: &Store,
    id: &MerchantId,
    new_secret: &Sealed,
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

const SEALED_COLUMNS: Sql = Sql::both("SELECT id, secret, previous_secret, headers FROM merchants");

/// Only if none of the three changed since they were read (an edit or a
/// rotation meanwhile wins; the row is sealed again at the next pass).
const RESEAL: Sql = Sql::each(
    "UPDATE merchants SET secret = $2, previous_secret = $3, headers = $4 \
     WHERE id = $1 AND secret = $5 AND headers = $6 AND previous_secret IS $7",
    "UPDATE merchants SET secret = $2, previous_secret = $3, headers = $4 \
     WHERE id = $1 AND secret = $5 AND headers = $6 AND previous_secret IS NOT DISTINCT FROM $7",
);

const CLEAR_EXPIRED: Sql = Sql::both(
    "UPDATE merchants SET previous_secret = NULL, previous_secret_expires_at = NULL \
     WHERE previous_secret_expires_at IS NOT NULL AND previous_secret_expires_at <= $1",
);

/// Which rows [`reseal`] seals again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reseal {
    /// Rows written before sealing existed (at every start).
    Unsealed,
    /// Every row not under the current key (`payhook secrets rotate-key`).
    NotUnderCurrentKey,
}

/// Seals stored secrets and header sets under the current key, and forgets
/// expired previous secrets. Returns how many merchants changed.
pub async fn reseal(store: &Store, which: Reseal, now: i64) -> AppResult<u64> {
    let keys = store.keys()?;
    clear_expired(store, now).await?;
    let rows: Vec<(MerchantId, Sealed, Option<Sealed>, Sealed)> =
        query(SEALED_COLUMNS).fetch_all(store.db()).await?;
    let mut changed = 0;
    for (id, secret, previous, headers) in rows {
        let current = |s: &Sealed| match which {
            Reseal::Unsealed => s.is_sealed(),
            Reseal::NotUnderCurrentKey => keys.is_current(s),
        };
        if current(&secret) && current(&headers) && previous.as_ref().is_none_or(current) {
            continue;
        }
        let again = |s: &Sealed| keys.open(s).and_then(|plain| keys.seal(&plain));
        let resealed = previous.as_ref().map(again).transpose()?;
        changed += query(RESEAL)
            .bind(&id)
            .bind(&again(&secret)?)
            .bind(resealed.as_ref())
            .bind(&again(&headers)?)
            .bind(&secret)
            .bind(&headers)
            .bind(previous.as_ref())
            .execute(store.db())
            .await?;
    }
    Ok(changed)
}

/// Forgets previous secrets whose overlap has ended.
pub async fn clear_expired(store: &Store, now: i64) -> AppResult<u64> {
    Ok(query(CLEAR_EXPIRED).bind(now).execute(store.db()).await?)
}
