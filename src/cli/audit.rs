//! `payhook audit list`: who changed what, newest first.

use clap::Subcommand;

use super::output;
use crate::error::AppResult;
use crate::store::audit::{self, Filter};
use crate::store::{Page, Store};

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// List audit log entries, newest first.
    List {
        /// `admin`, or an API key id.
        #[arg(long)]
        actor: Option<String>,
        /// e.g. merchant.rotate_secret, dead_letter.resubmit.
        #[arg(long)]
        action: Option<String>,
        #[arg(long = "object-id")]
        object_id: Option<String>,
        /// At or after this RFC 3339 time.
        #[arg(long, value_parser = super::rfc3339_arg)]
        since: Option<i64>,
        /// Before this RFC 3339 time.
        #[arg(long, value_parser = super::rfc3339_arg)]
        until: Option<i64>,
        #[arg(long)]
        limit: Option<i64>,
        #[arg(long)]
        cursor: Option<String>,
    },
}

pub async fn run(store: &Store, cmd: AuditCmd, json: bool) -> AppResult<()> {
    let AuditCmd::List {
        actor,
        action,
        object_id,
        since,
        until,
        limit,
        cursor,
    } = cmd;
    let filter = Filter {
        actor,
        action,
        object_id,
        since,
        until,
    };
    let rows = audit::list(store, &filter, &Page::new(limit, cursor)?).await?;
    if json {
        output::json(&rows);
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|e| {
            vec![
                crate::time::rfc3339(e.at),
                e.actor.clone(),
                e.action.clone(),
                output::opt(&e.object_id),
                e.summary.clone(),
            ]
        })
        .collect();
    output::table(&["at", "actor", "action", "object", "summary"], &table);
    Ok(())
}
