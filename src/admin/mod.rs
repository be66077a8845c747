//! The admin HTTP API (axum) on `admin.listen`: JSON in and out, bearer
//! token on everything but `/healthz`, errors as
//! `{"error":{"code","message"}}`. Every handler calls the same `ops`,
//! `store` and `delivery` functions as the CLI; nothing here implements an
//! operation of its own. One file per resource.

mod auth;
mod chains;
mod deliveries;
mod error;
mod events;
mod health;
mod json;
mod merchants;
pub mod openapi;
mod payments;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::{AppError, AppResult};
use crate::store::{Page, Store};

pub use error::ApiError;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub cfg: Arc<Config>,
}

pub fn router(state: AppState, token: &str) -> Router {
    let api = Router::new()
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::serve))
        .route(
            "/v1/merchants",
            post(merchants::create).get(merchants::list),
        )
        .route(
            "/v1/merchants/{id}",
            get(merchants::show).patch(merchants::update),
        )
        .route(
            "/v1/merchants/{id}/rotate-secret",
            post(merchants::rotate_secret),
        )
        .route("/v1/merchants/{id}/test", post(merchants::test))
        .route("/v1/merchants/{id}/enable", post(merchants::enable))
        .route("/v1/payments", post(payments::create))
        .route("/v1/payments/{id}", get(payments::show))
        .route("/v1/payments/{id}/detections", post(payments::detect))
        .route("/v1/chains", get(chains::list))
        .route("/v1/chains/{chain}/head", post(chains::set_head))
        .route("/v1/scans", post(chains::scan))
        .route("/v1/events/{id}", get(events::show))
        .route("/v1/events/{id}/replay", post(events::replay))
        .route("/v1/deliveries", get(deliveries::list))
        .route("/v1/deliveries/{id}", get(deliveries::show))
        .route("/v1/dead-letters", get(deliveries::dead_letters))
        .route(
            "/v1/dead-letters/resubmit",
            post(deliveries::resubmit_matching),
        )
        .route("/v1/dead-letters/{id}/resubmit", post(deliveries::resubmit))
        .layer(middleware::from_fn_with_state(
            auth::Token::new(token),
            auth::require_bearer,
        ));
    Router::new()
        .route("/healthz", get(health::healthz))
        .merge(api)
        .fallback(error::not_found_route)
        .with_state(state)
}

/// Binds `admin.listen` (so a taken port fails start-up at once).
pub async fn bind(listen: &str) -> AppResult<tokio::net::TcpListener> {
    let addr: SocketAddr = listen.parse().map_err(|_| {
        AppError::config(format!(
            "admin.listen: expected an address and port such as \"127.0.0.1:8080\", got {listen:?}"
        ))
    })?;
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| AppError::internal(format!("admin.listen: cannot listen on {addr}: {e}")))
}

/// Serves the API until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    token: String,
    shutdown: CancellationToken,
) -> AppResult<()> {
    crate::metrics::install();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin API listening");
    }
    axum::serve(listener, router(state, &token))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(|e| AppError::internal(format!("admin API stopped: {e}")))
}

/// `?limit=&cursor=` of list routes.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn page(&self) -> AppResult<Page> {
        Page::new(self.limit, self.cursor.clone())
    }
}

/// A page of a list: `data`, and `next_cursor` to pass as `cursor` for the
/// next page (`null` on the last one).
#[derive(Debug, Serialize)]
pub struct Listing<T: Serialize> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T: Serialize> Listing<T> {
    pub fn new(data: Vec<T>, page: &Page, id_of: impl Fn(&T) -> &str) -> Self {
        let next_cursor = if data.len() as i64 == page.limit {
            data.last().map(|d| id_of(d).to_string())
        } else {
            None
        };
        Listing { data, next_cursor }
    }
}
