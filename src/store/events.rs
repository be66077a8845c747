//! The `events` table and the creation of a delivery for an event. Writing
//! an event, its delivery row and its queue job always happens in the
//! caller's transaction, together with the state change that caused it.

use serde::Serialize;

use super::jobs::{self, NewJob};
use super::merchants::Merchant;
use super::payments::Payment;
use super::sql::{json_rows, query, Sql, Tx};
use super::Store;
use crate::error::{AppError, AppResult};
use crate::events::{self, EventType};
use crate::ids::{DeliveryId, EventId, MerchantId, PaymentId};

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Event {
    pub id: EventId,
    pub merchant_id: MerchantId,
    pub payment_id: Option<PaymentId>,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    /// The exact body that is sent; shown as JSON, not as a string.
    #[serde(serialize_with = "raw_json")]
    pub payload: String,
    #[serde(serialize_with = "crate::time::ser::ms")]
    pub created_at: i64,
}

fn raw_json<S: serde::Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<serde_json::Value>(v) {
        Ok(json) => json.serialize(s),
        Err(_) => s.serialize_str(v),
    }
}

/// A payment that just entered the status its event reports.
pub struct PaymentEvent<'a> {
    pub merchant: &'a Merchant,
    pub payment: &'a Payment,
    pub kind: EventType,
    /// The chain head, for the `confirmations` field.
    pub head: Option<i64>,
    /// `payment.reorged`: why the transaction no longer counts.
    pub reason: Option<&'static str>,
}

/// Writes the events of many payments with their deliveries (to the
/// payment's `callback_url`, else the merchant's `webhook_url`) and jobs, a
/// few statements for the whole batch. Returns how many deliveries it made.
pub async fn emit_for_payments(
    tx: &mut Tx,
    items: &[PaymentEvent<'_>],
    now: i64,
) -> AppResult<usize> {
    let rows = payment_event_rows(tx, items, now).await?;
    let deliveries = insert_events(tx, &rows, now).await?;
    Ok(deliveries.iter().flatten().count())
}

/// One payment's event; returns its delivery id (`None` if unsubscribed).
pub async fn emit_for_payment(
    tx: &mut Tx,
    item: &PaymentEvent<'_>,
    now: i64,
) -> AppResult<Option<DeliveryId>> {
    let rows = payment_event_rows(tx, std::slice::from_ref(item), now).await?;
    Ok(insert_events(tx, &rows, now).await?.pop().flatten())
}

const EVENT_COUNTS: Sql = Sql::each(
    "SELECT payment_id, COUNT(*) FROM events \
     WHERE payment_id IN (SELECT value ->> 'id' FROM json_each($1)) GROUP BY payment_id",
    "SELECT payment_id, COUNT(*) FROM events \
     WHERE payment_id IN (SELECT value ->> 'id' FROM payhook_json_rows($1::jsonb)) GROUP BY payment_id",
);

/// The rows of payment events, each with the id its state change derives
/// ([`EventId::of_change`]): the sequence is how many events the payment
/// already has, read in the same transaction.
async fn payment_event_rows(
    tx: &mut Tx,
    items: &[PaymentEvent<'_>],
    now: i64,
) -> AppResult<Vec<EventRow>> {
    let ids: Vec<&str> = items.iter().map(|it| it.payment.id.as_str()).collect();
    let counts: Vec<(PaymentId, i64)> = query(EVENT_COUNTS)
        .bind(super::sql::id_rows(&ids))
        .fetch_all(&mut *tx)
        .await?;
    let mut seq: std::collections::HashMap<PaymentId, i64> = counts.into_iter().collect();
    Ok(items
        .iter()
        .map(|it| {
            let n = seq.entry(it.payment.id.clone()).or_insert(0);
            let row = payment_event_row(it, u64::try_from(*n).unwrap_or(0), now);
            *n += 1;
            row
        })
        .collect())
}

fn payment_event_row(it: &PaymentEvent<'_>, seq: u64, now: i64) -> EventRow {
    let p = it.payment;
    let id = EventId::of_change(
        &p.id,
        p.created_at,
        it.kind.as_str(),
        p.tx_hash.as_deref(),
        seq,
    );
    let data = it.payment.event_data(it.head, it.reason);
    let payload = events::payment_body(id.as_str(), it.kind, now, data);
    let url = it
        .payment
        .callback_url
        .as_deref()
        .unwrap_or(&it.merchant.webhook_url);
    EventRow::new(id, it.merchant, Some(&it.payment.id), it.kind, payload, url)
}

/// Writes a `webhook.test` event for the merchant and its delivery.
pub async fn emit_test(
    tx: &mut Tx,
    merchant: &Merchant,
    now: i64,
) -> AppResult<(EventId, Option<DeliveryId>)> {
    let id = EventId::new();
    let payload = events::test_body(id.as_str(), now, merchant.id.as_str());
    let row = EventRow::new(
        id.clone(),
        merchant,
        None,
        EventType::Test,
        payload,
        &merchant.webhook_url,
    );
    Ok((id, insert_events(tx, &[row], now).await?.pop().flatten()))
}

/// An event about to be written; `url` is `None` when the merchant does not
/// subscribe to its type (the event is kept, nothing is sent).
#[derive(Serialize)]
struct EventRow {
    id: EventId,
    merchant_id: MerchantId,
    payment_id: Option<PaymentId>,
    #[serde(rename = "type")]
    kind: &'static str,
    payload: String,
    #[serde(skip)]
    url: Option<String>,
}

impl EventRow {
    fn new(
        id: EventId,
        m: &Merchant,
        payment_id: Option<&PaymentId>,
        kind: EventType,
        payload: String,
        url: &str,
    ) -> Self {
        EventRow {
            id,
            merchant_id: m.id.clone(),
            payment_id: payment_id.cloned(),
            kind: kind.as_str(),
            payload,
            url: m.subscribes_to(kind).then(|| url.to_string()),
        }
    }
}

const INSERT_EVENTS: Sql = Sql::each(
    "INSERT INTO events (id, merchant_id, payment_id, type, payload, created_at) \
     SELECT value ->> 'id', value ->> 'merchant_id', value ->> 'payment_id', value ->> 'type', \
     value ->> 'payload', $2 FROM json_each($1)",
    "INSERT INTO events (id, merchant_id, payment_id, type, payload, created_at) \
     SELECT value ->> 'id', value ->> 'merchant_id', value ->> 'payment_id', value ->> 'type', \
     value ->> 'payload', $2 FROM payhook_json_rows($1::jsonb)",
);

/// Inserts events, then deliveries for the subscribed ones; returns the
/// delivery id of each event, in order.
async fn insert_events(
    tx: &mut Tx,
    rows: &[EventRow],
    now: i64,
) -> AppResult<Vec<Option<DeliveryId>>> {
    if rows.is_empty() {
        return Ok(vec![]);
    }
    query(INSERT_EVENTS)
        .bind(json_rows(rows)?)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut new = Vec::new();
    for r in rows {
        match &r.url {
            Some(url) => {
                let d = NewDelivery::new(&r.id, &r.merchant_id, url);
                ids.push(Some(d.id.clone()));
                new.push(d);
            }
            None => ids.push(None),
        }
    }
    insert_deliveries(tx, &new, now).await?;
    Ok(ids)
}

#[derive(Serialize)]
struct NewDelivery {
    id: DeliveryId,
    event_id: EventId,
    merchant_id: MerchantId,
    url: String,
    endpoint: String,
}

impl NewDelivery {
    fn new(event_id: &EventId, merchant_id: &MerchantId, url: &str) -> Self {
        NewDelivery {
            id: DeliveryId::new(),
            event_id: event_id.clone(),
            merchant_id: merchant_id.clone(),
            url: url.to_string(),
            endpoint: crate::urls::endpoint_key_of(url),
        }
    }
}

const INSERT_DELIVERIES: Sql = Sql::each(
    "INSERT INTO deliveries (id, event_id, merchant_id, url, endpoint, status, attempts, \
     next_attempt_at, created_at, updated_at) \
     SELECT value ->> 'id', value ->> 'event_id', value ->> 'merchant_id', value ->> 'url', \
     value ->> 'endpoint', 'pending', 0, $2, $2, $2 FROM json_each($1)",
    "INSERT INTO deliveries (id, event_id, merchant_id, url, endpoint, status, attempts, \
     next_attempt_at, created_at, updated_at) \
     SELECT value ->> 'id', value ->> 'event_id', value ->> 'merchant_id', value ->> 'url', \
     value ->> 'endpoint', 'pending', 0, $2, $2, $2 FROM payhook_json_rows($1::jsonb)",
);

/// Pending deliveries due now, with their first-attempt jobs.
async fn insert_deliveries(tx: &mut Tx, rows: &[NewDelivery], now: i64) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    query(INSERT_DELIVERIES)
        .bind(json_rows(rows)?)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let jobs: Vec<NewJob> = rows.iter().map(|r| NewJob::first(&r.id, now)).collect();
    jobs::push_many(tx, &jobs).await
}

/// A new pending delivery of an existing event, due now.
pub async fn insert_delivery(
    tx: &mut Tx,
    id: &DeliveryId,
    event_id: &EventId,
    merchant_id: &MerchantId,
    url: &str,
    now: i64,
) -> AppResult<()> {
    let row = NewDelivery {
        id: id.clone(),
        ..NewDelivery::new(event_id, merchant_id, url)
    };
    insert_deliveries(tx, &[row], now).await
}

const GET: Sql = Sql::both(
    "SELECT id, merchant_id, payment_id, type, payload, created_at FROM events WHERE id = $1",
);

pub async fn get(store: &Store, id: &EventId) -> AppResult<Event> {
    query(GET)
        .bind(id)
        .fetch_optional(store.db())
        .await?
        .ok_or_else(|| AppError::not_found("event", id.as_str()))
}

const LIST_FOR_PAYMENT: Sql = Sql::both(
    "SELECT id, merchant_id, payment_id, type, payload, created_at FROM events \
     WHERE payment_id = $1 ORDER BY id",
);

pub async fn list_for_payment(store: &Store, payment_id: &PaymentId) -> AppResult<Vec<Event>> {
    Ok(query(LIST_FOR_PAYMENT)
        .bind(payment_id)
        .fetch_all(store.db())
        .await?)
}

const CURRENT_TARGET: Sql = Sql::both(
    "SELECT COALESCE(p.callback_url, m.webhook_url) FROM events e \
     JOIN merchants m ON m.id = e.merchant_id LEFT JOIN payments p ON p.id = e.payment_id \
     WHERE e.id = $1",
);

/// Where an event goes now: its payment's `callback_url`, else the
/// merchant's current `webhook_url`.
pub async fn current_target(tx: &mut Tx, event_id: &EventId) -> AppResult<String> {
    query(CURRENT_TARGET)
        .bind(event_id)
        .scalar_optional(tx)
        .await?
        .ok_or_else(|| AppError::not_found("event", event_id.as_str()))
}
