//! `/healthz` (no auth), `/readyz` (database reachable), `/metrics`.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Json;

use super::{ApiError, AppState};
use crate::error::{AppError, ErrorKind};

pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

pub async fn readyz(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let ping = tokio::time::timeout(std::time::Duration::from_secs(2), s.store.ping()).await;
    match ping {
        Ok(Ok(())) => Ok(Json(serde_json::json!({"status": "ready"}))),
        Ok(Err(e)) => Err(ApiError(AppError::new(
            ErrorKind::Unavailable,
            format!("database unreachable: {e}"),
        ))),
        Err(_) => Err(ApiError(AppError::new(
            ErrorKind::Unavailable,
            "database did not answer within 2s",
        ))),
    }
}

pub async fn metrics(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let text = crate::metrics::render(&s.store).await?;
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}
