//! `/console/deliveries`: the delivery log with the filters of SPEC §7
//! (plus a payment's reference or transaction hash) and keyset paging; a
//! delivery's page with the request as sent and every attempt's answer;
//! replay and resubmit.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::{Extension, Form};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::Viewer;
use super::layout::{self, badge, csrf, given, page, time};
use super::session::CsrfOnly;
use super::ConsoleState;
use crate::admin::access::Confined;
use crate::domain::DeliveryStatus;
use crate::error::AppResult;
use crate::events::EventType;
use crate::ids::{DeadLetterId, DeliveryId, EndpointId, EventId, MerchantId, PaymentId};
use crate::store::deliveries::{self, Filter};
use crate::store::{dead_letters, events, payments, Page};

/// The log's filters as the form sends them (empty fields are absent).
#[derive(Debug, Default, Deserialize)]
pub struct LogQuery {
    status: Option<String>,
    merchant_id: Option<String>,
    endpoint_id: Option<String>,
    event_type: Option<String>,
    payment_id: Option<String>,
    reference: Option<String>,
    tx_hash: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
}

impl LogQuery {
    /// The query string of these filters (for the next page's link).
    fn query_string(&self) -> String {
        let pairs = [
            ("status", &self.status),
            ("merchant_id", &self.merchant_id),
            ("endpoint_id", &self.endpoint_id),
            ("event_type", &self.event_type),
            ("payment_id", &self.payment_id),
            ("reference", &self.reference),
            ("tx_hash", &self.tx_hash),
            ("since", &self.since),
            ("until", &self.until),
        ];
        layout::query_string(&pairs)
    }
}

/// A payment named by reference or transaction hash, within what the
/// viewer may see (the newest if several match).
async fn payment_named(
    s: &ConsoleState,
    merchant: Option<&MerchantId>,
    q: &LogQuery,
) -> AppResult<Option<Option<PaymentId>>> {
    if given(&q.reference).is_none() && given(&q.tx_hash).is_none() {
        return Ok(None);
    }
    let search = payments::Search {
        merchant_id: merchant.cloned(),
        reference: given(&q.reference).map(str::to_string),
        tx_hash: given(&q.tx_hash).map(str::to_string),
    };
    let found = payments::search(&s.app.store, &search, &Page::new(Some(2), None)?).await?;
    if found.len() > 1 {
        return Err(crate::error::AppError::bad_input(
            "reference/tx_hash: matches payments of several merchants; give merchant_id too, \
             or pick the payment on the Payments page",
        ));
    }
    Ok(Some(found.into_iter().next().map(|p| p.id)))
}

pub async fn list(
    State(s): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<LogQuery>,
) -> Response {
    match render_list(&s, &viewer, q).await {
        Ok(r) => r,
        Err(e) => layout::app_error(e),
    }
}

async fn render_list(s: &ConsoleState, viewer: &Viewer, q: LogQuery) -> AppResult<Response> {
    let page_ = Page::new(Some(50), given(&q.cursor).map(str::to_string))?;
    let asked = given(&q.merchant_id).map(MerchantId::from);
    let (merchant, nothing) = match viewer.access.confine(asked) {
        Confined::To(m) => (m, false),
        Confined::Nothing => (None, true),
    };
    let named = payment_named(s, merchant.as_ref(), &q).await?;
    let filter = Filter {
        status: given(&q.status)
            .map(|v| DeliveryStatus::parse("status", v))
            .transpose()?,
        merchant_id: merchant.clone(),
        endpoint_id: given(&q.endpoint_id).map(EndpointId::from),
        event_id: None,
        event_type: given(&q.event_type)
            .map(|v| EventType::parse("event_type", v))
            .transpose()?,
        payment_id: match &named {
            Some(found) => found.clone(),
            None => given(&q.payment_id).map(PaymentId::from),
        },
        since: crate::time::parse_optional_rfc3339("since", given(&q.since))?,
        until: crate::time::parse_optional_rfc3339("until", given(&q.until))?,
    };
    // A reference or hash that names no payment the viewer may see: nothing.
    let rows = if nothing || matches!(named, Some(None)) {
        vec![]
    } else {
        deliveries::list(&s.app.store, &filter, &page_).await?
    };
    let next = (rows.len() as i64 == page_.limit)
        .then(|| rows.last().map(|d| d.id.to_string()))
        .flatten();
    let body = html! {
        (filters_form(viewer, &q))
        table #deliveries {
            thead { tr { th { "delivery" } th { "created" } th { "status" } th { "attempts" } th { "last code" } th { "endpoint" } th { "URL" } } }
            tbody {
                @for d in &rows {
                    tr {
                        td { a href={ "/console/deliveries/" (d.id) } { (d.id) } }
                        td { (time(Some(d.created_at))) }
                        td { (badge(d.status.as_str())) }
                        td { (d.attempts) }
                        td { (d.last_status_code.map(|c| c.to_string()).unwrap_or_default()) }
                        td { (d.endpoint_id.as_ref().map(|e| e.to_string()).unwrap_or_else(|| "callback_url".into())) }
                        td { (crate::urls::redact_url(&d.url)) }
                    }
                }
            }
        }
        @if rows.is_empty() { p.muted #empty { "No delivery matches these filters." } }
        @if let Some(cursor) = next {
            p { a #next href={ "/console/deliveries?" (q.query_string()) "&cursor=" (cursor) } { "Older →" } }
        }
    };
    Ok(page(viewer, "Deliveries", body))
}

fn filters_form(viewer: &Viewer, q: &LogQuery) -> Markup {
    let v = |o: &Option<String>| given(o).unwrap_or("").to_string();
    html! {
        form.filters method="get" action="/console/deliveries" {
            label { "status " select name="status" {
                option value="" { "any" }
                @for st in ["pending", "succeeded", "dead"] {
                    option value=(st) selected[given(&q.status) == Some(st)] { (st) }
                }
            } }
            @if viewer.is_admin() { label { "merchant " input name="merchant_id" value=(v(&q.merchant_id)) placeholder="mer_…"; } }
            label { "endpoint " input name="endpoint_id" value=(v(&q.endpoint_id)) placeholder="ep_…"; }
            label { "event type " select name="event_type" {
                option value="" { "any" }
                @for t in EventType::ALL {
                    option value=(t.as_str()) selected[given(&q.event_type) == Some(t.as_str())] { (t.as_str()) }
                }
            } }
            label { "payment " input name="payment_id" value=(v(&q.payment_id)) placeholder="pay_…"; }
            label { "reference " input name="reference" value=(v(&q.reference)); }
            label { "tx hash " input name="tx_hash" value=(v(&q.tx_hash)) placeholder="0x…"; }
            label { "since " input name="since" value=(v(&q.since)) placeholder="2026-11-29T00:00:00Z"; }
            label { "until " input name="until" value=(v(&q.until)); }
            button #filter type="submit" { "Filter" }
        }
    }
}

pub async fn show(
    State(s): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<DeliveryId>,
) -> Response {
    match render_one(&s, &viewer, &id).await {
        Ok(r) => r,
        Err(e) => layout::app_error(e),
    }
}

async fn render_one(s: &ConsoleState, viewer: &Viewer, id: &DeliveryId) -> AppResult<Response> {
    let store = &s.app.store;
    let d = deliveries::get(store, id).await?;
    viewer
        .access
        .may_see(&d.merchant_id, "delivery", id.as_str())?;
    let attempts = deliveries::attempts(store, id).await?;
    let event = events::get(store, &d.event_id).await?;
    let dead = dead_letters::of_delivery(store, id).await?;
    // The endpoint that signs (its current settings): a callback_url is
    // signed by the merchant's primary endpoint.
    let signer = match &d.endpoint_id {
        Some(e) => crate::store::endpoints::find(store, e).await?,
        None => match crate::store::merchants::get(store, &d.merchant_id)
            .await?
            .endpoint_id
        {
            Some(p) => crate::store::endpoints::find(store, &p).await?,
            None => None,
        },
    };
    let request_headers = |started_at: i64| -> Vec<(String, String)> {
        let ts = (started_at / 1000).to_string();
        let mut h: Vec<(String, String)> = vec![
            ("content-type".into(), "application/json".into()),
            (
                "user-agent".into(),
                crate::delivery::sender::USER_AGENT.into(),
            ),
            ("webhook-id".into(), d.event_id.to_string()),
            ("webhook-timestamp".into(), ts),
        ];
        // Signatures are not stored: shown shortened, as their form.
        match &signer {
            Some(ep) if ep.signature_scheme == crate::domain::SignatureScheme::Hex => {
                let format = crate::delivery::signer::HexFormat::new(
                    ep.signature_header.as_deref(),
                    ep.signature_prefix.as_deref(),
                );
                let value = format!("{}… (hex HMAC-SHA256, not stored)", format.prefix);
                h.push((format.header.to_string(), value));
            }
            _ => h.push((
                "webhook-signature".into(),
                "v1,… (HMAC-SHA256, not stored)".into(),
            )),
        }
        for name in signer.iter().flat_map(|ep| &ep.header_names) {
            h.push((name.clone(), "(value hidden)".into()));
        }
        h
    };
    let body = html! {
        table.settings {
            tr { th { "status" } td { (badge(d.status.as_str())) } }
            tr { th { "event" } td { code #event-id { (d.event_id) } " · " (event.kind) } }
            tr { th { "merchant" } td { (d.merchant_id) } }
            tr { th { "endpoint" } td { @if let Some(e) = &d.endpoint_id { a href={ "/console/endpoints/" (e) } { (e) } } @else { "the payment's callback_url" } } }
            tr { th { "URL" } td { (crate::urls::redact_url(&d.url)) } }
            tr { th { "created" } td { (time(Some(d.created_at))) } }
            tr { th { "next attempt" } td { (time(d.next_attempt_at)) } }
            @if let Some(p) = &event.payment_id { tr { th { "payment" } td { a href={ "/console/payments/" (p) } { (p) } } } }
        }
        div.actions {
            form method="post" action={ "/console/events/" (d.event_id) "/replay" } { (csrf(viewer)) button #replay type="submit" { "Replay event" } }
            @if let Some(dl) = &dead {
                @if dl.resubmitted_at.is_none() {
                    form method="post" action={ "/console/dlq/" (dl.id) "/resubmit" } { (csrf(viewer)) button #resubmit type="submit" { "Resubmit" } }
                } @else {
                    p.muted { "Resubmitted " (time(dl.resubmitted_at)) " as " @if let Some(n) = &dl.resubmitted_delivery_id { a href={ "/console/deliveries/" (n) } { (n) } } }
                }
            }
        }
        h2 { "Body (exactly as sent)" }
        pre.body #body { (event.payload) }
        h2 { "Attempts" }
        @if attempts.is_empty() { p.muted { "No attempt yet." } }
        @for a in &attempts {
            section.attempt {
                h3 { "Attempt " (a.attempt) " · " (time(Some(a.started_at))) " · " (a.duration_ms) " ms · "
                     @if let Some(code) = a.status_code { span.code { (code) } } @else { "no response" }
                     @if let Some(k) = &a.error_kind { " · " (badge(k.as_str())) } }
                @if let Some(err) = &a.error { p.error { (err) } }
                details {
                    summary { "Request headers" }
                    table.headers { @for (k, v) in request_headers(a.started_at) { tr { th { (k) } td { (v) } } } }
                }
                h4 { "Response body (first bytes)" }
                pre.response { (a.response_body.clone().unwrap_or_default()) }
            }
        }
    };
    Ok(page(viewer, &format!("Delivery {id}"), body))
}

/// `POST /console/events/{id}/replay`.
pub async fn replay(
    State(s): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<EventId>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if let Some(refused) = viewer.refuse_forged(&form.csrf) {
        return refused;
    }
    let run = async {
        let event = events::get(&s.app.store, &id).await?;
        viewer
            .access
            .may_see(&event.merchant_id, "event", id.as_str())?;
        crate::delivery::dlq::replay(&s.app.store, &id).await
    };
    match run.await {
        Ok(made) => layout::done(
            &viewer,
            "Replayed",
            html! { "Event " (id) " goes out again as " @for d in &made { a href={ "/console/deliveries/" (d) } { (d) } " " } },
            "/console/deliveries",
        ),
        Err(e) => layout::app_error(e),
    }
}

/// `POST /console/dlq/{id}/resubmit`.
pub async fn resubmit(
    State(s): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<DeadLetterId>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if let Some(refused) = viewer.refuse_forged(&form.csrf) {
        return refused;
    }
    let run = async {
        let row = dead_letters::get(&s.app.store, &id).await?;
        viewer
            .access
            .may_see(&row.merchant_id, "dead letter", id.as_str())?;
        crate::delivery::dlq::resubmit(&s.app.store, &id).await
    };
    match run.await {
        Ok(d) => layout::done(
            &viewer,
            "Resubmitted",
            html! { "Dead letter " (id) " goes out again as delivery " a #new-delivery href={ "/console/deliveries/" (d) } { (d) } "." },
            "/console/dlq",
        ),
        Err(e) => layout::app_error(e),
    }
}
