//! `/v1/events…`

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::{ApiError, AppState};
use crate::delivery::dlq;
use crate::ids::EventId;
use crate::store::events::{self, Event};

pub async fn show(
    State(s): State<AppState>,
    Path(id): Path<EventId>,
) -> Result<Json<Event>, ApiError> {
    Ok(Json(events::get(&s.store, &id).await?))
}

pub async fn replay(
    State(s): State<AppState>,
    Path(id): Path<EventId>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let delivery_id = dlq::replay(&s.store, &id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"event_id": id, "delivery_id": delivery_id})),
    ))
}
