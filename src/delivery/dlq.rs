//! The dead-letter queue: resubmission of dead deliveries (and replay of
//! any event, the same mechanism without a DLQ row). A resubmission is
//! a new delivery of the same event (same `webhook-id`, same body) to the
//! event's current target, and marks the DLQ row — once: a second
//! resubmission of the same row is a conflict.

use crate::error::{AppError, AppResult, ErrorKind};
use crate::ids::{DeadLetterId, DeliveryId, EventId};
use crate::store::dead_letters::{self, DeadLetter, Filter};
use crate::store::endpoints::{self, Destination};
use crate::store::{audit, events, Page, Store, Tx};
use crate::time::now_ms;

/// Resubmits one row; returns the new delivery id.
pub async fn resubmit(store: &Store, dlq_id: &DeadLetterId) -> AppResult<DeliveryId> {
    let mut tx = store.begin_write().await?;
    let delivery_id = resubmit_in(&mut tx, dlq_id, now_ms()).await?;
    store.commit(tx, true).await?;
    let summary = serde_json::json!({"delivery_id": delivery_id});
    audit::record(
        store,
        "dead_letter.resubmit",
        Some(dlq_id.as_str()),
        summary,
    )
    .await;
    Ok(delivery_id)
}

/// Claims the row, then makes its new delivery: of two resubmissions at
/// once (two admins, two processes) only the one that claimed the row makes
/// a delivery; the other is a conflict and writes nothing.
async fn resubmit_in(tx: &mut Tx, dlq_id: &DeadLetterId, now: i64) -> AppResult<DeliveryId> {
    let row = dead_letters::get_in(tx, dlq_id).await?;
    if let Some(done) = &row.resubmitted_delivery_id {
        return Err(AppError::conflict(format!(
            "dead letter {dlq_id} was already resubmitted as delivery {done}"
        )));
    }
    let to = destination_of(tx, &row).await?;
    let delivery_id = DeliveryId::new();
    if !dead_letters::mark_resubmitted(tx, dlq_id, &delivery_id, now).await? {
        return Err(AppError::conflict(format!(
            "dead letter {dlq_id} was already resubmitted"
        )));
    }
    events::insert_delivery(tx, &delivery_id, &row.event_id, &row.merchant_id, &to, now).await?;
    Ok(delivery_id)
}

/// Where a dead letter goes again: its endpoint's current URL (refused
/// when the endpoint was deleted), or the `callback_url` it was sent to.
async fn destination_of(tx: &mut Tx, row: &DeadLetter) -> AppResult<Destination> {
    let Some(endpoint_id) = &row.endpoint_id else {
        return Ok((None, row.url.clone()));
    };
    match endpoints::url_in(tx, endpoint_id).await? {
        Some(url) => Ok((Some(endpoint_id.clone()), url)),
        None => Err(AppError::conflict(format!(
            "dead letter {}: its endpoint {endpoint_id} was deleted; replay the event \
             {} to send it to the merchant's endpoints now",
            row.id, row.event_id
        ))),
    }
}

/// Replays an event: new deliveries with the same `webhook-id` and body,
/// whatever happened to earlier ones, to wherever the event goes now.
/// Returns the new delivery ids; a conflict when it goes nowhere.
pub async fn replay(store: &Store, event_id: &EventId) -> AppResult<Vec<DeliveryId>> {
    let event = events::get(store, event_id).await?;
    let mut tx = store.begin_write().await?;
    let now = now_ms();
    let to = events::current_destinations(&mut tx, &event.id).await?;
    if to.is_empty() {
        return Err(AppError::conflict(format!(
            "event {event_id}: no active endpoint of merchant {} takes events of type {}",
            event.merchant_id, event.kind
        )));
    }
    let mut made = Vec::with_capacity(to.len());
    for dest in &to {
        let id = DeliveryId::new();
        events::insert_delivery(&mut tx, &id, &event.id, &event.merchant_id, dest, now).await?;
        made.push(id);
    }
    store.commit(tx, true).await?;
    let summary = serde_json::json!({"delivery_ids": made});
    audit::record(store, "event.replay", Some(event_id.as_str()), summary).await;
    Ok(made)
}

/// Resubmits every row matching `filter` that was not resubmitted yet;
/// returns how many. Works in chunks, one transaction each.
/// The audit log records it as `action` on `object_id` (the endpoint, for
/// `endpoint recover`).
pub async fn resubmit_matching(
    store: &Store,
    filter: &Filter,
    action: &str,
    object_id: Option<&str>,
) -> AppResult<u64> {
    let filter = Filter {
        unresubmitted_only: true,
        ..filter.clone()
    };
    let mut total = 0u64;
    // Each row is visited once (keyset paging): a row that cannot be
    // resubmitted (its endpoint was deleted, someone else took it) is
    // skipped, not retried.
    let mut cursor: Option<String> = None;
    loop {
        let page = Page::new(Some(Page::MAX), cursor.take())?;
        let rows = dead_letters::list(store, &filter, &page).await?;
        let Some(last) = rows.last() else {
            let summary = serde_json::json!({
                "merchant_id": filter.merchant_id, "endpoint_id": filter.endpoint_id,
                "reason": filter.reason,
                "since": filter.since.map(crate::time::rfc3339),
                "until": filter.until.map(crate::time::rfc3339), "count": total,
            });
            audit::record(store, action, object_id, summary).await;
            return Ok(total);
        };
        cursor = Some(last.id.as_str().to_string());
        let mut tx = store.begin_write().await?;
        let now = now_ms();
        for row in &rows {
            match resubmit_in(&mut tx, &row.id, now).await {
                Ok(_) => total += 1,
                // Resubmitted by someone else meanwhile, or its endpoint
                // is gone: skip it.
                Err(e) if e.kind == ErrorKind::Conflict => {}
                Err(e) => return Err(e),
            }
        }
        store.commit(tx, true).await?;
    }
}
