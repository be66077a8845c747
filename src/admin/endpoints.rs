//! `/v1/merchants/{id}/endpoints` and `/v1/endpoints/{id}…`: a merchant's
//! webhook endpoints. A merchant API key reaches its own merchant's only.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;

use super::json::{Body, OptionalBody, Query};
use super::{Access, ApiError, AppState, Listing, PageQuery};
use crate::error::AppResult;
use crate::ids::{EndpointId, MerchantId};
use crate::ops::endpoints::{
    self, AuditAs, EndpointPatch, EndpointWithSecret, Health, NewEndpoint, Revealed,
};
use crate::store::endpoints::{self as rows, Endpoint};
use crate::store::Store;

/// The endpoint, if the caller may see it (404 otherwise, as if absent).
async fn visible(store: &Store, access: &Access, id: &EndpointId) -> AppResult<Endpoint> {
    let ep = rows::get(store, id).await?;
    access.may_see(&ep.merchant_id, "endpoint", id.as_str())?;
    Ok(ep)
}

pub async fn create(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<MerchantId>,
    Body(input): Body<NewEndpoint>,
) -> Result<(StatusCode, Json<EndpointWithSecret>), ApiError> {
    access.may_see(&id, "merchant", id.as_str())?;
    let created = endpoints::create(&s.store, &s.cfg, &id, input).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn list(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<MerchantId>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Listing<Endpoint>>, ApiError> {
    access.may_see(&id, "merchant", id.as_str())?;
    crate::store::merchants::get(&s.store, &id).await?;
    let page = q.page()?;
    let data = rows::list(&s.store, &id, &page).await?;
    Ok(Json(Listing::new(data, &page, |e| e.id.as_str())))
}

pub async fn show(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<EndpointId>,
) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(visible(&s.store, &access, &id).await?))
}

pub async fn update(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<EndpointId>,
    Body(patch): Body<EndpointPatch>,
) -> Result<Json<Endpoint>, ApiError> {
    visible(&s.store, &access, &id).await?;
    let ep = endpoints::update(&s.store, &s.cfg, &id, patch, AuditAs::Endpoint).await?;
    Ok(Json(ep))
}

pub async fn delete(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<EndpointId>,
) -> Result<Json<serde_json::Value>, ApiError> {
    visible(&s.store, &access, &id).await?;
    let dead = endpoints::delete(&s.store, &id).await?;
    Ok(Json(
        serde_json::json!({"id": id, "deleted": true, "dead_lettered": dead}),
    ))
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
    Path(id): Path<EndpointId>,
    OptionalBody(r): OptionalBody<Rotate>,
) -> Result<Json<EndpointWithSecret>, ApiError> {
    visible(&s.store, &access, &id).await?;
    let overlap = endpoints::parse_overlap(r.overlap.as_deref())?;
    let rotated = endpoints::rotate_secret(&s.store, &id, overlap, AuditAs::Endpoint).await?;
    Ok(Json(rotated))
}

pub async fn reveal_secret(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<EndpointId>,
) -> Result<Json<Revealed>, ApiError> {
    visible(&s.store, &access, &id).await?;
    Ok(Json(endpoints::reveal_secret(&s.store, &id).await?))
}

pub async fn test(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<EndpointId>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    visible(&s.store, &access, &id).await?;
    let (event_id, delivery_id) = endpoints::send_test(&s.store, &id, AuditAs::Endpoint).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"event_id": event_id, "delivery_id": delivery_id})),
    ))
}

pub async fn enable(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<EndpointId>,
) -> Result<Json<Endpoint>, ApiError> {
    visible(&s.store, &access, &id).await?;
    Ok(Json(
        endpoints::enable(&s.store, &id, AuditAs::Endpoint).await?,
    ))
}

pub async fn disable(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<EndpointId>,
) -> Result<Json<Endpoint>, ApiError> {
    visible(&s.store, &access, &id).await?;
    Ok(Json(endpoints::disable(&s.store, &id).await?))
}

pub async fn health(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<EndpointId>,
) -> Result<Json<Health>, ApiError> {
    visible(&s.store, &access, &id).await?;
    Ok(Json(endpoints::health(&s.store, &s.cfg, &id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recover {
    /// RFC 3339: dead letters that died at or after this time.
    since: String,
    /// RFC 3339: and before this one (default: now).
    until: Option<String>,
}

pub async fn recover(
    State(s): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<EndpointId>,
    Body(r): Body<Recover>,
) -> Result<Json<serde_json::Value>, ApiError> {
    visible(&s.store, &access, &id).await?;
    let since = crate::time::parse_rfc3339("since", &r.since)?;
    let until = crate::time::parse_optional_rfc3339("until", r.until.as_deref())?;
    let count = endpoints::recover(&s.store, &id, since, until).await?;
    Ok(Json(serde_json::json!({"count": count})))
}
