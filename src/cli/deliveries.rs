//! `payhook deliveries list|show`.

use clap::Subcommand;

use super::output;
use crate::domain::DeliveryStatus;
use crate::error::AppResult;
use crate::ids::{DeliveryId, EventId, MerchantId};
use crate::store::deliveries::{Delivery, DeliveryWithAttempts};
use crate::store::{self, Page, Store};
use crate::time::rfc3339;

#[derive(Debug, Subcommand)]
pub enum DeliveriesCmd {
    /// List deliveries, newest first.
    List {
        /// pending, succeeded or dead.
        #[arg(long)]
        status: Option<DeliveryStatus>,
        #[arg(long = "merchant-id", alias = "merchant")]
        merchant_id: Option<MerchantId>,
        #[arg(long = "event-id", alias = "event")]
        event_id: Option<EventId>,
        #[arg(long)]
        limit: Option<i64>,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show a delivery with every attempt.
    Show { id: DeliveryId },
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
            let filter = store::deliveries::Filter {
                status,
                merchant_id,
                event_id,
            };
            let list = store::deliveries::list(store, &filter, &page).await?;
            print_list(&list, json);
        }
        DeliveriesCmd::Show { id } => {
            let delivery = store::deliveries::get(store, &id).await?;
            let delivery_attempts = store::deliveries::attempts(store, &id).await?;
            print_one(
                &DeliveryWithAttempts {
                    delivery,
                    delivery_attempts,
                },
                json,
            );
        }
    }
    Ok(())
}

fn print_list(list: &[Delivery], json: bool) {
    if json {
        return output::json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            vec![
                d.id.to_string(),
                d.event_id.to_string(),
                d.status.to_string(),
                d.attempts.to_string(),
                output::opt(&d.last_status_code),
                output::opt(&d.next_attempt_at.map(rfc3339)),
            ]
        })
        .collect();
    let head = [
        "id",
        "event",
        "status",
        "attempts",
        "last_code",
        "next_attempt_at",
    ];
    output::table(&head, &rows);
}

fn print_one(d: &DeliveryWithAttempts, json: bool) {
    if json {
        return output::json(d);
    }
    output::record(&d.delivery);
    println!();
    let rows: Vec<Vec<String>> = d
        .delivery_attempts
        .iter()
        .map(|a| {
            vec![
                a.attempt.to_string(),
                rfc3339(a.started_at),
                format!("{}ms", a.duration_ms),
                output::opt(&a.status_code),
                output::opt(&a.error_kind),
                output::opt(&a.error),
            ]
        })
        .collect();
    let head = [
        "attempt",
        "started_at",
        "took",
        "code",
        "error_kind",
        "error",
    ];
    output::table(&head, &rows);
}
