//! `/console/audit`: who changed what (admin only, as in the API).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use maud::html;
use serde::Deserialize;

use super::layout::Viewer;
use super::layout::{self, page, time};
use super::ConsoleState;
use crate::store::{audit, Page};

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    object_id: Option<String>,
    cursor: Option<String>,
}

fn given(v: &Option<String>) -> Option<String> {
    layout::given(v).map(str::to_string)
}

pub async fn list(
    State(s): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<AuditQuery>,
) -> Response {
    if !viewer.is_admin() {
        return layout::error_page(
            StatusCode::FORBIDDEN,
            "The audit log is for the admin token; a merchant API key may not see it.",
        );
    }
    let filter = audit::Filter {
        actor: given(&q.actor),
        action: given(&q.action),
        object_id: given(&q.object_id),
        since: None,
        until: None,
    };
    let run = async {
        let page_ = Page::new(Some(50), given(&q.cursor))?;
        audit::list(&s.app.store, &filter, &page_).await
    };
    let rows = match run.await {
        Ok(r) => r,
        Err(e) => return layout::app_error(e),
    };
    let v = |o: &Option<String>| given(o).unwrap_or_default();
    page(
        &viewer,
        "Audit log",
        html! {
            form.filters method="get" action="/console/audit" {
                label { "actor " input name="actor" value=(v(&q.actor)) placeholder="admin or key_…"; }
                label { "action " input name="action" value=(v(&q.action)) placeholder="endpoint.reveal_secret"; }
                label { "object " input name="object_id" value=(v(&q.object_id)); }
                button type="submit" { "Filter" }
            }
            table #audit {
                thead { tr { th { "at" } th { "actor" } th { "action" } th { "object" } th { "summary" } } }
                tbody {
                    @for r in &rows {
                        tr { td { (time(Some(r.at))) } td { (r.actor) } td { (r.action) } td { (r.object_id.clone().unwrap_or_default()) } td { code { (r.summary) } } }
                    }
                }
            }
            @if rows.len() == 50 { @if let Some(last) = rows.last() { p { a href={ "/console/audit?" (layout::query_string(&[("actor", &q.actor), ("action", &q.action), ("object_id", &q.object_id)])) "&cursor=" (last.id) } { "Older →" } } } }
        },
    )
}
