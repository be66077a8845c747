//! Retention: finished deliveries (with their attempts), dead letters and
//! events that nothing refers to any more are deleted once older than
//! `retention.*`, in small batches, each its own short transaction, so
//! delivery never waits behind a large delete. Rows are found through
//! their time-ordered ids (a ULID names its creation time), so a pass costs
//! what it deletes, not the size of the table.

use super::sql::{id_rows, query, Sql};
use super::Store;
use crate::error::AppResult;
use crate::ids::{id_bound, DeadLetterId, DeliveryId};

const OLD_SUCCEEDED: Sql = Sql::both(
    "SELECT id FROM deliveries WHERE status = 'succeeded' AND id < $1 AND completed_at < $2 \
     ORDER BY id LIMIT $3",
);

const DELETE_ATTEMPTS: Sql = Sql::each(
    "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT value ->> 'id' FROM json_each($1))",
    "DELETE FROM delivery_attempts \
     WHERE delivery_id IN (SELECT value ->> 'id' FROM payhook_json_rows($1::jsonb))",
);

const DELETE_DELIVERIES: Sql = Sql::each(
    "DELETE FROM deliveries WHERE id IN (SELECT value ->> 'id' FROM json_each($1))",
    "DELETE FROM deliveries WHERE id IN (SELECT value ->> 'id' FROM payhook_json_rows($1::jsonb))",
);

/// Deletes up to `limit` deliveries that succeeded before `before_ms`,
/// with their attempts. Returns how many.
pub async fn succeeded_batch(store: &Store, before_ms: i64, limit: i64) -> AppResult<u64> {
    let ids: Vec<DeliveryId> = query(OLD_SUCCEEDED)
        .bind(id_bound(crate::ids::DELIVERY, before_ms))
        .bind(before_ms)
        .bind(limit)
        .scalars(store.db())
        .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let rows = id_rows(&ids);
    let mut tx = store.begin_write().await?;
    query(DELETE_ATTEMPTS)
        .bind(rows.clone())
        .execute(&mut tx)
        .await?;
    let n = query(DELETE_DELIVERIES).bind(rows).execute(&mut tx).await?;
    store.commit(tx, false).await?;
    Ok(n)
}

const OLD_DEAD: Sql = Sql::both(
    "SELECT id, delivery_id FROM dead_letters WHERE id < $1 AND dead_at < $2 ORDER BY id LIMIT $3",
);

const DELETE_DEAD_LETTERS: Sql = Sql::each(
    "DELETE FROM dead_letters WHERE id IN (SELECT value ->> 'id' FROM json_each($1))",
    "DELETE FROM dead_letters WHERE id IN (SELECT value ->> 'id' FROM payhook_json_rows($1::jsonb))",
);

/// Deletes up to `limit` dead letters dead before `before_ms`, with their
/// deliveries and attempts. Returns how many.
pub async fn dead_batch(store: &Store, before_ms: i64, limit: i64) -> AppResult<u64> {
    let rows: Vec<(DeadLetterId, DeliveryId)> = query(OLD_DEAD)
        .bind(id_bound(crate::ids::DEAD_LETTER, before_ms))
        .bind(before_ms)
        .bind(limit)
        .fetch_all(store.db())
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let letters: Vec<&DeadLetterId> = rows.iter().map(|(l, _)| l).collect();
    let deliveries: Vec<&DeliveryId> = rows.iter().map(|(_, d)| d).collect();
    let deliveries = id_rows(&deliveries.iter().map(|d| d.as_str()).collect::<Vec<_>>());
    let mut tx = store.begin_write().await?;
    let n = query(DELETE_DEAD_LETTERS)
        .bind(id_rows(
            &letters.iter().map(|l| l.as_str()).collect::<Vec<_>>(),
        ))
        .execute(&mut tx)
        .await?;
    query(DELETE_ATTEMPTS)
        .bind(deliveries.clone())
        .execute(&mut tx)
        .await?;
    query(DELETE_DELIVERIES)
        .bind(deliveries)
        .execute(&mut tx)
        .await?;
    store.commit(tx, false).await?;
    Ok(n)
}

const DELETE_ORPHAN_EVENTS: Sql = Sql::both(
    "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.id < $1 AND e.created_at < $2 \
     AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) \
     AND NOT EXISTS (SELECT 1 FROM dead_letters l WHERE l.event_id = e.id) \
     AND (e.payment_id IS NULL OR EXISTS (SELECT 1 FROM payments p WHERE p.id = e.payment_id \
     AND p.status IN ('confirmed', 'underpaid', 'overpaid', 'expired'))) ORDER BY e.id LIMIT $3)",
);

/// Deletes up to `limit` events created before `before_ms` that no
/// delivery or dead letter refers to, of payments in a final status (a
/// payment still moving numbers its next event by its count of events:
/// see `EventId::of_change`). Returns how many.
pub async fn events_batch(store: &Store, before_ms: i64, limit: i64) -> AppResult<u64> {
    let mut tx = store.begin_write().await?;
    let n = query(DELETE_ORPHAN_EVENTS)
        .bind(id_bound(crate::ids::EVENT, before_ms))
        .bind(before_ms)
        .bind(limit)
        .execute(&mut tx)
        .await?;
    store.commit(tx, false).await?;
    Ok(n)
}

const DELETE_OLD_HEALTH: Sql = Sql::both(
    "DELETE FROM endpoint_health WHERE failing_since IS NULL \
     AND COALESCE(last_success_at, last_failure_at, 0) < $1",
);

/// Forgets healthy endpoints not heard of since `before_ms`.
pub async fn endpoint_health(store: &Store, before_ms: i64) -> AppResult<u64> {
    Ok(query(DELETE_OLD_HEALTH)
        .bind(before_ms)
        .execute(store.write_db())
        .await?)
}
