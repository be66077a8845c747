//! `/v1/events…`

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

use super::{Access, ApiError, AppState};
use crate::delivery::dlq;
use crate::ids::EventId;
use crate::store::events::{self, Event};

pub async fn show(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<EventId>,
) -> Result<Json<Event>, ApiError> {
    let event = events::get(&s.store, &id).await?;
    access.may_see(&event.merchant_id, "event", id.as_str())?;
    Ok(Json(event))
}

pub async fn replay(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<EventId>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let event = events::get(&s.store, &id).await?;
    access.may_see(&event.merchant_id, "event", id.as_str())?;
    let made = dlq::replay(&s.store, &id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(
            serde_json::json!({"event_id": id, "delivery_id": made.first(), "delivery_ids": made}),
        ),
    ))
}
