//! `/v1/payments…`

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

use super::json::Body;
use super::{Access, ApiError, AppState};
use crate::ids::PaymentId;
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
    Extension(access): Extension<Access>,
    Path(id): Path<PaymentId>,
) -> Result<Json<impl serde::Serialize>, ApiError> {
    let p = rows::get(&s.store, &id).await?;
    access.may_see(&p.merchant_id, "payment", id.as_str())?;
    let events = crate::store::events::list_for_payment(&s.store, &id).await?;
    #[derive(serde::Serialize)]
    struct WithEvents {
        #[serde(flatten)]
        payment: Payment,
        events: Vec<crate::store::events::Event>,
    }
    Ok(Json(WithEvents { payment: p, events }))
}

pub async fn detect(
    State(s): State<AppState>,
    Path(id): Path<PaymentId>,
    Body(d): Body<Detection>,
) -> Result<Json<Payment>, ApiError> {
    Ok(Json(payments::detect(&s.store, &s.cfg, &id, d).await?))
}
