//! Writes the plan of a batch of finished attempts (made by
//! `delivery::outcome`) in one transaction: the finished jobs' removal, the
//! attempt rows and delivery states, the next jobs, the dead letters, the
//! endpoints' health, and what the plan disables. Set-based: a batch of any
//! size is a handful of statements. An entry whose delivery was settled
//! meanwhile (a job re-run after a crash) changes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::endpoint_health::Outcomes;
use super::jobs::{self, NewJob};
use super::sql::{json_rows, query, Sql, Tx};
use super::{dead_letters, endpoint_health, endpoints, Store};
use crate::domain::{AttemptErrorKind, DeadReason, DeliveryStatus};
use crate::error::AppResult;
use crate::ids::{DeliveryId, MerchantId};

/// What a batch asks the store to write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub now: i64,
    /// Queue jobs that ran, removed in the same transaction.
    pub finished_jobs: Vec<String>,
    pub attempts: Vec<AttemptWrite>,
    pub deferrals: Vec<Deferral>,
    /// Endpoints that failed in this batch and have been failing since
    /// before this time (unix ms) are disabled.
    pub disable_failing_since_before: i64,
    /// Endpoints with this many failures in a row are reported failing
    /// (`endpoint.failing`, once per outage).
    pub failing_after_failures: i64,
}

/// One attempt's record and what follows from it. Everything here applies
/// only if the delivery is still `pending` with `record.attempt - 1`
/// attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptWrite {
    pub delivery_id: DeliveryId,
    pub record: AttemptRecord,
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub next_job: Option<NewJob>,
    pub dead_letter: Option<DeadReason>,
    /// `Some(true)`: the endpoint answered; `Some(false)`: it failed.
    pub endpoint_ok: Option<bool>,
    /// Disable the endpoint this delivery went to, with this reason (a
    /// per-payment `callback_url` disables nothing).
    pub disable_endpoint: Option<String>,
}

/// One row of `delivery_attempts`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub attempt: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub error_kind: Option<AttemptErrorKind>,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

/// An attempt not made now (held back): the delivery waits for `job`.
#[derive(Debug, Clone, PartialEq)]
pub struct Deferral {
    pub delivery_id: DeliveryId,
    pub attempt: i64,
    pub job: NewJob,
}

/// Writes `plan` in one transaction on the outcome writer's pool.
pub async fn write(store: &Store, plan: &Plan) -> AppResult<()> {
    let mut tx = store.begin_writer().await?;
    let finished: Vec<&str> = plan.finished_jobs.iter().map(String::as_str).collect();
    jobs::finish_many(&mut tx, &finished).await?;
    let mut queued = write_attempts(&mut tx, plan).await?;
    queued |= write_deferrals(&mut tx, &plan.deferrals, plan.now).await?;
    store.commit(tx, queued).await
}

#[derive(Serialize)]
struct StateRow<'a> {
    id: &'a DeliveryId,
    status: &'static str,
    attempt: i64,
    next_at: Option<i64>,
    completed: Option<i64>,
    code: Option<i64>,
    error: Option<&'a str>,
}

const UPDATE_STATES: Sql = Sql::each(
    "WITH o AS (SELECT value ->> 'id' AS id, value ->> 'status' AS status, \
     CAST(value ->> 'attempt' AS BIGINT) AS attempt, CAST(value ->> 'next_at' AS BIGINT) AS next_at, \
     CAST(value ->> 'code' AS BIGINT) AS code, value ->> 'error' AS error, \
     CAST(value ->> 'completed' AS BIGINT) AS completed FROM json_each($1)) \
     UPDATE deliveries SET status = o.status, attempts = o.attempt, next_attempt_at = o.next_at, \
     last_status_code = o.code, last_error = o.error, updated_at = $2, completed_at = o.completed \
     FROM o WHERE deliveries.id = o.id AND +deliveries.status = 'pending' \
     AND deliveries.attempts = o.attempt - 1 \
     RETURNING deliveries.id, deliveries.merchant_id, deliveries.endpoint",
    "WITH o AS (SELECT value ->> 'id' AS id, value ->> 'status' AS status, \
     CAST(value ->> 'attempt' AS BIGINT) AS attempt, CAST(value ->> 'next_at' AS BIGINT) AS next_at, \
     CAST(value ->> 'code' AS BIGINT) AS code, value ->> 'error' AS error, \
     CAST(value ->> 'completed' AS BIGINT) AS completed FROM payhook_json_rows($1::jsonb)) \
     UPDATE deliveries SET status = o.status, attempts = o.attempt, next_attempt_at = o.next_at, \
     last_status_code = o.code, last_error = o.error, updated_at = $2, completed_at = o.completed \
     FROM o WHERE deliveries.id = o.id AND (deliveries.status || '') = 'pending' \
     AND deliveries.attempts = o.attempt - 1 \
     RETURNING deliveries.id, deliveries.merchant_id, deliveries.endpoint",
);

#[derive(Serialize)]
struct AttemptRow<'a> {
    id: &'a DeliveryId,
    /// For the per-minute counts (not a column of `delivery_attempts`).
    merchant: &'a MerchantId,
    attempt: i64,
    started: i64,
    ms: i64,
    code: Option<i64>,
    kind: Option<&'static str>,
    error: Option<&'a str>,
    body: Option<&'a str>,
}

const INSERT_ATTEMPTS: Sql = Sql::each(
    "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, \
     error_kind, error, response_body) \
     SELECT value ->> 'id', CAST(value ->> 'attempt' AS BIGINT), CAST(value ->> 'started' AS BIGINT), \
     CAST(value ->> 'ms' AS BIGINT), CAST(value ->> 'code' AS BIGINT), \
     value ->> 'kind', value ->> 'error', value ->> 'body' FROM json_each($1)",
    "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, \
     error_kind, error, response_body) \
     SELECT value ->> 'id', CAST(value ->> 'attempt' AS BIGINT), CAST(value ->> 'started' AS BIGINT), \
     CAST(value ->> 'ms' AS BIGINT), CAST(value ->> 'code' AS BIGINT), \
     value ->> 'kind', value ->> 'error', value ->> 'body' FROM payhook_json_rows($1::jsonb)",
);

/// Attempts per minute and merchant (`store::stats` reads them), the
/// merchant carried in the rows (the state update returned it). Rows are
/// locked in one order (ORDER BY), so two writers cannot deadlock on them.
const COUNT_ATTEMPTS: Sql = Sql::each(
    "INSERT INTO attempt_stats (minute, merchant_id, succeeded, failed) \
     SELECT (CAST(j.value ->> 'started' AS BIGINT) / 60000) * 60000 AS minute, \
     j.value ->> 'merchant' AS merchant, \
     SUM(CASE WHEN j.value ->> 'kind' IS NULL THEN 1 ELSE 0 END), \
     SUM(CASE WHEN j.value ->> 'kind' IS NULL THEN 0 ELSE 1 END) \
     FROM json_each($1) AS j WHERE true \
     GROUP BY minute, merchant ORDER BY 1, 2 ON CONFLICT (minute, merchant_id) DO UPDATE SET \
     succeeded = attempt_stats.succeeded + excluded.succeeded, \
     failed = attempt_stats.failed + excluded.failed",
    "INSERT INTO attempt_stats (minute, merchant_id, succeeded, failed) \
     SELECT (CAST(j.value ->> 'started' AS BIGINT) / 60000) * 60000 AS minute, \
     j.value ->> 'merchant' AS merchant, \
     SUM(CASE WHEN j.value ->> 'kind' IS NULL THEN 1 ELSE 0 END), \
     SUM(CASE WHEN j.value ->> 'kind' IS NULL THEN 0 ELSE 1 END) \
     FROM payhook_json_rows($1::jsonb) AS j \
     GROUP BY 1, 2 ORDER BY 1, 2 ON CONFLICT (minute, merchant_id) DO UPDATE SET \
     succeeded = attempt_stats.succeeded + excluded.succeeded, \
     failed = attempt_stats.failed + excluded.failed",
);

/// The attempts whose delivery was still waiting for them; returns whether
/// any next job was queued.
async fn write_attempts(tx: &mut Tx, plan: &Plan) -> AppResult<bool> {
    if plan.attempts.is_empty() {
        return Ok(false);
    }
    let states: Vec<StateRow> = plan
        .attempts
        .iter()
        .map(|w| StateRow {
            id: &w.delivery_id,
            status: w.status.as_str(),
            attempt: w.record.attempt,
            next_at: w.next_attempt_at,
            completed: w.completed_at,
            code: w.record.status_code,
            error: w.record.error.as_deref(),
        })
        .collect();
    let applied: HashMap<DeliveryId, Applied> = query(UPDATE_STATES)
        .bind(json_rows(&states)?)
        .bind(plan.now)
        .fetch_all::<(DeliveryId, MerchantId, String)>(&mut *tx)
        .await?
        .into_iter()
        .map(|(id, merchant, endpoint)| (id, Applied { merchant, endpoint }))
        .collect();
    let writes: Vec<(&AttemptWrite, &Applied)> = plan
        .attempts
        .iter()
        .filter_map(|w| applied.get(&w.delivery_id).map(|a| (w, a)))
        .collect();
    if writes.is_empty() {
        return Ok(false);
    }
    let rows: Vec<AttemptRow> = writes.iter().map(|(w, a)| attempt_row(w, a)).collect();
    let rows = json_rows(&rows)?;
    query(INSERT_ATTEMPTS).bind(&rows).execute(&mut *tx).await?;
    query(COUNT_ATTEMPTS).bind(&rows).execute(&mut *tx).await?;
    let next: Vec<NewJob> = writes
        .iter()
        .filter_map(|(w, _)| w.next_job.clone())
        .collect();
    jobs::push_many(tx, &next).await?;
    write_consequences(tx, &writes, plan).await?;
    Ok(!next.is_empty())
}

/// What the state update returned of a delivery it applied to.
struct Applied {
    merchant: MerchantId,
    /// Its URL key (the unit of endpoint health).
    endpoint: String,
}

fn attempt_row<'a>(w: &'a AttemptWrite, a: &'a Applied) -> AttemptRow<'a> {
    let r = &w.record;
    AttemptRow {
        id: &w.delivery_id,
        merchant: &a.merchant,
        attempt: r.attempt,
        started: r.started_at,
        ms: r.duration_ms,
        code: r.status_code,
        kind: r.error_kind.map(AttemptErrorKind::as_str),
        error: r.error.as_deref(),
        body: r.response_body.as_deref(),
    }
}

/// Dead letters, merchants disabled by a 410, endpoint health, and the
/// endpoints disabled for failing too long.
async fn write_consequences(
    tx: &mut Tx,
    writes: &[(&AttemptWrite, &Applied)],
    plan: &Plan,
) -> AppResult<()> {
    let mut dead: BTreeMap<DeadReason, Vec<DeliveryId>> = BTreeMap::new();
    let (mut ok, mut failed) = (Outcomes::default(), Outcomes::default());
    for (w, a) in writes {
        if let Some(reason) = w.dead_letter {
            dead.entry(reason).or_default().push(w.delivery_id.clone());
        }
        match w.endpoint_ok {
            Some(true) => ok.add(&w.delivery_id, &a.endpoint),
            Some(false) => failed.add(&w.delivery_id, &a.endpoint),
            None => {}
        }
        if let Some(why) = &w.disable_endpoint {
            endpoints::disable_for_delivery(tx, &w.delivery_id, why, plan.now).await?;
        }
    }
    for (reason, ids) in &dead {
        dead_letters::insert_many(tx, ids, *reason, plan.now).await?;
    }
    let threshold = plan.failing_after_failures;
    endpoint_health::record_failures(tx, &failed, threshold, plan.now).await?;
    endpoint_health::record_successes(tx, &ok, plan.now).await?;
    let cutoff = plan.disable_failing_since_before;
    for endpoint in endpoint_health::failing_since_before(tx, &failed, cutoff).await? {
        endpoint_health::disable(tx, &endpoint, &failed.deliveries, plan.now).await?;
    }
    Ok(())
}

const UPDATE_DEFERRED: Sql = Sql::each(
    "WITH o AS (SELECT value ->> 'id' AS id, CAST(value ->> 'attempt' AS BIGINT) AS attempt, \
     CAST(value ->> 'at' AS BIGINT) AS at FROM json_each($1)) \
     UPDATE deliveries SET next_attempt_at = o.at, updated_at = $2 FROM o \
     WHERE deliveries.id = o.id AND +deliveries.status = 'pending' \
     AND deliveries.attempts = o.attempt - 1 RETURNING deliveries.id",
    "WITH o AS (SELECT value ->> 'id' AS id, CAST(value ->> 'attempt' AS BIGINT) AS attempt, \
     CAST(value ->> 'at' AS BIGINT) AS at FROM payhook_json_rows($1::jsonb)) \
     UPDATE deliveries SET next_attempt_at = o.at, updated_at = $2 FROM o \
     WHERE deliveries.id = o.id AND (deliveries.status || '') = 'pending' \
     AND deliveries.attempts = o.attempt - 1 RETURNING deliveries.id",
);

/// Held-back attempts: the delivery's next attempt time and its job again.
async fn write_deferrals(tx: &mut Tx, deferrals: &[Deferral], now: i64) -> AppResult<bool> {
    if deferrals.is_empty() {
        return Ok(false);
    }
    let rows: Vec<serde_json::Value> = deferrals
        .iter()
        .map(|d| {
            serde_json::json!({"id": d.delivery_id, "attempt": d.attempt, "at": d.job.run_at_ms})
        })
        .collect();
    let applied: HashSet<DeliveryId> = query(UPDATE_DEFERRED)
        .bind(json_rows(&rows)?)
        .bind(now)
        .scalars::<DeliveryId>(&mut *tx)
        .await?
        .into_iter()
        .collect();
    let jobs: Vec<NewJob> = deferrals
        .iter()
        .filter(|d| applied.contains(&d.delivery_id))
        .map(|d| d.job.clone())
        .collect();
    jobs::push_many(tx, &jobs).await?;
    Ok(!jobs.is_empty())
}
