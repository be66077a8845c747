//! `/v1/deliveries…` and `/v1/dead-letters…`

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::Deserialize;

use super::access::Confined;
use super::json::{OptionalBody, Query};
use super::{Access, ApiError, AppState, Listing};
use crate::delivery::dlq;
use crate::domain::{DeadReason, DeliveryStatus};
use crate::error::AppResult;
use crate::events::EventType;
use crate::ids::{DeadLetterId, DeliveryId, EndpointId, EventId, MerchantId, PaymentId};
use crate::store::dead_letters::{self, DeadLetter};
use crate::store::deliveries::{self, Delivery, DeliveryWithAttempts};
use crate::store::Page;

#[derive(Debug, Deserialize)]
pub struct DeliveryQuery {
    status: Option<String>,
    merchant_id: Option<MerchantId>,
    endpoint_id: Option<EndpointId>,
    event_id: Option<EventId>,
    event_type: Option<String>,
    payment_id: Option<PaymentId>,
    /// Created at or after this RFC 3339 time.
    since: Option<String>,
    /// Created before this RFC 3339 time.
    until: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn list(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Query(q): Query<DeliveryQuery>,
) -> Result<Json<Listing<Delivery>>, ApiError> {
    let page = Page::new(q.limit, q.cursor)?;
    let merchant_id = match access.confine(q.merchant_id) {
        Confined::To(m) => m,
        Confined::Nothing => return Ok(Json(Listing::new(vec![], &page, |d| d.id.as_str()))),
    };
    let filter = deliveries::Filter {
        status: q
            .status
            .as_deref()
            .map(|s| DeliveryStatus::parse("status", s))
            .transpose()?,
        merchant_id,
        endpoint_id: q.endpoint_id,
        event_id: q.event_id,
        event_type: q
            .event_type
            .as_deref()
            .map(|t| EventType::parse("event_type", t))
            .transpose()?,
        payment_id: q.payment_id,
        since: time("since", q.since)?,
        until: time("until", q.until)?,
    };
    let data = deliveries::list(&s.store, &filter, &page).await?;
    Ok(Json(Listing::new(data, &page, |d| d.id.as_str())))
}

pub async fn show(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<DeliveryId>,
) -> Result<Json<DeliveryWithAttempts>, ApiError> {
    let delivery = deliveries::get(&s.store, &id).await?;
    access.may_see(&delivery.merchant_id, "delivery", id.as_str())?;
    let delivery_attempts = deliveries::attempts(&s.store, &id).await?;
    Ok(Json(DeliveryWithAttempts {
        delivery,
        delivery_attempts,
    }))
}

/// The DLQ filters: the query of `GET /v1/dead-letters`, the body of
/// `POST /v1/dead-letters/resubmit`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqFilter {
    merchant_id: Option<MerchantId>,
    endpoint_id: Option<EndpointId>,
    reason: Option<String>,
    /// Dead at or after this RFC 3339 time.
    since: Option<String>,
    /// Dead before this RFC 3339 time.
    until: Option<String>,
}

fn time(field: &str, v: Option<String>) -> AppResult<Option<i64>> {
    crate::time::parse_optional_rfc3339(field, v.as_deref())
}

impl DlqFilter {
    fn filter(self) -> AppResult<dead_letters::Filter> {
        Ok(dead_letters::Filter {
            merchant_id: self.merchant_id,
            endpoint_id: self.endpoint_id,
            reason: self
                .reason
                .as_deref()
                .map(|r| DeadReason::parse("reason", r))
                .transpose()?,
            since: time("since", self.since)?,
            until: time("until", self.until)?,
            unresubmitted_only: false,
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct DlqQuery {
    merchant_id: Option<MerchantId>,
    reason: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
    endpoint_id: Option<EndpointId>,
}

pub async fn dead_letters(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Query(q): Query<DlqQuery>,
) -> Result<Json<Listing<DeadLetter>>, ApiError> {
    let page = Page::new(q.limit, q.cursor)?;
    let merchant_id = match access.confine(q.merchant_id) {
        Confined::To(m) => m,
        Confined::Nothing => return Ok(Json(Listing::new(vec![], &page, |d| d.id.as_str()))),
    };
    let filter = DlqFilter {
        merchant_id,
        endpoint_id: q.endpoint_id,
        reason: q.reason,
        since: q.since,
        until: q.until,
    };
    let data = dead_letters::list(&s.store, &filter.filter()?, &page).await?;
    Ok(Json(Listing::new(data, &page, |d| d.id.as_str())))
}

pub async fn resubmit(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<DeadLetterId>,
) -> Result<Json<DeadLetter>, ApiError> {
    let row = dead_letters::get(&s.store, &id).await?;
    access.may_see(&row.merchant_id, "dead letter", id.as_str())?;
    dlq::resubmit(&s.store, &id).await?;
    Ok(Json(dead_letters::get(&s.store, &id).await?))
}

pub async fn resubmit_matching(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    OptionalBody(f): OptionalBody<DlqFilter>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut filter = f.filter()?;
    filter.merchant_id = match access.confine(filter.merchant_id) {
        Confined::To(m) => m,
        Confined::Nothing => return Ok(Json(serde_json::json!({"count": 0}))),
    };
    let count =
        dlq::resubmit_matching(&s.store, &filter, "dead_letter.resubmit_matching", None).await?;
    Ok(Json(serde_json::json!({"count": count})))
}
