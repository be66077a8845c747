//! The `endpoints` table: a merchant's webhook URLs, each with its signing
//! secrets, scheme, extra headers, event filter, rate limit and status. A
//! merchant's primary endpoint is its oldest one not deleted (the one-URL
//! API's `webhook_url`). Deleted endpoints keep their row (their deliveries
//! and dead letters point at it) but are gone from every listing.

use serde::Serialize;

use super::sql::{query, Sql, Tx};
pub use super::targets::{filter_takes, targets_in, Destination, Target, Targets};
use super::{dead_letters, jobs, operator, Page, Store};
use crate::domain::{DeadReason, EndpointStatus, SignatureScheme};
use crate::error::{AppError, AppResult};
use crate::ids::{DeliveryId, EndpointId, MerchantId};
use crate::sealing::{KeyRing, Sealed};

/// An endpoint row. Its secrets and extra header values are stored sealed
/// (`sealing`); serialized (CLI, API) without them, with only the names of
/// its extra headers.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Endpoint {
    pub id: EndpointId,
    pub merchant_id: MerchantId,
    pub url: String,
    pub description: Option<String>,
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
    /// The names of the extra headers (filled by `find`, `get` and `list`).
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

/// The extra headers of a stored (sealed) JSON object.
pub fn open_headers(keys: &KeyRing, sealed: &Sealed) -> AppResult<Vec<(String, String)>> {
    let plain = keys.open(sealed)?;
    serde_json::from_str::<std::collections::BTreeMap<String, String>>(plain.expose())
        .map(|m| m.into_iter().collect())
        .map_err(|_| AppError::internal("stored extra headers are not a JSON object of strings"))
}

/// The names of a sealed header set.
pub fn header_names(keys: &KeyRing, sealed: &Sealed) -> AppResult<Vec<String>> {
    Ok(open_headers(keys, sealed)?
        .into_iter()
        .map(|(k, _)| k)
        .collect())
}

fn with_names(store: &Store, mut ep: Endpoint) -> AppResult<Endpoint> {
    ep.header_names = header_names(store.keys()?, &ep.headers)?;
    Ok(ep)
}

pub(crate) fn json_list<S: serde::Serializer>(
    list: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let parsed: Option<Vec<String>> = list.as_deref().and_then(|l| serde_json::from_str(l).ok());
    parsed.serialize(s)
}

const INSERT: Sql = Sql::both(
    "INSERT INTO endpoints (id, merchant_id, url, description, secret, previous_secret, \
     previous_secret_expires_at, signature_scheme, signature_header, signature_prefix, headers, \
     event_types, rate_limit_per_sec, status, disabled_reason, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
);

pub async fn insert(tx: &mut Tx, ep: &Endpoint) -> AppResult<()> {
    query(INSERT)
        .bind(&ep.id)
        .bind(&ep.merchant_id)
        .bind(&ep.url)
        .bind(&ep.description)
        .bind(&ep.secret)
        .bind(ep.previous_secret.as_ref())
        .bind(ep.previous_secret_expires_at)
        .bind(ep.signature_scheme)
        .bind(&ep.signature_header)
        .bind(&ep.signature_prefix)
        .bind(&ep.headers)
        .bind(&ep.event_types)
        .bind(ep.rate_limit_per_sec)
        .bind(ep.status)
        .bind(&ep.disabled_reason)
        .bind(ep.created_at)
        .execute(tx)
        .await?;
    Ok(())
}

const UPDATE: Sql = Sql::both(
    "UPDATE endpoints SET url = $2, description = $3, signature_scheme = $4, \
     signature_header = $5, signature_prefix = $6, headers = $7, event_types = $8, \
     rate_limit_per_sec = $9 WHERE id = $1 AND deleted_at IS NULL AND id <> 'ep_operator'",
);

/// Writes the editable fields of `ep` (not its secrets, status or ids).
pub async fn update(tx: &mut Tx, ep: &Endpoint) -> AppResult<()> {
    let done = query(UPDATE)
        .bind(&ep.id)
        .bind(&ep.url)
        .bind(&ep.description)
        .bind(ep.signature_scheme)
        .bind(&ep.signature_header)
        .bind(&ep.signature_prefix)
        .bind(&ep.headers)
        .bind(&ep.event_types)
        .bind(ep.rate_limit_per_sec)
        .execute(tx)
        .await?;
    if done == 0 {
        return Err(AppError::not_found("endpoint", ep.id.as_str()));
    }
    Ok(())
}

const GET: Sql = Sql::both(
    "SELECT id, merchant_id, url, description, secret, previous_secret, \
     previous_secret_expires_at, signature_scheme, signature_header, signature_prefix, headers, \
     event_types, rate_limit_per_sec, status, disabled_reason, created_at FROM endpoints \
     WHERE id = $1 AND deleted_at IS NULL AND id <> 'ep_operator'",
);

pub async fn find(store: &Store, id: &EndpointId) -> AppResult<Option<Endpoint>> {
    query(GET)
        .bind(id)
        .fetch_optional(store.db())
        .await?
        .map(|ep| with_names(store, ep))
        .transpose()
}

pub async fn get(store: &Store, id: &EndpointId) -> AppResult<Endpoint> {
    find(store, id)
        .await?
        .ok_or_else(|| AppError::not_found("endpoint", id.as_str()))
}

const LIST: Sql = Sql::both(
    "SELECT id, merchant_id, url, description, secret, previous_secret, \
     previous_secret_expires_at, signature_scheme, signature_header, signature_prefix, headers, \
     event_types, rate_limit_per_sec, status, disabled_reason, created_at FROM endpoints \
     WHERE merchant_id = $1 AND deleted_at IS NULL AND ($2 IS NULL OR id > $2) \
     ORDER BY id LIMIT $3",
);

/// A merchant's endpoints, oldest first.
pub async fn list(
    store: &Store,
    merchant_id: &MerchantId,
    page: &Page,
) -> AppResult<Vec<Endpoint>> {
    query(LIST)
        .bind(merchant_id)
        .bind(&page.cursor)
        .bind(page.limit)
        .fetch_all(store.db())
        .await?
        .into_iter()
        .map(|ep| with_names(store, ep))
        .collect()
}

const PRIMARY: Sql = Sql::both(
    "SELECT id FROM endpoints WHERE merchant_id = $1 AND deleted_at IS NULL \
     ORDER BY created_at, id LIMIT 1",
);

/// The merchant's primary endpoint: its oldest endpoint not deleted. A
/// merchant whose endpoints were all deleted has none (a conflict).
pub async fn primary(store: &Store, merchant_id: &MerchantId) -> AppResult<EndpointId> {
    query(PRIMARY)
        .bind(merchant_id)
        .scalar_optional(store.db())
        .await?
        .ok_or_else(|| {
            AppError::conflict(format!(
                "merchant {merchant_id} has no endpoint; add one with \
                 POST /v1/merchants/{merchant_id}/endpoints"
            ))
        })
}

const ROTATE_SECRET: Sql = Sql::both(
    "UPDATE endpoints SET previous_secret = secret, previous_secret_expires_at = $3, secret = $2 \
     WHERE id = $1 AND deleted_at IS NULL AND id <> 'ep_operator'",
);

/// Replaces the current secret; the old one keeps signing until `expires_at`.
pub async fn rotate_secret(
    store: &Store,
    id: &EndpointId,
    new_secret: &Sealed,
    expires_at: i64,
) -> AppResult<()> {
    let done = query(ROTATE_SECRET)
        .bind(id)
        .bind(new_secret)
        .bind(expires_at)
        .execute(store.write_db())
        .await?;
    if done == 0 {
        return Err(AppError::not_found("endpoint", id.as_str()));
    }
    Ok(())
}

const ENABLE: Sql = Sql::both(
    "UPDATE endpoints SET status = 'active', disabled_reason = NULL \
     WHERE id = $1 AND deleted_at IS NULL AND id <> 'ep_operator'",
);

/// Re-enables an endpoint and makes its waiting deliveries due now.
pub async fn enable(store: &Store, id: &EndpointId) -> AppResult<()> {
    let mut tx = store.begin_write().await?;
    let done = query(ENABLE).bind(id).execute(&mut tx).await?;
    if done == 0 {
        return Err(AppError::not_found("endpoint", id.as_str()));
    }
    jobs::make_due_for_endpoint(&mut tx, id).await?;
    store.commit(tx, true).await
}

const DISABLE: Sql = Sql::both(
    "UPDATE endpoints SET status = 'disabled', disabled_reason = $2 \
     WHERE id = $1 AND deleted_at IS NULL AND status = 'active' AND id <> 'ep_operator' \
     RETURNING merchant_id",
);

/// Disables an endpoint by hand: nothing is sent to it until `enable`; its
/// pending deliveries wait (they are not lost). Returns whether it was
/// active.
pub async fn disable(store: &Store, id: &EndpointId, reason: &str, now: i64) -> AppResult<bool> {
    get(store, id).await?;
    let mut tx = store.begin_write().await?;
    let owner: Option<MerchantId> = query(DISABLE)
        .bind(id)
        .bind(reason)
        .scalar_optional(&mut tx)
        .await?;
    if let Some(merchant_id) = &owner {
        operator::endpoint_disabled(&mut tx, id, merchant_id, reason, now).await?;
    }
    store.commit(tx, owner.is_some()).await?;
    Ok(owner.is_some())
}

const DISABLE_FOR_DELIVERY: Sql = Sql::both(
    "UPDATE endpoints SET status = 'disabled', disabled_reason = $2 WHERE status = 'active' \
     AND deleted_at IS NULL AND id <> 'ep_operator' \
     AND id IN (SELECT endpoint_id FROM deliveries WHERE id = $1) RETURNING id, merchant_id",
);

/// Disables the endpoint this delivery went to (a 410 Gone); a payment's
/// `callback_url` belongs to no endpoint and disables none.
pub async fn disable_for_delivery(
    tx: &mut Tx,
    delivery_id: &DeliveryId,
    reason: &str,
    now: i64,
) -> AppResult<()> {
    let hit: Option<(EndpointId, MerchantId)> = query(DISABLE_FOR_DELIVERY)
        .bind(delivery_id)
        .bind(reason)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some((id, merchant_id)) = hit {
        operator::endpoint_disabled(tx, &id, &merchant_id, reason, now).await?;
    }
    Ok(())
}

const DISABLE_BY_KEY: Sql = Sql::each(
    "UPDATE endpoints SET status = 'disabled', disabled_reason = $2 WHERE status = 'active' \
     AND deleted_at IS NULL AND id <> 'ep_operator' AND id IN \
     (SELECT endpoint_id FROM deliveries WHERE endpoint = $1 AND (status = 'pending' \
     OR id IN (SELECT value ->> 'id' FROM json_each($3)))) RETURNING id, merchant_id",
    "UPDATE endpoints SET status = 'disabled', disabled_reason = $2 WHERE status = 'active' \
     AND deleted_at IS NULL AND id <> 'ep_operator' AND id IN \
     (SELECT endpoint_id FROM deliveries WHERE endpoint = $1 AND (status = 'pending' \
     OR id IN (SELECT value ->> 'id' FROM payhook_json_rows($3::jsonb)))) RETURNING id, merchant_id",
);

/// Disables every active endpoint sending to this URL key (the unit of
/// circuits) for `circuit.disable_after`: those with pending deliveries
/// there, and those of `failed` (the batch that crossed the cutoff, whose
/// last attempt may have just finished its delivery).
pub async fn disable_by_key(
    tx: &mut Tx,
    key: &str,
    failed: &[DeliveryId],
    reason: &str,
    now: i64,
) -> AppResult<Vec<(EndpointId, MerchantId)>> {
    let hit: Vec<(EndpointId, MerchantId)> = query(DISABLE_BY_KEY)
        .bind(key)
        .bind(reason)
        .bind(super::sql::id_rows(failed))
        .fetch_all(&mut *tx)
        .await?;
    for (id, merchant_id) in &hit {
        operator::endpoint_disabled(tx, id, merchant_id, reason, now).await?;
    }
    Ok(hit)
}

const DELETE: Sql = Sql::both(
    "UPDATE endpoints SET deleted_at = $2, status = 'disabled', disabled_reason = 'deleted' \
     WHERE id = $1 AND deleted_at IS NULL AND id <> 'ep_operator'",
);

const KILL_PENDING: Sql = Sql::both(
    "UPDATE deliveries SET status = 'dead', updated_at = $2, completed_at = $2, \
     next_attempt_at = NULL WHERE endpoint_id = $1 AND status = 'pending' RETURNING id",
);

/// Deletes an endpoint: it receives nothing more, and its pending
/// deliveries go to the DLQ (`endpoint_disabled`), not lost. Returns how
/// many were dead-lettered.
pub async fn delete(store: &Store, id: &EndpointId, now: i64) -> AppResult<u64> {
    let mut tx = store.begin_write().await?;
    let done = query(DELETE).bind(id).bind(now).execute(&mut tx).await?;
    if done == 0 {
        return Err(AppError::not_found("endpoint", id.as_str()));
    }
    let dead = kill_pending(&mut tx, id, now).await?;
    store.commit(tx, !dead.is_empty()).await?;
    Ok(dead.len() as u64)
}

/// Dead-letters an endpoint's pending deliveries (`endpoint_disabled`) and
/// removes their queued jobs.
async fn kill_pending(tx: &mut Tx, id: &EndpointId, now: i64) -> AppResult<Vec<DeliveryId>> {
    let dead: Vec<DeliveryId> = query(KILL_PENDING)
        .bind(id)
        .bind(now)
        .scalars(&mut *tx)
        .await?;
    dead_letters::insert_many(tx, &dead, DeadReason::EndpointDisabled, now).await?;
    jobs::cancel_for_deliveries(tx, &dead).await?;
    Ok(dead)
}

const SEALED_COLUMNS: Sql = Sql::both("SELECT id, secret, previous_secret, headers FROM endpoints");

/// Only if none of the three changed since they were read (an edit or a
/// rotation meanwhile wins; the row is sealed again at the next pass).
const RESEAL: Sql = Sql::each(
    "UPDATE endpoints SET secret = $2, previous_secret = $3, headers = $4 \
     WHERE id = $1 AND secret = $5 AND headers = $6 AND previous_secret IS $7",
    "UPDATE endpoints SET secret = $2, previous_secret = $3, headers = $4 \
     WHERE id = $1 AND secret = $5 AND headers = $6 AND previous_secret IS NOT DISTINCT FROM $7",
);

const CLEAR_EXPIRED: Sql = Sql::both(
    "UPDATE endpoints SET previous_secret = NULL, previous_secret_expires_at = NULL \
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
/// expired previous secrets. Returns how many endpoints changed.
pub async fn reseal(store: &Store, which: Reseal, now: i64) -> AppResult<u64> {
    let keys = store.keys()?;
    clear_expired(store, now).await?;
    let rows: Vec<(EndpointId, Sealed, Option<Sealed>, Sealed)> =
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
            .execute(store.write_db())
            .await?;
    }
    Ok(changed)
}

/// Forgets previous secrets whose overlap has ended.
pub async fn clear_expired(store: &Store, now: i64) -> AppResult<u64> {
    Ok(query(CLEAR_EXPIRED)
        .bind(now)
        .execute(store.write_db())
        .await?)
}

const URL_OF: Sql = Sql::both("SELECT url FROM endpoints WHERE id = $1 AND deleted_at IS NULL");

/// The current URL of an endpoint not deleted, read in the caller's transaction.
pub async fn url_in(tx: &mut Tx, id: &EndpointId) -> AppResult<Option<String>> {
    Ok(query(URL_OF).bind(id).scalar_optional(tx).await?)
}
