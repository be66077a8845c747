//! The `audit_log` table: who changed what, when. Every operation that
//! changes something calls [`record`] once it succeeded (or [`record_in`],
//! in the transaction of the change itself), with a summary
//! built from what was asked — never a secret: header values, secrets and
//! URL paths or queries (which can carry tokens) are left out.

use serde::Serialize;

use super::sql::{query, On, Sql, Tx};
use super::{Page, Store};
use crate::error::AppResult;

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct AuditEntry {
    pub id: String,
    #[serde(serialize_with = "crate::time::ser::ms")]
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub object_id: Option<String>,
    /// What was asked, without secrets; shown as JSON.
    #[serde(serialize_with = "raw_json")]
    pub summary: String,
}

fn raw_json<S: serde::Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<serde_json::Value>(v) {
        Ok(json) => json.serialize(s),
        Err(_) => s.serialize_str(v),
    }
}

const INSERT: Sql = Sql::both(
    "INSERT INTO audit_log (id, at, actor, action, object_id, summary) \
     VALUES ($1, $2, $3, $4, $5, $6)",
);

pub async fn insert<'c>(on: impl Into<On<'c>>, e: &AuditEntry) -> AppResult<()> {
    query(INSERT)
        .bind(&e.id)
        .bind(e.at)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.object_id)
        .bind(&e.summary)
        .execute(on)
        .await?;
    Ok(())
}

/// Filters of `GET /v1/audit` and `payhook audit list`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub object_id: Option<String>,
    /// At or after (unix ms).
    pub since: Option<i64>,
    /// Before (unix ms).
    pub until: Option<i64>,
}

const LIST: Sql = Sql::both(
    "SELECT id, at, actor, action, object_id, summary FROM audit_log \
     WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR action = $2) \
     AND ($3 IS NULL OR object_id = $3) AND ($4 IS NULL OR at >= $4) AND ($5 IS NULL OR at < $5) \
     AND ($6 IS NULL OR id < $6) ORDER BY id DESC LIMIT $7",
);

pub async fn list(store: &Store, f: &Filter, page: &Page) -> AppResult<Vec<AuditEntry>> {
    Ok(query(LIST)
        .bind(&f.actor)
        .bind(&f.action)
        .bind(&f.object_id)
        .bind(f.since)
        .bind(f.until)
        .bind(&page.cursor)
        .bind(page.limit)
        .fetch_all(store.db())
        .await?)
}

/// Who made a change: the admin token (API) or the CLI's operator, or a
/// merchant API key's id.
pub const ADMIN: &str = "admin";

tokio::task_local! {
    /// The actor of the request being handled (set by the admin API's
    /// auth layer); outside one, [`ADMIN`].
    pub static ACTOR: String;
}

fn current_actor() -> String {
    ACTOR
        .try_with(Clone::clone)
        .unwrap_or_else(|_| ADMIN.to_string())
}

/// Writes one audit row. A failure to write it is logged and counted; the
/// change itself has happened and is not undone.
pub async fn record(
    store: &Store,
    action: &str,
    object_id: Option<&str>,
    summary: serde_json::Value,
) {
    let entry = entry(action, object_id, summary);
    if let Err(e) = insert(store.write_db(), &entry).await {
        tracing::error!(error = %e, action, "writing the audit log failed");
    }
}

/// Writes one audit row in the transaction of the change it records: both
/// are committed, or neither (and the change costs one commit, not two).
pub async fn record_in(
    tx: &mut Tx,
    action: &str,
    object_id: Option<&str>,
    summary: serde_json::Value,
) -> AppResult<()> {
    insert(tx, &entry(action, object_id, summary)).await
}

fn entry(action: &str, object_id: Option<&str>, summary: serde_json::Value) -> AuditEntry {
    let mut text = summary.to_string();
    if text.len() > 2000 {
        text = serde_json::json!({"truncated": true}).to_string();
    }
    AuditEntry {
        id: crate::ids::new_id("aud_"),
        at: crate::time::now_ms(),
        actor: current_actor(),
        action: action.to_string(),
        object_id: object_id.map(str::to_string),
        summary: text,
    }
}
