//! The `dead_letters` table (the DLQ). Policy — when to dead-letter, how to
//! resubmit — lives in `delivery::dlq`; this module only reads and writes rows.

use serde::Serialize;

use super::sql::{json_rows, query, Sql, Tx};
use super::{Page, Store};
use crate::domain::DeadReason;
use crate::error::{AppError, AppResult};
use crate::ids::{DeadLetterId, DeliveryId, EndpointId, EventId, MerchantId};

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct DeadLetter {
    pub id: DeadLetterId,
    pub delivery_id: DeliveryId,
    pub event_id: EventId,
    pub merchant_id: MerchantId,
    pub endpoint_id: Option<EndpointId>,
    pub url: String,
    pub attempts: i64,
    #[sqlx(try_from = "String")]
    pub reason: DeadReason,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "crate::time::ser::ms")]
    pub dead_at: i64,
    #[serde(serialize_with = "crate::time::ser::opt_ms")]
    pub resubmitted_at: Option<i64>,
    pub resubmitted_delivery_id: Option<DeliveryId>,
}

/// Filters of `dlq list`, `GET /v1/dead-letters` and bulk resubmission.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub merchant_id: Option<MerchantId>,
    pub endpoint_id: Option<EndpointId>,
    pub reason: Option<DeadReason>,
    /// Dead at or after (unix ms).
    pub since: Option<i64>,
    /// Dead before (unix ms).
    pub until: Option<i64>,
    /// Only rows not yet resubmitted.
    pub unresubmitted_only: bool,
}

const INSERT_MANY: Sql = Sql::each(
    "INSERT INTO dead_letters (id, delivery_id, event_id, merchant_id, endpoint_id, url, attempts, \
     reason, last_status_code, last_error, dead_at) \
     SELECT j.value ->> 'dlq', d.id, d.event_id, d.merchant_id, d.endpoint_id, d.url, d.attempts, $2, \
     d.last_status_code, d.last_error, $3 \
     FROM json_each($1) AS j JOIN deliveries d ON d.id = j.value ->> 'delivery' \
     WHERE true ON CONFLICT (delivery_id) DO NOTHING \
     RETURNING id, delivery_id, event_id, merchant_id, endpoint_id",
    "INSERT INTO dead_letters (id, delivery_id, event_id, merchant_id, endpoint_id, url, attempts, \
     reason, last_status_code, last_error, dead_at) \
     SELECT j.value ->> 'dlq', d.id, d.event_id, d.merchant_id, d.endpoint_id, d.url, d.attempts, $2, \
     d.last_status_code, d.last_error, $3 \
     FROM payhook_json_rows($1::jsonb) AS j JOIN deliveries d ON d.id = j.value ->> 'delivery' \
     WHERE true ON CONFLICT (delivery_id) DO NOTHING \
     RETURNING id, delivery_id, event_id, merchant_id, endpoint_id",
);

/// Dead-letters deliveries whose rows were just marked `dead` in `tx`, and
/// tells the operator (SPEC §9).
pub async fn insert_many(
    tx: &mut Tx,
    delivery_ids: &[DeliveryId],
    reason: DeadReason,
    now: i64,
) -> AppResult<()> {
    if delivery_ids.is_empty() {
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = delivery_ids
        .iter()
        .map(|d| serde_json::json!({"dlq": DeadLetterId::new(), "delivery": d}))
        .collect();
    let created: Vec<super::operator::Created> = query(INSERT_MANY)
        .bind(json_rows(&rows)?)
        .bind(reason)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
    super::operator::dead_letters_created(tx, &created, reason, now).await
}

const GET: Sql = Sql::both(
    "SELECT id, delivery_id, event_id, merchant_id, endpoint_id, url, attempts, reason, last_status_code, \
     last_error, dead_at, resubmitted_at, resubmitted_delivery_id FROM dead_letters WHERE id = $1",
);

pub async fn get(store: &Store, id: &DeadLetterId) -> AppResult<DeadLetter> {
    query(GET)
        .bind(id)
        .fetch_optional(store.db())
        .await?
        .ok_or_else(|| AppError::not_found("dead letter", id.as_str()))
}

/// Reads one row inside a write transaction (so a resubmit sees the latest state).
pub async fn get_in(tx: &mut Tx, id: &DeadLetterId) -> AppResult<DeadLetter> {
    query(GET)
        .bind(id)
        .fetch_optional(tx)
        .await?
        .ok_or_else(|| AppError::not_found("dead letter", id.as_str()))
}

const LIST: Sql = Sql::both(
    "SELECT id, delivery_id, event_id, merchant_id, endpoint_id, url, attempts, reason, last_status_code, \
     last_error, dead_at, resubmitted_at, resubmitted_delivery_id FROM dead_letters \
     WHERE ($1 IS NULL OR merchant_id = $1) AND ($2 IS NULL OR reason = $2) \
     AND ($3 IS NULL OR dead_at >= $3) AND ($4 IS NULL OR dead_at < $4) \
     AND ($5 = 0 OR resubmitted_at IS NULL) AND ($6 IS NULL OR id < $6) \
     AND ($8 IS NULL OR endpoint_id = $8) ORDER BY id DESC LIMIT $7",
);

pub async fn list(store: &Store, filter: &Filter, page: &Page) -> AppResult<Vec<DeadLetter>> {
    Ok(query(LIST)
        .bind(filter.merchant_id.as_ref())
        .bind(filter.reason)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.unresubmitted_only)
        .bind(&page.cursor)
        .bind(page.limit)
        .bind(filter.endpoint_id.as_ref())
        .fetch_all(store.db())
        .await?)
}

const MARK_RESUBMITTED: Sql = Sql::both(
    "UPDATE dead_letters SET resubmitted_at = $2, resubmitted_delivery_id = $3 \
     WHERE id = $1 AND resubmitted_at IS NULL",
);

/// Marks a row resubmitted, only if it was not already; false if it was.
pub async fn mark_resubmitted(
    tx: &mut Tx,
    id: &DeadLetterId,
    new_delivery_id: &DeliveryId,
    now: i64,
) -> AppResult<bool> {
    let done = query(MARK_RESUBMITTED)
        .bind(id)
        .bind(now)
        .bind(new_delivery_id)
        .execute(tx)
        .await?;
    Ok(done == 1)
}

const COUNT_OPEN: Sql = Sql::both("SELECT COUNT(*) FROM dead_letters WHERE resubmitted_at IS NULL");

/// Dead letters not yet resubmitted (the DLQ size).
pub async fn count_open(store: &Store) -> AppResult<i64> {
    Ok(query(COUNT_OPEN).scalar(store.db()).await?)
}

const COUNT: Sql = Sql::both(
    "SELECT COUNT(*) FROM dead_letters \
     WHERE ($1 IS NULL OR merchant_id = $1) AND ($2 IS NULL OR reason = $2) \
     AND ($3 IS NULL OR dead_at >= $3) AND ($4 IS NULL OR dead_at < $4) \
     AND ($5 = 0 OR resubmitted_at IS NULL) AND ($6 IS NULL OR endpoint_id = $6)",
);

/// How many rows match `filter` (what a bulk resubmission would take).
pub async fn count(store: &Store, filter: &Filter) -> AppResult<i64> {
    Ok(query(COUNT)
        .bind(filter.merchant_id.as_ref())
        .bind(filter.reason)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.unresubmitted_only)
        .bind(filter.endpoint_id.as_ref())
        .scalar(store.db())
        .await?)
}

const OF_DELIVERY: Sql = Sql::both(
    "SELECT id, delivery_id, event_id, merchant_id, endpoint_id, url, attempts, reason, \
     last_status_code, last_error, dead_at, resubmitted_at, resubmitted_delivery_id \
     FROM dead_letters WHERE delivery_id = $1",
);

/// The dead letter of a delivery, if it died.
pub async fn of_delivery(store: &Store, delivery_id: &DeliveryId) -> AppResult<Option<DeadLetter>> {
    Ok(query(OF_DELIVERY)
        .bind(delivery_id)
        .fetch_optional(store.db())
        .await?)
}
