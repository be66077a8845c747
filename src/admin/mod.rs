//! The admin HTTP API (axum) on `admin.listen`: JSON in and out, bearer
//! token on everything but `/healthz`, errors as
//! `{"error":{"code","message"}}`. Every handler calls the same `ops`,
//! `store` and `delivery` functions as the CLI; nothing here implements an
//! operation of its own. One file per resource.

pub(crate) mod access;
mod api_keys;
mod audit;
mod auth;
mod chains;
mod deliveries;
mod endpoints;
mod error;
mod events;
mod health;
mod json;
mod merchants;
pub mod openapi;
mod payments;

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use hyper::server::conn::http1::Builder as ConnBuilder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

use crate::config::Config;
use crate::error::{AppError, AppResult};
use crate::store::{Page, Store};

pub use access::Access;
pub use auth::Auth;
pub use error::{status_of, ApiError};

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub cfg: Arc<Config>,
}

/// The API's routes behind the bearer check of `auth` (the console, which
/// shares `auth`, is mounted beside them by `crate::web`).
pub fn router(state: AppState, auth: Auth) -> Router {
    // Routes only the admin token may use: a merchant API key gets 403.
    let admin_only = Router::new()
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route(
            "/v1/merchants",
            post(merchants::create).get(merchants::list),
        )
        .route("/v1/payments", post(payments::create))
        .route("/v1/payments/{id}/detections", post(payments::detect))
        .route("/v1/chains", get(chains::list))
        .route("/v1/chains/{chain}/head", post(chains::set_head))
        .route("/v1/scans", post(chains::scan))
        .route("/v1/audit", get(audit::list))
        .route_layer(middleware::from_fn(access::require_admin));
    // Routes a merchant API key may use on its own merchant's objects.
    let scoped = Router::new()
        .route("/openapi.json", get(openapi::serve))
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
        .route(
            "/v1/merchants/{id}/api-keys",
            post(api_keys::create).get(api_keys::list),
        )
        .route("/v1/api-keys/{id}", axum::routing::delete(api_keys::revoke))
        .route(
            "/v1/merchants/{id}/endpoints",
            post(endpoints::create).get(endpoints::list),
        )
        .route(
            "/v1/endpoints/{id}",
            get(endpoints::show)
                .patch(endpoints::update)
                .delete(endpoints::delete),
        )
        .route(
            "/v1/endpoints/{id}/rotate-secret",
            post(endpoints::rotate_secret),
        )
        .route("/v1/endpoints/{id}/secret", get(endpoints::reveal_secret))
        .route("/v1/endpoints/{id}/test", post(endpoints::test))
        .route("/v1/endpoints/{id}/enable", post(endpoints::enable))
        .route("/v1/endpoints/{id}/disable", post(endpoints::disable))
        .route("/v1/endpoints/{id}/health", get(endpoints::health))
        .route("/v1/endpoints/{id}/recover", post(endpoints::recover))
        .route("/v1/payments/{id}", get(payments::show))
        .route("/v1/events/{id}", get(events::show))
        .route("/v1/events/{id}/replay", post(events::replay))
        .route("/v1/deliveries", get(deliveries::list))
        .route("/v1/deliveries/{id}", get(deliveries::show))
        .route("/v1/dead-letters", get(deliveries::dead_letters))
        .route(
            "/v1/dead-letters/resubmit",
            post(deliveries::resubmit_matching),
        )
        .route("/v1/dead-letters/{id}/resubmit", post(deliveries::resubmit));
    let api = admin_only
        .merge(scoped)
        .layer(middleware::from_fn_with_state(auth, auth::require_bearer));
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

/// Serves the API until `shutdown`, on a listener hardened against slow
/// and greedy clients: request headers must arrive within
/// [`HEADER_READ_TIMEOUT`], a request gets [`REQUEST_TIMEOUT`], bodies are
/// capped at [`MAX_BODY_BYTES`] (413), and at most [`max_connections`] are
/// open at once (more wait in the kernel's backlog), so idle connections
/// cannot take the file descriptors deliveries need.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> AppResult<()> {
    crate::metrics::install();
    let max = max_connections();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, max_connections = max, "admin API listening");
    }
    let app =
        app.layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(TimeoutLayer::with_status_code(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                REQUEST_TIMEOUT,
            ));
    let slots = Arc::new(Semaphore::new(max));
    let graceful = GracefulShutdown::new();
    let mut accept_failing = false;
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => match a {
                Ok((stream, _)) => stream,
                // Out of file descriptors, or the peer left: wait a moment.
                Err(e) => {
                    if !std::mem::replace(&mut accept_failing, true) {
                        tracing::warn!(error = %e, "admin API cannot accept connections; retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        accept_failing = false;
        let service = TowerToHyperService::new(app.clone());
        let conn = connection_builder().serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    // Requests under way get a few seconds to finish.
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
}

/// Request headers must arrive within this long (a slow client is cut off).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's whole handling (408 after it).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest request body accepted (413 above).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Open admin connections allowed: a quarter of the process's file
/// descriptors, between 16 and 1,024; the rest stay for deliveries.
pub fn max_connections() -> usize {
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    usize::try_from(soft / 4).unwrap_or(1024).clamp(16, 1024)
}

/// HTTP/1.1 only: a client must start sending headers at once (an
/// HTTP/2-detecting server would wait for the first bytes without a limit).
fn connection_builder() -> ConnBuilder {
    let mut b = ConnBuilder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    b
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
