//! `/v1/payments…`

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::json::Body;
use super::{ApiError, AppState};
use crate::ops::payments::{self, Detection, NewPayment};
use crate::store::payments::{self as rows, Payment};

pub async fn create(
    State(s): State<AppState>,
    Body(input): Body<NewPayment>,
) -> Result<(StatusCode, Json<Payment>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(payments::create(&s.store, &s.cfg, input).await?),
    ))
}

pub async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = rows::get(&s.store, &id).await?;
    let events = crate::store::events::list_for_payment(&s.store, &id).await?;
    let mut v = serde_json::to_value(&p).unwrap_or_default();
    v["events"] = serde_json::to_value(&events).unwrap_or_default();
    Ok(Json(v))
}

pub async fn detect(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(d): Body<Detection>,
) -> Result<Json<Payment>, ApiError> {
    Ok(Json(payments::detect(&s.store, &s.cfg, &id, d).await?))
}
