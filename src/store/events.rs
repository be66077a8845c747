//! The `events` table and the creation of a delivery for an event. Writing
//! an event, its delivery row and its queue job always happens in the
//! caller's transaction, together with the state change that caused it.

use crate::{on_db, on_tx, sql};
use serde::Serialize;

use super::{Store, Tx};
use crate::delivery::queue::{self, DeliveryJob, Lane};
use crate::error::{AppError, AppResult};
use crate::events::{self, EventType};
use crate::ids;
use crate::store::merchants::Merchant;
use crate::store::payments::Payment;

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Event {
    pub id: String,
    pub merchant_id: String,
    pub payment_id: Option<String>,
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
    use serde::Serialize;
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
    let rows: Vec<EventRow> = items
        .iter()
        .map(|it| {
            let id = ids::new_id(ids::EVENT);
            let payload = events::payment_body(&id, it.kind, now, it.payment, it.head, it.reason);
            let url = it
                .payment
                .callback_url
                .as_deref()
                .unwrap_or(&it.merchant.webhook_url);
            EventRow::new(id, it.merchant, Some(&it.payment.id), it.kind, payload, url)
        })
        .collect();
    let deliveries = insert_events(tx, &rows, now).await?;
    Ok(deliveries.iter().flatten().count())
}

/// One payment's event; returns its delivery id (`None` if unsubscribed).
pub async fn emit_for_payment(
    tx: &mut Tx,
    merchant: &Merchant,
    p: &Payment,
    kind: EventType,
    head: Option<i64>,
    now: i64,
) -> AppResult<Option<String>> {
    let id = ids::new_id(ids::EVENT);
    let payload = events::payment_body(&id, kind, now, p, head, None);
    let url = p.callback_url.as_deref().unwrap_or(&merchant.webhook_url);
    let row = EventRow::new(id, merchant, Some(&p.id), kind, payload, url);
    Ok(insert_events(tx, &[row], now).await?.pop().flatten())
}

/// Writes a `webhook.test` event for the merchant and its delivery.
/// Returns the event id and delivery id.
pub async fn emit_test(
    tx: &mut Tx,
    merchant: &Merchant,
    now: i64,
) -> AppResult<(String, Option<String>)> {
    let id = ids::new_id(ids::EVENT);
    let payload = events::test_body(&id, now, &merchant.id);
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
#[derive(serde::Serialize)]
struct EventRow {
    id: String,
    merchant_id: String,
    payment_id: Option<String>,
    #[serde(rename = "type")]
    kind: &'static str,
    payload: String,
    #[serde(skip)]
    url: Option<String>,
}

impl EventRow {
    fn new(
        id: String,
        m: &Merchant,
        payment_id: Option<&str>,
        kind: EventType,
        payload: String,
        url: &str,
    ) -> Self {
        EventRow {
            id,
            merchant_id: m.id.clone(),
            payment_id: payment_id.map(str::to_string),
            kind: kind.as_str(),
            payload,
            url: m.subscribes_to(kind.as_str()).then(|| url.to_string()),
        }
    }
}

/// Inserts events, then deliveries for the subscribed ones; returns the
/// delivery id of each event, in order.
async fn insert_events(tx: &mut Tx, rows: &[EventRow], now: i64) -> AppResult<Vec<Option<String>>> {
    if rows.is_empty() {
        return Ok(vec![]);
    }
    on_tx!(tx, |c, pg| sqlx::query(sql!(
        pg,
        "INSERT INTO events (id, merchant_id, payment_id, type, payload, created_at) \
         SELECT value ->> 'id', value ->> 'merchant_id', value ->> 'payment_id', value ->> 'type', \
         value ->> 'payload', $2 FROM json_each($1)",
    ))
    .bind(to_json(rows)?)
    .bind(now)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
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

#[derive(serde::Serialize)]
struct NewDelivery {
    id: String,
    event_id: String,
    merchant_id: String,
    url: String,
    endpoint: String,
}

impl NewDelivery {
    fn new(event_id: &str, merchant_id: &str, url: &str) -> Self {
        // An unparsable URL gets itself as endpoint; the sender refuses it.
        let endpoint = url::Url::parse(url)
            .map(|u| crate::delivery::target::endpoint_key(&u))
            .unwrap_or_else(|_| url.to_string());
        NewDelivery {
            id: ids::new_id(ids::DELIVERY),
            event_id: event_id.to_string(),
            merchant_id: merchant_id.to_string(),
            url: url.to_string(),
            endpoint,
        }
    }
}

/// Pending deliveries due now, with their first-attempt jobs.
async fn insert_deliveries(tx: &mut Tx, rows: &[NewDelivery], now: i64) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    on_tx!(tx, |c, pg| {
        sqlx::query(
        sql!(pg, "INSERT INTO deliveries (id, event_id, merchant_id, url, endpoint, status, attempts, next_attempt_at, \
         created_at, updated_at) \
         SELECT value ->> 'id', value ->> 'event_id', value ->> 'merchant_id', value ->> 'url', value ->> 'endpoint', \
         'pending', 0, $2, $2, $2 FROM json_each($1)",)
    )
    .bind(to_json(rows)?)
    .bind(now)
    .execute(c)
    .await.map(|r| r.rows_affected())
    })?;
    let jobs: Vec<(DeliveryJob, i64, Lane)> = rows
        .iter()
        .map(|r| (DeliveryJob::first(&r.id), now, Lane::First))
        .collect();
    queue::push_many(tx, &jobs).await
}

/// A new pending delivery of an existing event, due now.
pub async fn insert_delivery(
    tx: &mut Tx,
    event_id: &str,
    merchant_id: &str,
    url: &str,
    now: i64,
) -> AppResult<String> {
    let row = NewDelivery::new(event_id, merchant_id, url);
    let id = row.id.clone();
    insert_deliveries(tx, &[row], now).await?;
    Ok(id)
}

fn to_json<T: serde::Serialize + ?Sized>(rows: &T) -> AppResult<String> {
    serde_json::to_string(rows).map_err(|e| AppError::internal(format!("encode rows: {e}")))
}

pub async fn get(store: &Store, id: &str) -> AppResult<Event> {
    on_db!(store.db(), |db, pg| sqlx::query_as::<_, Event>(sql!(
        pg,
        "SELECT id, merchant_id, payment_id, type, payload, created_at FROM events WHERE id = $1",
    ))
    .bind(id)
    .fetch_optional(db)
    .await)?
    .ok_or_else(|| AppError::not_found("event", id))
}

pub async fn list_for_payment(store: &Store, payment_id: &str) -> AppResult<Vec<Event>> {
    Ok(on_db!(store.db(), |db, pg| {
        sqlx::query_as::<_, Event>(
        sql!(pg, "SELECT id, merchant_id, payment_id, type, payload, created_at FROM events WHERE payment_id = $1 ORDER BY id",)
    )
    .bind(payment_id)
    .fetch_all(db)
    .await
    })?)
}

/// Where an event goes now: its payment's `callback_url`, else the
/// merchant's current `webhook_url`.
pub async fn current_target(tx: &mut Tx, event_id: &str) -> AppResult<String> {
    on_tx!(tx, |c, pg| sqlx::query_scalar(
        sql!(pg, "SELECT COALESCE(p.callback_url, m.webhook_url) FROM events e JOIN merchants m ON m.id = e.merchant_id \
         LEFT JOIN payments p ON p.id = e.payment_id WHERE e.id = $1",)
    )
    .bind(event_id)
    .fetch_optional(c)
    .await)?
    .ok_or_else(|| AppError::not_found("event", event_id))
}
