//! The dead-letter queue: resubmission of dead deliveries (and replay of
//! any event, the same mechanism without a DLQ row). A resubmission is
//! a new delivery of the same event (same `webhook-id`, same body) to the
//! event's current target, and marks the DLQ row — once: a second
//! resubmission of the same row is a conflict.

use crate::error::{AppError, AppResult, ErrorKind};
use crate::ids::{DeadLetterId, DeliveryId, EventId, MerchantId};
use crate::store::dead_letters::{self, Filter};
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
    let delivery_id = DeliveryId::new();
    if !dead_letters::mark_resubmitted(tx, dlq_id, &delivery_id, now).await? {
        return Err(AppError::conflict(format!(
            "dead letter {dlq_id} was already resubmitted"
        )));
    }
    redeliver(tx, &delivery_id, &row.event_id, &row.merchant_id, now).await?;
    Ok(delivery_id)
}

/// A new delivery of an existing event to its current target.
async fn redeliver(
    tx: &mut Tx,
    id: &DeliveryId,
    event_id: &EventId,
    merchant_id: &MerchantId,
    now: i64,
) -> AppResult<()> {
    let url = events::current_target(tx, event_id).await?;
    events::insert_delivery(tx, id, event_id, merchant_id, &url, now).await
}

/// Replays an event: a new delivery with the same `webhook-id` and body,
/// whatever happened to earlier ones. Returns the new delivery id.
pub async fn replay(store: &Store, event_id: &EventId) -> AppResult<DeliveryId> {
    let event = events::get(store, event_id).await?;
    let mut tx = store.begin_write().await?;
    let delivery_id = DeliveryId::new();
    redeliver(
        &mut tx,
        &delivery_id,
        &event.id,
        &event.merchant_id,
        now_ms(),
    )
    .await?;
    store.commit(tx, true).await?;
    let summary = serde_json::json!({"delivery_id": delivery_id});
    audit::record(store, "event.replay", Some(event_id.as_str()), summary).await;
    Ok(delivery_id)
}

/// Resubmits every row matching `filter` that was not resubmitted yet;
/// returns how many. Works in chunks, one transaction each.
pub async fn resubmit_matching(store: &Store, filter: &Filter) -> AppResult<u64> {
    let filter = Filter {
        unresubmitted_only: true,
        ..filter.clone()
    };
    let mut total = 0u64;
    loop {
        let rows = dead_letters::list(store, &filter, &Page::new(Some(Page::MAX), None)?).await?;
        if rows.is_empty() {
            let summary = serde_json::json!({
                "merchant_id": filter.merchant_id, "reason": filter.reason,
                "since": filter.since.map(crate::time::rfc3339),
                "until": filter.until.map(crate::time::rfc3339), "count": total,
            });
            audit::record(store, "dead_letter.resubmit_matching", None, summary).await;
            return Ok(total);
        }
        let mut tx = store.begin_write().await?;
        let now = now_ms();
        for row in &rows {
            match resubmit_in(&mut tx, &row.id, now).await {
                Ok(_) => total += 1,
                // Resubmitted by someone else meanwhile: skip it.
                Err(e) if e.kind == ErrorKind::Conflict => {}
                Err(e) => return Err(e),
            }
        }
        store.commit(tx, true).await?;
    }
}
