//! `/v1/merchants/{id}/api-keys` and `/v1/api-keys/{id}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;

use super::json::{Body, Query};
use super::{Access, ApiError, AppState, Listing, PageQuery};
use crate::ids::MerchantId;
use crate::ops::api_keys::{self, NewKey};
use crate::store::api_keys::{self as rows, ApiKey};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKeyBody {
    name: String,
}

pub async fn create(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<MerchantId>,
    Body(body): Body<NewKeyBody>,
) -> Result<(StatusCode, Json<NewKey>), ApiError> {
    access.may_see(&id, "merchant", id.as_str())?;
    let key = api_keys::create(&s.store, &id, &body.name).await?;
    Ok((StatusCode::CREATED, Json(key)))
}

pub async fn list(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<MerchantId>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Listing<ApiKey>>, ApiError> {
    access.may_see(&id, "merchant", id.as_str())?;
    crate::store::merchants::get(&s.store, &id).await?;
    let page = q.page()?;
    let data = rows::list(&s.store, &id, &page).await?;
    Ok(Json(Listing::new(data, &page, |k| k.id.as_str())))
}

pub async fn revoke(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
) -> Result<Json<ApiKey>, ApiError> {
    let key = rows::get(&s.store, &id).await?;
    access.may_see(&key.merchant_id, "api key", &id)?;
    Ok(Json(api_keys::revoke(&s.store, &id).await?))
}
