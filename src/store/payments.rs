//! The `payments` table: registration, detection, and the rows the scanner
//! moves to a final state. State changes are conditional updates
//! (`WHERE status = …`), so two scanners can never both make the same change.

use crate::{on_db, on_tx, sql};
use serde::Serialize;

use super::{Store, Tx};
use crate::error::{AppError, AppResult};

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Payment {
    pub id: String,
    pub merchant_id: String,
    pub reference: String,
    pub chain: String,
    pub token: Option<String>,
    pub address: String,
    pub expected_amount: String,
    pub received_amount: Option<String>,
    /// What the gateway reported, kept only when the node showed a
    /// different on-chain value (which is then `received_amount`).
    pub reported_amount: Option<String>,
    pub tx_hash: Option<String>,
    pub block_number: Option<i64>,
    pub status: String,
    pub callback_url: Option<String>,
    #[serde(serialize_with = "crate::time::ser::opt_ms")]
    pub expires_at: Option<i64>,
    #[serde(serialize_with = "crate::time::ser::opt_ms")]
    pub detected_at: Option<i64>,
    #[serde(serialize_with = "crate::time::ser::opt_ms")]
    pub confirmed_at: Option<i64>,
    #[serde(serialize_with = "crate::time::ser::ms")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::time::ser::ms")]
    pub updated_at: i64,
}

macro_rules! columns {
    () => {
        "id, merchant_id, reference, chain, token, address, expected_amount, received_amount, \
            reported_amount, tx_hash, block_number, status, callback_url, expires_at, detected_at, confirmed_at, created_at, updated_at"
    };
}

pub async fn insert(store: &Store, p: &Payment) -> AppResult<()> {
    let res = on_db!(store.db(), |db, pg| {
        sqlx::query(
        sql!(pg, "INSERT INTO payments (id, merchant_id, reference, chain, token, address, expected_amount, status, \
         callback_url, expires_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10, $10)",)
    )
    .bind(&p.id)
    .bind(&p.merchant_id)
    .bind(&p.reference)
    .bind(&p.chain)
    .bind(&p.token)
    .bind(&p.address)
    .bind(&p.expected_amount)
    .bind(&p.callback_url)
    .bind(p.expires_at)
    .bind(p.created_at)
    .execute(db)
    .await.map(|r| r.rows_affected())
    });
    match res {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(AppError::conflict(format!(
                "reference: {:?} is already used by another payment of merchant {}",
                p.reference, p.merchant_id
            )))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn get(store: &Store, id: &str) -> AppResult<Payment> {
    on_db!(store.db(), |db, pg| sqlx::query_as::<_, Payment>(sql!(
        pg,
        concat!("SELECT ", columns!(), " FROM payments WHERE id = $1")
    ))
    .bind(id)
    .fetch_optional(db)
    .await)?
    .ok_or_else(|| AppError::not_found("payment", id))
}

pub async fn get_in(tx: &mut Tx, id: &str) -> AppResult<Payment> {
    on_tx!(tx, |c, pg| sqlx::query_as::<_, Payment>(sql!(
        pg,
        concat!("SELECT ", columns!(), " FROM payments WHERE id = $1")
    ))
    .bind(id)
    .fetch_optional(c)
    .await)?
    .ok_or_else(|| AppError::not_found("payment", id))
}

/// `pending` → `detected` with the sighting; false if it was not pending.
pub async fn mark_detected(
    tx: &mut Tx,
    id: &str,
    tx_hash: &str,
    amount: &str,
    block_number: i64,
    now: i64,
) -> AppResult<bool> {
    let done = on_tx!(tx, |c, pg| {
        sqlx::query(
        sql!(pg, "UPDATE payments SET status = 'detected', tx_hash = $2, received_amount = $3, block_number = $4, \
         reported_amount = NULL, detected_at = $5, updated_at = $5 WHERE id = $1 AND status = 'pending'",)
    )
    .bind(id)
    .bind(tx_hash)
    .bind(amount)
    .bind(block_number)
    .bind(now)
    .execute(c)
    .await.map(|r| r.rows_affected())
    })?;
    Ok(done == 1)
}

macro_rules! due_for_confirmation {
    () => {
        concat!(
            "SELECT ",
            columns!(),
            " FROM payments WHERE status = 'detected' AND chain = $1 AND block_number <= $2 \
             AND (block_number, id) > ($3, $4) ORDER BY block_number, id LIMIT $5"
        )
    };
}

/// Detected payments on `chain` mined at or below `max_block`, oldest
/// first, after `after` (the `(block_number, id)` of the last row of the
/// previous page; pages let a scan walk past rows it leaves detected).
///
/// With `claim`, on Postgres the rows are locked `FOR UPDATE SKIP LOCKED`:
/// a second scanner's batch takes other rows instead of waiting for these.
/// (SQLite has one writer at a time; the conditional updates suffice.)
pub async fn due_for_confirmation(
    tx: &mut Tx,
    chain: &str,
    max_block: i64,
    after: Option<(i64, &str)>,
    limit: i64,
    claim: bool,
) -> AppResult<Vec<Payment>> {
    let (after_block, after_id) = after.unwrap_or((-1, ""));
    Ok(on_tx!(tx, |c, pg| {
        let sql = if pg && claim {
            concat!(due_for_confirmation!(), " FOR UPDATE SKIP LOCKED")
        } else {
            due_for_confirmation!()
        };
        sqlx::query_as::<_, Payment>(sql)
            .bind(chain)
            .bind(max_block)
            .bind(after_block)
            .bind(after_id)
            .bind(limit)
            .fetch_all(c)
            .await
    })?)
}

/// A payment leaving `detected` for a final status. The optional fields are
/// set by a check against the chain's node: the update is skipped unless the
/// payment still has that `tx_hash`, and records the block the transaction is
/// in now and the on-chain amount (with what was reported, when it differs).
#[derive(Debug, Default, Serialize)]
pub struct FinalMove<'a> {
    pub id: &'a str,
    pub status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_number: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_amount: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_amount: Option<&'a str>,
    /// With `tx_hash`: the detection the check was about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detected_at: Option<i64>,
}

/// `detected` → a final status, for many payments in one statement.
/// Returns the ids actually moved: a payment another scanner moved first
/// is left out, so it never gets a second event.
pub async fn mark_final_many(
    tx: &mut Tx,
    moves: &[FinalMove<'_>],
    now: i64,
) -> AppResult<Vec<String>> {
    // `+status` keeps SQLite on the primary key (see deliveries::apply_outcomes).
    Ok(on_tx!(tx, |c, pg| sqlx::query_scalar(sql!(
        pg,
        "WITH m AS (SELECT value ->> 'id' AS id, value ->> 'status' AS status, \
         value ->> 'tx_hash' AS tx_hash, CAST(value ->> 'block_number' AS BIGINT) AS block_number, \
         value ->> 'received_amount' AS received, value ->> 'reported_amount' AS reported, \
         CAST(value ->> 'detected_at' AS BIGINT) AS detected_at \
         FROM json_each($1)) \
         UPDATE payments SET status = m.status, confirmed_at = $2, updated_at = $2, \
         block_number = COALESCE(m.block_number, payments.block_number), \
         received_amount = COALESCE(m.received, payments.received_amount), \
         reported_amount = COALESCE(m.reported, payments.reported_amount) FROM m \
         WHERE payments.id = m.id AND +payments.status = 'detected' \
         AND (m.tx_hash IS NULL OR payments.tx_hash = m.tx_hash) \
         AND (m.detected_at IS NULL OR payments.detected_at = m.detected_at) RETURNING payments.id",
    ))
    .bind(serde_json::to_string(moves).unwrap_or_default())
    .bind(now)
    .fetch_all(c)
    .await)?)
}

/// A detected payment and the transaction a chain check was about.
#[derive(Debug, Serialize)]
pub struct Sighting<'a> {
    pub id: &'a str,
    pub tx_hash: &'a str,
    /// The block the transaction is in now (for [`move_blocks_many`]).
    pub block_number: i64,
    /// The detection the check was about: a payment reopened and detected
    /// again (even with the same hash) while the node was asked is left alone.
    pub detected_at: Option<i64>,
}

/// Records that detected payments' transactions moved to another block:
/// their confirmations are counted from there. Returns how many moved.
pub async fn move_blocks_many(tx: &mut Tx, moves: &[Sighting<'_>], now: i64) -> AppResult<u64> {
    let done = on_tx!(tx, |c, pg| {
        sqlx::query(
        sql!(pg, "WITH m AS (SELECT value ->> 'id' AS id, value ->> 'tx_hash' AS tx_hash, \
         CAST(value ->> 'block_number' AS BIGINT) AS block_number, \
         CAST(value ->> 'detected_at' AS BIGINT) AS detected_at FROM json_each($1)) \
         UPDATE payments SET block_number = m.block_number, updated_at = $2 FROM m \
         WHERE payments.id = m.id AND +payments.status = 'detected' AND payments.tx_hash = m.tx_hash \
         AND payments.detected_at IS NOT DISTINCT FROM m.detected_at",)
    )
    .bind(serde_json::to_string(moves).unwrap_or_default())
    .bind(now)
    .execute(c)
    .await.map(|r| r.rows_affected())
    })?;
    Ok(done)
}

/// `detected` → `pending` for payments whose transaction left the chain (or
/// failed, or pays someone else): the detection is cleared so the payment
/// can be detected again. Returns the ids moved.
pub async fn reopen_many(tx: &mut Tx, items: &[Sighting<'_>], now: i64) -> AppResult<Vec<String>> {
    Ok(on_tx!(tx, |c, pg| {
        sqlx::query_scalar(
        sql!(pg, "WITH m AS (SELECT value ->> 'id' AS id, value ->> 'tx_hash' AS tx_hash, \
         CAST(value ->> 'detected_at' AS BIGINT) AS detected_at FROM json_each($1)) \
         UPDATE payments SET status = 'pending', tx_hash = NULL, received_amount = NULL, \
         reported_amount = NULL, block_number = NULL, detected_at = NULL, updated_at = $2 FROM m \
         WHERE payments.id = m.id AND +payments.status = 'detected' AND payments.tx_hash = m.tx_hash \
         AND payments.detected_at IS NOT DISTINCT FROM m.detected_at RETURNING payments.id",)
    )
    .bind(serde_json::to_string(items).unwrap_or_default())
    .bind(now)
    .fetch_all(c)
    .await
    })?)
}

/// Pending payments whose `expires_at` has passed.
/// On Postgres the rows are claimed `FOR UPDATE SKIP LOCKED` (see
/// [`due_for_confirmation`]).
pub async fn due_for_expiry(tx: &mut Tx, now: i64, limit: i64) -> AppResult<Vec<Payment>> {
    macro_rules! due {
        () => {
            concat!(
                "SELECT ",
                columns!(),
                " FROM payments WHERE status = 'pending' AND expires_at IS NOT NULL AND expires_at <= $1 \
                 ORDER BY expires_at, id LIMIT $2"
            )
        };
    }
    Ok(on_tx!(tx, |c, pg| sqlx::query_as::<_, Payment>(if pg {
        concat!(due!(), " FOR UPDATE SKIP LOCKED")
    } else {
        due!()
    })
    .bind(now)
    .bind(limit)
    .fetch_all(c)
    .await)?)
}

/// `pending` → `expired` for many payments; returns the ids moved (one
/// detected meanwhile is left out).
pub async fn mark_expired_many(tx: &mut Tx, ids: &[&str], now: i64) -> AppResult<Vec<String>> {
    Ok(on_tx!(tx, |c, pg| {
        sqlx::query_scalar(
        sql!(pg, "UPDATE payments SET status = 'expired', updated_at = $2 \
         WHERE id IN (SELECT value ->> 'id' FROM json_each($1)) AND +status = 'pending' RETURNING id",)
    )
    .bind(super::id_list(ids))
    .bind(now)
    .fetch_all(c)
    .await
    })?)
}

/// Counts by status (progress displays, tests, bench).
pub async fn count_by_status(store: &Store) -> AppResult<Vec<(String, i64)>> {
    Ok(on_db!(store.db(), |db, pg| sqlx::query_as(sql!(
        pg,
        "SELECT status, COUNT(*) FROM payments GROUP BY status ORDER BY status"
    ))
    .fetch_all(db)
    .await)?)
}
