//! The `dead_letters` table (the DLQ). Policy — when to dead-letter, how to
//! resubmit — lives in `delivery::dlq`; this module only reads and writes rows.

use crate::{on_db, on_tx, sql};
use serde::Serialize;

use super::{Page, Store, Tx};
use crate::error::{AppError, AppResult};
use crate::ids;

pub const REASONS: [&str; 4] = ["exhausted", "gone", "endpoint_disabled", "rejected_target"];

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct DeadLetter {
    pub id: String,
    pub delivery_id: String,
    pub event_id: String,
    pub merchant_id: String,
    pub url: String,
    pub attempts: i64,
    pub reason: String,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "crate::time::ser::ms")]
    pub dead_at: i64,
    #[serde(serialize_with = "crate::time::ser::opt_ms")]
    pub resubmitted_at: Option<i64>,
    pub resubmitted_delivery_id: Option<String>,
}

/// Filters of `dlq list` and bulk resubmission.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub merchant_id: Option<String>,
    pub reason: Option<String>,
    /// Dead at or after (unix ms).
    pub since: Option<i64>,
    /// Dead before (unix ms).
    pub until: Option<i64>,
    /// Only rows not yet resubmitted.
    pub unresubmitted_only: bool,
}

impl Filter {
    /// A filter from user input; `since`/`until` are RFC 3339 times, and
    /// `prefix` (`--` for flags, empty for JSON fields) names them in errors.
    pub fn parse(
        merchant_id: Option<String>,
        reason: Option<String>,
        since: Option<&str>,
        until: Option<&str>,
        prefix: &str,
    ) -> AppResult<Filter> {
        let time = |name: &str, v: Option<&str>| {
            v.map(|v| crate::time::parse_rfc3339(&format!("{prefix}{name}"), v))
                .transpose()
        };
        let filter = Filter {
            merchant_id,
            reason,
            since: time("since", since)?,
            until: time("until", until)?,
            unresubmitted_only: false,
        };
        filter.validate()?;
        Ok(filter)
    }

    pub fn validate(&self) -> AppResult<()> {
        if let Some(r) = &self.reason {
            if !REASONS.contains(&r.as_str()) {
                return Err(AppError::bad_input(format!(
                    "reason: expected one of {}, got {r:?}",
                    REASONS.join(", ")
                )));
            }
        }
        Ok(())
    }
}

macro_rules! columns {
    () => {
        "id, delivery_id, event_id, merchant_id, url, attempts, reason, last_status_code, \
            last_error, dead_at, resubmitted_at, resubmitted_delivery_id"
    };
}

/// Dead-letters deliveries whose rows were just marked `dead` in `tx`.
pub async fn insert_many(
    tx: &mut Tx,
    delivery_ids: &[&str],
    reason: &str,
    now: i64,
) -> AppResult<()> {
    if delivery_ids.is_empty() {
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = delivery_ids
        .iter()
        .map(|d| serde_json::json!({"dlq": ids::new_id(ids::DEAD_LETTER), "delivery": d}))
        .collect();
    on_tx!(tx, |c, pg| {
        sqlx::query(
        sql!(pg, "INSERT INTO dead_letters (id, delivery_id, event_id, merchant_id, url, attempts, reason, \
         last_status_code, last_error, dead_at) \
         SELECT j.value ->> 'dlq', d.id, d.event_id, d.merchant_id, d.url, d.attempts, $2, d.last_status_code, \
         d.last_error, $3 FROM json_each($1) AS j JOIN deliveries d ON d.id = j.value ->> 'delivery' \
         WHERE true ON CONFLICT (delivery_id) DO NOTHING",)
    )
    .bind(serde_json::Value::Array(rows).to_string())
    .bind(reason)
    .bind(now)
    .execute(c)
    .await.map(|r| r.rows_affected())
    })?;
    Ok(())
}

pub async fn get(store: &Store, id: &str) -> AppResult<DeadLetter> {
    on_db!(store.db(), |db, pg| sqlx::query_as::<_, DeadLetter>(sql!(
        pg,
        concat!("SELECT ", columns!(), " FROM dead_letters WHERE id = $1")
    ))
    .bind(id)
    .fetch_optional(db)
    .await)?
    .ok_or_else(|| AppError::not_found("dead letter", id))
}

pub async fn list(store: &Store, filter: &Filter, page: &Page) -> AppResult<Vec<DeadLetter>> {
    filter.validate()?;
    Ok(on_db!(store.db(), |db, pg| {
        sqlx::query_as::<_, DeadLetter>(sql!(pg, concat!("SELECT ", columns!(), " FROM dead_letters WHERE ($1 IS NULL OR merchant_id = $1) AND ($2 IS NULL OR reason = $2) \
         AND ($3 IS NULL OR dead_at >= $3) AND ($4 IS NULL OR dead_at < $4) \
         AND ($5 = 0 OR resubmitted_at IS NULL) AND ($6 IS NULL OR id < $6) ORDER BY id DESC LIMIT $7")))
    .bind(&filter.merchant_id)
    .bind(&filter.reason)
    .bind(filter.since)
    .bind(filter.until)
    .bind(filter.unresubmitted_only as i64)
    .bind(&page.cursor)
    .bind(page.limit)
    .fetch_all(db)
    .await
    })?)
}

/// Marks a row resubmitted, only if it was not already; false if it was.
pub async fn mark_resubmitted(
    tx: &mut Tx,
    id: &str,
    new_delivery_id: &str,
    now: i64,
) -> AppResult<bool> {
    let done = on_tx!(tx, |c, pg| sqlx::query(sql!(
        pg,
        "UPDATE dead_letters SET resubmitted_at = $2, resubmitted_delivery_id = $3 \
         WHERE id = $1 AND resubmitted_at IS NULL",
    ))
    .bind(id)
    .bind(now)
    .bind(new_delivery_id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// Reads one row inside a write transaction (so a resubmit sees the latest state).
pub async fn get_in(tx: &mut Tx, id: &str) -> AppResult<DeadLetter> {
    on_tx!(tx, |c, pg| sqlx::query_as::<_, DeadLetter>(sql!(
        pg,
        concat!("SELECT ", columns!(), " FROM dead_letters WHERE id = $1")
    ))
    .bind(id)
    .fetch_optional(c)
    .await)?
    .ok_or_else(|| AppError::not_found("dead letter", id))
}

/// Dead letters not yet resubmitted (the DLQ size).
pub async fn count_open(store: &Store) -> AppResult<i64> {
    Ok(on_db!(store.db(), |db, pg| sqlx::query_scalar(sql!(
        pg,
        "SELECT COUNT(*) FROM dead_letters WHERE resubmitted_at IS NULL"
    ))
    .fetch_one(db)
    .await)?)
}
