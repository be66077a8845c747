//! `/v1/merchants…`

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;

use super::json::{Body, OptionalBody, Query};
use super::{Access, ApiError, AppState, Listing, PageQuery};
use crate::ids::MerchantId;
use crate::ops::merchants::{self, MerchantPatch, NewMerchant, WithSecret};
use crate::store::merchants::{self as rows, Merchant};

pub async fn create(
    State(s): State<AppState>,
    Body(input): Body<NewMerchant>,
) -> Result<(StatusCode, Json<WithSecret>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(merchants::create(&s.store, &s.cfg, input).await?),
    ))
}

pub async fn list(
    State(s): State<AppState>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Listing<Merchant>>, ApiError> {
    let page = q.page()?;
    let data = rows::list(&s.store, &page).await?;
    Ok(Json(Listing::new(data, &page, |m| m.id.as_str())))
}

pub async fn show(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<MerchantId>,
) -> Result<Json<Merchant>, ApiError> {
    access.may_see(&id, "merchant", id.as_str())?;
    Ok(Json(rows::get(&s.store, &id).await?))
}

pub async fn update(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<MerchantId>,
    Body(patch): Body<MerchantPatch>,
) -> Result<Json<Merchant>, ApiError> {
    access.may_see(&id, "merchant", id.as_str())?;
    Ok(Json(merchants::update(&s.store, &s.cfg, &id, patch).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// How long the old secret keeps signing, e.g. "24h" (the default).
    overlap: Option<String>,
}

pub async fn rotate_secret(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<MerchantId>,
    OptionalBody(r): OptionalBody<Rotate>,
) -> Result<Json<WithSecret>, ApiError> {
    access.may_see(&id, "merchant", id.as_str())?;
    let overlap = crate::ops::endpoints::parse_overlap(r.overlap.as_deref())?;
    Ok(Json(
        merchants::rotate_secret(&s.store, &id, overlap).await?,
    ))
}

pub async fn test(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<MerchantId>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    access.may_see(&id, "merchant", id.as_str())?;
    let (event_id, delivery_id) = merchants::send_test(&s.store, &id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"event_id": event_id, "delivery_id": delivery_id})),
    ))
}

pub async fn enable(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<MerchantId>,
) -> Result<Json<Merchant>, ApiError> {
    access.may_see(&id, "merchant", id.as_str())?;
    Ok(Json(merchants::enable(&s.store, &id).await?))
}
