//! `payhook deliveries list|show`.

use clap::Subcommand;

use super::output;
use crate::error::AppResult;
use crate::store::{self, Page, Store};

#[derive(Debug, Subcommand)]
pub enum DeliveriesCmd {
    /// List deliveries, newest first.
    List {
        /// pending, succeeded or dead.
        #[arg(long)]
        status: Option<String>,
        #[arg(long = "merchant-id", alias = "merchant")]
        merchant_id: Option<String>,
        #[arg(long = "event-id", alias = "event")]
        event_id: Option<String>,
        #[arg(long)]
        limit: Option<i64>,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show a delivery with every attempt.
    Show { id: String },
}

pub async fn run(store: &Store, cmd: DeliveriesCmd, json: bool) -> AppResult<()> {
    match cmd {
        DeliveriesCmd::List {
            status,
            merchant_id,
            event_id,
            limit,
            cursor,
        } => {
            let page = Page::new(limit, cursor)?;
            let list = store::deliveries::list(
                store,
                status.as_deref(),
                merchant_id.as_deref(),
                event_id.as_deref(),
                &page,
            )
            .await?;
            let views: Vec<_> = list.iter().map(|d| d.view(None)).collect();
            if json {
                output::json(&views);
            } else {
                let rows: Vec<Vec<String>> = views
                    .iter()
                    .map(|d| {
                        vec![
                            d.id.clone(),
                            d.event_id.clone(),
                            d.status.clone(),
                            d.attempts.to_string(),
                            output::opt(&d.last_status_code),
                            output::opt(&d.next_attempt_at),
                        ]
                    })
                    .collect();
                output::table(
                    &[
                        "id",
                        "event",
                        "status",
                        "attempts",
                        "last_code",
                        "next_attempt_at",
                    ],
                    &rows,
                );
            }
        }
        DeliveriesCmd::Show { id } => {
            let d = store::deliveries::get(store, &id).await?;
            let attempts = store::deliveries::attempts(store, &id).await?;
            let view = d.view(Some(&attempts));
            if json {
                output::json(&view);
            } else {
                let log = view.attempt_log.as_deref().unwrap_or(&[]);
                let summary = store::deliveries::Delivery { ..d }.view(None);
                output::record(&summary);
                println!();
                let rows: Vec<Vec<String>> = log
                    .iter()
                    .map(|a| {
                        vec![
                            a.attempt.to_string(),
                            a.started_at.clone(),
                            format!("{}ms", a.duration_ms),
                            output::opt(&a.status_code),
                            output::opt(&a.error_kind),
                            output::opt(&a.error),
                        ]
                    })
                    .collect();
                output::table(
                    &[
                        "attempt",
                        "started_at",
                        "took",
                        "code",
                        "error_kind",
                        "error",
                    ],
                    &rows,
                );
            }
        }
    }
    Ok(())
}
