//! `payhook deliveries list|show`.

use clap::Subcommand;

use super::output;
use crate::domain::DeliveryStatus;
use crate::error::AppResult;
use crate::events::EventType;
use crate::ids::{DeliveryId, EndpointId, EventId, MerchantId, PaymentId};
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
        #[arg(long = "endpoint-id", alias = "endpoint")]
        endpoint_id: Option<EndpointId>,
        #[arg(long = "event-id", alias = "event")]
        event_id: Option<EventId>,
        /// Only deliveries of events of this type (e.g. payment.confirmed).
        #[arg(long = "event-type", value_parser = event_type_arg)]
        event_type: Option<EventType>,
        #[arg(long = "payment-id", alias = "payment")]
        payment_id: Option<PaymentId>,
        /// Created at or after this RFC 3339 time.
        #[arg(long, value_parser = super::rfc3339_arg)]
        since: Option<i64>,
        /// Created before this RFC 3339 time.
        #[arg(long, value_parser = super::rfc3339_arg)]
        until: Option<i64>,
        #[arg(long)]
        limit: Option<i64>,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show a delivery with every attempt.
    Show { id: DeliveryId },
}

fn event_type_arg(raw: &str) -> Result<EventType, String> {
    EventType::parse("event_type", raw).map_err(|e| e.message)
}

pub async fn run(store: &Store, cmd: DeliveriesCmd, json: bool) -> AppResult<()> {
    match cmd {
        DeliveriesCmd::List {
            status,
            merchant_id,
            endpoint_id,
            event_id,
            event_type,
            payment_id,
            since,
            until,
            limit,
            cursor,
        } => {
            let page = Page::new(limit, cursor)?;
            let filter = store::deliveries::Filter {
                status,
                merchant_id,
                endpoint_id,
                event_id,
                event_type,
                payment_id,
                since,
                until,
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
