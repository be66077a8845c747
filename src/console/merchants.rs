//! `/console/merchants…` and `/console/endpoints/{id}…`: merchants, their
//! endpoints with health and settings, and the endpoint actions (test event,
//! rotate and reveal the secret, enable, disable, recover since a time).
//! Every action goes through the same `ops::endpoints` call as the API.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::html;
use serde::Deserialize;

use super::layout::Viewer;
use super::layout::{self, badge, csrf, page, time};
use super::ConsoleState;
use crate::admin::Access;
use crate::error::AppResult;
use crate::ids::{EndpointId, MerchantId};
use crate::ops::endpoints::{self as ops, AuditAs};
use crate::store::endpoints::{self, Endpoint};
use crate::store::{merchants, Page};

#[derive(Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
}

pub async fn list(
    State(s): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Access::Merchant { merchant_id, .. } = &viewer.access {
        return Redirect::to(&format!("/console/merchants/{merchant_id}")).into_response();
    }
    let page_ = match Page::new(Some(50), q.cursor) {
        Ok(p) => p,
        Err(e) => return layout::app_error(e),
    };
    let rows = match merchants::list(&s.app.store, &page_).await {
        Ok(r) => r,
        Err(e) => return layout::app_error(e),
    };
    let next = (rows.len() as i64 == page_.limit).then(|| rows.last().map(|m| m.id.to_string()));
    page(
        &viewer,
        "Merchants",
        html! {
            table {
                thead { tr { th { "id" } th { "name" } th { "primary endpoint" } th { "status" } th { "created" } } }
                tbody {
                    @for m in &rows {
                        tr {
                            td { a href={ "/console/merchants/" (m.id) } { (m.id) } }
                            td { (m.name) }
                            td { (m.webhook_url.as_deref().map(crate::urls::redact_url).unwrap_or_default()) }
                            td { (badge(m.status.as_str())) }
                            td { (time(Some(m.created_at))) }
                        }
                    }
                }
            }
            @if let Some(Some(cursor)) = next { p { a href={ "/console/merchants?cursor=" (cursor) } { "Next page →" } } }
        },
    )
}

pub async fn show(
    State(s): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<MerchantId>,
) -> Response {
    if let Err(e) = viewer.access.may_see(&id, "merchant", id.as_str()) {
        return layout::app_error(e);
    }
    let store = &s.app.store;
    let loaded = async {
        let m = merchants::get(store, &id).await?;
        let eps = endpoints::list(store, &id, &Page::new(Some(Page::MAX), None)?).await?;
        let mut rows = Vec::new();
        for ep in eps {
            let health = ops::health(store, &s.app.cfg, &ep.id).await?;
            rows.push((ep, health));
        }
        AppResult::Ok((m, rows))
    };
    let (m, rows) = match loaded.await {
        Ok(v) => v,
        Err(e) => return layout::app_error(e),
    };
    page(
        &viewer,
        &format!("Merchant {}", m.name),
        html! {
            p.muted { (m.id) " · created " (time(Some(m.created_at))) }
            h2 { "Endpoints" }
            table {
                thead { tr { th { "endpoint" } th { "URL" } th { "status" } th { "circuit" } th { "last success" } th { "24 h success" } th { "events" } } }
                tbody {
                    @for (ep, h) in &rows {
                        tr {
                            td { a href={ "/console/endpoints/" (ep.id) } { (ep.id) }
                                 @if Some(&ep.id) == m.endpoint_id.as_ref() { " " span.badge.primary { "primary" } } }
                            td { (crate::urls::redact_url(&ep.url)) @if let Some(d) = &ep.description { br; span.muted { (d) } } }
                            td { (badge(ep.status.as_str())) }
                            td { (badge(h.circuit)) }
                            td { (time(h.last_success_at)) }
                            td { (h.success_ratio_24h.map(|r| format!("{:.1} % of {}", r * 100.0, h.attempts_24h)).unwrap_or_else(|| "no attempts".into())) }
                            td { (ep.event_types.as_deref().unwrap_or("all")) }
                        }
                    }
                }
            }
            p { a href={ "/console/deliveries?merchant_id=" (m.id) } { "Deliveries of this merchant →" } }
        },
    )
}

async fn visible(s: &ConsoleState, viewer: &Viewer, id: &EndpointId) -> AppResult<Endpoint> {
    let ep = endpoints::get(&s.app.store, id).await?;
    viewer
        .access
        .may_see(&ep.merchant_id, "endpoint", id.as_str())?;
    Ok(ep)
}

pub async fn endpoint(
    State(s): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<EndpointId>,
) -> Response {
    let loaded = async {
        let ep = visible(&s, &viewer, &id).await?;
        let h = ops::health(&s.app.store, &s.app.cfg, &id).await?;
        AppResult::Ok((ep, h))
    };
    let (ep, h) = match loaded.await {
        Ok(v) => v,
        Err(e) => return layout::app_error(e),
    };
    let action = |verb: &str| format!("/console/endpoints/{}/{verb}", ep.id);
    let day_ago = crate::time::rfc3339(crate::time::now_ms() - 86_400_000);
    page(
        &viewer,
        &format!("Endpoint {}", ep.id),
        html! {
            p { a href={ "/console/merchants/" (ep.merchant_id) } { "← merchant " (ep.merchant_id) } }
            section.cards {
                div.card { h2 { "Status" } p.big { (badge(ep.status.as_str())) } p { (ep.disabled_reason.clone().unwrap_or_default()) } }
                div.card { h2 { "Circuit" } p.big { (badge(h.circuit)) } p { (h.failures_in_a_row) " failures in a row" } }
                div.card { h2 { "Last success" } p { (time(h.last_success_at)) } h2 { "Failing since" } p { (time(h.failing_since)) } }
                div.card { h2 { "Last 24 h" } p.big { (h.success_ratio_24h.map(|r| format!("{:.1} %", r * 100.0)).unwrap_or_else(|| "—".into())) } p { (h.succeeded_24h) " of " (h.attempts_24h) " attempts succeeded" } }
            }
            h2 { "Settings" }
            table.settings {
                tr { th { "URL" } td { (crate::urls::redact_url(&ep.url)) } }
                tr { th { "description" } td { (ep.description.clone().unwrap_or_default()) } }
                tr { th { "signature scheme" } td { (ep.signature_scheme.as_str()) @if let Some(hdr) = &ep.signature_header { " (" (hdr) ": " (ep.signature_prefix.clone().unwrap_or_default()) "…)" } } }
                tr { th { "extra headers" } td { (ep.header_names.join(", ")) } }
                tr { th { "event types" } td { (ep.event_types.as_deref().unwrap_or("all")) } }
                tr { th { "rate limit" } td { (ep.rate_limit_per_sec.map(|r| format!("{r}/s")).unwrap_or_else(|| "default".into())) } }
                tr { th { "previous secret signs until" } td { (time(ep.previous_secret_expires_at)) } }
                tr { th { "created" } td { (time(Some(ep.created_at))) } }
            }
            h2 { "Actions" }
            div.actions {
                form method="post" action=(action("test")) { (csrf(&viewer)) button #send-test type="submit" { "Send test event" } }
                form method="post" action=(action("reveal")) { (csrf(&viewer)) button #reveal type="submit" { "Reveal secret" } }
                form method="post" action=(action("rotate")) {
                    (csrf(&viewer))
                    label { "overlap " input name="overlap" value="24h" size="6"; }
                    button #rotate type="submit" { "Rotate secret" }
                }
                @if ep.status.as_str() == "active" {
                    form method="post" action=(action("disable")) { (csrf(&viewer)) button #disable type="submit" { "Disable" } }
                } @else {
                    form method="post" action=(action("enable")) { (csrf(&viewer)) button #enable type="submit" { "Enable" } }
                }
                form method="post" action=(action("recover")) {
                    (csrf(&viewer))
                    label { "dead since " input name="since" value=(day_ago) size="22"; }
                    button #recover type="submit" { "Recover" }
                }
            }
            p { a href={ "/console/deliveries?endpoint_id=" (ep.id) } { "Deliveries to this endpoint →" } " · "
                a href={ "/console/dlq?endpoint_id=" (ep.id) } { "Its dead letters →" } }
        },
    )
}

#[derive(Deserialize)]
pub struct ActionForm {
    csrf: String,
    overlap: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

/// `POST /console/endpoints/{id}/{test|reveal|rotate|enable|disable|recover}`.
pub async fn act(
    State(s): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Path((id, verb)): Path<(EndpointId, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refused) = viewer.refuse_forged(&form.csrf) {
        return refused;
    }
    let back = format!("/console/endpoints/{id}");
    match run(&s, &viewer, &id, &verb, form).await {
        Ok(message) => layout::done(&viewer, "Done", message, &back),
        Err(e) => layout::app_error(e),
    }
}

async fn run(
    s: &ConsoleState,
    viewer: &Viewer,
    id: &EndpointId,
    verb: &str,
    form: ActionForm,
) -> AppResult<maud::Markup> {
    visible(s, viewer, id).await?;
    let store = &s.app.store;
    Ok(match verb {
        "test" => {
            let (event, delivery) = ops::send_test(store, id, AuditAs::Endpoint).await?;
            html! { "Queued webhook.test " code { (event) } @if let Some(d) = delivery { " as delivery " a href={ "/console/deliveries/" (d) } { (d) } } "." }
        }
        "reveal" => {
            let r = ops::reveal_secret(store, id).await?;
            html! {
                p { "Signing secret of " (id) " (this reveal is in the audit log):" }
                pre.secret #secret { (r.secret.expose()) }
                @if let Some(prev) = &r.previous_secret { p { "Previous secret, signing until " (time(r.previous_secret_expires_at)) ":" } pre.secret { (prev.expose()) } }
            }
        }
        "rotate" => {
            let overlap =
                ops::parse_overlap(form.overlap.as_deref().filter(|o| !o.trim().is_empty()))?;
            let rotated = ops::rotate_secret(store, id, overlap, AuditAs::Endpoint).await?;
            html! {
                p { "New signing secret (shown only now):" }
                pre.secret #secret { (rotated.secret.expose()) }
                p { "The previous secret keeps signing until " (time(rotated.endpoint.previous_secret_expires_at)) "." }
            }
        }
        "enable" => {
            ops::enable(store, id, AuditAs::Endpoint).await?;
            html! { (id) " is enabled; its waiting deliveries go out now." }
        }
        "disable" => {
            ops::disable(store, id).await?;
            html! { (id) " is disabled; its deliveries wait until it is enabled." }
        }
        "recover" => {
            let since =
                crate::time::parse_rfc3339("since", form.since.as_deref().unwrap_or("").trim())?;
            let until = crate::time::parse_optional_rfc3339(
                "until",
                form.until.as_deref().filter(|u| !u.trim().is_empty()),
            )?;
            let n = ops::recover(store, id, since, until).await?;
            html! { "Resubmitted " span #count { (n) } " dead letters of " (id) "." }
        }
        other => {
            return Err(crate::error::AppError::not_found("console action", other));
        }
    })
}
