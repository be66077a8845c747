//! The `endpoint_health` table, keyed by URL key (the unit of circuits):
//! since when each has been failing without a success (for
//! `circuit.disable_after`), how many failures in a row (for the operator's
//! `endpoint.failing`, once per outage), and disabling the endpoints of a
//! key that failed for too long (their pending deliveries to the DLQ).

use std::collections::{BTreeMap, HashSet};

use super::sql::{id_rows, query, Sql, Tx};
use super::{dead_letters, endpoints, jobs, operator};
use crate::domain::DeadReason;
use crate::error::AppResult;
use crate::ids::{DeliveryId, EndpointId, MerchantId};

/// A batch's deliveries of one outcome (answered, or failed) and their URL
/// keys with how many each, as the outcome writer knows them.
#[derive(Debug, Default)]
pub struct Outcomes {
    pub deliveries: Vec<DeliveryId>,
    pub endpoints: BTreeMap<String, i64>,
}

impl Outcomes {
    pub fn add(&mut self, delivery: &DeliveryId, endpoint: &str) {
        self.deliveries.push(delivery.clone());
        *self.endpoints.entry(endpoint.to_string()).or_default() += 1;
    }

    fn is_empty(&self) -> bool {
        self.deliveries.is_empty()
    }

    /// The URL keys, as `{"id": key}` rows.
    fn key_rows(&self) -> String {
        let keys: Vec<&str> = self.endpoints.keys().map(String::as_str).collect();
        id_rows(&keys)
    }
}

/// The first success after a reported outage: the rows to report recovered.
const RECOVERED: Sql = Sql::each(
    "UPDATE endpoint_health SET failing_reported = 0 WHERE failing_reported = 1 AND endpoint IN \
     (SELECT value ->> 'id' FROM json_each($1)) RETURNING endpoint",
    "UPDATE endpoint_health SET failing_reported = 0 WHERE failing_reported = 1 AND endpoint IN \
     (SELECT value ->> 'id' FROM payhook_json_rows($1::jsonb)) RETURNING endpoint",
);

/// A success only matters to an endpoint that was failing (no row, or no
/// `failing_since`, means healthy): no write otherwise.
const RECORD_SUCCESS: Sql = Sql::each(
    "UPDATE endpoint_health SET failing_since = NULL, failures = 0, last_success_at = $2 \
     WHERE failing_since IS NOT NULL AND endpoint IN (SELECT value ->> 'id' FROM json_each($1))",
    "UPDATE endpoint_health SET failing_since = NULL, failures = 0, last_success_at = $2 \
     WHERE failing_since IS NOT NULL \
     AND endpoint IN (SELECT value ->> 'id' FROM payhook_json_rows($1::jsonb))",
);

/// Rows `{"id": key, "n": failures}`, inserted in key order. (The success
/// statements lock rows in plan order, after a batch's failures: two
/// Postgres writers with crossing keys can still deadlock, and the batch
/// is then retried.)
const RECORD_FAILURE: Sql = Sql::each(
    "INSERT INTO endpoint_health (endpoint, failing_since, last_failure_at, failures) \
     SELECT value ->> 'id', $2, $2, CAST(value ->> 'n' AS BIGINT) FROM json_each($1) \
     WHERE true ORDER BY 1 \
     ON CONFLICT (endpoint) DO UPDATE SET \
     failing_since = COALESCE(endpoint_health.failing_since, excluded.failing_since), \
     last_failure_at = excluded.last_failure_at, \
     failures = endpoint_health.failures + excluded.failures",
    "INSERT INTO endpoint_health (endpoint, failing_since, last_failure_at, failures) \
     SELECT value ->> 'id', $2, $2, CAST(value ->> 'n' AS BIGINT) \
     FROM payhook_json_rows($1::jsonb) ORDER BY 1 \
     ON CONFLICT (endpoint) DO UPDATE SET \
     failing_since = COALESCE(endpoint_health.failing_since, excluded.failing_since), \
     last_failure_at = excluded.last_failure_at, \
     failures = endpoint_health.failures + excluded.failures",
);

/// Failures in a row reached the threshold, not yet reported: the rows to
/// report failing.
const NOW_FAILING: Sql = Sql::each(
    "UPDATE endpoint_health SET failing_reported = 1 WHERE failing_reported = 0 \
     AND failures >= $2 AND endpoint IN (SELECT value ->> 'id' FROM json_each($1)) \
     RETURNING endpoint",
    "UPDATE endpoint_health SET failing_reported = 1 WHERE failing_reported = 0 \
     AND failures >= $2 AND endpoint IN (SELECT value ->> 'id' FROM payhook_json_rows($1::jsonb)) \
     RETURNING endpoint",
);

const ENDPOINTS_OF: Sql = Sql::each(
    "SELECT DISTINCT endpoint, endpoint_id, merchant_id FROM deliveries \
     WHERE id IN (SELECT value ->> 'id' FROM json_each($1)) AND endpoint_id IS NOT NULL",
    "SELECT DISTINCT endpoint, endpoint_id, merchant_id FROM deliveries \
     WHERE id IN (SELECT value ->> 'id' FROM payhook_json_rows($1::jsonb)) \
     AND endpoint_id IS NOT NULL",
);

/// The endpoints (rows) of these deliveries whose URL key is in `keys`.
async fn endpoints_with_keys(
    tx: &mut Tx,
    delivery_ids: &[DeliveryId],
    keys: Vec<String>,
) -> AppResult<Vec<(EndpointId, MerchantId)>> {
    if keys.is_empty() {
        return Ok(vec![]);
    }
    let keys: HashSet<String> = keys.into_iter().collect();
    let rows: Vec<(String, EndpointId, MerchantId)> = query(ENDPOINTS_OF)
        .bind(id_rows(delivery_ids))
        .fetch_all(tx)
        .await?;
    Ok(rows
        .into_iter()
        .filter(|(key, _, _)| keys.contains(key))
        .map(|(_, id, m)| (id, m))
        .collect())
}

/// Records the endpoints of these failed deliveries as failing (keeping
/// the first failure time, counting failures in a row), and tells the
/// operator of those whose count just reached `threshold`.
pub async fn record_failures(
    tx: &mut Tx,
    failed: &Outcomes,
    threshold: i64,
    now: i64,
) -> AppResult<()> {
    if failed.is_empty() {
        return Ok(());
    }
    let counts: Vec<serde_json::Value> = failed
        .endpoints
        .iter()
        .map(|(key, n)| serde_json::json!({"id": key, "n": n}))
        .collect();
    query(RECORD_FAILURE)
        .bind(serde_json::Value::Array(counts).to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let keys: Vec<String> = query(NOW_FAILING)
        .bind(failed.key_rows())
        .bind(threshold)
        .scalars(&mut *tx)
        .await?;
    let failing = endpoints_with_keys(tx, &failed.deliveries, keys).await?;
    operator::endpoints_changed(tx, &failing, true, now).await
}

/// Records the endpoints of these delivered deliveries as healthy, and
/// tells the operator of those that were reported failing.
pub async fn record_successes(tx: &mut Tx, ok: &Outcomes, now: i64) -> AppResult<()> {
    if ok.is_empty() {
        return Ok(());
    }
    let keys = ok.key_rows();
    let recovered: Vec<String> = query(RECOVERED).bind(&keys).scalars(&mut *tx).await?;
    query(RECORD_SUCCESS)
        .bind(&keys)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let recovered = endpoints_with_keys(tx, &ok.deliveries, recovered).await?;
    operator::endpoints_changed(tx, &recovered, false, now).await
}

const FAILING_SINCE_BEFORE: Sql = Sql::each(
    "SELECT endpoint FROM endpoint_health WHERE failing_since IS NOT NULL AND failing_since <= $2 \
     AND endpoint IN (SELECT value ->> 'id' FROM json_each($1))",
    "SELECT endpoint FROM endpoint_health WHERE failing_since IS NOT NULL AND failing_since <= $2 \
     AND endpoint IN (SELECT value ->> 'id' FROM payhook_json_rows($1::jsonb))",
);

/// The URL keys of these failed deliveries that have failed since `cutoff`
/// or longer.
pub async fn failing_since_before(
    tx: &mut Tx,
    failed: &Outcomes,
    cutoff: i64,
) -> AppResult<Vec<String>> {
    if failed.is_empty() {
        return Ok(vec![]);
    }
    Ok(query(FAILING_SINCE_BEFORE)
        .bind(failed.key_rows())
        .bind(cutoff)
        .scalars(tx)
        .await?)
}

const KILL_PENDING: Sql = Sql::both(
    "UPDATE deliveries SET status = 'dead', updated_at = $2, completed_at = $2, next_attempt_at = NULL \
     WHERE endpoint = $1 AND status = 'pending' RETURNING id",
);

const RESTART_CLOCK: Sql =
    Sql::both("UPDATE endpoint_health SET failing_since = NULL, failures = 0 WHERE endpoint = $1");

/// Disables a URL key that failed for too long: the endpoints sending to it
/// become `disabled`, every pending delivery to it is dead-lettered
/// (`endpoint_disabled`) and its queued job removed, and the failure clock
/// restarts (so `endpoint enable` gives it a fresh period).
pub async fn disable(
    tx: &mut Tx,
    endpoint: &str,
    failed: &[DeliveryId],
    now: i64,
) -> AppResult<u64> {
    let origin = crate::urls::key_origin(endpoint);
    let reason = format!(
        "endpoint {origin} failing without a success since before circuit.disable_after (disabled {})",
        crate::time::rfc3339(now)
    );
    endpoints::disable_by_key(tx, endpoint, failed, &reason, now).await?;
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

/// What the health report of one endpoint reads from the database.
#[derive(Debug, Clone, Default)]
pub struct HealthRow {
    pub failing_since: Option<i64>,
    pub last_failure_at: Option<i64>,
    pub last_success_at: Option<i64>,
    /// Failures in a row at its URL key.
    pub failures: i64,
    /// Attempts to this endpoint since the window's start, and how many
    /// succeeded.
    pub attempts: i64,
    pub succeeded: i64,
}

/// failing_since, last_failure_at, last_success_at, failures.
type HealthOfKey = (Option<i64>, Option<i64>, Option<i64>, i64);

const HEALTH_OF_KEY: Sql = Sql::both(
    "SELECT failing_since, last_failure_at, last_success_at, failures FROM endpoint_health \
     WHERE endpoint = $1",
);

/// Attempts since `$2` of the endpoint's deliveries touched since then (an
/// attempt updates its delivery, so older deliveries cannot have one).
const ATTEMPTS_SINCE: Sql = Sql::both(
    "SELECT COUNT(*), COUNT(CASE WHEN a.error_kind IS NULL THEN 1 END) \
     FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id \
     WHERE d.endpoint_id = $1 AND d.updated_at >= $2 AND a.started_at >= $2",
);

/// The health of the endpoint `id` whose URL key is `key`, with its
/// attempts since `since`.
pub async fn of_endpoint(
    store: &super::Store,
    id: &EndpointId,
    key: &str,
    since: i64,
) -> AppResult<HealthRow> {
    let health: Option<HealthOfKey> = query(HEALTH_OF_KEY)
        .bind(key)
        .fetch_optional(store.db())
        .await?;
    let (attempts, succeeded): (i64, i64) = query(ATTEMPTS_SINCE)
        .bind(id)
        .bind(since)
        .fetch_one(store.db())
        .await?;
    let (failing_since, last_failure_at, last_success_at, failures) =
        health.unwrap_or((None, None, None, 0));
    Ok(HealthRow {
        failing_since,
        last_failure_at,
        last_success_at,
        failures,
        attempts,
        succeeded,
    })
}
