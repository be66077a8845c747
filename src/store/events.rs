//! The `events` table and the creation of a delivery for an event. Writing
//! an event, its delivery row and its queue job always happens in the
//! caller's transaction, together with the state change that caused it.

use serde::Serialize;

use super::{Store, Tx};
use crate::delivery::queue::{self, DeliveryJob, Lane};
use crate::error::{AppError, AppResult};
use crate::events::{self, EventType};
use crate::ids;
use crate::store::merchants::Merchant;
use crate::store::payments::Payment;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Event {
    pub id: String,
    pub merchant_id: String,
    pub payment_id: Option<String>,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub payload: String,
    pub created_at: i64,
}

#[derive(Debug, Serialize)]
pub struct EventView {
    pub id: String,
    pub merchant_id: String,
    pub payment_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    /// The exact body that is sent, as JSON.
    pub payload: serde_json::Value,
    pub created_at: String,
}

impl Event {
    pub fn view(&self) -> EventView {
        EventView {
            id: self.id.clone(),
            merchant_id: self.merchant_id.clone(),
            payment_id: self.payment_id.clone(),
            kind: self.kind.clone(),
            payload: serde_json::from_str(&self.payload).unwrap_or(serde_json::Value::Null),
            created_at: crate::time::rfc3339(self.created_at),
        }
    }
}

/// Writes the event for `p` entering its current status, and its delivery
/// (to the payment's `callback_url`, else the merchant's `webhook_url`).
/// Returns the delivery id, or `None` if the merchant does not subscribe.
pub async fn emit_for_payment(
    tx: &mut Tx,
    merchant: &Merchant,
    p: &Payment,
    kind: EventType,
    head: Option<i64>,
    now: i64,
) -> AppResult<Option<String>> {
    let event_id = ids::new_id(ids::EVENT);
    let body = events::payment_body(&event_id, kind, now, p, head);
    let url = p.callback_url.as_deref().unwrap_or(&merchant.webhook_url);
    insert_with_delivery(tx, merchant, &event_id, Some(&p.id), kind, &body, url, now).await
}

/// Writes a `webhook.test` event for the merchant and its delivery.
/// Returns the event id and delivery id.
pub async fn emit_test(
    tx: &mut Tx,
    merchant: &Merchant,
    now: i64,
) -> AppResult<(String, Option<String>)> {
    let event_id = ids::new_id(ids::EVENT);
    let body = events::test_body(&event_id, now, &merchant.id);
    let delivery = insert_with_delivery(
        tx,
        merchant,
        &event_id,
        None,
        EventType::Test,
        &body,
        &merchant.webhook_url,
        now,
    )
    .await?;
    Ok((event_id, delivery))
}

/// Inserts an event and, when the merchant subscribes to its type, a due
/// delivery to `url` with its first-attempt job.
#[allow(clippy::too_many_arguments)]
async fn insert_with_delivery(
    tx: &mut Tx,
    merchant: &Merchant,
    event_id: &str,
    payment_id: Option<&str>,
    kind: EventType,
    payload: &str,
    url: &str,
    now: i64,
) -> AppResult<Option<String>> {
    sqlx::query(
        "INSERT INTO events (id, merchant_id, payment_id, type, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(event_id)
    .bind(&merchant.id)
    .bind(payment_id)
    .bind(kind.as_str())
    .bind(payload)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if !merchant.subscribes_to(kind.as_str()) {
        return Ok(None);
    }
    Ok(Some(
        insert_delivery(tx, event_id, &merchant.id, url, now).await?,
    ))
}

/// A new pending delivery of an existing event, due now.
pub async fn insert_delivery(
    tx: &mut Tx,
    event_id: &str,
    merchant_id: &str,
    url: &str,
    now: i64,
) -> AppResult<String> {
    let delivery_id = ids::new_id(ids::DELIVERY);
    sqlx::query(
        "INSERT INTO deliveries (id, event_id, merchant_id, url, status, attempts, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5)",
    )
    .bind(&delivery_id)
    .bind(event_id)
    .bind(merchant_id)
    .bind(url)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    queue::push(tx, &DeliveryJob::first(&delivery_id), now, Lane::First).await?;
    Ok(delivery_id)
}

pub async fn get(store: &Store, id: &str) -> AppResult<Event> {
    sqlx::query_as::<_, Event>(
        "SELECT id, merchant_id, payment_id, type, payload, created_at FROM events WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(store.pool())
    .await?
    .ok_or_else(|| AppError::not_found("event", id))
}

pub async fn list_for_payment(store: &Store, payment_id: &str) -> AppResult<Vec<Event>> {
    Ok(sqlx::query_as::<_, Event>(
        "SELECT id, merchant_id, payment_id, type, payload, created_at FROM events WHERE payment_id = $1 ORDER BY id",
    )
    .bind(payment_id)
    .fetch_all(store.pool())
    .await?)
}

/// Where an event goes now: its payment's `callback_url`, else the
/// merchant's current `webhook_url`.
pub async fn current_target(tx: &mut Tx, event_id: &str) -> AppResult<String> {
    sqlx::query_scalar(
        "SELECT COALESCE(p.callback_url, m.webhook_url) FROM events e JOIN merchants m ON m.id = e.merchant_id \
         LEFT JOIN payments p ON p.id = e.payment_id WHERE e.id = $1",
    )
    .bind(event_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| AppError::not_found("event", event_id))
}
