//! The `deliveries` and `delivery_attempts` tables: what the sender loads
//! for one attempt, and the batched write of attempt outcomes.

use crate::{on_db, on_tx, sql};
use serde::Serialize;

use super::{endpoints, Page, Store};
use crate::delivery::queue::{self, DeliveryJob, Lane};
use crate::error::{AppError, AppResult};

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Delivery {
    pub id: String,
    pub event_id: String,
    pub merchant_id: String,
    pub url: String,
    pub status: String,
    pub attempts: i64,
    #[serde(serialize_with = "crate::time::ser::opt_ms")]
    pub next_attempt_at: Option<i64>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "crate::time::ser::ms")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::time::ser::ms")]
    pub updated_at: i64,
    #[serde(serialize_with = "crate::time::ser::opt_ms")]
    pub completed_at: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Attempt {
    #[serde(skip)]
    pub delivery_id: String,
    pub attempt: i64,
    #[serde(serialize_with = "crate::time::ser::ms")]
    pub started_at: i64,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

/// A delivery with every attempt (`deliveries show`).
#[derive(Debug, Serialize)]
pub struct DeliveryWithAttempts {
    #[serde(flatten)]
    pub delivery: Delivery,
    pub delivery_attempts: Vec<Attempt>,
}

macro_rules! columns {
    () => {
        "id, event_id, merchant_id, url, status, attempts, next_attempt_at, last_status_code, \
            last_error, created_at, updated_at, completed_at"
    };
}

/// Everything one attempt needs, in one indexed query.
#[derive(Clone, sqlx::FromRow)]
pub struct AttemptContext {
    pub delivery_id: String,
    pub status: String,
    pub attempts: i64,
    pub url: String,
    pub event_id: String,
    pub payload: String,
    pub event_created_at: i64,
    pub merchant_id: String,
    pub merchant_status: String,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<i64>,
    pub signature_scheme: String,
    pub signature_header: Option<String>,
    pub signature_prefix: Option<String>,
    pub headers: String,
    pub rate_limit_per_sec: Option<i64>,
}

impl std::fmt::Debug for AttemptContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptContext")
            .field("delivery_id", &self.delivery_id)
            .field("event_id", &self.event_id)
            .field("merchant_id", &self.merchant_id)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// The contexts of many deliveries in one query (unknown ids are absent).
pub async fn attempt_contexts(store: &Store, ids: &[String]) -> AppResult<Vec<AttemptContext>> {
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let ids = super::id_list(&ids);
    Ok(on_db!(store.db(), |db, pg| {
        sqlx::query_as::<_, AttemptContext>(
        sql!(pg, "SELECT d.id AS delivery_id, d.status, d.attempts, d.url, e.id AS event_id, e.payload, \
         e.created_at AS event_created_at, \
         m.id AS merchant_id, m.status AS merchant_status, m.secret, m.previous_secret, \
         m.previous_secret_expires_at, m.signature_scheme, m.signature_header, m.signature_prefix, \
         m.headers, m.rate_limit_per_sec \
         FROM json_each($1) AS j JOIN deliveries d ON d.id = j.value ->> 'id' JOIN events e ON e.id = d.event_id \
         JOIN merchants m ON m.id = d.merchant_id",)
    )
    .bind(ids)
    .fetch_all(db)
    .await
    })?)
}

/// One recorded attempt (a row of `delivery_attempts`).
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub attempt: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub error_kind: Option<&'static str>,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Succeeded,
    /// Try again at this time (unix ms).
    Retry {
        at_ms: i64,
    },
    /// Dead-letter with this reason.
    Dead {
        reason: &'static str,
    },
}

/// The result of handling one job, written by the outcome writer.
#[derive(Debug, Clone)]
pub enum Outcome {
    Attempted {
        delivery_id: String,
        record: AttemptRecord,
        next: Next,
    },
    /// Not attempted (rate limit, open circuit, endpoint at its in-flight
    /// cap, disabled merchant): run the same attempt later.
    Deferred {
        delivery_id: String,
        attempt: i64,
        at_ms: i64,
        /// Also hold every other queued job for this endpoint until `at_ms`
        /// (a stuck endpoint or an open circuit: one statement, instead of
        /// each of its jobs being fetched and deferred on its own).
        park: Option<String>,
    },
}

/// An outcome plus the queue job that produced it; the job is removed in
/// the same transaction that records the outcome, so a crash can never make
/// a finished job run again.
#[derive(Debug, Clone)]
pub struct Finished {
    pub job_id: Option<String>,
    pub outcome: Outcome,
}

/// Writes many outcomes in one transaction: the attempt rows, the delivery
/// state, the next job or the dead letter, and the removal of the finished
/// jobs (a requested park of an endpoint's other jobs follows on its own). Set-based: a batch of any size is a handful of statements. A stale
/// outcome (the delivery was already settled, e.g. a job re-run after a
/// crash) changes nothing.
pub async fn apply_outcomes(
    store: &Store,
    batch: &[Finished],
    now: i64,
    disable_after_ms: i64,
) -> AppResult<()> {
    let mut tx = store.begin_writer().await?;
    let job_ids: Vec<&str> = batch.iter().filter_map(|f| f.job_id.as_deref()).collect();
    queue::finish_many(&mut tx, &job_ids).await?;

    let attempted: Vec<serde_json::Value> = batch
        .iter()
        .filter_map(|f| match &f.outcome {
            Outcome::Attempted {
                delivery_id,
                record,
                next,
            } => {
                let (status, next_at, completed) = match next {
                    Next::Succeeded => ("succeeded", None, Some(now)),
                    Next::Retry { at_ms } => ("pending", Some(*at_ms), None),
                    Next::Dead { .. } => ("dead", None, Some(now)),
                };
                Some(serde_json::json!({
                    "id": delivery_id, "status": status, "attempt": record.attempt,
                    "next_at": next_at, "completed": completed, "code": record.status_code,
                    "error": record.error, "kind": record.error_kind, "started": record.started_at,
                    "ms": record.duration_ms, "body": record.response_body,
                }))
            }
            Outcome::Deferred { .. } => None,
        })
        .collect();
    let mut queued = false;
    if !attempted.is_empty() {
        // `+d.status` keeps SQLite from driving this by the status index
        // (all pending rows) instead of one primary-key lookup per outcome.
        let applied: Vec<String> = on_tx!(&mut tx, |c, pg| {
            sqlx::query_scalar(
            sql!(pg, "WITH o AS (SELECT value ->> 'id' AS id, value ->> 'status' AS status, \
             CAST(value ->> 'attempt' AS BIGINT) AS attempt, CAST(value ->> 'next_at' AS BIGINT) AS next_at, \
             CAST(value ->> 'code' AS BIGINT) AS code, value ->> 'error' AS error, \
             CAST(value ->> 'completed' AS BIGINT) AS completed FROM json_each($1)) \
             UPDATE deliveries SET status = o.status, attempts = o.attempt, next_attempt_at = o.next_at, \
             last_status_code = o.code, last_error = o.error, updated_at = $2, completed_at = o.completed \
             FROM o WHERE deliveries.id = o.id AND +deliveries.status = 'pending' \
             AND deliveries.attempts = o.attempt - 1 RETURNING deliveries.id",)
        )
        .bind(serde_json::Value::Array(attempted.clone()).to_string())
        .bind(now)
        .fetch_all(c)
        .await
        })?;
        let applied: std::collections::HashSet<String> = applied.into_iter().collect();
        let rows: Vec<&serde_json::Value> = attempted
            .iter()
            .filter(|o| o["id"].as_str().is_some_and(|id| applied.contains(id)))
            .collect();
        if !rows.is_empty() {
            on_tx!(&mut tx, |c, pg| {
                sqlx::query(
                sql!(pg, "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, \
                 error_kind, error, response_body) \
                 SELECT value ->> 'id', CAST(value ->> 'attempt' AS BIGINT), CAST(value ->> 'started' AS BIGINT), \
                 CAST(value ->> 'ms' AS BIGINT), CAST(value ->> 'code' AS BIGINT), \
                 value ->> 'kind', value ->> 'error', value ->> 'body' FROM json_each($1)",)
            )
            .bind(serde_json::to_string(&rows).unwrap_or_default())
            .execute(c)
            .await.map(|r| r.rows_affected())
            })?;
        }
        let mut retries = Vec::new();
        let mut dead: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        let (mut ok, mut failed) = (Vec::new(), Vec::new());
        for f in batch {
            let Outcome::Attempted {
                delivery_id,
                record,
                next,
            } = &f.outcome
            else {
                continue;
            };
            if !applied.contains(delivery_id) {
                continue;
            }
            match next {
                Next::Succeeded => ok.push(delivery_id.as_str()),
                Next::Retry { at_ms } => {
                    let job = DeliveryJob {
                        delivery_id: delivery_id.clone(),
                        attempt: record.attempt + 1,
                    };
                    retries.push((job, *at_ms, Lane::Retry));
                    failed.push(delivery_id.as_str());
                }
                Next::Dead { reason } => {
                    dead.entry(reason).or_default().push(delivery_id.as_str());
                    if *reason == "exhausted" {
                        failed.push(delivery_id.as_str());
                    }
                }
            }
        }
        queued |= !retries.is_empty();
        queue::push_many(&mut tx, &retries).await?;
        for (reason, ids) in &dead {
            crate::store::dead_letters::insert_many(&mut tx, ids, reason, now).await?;
        }
        for id in dead.get("gone").into_iter().flatten() {
            let why = format!(
                "410 Gone from the webhook URL at {}",
                crate::time::rfc3339(now)
            );
            crate::store::merchants::disable_for_gone(&mut tx, id, &why).await?;
        }
        endpoints::record(&mut tx, &failed, false, now).await?;
        endpoints::record(&mut tx, &ok, true, now).await?;
        for endpoint in
            endpoints::failing_since_before(&mut tx, &failed, now - disable_after_ms).await?
        {
            endpoints::disable(&mut tx, &endpoint, now).await?;
        }
    }
    let deferred: Vec<(&String, i64, i64, &Option<String>)> = batch
        .iter()
        .filter_map(|f| match &f.outcome {
            Outcome::Deferred {
                delivery_id,
                attempt,
                at_ms,
                park,
            } => Some((delivery_id, *attempt, *at_ms, park)),
            Outcome::Attempted { .. } => None,
        })
        .collect();
    let mut parks = Vec::new();
    if !deferred.is_empty() {
        let rows: Vec<serde_json::Value> = deferred
            .iter()
            .map(|(id, attempt, at, _)| serde_json::json!({"id": id, "attempt": attempt, "at": at}))
            .collect();
        let applied: Vec<String> = on_tx!(&mut tx, |c, pg| {
            sqlx::query_scalar(
            sql!(pg, "WITH o AS (SELECT value ->> 'id' AS id, CAST(value ->> 'attempt' AS BIGINT) AS attempt, \
             CAST(value ->> 'at' AS BIGINT) AS at \
             FROM json_each($1)) \
             UPDATE deliveries SET next_attempt_at = o.at, updated_at = $2 FROM o \
             WHERE deliveries.id = o.id AND +deliveries.status = 'pending' AND deliveries.attempts = o.attempt - 1 \
             RETURNING deliveries.id",)
        )
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(now)
        .fetch_all(c)
        .await
        })?;
        let applied: std::collections::HashSet<String> = applied.into_iter().collect();
        let jobs: Vec<(DeliveryJob, i64, Lane)> = deferred
            .iter()
            .filter(|(id, ..)| applied.contains(*id))
            .map(|(id, attempt, at, _)| {
                let lane = if *attempt == 1 {
                    Lane::First
                } else {
                    Lane::Retry
                };
                (
                    DeliveryJob {
                        delivery_id: (*id).clone(),
                        attempt: *attempt,
                    },
                    *at,
                    lane,
                )
            })
            .collect();
        queued |= !jobs.is_empty();
        queue::push_many(&mut tx, &jobs).await?;
        parks = deferred
            .iter()
            .filter_map(|(_, _, at, park)| park.as_ref().map(|e| (e.clone(), *at)))
            .collect();
    }
    store.commit(tx, queued).await?;
    for (endpoint, until) in parks {
        queue::park_endpoint(store, endpoint, until);
    }
    Ok(())
}

pub async fn get(store: &Store, id: &str) -> AppResult<Delivery> {
    on_db!(store.db(), |db, pg| sqlx::query_as::<_, Delivery>(sql!(
        pg,
        concat!("SELECT ", columns!(), " FROM deliveries WHERE id = $1")
    ))
    .bind(id)
    .fetch_optional(db)
    .await)?
    .ok_or_else(|| AppError::not_found("delivery", id))
}

pub async fn attempts(store: &Store, delivery_id: &str) -> AppResult<Vec<Attempt>> {
    Ok(on_db!(store.db(), |db, pg| {
        sqlx::query_as::<_, Attempt>(
        sql!(pg, "SELECT delivery_id, attempt, started_at, duration_ms, status_code, error_kind, error, response_body \
         FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt",)
    )
    .bind(delivery_id)
    .fetch_all(db)
    .await
    })?)
}

pub async fn list(
    store: &Store,
    status: Option<&str>,
    merchant_id: Option<&str>,
    event_id: Option<&str>,
    page: &Page,
) -> AppResult<Vec<Delivery>> {
    if let Some(s) = status {
        if !["pending", "succeeded", "dead"].contains(&s) {
            return Err(AppError::bad_input(format!(
                "status: expected pending, succeeded or dead, got {s:?}"
            )));
        }
    }
    Ok(on_db!(store.db(), |db, pg| sqlx::query_as::<_, Delivery>(
        sql!(
            pg,
            concat!(
        "SELECT ",
        columns!(),
        " FROM deliveries WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR merchant_id = $2) \
         AND ($3 IS NULL OR event_id = $3) AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
    )
        )
    )
    .bind(status)
    .bind(merchant_id)
    .bind(event_id)
    .bind(&page.cursor)
    .bind(page.limit)
    .fetch_all(db)
    .await)?)
}

/// Counts by status, for progress displays and the bench.
pub async fn count_by_status(store: &Store) -> AppResult<(i64, i64, i64)> {
    let row: (i64, i64, i64) = on_db!(store.db(), |db, pg| sqlx::query_as(sql!(
        pg,
        "SELECT COUNT(CASE WHEN status = 'pending' THEN 1 END), \
         COUNT(CASE WHEN status = 'succeeded' THEN 1 END), \
         COUNT(CASE WHEN status = 'dead' THEN 1 END) FROM deliveries",
    ))
    .fetch_one(db)
    .await)?;
    Ok(row)
}
