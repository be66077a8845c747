//! `/v1/chains…` and `/v1/scans`.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::json::Body;
use super::{ApiError, AppState};
use crate::ops::payments;
use crate::scanner::ScanReport;

#[derive(Debug, Serialize)]
pub struct ChainView {
    name: String,
    confirmations: u32,
    rpc_url: bool,
    head: Option<i64>,
    #[serde(serialize_with = "crate::time::ser::opt_ms")]
    head_updated_at: Option<i64>,
}

pub async fn list(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let heads = crate::store::chains::list(&s.store).await?;
    let data: Vec<ChainView> = s
        .cfg
        .chains
        .iter()
        .map(|(name, c)| {
            let h = heads.iter().find(|h| &h.name == name);
            ChainView {
                name: name.clone(),
                confirmations: c.confirmations,
                rpc_url: c.rpc_url.is_some(),
                head: h.map(|h| h.head),
                head_updated_at: h.map(|h| h.updated_at),
            }
        })
        .collect();
    Ok(Json(serde_json::json!({"data": data})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    height: i64,
}

pub async fn set_head(
    State(s): State<AppState>,
    Path(chain): Path<String>,
    Body(h): Body<Head>,
) -> Result<Json<serde_json::Value>, ApiError> {
    payments::set_head(&s.store, &s.cfg, &chain, h.height).await?;
    Ok(Json(serde_json::json!({"name": chain, "head": h.height})))
}

pub async fn scan(State(s): State<AppState>) -> Result<Json<ScanReport>, ApiError> {
    Ok(Json(crate::ops::payments::scan(&s.store, &s.cfg).await?))
}
