//! `payhook dlq list|resubmit`.

use clap::Subcommand;

use super::output;
use crate::delivery::dlq;
use crate::domain::DeadReason;
use crate::error::{AppError, AppResult};
use crate::ids::{DeadLetterId, EndpointId, MerchantId};
use crate::store::dead_letters::{self, Filter};
use crate::store::{Page, Store};

/// The DLQ filters as flags of `dlq list|resubmit`.
#[derive(Debug, Default, clap::Args)]
pub struct FilterArgs {
    #[arg(long = "merchant-id", alias = "merchant")]
    merchant_id: Option<MerchantId>,
    #[arg(long = "endpoint-id", alias = "endpoint")]
    endpoint_id: Option<EndpointId>,
    /// exhausted, gone, endpoint_disabled or rejected_target.
    #[arg(long)]
    reason: Option<DeadReason>,
    /// Dead at or after this RFC 3339 time.
    #[arg(long, value_parser = super::rfc3339_arg)]
    since: Option<i64>,
    /// Dead before this RFC 3339 time.
    #[arg(long, value_parser = super::rfc3339_arg)]
    until: Option<i64>,
}

impl From<FilterArgs> for Filter {
    fn from(a: FilterArgs) -> Filter {
        Filter {
            merchant_id: a.merchant_id,
            endpoint_id: a.endpoint_id,
            reason: a.reason,
            since: a.since,
            until: a.until,
            unresubmitted_only: false,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum DlqCmd {
    /// List dead letters, newest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long)]
        limit: Option<i64>,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Resubmit one dead letter by id, or every match of the filters with --all.
    Resubmit {
        /// The dead letter id (dlq_…).
        id: Option<DeadLetterId>,
        /// Resubmit every not-yet-resubmitted row matching the filters.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
}

pub async fn run(store: &Store, cmd: DlqCmd, json: bool) -> AppResult<()> {
    match cmd {
        DlqCmd::List {
            filter,
            limit,
            cursor,
        } => {
            let page = Page::new(limit, cursor)?;
            let rows = dead_letters::list(store, &filter.into(), &page).await?;
            if json {
                output::json(&rows);
            } else {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.id.to_string(),
                            r.event_id.to_string(),
                            r.reason.to_string(),
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
                let count = dlq::resubmit_matching(
                    store,
                    &filter.into(),
                    "dead_letter.resubmit_matching",
                    None,
                )
                .await?;
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
