//! Signing in and out of the console, and who is asking. A session is a
//! random id in an HttpOnly, SameSite=Strict cookie scoped to `/console`
//! (only its hash is stored, `store::sessions`); it carries the [`Access`]
//! of the admin token or merchant API key it was opened with, exactly as
//! the API's bearer check gives it, and a form token every POST must echo
//! (CSRF). The sign-in form itself is protected by a double-submit token.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::layout::{self, Viewer};
use super::ConsoleState;
use crate::admin::Access;
use crate::store::sessions;
use crate::time::now_ms;

const SESSION_COOKIE: &str = "payhook_session";
const LOGIN_COOKIE: &str = "payhook_login";
/// A session lasts this long from sign-in.
const SESSION_MS: i64 = 8 * 3600 * 1000;

fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The value of cookie `name`, if the request sent it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Whether the request reached us over TLS (a reverse proxy in front says
/// so with `X-Forwarded-Proto: https`): cookies are then `Secure`.
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age_secs: i64) -> HeaderValue {
    let secure = if over_tls(headers) { "; Secure" } else { "" };
    let text = format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    );
    HeaderValue::from_str(&text).expect("cookie text is ASCII")
}

/// A form posted from another site (another port of this host included,
/// which SameSite does not tell apart): its `Origin` is not this host.
/// Browsers send `Origin` on every POST; its absence is not refused (tools).
pub fn cross_origin(headers: &HeaderMap) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_none_or(|(_, authority)| !authority.eq_ignore_ascii_case(host)),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Every console page but the sign-in form: a live session, or a redirect
/// to sign in. The request then carries its [`Viewer`], and its audit rows
/// the same actor as the API gives the token.
pub async fn require_session(
    State(s): State<ConsoleState>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(id) = cookie(req.headers(), SESSION_COOKIE) else {
        return Redirect::to("/console/login").into_response();
    };
    let session = match sessions::find(&s.app.store, &id, now_ms()).await {
        Ok(Some(session)) => session,
        Ok(None) => return Redirect::to("/console/login").into_response(),
        Err(e) => return layout::app_error(e),
    };
    let access = match session.key {
        None => {
            // Opened with an admin token that is no longer the current one.
            let current = s.auth.admin_fingerprint();
            let same = session
                .admin_fingerprint
                .as_deref()
                .is_some_and(|fp| bool::from(fp.as_bytes().ct_eq(current.as_bytes())));
            if !same {
                return Redirect::to("/console/login").into_response();
            }
            Access::Admin
        }
        Some((key_id, merchant_id)) => Access::Merchant {
            key_id,
            merchant_id,
        },
    };
    if req.method() == axum::http::Method::POST && cross_origin(req.headers()) {
        return layout::error_page(
            StatusCode::FORBIDDEN,
            "This form was posted from another site; use the console itself.",
        );
    }
    let actor = access.actor();
    req.extensions_mut().insert(Viewer {
        access,
        csrf: session.csrf,
    });
    crate::store::audit::ACTOR.scope(actor, next.run(req)).await
}

/// `GET /console/login`.
pub async fn login_form(headers: HeaderMap) -> Response {
    let token = random_token();
    let page = layout::bare(
        "Sign in",
        html! {
            form.signin method="post" action="/console/login" {
                h1 { "payhook console" }
                p { "Sign in with the admin token, or with a merchant API key (phk_…) to see that merchant only." }
                label for="token" { "Admin token or API key" }
                input #token type="password" name="token" autocomplete="off" required;
                input type="hidden" name="csrf" value=(token);
                button type="submit" { "Sign in" }
            }
        },
    );
    let mut resp = page.into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&headers, LOGIN_COOKIE, &token, 600),
    );
    resp
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    csrf: String,
}

/// `POST /console/login`: the token is checked exactly as the API checks a
/// bearer token; a session is opened, and the token itself is kept nowhere.
pub async fn login(
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if cross_origin(&headers)
        || expected.is_empty()
        || !bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes()))
    {
        return layout::error_page(
            StatusCode::FORBIDDEN,
            "The sign-in form has expired; reload it and try again.",
        );
    }
    let access = match s.auth.access(form.token.trim()).await {
        Ok(a) => a,
        Err(_) => {
            return layout::error_page(
                StatusCode::UNAUTHORIZED,
                "That is neither the admin token nor a live API key.",
            )
        }
    };
    let (key_id, fingerprint) = match &access {
        Access::Admin => (None, Some(s.auth.admin_fingerprint())),
        Access::Merchant { key_id, .. } => (Some(key_id.as_str()), None),
    };
    let (id, csrf, now) = (random_token(), random_token(), now_ms());
    let opened = sessions::insert(
        &s.app.store,
        &id,
        key_id,
        fingerprint.as_deref(),
        &csrf,
        now,
        now + SESSION_MS,
    );
    if let Err(e) = opened.await {
        return layout::app_error(e);
    }
    let mut resp = Redirect::to("/console/overview").into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, &id, SESSION_MS / 1000),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(&headers, LOGIN_COOKIE, "", 0),
    );
    resp
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    pub csrf: String,
}

/// `POST /console/logout`.
pub async fn logout(
    State(s): State<ConsoleState>,
    axum::Extension(viewer): axum::Extension<Viewer>,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if let Some(refused) = viewer.refuse_forged(&form.csrf) {
        return refused;
    }
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        if let Err(e) = sessions::delete(&s.app.store, &id).await {
            return layout::app_error(e);
        }
    }
    let mut resp = Redirect::to("/console/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, "", 0),
    );
    resp
}
