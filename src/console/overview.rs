//! `/console/overview`: deliveries by outcome over the last hour and day,
//! success ratio, event→2xx latency, queue depth, DLQ size, and endpoints
//! that are failing or disabled now. `/console/live` gives the figures that
//! refresh without a reload.

use axum::extract::State;
use axum::response::Response;
use axum::{Extension, Json};
use maud::html;

use super::layout::Viewer;
use super::layout::{self, page};
use super::{chart, ConsoleState};
use crate::admin::Access;
use crate::error::AppResult;
use crate::ids::MerchantId;
use crate::store::{dead_letters, stats, Store};
use crate::time::now_ms;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

fn merchant_of(viewer: &Viewer) -> Option<MerchantId> {
    match &viewer.access {
        Access::Admin => None,
        Access::Merchant { merchant_id, .. } => Some(merchant_id.clone()),
    }
}

/// The figures `/console/live` serves and the overview shows.
#[derive(serde::Serialize)]
pub struct Live {
    pub dlq_open: i64,
    pub pending: i64,
    pub due: Option<i64>,
    pub scheduled: Option<i64>,
}

async fn live_figures(store: &Store, merchant: Option<&MerchantId>) -> AppResult<Live> {
    let filter = dead_letters::Filter {
        merchant_id: merchant.cloned(),
        unresubmitted_only: true,
        ..Default::default()
    };
    let dlq_open = dead_letters::count(store, &filter).await?;
    let pending = stats::pending(store, merchant).await?;
    // Queue depth is the operator's figure (all merchants share the queue).
    let (due, scheduled) = match merchant {
        None => {
            let (d, s) = crate::store::jobs::depth(store.db()).await?;
            (Some(d), Some(s))
        }
        Some(_) => (None, None),
    };
    Ok(Live {
        dlq_open,
        pending,
        due,
        scheduled,
    })
}

pub async fn live(
    State(s): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Json<Live>, Response> {
    let merchant = merchant_of(&viewer);
    live_figures(&s.app.store, merchant.as_ref())
        .await
        .map(Json)
        .map_err(layout::app_error)
}

fn ratio(ok: i64, failed: i64) -> String {
    if ok + failed == 0 {
        return "—".into();
    }
    format!("{:.1} %", ok as f64 * 100.0 / (ok + failed) as f64)
}

fn ms(v: Option<i64>) -> String {
    v.map(|v| format!("{v} ms")).unwrap_or_else(|| "—".into())
}

pub async fn show(State(s): State<ConsoleState>, Extension(viewer): Extension<Viewer>) -> Response {
    match render(&s, &viewer).await {
        Ok(r) => r,
        Err(e) => layout::app_error(e),
    }
}

async fn render(s: &ConsoleState, viewer: &Viewer) -> AppResult<Response> {
    let store = &s.app.store;
    let merchant = merchant_of(viewer);
    let m = merchant.as_ref();
    let now = now_ms();
    let hour = stats::attempts_by_bucket(store, now - HOUR, MINUTE, m).await?;
    let day = stats::attempts_by_bucket(store, now - 24 * HOUR, HOUR, m).await?;
    let sum = |b: &[(i64, i64, i64)]| b.iter().fold((0, 0), |(o, f), x| (o + x.1, f + x.2));
    let (hour_ok, hour_failed) = sum(&hour);
    let (day_ok, day_failed) = sum(&day);
    let lat_hour = stats::latencies(store, now - HOUR, m).await?;
    let lat_day = stats::latencies(store, now - 24 * HOUR, m).await?;
    let live = live_figures(store, m).await?;
    let disabled = stats::disabled_endpoints(store, m).await?;
    // The queue is shared by all merchants: its history is the operator's.
    let samples = match m {
        None => Some(stats::queue_samples(store, now - 24 * HOUR, HOUR).await?),
        Some(_) => None,
    };
    let recent = match m {
        None => Some(stats::queue_samples(store, now - HOUR, MINUTE).await?),
        Some(_) => None,
    };
    let failing = failing_for(store, m).await?;
    let body = html! {
        section.cards {
            div.card { h2 { "Last hour" } p.big { (hour_ok + hour_failed) } p { "attempts, " (ratio(hour_ok, hour_failed)) " succeeded" } }
            div.card { h2 { "Last 24 h" } p.big { (day_ok + day_failed) } p { "attempts, " (ratio(day_ok, day_failed)) " succeeded" } }
            div.card { h2 { "Event → 2xx" } p.big { (ms(stats::quantile(&lat_hour, 0.5))) } p { "p50 last hour · p99 " (ms(stats::quantile(&lat_hour, 0.99))) } p { "day: p50 " (ms(stats::quantile(&lat_day, 0.5))) " · p99 " (ms(stats::quantile(&lat_day, 0.99))) } }
            div.card { h2 { "Queue" } p.big data-live="pending" { (live.pending) } p { "deliveries pending" }
                @if let (Some(due), Some(later)) = (live.due, live.scheduled) { p { span data-live="due" { (due) } " due now · " span data-live="scheduled" { (later) } " scheduled" } } }
            div.card { h2 { "Dead letters" } p.big data-live="dlq_open" { (live.dlq_open) } p { a href="/console/dlq" { "not resubmitted" } } }
        }
        h2 { "Attempts per minute, last hour" }
        (chart::attempts(&hour, now - HOUR + MINUTE, MINUTE, 60, "60 min"))
        h2 { "Attempts per hour, last 24 h" }
        (chart::attempts(&day, now - 24 * HOUR + HOUR, HOUR, 24, "24 h"))
        @if let (Some(day), Some(hour)) = (&samples, &recent) {
            h2 { "Queue and dead letters over time" }
            div.charts {
                (chart::series(&hour.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(), now - HOUR + MINUTE, MINUTE, 60, "due jobs, last hour", "due"))
                (chart::series(&hour.iter().map(|r| (r.0, r.2)).collect::<Vec<_>>(), now - HOUR + MINUTE, MINUTE, 60, "scheduled retries, last hour", "scheduled"))
                (chart::series(&day.iter().map(|r| (r.0, r.3)).collect::<Vec<_>>(), now - 24 * HOUR + HOUR, HOUR, 24, "open dead letters, last 24 h", "dlq"))
            }
        }
        h2 { "Endpoints that need a look" }
        @if disabled.is_empty() && failing.is_empty() {
            p.muted { "None: every endpoint is active and answering." }
        } @else {
            table {
                thead { tr { th { "endpoint" } th { "merchant" } th { "URL" } th { "state" } } }
                tbody {
                    @for t in &disabled {
                        tr { td { a href={ "/console/endpoints/" (t.id) } { (t.id) } } td { (t.merchant_id) }
                             td { (crate::urls::redact_url(&t.url)) } td { (layout::badge("disabled")) " " (t.disabled_reason.clone().unwrap_or_default()) } }
                    }
                    @for (key, since, failures) in &failing {
                        tr { td { "—" } td { "—" } td { (crate::urls::redact_url(key)) }
                             td { (layout::badge("failing")) " since " (crate::time::rfc3339(*since)) ", " (failures) " failures in a row" } }
                    }
                }
            }
        }
    };
    Ok(page(viewer, "Overview", body))
}

/// Failing URL keys; a merchant sees only those of its own endpoints.
async fn failing_for(
    store: &Store,
    merchant: Option<&MerchantId>,
) -> AppResult<Vec<(String, i64, i64)>> {
    let all = stats::failing_keys(store).await?;
    let Some(m) = merchant else {
        return Ok(all);
    };
    let page = crate::store::Page::new(Some(crate::store::Page::MAX), None)?;
    let own: std::collections::HashSet<String> = crate::store::endpoints::list(store, m, &page)
        .await?
        .iter()
        .map(|e| crate::urls::endpoint_key_of(&e.url))
        .collect();
    Ok(all
        .into_iter()
        .filter(|(k, _, _)| own.contains(k))
        .collect())
}
