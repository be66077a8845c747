//! `/console/payments`: find a payment by reference or transaction hash (or
//! browse the newest), and a payment's state with its event timeline.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Extension;
use maud::html;
use serde::Deserialize;

use super::layout::Viewer;
use super::layout::{self, badge, given, page, time};
use super::ConsoleState;
use crate::admin::access::Confined;
use crate::error::AppResult;
use crate::ids::{MerchantId, PaymentId};
use crate::store::{events, payments, Page};

#[derive(Debug, Default, Deserialize)]
pub struct PaymentQuery {
    merchant_id: Option<String>,
    reference: Option<String>,
    tx_hash: Option<String>,
    cursor: Option<String>,
}

pub async fn list(
    State(s): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<PaymentQuery>,
) -> Response {
    let run = async {
        let page_ = Page::new(Some(50), given(&q.cursor).map(str::to_string))?;
        let rows = match viewer
            .access
            .confine(given(&q.merchant_id).map(MerchantId::from))
        {
            Confined::Nothing => vec![],
            Confined::To(merchant_id) => {
                let search = payments::Search {
                    merchant_id,
                    reference: given(&q.reference).map(str::to_string),
                    tx_hash: given(&q.tx_hash).map(str::to_string),
                };
                payments::search(&s.app.store, &search, &page_).await?
            }
        };
        AppResult::Ok(rows)
    };
    let rows = match run.await {
        Ok(r) => r,
        Err(e) => return layout::app_error(e),
    };
    let v = |o: &Option<String>| given(o).unwrap_or("").to_string();
    page(
        &viewer,
        "Payments",
        html! {
            form.filters method="get" action="/console/payments" {
                @if viewer.is_admin() { label { "merchant " input name="merchant_id" value=(v(&q.merchant_id)) placeholder="mer_…"; } }
                label { "reference " input name="reference" value=(v(&q.reference)); }
                label { "tx hash " input name="tx_hash" value=(v(&q.tx_hash)) placeholder="0x…"; }
                button type="submit" { "Find" }
            }
            table {
                thead { tr { th { "payment" } th { "reference" } th { "status" } th { "chain" } th { "expected" } th { "received" } th { "created" } } }
                tbody {
                    @for p in &rows {
                        tr {
                            td { a href={ "/console/payments/" (p.id) } { (p.id) } }
                            td { (p.reference) }
                            td { (badge(p.status.as_str())) }
                            td { (p.chain) " " (p.token.clone().unwrap_or_default()) }
                            td { (p.expected_amount) }
                            td { (p.received_amount.clone().unwrap_or_default()) }
                            td { (time(Some(p.created_at))) }
                        }
                    }
                }
            }
            @if rows.len() == 50 { @if let Some(last) = rows.last() { p { a href={ "/console/payments?" (layout::query_string(&[("merchant_id", &q.merchant_id), ("reference", &q.reference), ("tx_hash", &q.tx_hash)])) "&cursor=" (last.id) } { "Older →" } } } }
        },
    )
}

pub async fn show(
    State(s): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<PaymentId>,
) -> Response {
    let run = async {
        let p = payments::get(&s.app.store, &id).await?;
        viewer
            .access
            .may_see(&p.merchant_id, "payment", id.as_str())?;
        let evs = events::list_for_payment(&s.app.store, &id).await?;
        AppResult::Ok((p, evs))
    };
    let (p, evs) = match run.await {
        Ok(v) => v,
        Err(e) => return layout::app_error(e),
    };
    page(
        &viewer,
        &format!("Payment {}", p.reference),
        html! {
            table.settings {
                tr { th { "id" } td { (p.id) } }
                tr { th { "merchant" } td { (p.merchant_id) } }
                tr { th { "status" } td { (badge(p.status.as_str())) } }
                tr { th { "chain / token" } td { (p.chain) " " (p.token.clone().unwrap_or_default()) } }
                tr { th { "address" } td { code { (p.address) } } }
                tr { th { "expected / received" } td { (p.expected_amount) " / " (p.received_amount.clone().unwrap_or_default()) } }
                tr { th { "transaction" } td { code { (p.tx_hash.clone().unwrap_or_default()) } " block " (p.block_number.map(|b| b.to_string()).unwrap_or_default()) } }
                tr { th { "detected / confirmed" } td { (time(p.detected_at)) " / " (time(p.confirmed_at)) } }
                tr { th { "callback_url" } td { (p.callback_url.as_deref().map(crate::urls::redact_url).unwrap_or_default()) } }
            }
            h2 { "Events" }
            ol.timeline {
                @for e in &evs {
                    li { (time(Some(e.created_at))) " " strong { (e.kind) } " " code { (e.id) } " · "
                         a href={ "/console/deliveries?payment_id=" (p.id) "&event_type=" (e.kind) } { "its deliveries" } }
                }
            }
            @if evs.is_empty() { p.muted { "No event yet." } }
        },
    )
}
