//! The `payments` table: registration, detection, and the rows the scanner
//! moves to a final state. State changes are conditional updates
//! (`WHERE status = …`), so two scanners can never both make the same change.

use serde::Serialize;

use super::sql::{id_rows, json_rows, query, Sql, Tx};
use super::Store;
use crate::domain::PaymentStatus;
use crate::error::{AppError, AppResult};
use crate::events::{self, PaymentData};
use crate::ids::{MerchantId, PaymentId};
use crate::time::rfc3339;

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Payment {
    pub id: PaymentId,
    pub merchant_id: MerchantId,
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
    #[sqlx(try_from = "String")]
    pub status: PaymentStatus,
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

impl Payment {
    /// The `data` of an event about this payment as it is now.
    pub fn event_data<'a>(&'a self, head: Option<i64>, reason: Option<&'a str>) -> PaymentData<'a> {
        PaymentData {
            payment_id: self.id.as_str(),
            reference: &self.reference,
            status: self.status.as_str(),
            chain: &self.chain,
            token: self.token.as_deref(),
            address: &self.address,
            expected_amount: &self.expected_amount,
            received_amount: self.received_amount.as_deref(),
            reported_amount: self.reported_amount.as_deref(),
            tx_hash: self.tx_hash.as_deref(),
            block_number: self.block_number,
            confirmations: events::confirmations(self.block_number, head),
            detected_at: self.detected_at.map(rfc3339),
            confirmed_at: self.confirmed_at.map(rfc3339),
            expires_at: self.expires_at.map(rfc3339),
            reason,
        }
    }
}

const INSERT: Sql = Sql::both(
    "INSERT INTO payments (id, merchant_id, reference, chain, token, address, expected_amount, \
     status, callback_url, expires_at, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10, $10)",
);

pub async fn insert(tx: &mut Tx, p: &Payment) -> AppResult<()> {
    let res = query(INSERT)
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
        .execute(tx)
        .await;
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

const GET: Sql = Sql::both(
    "SELECT id, merchant_id, reference, chain, token, address, expected_amount, received_amount, \
     reported_amount, tx_hash, block_number, status, callback_url, expires_at, detected_at, \
     confirmed_at, created_at, updated_at FROM payments WHERE id = $1",
);

pub async fn get(store: &Store, id: &PaymentId) -> AppResult<Payment> {
    query(GET)
        .bind(id)
        .fetch_optional(store.db())
        .await?
        .ok_or_else(|| AppError::not_found("payment", id.as_str()))
}

pub async fn get_in(tx: &mut Tx, id: &PaymentId) -> AppResult<Payment> {
    query(GET)
        .bind(id)
        .fetch_optional(tx)
        .await?
        .ok_or_else(|| AppError::not_found("payment", id.as_str()))
}

const MARK_DETECTED: Sql = Sql::both(
    "UPDATE payments SET status = 'detected', tx_hash = $2, received_amount = $3, \
     block_number = $4, reported_amount = NULL, detected_at = $5, updated_at = $5 \
     WHERE id = $1 AND status = 'pending'",
);

/// `pending` → `detected` with the sighting; false if it was not pending.
pub async fn mark_detected(
    tx: &mut Tx,
    id: &PaymentId,
    tx_hash: &str,
    amount: &str,
    block_number: i64,
    now: i64,
) -> AppResult<bool> {
    let done = query(MARK_DETECTED)
        .bind(id)
        .bind(tx_hash)
        .bind(amount)
        .bind(block_number)
        .bind(now)
        .execute(tx)
        .await?;
    Ok(done == 1)
}

const DUE_FOR_CONFIRMATION: Sql = Sql::both(
    "SELECT id, merchant_id, reference, chain, token, address, expected_amount, received_amount, \
     reported_amount, tx_hash, block_number, status, callback_url, expires_at, detected_at, \
     confirmed_at, created_at, updated_at FROM payments \
     WHERE status = 'detected' AND chain = $1 AND block_number <= $2 \
     AND (block_number, id) > ($3, $4) ORDER BY block_number, id LIMIT $5",
);

/// The same rows, claimed on Postgres: a second scanner's batch takes other
/// rows instead of waiting for these. (SQLite has one writer at a time; the
/// conditional updates suffice.)
const CLAIM_DUE_FOR_CONFIRMATION: Sql = Sql::each(
    "SELECT id, merchant_id, reference, chain, token, address, expected_amount, received_amount, \
     reported_amount, tx_hash, block_number, status, callback_url, expires_at, detected_at, \
     confirmed_at, created_at, updated_at FROM payments \
     WHERE status = 'detected' AND chain = $1 AND block_number <= $2 \
     AND (block_number, id) > ($3, $4) ORDER BY block_number, id LIMIT $5",
    "SELECT id, merchant_id, reference, chain, token, address, expected_amount, received_amount, \
     reported_amount, tx_hash, block_number, status, callback_url, expires_at, detected_at, \
     confirmed_at, created_at, updated_at FROM payments \
     WHERE status = 'detected' AND chain = $1 AND block_number <= $2 \
     AND (block_number, id) > ($3, $4) ORDER BY block_number, id LIMIT $5 \
     FOR UPDATE SKIP LOCKED",
);

/// Detected payments on `chain` mined at or below `max_block`, oldest
/// first, after `after` (the `(block_number, id)` of the last row of the
/// previous page; pages let a scan walk past rows it leaves detected).
/// With `claim`, the rows are locked for this transaction on Postgres.
pub async fn due_for_confirmation(
    tx: &mut Tx,
    chain: &str,
    max_block: i64,
    after: Option<(i64, &PaymentId)>,
    limit: i64,
    claim: bool,
) -> AppResult<Vec<Payment>> {
    let (after_block, after_id) = after.map_or((-1, ""), |(b, id)| (b, id.as_str()));
    let sql = if claim {
        CLAIM_DUE_FOR_CONFIRMATION
    } else {
        DUE_FOR_CONFIRMATION
    };
    Ok(query(sql)
        .bind(chain)
        .bind(max_block)
        .bind(after_block)
        .bind(after_id)
        .bind(limit)
        .fetch_all(tx)
        .await?)
}

/// A payment leaving `detected` for a final status. The optional fields are
/// set by a check against the chain's node: the update is skipped unless the
/// payment still has that `tx_hash`, and records the block the transaction is
/// in now and the on-chain amount (with what was reported, when it differs).
#[derive(Debug, Serialize)]
pub struct FinalMove<'a> {
    pub id: &'a PaymentId,
    pub status: PaymentStatus,
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

impl<'a> FinalMove<'a> {
    /// A move decided by the stored figures alone (no node check).
    pub fn to(id: &'a PaymentId, status: PaymentStatus) -> Self {
        FinalMove {
            id,
            status,
            tx_hash: None,
            block_number: None,
            received_amount: None,
            reported_amount: None,
            detected_at: None,
        }
    }
}

const MARK_FINAL_MANY: Sql = Sql::each(
    "WITH m AS (SELECT value ->> 'id' AS id, value ->> 'status' AS status, \
     value ->> 'tx_hash' AS tx_hash, CAST(value ->> 'block_number' AS BIGINT) AS block_number, \
     value ->> 'received_amount' AS received, value ->> 'reported_amount' AS reported, \
     CAST(value ->> 'detected_at' AS BIGINT) AS detected_at FROM json_each($1)) \
     UPDATE payments SET status = m.status, confirmed_at = $2, updated_at = $2, \
     block_number = COALESCE(m.block_number, payments.block_number), \
     received_amount = COALESCE(m.received, payments.received_amount), \
     reported_amount = COALESCE(m.reported, payments.reported_amount) FROM m \
     WHERE payments.id = m.id AND +payments.status = 'detected' \
     AND (m.tx_hash IS NULL OR payments.tx_hash = m.tx_hash) \
     AND (m.detected_at IS NULL OR payments.detected_at = m.detected_at) RETURNING payments.id",
    "WITH m AS (SELECT value ->> 'id' AS id, value ->> 'status' AS status, \
     value ->> 'tx_hash' AS tx_hash, CAST(value ->> 'block_number' AS BIGINT) AS block_number, \
     value ->> 'received_amount' AS received, value ->> 'reported_amount' AS reported, \
     CAST(value ->> 'detected_at' AS BIGINT) AS detected_at FROM payhook_json_rows($1::jsonb)) \
     UPDATE payments SET status = m.status, confirmed_at = $2, updated_at = $2, \
     block_number = COALESCE(m.block_number, payments.block_number), \
     received_amount = COALESCE(m.received, payments.received_amount), \
     reported_amount = COALESCE(m.reported, payments.reported_amount) FROM m \
     WHERE payments.id = m.id AND (payments.status || '') = 'detected' \
     AND (m.tx_hash IS NULL OR payments.tx_hash = m.tx_hash) \
     AND (m.detected_at IS NULL OR payments.detected_at = m.detected_at) RETURNING payments.id",
);

/// `detected` → a final status, for many payments in one statement.
/// Returns the ids actually moved: a payment another scanner moved first
/// is left out, so it never gets a second event.
pub async fn mark_final_many(
    tx: &mut Tx,
    moves: &[FinalMove<'_>],
    now: i64,
) -> AppResult<Vec<PaymentId>> {
    Ok(query(MARK_FINAL_MANY)
        .bind(json_rows(moves)?)
        .bind(now)
        .scalars(tx)
        .await?)
}

/// A detected payment and the transaction a chain check was about.
#[derive(Debug, Serialize)]
pub struct Sighting<'a> {
    pub id: &'a PaymentId,
    pub tx_hash: &'a str,
    /// The block the transaction is in now (for [`move_blocks_many`]).
    pub block_number: i64,
    /// The detection the check was about: a payment reopened and detected
    /// again (even with the same hash) while the node was asked is left alone.
    pub detected_at: Option<i64>,
}

const MOVE_BLOCKS_MANY: Sql = Sql::each(
    "WITH m AS (SELECT value ->> 'id' AS id, value ->> 'tx_hash' AS tx_hash, \
     CAST(value ->> 'block_number' AS BIGINT) AS block_number, \
     CAST(value ->> 'detected_at' AS BIGINT) AS detected_at FROM json_each($1)) \
     UPDATE payments SET block_number = m.block_number, updated_at = $2 FROM m \
     WHERE payments.id = m.id AND +payments.status = 'detected' AND payments.tx_hash = m.tx_hash \
     AND payments.detected_at IS NOT DISTINCT FROM m.detected_at",
    "WITH m AS (SELECT value ->> 'id' AS id, value ->> 'tx_hash' AS tx_hash, \
     CAST(value ->> 'block_number' AS BIGINT) AS block_number, \
     CAST(value ->> 'detected_at' AS BIGINT) AS detected_at FROM payhook_json_rows($1::jsonb)) \
     UPDATE payments SET block_number = m.block_number, updated_at = $2 FROM m \
     WHERE payments.id = m.id AND (payments.status || '') = 'detected' \
     AND payments.tx_hash = m.tx_hash AND payments.detected_at IS NOT DISTINCT FROM m.detected_at",
);

/// Records that detected payments' transactions moved to another block:
/// their confirmations are counted from there. Returns how many moved.
pub async fn move_blocks_many(tx: &mut Tx, moves: &[Sighting<'_>], now: i64) -> AppResult<u64> {
    Ok(query(MOVE_BLOCKS_MANY)
        .bind(json_rows(moves)?)
        .bind(now)
        .execute(tx)
        .await?)
}

const REOPEN_MANY: Sql = Sql::each(
    "WITH m AS (SELECT value ->> 'id' AS id, value ->> 'tx_hash' AS tx_hash, \
     CAST(value ->> 'detected_at' AS BIGINT) AS detected_at FROM json_each($1)) \
     UPDATE payments SET status = 'pending', tx_hash = NULL, received_amount = NULL, \
     reported_amount = NULL, block_number = NULL, detected_at = NULL, updated_at = $2 FROM m \
     WHERE payments.id = m.id AND +payments.status = 'detected' AND payments.tx_hash = m.tx_hash \
     AND payments.detected_at IS NOT DISTINCT FROM m.detected_at RETURNING payments.id",
    "WITH m AS (SELECT value ->> 'id' AS id, value ->> 'tx_hash' AS tx_hash, \
     CAST(value ->> 'detected_at' AS BIGINT) AS detected_at FROM payhook_json_rows($1::jsonb)) \
     UPDATE payments SET status = 'pending', tx_hash = NULL, received_amount = NULL, \
     reported_amount = NULL, block_number = NULL, detected_at = NULL, updated_at = $2 FROM m \
     WHERE payments.id = m.id AND (payments.status || '') = 'detected' \
     AND payments.tx_hash = m.tx_hash AND payments.detected_at IS NOT DISTINCT FROM m.detected_at \
     RETURNING payments.id",
);

/// `detected` → `pending` for payments whose transaction left the chain (or
/// failed, or pays someone else): the detection is cleared so the payment
/// can be detected again. Returns the ids moved.
pub async fn reopen_many(
    tx: &mut Tx,
    items: &[Sighting<'_>],
    now: i64,
) -> AppResult<Vec<PaymentId>> {
    Ok(query(REOPEN_MANY)
        .bind(json_rows(items)?)
        .bind(now)
        .scalars(tx)
        .await?)
}

const DUE_FOR_EXPIRY: Sql = Sql::each(
    "SELECT id, merchant_id, reference, chain, token, address, expected_amount, received_amount, \
     reported_amount, tx_hash, block_number, status, callback_url, expires_at, detected_at, \
     confirmed_at, created_at, updated_at FROM payments \
     WHERE status = 'pending' AND expires_at IS NOT NULL AND expires_at <= $1 \
     ORDER BY expires_at, id LIMIT $2",
    "SELECT id, merchant_id, reference, chain, token, address, expected_amount, received_amount, \
     reported_amount, tx_hash, block_number, status, callback_url, expires_at, detected_at, \
     confirmed_at, created_at, updated_at FROM payments \
     WHERE status = 'pending' AND expires_at IS NOT NULL AND expires_at <= $1 \
     ORDER BY expires_at, id LIMIT $2 FOR UPDATE SKIP LOCKED",
);

/// Pending payments whose `expires_at` has passed, claimed on Postgres (see
/// [`CLAIM_DUE_FOR_CONFIRMATION`]).
pub async fn due_for_expiry(tx: &mut Tx, now: i64, limit: i64) -> AppResult<Vec<Payment>> {
    Ok(query(DUE_FOR_EXPIRY)
        .bind(now)
        .bind(limit)
        .fetch_all(tx)
        .await?)
}

const MARK_EXPIRED_MANY: Sql = Sql::each(
    "UPDATE payments SET status = 'expired', updated_at = $2 \
     WHERE id IN (SELECT value ->> 'id' FROM json_each($1)) AND +status = 'pending' RETURNING id",
    "UPDATE payments SET status = 'expired', updated_at = $2 \
     WHERE id IN (SELECT value ->> 'id' FROM payhook_json_rows($1::jsonb)) \
     AND (status || '') = 'pending' RETURNING id",
);

/// `pending` → `expired` for many payments; returns the ids moved (one
/// detected meanwhile is left out).
pub async fn mark_expired_many(
    tx: &mut Tx,
    ids: &[&PaymentId],
    now: i64,
) -> AppResult<Vec<PaymentId>> {
    let ids: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
    Ok(query(MARK_EXPIRED_MANY)
        .bind(id_rows(&ids))
        .bind(now)
        .scalars(tx)
        .await?)
}

const COUNT_BY_STATUS: Sql =
    Sql::both("SELECT status, COUNT(*) FROM payments GROUP BY status ORDER BY status");

/// Counts by status (progress displays, tests, bench).
pub async fn count_by_status(store: &Store) -> AppResult<Vec<(String, i64)>> {
    Ok(query(COUNT_BY_STATUS).fetch_all(store.db()).await?)
}

/// Filters of the console's payment search.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub merchant_id: Option<MerchantId>,
    pub reference: Option<String>,
    pub tx_hash: Option<String>,
}

const SEARCH: Sql = Sql::both(
    "SELECT id, merchant_id, reference, chain, token, address, expected_amount, received_amount, \
     reported_amount, tx_hash, block_number, status, callback_url, expires_at, detected_at, \
     confirmed_at, created_at, updated_at FROM payments \
     WHERE ($1 IS NULL OR merchant_id = $1) AND ($2 IS NULL OR reference = $2) \
     AND ($3 IS NULL OR tx_hash = $3) AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5",
);

/// Payments matching `s`, newest first.
pub async fn search(store: &Store, s: &Search, page: &super::Page) -> AppResult<Vec<Payment>> {
    Ok(query(SEARCH)
        .bind(s.merchant_id.as_ref())
        .bind(s.reference.as_deref())
        .bind(s.tx_hash.as_deref())
        .bind(&page.cursor)
        .bind(page.limit)
        .fetch_all(store.db())
        .await?)
}
