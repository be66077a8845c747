//! The dead-letter queue: resubmission of dead deliveries (and replay of
//! any event, the same mechanism without a DLQ row). A resubmission is
//! a new delivery of the same event (same `webhook-id`, same body) to the
//! event's current target, and marks the DLQ row — once: a second
//! resubmission of the same row is a conflict.

use crate::error::{AppError, AppResult};
use crate::store::dead_letters::{self, Filter};
use crate::store::{events, Page, Store, Tx};
use crate::time::now_ms;

/// The DLQ filters as a user gives them: flags of `dlq list|resubmit`, the
/// query of `GET /v1/dead-letters`, the body of `POST /v1/dead-letters/resubmit`.
#[derive(Debug, Default, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterInput {
    #[arg(long = "merchant-id", alias = "merchant")]
    pub merchant_id: Option<String>,
    /// exhausted, gone, endpoint_disabled or rejected_target.
    #[arg(long)]
    pub reason: Option<String>,
    /// Dead at or after this RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Dead before this RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
}

impl FilterInput {
    /// Validates; `prefix` (`--` for flags, empty for JSON) names fields in errors.
    pub fn filter(self, prefix: &str) -> AppResult<Filter> {
        Filter::parse(
            self.merchant_id,
            self.reason,
            self.since.as_deref(),
            self.until.as_deref(),
            prefix,
        )
    }
}

/// Resubmits one row; returns the new delivery id.
pub async fn resubmit(store: &Store, dlq_id: &str) -> AppResult<String> {
    let mut tx = store.begin_write().await?;
    let delivery_id = resubmit_in(&mut tx, dlq_id, now_ms()).await?;
    store.commit(tx, true).await?;
    Ok(delivery_id)
}

async fn resubmit_in(tx: &mut Tx, dlq_id: &str, now: i64) -> AppResult<String> {
    let row = dead_letters::get_in(tx, dlq_id).await?;
    if let Some(done) = &row.resubmitted_delivery_id {
        return Err(AppError::conflict(format!(
            "dead letter {dlq_id} was already resubmitted as delivery {done}"
        )));
    }
    let url = events::current_target(tx, &row.event_id).await?;
    let delivery_id =
        events::insert_delivery(tx, &row.event_id, &row.merchant_id, &url, now).await?;
    if !dead_letters::mark_resubmitted(tx, dlq_id, &delivery_id, now).await? {
        return Err(AppError::conflict(format!(
            "dead letter {dlq_id} was already resubmitted"
        )));
    }
    Ok(delivery_id)
}

/// A new delivery of an existing event to its current target.
async fn redeliver(tx: &mut Tx, event_id: &str, merchant_id: &str, now: i64) -> AppResult<String> {
    let url = events::current_target(tx, event_id).await?;
    events::insert_delivery(tx, event_id, merchant_id, &url, now).await
}

/// Replays an event: a new delivery with the same `webhook-id` and body,
/// whatever happened to earlier ones. Returns the new delivery id.
pub async fn replay(store: &Store, event_id: &str) -> AppResult<String> {
    let event = events::get(store, event_id).await?;
    let mut tx = store.begin_write().await?;
    let delivery_id = redeliver(&mut tx, &event.id, &event.merchant_id, now_ms()).await?;
    store.commit(tx, true).await?;
    Ok(delivery_id)
}

/// Resubmits every row matching `filter` that was not resubmitted yet;
/// returns how many. Works in chunks, one transaction each.
pub async fn resubmit_matching(store: &Store, filter: &Filter) -> AppResult<u64> {
    filter.validate()?;
    let filter = Filter {
        unresubmitted_only: true,
        ..filter.clone()
    };
    let mut total = 0u64;
    loop {
        let rows = dead_letters::list(store, &filter, &Page::new(Some(Page::MAX), None)?).await?;
        if rows.is_empty() {
            return Ok(total);
        }
        let mut tx = store.begin_write().await?;
        let now = now_ms();
        for row in &rows {
            match resubmit_in(&mut tx, &row.id, now).await {
                Ok(_) => total += 1,
                // Resubmitted by someone else meanwhile: skip it.
                Err(e) if e.kind == crate::error::ErrorKind::Conflict => {}
                Err(e) => return Err(e),
            }
        }
        store.commit(tx, true).await?;
    }
}
