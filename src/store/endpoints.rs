//! The `endpoint_health` table: since when each endpoint has been failing
//! without a success, for `circuit.disable_after`; and disabling an endpoint
//! (its merchant, and its pending deliveries to the DLQ).

use super::Tx;
use crate::delivery::queue;
use crate::error::AppResult;
use crate::store::dead_letters;
use crate::{on_tx, sql};

/// Records the endpoints of these deliveries as failing (keeping the first
/// failure time) or healthy.
pub async fn record(tx: &mut Tx, delivery_ids: &[&str], success: bool, now: i64) -> AppResult<()> {
    if delivery_ids.is_empty() {
        return Ok(());
    }
    on_tx!(tx, |c, pg| {
        let sql = if success {
            // A success only matters to an endpoint that was failing (no
            // row, or no failing_since, means healthy): no write otherwise.
            sql!(
                pg,
                "UPDATE endpoint_health SET failing_since = NULL, last_success_at = $2 \
                 WHERE failing_since IS NOT NULL AND endpoint IN \
                 (SELECT endpoint FROM deliveries WHERE id IN (SELECT value ->> 'id' FROM json_each($1)))"
            )
        } else {
            sql!(
                pg,
                "INSERT INTO endpoint_health (endpoint, failing_since, last_failure_at) \
                 SELECT DISTINCT endpoint, $2, $2 FROM deliveries \
                 WHERE id IN (SELECT value ->> 'id' FROM json_each($1)) \
                 ON CONFLICT (endpoint) DO UPDATE SET \
                 failing_since = COALESCE(endpoint_health.failing_since, excluded.failing_since), \
                 last_failure_at = excluded.last_failure_at"
            )
        };
        sqlx::query(sql)
            .bind(super::id_list(delivery_ids))
            .bind(now)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Endpoints of these deliveries that have failed since `cutoff` or longer.
pub async fn failing_since_before(
    tx: &mut Tx,
    delivery_ids: &[&str],
    cutoff: i64,
) -> AppResult<Vec<String>> {
    if delivery_ids.is_empty() {
        return Ok(vec![]);
    }
    Ok(on_tx!(tx, |c, pg| {
        sqlx::query_scalar(
        sql!(pg, "SELECT endpoint FROM endpoint_health WHERE failing_since IS NOT NULL AND failing_since <= $2 \
         AND endpoint IN (SELECT endpoint FROM deliveries WHERE id IN (SELECT value ->> 'id' FROM json_each($1)))",)
    )
    .bind(super::id_list(delivery_ids))
    .bind(cutoff)
    .fetch_all(c)
    .await
    })?)
}

/// Disables an endpoint that failed for too long: the merchant whose webhook
/// it is becomes `disabled`, every pending delivery to it is dead-lettered
/// (`endpoint_disabled`) and its queued job removed, and the failure clock
/// restarts (so `merchant enable` gives it a fresh period).
pub async fn disable(tx: &mut Tx, endpoint: &str, now: i64) -> AppResult<u64> {
    let reason = format!(
        "endpoint {endpoint} failing without a success since before circuit.disable_after (disabled {})",
        crate::time::rfc3339(now)
    );
    on_tx!(tx, |c, pg| {
        sqlx::query(
        sql!(pg, "UPDATE merchants SET status = 'disabled', disabled_reason = $2 WHERE status = 'active' \
         AND id IN (SELECT merchant_id FROM deliveries WHERE endpoint = $1 AND url = merchants.webhook_url)",)
    )
    .bind(endpoint)
    .bind(&reason)
    .execute(c)
    .await.map(|r| r.rows_affected())
    })?;
    let dead: Vec<String> = on_tx!(tx, |c, pg| {
        sqlx::query_scalar(
        sql!(pg, "UPDATE deliveries SET status = 'dead', updated_at = $2, completed_at = $2, next_attempt_at = NULL \
         WHERE endpoint = $1 AND status = 'pending' RETURNING id",)
    )
    .bind(endpoint)
    .bind(now)
    .fetch_all(c)
    .await
    })?;
    let ids: Vec<&str> = dead.iter().map(String::as_str).collect();
    dead_letters::insert_many(tx, &ids, "endpoint_disabled", now).await?;
    queue::cancel_for_deliveries(tx, &ids).await?;
    on_tx!(tx, |c, pg| sqlx::query(sql!(
        pg,
        "UPDATE endpoint_health SET failing_since = NULL WHERE endpoint = $1"
    ))
    .bind(endpoint)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    tracing::warn!(
        endpoint,
        dead_lettered = ids.len(),
        "endpoint disabled after failing for circuit.disable_after"
    );
    Ok(ids.len() as u64)
}
