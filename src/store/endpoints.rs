//! The `endpoint_health` table: since when each endpoint has been failing
//! without a success, for `circuit.disable_after`; and disabling an endpoint
//! (its merchant, and its pending deliveries to the DLQ).

use super::sql::{id_rows, query, Sql, Tx};
use super::{dead_letters, jobs};
use crate::domain::DeadReason;
use crate::error::AppResult;
use crate::ids::DeliveryId;

/// A success only matters to an endpoint that was failing (no row, or no
/// `failing_since`, means healthy): no write otherwise.
const RECORD_SUCCESS: Sql = Sql::each(
    "UPDATE endpoint_health SET failing_since = NULL, last_success_at = $2 \
     WHERE failing_since IS NOT NULL AND endpoint IN \
     (SELECT endpoint FROM deliveries WHERE id IN (SELECT value ->> 'id' FROM json_each($1)))",
    "UPDATE endpoint_health SET failing_since = NULL, last_success_at = $2 \
     WHERE failing_since IS NOT NULL AND endpoint IN (SELECT endpoint FROM deliveries \
     WHERE id IN (SELECT value ->> 'id' FROM payhook_json_rows($1::jsonb)))",
);

const RECORD_FAILURE: Sql = Sql::each(
    "INSERT INTO endpoint_health (endpoint, failing_since, last_failure_at) \
     SELECT DISTINCT endpoint, $2, $2 FROM deliveries \
     WHERE id IN (SELECT value ->> 'id' FROM json_each($1)) \
     ON CONFLICT (endpoint) DO UPDATE SET \
     failing_since = COALESCE(endpoint_health.failing_since, excluded.failing_since), \
     last_failure_at = excluded.last_failure_at",
    "INSERT INTO endpoint_health (endpoint, failing_since, last_failure_at) \
     SELECT DISTINCT endpoint, $2, $2 FROM deliveries \
     WHERE id IN (SELECT value ->> 'id' FROM payhook_json_rows($1::jsonb)) \
     ON CONFLICT (endpoint) DO UPDATE SET \
     failing_since = COALESCE(endpoint_health.failing_since, excluded.failing_since), \
     last_failure_at = excluded.last_failure_at",
);

/// Records the endpoints of these deliveries as failing (keeping the first
/// failure time) or healthy.
pub async fn record(
    tx: &mut Tx,
    delivery_ids: &[DeliveryId],
    success: bool,
    now: i64,
) -> AppResult<()> {
    if delivery_ids.is_empty() {
        return Ok(());
    }
    let sql = if success {
        RECORD_SUCCESS
    } else {
        RECORD_FAILURE
    };
    query(sql)
        .bind(id_rows(delivery_ids))
        .bind(now)
        .execute(tx)
        .await?;
    Ok(())
}

const FAILING_SINCE_BEFORE: Sql = Sql::each(
    "SELECT endpoint FROM endpoint_health WHERE failing_since IS NOT NULL AND failing_since <= $2 \
     AND endpoint IN (SELECT endpoint FROM deliveries \
     WHERE id IN (SELECT value ->> 'id' FROM json_each($1)))",
    "SELECT endpoint FROM endpoint_health WHERE failing_since IS NOT NULL AND failing_since <= $2 \
     AND endpoint IN (SELECT endpoint FROM deliveries \
     WHERE id IN (SELECT value ->> 'id' FROM payhook_json_rows($1::jsonb)))",
);

/// Endpoints of these deliveries that have failed since `cutoff` or longer.
pub async fn failing_since_before(
    tx: &mut Tx,
    delivery_ids: &[DeliveryId],
    cutoff: i64,
) -> AppResult<Vec<String>> {
    if delivery_ids.is_empty() {
        return Ok(vec![]);
    }
    Ok(query(FAILING_SINCE_BEFORE)
        .bind(id_rows(delivery_ids))
        .bind(cutoff)
        .scalars(tx)
        .await?)
}

const DISABLE_MERCHANTS: Sql = Sql::both(
    "UPDATE merchants SET status = 'disabled', disabled_reason = $2 WHERE status = 'active' \
     AND id IN (SELECT merchant_id FROM deliveries WHERE endpoint = $1 AND url = merchants.webhook_url)",
);

const KILL_PENDING: Sql = Sql::both(
    "UPDATE deliveries SET status = 'dead', updated_at = $2, completed_at = $2, next_attempt_at = NULL \
     WHERE endpoint = $1 AND status = 'pending' RETURNING id",
);

const RESTART_CLOCK: Sql =
    Sql::both("UPDATE endpoint_health SET failing_since = NULL WHERE endpoint = $1");

/// Disables an endpoint that failed for too long: the merchant whose webhook
/// it is becomes `disabled`, every pending delivery to it is dead-lettered
/// (`endpoint_disabled`) and its queued job removed, and the failure clock
/// restarts (so `merchant enable` gives it a fresh period).
pub async fn disable(tx: &mut Tx, endpoint: &str, now: i64) -> AppResult<u64> {
    let origin = crate::urls::key_origin(endpoint);
    let reason = format!(
        "endpoint {origin} failing without a success since before circuit.disable_after (disabled {})",
        crate::time::rfc3339(now)
    );
    query(DISABLE_MERCHANTS)
        .bind(endpoint)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
    let dead: Vec<DeliveryId> = query(KILL_PENDING)
        .bind(endpoint)
        .bind(now)
        .scalars(&mut *tx)
        .await?;
    dead_letters::insert_many(tx, &dead, DeadReason::EndpointDisabled, now).await?;
    jobs::cancel_for_deliveries(tx, &dead).await?;
    query(RESTART_CLOCK)
        .bind(endpoint)
        .execute(&mut *tx)
        .await?;
    tracing::warn!(
        endpoint = origin,
        dead_lettered = dead.len(),
        "endpoint disabled after failing for circuit.disable_after"
    );
    Ok(dead.len() as u64)
}
