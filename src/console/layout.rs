//! The page shell (navigation, who is signed in, sign-out), error pages and
//! small formatting helpers. Every value goes through maud, which escapes
//! it: a receiver's `<script>` is shown as text.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use crate::admin::Access;
use crate::error::AppError;
use subtle::ConstantTimeEq;

/// Who is looking at a console page, and the form token of their session.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub access: Access,
    pub csrf: String,
}

impl Viewer {
    pub fn is_admin(&self) -> bool {
        self.access == Access::Admin
    }

    /// The refusal of a form posted without this session's token (`None`
    /// when the token is right).
    pub fn refuse_forged(&self, given: &str) -> Option<Response> {
        if bool::from(given.as_bytes().ct_eq(self.csrf.as_bytes())) {
            None
        } else {
            Some(error_page(
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from this console; reload the page and try again.",
            ))
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · payhook" }
            link rel="stylesheet" href="/console/static/console.css";
            script src="/console/static/live.js" defer {}
        }
    }
}

/// A page without navigation (sign-in, errors).
pub fn bare(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body.bare { main { (body) } }
            }
        }
        .into_string(),
    )
}

/// A console page: navigation for what the viewer may see, then `body`.
pub fn page(viewer: &Viewer, title: &str, body: Markup) -> Response {
    let who = match &viewer.access {
        Access::Admin => "admin".to_string(),
        Access::Merchant {
            key_id,
            merchant_id,
        } => format!("{key_id} ({merchant_id})"),
    };
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body {
                    header {
                        a.brand href="/console/overview" { "payhook" }
                        nav {
                            a href="/console/overview" { "Overview" }
                            a href="/console/merchants" { "Merchants" }
                            a href="/console/deliveries" { "Deliveries" }
                            a href="/console/dlq" { "Dead letters " span.badge data-live="dlq_open" {} }
                            a href="/console/payments" { "Payments" }
                            @if viewer.is_admin() { a href="/console/audit" { "Audit log" } }
                        }
                        form.signout method="post" action="/console/logout" {
                            span.who { (who) }
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                    main { h1 { (title) } (body) }
                }
            }
        }
        .into_string(),
    )
    .into_response()
}

pub fn error_page(status: StatusCode, message: &str) -> Response {
    let body = html! {
        h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
        p.error { (message) }
        p { a href="/console/overview" { "Back to the console" } }
    };
    (status, bare("Error", body)).into_response()
}

/// An operation's error as a page with the API's status for it.
pub fn app_error(e: AppError) -> Response {
    let status = crate::admin::status_of(e.kind);
    if status.is_server_error() {
        tracing::error!(error = %e, "console request failed");
    }
    error_page(status, &e.message)
}

/// Unix ms as RFC 3339 (empty for none).
pub fn time(ms: Option<i64>) -> String {
    ms.map(crate::time::rfc3339).unwrap_or_default()
}

/// A status word as a coloured label.
pub fn badge(word: &str) -> Markup {
    html! { span class={ "badge " (word) } { (word) } }
}

/// The hidden form token every console form carries.
pub fn csrf(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}

/// A result page after an action, with a link back.
pub fn done(viewer: &Viewer, title: &str, message: Markup, back: &str) -> Response {
    page(
        viewer,
        title,
        html! {
            div.notice { (message) }
            p { a href=(back) { "Back" } }
        },
    )
}

/// Filters as a query string, the empty ones left out (for a next page's
/// link, so paging keeps the filters).
pub fn query_string(pairs: &[(&str, &Option<String>)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = given(v) {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

/// A form or query field as given: trimmed, empty meaning absent.
pub fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}
