//! `payhook dlq list|resubmit`.

use clap::Subcommand;

use super::output;
use crate::delivery::dlq::{self, FilterInput};
use crate::error::{AppError, AppResult};
use crate::store::dead_letters;
use crate::store::{Page, Store};

#[derive(Debug, Subcommand)]
pub enum DlqCmd {
    /// List dead letters, newest first.
    List {
        #[command(flatten)]
        filter: FilterInput,
        #[arg(long)]
        limit: Option<i64>,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Resubmit one dead letter by id, or every match of the filters with --all.
    Resubmit {
        /// The dead letter id (dlq_…).
        id: Option<String>,
        /// Resubmit every not-yet-resubmitted row matching the filters.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: FilterInput,
    },
}

pub async fn run(store: &Store, cmd: DlqCmd, json: bool) -> AppResult<()> {
    match cmd {
        DlqCmd::List {
            filter,
            limit,
            cursor,
        } => {
            let rows = dead_letters::list(store, &filter.filter("--")?, &Page::new(limit, cursor)?)
                .await?;
            if json {
                output::json(&rows);
            } else {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.id.clone(),
                            r.event_id.clone(),
                            r.reason.clone(),
                            r.attempts.to_string(),
                            output::opt(&r.last_status_code),
                            crate::time::rfc3339(r.dead_at),
                            output::opt(&r.resubmitted_delivery_id),
                        ]
                    })
                    .collect();
                output::table(
                    &[
                        "id",
                        "event",
                        "reason",
                        "attempts",
                        "last_code",
                        "dead_at",
                        "resubmitted_as",
                    ],
                    &table,
                );
            }
        }
        DlqCmd::Resubmit { id, all, filter } => match (id, all) {
            (Some(id), false) => {
                let delivery_id = dlq::resubmit(store, &id).await?;
                if json {
                    output::json(
                        &serde_json::json!({"id": id, "resubmitted_delivery_id": delivery_id}),
                    );
                } else {
                    println!("resubmitted {id} as delivery {delivery_id}");
                }
            }
            (None, true) => {
                let count = dlq::resubmit_matching(store, &filter.filter("--")?).await?;
                if json {
                    output::json(&serde_json::json!({"count": count}));
                } else {
                    println!("resubmitted {count} dead letters");
                }
            }
            _ => return Err(AppError::bad_input(
                "dlq resubmit: give one dead letter id, or --all with optional filters (not both)",
            )),
        },
    }
    Ok(())
}
