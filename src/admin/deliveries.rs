//! `/v1/deliveries…` and `/v1/dead-letters…`

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;

use super::json::{OptionalBody, Query};
use super::{ApiError, AppState, Listing};
use crate::delivery::dlq::{self, FilterInput};
use crate::store::dead_letters::{self, DeadLetter};
use crate::store::deliveries::{self, Delivery, DeliveryWithAttempts};
use crate::store::Page;

#[derive(Debug, Deserialize)]
pub struct DeliveryQuery {
    status: Option<String>,
    merchant_id: Option<String>,
    event_id: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn list(
    State(s): State<AppState>,
    Query(q): Query<DeliveryQuery>,
) -> Result<Json<Listing<Delivery>>, ApiError> {
    let page = Page::new(q.limit, q.cursor)?;
    let data = deliveries::list(
        &s.store,
        q.status.as_deref(),
        q.merchant_id.as_deref(),
        q.event_id.as_deref(),
        &page,
    )
    .await?;
    Ok(Json(Listing::new(data, &page, |d| &d.id)))
}

pub async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeliveryWithAttempts>, ApiError> {
    let delivery = deliveries::get(&s.store, &id).await?;
    let delivery_attempts = deliveries::attempts(&s.store, &id).await?;
    Ok(Json(DeliveryWithAttempts {
        delivery,
        delivery_attempts,
    }))
}

#[derive(Debug, Deserialize)]
pub struct DlqQuery {
    merchant_id: Option<String>,
    reason: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn dead_letters(
    State(s): State<AppState>,
    Query(q): Query<DlqQuery>,
) -> Result<Json<Listing<DeadLetter>>, ApiError> {
    let page = Page::new(q.limit, q.cursor)?;
    let filter = FilterInput {
        merchant_id: q.merchant_id,
        reason: q.reason,
        since: q.since,
        until: q.until,
    }
    .filter("")?;
    let data = dead_letters::list(&s.store, &filter, &page).await?;
    Ok(Json(Listing::new(data, &page, |d| &d.id)))
}

pub async fn resubmit(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeadLetter>, ApiError> {
    dlq::resubmit(&s.store, &id).await?;
    Ok(Json(dead_letters::get(&s.store, &id).await?))
}

pub async fn resubmit_matching(
    State(s): State<AppState>,
    OptionalBody(f): OptionalBody<FilterInput>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let count = dlq::resubmit_matching(&s.store, &f.filter("")?).await?;
    Ok(Json(serde_json::json!({"count": count})))
}
