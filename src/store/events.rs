//! The `events` table and the creation of a delivery for an event. Writing
//! an event, its delivery row and its queue job always happens in the
//! caller's transaction, together with the state change that caused it.

use serde::Serialize;

use super::jobs::{self, NewJob};
use super::payments::Payment;
use super::sql::{json_rows, query, Sql, Tx};
use super::targets::{self, Destination, Target, Targets};
use super::Store;
use crate::error::{AppError, AppResult};
use crate::events::{self, EventType};
use crate::ids::{DeliveryId, EndpointId, EventId, MerchantId, PaymentId};

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
    /// The merchant's endpoints (`targets::targets_in`).
    pub targets: &'a Targets,
    pub payment: &'a Payment,
    pub kind: EventType,
    /// The chain head, for the `confirmations` field.
    pub head: Option<i64>,
    /// `payment.reorged`: why the transaction no longer counts.
    pub reason: Option<&'static str>,
}

/// Writes the events of many payments with their deliveries (to the
/// payment's `callback_url`, else every endpoint that takes the type) and
/// jobs, a few statements for the whole batch. Returns how many deliveries
/// it made.
pub async fn emit_for_payments(
    tx: &mut Tx,
    items: &[PaymentEvent<'_>],
    now: i64,
) -> AppResult<usize> {
    let rows = payment_event_rows(tx, items, now).await?;
    let deliveries = insert_events(tx, &rows, now).await?;
    Ok(deliveries.iter().map(Vec::len).sum())
}

/// One payment's event; returns its delivery ids (none if no endpoint takes it).
pub async fn emit_for_payment(
    tx: &mut Tx,
    item: &PaymentEvent<'_>,
    now: i64,
) -> AppResult<Vec<DeliveryId>> {
    let rows = payment_event_rows(tx, std::slice::from_ref(item), now).await?;
    Ok(insert_events(tx, &rows, now)
        .await?
        .pop()
        .unwrap_or_default())
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
    EventRow {
        destinations: it.targets.destinations(it.kind, p.callback_url.as_deref()),
        id,
        merchant_id: p.merchant_id.clone(),
        payment_id: Some(p.id.clone()),
        kind: it.kind.as_str().to_string(),
        payload,
    }
}

/// Writes a `webhook.test` event of the merchant for one endpoint and its
/// delivery.
pub async fn emit_test(
    tx: &mut Tx,
    merchant_id: &MerchantId,
    endpoint: &Target,
    now: i64,
) -> AppResult<(EventId, Option<DeliveryId>)> {
    let id = EventId::new();
    let payload = events::test_body(
        id.as_str(),
        now,
        merchant_id.as_str(),
        Some(endpoint.id.as_str()),
    );
    let row = EventRow {
        id: id.clone(),
        merchant_id: merchant_id.clone(),
        payment_id: None,
        kind: EventType::Test.as_str().to_string(),
        payload,
        destinations: vec![(Some(endpoint.id.clone()), endpoint.url.clone())],
    };
    let mut made = insert_events(tx, &[row], now).await?;
    Ok((id, made.pop().and_then(|d| d.into_iter().next())))
}

/// An event about to be written, and where it goes (nowhere when no
/// endpoint takes its type: the event is kept, nothing is sent).
#[derive(Serialize)]
pub(crate) struct EventRow {
    pub id: EventId,
    pub merchant_id: MerchantId,
    pub payment_id: Option<PaymentId>,
    #[serde(rename = "type")]
    pub kind: String,
    pub payload: String,
    #[serde(skip)]
    pub destinations: Vec<Destination>,
}

const INSERT_EVENTS: Sql = Sql::each(
    "INSERT INTO events (id, merchant_id, payment_id, type, payload, created_at) \
     SELECT value ->> 'id', value ->> 'merchant_id', value ->> 'payment_id', value ->> 'type', \
     value ->> 'payload', $2 FROM json_each($1)",
    "INSERT INTO events (id, merchant_id, payment_id, type, payload, created_at) \
     SELECT value ->> 'id', value ->> 'merchant_id', value ->> 'payment_id', value ->> 'type', \
     value ->> 'payload', $2 FROM payhook_json_rows($1::jsonb)",
);

/// Inserts events, then their deliveries; returns the delivery ids of each
/// event, in order.
pub(crate) async fn insert_events(
    tx: &mut Tx,
    rows: &[EventRow],
    now: i64,
) -> AppResult<Vec<Vec<DeliveryId>>> {
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
        let mut made = Vec::with_capacity(r.destinations.len());
        for (endpoint_id, url) in &r.destinations {
            let d = NewDelivery::new(&r.id, &r.merchant_id, endpoint_id.as_ref(), url);
            made.push(d.id.clone());
            new.push(d);
        }
        ids.push(made);
    }
    insert_deliveries(tx, &new, now).await?;
    Ok(ids)
}

#[derive(Serialize)]
struct NewDelivery {
    id: DeliveryId,
    event_id: EventId,
    merchant_id: MerchantId,
    endpoint_id: Option<EndpointId>,
    url: String,
    endpoint: String,
}

impl NewDelivery {
    fn new(
        event_id: &EventId,
        merchant_id: &MerchantId,
        endpoint_id: Option<&EndpointId>,
        url: &str,
    ) -> Self {
        NewDelivery {
            id: DeliveryId::new(),
            event_id: event_id.clone(),
            merchant_id: merchant_id.clone(),
            endpoint_id: endpoint_id.cloned(),
            url: url.to_string(),
            endpoint: crate::urls::endpoint_key_of(url),
        }
    }
}

const INSERT_DELIVERIES: Sql = Sql::each(
    "INSERT INTO deliveries (id, event_id, merchant_id, endpoint_id, url, endpoint, status, \
     attempts, next_attempt_at, created_at, updated_at) \
     SELECT value ->> 'id', value ->> 'event_id', value ->> 'merchant_id', \
     value ->> 'endpoint_id', value ->> 'url', value ->> 'endpoint', 'pending', 0, $2, $2, $2 \
     FROM json_each($1)",
    "INSERT INTO deliveries (id, event_id, merchant_id, endpoint_id, url, endpoint, status, \
     attempts, next_attempt_at, created_at, updated_at) \
     SELECT value ->> 'id', value ->> 'event_id', value ->> 'merchant_id', \
     value ->> 'endpoint_id', value ->> 'url', value ->> 'endpoint', 'pending', 0, $2, $2, $2 \
     FROM payhook_json_rows($1::jsonb)",
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
    to: &Destination,
    now: i64,
) -> AppResult<()> {
    let row = NewDelivery {
        id: id.clone(),
        ..NewDelivery::new(event_id, merchant_id, to.0.as_ref(), &to.1)
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

const PAYMENT_OF: Sql = Sql::both(
    "SELECT e.merchant_id, e.type, p.callback_url FROM events e \
     LEFT JOIN payments p ON p.id = e.payment_id WHERE e.id = $1",
);

/// Where an event goes now (a replay): its payment's `callback_url`, else
/// every active endpoint of the merchant that takes its type.
pub async fn current_destinations(tx: &mut Tx, event_id: &EventId) -> AppResult<Vec<Destination>> {
    let (merchant_id, kind, callback): (MerchantId, String, Option<String>) = query(PAYMENT_OF)
        .bind(event_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| AppError::not_found("event", event_id.as_str()))?;
    let targets = targets::targets_in(tx, &merchant_id).await?;
    match EventType::parse("type", &kind) {
        // A test was meant for the endpoint it was sent to.
        Ok(EventType::Test) => {
            let sent_to: Vec<(EndpointId, String)> = query(TEST_SENT_TO)
                .bind(event_id)
                .fetch_all(&mut *tx)
                .await?;
            Ok(sent_to
                .into_iter()
                .map(|(id, url)| (Some(id), url))
                .collect())
        }
        Ok(kind) => Ok(targets.destinations(kind, callback.as_deref())),
        // Operator events: to the operator endpoint, if it is still there.
        Err(_) => Ok(targets
            .endpoints
            .iter()
            .filter(|t| t.status == crate::domain::EndpointStatus::Active)
            .map(|t| (Some(t.id.clone()), t.url.clone()))
            .collect()),
    }
}

const TEST_SENT_TO: Sql = Sql::both(
    "SELECT DISTINCT ep.id, ep.url FROM deliveries d JOIN endpoints ep ON ep.id = d.endpoint_id \
     WHERE d.event_id = $1 AND ep.deleted_at IS NULL",
);
