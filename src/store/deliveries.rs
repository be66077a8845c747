//! The `deliveries` and `delivery_attempts` tables: reading deliveries and
//! their attempts, and what the sender loads for one attempt. (Attempt
//! outcomes are written by [`super::outcomes`].)

use serde::Serialize;

use super::sql::{id_rows, query, Sql};
use super::{Page, Store};
use crate::domain::{AttemptErrorKind, DeliveryStatus, EndpointStatus, SignatureScheme};
use crate::error::{AppError, AppResult};
use crate::events::EventType;
use crate::ids::{DeliveryId, EndpointId, EventId, MerchantId, PaymentId};
use crate::sealing::Sealed;

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Delivery {
    pub id: DeliveryId,
    pub event_id: EventId,
    pub merchant_id: MerchantId,
    /// `None` for a payment's `callback_url`.
    pub endpoint_id: Option<EndpointId>,
    pub url: String,
    #[sqlx(try_from = "String")]
    pub status: DeliveryStatus,
    pub attempts: i64,
    #[serde(serialize_with = "crate::time::ser::opt_ms")]
    pub next_attempt_at: Option<i64>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "crate::time::ser::ms")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::time::ser::ms")]
    pub updated_at: i64,
    #[serde(serialize_with = "crate::time::ser::opt_ms")]
    pub completed_at: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Attempt {
    #[serde(skip)]
    pub delivery_id: DeliveryId,
    pub attempt: i64,
    #[serde(serialize_with = "crate::time::ser::ms")]
    pub started_at: i64,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    #[sqlx(try_from = "OptionalWord")]
    pub error_kind: Option<AttemptErrorKind>,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

/// A nullable column holding one of an enum's words.
#[derive(sqlx::Type)]
#[sqlx(transparent)]
pub struct OptionalWord(Option<String>);

impl TryFrom<OptionalWord> for Option<AttemptErrorKind> {
    type Error = AppError;
    fn try_from(w: OptionalWord) -> AppResult<Self> {
        w.0.map(AttemptErrorKind::try_from).transpose()
    }
}

/// A delivery with every attempt (`deliveries show`).
#[derive(Debug, Serialize)]
pub struct DeliveryWithAttempts {
    #[serde(flatten)]
    pub delivery: Delivery,
    pub delivery_attempts: Vec<Attempt>,
}

/// Everything one attempt needs, in one indexed query.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptContext {
    pub delivery_id: DeliveryId,
    #[sqlx(try_from = "String")]
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub url: String,
    pub event_id: EventId,
    pub payload: String,
    pub event_created_at: i64,
    pub merchant_id: MerchantId,
    /// Whether an endpoint signs it: the delivery's own, or for a payment's
    /// `callback_url` the merchant's primary endpoint (none when that
    /// endpoint was deleted or the merchant has none left; the fields below
    /// are then placeholders and the delivery is dead-lettered).
    pub has_signer: bool,
    /// The endpoint's status; for a payment's `callback_url` always `active`
    /// (the primary endpoint signs it, but that URL's state is its own).
    #[sqlx(try_from = "String")]
    pub endpoint_status: EndpointStatus,
    pub secret: Sealed,
    pub previous_secret: Option<Sealed>,
    pub previous_secret_expires_at: Option<i64>,
    #[sqlx(try_from = "String")]
    pub signature_scheme: SignatureScheme,
    pub signature_header: Option<String>,
    pub signature_prefix: Option<String>,
    /// JSON object of extra static headers, sealed (the values are secrets).
    pub headers: Sealed,
    pub rate_limit_per_sec: Option<i64>,
}

const ATTEMPT_CONTEXTS: Sql = Sql::each(
    "SELECT d.id AS delivery_id, d.status, d.attempts, d.url, e.id AS event_id, e.payload, \
     e.created_at AS event_created_at, d.merchant_id, \
     ep.id IS NOT NULL AS has_signer, CASE WHEN ep.id IS NULL THEN 'disabled' \
     WHEN d.endpoint_id IS NULL THEN 'active' ELSE ep.status END AS endpoint_status, \
     COALESCE(ep.secret, '') AS secret, ep.previous_secret, ep.previous_secret_expires_at, \
     COALESCE(ep.signature_scheme, 'standard') AS signature_scheme, ep.signature_header, \
     ep.signature_prefix, COALESCE(ep.headers, '{}') AS headers, ep.rate_limit_per_sec \
     FROM json_each($1) AS j JOIN deliveries d ON d.id = j.value ->> 'id' \
     JOIN events e ON e.id = d.event_id \
     LEFT JOIN endpoints ep ON ep.deleted_at IS NULL AND ep.id = COALESCE(d.endpoint_id, \
     (SELECT p.id FROM endpoints p WHERE p.merchant_id = d.merchant_id AND p.deleted_at IS NULL \
     ORDER BY p.created_at, p.id LIMIT 1))",
    "SELECT d.id AS delivery_id, d.status, d.attempts, d.url, e.id AS event_id, e.payload, \
     e.created_at AS event_created_at, d.merchant_id, \
     ep.id IS NOT NULL AS has_signer, CASE WHEN ep.id IS NULL THEN 'disabled' \
     WHEN d.endpoint_id IS NULL THEN 'active' ELSE ep.status END AS endpoint_status, \
     COALESCE(ep.secret, '') AS secret, ep.previous_secret, ep.previous_secret_expires_at, \
     COALESCE(ep.signature_scheme, 'standard') AS signature_scheme, ep.signature_header, \
     ep.signature_prefix, COALESCE(ep.headers, '{}') AS headers, ep.rate_limit_per_sec \
     FROM payhook_json_rows($1::jsonb) AS j JOIN deliveries d ON d.id = j.value ->> 'id' \
     JOIN events e ON e.id = d.event_id \
     LEFT JOIN endpoints ep ON ep.deleted_at IS NULL AND ep.id = COALESCE(d.endpoint_id, \
     (SELECT p.id FROM endpoints p WHERE p.merchant_id = d.merchant_id AND p.deleted_at IS NULL \
     ORDER BY p.created_at, p.id LIMIT 1))",
);

/// The contexts of many deliveries in one query (unknown ids are absent).
pub async fn attempt_contexts(store: &Store, ids: &[DeliveryId]) -> AppResult<Vec<AttemptContext>> {
    Ok(query(ATTEMPT_CONTEXTS)
        .bind(id_rows(ids))
        .fetch_all(store.db())
        .await?)
}

const GET: Sql = Sql::both(
    "SELECT id, event_id, merchant_id, endpoint_id, url, status, attempts, next_attempt_at, \
     last_status_code, \
     last_error, created_at, updated_at, completed_at FROM deliveries WHERE id = $1",
);

pub async fn get(store: &Store, id: &DeliveryId) -> AppResult<Delivery> {
    query(GET)
        .bind(id)
        .fetch_optional(store.db())
        .await?
        .ok_or_else(|| AppError::not_found("delivery", id.as_str()))
}

const ATTEMPTS: Sql = Sql::both(
    "SELECT delivery_id, attempt, started_at, duration_ms, status_code, error_kind, error, \
     response_body FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt",
);

pub async fn attempts(store: &Store, delivery_id: &DeliveryId) -> AppResult<Vec<Attempt>> {
    Ok(query(ATTEMPTS)
        .bind(delivery_id)
        .fetch_all(store.db())
        .await?)
}

/// Filters of `deliveries list` and `GET /v1/deliveries`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<DeliveryStatus>,
    pub merchant_id: Option<MerchantId>,
    pub endpoint_id: Option<EndpointId>,
    pub event_id: Option<EventId>,
    /// Only deliveries of events of this type.
    pub event_type: Option<EventType>,
    /// Only deliveries of this payment's events.
    pub payment_id: Option<PaymentId>,
    /// Created at or after (unix ms).
    pub since: Option<i64>,
    /// Created before (unix ms).
    pub until: Option<i64>,
}

/// The event-side filters go through `events` (indexed by type and by
/// payment); the time range through `deliveries_created`.
const LIST: Sql = Sql::both(
    "SELECT id, event_id, merchant_id, endpoint_id, url, status, attempts, next_attempt_at, \
     last_status_code, \
     last_error, created_at, updated_at, completed_at FROM deliveries \
     WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR merchant_id = $2) \
     AND ($3 IS NULL OR event_id = $3) \
     AND ($4 IS NULL OR event_id IN (SELECT id FROM events WHERE type = $4)) \
     AND ($5 IS NULL OR event_id IN (SELECT id FROM events WHERE payment_id = $5)) \
     AND ($6 IS NULL OR created_at >= $6) AND ($7 IS NULL OR created_at < $7) \
     AND ($8 IS NULL OR id < $8) AND ($10 IS NULL OR endpoint_id = $10) \
     ORDER BY id DESC LIMIT $9",
);

pub async fn list(store: &Store, filter: &Filter, page: &Page) -> AppResult<Vec<Delivery>> {
    Ok(query(LIST)
        .bind(filter.status)
        .bind(filter.merchant_id.as_ref())
        .bind(filter.event_id.as_ref())
        .bind(filter.event_type.map(EventType::as_str))
        .bind(filter.payment_id.as_ref())
        .bind(filter.since)
        .bind(filter.until)
        .bind(&page.cursor)
        .bind(page.limit)
        .bind(filter.endpoint_id.as_ref())
        .fetch_all(store.db())
        .await?)
}

const COUNT_BY_STATUS: Sql = Sql::both(
    "SELECT COUNT(CASE WHEN status = 'pending' THEN 1 END), \
     COUNT(CASE WHEN status = 'succeeded' THEN 1 END), \
     COUNT(CASE WHEN status = 'dead' THEN 1 END) FROM deliveries",
);

/// Counts by status (pending, succeeded, dead), for progress displays and
/// the bench.
pub async fn count_by_status(store: &Store) -> AppResult<(i64, i64, i64)> {
    Ok(query(COUNT_BY_STATUS).fetch_one(store.db()).await?)
}

const COUNT_PENDING: Sql = Sql::both("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'");

/// Deliveries not finished yet (an index range: cheap at any table size).
pub async fn count_pending(store: &Store) -> AppResult<i64> {
    Ok(query(COUNT_PENDING).scalar(store.db()).await?)
}
