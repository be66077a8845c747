//! `/healthz` (no auth), `/readyz` (the database takes a write and its disk
//! is not nearly full), `/metrics`.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Json;

use super::{ApiError, AppState};
use crate::error::{AppError, ErrorKind};

pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Ready when the database takes a write within 2 s and (SQLite) its disk
/// is not nearly full: a service that cannot record outcomes should not
/// take traffic.
pub async fn readyz(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let unavailable = |m: String| ApiError(AppError::new(ErrorKind::Unavailable, m));
    let probe = s.store.probe_write(crate::time::now_ms());
    match tokio::time::timeout(std::time::Duration::from_secs(2), probe).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(unavailable(format!("database does not take writes: {e}"))),
        Err(_) => {
            return Err(unavailable(
                "database did not take a write within 2s".into(),
            ))
        }
    }
    if let Some(Ok((available, total))) = s.store.disk_space() {
        if disk_nearly_full(available, total) {
            return Err(unavailable(format!(
                "disk nearly full: {} MiB free of {} MiB",
                available >> 20,
                total >> 20
            )));
        }
    }
    Ok(Json(serde_json::json!({"status": "ready"})))
}

/// Nearly full: less free than 1 GiB or 5 % of the volume, whichever is
/// smaller (so a small volume is not judged full at 1 GiB).
pub fn disk_nearly_full(available: u64, total: u64) -> bool {
    available < (1u64 << 30).min(total / 20)
}

pub async fn metrics(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let text = crate::metrics::render(&s.store).await?;
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

#[cfg(test)]
mod tests {
    use super::disk_nearly_full;

    #[test]
    fn nearly_full_is_judged_against_the_volume() {
        const GIB: u64 = 1 << 30;
        assert!(disk_nearly_full(GIB / 2, 500 * GIB));
        assert!(!disk_nearly_full(2 * GIB, 500 * GIB));
        // A 4 GiB volume: 5 % (about 205 MiB) is the line, not 1 GiB.
        assert!(!disk_nearly_full(300 << 20, 4 * GIB));
        assert!(disk_nearly_full(100 << 20, 4 * GIB));
    }
}
