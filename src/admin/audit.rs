//! `GET /v1/audit`: who changed what.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use super::json::Query;
use super::{ApiError, AppState, Listing};
use crate::store::audit::{self, AuditEntry, Filter};
use crate::store::Page;

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    object_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn list(
    State(s): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Listing<AuditEntry>>, ApiError> {
    let page = Page::new(q.limit, q.cursor)?;
    let time =
        |field: &str, v: Option<String>| crate::time::parse_optional_rfc3339(field, v.as_deref());
    let filter = Filter {
        actor: q.actor,
        action: q.action,
        object_id: q.object_id,
        since: time("since", q.since)?,
        until: time("until", q.until)?,
    };
    let data = audit::list(&s.store, &filter, &page).await?;
    Ok(Json(Listing::new(data, &page, |e| e.id.as_str())))
}
