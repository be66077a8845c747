//! `GET /console`: the web console for people, served by `payhook serve` on
//! `admin.listen` (SPEC §9). Server-rendered HTML (maud templates, checked
//! at compile time), one stylesheet and one small script served from the
//! binary, a strict Content-Security-Policy. Access is the API's: the same
//! [`crate::admin::Access`] from the same token check, the same `may_see`
//! and `confine`, the same `ops` calls, so the same audit rows.

mod audit;
mod chart;
mod deliveries;
mod dlq;
mod layout;
mod merchants;
mod overview;
mod payments;
mod session;

use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::admin::{AppState, Auth};

/// What console handlers need: the API's state and its token check.
#[derive(Clone)]
pub struct ConsoleState {
    pub app: AppState,
    pub auth: Auth,
}

const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("static/console.css");
const LIVE_JS: &str = include_str!("static/live.js");

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

async fn live_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        LIVE_JS,
    )
        .into_response()
}

async fn not_found() -> Response {
    layout::error_page(
        axum::http::StatusCode::NOT_FOUND,
        "There is no such console page.",
    )
}

/// Headers on every console response: the CSP, no sniffing, no framing,
/// no caching of pages that show secrets, no referrer to other sites.
async fn harden(req: axum::extract::Request, next: middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (k, v) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        // Not `no-referrer`: with it, browsers send `Origin: null` on our own
        // forms, and the origin check (session.rs) needs the real one.
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    resp
}

pub fn router(state: ConsoleState) -> Router {
    let signed_in = Router::new()
        .route("/console/overview", get(overview::show))
        .route("/console/live", get(overview::live))
        .route("/console/logout", post(session::logout))
        .route("/console/merchants", get(merchants::list))
        .route("/console/merchants/{id}", get(merchants::show))
        .route("/console/endpoints/{id}", get(merchants::endpoint))
        .route("/console/endpoints/{id}/{verb}", post(merchants::act))
        .route("/console/deliveries", get(deliveries::list))
        .route("/console/deliveries/{id}", get(deliveries::show))
        .route("/console/events/{id}/replay", post(deliveries::replay))
        .route("/console/dlq", get(dlq::list))
        .route("/console/dlq/preview", post(dlq::preview))
        .route("/console/dlq/resubmit", post(dlq::resubmit_all))
        .route("/console/dlq/{id}/resubmit", post(deliveries::resubmit))
        .route("/console/payments", get(payments::list))
        .route("/console/payments/{id}", get(payments::show))
        .route("/console/audit", get(audit::list))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            session::require_session,
        ));
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::to("/console/overview") }),
        )
        .route(
            "/console/",
            get(|| async { Redirect::to("/console/overview") }),
        )
        .route(
            "/console/login",
            get(session::login_form).post(session::login),
        )
        .route("/console/static/console.css", get(css))
        .route("/console/static/live.js", get(live_js))
        .route("/console/{*rest}", axum::routing::any(not_found))
        .merge(signed_in)
        .layer(middleware::from_fn(harden))
        .with_state(state)
}
