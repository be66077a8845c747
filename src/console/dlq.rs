//! `/console/dlq`: dead letters with filters, resubmit one, and bulk
//! resubmit by the current filter, which first shows how many it will take
//! and then resubmits exactly those (not ones that died meanwhile).

use axum::extract::{Query, State};
use axum::response::Response;
use axum::{Extension, Form};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::Viewer;
use super::layout::{self, badge, csrf, given, page, time};
use super::ConsoleState;
use crate::admin::access::Confined;
use crate::domain::DeadReason;
use crate::error::AppResult;
use crate::ids::{EndpointId, MerchantId};
use crate::store::dead_letters::{self, Filter};
use crate::store::Page;

#[derive(Debug, Default, Deserialize)]
pub struct DlqQuery {
    merchant_id: Option<String>,
    endpoint_id: Option<String>,
    reason: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    /// Bulk resubmission: the form token, and (to confirm) the count shown.
    csrf: Option<String>,
    expected: Option<i64>,
    /// Dead before this time (ms): what the preview counted.
    dead_before: Option<i64>,
}

/// The filter as the viewer may use it; `None` when a key asked for
/// another merchant's rows (nothing matches).
fn filter_of(viewer: &Viewer, q: &DlqQuery) -> AppResult<Option<Filter>> {
    let merchant_id = match viewer
        .access
        .confine(given(&q.merchant_id).map(MerchantId::from))
    {
        Confined::To(m) => m,
        Confined::Nothing => return Ok(None),
    };
    Ok(Some(Filter {
        merchant_id,
        endpoint_id: given(&q.endpoint_id).map(EndpointId::from),
        reason: given(&q.reason)
            .map(|r| DeadReason::parse("reason", r))
            .transpose()?,
        since: crate::time::parse_optional_rfc3339("since", given(&q.since))?,
        until: crate::time::parse_optional_rfc3339("until", given(&q.until))?,
        unresubmitted_only: false,
    }))
}

/// The filters as a query string (for the next page's link).
fn query_string(q: &DlqQuery) -> String {
    layout::query_string(&[
        ("merchant_id", &q.merchant_id),
        ("endpoint_id", &q.endpoint_id),
        ("reason", &q.reason),
        ("since", &q.since),
        ("until", &q.until),
    ])
}

fn hidden_filters(q: &DlqQuery) -> Markup {
    html! {
        @for (k, v) in [("merchant_id", &q.merchant_id), ("endpoint_id", &q.endpoint_id), ("reason", &q.reason), ("since", &q.since), ("until", &q.until)] {
            @if let Some(v) = given(v) { input type="hidden" name=(k) value=(v); }
        }
    }
}

pub async fn list(
    State(s): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<DlqQuery>,
) -> Response {
    match render(&s, &viewer, &q).await {
        Ok(r) => r,
        Err(e) => layout::app_error(e),
    }
}

async fn render(s: &ConsoleState, viewer: &Viewer, q: &DlqQuery) -> AppResult<Response> {
    let page_ = Page::new(Some(50), given(&q.cursor).map(str::to_string))?;
    let filter = filter_of(viewer, q)?;
    let rows = match &filter {
        Some(f) => dead_letters::list(&s.app.store, f, &page_).await?,
        None => vec![],
    };
    let v = |o: &Option<String>| given(o).unwrap_or("").to_string();
    let body = html! {
        form.filters method="get" action="/console/dlq" {
            @if viewer.is_admin() { label { "merchant " input name="merchant_id" value=(v(&q.merchant_id)) placeholder="mer_…"; } }
            label { "endpoint " input name="endpoint_id" value=(v(&q.endpoint_id)) placeholder="ep_…"; }
            label { "reason " select name="reason" {
                option value="" { "any" }
                @for r in DeadReason::ALL { option value=(r.as_str()) selected[given(&q.reason) == Some(r.as_str())] { (r.as_str()) } }
            } }
            label { "since " input name="since" value=(v(&q.since)); }
            label { "until " input name="until" value=(v(&q.until)); }
            button #filter type="submit" { "Filter" }
        }
        form.bulk method="post" action="/console/dlq/preview" {
            (csrf(viewer)) (hidden_filters(q))
            button #bulk type="submit" { "Resubmit all matching…" }
        }
        table #dead-letters {
            thead { tr { th { "dead letter" } th { "died" } th { "reason" } th { "attempts" } th { "last error" } th { "delivery" } th { "" } } }
            tbody {
                @for r in &rows {
                    tr {
                        td { (r.id) }
                        td { (time(Some(r.dead_at))) }
                        td { (badge(r.reason.as_str())) }
                        td { (r.attempts) }
                        td { (r.last_status_code.map(|c| c.to_string()).unwrap_or_default()) " " (r.last_error.clone().unwrap_or_default()) }
                        td { a href={ "/console/deliveries/" (r.delivery_id) } { (r.delivery_id) } }
                        td {
                            @if r.resubmitted_at.is_none() {
                                form method="post" action={ "/console/dlq/" (r.id) "/resubmit" } { (csrf(viewer)) button.small type="submit" { "Resubmit" } }
                            } @else { span.muted { "resubmitted" } }
                        }
                    }
                }
            }
        }
        @if rows.is_empty() { p.muted { "No dead letter matches these filters." } }
        @if rows.len() as i64 == page_.limit {
            @if let Some(last) = rows.last() { p { a href={ "/console/dlq?" (query_string(q)) "&cursor=" (last.id) } { "Older →" } } }
        }
    };
    Ok(page(viewer, "Dead letters", body))
}

/// `POST /console/dlq/preview`: how many a bulk resubmission would take,
/// and the button that does it.
pub async fn preview(
    State(s): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Form(q): Form<DlqQuery>,
) -> Response {
    if let Some(refused) = viewer.refuse_forged(q.csrf.as_deref().unwrap_or("")) {
        return refused;
    }
    let run = async {
        let now = crate::time::now_ms();
        let n = match filter_of(&viewer, &q)? {
            Some(f) => {
                let f = bounded(f, now, true);
                dead_letters::count(&s.app.store, &f).await?
            }
            None => 0,
        };
        AppResult::Ok((n, now))
    };
    let (n, now) = match run.await {
        Ok(v) => v,
        Err(e) => return layout::app_error(e),
    };
    page(
        &viewer,
        "Resubmit dead letters",
        html! {
            p.notice #preview { "This will resubmit " strong #preview-count { (n) } " dead letters." }
            form method="post" action="/console/dlq/resubmit" {
                (csrf(&viewer)) (hidden_filters(&q))
                input type="hidden" name="expected" value=(n);
                input type="hidden" name="dead_before" value=(now);
                button #confirm type="submit" disabled[n == 0] { "Resubmit " (n) }
            }
            p { a href="/console/dlq" { "Cancel" } }
        },
    )
}

/// Only rows dead before `now` (the preview's moment), not yet resubmitted.
fn bounded(mut f: Filter, now: i64, unresubmitted: bool) -> Filter {
    f.until = Some(f.until.map_or(now, |u| u.min(now)));
    f.unresubmitted_only = unresubmitted;
    f
}

/// `POST /console/dlq/resubmit`: the bulk resubmission the preview showed.
pub async fn resubmit_all(
    State(s): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Form(q): Form<DlqQuery>,
) -> Response {
    if let Some(refused) = viewer.refuse_forged(q.csrf.as_deref().unwrap_or("")) {
        return refused;
    }
    let run = async {
        let Some(f) = filter_of(&viewer, &q)? else {
            return AppResult::Ok(0);
        };
        let before = q.dead_before.unwrap_or_else(crate::time::now_ms);
        let f = bounded(f, before, false);
        crate::delivery::dlq::resubmit_matching(
            &s.app.store,
            &f,
            "dead_letter.resubmit_matching",
            None,
        )
        .await
    };
    match run.await {
        Ok(n) => layout::done(
            &viewer,
            "Resubmitted",
            html! { "Resubmitted " strong #resubmitted-count { (n) } " dead letters"
            @if let Some(e) = q.expected { @if e != n as i64 { " (" (e) " were shown; the rest were resubmitted meanwhile)" } } "." },
            "/console/dlq",
        ),
        Err(e) => layout::app_error(e),
    }
}
